"""Order deadlines and visibility: late_shipment, payment_failed, order_not_visible."""

from streams.detectors import orders
from streams.thresholds import HOUR_MS, MINUTE_MS, Thresholds

LIMITS = Thresholds()
T0 = 1_700_000_000_000
CUSTOMERS = {"C-1": {"customer_id": "C-1", "name": "Arjun Mehta", "tier": "gold", "lifetime_value_cents": 412_000}}


def order_event(n, kind, ts, **extra):
    return {"event_id": f"o{n}", "ts": ts, "event_type": kind, "order_id": "O-1", "customer_id": "C-1",
            "lines": [{"sku": "ETH", "qty": 2, "unit_price_cents": 1990}] if kind == "placed" else [], **extra}


def run(events, state=None):
    alerts = []
    for event in events:
        if "kind" in event:
            result = orders.apply_lookup(state, event, LIMITS, CUSTOMERS, detected_at=0)
        else:
            result = orders.apply_order_event(state, event, LIMITS, CUSTOMERS, detected_at=0)
        state = result.state
        alerts += result.alerts
    return state, alerts


def tick(state, clock):
    result = orders.due(state, clock, LIMITS, CUSTOMERS, detected_at=0)
    return result.state, result.alerts


def statuses(alerts, rule):
    return [(a["status"], a["severity"]) for a in alerts if a["rule"] == rule]


PROMISED = T0 + 10 * HOUR_MS


def test_late_shipment_warns_four_hours_before_then_breaches_on_the_clock_then_resolves():
    state, alerts = run([order_event(1, "placed", T0, promised_ship_by=PROMISED)])
    assert alerts == []
    assert orders.next_due(state, LIMITS) == PROMISED - 4 * HOUR_MS
    state, alerts = tick(state, PROMISED - 4 * HOUR_MS - 1)
    assert alerts == []  # just under the warning time
    state, alerts = tick(state, PROMISED - 4 * HOUR_MS)
    assert statuses(alerts, "late_shipment") == [("open", "warning")]
    assert alerts[0]["audience"] == "cs" and alerts[0]["order_id"] == "O-1"
    assert orders.next_due(state, LIMITS) == PROMISED
    state, alerts = tick(state, PROMISED)
    assert statuses(alerts, "late_shipment") == [("updated", "critical")]
    state, alerts = run([order_event(2, "shipped", PROMISED + HOUR_MS)], state)
    assert statuses(alerts, "late_shipment") == [("resolved", "critical")]
    assert alerts[0]["details"]["resolution"] == "shipped late"
    assert orders.next_due(state, LIMITS) is None


def test_shipped_in_time_never_alerts():
    _, alerts = run([order_event(1, "placed", T0, promised_ship_by=PROMISED),
                     order_event(2, "shipped", PROMISED - 5 * HOUR_MS)])
    assert alerts == []


def test_shipment_read_after_its_deadline_still_raises_the_breach_and_resolves_it():
    # Replayed history: nothing ticked in between, the shipment is the next thing read.
    _, alerts = run([order_event(1, "placed", T0, promised_ship_by=PROMISED),
                     order_event(2, "shipped", PROMISED + 2 * HOUR_MS)])
    assert statuses(alerts, "late_shipment") == [("open", "warning"), ("updated", "critical"),
                                                 ("resolved", "critical")]
    assert alerts[1]["event_ts"] == PROMISED


def test_payment_failed_without_success_in_thirty_minutes():
    state, alerts = run([order_event(1, "placed", T0), order_event(2, "payment_failed", T0 + MINUTE_MS)])
    assert alerts == []
    state, alerts = tick(state, T0 + MINUTE_MS + LIMITS.payment_grace_ms - 1)
    assert alerts == []
    state, alerts = tick(state, T0 + MINUTE_MS + LIMITS.payment_grace_ms)
    assert statuses(alerts, "payment_failed") == [("open", "warning")]
    state, alerts = run([order_event(3, "payment_succeeded", T0 + 2 * HOUR_MS)], state)
    assert statuses(alerts, "payment_failed") == [("resolved", "warning")]
    assert alerts[0]["details"]["resolution"] == "paid"


def test_payment_retried_in_time_does_not_alert_but_a_late_success_still_raises():
    _, alerts = run([order_event(1, "placed", T0), order_event(2, "payment_failed", T0),
                     order_event(3, "payment_succeeded", T0 + 10 * MINUTE_MS)])
    assert alerts == []
    _, alerts = run([order_event(1, "placed", T0), order_event(2, "payment_failed", T0),
                     order_event(3, "payment_succeeded", T0 + 45 * MINUTE_MS)])
    assert statuses(alerts, "payment_failed") == [("open", "warning"), ("resolved", "warning")]


def lookup(n, ts, found):
    return {"event_id": f"l{n}", "ts": ts, "kind": "order_lookup", "key": "O-1",
            "data": {"found": "true" if found else "false", "session_id": "sess", "page": "/account/orders"}}


def test_order_not_visible_when_lookup_misses_a_placed_order():
    state, alerts = run([order_event(1, "placed", T0), lookup(1, T0 + HOUR_MS, False)])
    assert statuses(alerts, "order_not_visible") == [("open", "warning")]
    assert alerts[0]["audience"] == "it" and alerts[0]["customer_id"] == "C-1"
    state, alerts = run([lookup(2, T0 + 2 * HOUR_MS, False)], state)
    assert statuses(alerts, "order_not_visible") == [("updated", "critical")]
    state, alerts = run([lookup(3, T0 + 3 * HOUR_MS, True)], state)
    assert statuses(alerts, "order_not_visible") == [("resolved", "critical")]


def test_lookup_read_before_the_order_is_judged_when_the_order_arrives():
    state, alerts = run([lookup(1, T0 + HOUR_MS, False)])
    assert alerts == []
    _, alerts = run([order_event(1, "placed", T0)], state)
    assert statuses(alerts, "order_not_visible") == [("open", "warning")]


def test_lookup_before_placing_or_found_is_not_an_alert():
    _, alerts = run([lookup(1, T0 - HOUR_MS, False), order_event(1, "placed", T0)])
    assert alerts == []
    _, alerts = run([order_event(1, "placed", T0), lookup(1, T0 + HOUR_MS, True)])
    assert alerts == []


def test_an_order_is_finished_once_delivered_or_cancelled_with_nothing_open():
    state, _ = run([order_event(1, "placed", T0, promised_ship_by=PROMISED), order_event(2, "shipped", T0 + HOUR_MS)])
    assert not orders.finished(state)  # shipped: a lookup may still miss it
    state, _ = run([order_event(3, "delivered", T0 + 2 * HOUR_MS)], state)
    assert orders.finished(state)
    state, _ = run([order_event(1, "placed", T0), lookup(1, T0 + HOUR_MS, False), order_event(2, "cancelled", T0 + 2)])
    assert orders.finished(state)  # the cancellation resolved the visibility alert
