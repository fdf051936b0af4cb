"""Every rule end to end on a real broker: one recorded timeline with a positive and a negative case per rule.

The timeline lies in the past, so the worker clock follows its event times;
its last event (a stock level well after every deadline) carries the clock
past the deadlines, which then fire through forewarn-ticks as they would on
a replay of last month's events. A second test shows a deadline firing on an
idle stream, with nothing after it but wall time. Tasks are then worked from
the CLI: claim, done, and the rejections.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from schemas.codec import Codec, DecodeError
from streams import topics
from streams.follow import group_lag, read_topic
from tests.integration.helpers import Workers, forewarn_env, read_alerts, run_forewarn, wait_for, write_jsonl

pytestmark = pytest.mark.integration

HOUR = 3_600_000
MIN = 60_000
# Three days ago, on the hour: the complaint windows line up.
BASE = (int(time.time() * 1000) - 3 * 24 * HOUR) // HOUR * HOUR


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Timeline:
    def __init__(self) -> None:
        self.items: list[dict] = []
        self.n = 0

    def add(self, topic: str, minute: float, **value) -> None:
        self.n += 1
        value.setdefault("event_id", f"{topic}-{self.n}")
        value["ts"] = iso(BASE + int(minute * MIN))
        self.items.append({"topic": topic, "value": value})

    def web(self, minute, kind, session, page, customer=None, **extra):
        self.add("web", minute, event_type=kind, session_id=session, page=page, customer_id=customer, **extra)

    def ticket(self, minute, kind, ticket, customer, channel, **extra):
        self.add("support", minute, event_type=kind, ticket_id=ticket, customer_id=customer, channel=channel, **extra)

    def order(self, minute, kind, order_id, customer, lines=(), **extra):
        self.add("orders", minute, event_type=kind, order_id=order_id, customer_id=customer,
                 lines=[{"sku": sku, "qty": qty, "unit_price_cents": 1000} for sku, qty in lines], **extra)


def story_timeline() -> Timeline:
    t = Timeline()
    for sku, name, category in [("ETH", "Ethiopia 1kg", "beans"), ("KEN", "Kenya 1kg", "beans"),
                                ("GRND-80", "Burr Grinder B80", "grinders")]:
        t.add("catalog", 0, sku=sku, name=name, category=category, price_cents=1990, active=True)
        t.add("inventory", 0, event_type="stock_level", sku=sku, available=1000)
    for customer, name, tier, ltv in [("C1", "Arjun Mehta", "gold", 412_000), ("C2", "Mita Sen", "platinum", 900_000),
                                      ("C3", "Omar Khan", "standard", 1_000)]:
        t.add("customers", 0, customer_id=customer, name=name, tier=tier, lifetime_value_cents=ltv)

    # cart_lost: sA loses its cart after /shop/filters; sB's cart is intact.
    t.web(1, "cart_add", "sA", "/sale/eth", "C1", sku="ETH", qty=2, cart_item_count=2)
    t.web(2, "page_view", "sA", "/shop/filters", "C1")
    t.web(3, "cart_view", "sA", "/cart", "C1", cart_item_count=0)
    t.web(1, "cart_add", "sB", "/shop/beans", "C3", sku="KEN", qty=1, cart_item_count=1)
    t.web(3, "cart_view", "sB", "/cart", "C3", cart_item_count=1)
    # cart_loss_spike: five sessions lose carts after /shop/broken; four after /shop/flaky.
    for n in range(5):
        t.web(10 + n, "cart_add", f"sx{n}", "/shop/beans", None, sku="KEN", qty=1, cart_item_count=1)
        t.web(10.2 + n, "page_view", f"sx{n}", "/shop/broken", None)
        t.web(10.4 + n, "cart_view", f"sx{n}", "/cart", None, cart_item_count=0)
    for n in range(4):
        t.web(10 + n, "cart_add", f"sy{n}", "/shop/beans", None, sku="KEN", qty=1, cart_item_count=1)
        t.web(10.2 + n, "page_view", f"sy{n}", "/shop/flaky", None)
        t.web(10.4 + n, "cart_view", f"sy{n}", "/cart", None, cart_item_count=0)
    # web_error_spike: 20 server errors on /checkout in 5 minutes; 19 on /search.
    for n in range(10):
        t.web(20 + n * 0.2, "page_view", f"sc{n}", "/checkout")
        t.web(20 + n * 0.2, "page_view", f"ss{n}", "/search")
    for n in range(20):
        t.web(21 + n * 0.1, "error", f"sc{n}", "/checkout", status_code=503)
    for n in range(19):
        t.web(21 + n * 0.1, "error", f"ss{n}", "/search", status_code=500)
    # order_not_visible: O-VIS not found in the account; O-SEEN found.
    t.order(30, "placed", "O-VIS", "C1", [("ETH", 1)])
    t.order(30, "placed", "O-SEEN", "C3", [("ETH", 1)])
    t.web(40, "order_lookup", "sV", "/account/orders", "C1", order_id="O-VIS", found=False)
    t.web(40, "order_lookup", "sW", "/account/orders", "C3", order_id="O-SEEN", found=True)
    # support_sla_risk / _breach: TK1 (chat) answered after 10 minutes; TK2 within a minute.
    t.ticket(50, "ticket_opened", "TK1", "C3", "chat", category="account", text="cannot log in")
    t.ticket(60, "agent_replied", "TK1", "C3", "chat", agent_id="a1")
    t.ticket(50, "ticket_opened", "TK2", "CN1", "chat", category="account", text="password reset")
    t.ticket(51, "agent_replied", "TK2", "CN1", "chat", agent_id="a1")
    # support_backlog: 20 email tickets waiting at once; 19 sms tickets.
    categories = ["returns", "payment", "stock", "website", "product_quality"]
    for n in range(20):
        t.ticket(70 + n * 0.05, "ticket_opened", f"TE{n}", f"CE{n}", "email", category=categories[n % 5])
        t.ticket(85, "agent_replied", f"TE{n}", f"CE{n}", "email")
    for n in range(19):
        t.ticket(70 + n * 0.05, "ticket_opened", f"TS{n}", f"CS{n}", "sms", category=categories[n % 5])
        t.ticket(75, "agent_replied", f"TS{n}", f"CS{n}", "sms")
    # repeat_contact: C1 writes by email about O-VIS, then calls about it; C2 contacts once.
    t.ticket(90, "ticket_opened", "TR1", "C1", "email", order_id="O-VIS", text="my order is not in my account")
    t.ticket(91, "agent_replied", "TR1", "C1", "email")
    t.ticket(100, "ticket_opened", "TR2", "C1", "phone", order_id="O-VIS", text="calling again about my order")
    t.ticket(101, "agent_replied", "TR2", "C1", "phone")
    t.ticket(100, "ticket_opened", "TR3", "C2", "chat", text="question about grinders")
    t.ticket(100.5, "agent_replied", "TR3", "C2", "chat")
    # complaint_spike: ten uncategorised tickets about late delivery (in three languages); nine about payment.
    texts = ["my order still hasn't arrived", "मेरा ऑर्डर अभी तक नहीं पहुंचा", "আমার অর্ডার এখনও আসেনি"]
    for n in range(10):
        t.ticket(120 + n, "ticket_opened", f"TD{n}", f"CD{n}", "chat", text=texts[n % 3])
        t.ticket(120.5 + n, "agent_replied", f"TD{n}", f"CD{n}", "chat")
    for n in range(9):
        t.ticket(120 + n, "ticket_opened", f"TP{n}", f"CP{n}", "chat", category="billing", text="charged twice")
        t.ticket(120.5 + n, "agent_replied", f"TP{n}", f"CP{n}", "chat")
    # return_spike: GRND-80 sold 10, 5 came back; KEN sold 10, 4 came back.
    for n in range(10):
        t.order(5 + n, "placed", f"O-G{n}", "C3", [("GRND-80", 1)])
        t.order(5 + n, "placed", f"O-K{n}", "C3", [("KEN", 1)])
    for n in range(5):
        t.add("returns", 150 + n, return_id=f"R-G{n}", order_id=f"O-G{n}", customer_id="C3", sku="GRND-80", qty=1,
              reason="motor stopped" if n < 3 else "arrived broken")
    for n in range(4):
        t.add("returns", 150 + n, return_id=f"R-K{n}", order_id=f"O-K{n}", customer_id="C3", sku="KEN", qty=1,
              reason="did not like the taste")
    # late_shipment: O-LATE ships half an hour after its promise; O-ONTIME well before.
    t.order(160, "placed", "O-LATE", "C2", [("ETH", 1)], promised_ship_by=iso(BASE + 170 * MIN))
    t.order(200, "shipped", "O-LATE", "C2")
    t.order(160, "placed", "O-ONTIME", "C3", [("ETH", 1)], promised_ship_by=iso(BASE + 160 * MIN + 10 * HOUR))
    t.order(170, "shipped", "O-ONTIME", "C3")
    # payment_failed: O-PAY never paid; O-PAID paid within the grace period.
    t.order(180, "placed", "O-PAY", "C2", [("ETH", 1)])
    t.order(181, "payment_failed", "O-PAY", "C2")
    t.order(180, "placed", "O-PAID", "C3", [("ETH", 1)])
    t.order(181, "payment_failed", "O-PAID", "C3")
    t.order(190, "payment_succeeded", "O-PAID", "C3")
    # negative_feedback: C1's csat 1; C3's nps 9.
    t.add("feedback", 200, event_type="csat", customer_id="C1", score=1, text="nobody told me what was missing")
    t.add("feedback", 200, event_type="nps", customer_id="C3", score=9)
    # The clock passes every deadline above.
    t.add("inventory", 300, event_type="stock_level", sku="KEN", available=1000)
    return t


def alerts_of(alerts: list[dict], rule: str) -> dict[str, list[str]]:
    """dedup key -> statuses in order, for one rule.

    Processing is at least once: after a rebalance a worker may send an alert message again. A
    consumer drops a repeat by its alert id, status and event time; so does this.
    """
    out: dict[str, list[str]] = {}
    seen = set()
    for alert in alerts:
        repeat = (alert["alert_id"], alert["status"], alert["event_ts"])
        if alert["rule"] == rule and repeat not in seen:
            seen.add(repeat)
            out.setdefault(alert["dedup_key"], []).append(alert["status"])
    return out


def read_all(bootstrap: str, topic: str) -> list[dict]:
    return [item[1] for item in read_topic(bootstrap, topic, Codec()) if not isinstance(item, DecodeError)]


@pytest.fixture(scope="module")
def story(kafka_bootstrap, tmp_path_factory):
    prefix = f"t-rules-{int(time.time() * 1000) % 10**8}-"
    data = tmp_path_factory.mktemp("rules")
    env = forewarn_env(kafka_bootstrap, prefix, data)
    created = run_forewarn(["topics", "create"], env)
    assert created.returncode == 0, created.stderr
    timeline = write_jsonl(data / "timeline.jsonl", story_timeline().items)
    with Workers(env, 1, data) as workers:
        replayed = run_forewarn(["replay", str(timeline)], env)
        assert replayed.returncode == 0, replayed.stderr
        alerts = wait_for(lambda: workers.assert_running() or story_settled(kafka_bootstrap, prefix), 300,
                          "the story to settle: " + ", ".join(f"{key} {status}" for key, status in SETTLED.items()))
        yield {"alerts": alerts, "env": env, "prefix": prefix, "bootstrap": kafka_bootstrap, "workers": workers}


# How the story ends once the clock has passed every deadline: the last status of the alerts that
# change on the clock or on a later event, and of those that stay open. Deadlines fire in different
# stages, so an alert from one rule says nothing about another: the tests look only once all of
# these hold, the negative feedback has been linked to an order and a ticket, and the workers have
# committed every input (so an alert that should not exist has had every chance to appear).
SETTLED = {
    "cart_lost:sA": "open",
    "cart_loss_spike:/shop/broken": "resolved",
    "web_error_spike:/checkout": "resolved",
    "order_not_visible:O-VIS": "open",
    "support_sla_risk:TK1": "resolved",
    "support_sla_breach:TK1": "resolved",
    "support_backlog:email": "resolved",
    "repeat_contact:C1": "open",
    "complaint_spike:delivery": "resolved",
    "return_spike:GRND-80": "open",
    "late_shipment:O-LATE": "resolved",
    "payment_failed:O-PAY": "open",
}


def story_settled(bootstrap: str, prefix: str) -> list[dict] | None:
    """The story's alerts once it has settled (see SETTLED), else None."""
    alerts = read_alerts(bootstrap, prefix)
    last = {alert["dedup_key"]: alert["status"] for alert in alerts}
    feedback = [a for a in alerts if a["rule"] == "negative_feedback"]
    linked = bool(feedback) and bool(feedback[-1]["order_id"]) and bool(feedback[-1]["ticket_id"])
    if not linked or any(last.get(key) != status for key, status in SETTLED.items()):
        return None
    watched = [f"{prefix}{spec.name}" for spec in topics.GROUP_INPUTS]
    if group_lag(bootstrap, f"{prefix}forewarn", watched) != 0:
        return None
    return read_alerts(bootstrap, prefix)


def test_cart_lost_positive_and_negative(story):
    lost = alerts_of(story["alerts"], "cart_lost")
    assert lost.get("cart_lost:sA") == ["open"]
    assert "cart_lost:sB" not in lost
    alert = next(a for a in story["alerts"] if a["dedup_key"] == "cart_lost:sA")
    assert alert["details"]["lost_skus"] == "ETH" and alert["details"]["last_page"] == "/shop/filters"


def test_cart_loss_spike_and_web_error_spike(story):
    spikes = alerts_of(story["alerts"], "cart_loss_spike")
    assert spikes.get("cart_loss_spike:/shop/broken", [None])[0] == "open"
    assert "cart_loss_spike:/shop/flaky" not in spikes
    errors = alerts_of(story["alerts"], "web_error_spike")
    assert errors.get("web_error_spike:/checkout", [None])[0] == "open"
    assert "web_error_spike:/search" not in errors
    # Both windows passed before the timeline's last event: resolved.
    assert spikes["cart_loss_spike:/shop/broken"][-1] == "resolved"
    assert errors["web_error_spike:/checkout"][-1] == "resolved"


def test_order_not_visible(story):
    visible = alerts_of(story["alerts"], "order_not_visible")
    assert visible == {"order_not_visible:O-VIS": ["open"]}


def test_support_sla_risk_breach_and_backlog(story):
    risk, breach = alerts_of(story["alerts"], "support_sla_risk"), alerts_of(story["alerts"], "support_sla_breach")
    assert risk.get("support_sla_risk:TK1") == ["open", "resolved"]
    assert breach.get("support_sla_breach:TK1") == ["open", "resolved"]
    assert "support_sla_risk:TK2" not in risk and "support_sla_breach:TK2" not in breach
    backlog = alerts_of(story["alerts"], "support_backlog")
    assert backlog.get("support_backlog:email") == ["open", "resolved"]
    assert "support_backlog:sms" not in backlog


def test_repeat_contact_carries_the_earlier_ticket(story):
    repeat = alerts_of(story["alerts"], "repeat_contact")
    assert list(repeat) == ["repeat_contact:C1"]
    alert = next(a for a in story["alerts"] if a["dedup_key"] == "repeat_contact:C1")
    assert alert["severity"] == "critical"  # same order, another channel
    assert "TR1" in alert["details"]["earlier_tickets"]
    assert "not in my account" in alert["details"]["history_json"]


def test_complaint_spike_from_classified_text_in_three_languages(story):
    spikes = alerts_of(story["alerts"], "complaint_spike")
    assert spikes.get("complaint_spike:delivery", [None])[0] == "open"
    assert "complaint_spike:billing" not in spikes


def test_return_spike(story):
    spikes = alerts_of(story["alerts"], "return_spike")
    assert list(spikes) == ["return_spike:GRND-80"]
    alert = next(a for a in story["alerts"] if a["dedup_key"] == "return_spike:GRND-80")
    assert "motor stopped" in alert["details"]["top_reasons"]


def test_late_shipment_and_payment_failed_fire_on_the_clock(story):
    late = alerts_of(story["alerts"], "late_shipment")
    assert late.get("late_shipment:O-LATE") == ["open", "updated", "resolved"]
    assert "late_shipment:O-ONTIME" not in late
    payments = alerts_of(story["alerts"], "payment_failed")
    assert payments == {"payment_failed:O-PAY": ["open"]}


def test_negative_feedback(story):
    feedback = [a for a in story["alerts"] if a["rule"] == "negative_feedback"]
    assert {a["customer_id"] for a in feedback} == {"C1"}
    assert feedback[0]["status"] == "open" and {a["status"] for a in feedback} <= {"open", "updated"}
    assert len({a["alert_id"] for a in feedback}) == 1
    # Linked to the customer's latest order and ticket before the feedback, whichever was read first.
    assert feedback[-1]["order_id"] == "O-VIS" and feedback[-1]["ticket_id"] == "TR2"


def test_out_of_stock_still_quiet_with_enough_stock(story):
    assert alerts_of(story["alerts"], "out_of_stock_open_order") == {}


def case_of(story, dedup_key: str, status: str = "open", more=lambda case: True) -> dict:
    """The latest version of the case holding the alert of `dedup_key`, once its status is `status`."""
    alert = next(a for a in story["alerts"] if a["dedup_key"] == dedup_key)

    def found():
        versions = [t for t in read_all(story["bootstrap"], f"{story['prefix']}{topics.OUTREACH_TASKS.name}")
                    if any(p["alert_id"] == alert["alert_id"] for p in t["problems"])]
        return versions[-1] if versions and versions[-1]["status"] == status and more(versions[-1]) else None

    return wait_for(found, 60, f"the {status} case of {dedup_key}")


def problem_of(case: dict, rule: str) -> dict:
    return next(p for p in case["problems"] if p["rule"] == rule)


def test_cases_for_customer_alerts_with_queues_and_cancellation(story):
    cart = problem_of(case_of(story, "cart_lost:sA"), "cart_lost")
    assert cart["queue"] == "customer-success" and "ETH" in cart["action"]
    assert problem_of(case_of(story, "payment_failed:O-PAY"), "payment_failed")["queue"] == "billing"
    assert problem_of(case_of(story, "order_not_visible:O-VIS"), "order_not_visible")["queue"] == "it"
    # The SLA breach resolved (agent replied) before anyone took the case, its only problem: cancelled.
    breach = problem_of(case_of(story, "support_sla_breach:TK1", status="cancelled"), "support_sla_breach")
    assert breach["status"] == "resolved" and breach["resolution"]
    # Operations' roll-ups name no customer: no case.
    rollup = next(a for a in story["alerts"] if a["rule"] == "support_backlog")
    cases = read_all(story["bootstrap"], f"{story['prefix']}{topics.OUTREACH_TASKS.name}")
    assert all(p["alert_id"] != rollup["alert_id"] for t in cases for p in t["problems"])
    # One case per customer: every version of a customer's cases carries one task id.
    ids = {}
    for case in cases:
        ids.setdefault(case["customer_id"], set()).add(case["task_id"])
    assert all(len(found) == 1 for found in ids.values()), ids


def test_a_customer_with_four_problems_gets_one_case_with_four_problems(story):
    # Arjun (C1) lost a cart, cannot see order O-VIS in his account, contacted us twice about it and
    # gave a csat of 1: four rules, four teams' queues, one person to call him.
    case = case_of(story, "cart_lost:sA", more=lambda c: len(c["problems"]) == 4)
    assert case["customer_id"] == "C1" and case["status"] == "open" and case["case_number"] == 1
    assert sorted(p["rule"] for p in case["problems"]) == ["cart_lost", "negative_feedback", "order_not_visible",
                                                           "repeat_contact"]
    assert all(p["status"] == "open" for p in case["problems"])
    assert case["context"]["customer_name"] == "Arjun Mehta"
    lead = min(case["problems"], key=lambda p: (p["priority"], p["due_by"], p["added_at"]))
    assert (case["rule"], case["priority"]) == (lead["rule"], lead["priority"])
    assert case["queue"] == ("swarm" if lead["priority"] == "P1" else lead["queue"])
    for problem in case["problems"]:
        assert problem["action"] in case["action"]
    listed = run_forewarn(["tasks", "--json"], story["env"])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["task_id"] for row in rows if row["customer_id"] == "C1"] == [case["task_id"]]


def test_a_later_problem_joins_the_claimed_case_and_a_resolved_one_asks_to_confirm(story, tmp_path):
    env = story["env"]
    case = case_of(story, "cart_lost:sA", more=lambda c: len(c["problems"]) == 4)
    claimed = run_forewarn(["task", "claim", case["task_id"], "--as", "asha"], env)
    assert claimed.returncode == 0, claimed.stderr
    later = Timeline()
    later.web(310, "cart_add", "sC", "/shop/grinders", "C1", sku="GRND-80", qty=1, cart_item_count=1)
    later.web(311, "page_view", "sC", "/shop/compare", "C1")
    later.web(312, "cart_view", "sC", "/cart", "C1", cart_item_count=0)
    later.web(313, "checkout_completed", "sA", "/checkout/done", "C1")  # the first lost cart: bought after all
    replayed = run_forewarn(["replay", str(write_jsonl(tmp_path / "later.jsonl", later.items))], env)
    assert replayed.returncode == 0, replayed.stderr

    def settled(version):
        carts = [p for p in version["problems"] if p["rule"] == "cart_lost"]
        return len(carts) == 2 and any(p["status"] == "resolved" for p in carts)

    after = case_of(story, "cart_lost:sA", status="claimed", more=settled)
    assert after["task_id"] == case["task_id"] and after["assignee"] == "asha" and len(after["problems"]) == 5
    first, second = [p for p in after["problems"] if p["rule"] == "cart_lost"]
    assert first["status"] == "resolved" and first["resolution"] == "checked_out"
    assert first["action"] == "It went away (checked out): confirm with Arjun Mehta that all is well."
    assert second["status"] == "open" and "Burr Grinder B80 (GRND-80) x1" in second["action"]
    assert second["details"]["last_pages"] == "/shop/grinders > /shop/compare"
    assert "Went away since you took the case (cart_lost): confirm with Arjun Mehta" in after["action"]
    shown = run_forewarn(["task", "show", case["task_id"]], env)
    assert shown.returncode == 0, shown.stderr
    assert "claimed by asha" in shown.stdout and "5 problems, 4 open" in shown.stdout
    assert "Cart lost after /shop/grinders > /shop/compare" in shown.stdout


def test_tasks_move_through_claim_and_done_from_the_cli(story):
    env = story["env"]
    task = case_of(story, "payment_failed:O-PAY")
    listed = run_forewarn(["tasks", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    assert task["task_id"] in {json.loads(line)["task_id"] for line in listed.stdout.splitlines()}

    claimed = run_forewarn(["task", "claim", task["task_id"], "--as", "asha"], env)
    assert claimed.returncode == 0, claimed.stderr
    assert "claimed by asha" in claimed.stdout
    stolen = run_forewarn(["task", "done", task["task_id"], "--as", "bilal"], env)
    assert stolen.returncode == 1 and "not_assignee" in stolen.stderr
    done = run_forewarn(["task", "done", task["task_id"], "--as", "asha"], env)
    assert done.returncode == 0, done.stderr
    again = run_forewarn(["task", "claim", task["task_id"], "--as", "asha"], env)
    assert again.returncode == 1 and "illegal_transition" in again.stderr
    unknown = run_forewarn(["task", "claim", "T-does-not-exist", "--as", "asha"], env)
    assert unknown.returncode == 1 and "unknown_task" in unknown.stderr
    after = run_forewarn(["tasks", "--json"], env)
    assert task["task_id"] not in {json.loads(line)["task_id"] for line in after.stdout.splitlines()}
    rejected = read_all(story["bootstrap"], f"{story['prefix']}{topics.TASK_UPDATES_REJECTED.name}")
    assert {r["reason"] for r in rejected} >= {"not_assignee", "illegal_transition", "unknown_task"}


def test_deadline_fires_on_an_idle_stream(kafka_bootstrap, fresh_prefix, tmp_path):
    # A chat reply target of 10 s (thresholds are settings). Once the worker has read the ticket and
    # nothing else arrives, its clock flows on from the ticket's time with wall time.
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path, FOREWARN_SLA_CHAT_S="10")
    assert run_forewarn(["topics", "create"], env).returncode == 0
    opened = int(time.time() * 1000)
    line = {"topic": "support", "value": {"event_id": "idle-1", "ts": iso(opened), "event_type": "ticket_opened",
                                          "ticket_id": "TI", "customer_id": "CI", "channel": "chat"}}
    with Workers(env, 1, tmp_path):
        produced = run_forewarn(["produce", str(write_jsonl(tmp_path / "idle.jsonl", [line]))], env)
        assert produced.returncode == 0, produced.stderr

        def breached():
            return alerts_of(read_alerts(kafka_bootstrap, fresh_prefix), "support_sla_breach").get(
                "support_sla_breach:TI")

        assert wait_for(breached, 90, "the breach of a ticket nobody answered") == ["open"]
        risk = alerts_of(read_alerts(kafka_bootstrap, fresh_prefix), "support_sla_risk")
        assert risk == {"support_sla_risk:TI": ["open", "resolved"]}  # superseded by the breach


def lifecycle_of(alerts: list[dict]) -> dict[str, tuple[str, str, str]]:
    """dedup key -> (severity it opened with, first status, last status): what a reader acts on.

    "updated" counts as open: whether an alert was opened with all its details or opened and then
    updated depends on which input a stage read first (the negative feedback's links, say).
    """
    out: dict[str, tuple[str, str, str]] = {}
    for alert in alerts:
        status = "open" if alert["status"] == "updated" else alert["status"]
        first = out.get(alert["dedup_key"])
        out[alert["dedup_key"]] = (first[0], first[1], status) if first else (alert["severity"], status, status)
    return out


def test_replaying_the_same_timeline_gives_the_same_alerts(story, kafka_bootstrap, tmp_path):
    prefix = f"t-again-{int(time.time() * 1000) % 10**8}-"
    env = forewarn_env(kafka_bootstrap, prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    timeline = write_jsonl(tmp_path / "timeline.jsonl", story_timeline().items)
    expected = lifecycle_of(story["alerts"])
    with Workers(env, 1, tmp_path) as workers:
        assert run_forewarn(["replay", str(timeline)], env).returncode == 0
        again = wait_for(lambda: workers.assert_running() or story_settled(kafka_bootstrap, prefix), 300,
                         "the second replay to settle")
    assert lifecycle_of(again) == expected
