"""Support rules: support_sla_risk / _breach, support_backlog, repeat_contact, complaint_spike, negative_feedback."""

from streams.detectors import backlog, complaints, customers, support
from streams.thresholds import HOUR_MS, MINUTE_MS, Thresholds

LIMITS = Thresholds()
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS  # on a window boundary
PEOPLE = {"C-1": {"name": "Asha Rao", "tier": "gold"}, "C-P": {"name": "Priya Sen", "tier": "platinum"}}


def ticket_event(n, kind, ts, ticket="T1", channel="chat", customer="C-1", **extra):
    return {"event_id": f"e{n}", "ts": ts, "event_type": kind, "ticket_id": ticket, "customer_id": customer,
            "channel": channel, **extra}


def run(events, state=None):
    alerts, signals = [], []
    for event in events:
        result = support.apply_support_event(state, event, LIMITS, PEOPLE, detected_at=0)
        state = result.state
        alerts += result.alerts
        signals += result.signals
    return state, alerts, signals


def tick(state, clock):
    result = support.due(state, clock, LIMITS, PEOPLE, detected_at=0)
    return result.alerts


def pairs(alerts):
    return [(a["rule"], a["status"]) for a in alerts]


def test_chat_ticket_risk_at_80_percent_breach_at_target_resolved_by_reply():
    state, alerts, signals = run([ticket_event(1, "ticket_opened", T0, text="my order has not arrived")])
    assert alerts == []
    assert {s[0] for s in signals} == {support.CHANNEL_SIGNALS, support.CUSTOMER_SIGNALS, support.CATEGORY_SIGNALS}
    category = next(s[1] for s in signals if s[0] == support.CATEGORY_SIGNALS)
    assert category["key"] == "delivery" and category["data"]["derived"] == "true"
    risk_at = T0 + 2 * MINUTE_MS * 80 // 100
    assert support.next_due(state, LIMITS, PEOPLE) == risk_at
    assert tick(state, risk_at - 1) == []
    assert pairs(tick(state, risk_at)) == [("support_sla_risk", "open")]
    alerts = tick(state, T0 + 2 * MINUTE_MS)
    assert pairs(alerts) == [("support_sla_risk", "resolved"), ("support_sla_breach", "open")]
    assert alerts[1]["severity"] == "critical" and alerts[1]["ticket_id"] == "T1"
    state, alerts, _ = run([ticket_event(2, "agent_replied", T0 + 3 * MINUTE_MS)], state)
    assert pairs(alerts) == [("support_sla_breach", "resolved")]
    assert support.next_due(state, LIMITS, PEOPLE) is None


def test_reply_in_time_raises_nothing_and_platinum_targets_are_halved():
    _, alerts, _ = run([ticket_event(1, "ticket_opened", T0), ticket_event(2, "agent_replied", T0 + 90_000)])
    assert alerts == []
    state, _, _ = run([ticket_event(1, "ticket_opened", T0, customer="C-P")])
    assert support.next_due(state, LIMITS, PEOPLE) == T0 + MINUTE_MS * 80 // 100


def test_late_reply_read_first_still_raises_and_resolves_the_breach():
    _, alerts, _ = run([ticket_event(1, "ticket_opened", T0, channel="email"),
                        ticket_event(2, "agent_replied", T0 + 5 * HOUR_MS)])
    assert pairs(alerts) == [("support_sla_risk", "open"), ("support_sla_risk", "resolved"),
                             ("support_sla_breach", "open"), ("support_sla_breach", "resolved")]
    assert alerts[2]["event_ts"] == T0 + 4 * HOUR_MS


def test_customer_reply_starts_a_new_wait():
    state, _, _ = run([ticket_event(1, "ticket_opened", T0), ticket_event(2, "agent_replied", T0 + MINUTE_MS),
                       ticket_event(3, "customer_replied", T0 + HOUR_MS)])
    assert support.next_due(state, LIMITS, PEOPLE) == T0 + HOUR_MS + 96_000
    assert pairs(tick(state, T0 + HOUR_MS + 96_000)) == [("support_sla_risk", "open")]


def channel_signal(n, kind, ticket, ts, target=2 * MINUTE_MS):
    return {"event_id": f"c{n}", "ts": ts, "kind": kind, "key": "chat",
            "data": {"ticket_id": ticket, "target_ms": str(target)}}


def test_backlog_opens_at_twenty_waiting_and_resolves_when_answered():
    state, alerts = None, []
    for n in range(19):
        result = backlog.apply_channel_signal(state, channel_signal(n, "ticket_waiting", f"T{n}", T0 + n * 1000,
                                                                    target=HOUR_MS), LIMITS, detected_at=0)
        state, alerts = result.state, alerts + result.alerts
    assert alerts == []
    result = backlog.apply_channel_signal(state, channel_signal(19, "ticket_waiting", "T19", T0 + 19_000,
                                                                target=HOUR_MS), LIMITS, detected_at=0)
    assert pairs(result.alerts) == [("support_backlog", "open")]
    assert result.alerts[0]["audience"] == "ops" and result.alerts[0]["details"]["waiting"] == "20"
    result = backlog.apply_channel_signal(result.state, channel_signal(20, "ticket_answered", "T0", T0 + 20_000),
                                          LIMITS, detected_at=0)
    assert pairs(result.alerts) == [("support_backlog", "resolved")]


def test_backlog_opens_when_the_oldest_waited_twice_its_target():
    result = backlog.apply_channel_signal(None, channel_signal(1, "ticket_waiting", "T1", T0), LIMITS, detected_at=0)
    assert result.alerts == []
    assert backlog.next_due(result.state, LIMITS) == T0 + 4 * MINUTE_MS + 1
    assert backlog.evaluate(result.state, T0 + 4 * MINUTE_MS, LIMITS, detected_at=0).alerts == []
    late = backlog.evaluate(result.state, T0 + 4 * MINUTE_MS + 1, LIMITS, detected_at=0)
    assert pairs(late.alerts) == [("support_backlog", "open")]


def contact(n, ts, ticket, channel="chat", order=None, kind="ticket_opened", customer="C-1"):
    data = {"ticket_id": ticket, "channel": channel, "category": "delivery", "text": f"text {n}"}
    if order:
        data["order_id"] = order
    return {"event_id": f"k{n}", "ts": ts, "kind": kind, "key": customer, "data": data}


def feed_customer(signals, state=None):
    alerts = []
    for sig in signals:
        result = customers.apply_customer_signal(state, sig, LIMITS, PEOPLE, detected_at=0)
        state, alerts = result.state, alerts + result.alerts
    return state, alerts


def test_second_ticket_within_72_hours_is_a_repeat_contact_with_history():
    state, alerts = feed_customer([contact(1, T0, "T1"), contact(2, T0 + 71 * HOUR_MS, "T2")])
    assert [(a["rule"], a["status"], a["severity"]) for a in alerts] == [("repeat_contact", "open", "warning")]
    assert "T1" in alerts[0]["details"]["earlier_tickets"] and "text 1" in alerts[0]["details"]["history_json"]
    state, alerts = feed_customer([contact(3, T0 + 71 * HOUR_MS, "T1", kind="ticket_resolved"),
                                   contact(4, T0 + 72 * HOUR_MS, "T2", kind="ticket_resolved")], state)
    assert pairs(alerts) == [("repeat_contact", "resolved")]


def test_tickets_further_apart_than_72_hours_are_not_a_repeat():
    _, alerts = feed_customer([contact(1, T0, "T1"), contact(2, T0 + 73 * HOUR_MS, "T2")])
    assert alerts == []


def test_repeat_on_another_channel_or_same_order_is_critical():
    _, alerts = feed_customer([contact(1, T0, "T1", channel="email"), contact(2, T0 + HOUR_MS, "T2", channel="phone")])
    assert alerts[0]["severity"] == "critical" and alerts[0]["details"]["other_channel"] == "true"
    _, alerts = feed_customer([contact(1, T0, "T1", order="O-1"), contact(2, T0 + HOUR_MS, "T2", order="O-1")])
    assert alerts[0]["severity"] == "critical" and alerts[0]["details"]["same_order"] == "true"


def complaint(n, ts, category="delivery"):
    return {"event_id": f"q{n}", "ts": ts, "kind": "complaint", "key": category, "data": {"channel": "chat"}}


def feed_complaints(signals, state=None):
    alerts = []
    for sig in signals:
        result = complaints.apply_complaint(state, sig, LIMITS, detected_at=0)
        state, alerts = result.state, alerts + result.alerts
    return state, alerts


def test_complaint_spike_at_ten_in_an_hour_without_history():
    state, alerts = feed_complaints([complaint(n, T0 + n * MINUTE_MS) for n in range(9)])
    assert alerts == []
    state, alerts = feed_complaints([complaint(9, T0 + 9 * MINUTE_MS)], state)
    assert [(a["rule"], a["status"], a["audience"]) for a in alerts] == [("complaint_spike", "open", "ops")]
    assert alerts[0]["category"] == "delivery"
    # The window ends with no spike in the next one: resolved.
    result = complaints.evaluate(state, T0 + HOUR_MS + 1, LIMITS, detected_at=0)
    assert pairs(result.alerts) == [("complaint_spike", "resolved")]


def test_complaint_threshold_is_three_times_the_recent_mean():
    # 8 per hour for the previous 24 hours: the threshold becomes 24.
    history = [complaint(h * 100 + n, T0 - (h + 1) * HOUR_MS + n * MINUTE_MS) for h in range(24) for n in range(8)]
    state, alerts = feed_complaints(history)
    assert alerts == []
    assert complaints.threshold_for(state, T0, LIMITS) == 24
    state, alerts = feed_complaints([complaint(5000 + n, T0 + n * 1000) for n in range(23)], state)
    assert alerts == []
    _, alerts = feed_complaints([complaint(6000, T0 + 30_000)], state)
    assert pairs(alerts) == [("complaint_spike", "open")]


def feedback(n, kind, score, customer="C-1", **extra):
    return {"event_id": f"f{n}", "ts": T0 + n, "event_type": kind, "customer_id": customer, "score": score, **extra}


def test_negative_feedback_thresholds_and_linking():
    state, _ = feed_customer([{"event_id": "p1", "ts": T0 - HOUR_MS, "kind": "order_placed", "key": "C-1",
                               "data": {"order_id": "O-9"}}, contact(1, T0 - 10, "T7")])
    for kind, bad, fine in (("csat", 2, 3), ("nps", 6, 7), ("review", 2, 3), ("social_mention", -1, 0)):
        result = customers.apply_feedback(state, feedback(1, kind, fine), LIMITS, PEOPLE, detected_at=0)
        assert result.alerts == [], kind
        result = customers.apply_feedback(state, feedback(2, kind, bad), LIMITS, PEOPLE, detected_at=0)
        assert pairs(result.alerts) == [("negative_feedback", "open")], kind
        alert = result.alerts[0]
        assert alert["order_id"] == "O-9" and alert["ticket_id"] == "T7" and alert["customer_id"] == "C-1"
        state["feedback_seen"] = []


def test_feedback_read_before_the_order_it_follows_is_relinked_when_the_order_arrives():
    result = customers.apply_feedback(None, feedback(1, "csat", 1), LIMITS, PEOPLE, detected_at=0)
    assert result.alerts[0]["order_id"] is None
    state, alerts = feed_customer([{"event_id": "p1", "ts": T0 - HOUR_MS, "kind": "order_placed", "key": "C-1",
                                    "data": {"order_id": "O-9"}}], result.state)
    assert [(a["status"], a["order_id"]) for a in alerts] == [("updated", "O-9")]
    assert alerts[0]["alert_id"] == result.alerts[0]["alert_id"]
    # An order placed after the feedback is not what the feedback was about.
    _, later = feed_customer([{"event_id": "p2", "ts": T0 + HOUR_MS, "kind": "order_placed", "key": "C-1",
                               "data": {"order_id": "O-10"}}], state)
    assert later == []


def test_backlog_counts_tickets_read_out_of_order_at_the_time_they_waited_together():
    # Two ticket partitions: one was read through to its answers before the other's tickets arrived.
    first = [channel_signal(n, "ticket_waiting", f"A{n}", T0 + n * 1000, target=HOUR_MS) for n in range(10)]
    answers = [channel_signal(100 + n, "ticket_answered", f"A{n}", T0 + 30 * MINUTE_MS) for n in range(10)]
    second = [channel_signal(200 + n, "ticket_waiting", f"B{n}", T0 + 10_000 + n * 1000, target=HOUR_MS)
              for n in reversed(range(10))]
    state, alerts = None, []
    for sig in first + answers + second:
        result = backlog.apply_channel_signal(state, sig, LIMITS, detected_at=0)
        state, alerts = result.state, alerts + result.alerts
    assert pairs(alerts)[0] == ("support_backlog", "open")
    assert alerts[0]["details"]["waiting"] == "20"


def test_a_ticket_is_finished_once_resolved_with_nothing_waiting():
    state, _, _ = run([ticket_event(1, "ticket_opened", T0), ticket_event(2, "agent_replied", T0 + 1000)])
    assert not support.finished(state)
    state, _, _ = run([ticket_event(3, "ticket_resolved", T0 + 2000)], state)
    assert support.finished(state)


def test_updates_when_the_picture_changes():
    # repeat_contact: a third ticket
    state, alerts = feed_customer([contact(1, T0, "T1"), contact(2, T0 + HOUR_MS, "T2"),
                                   contact(3, T0 + 2 * HOUR_MS, "T3")])
    assert pairs(alerts) == [("repeat_contact", "open"), ("repeat_contact", "updated")]
    assert alerts[1]["severity"] == "critical" and alerts[1]["details"]["tickets"] == "3"
    # complaint_spike: the count doubles
    state, alerts = feed_complaints([complaint(n, T0 + n * 1000) for n in range(16)])
    assert pairs(alerts) == [("complaint_spike", "open"), ("complaint_spike", "updated")]
    # support_backlog: the queue doubles
    state, alerts = None, []
    for n in range(40):
        result = backlog.apply_channel_signal(state, channel_signal(n, "ticket_waiting", f"T{n}", T0 + n * 1000,
                                                                    target=HOUR_MS), LIMITS, detected_at=0)
        state, alerts = result.state, alerts + result.alerts
    # 20 waiting opens it, 32 (the queue doubled since 16) updates it, 40 (twice the threshold) makes it critical.
    assert [(a["status"], a["details"]["waiting"], a["severity"]) for a in alerts] == [
        ("open", "20", "warning"), ("updated", "32", "warning"), ("updated", "40", "critical")]
