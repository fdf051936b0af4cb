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


def alert(status="open", severity="warning", rule="cart_lost", customer="C-1", **extra):
    return {"alert_id": "A-1", "rule": rule, "status": status, "severity": severity, "audience": "cs",
            "dedup_key": f"{rule}:s1", "title": "t", "summary": "s", "customer_id": customer, "order_id": None,
            "sku": None, "ticket_id": None, "session_id": "s1", "page": "/p", "category": None,
            "details": {"lost_skus": "ETH", **extra}, "evidence": ["e1"], "event_ts": T0, "detected_at": T0}


STANDARD = {"name": "Dev Das", "tier": "standard", "lifetime_value_cents": 10_000}
PLATINUM = {"name": "Priya Sen", "tier": "platinum", "lifetime_value_cents": 900_000}


def test_task_created_with_queue_priority_and_self_contained_context():
    state, task = tasks.apply_alert(None, alert(), STANDARD)
    assert task["status"] == "open" and task["queue"] == "customer-success"
    assert task["task_id"] == tasks.task_id_for("A-1") and task["alert_id"] == "A-1"
    assert task["priority"] in tasks.PRIORITIES
    assert "Dev Das" in task["action"] and "ETH" in task["action"]
    assert task["context"]["customer_name"] == "Dev Das" and task["context"]["alert.lost_skus"] == "ETH"
    assert task["due_by"] == T0 + 60 * MINUTE_MS


def test_a_lost_cart_task_names_the_products_not_only_their_codes():
    lost = alert(lost_items_json='{"ETH": 2, "GONE": 1}')
    _, task = tasks.apply_alert(None, lost, STANDARD, {"ETH": {"name": "Ethiopia Yirgacheffe 1kg"}})
    assert "their cart lost Ethiopia Yirgacheffe 1kg (ETH) x2, GONE x1 on our site" in task["action"]
    assert task["context"]["cart_lost_products"] == "Ethiopia Yirgacheffe 1kg (ETH) x2, GONE x1"


def test_hardest_most_valuable_cases_go_to_swarm():
    _, task = tasks.apply_alert(None, alert(severity="critical", rule="support_sla_breach",
                                            due_by_ms=str(T0 + 10 * MINUTE_MS)), PLATINUM)
    assert task["priority"] == "P1" and task["queue"] == "swarm"
    _, task = tasks.apply_alert(None, alert(rule="payment_failed"), STANDARD)
    assert task["queue"] == "billing" and task["priority"] in ("P3", "P4")


def test_alert_without_customer_or_task_rule_needs_no_task():
    assert not tasks.needs_task(alert(customer=None))
    assert not tasks.needs_task(alert(rule="web_error_spike"))
    assert tasks.needs_task(alert())


def update(n, action, who="asha", ts=T0 + 1000, task_id=None):
    return {"event_id": f"u{n}", "ts": ts + n, "task_id": task_id or tasks.task_id_for("A-1"), "action": action,
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


def test_resolved_alert_cancels_an_unclaimed_task_but_not_a_claimed_one():
    state, _ = tasks.apply_alert(None, alert(), STANDARD)
    _, task = tasks.apply_alert(state, alert(status="resolved", resolution="checked_out"), STANDARD)
    assert task["status"] == "cancelled"
    state, _ = tasks.apply_alert(None, alert(), STANDARD)
    state, _, _ = tasks.apply_update(state, update(1, "claim"), now_ms=0)
    _, task = tasks.apply_alert(state, alert(status="resolved", resolution="checked_out"), STANDARD)
    assert task["status"] == "claimed" and task["context"]["alert_status"] == "resolved"


def test_return_spike_updates_as_returns_double():
    orders = [line(n, 1, T0 + n * HOUR_MS) for n in range(100)]
    state, alerts, skus = feed(orders + [ret(n, T0 + 5 * DAY_MS + n) for n in range(10)])
    assert [a["status"] for a in alerts] == ["open"]  # at the 5th return
    state, more, _ = feed([ret(100 + n, T0 + 5 * DAY_MS + 100 + n) for n in range(6)], state, skus)
    assert [a["status"] for a in more] == ["updated"] and more[0]["details"]["returns"] == "16"
