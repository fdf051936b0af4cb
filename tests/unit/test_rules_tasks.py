"""return_spike, the alert lifecycle's cooldown, outreach tasks (routing, priority, state machine), due index."""

from streams.detectors import lifecycle, returns, stock, tasks
from streams.thresholds import DAY_MS, HOUR_MS, MINUTE_MS, Thresholds

LIMITS = Thresholds()
T0 = 1_700_000_000_000
CATALOG = {"GRND-80": {"sku": "GRND-80", "name": "Burr Grinder B80", "category": "grinders"}}


def line(n, qty, ts):
    return {"event_id": f"l{n}", "ts": ts, "action": "open", "order_id": f"O{n}", "customer_id": "C", "sku": "GRND-80",
            "qty": qty, "placed_ts": ts, "reason": "placed"}


def ret(n, ts, qty=1, reason="arrived broken"):
    return {"event_id": f"r{n}", "ts": ts, "return_id": f"R{n}", "order_id": f"O{n}", "customer_id": "C",
            "sku": "GRND-80", "qty": qty, "reason": reason}


def feed(events, state=None, sku_stage=None):
    """Order lines go through the out-of-stock SKU stage (which counts units ordered), returns to the return stage."""
    sku_stage = sku_stage if sku_stage is not None else {}
    alerts = []
    for event in events:
        if "action" in event:
            sku_stage.update(stock.apply_order_line(sku_stage or None, event, stock.Reference(), detected_at=0,
                                                    rollup_orders=100).state)
            continue
        result = returns.apply_return(state, event, LIMITS, CATALOG, sku_stage.get("ordered", {}), detected_at=0)
        state, alerts = result.state, alerts + result.alerts
    return state, alerts, sku_stage


def test_return_spike_five_returns_and_ten_percent_of_ordered_units():
    orders = [line(n, 1, T0 + n * HOUR_MS) for n in range(50)]
    four = [ret(n, T0 + 3 * DAY_MS + n * HOUR_MS) for n in range(4)]
    state, alerts, skus = feed(orders + four)
    assert alerts == []
    state, alerts, _ = feed([ret(9, T0 + 4 * DAY_MS, reason="motor stopped")], state, skus)
    assert [(a["rule"], a["status"], a["audience"]) for a in alerts] == [("return_spike", "open", "product")]
    assert "arrived broken=4" in alerts[0]["details"]["top_reasons"]
    assert alerts[0]["sku"] == "GRND-80"
    # The window passes: resolved.
    assert returns.next_due(state, LIMITS) == T0 + 3 * DAY_MS + 7 * DAY_MS + 1
    result = returns.evaluate(state, T0 + 11 * DAY_MS, LIMITS, CATALOG, skus["ordered"], detected_at=0)
    assert [a["status"] for a in result.alerts] == ["resolved"]


def test_five_returns_under_ten_percent_of_a_best_seller_do_not_spike():
    orders = [line(n, 2, T0 + n * HOUR_MS) for n in range(30)]  # 60 units ordered
    _, alerts, _ = feed(orders + [ret(100 + n, T0 + 2 * DAY_MS + n) for n in range(5)])  # 5 units: 8.3%
    assert alerts == []


def test_cooldown_keeps_a_resolved_key_quiet_unless_severity_rises():
    track, status = lifecycle.transition(None, key="k", active=True, severity="warning", ts=T0, event_id="e1",
                                         cooldown_ms=LIMITS.alert_cooldown_ms)
    assert status == "open"
    track, status = lifecycle.transition(track, key="k", active=False, severity="warning", ts=T0 + 1,
                                         event_id="e2", cooldown_ms=LIMITS.alert_cooldown_ms)
    assert status == "resolved"
    quiet, status = lifecycle.transition(track, key="k", active=True, severity="warning", ts=T0 + 29 * MINUTE_MS,
                                         event_id="e3", cooldown_ms=LIMITS.alert_cooldown_ms)
    assert status is None
    worse, status = lifecycle.transition(track, key="k", active=True, severity="critical", ts=T0 + 29 * MINUTE_MS,
                                         event_id="e3", cooldown_ms=LIMITS.alert_cooldown_ms)
    assert status == "open" and worse["alert_id"] != track["alert_id"]
    _, status = lifecycle.transition(track, key="k", active=True, severity="warning", ts=T0 + 31 * MINUTE_MS,
                                     event_id="e4", cooldown_ms=LIMITS.alert_cooldown_ms)
    assert status == "open"


def alert(status="open", severity="warning", rule="cart_lost", customer="C-1", alert_id="A-1", ts=T0, **extra):
    return {"alert_id": alert_id, "rule": rule, "status": status, "severity": severity, "audience": "cs",
            "dedup_key": f"{rule}:s1", "title": f"{rule} title", "summary": "s", "customer_id": customer,
            "order_id": extra.pop("order_id", None), "sku": None, "ticket_id": extra.pop("ticket_id", None),
            "session_id": "s1", "page": "/p", "category": None, "details": {"lost_skus": "ETH", **extra},
            "evidence": ["e1"], "event_ts": ts, "detected_at": ts}


STANDARD = {"name": "Dev Das", "tier": "standard", "lifetime_value_cents": 10_000}
PLATINUM = {"name": "Priya Sen", "tier": "platinum", "lifetime_value_cents": 900_000, "phone": "+91 98200 12345"}


def test_case_opened_with_queue_priority_and_self_contained_context():
    state, task = tasks.apply_alert(None, alert(), STANDARD)
    assert task["status"] == "open" and task["queue"] == "customer-success" and task["case_number"] == 1
    assert task["task_id"] == tasks.case_id_for("C-1") and task["alert_id"] == "A-1"
    assert task["priority"] in tasks.PRIORITIES
    assert "Dev Das" in task["action"] and "ETH" in task["action"]
    assert task["context"]["customer_name"] == "Dev Das" and task["context"]["alert.lost_skus"] == "ETH"
    assert task["due_by"] == T0 + 60 * MINUTE_MS
    [problem] = task["problems"]
    assert (problem["alert_id"], problem["rule"], problem["status"]) == ("A-1", "cart_lost", "open")
    assert problem["details"] == {"lost_skus": "ETH", "session_id": "s1", "page": "/p"}
    assert problem["action"] == task["action"] and problem["added_at"] == T0


def test_a_lost_cart_task_names_the_products_not_only_their_codes():
    lost = alert(lost_items_json='{"ETH": 2, "GONE": 1}')
    _, task = tasks.apply_alert(None, lost, STANDARD, {"ETH": {"name": "Ethiopia Yirgacheffe 1kg"}})
    assert "their cart lost Ethiopia Yirgacheffe 1kg (ETH) x2, GONE x1 on our site" in task["action"]
    assert task["context"]["cart_lost_products"] == "Ethiopia Yirgacheffe 1kg (ETH) x2, GONE x1"


def test_hardest_most_valuable_cases_go_to_swarm():
    _, task = tasks.apply_alert(None, alert(severity="critical", rule="support_sla_breach",
                                            due_by_ms=str(T0 + 10 * MINUTE_MS)), PLATINUM)
    assert task["priority"] == "P1" and task["queue"] == "swarm"
    assert task["context"]["customer_phone"] == "+91 98200 12345"
    _, task = tasks.apply_alert(None, alert(rule="payment_failed"), STANDARD)
    assert task["queue"] == "billing" and task["priority"] in ("P3", "P4")


def test_alert_without_customer_or_task_rule_needs_no_task():
    assert not tasks.needs_task(alert(customer=None))
    assert not tasks.needs_task(alert(rule="web_error_spike"))
    assert tasks.needs_task(alert())


def update(n, action, who="asha", ts=T0 + 1000, task_id=None):
    return {"event_id": f"u{n}", "ts": ts + n, "task_id": task_id or tasks.case_id_for("C-1"), "action": action,
            "assignee": who}


def test_claim_done_and_the_rejections():
    state, _ = tasks.apply_alert(None, alert(), STANDARD)
    state, task, rejected = tasks.apply_update(state, update(1, "done"), now_ms=0)
    assert task is None and rejected["reason"] == "illegal_transition" and rejected["task_status"] == "open"
    state, task, rejected = tasks.apply_update(state, update(2, "claim"), now_ms=0)
    assert rejected is None and task["status"] == "claimed" and task["assignee"] == "asha"
    assert task["updated_at"] == T0 + 1002
    _, task, rejected = tasks.apply_update(state, update(3, "claim", who="bilal"), now_ms=0)
    assert task is None and rejected["reason"] == "illegal_transition"
    _, task, rejected = tasks.apply_update(state, update(4, "done", who="bilal"), now_ms=0)
    assert rejected["reason"] == "not_assignee"
    state, task, rejected = tasks.apply_update(state, update(5, "release"), now_ms=0)
    assert task["status"] == "open" and task["assignee"] is None
    state, task, _ = tasks.apply_update(state, update(6, "claim", who="bilal"), now_ms=0)
    state, task, _ = tasks.apply_update(state, update(7, "done", who="bilal"), now_ms=0)
    assert task["status"] == "done"
    _, task, rejected = tasks.apply_update(state, update(8, "release", who="bilal"), now_ms=0)
    assert rejected["reason"] == "illegal_transition" and rejected["task_status"] == "done"
    _, _, rejected = tasks.apply_update(None, update(9, "claim", task_id="T-nope"), now_ms=0)
    assert rejected["reason"] == "unknown_task" and rejected["task_id"] == "T-nope"


def test_resolved_alert_cancels_an_unclaimed_case_but_not_a_claimed_one():
    state, _ = tasks.apply_alert(None, alert(), STANDARD)
    _, task = tasks.apply_alert(state, alert(status="resolved", resolution="checked_out"), STANDARD)
    assert task["status"] == "cancelled" and task["problems"][0]["status"] == "resolved"
    state, _ = tasks.apply_alert(None, alert(), STANDARD)
    state, _, _ = tasks.apply_update(state, update(1, "claim"), now_ms=0)
    _, task = tasks.apply_alert(state, alert(status="resolved", resolution="checked_out"), STANDARD)
    assert task["status"] == "claimed" and task["context"]["alert_status"] == "resolved"
    assert task["action"] == ("The problem went away (checked out): confirm with Dev Das that all is well, then "
                              "mark the task done.")
    assert task["problems"][0]["resolution"] == "checked_out"


FOUR = [  # one customer, one order, four problems from four rules, a minute apart
    alert(rule="support_sla_breach", alert_id="A-sla", ts=T0, ticket_id="TK-1", order_id="O-1",
          due_by_ms=str(T0 + 20 * MINUTE_MS)),
    alert(rule="payment_failed", alert_id="A-pay", ts=T0 + MINUTE_MS, order_id="O-1"),
    alert(rule="negative_feedback", alert_id="A-fb", ts=T0 + 2 * MINUTE_MS, order_id="O-1",
          feedback_type="nps", score="2"),
    alert(rule="repeat_contact", alert_id="A-rep", ts=T0 + 3 * MINUTE_MS, order_id="O-1", tickets="3"),
]


def apply_all(alerts, state=None, customer=STANDARD):
    versions = []
    for one in alerts:
        state, version = tasks.apply_alert(state, one, customer)
        versions += [version] if version else []
    return state, versions


def test_four_problems_of_one_customer_make_one_case_in_one_queue():
    state, versions = apply_all(FOUR, customer=PLATINUM)
    assert {v["task_id"] for v in versions} == {tasks.case_id_for("C-1")}
    case = versions[-1]
    assert case["status"] == "open" and case["case_number"] == 1
    assert [p["rule"] for p in case["problems"]] == ["support_sla_breach", "payment_failed", "negative_feedback",
                                                     "repeat_contact"]
    # The most urgent problem leads: the reply target 20 minutes away, for a platinum customer: swarm.
    assert case["rule"] == "support_sla_breach" and case["alert_id"] == "A-sla"
    assert case["priority"] == "P1" and case["queue"] == "swarm"
    assert case["due_by"] == min(p["due_by"] for p in case["problems"]) == T0 + 20 * MINUTE_MS
    # One action for one contact: the lead's, then the other three.
    assert case["action"].startswith("Ticket TK-1 from Priya Sen missed its reply target")
    assert "In the same contact, 3 more problems:" in case["action"]
    for problem in case["problems"][1:]:
        assert problem["action"] in case["action"]
    assert case["created_at"] == T0 and case["updated_at"] == T0 + 3 * MINUTE_MS


def test_a_later_problem_joins_the_case_its_rep_claimed():
    state, _ = apply_all(FOUR[:2])
    state, claimed, _ = tasks.apply_update(state, update(1, "claim"), now_ms=0)
    state, case = tasks.apply_alert(state, FOUR[2], STANDARD)
    assert case["status"] == "claimed" and case["assignee"] == "asha"
    assert [p["alert_id"] for p in case["problems"]] == ["A-sla", "A-pay", "A-fb"]


def test_a_problem_resolving_on_a_claimed_case_asks_the_rep_to_confirm():
    state, _ = apply_all(FOUR[:2])
    state, _, _ = tasks.apply_update(state, update(1, "claim"), now_ms=0)
    state, case = tasks.apply_alert(state, alert(rule="payment_failed", alert_id="A-pay", status="resolved",
                                                 ts=T0 + 5 * MINUTE_MS, resolution="payment_retried"), STANDARD)
    pay = case["problems"][1]
    assert pay["status"] == "resolved" and pay["resolution"] == "payment_retried"
    assert pay["action"] == "It went away (payment retried): confirm with Dev Das that all is well."
    assert case["status"] == "claimed" and case["rule"] == "support_sla_breach"
    assert "Went away since you took the case (payment_failed): confirm with Dev Das" in case["action"]
    # The other problem resolves too: the whole case is only to confirm, and the rep finishes it.
    state, case = tasks.apply_alert(state, alert(rule="support_sla_breach", alert_id="A-sla", status="resolved",
                                                 ts=T0 + 6 * MINUTE_MS, resolution="agent_replied"), STANDARD)
    assert case["status"] == "claimed"
    assert case["action"] == ("Every problem went away (agent replied, payment retried): confirm with Dev Das "
                              "that all is well, then mark the task done.")


def test_a_problem_resolving_on_an_open_case_leaves_the_rest_and_cancels_it_when_none_is_left():
    state, _ = apply_all(FOUR[:2])
    state, case = tasks.apply_alert(state, alert(rule="support_sla_breach", alert_id="A-sla", status="resolved",
                                                 ts=T0 + 5 * MINUTE_MS, resolution="agent_replied"), STANDARD)
    assert case["status"] == "open" and case["rule"] == "payment_failed" and case["queue"] == "billing"
    assert case["problems"][0]["action"] == ("It went away (agent replied) before anyone contacted Dev Das: "
                                             "no need to raise it.")
    assert "Ticket TK-1" not in case["action"]
    state, case = tasks.apply_alert(state, alert(rule="payment_failed", alert_id="A-pay", status="resolved",
                                                 ts=T0 + 6 * MINUTE_MS), STANDARD)
    assert case["status"] == "cancelled"


def test_after_a_case_closes_the_next_problem_opens_the_next_case_and_old_alerts_stay_closed():
    state, _ = apply_all(FOUR[:1])
    state, _, _ = tasks.apply_update(state, update(1, "claim"), now_ms=0)
    state, done, _ = tasks.apply_update(state, update(2, "done"), now_ms=0)
    assert done["status"] == "done"
    # A later version of the finished problem's alert does not reopen it.
    same, nothing = tasks.apply_alert(state, dict(FOUR[0], status="updated", event_ts=T0 + 9 * MINUTE_MS), STANDARD)
    assert nothing is None and same["task"]["status"] == "done"
    state, case = tasks.apply_alert(state, FOUR[1], STANDARD)
    assert case["task_id"] == done["task_id"] and case["case_number"] == 2
    assert case["status"] == "open" and case["assignee"] is None
    assert [p["alert_id"] for p in case["problems"]] == ["A-pay"] and case["created_at"] == FOUR[1]["event_ts"]


def test_the_same_alert_version_twice_publishes_once():
    state, first = tasks.apply_alert(None, FOUR[0], STANDARD)
    state, again = tasks.apply_alert(state, FOUR[0], STANDARD)
    assert first is not None and again is None


def test_task_requests_are_keyed_by_the_customers_case():
    request = tasks.request_record(FOUR[1])
    assert request["key"] == tasks.case_id_for("C-1") != tasks.case_id_for("C-2")


def test_return_spike_updates_as_returns_double():
    orders = [line(n, 1, T0 + n * HOUR_MS) for n in range(100)]
    state, alerts, skus = feed(orders + [ret(n, T0 + 5 * DAY_MS + n) for n in range(10)])
    assert [a["status"] for a in alerts] == ["open"]  # at the 5th return
    state, more, _ = feed([ret(100 + n, T0 + 5 * DAY_MS + 100 + n) for n in range(6)], state, skus)
    assert [a["status"] for a in more] == ["updated"] and more[0]["details"]["returns"] == "16"
