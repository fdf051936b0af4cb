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


# -- one ticket's events read out of event-time order (two systems write them)


def statuses(alerts):
    return [(a["rule"], a["status"], a["alert_id"], a["event_ts"]) for a in alerts]


def test_a_reply_read_just_before_the_opening_it_answers_raises_nothing():
    opened, replied = ticket_event(1, "ticket_opened", T0), ticket_event(2, "agent_replied", T0 + 90_000)
    state, alerts, signals = run([replied, opened])
    assert alerts == []
    assert support.next_due(state, LIMITS, PEOPLE) is None
    assert tick(state, T0 + 365 * 24 * HOUR_MS) == []
    state, alerts, _ = run([ticket_event(3, "ticket_resolved", T0 + HOUR_MS)], state)
    assert alerts == [] and support.finished(state)
    # The channel stage hears the answer first, then the wait it ended: the ticket never counts as waiting.
    channel = None
    for topic, sig in signals:
        if topic == support.CHANNEL_SIGNALS:
            channel = backlog.apply_channel_signal(channel, sig, LIMITS, detected_at=0).state
    assert [s[1]["kind"] for s in signals if s[0] == support.CHANNEL_SIGNALS] == ["ticket_answered", "ticket_waiting"]
    assert backlog.waiting_at(channel, T0 + 60_000) == {"T1": [T0, 2 * MINUTE_MS, "e1", T0 + 90_000]}
    assert backlog.waiting_at(channel, T0 + 90_000) == {}


def test_a_late_reply_read_before_its_opening_raises_and_resolves_the_breach_as_in_order():
    opened = ticket_event(1, "ticket_opened", T0, channel="email")
    replied = ticket_event(2, "agent_replied", T0 + 5 * HOUR_MS, channel="email")
    _, in_order, _ = run([opened, replied])
    state, reversed_order, _ = run([replied, opened])
    assert statuses(reversed_order) == statuses(in_order)
    assert pairs(reversed_order) == [("support_sla_risk", "open"), ("support_sla_risk", "resolved"),
                                     ("support_sla_breach", "open"), ("support_sla_breach", "resolved")]
    assert reversed_order[3]["details"]["resolution"] == "agent replied" and reversed_order[3]["evidence"][-1] == "e2"
    assert support.next_due(state, LIMITS, PEOPLE) is None


def test_a_customer_reply_read_before_the_agent_reply_it_follows_still_starts_a_new_wait():
    opened = ticket_event(1, "ticket_opened", T0)
    answered = ticket_event(2, "agent_replied", T0 + MINUTE_MS)
    again = ticket_event(3, "customer_replied", T0 + 10 * MINUTE_MS)
    state, alerts, _ = run([opened, again, answered])
    # Read as it came, the wait from the opening ran past its target by the customer's reply ...
    assert pairs(alerts) == [("support_sla_risk", "open"), ("support_sla_risk", "resolved"),
                             ("support_sla_breach", "open"), ("support_sla_breach", "resolved")]
    # ... but the agent answered in time: that breach is withdrawn, and the customer's reply waits.
    assert alerts[3]["details"]["resolution"] == support.WITHDRAWN and alerts[3]["evidence"][-1] == "e2"
    assert alerts[3]["alert_id"] == alerts[2]["alert_id"]
    assert support.next_due(state, LIMITS, PEOPLE) == T0 + 10 * MINUTE_MS + 96_000
    assert pairs(tick(state, T0 + 10 * MINUTE_MS + 96_000)) == [("support_sla_risk", "open")]


def test_a_breach_raised_by_the_clock_before_an_earlier_reply_is_read_is_withdrawn():
    opened, again = ticket_event(1, "ticket_opened", T0), ticket_event(3, "customer_replied", T0 + HOUR_MS)
    state, _, _ = run([opened, again])
    assert pairs(tick(state, T0 + HOUR_MS + MINUTE_MS)) == []  # raised by the customer's reply already
    state, alerts, _ = run([ticket_event(2, "agent_replied", T0 + MINUTE_MS)], state)
    assert pairs(alerts) == [("support_sla_breach", "resolved")]
    assert support.next_due(state, LIMITS, PEOPLE) == T0 + HOUR_MS + 96_000
    # Published once: reading the reply again, or another tick, says nothing more.
    assert run([ticket_event(2, "agent_replied", T0 + MINUTE_MS)], state)[1:] == ([], [])


STORY = [  # an email ticket (4 h target): a late first reply, then a customer reply answered in time
    ticket_event(1, "ticket_opened", T0, channel="email", text="parcel lost"),
    ticket_event(2, "agent_replied", T0 + 5 * HOUR_MS, channel="email"),
    ticket_event(3, "customer_replied", T0 + 6 * HOUR_MS, channel="email"),
    ticket_event(4, "agent_replied", T0 + 6 * HOUR_MS + 10 * MINUTE_MS, channel="email"),
    ticket_event(5, "ticket_resolved", T0 + 7 * HOUR_MS, channel="email"),
]


def test_every_reading_order_of_a_ticket_gives_the_alerts_of_event_time_order():
    from itertools import permutations

    in_order_state, in_order, _ = run(STORY)
    expected = {(a["rule"], a["status"], a["alert_id"]) for a in in_order}
    assert len(expected) == 4
    for order in permutations(STORY):
        state, alerts, signals = run(list(order))
        said = [(a["rule"], a["status"], a["alert_id"]) for a in alerts]
        assert sorted(said) == sorted(expected), [e["event_id"] for e in order]
        assert {k: state[k] for k in support.WAIT_FIELDS} == {k: in_order_state[k] for k in support.WAIT_FIELDS}
        assert support.finished(state)
        kinds = sorted(s[1]["kind"] for s in signals)
        assert kinds.count("ticket_waiting") == kinds.count("complaint") == kinds.count("ticket_opened") == 1


def test_redelivered_events_read_out_of_order_change_nothing():
    state, _, _ = run([STORY[1], STORY[0], STORY[3]])
    before = support.apply_support_event(state, STORY[0], LIMITS, PEOPLE, detected_at=0)
    assert before.alerts == [] and before.signals == []
    snapshot = repr(state)
    for event in (STORY[0], STORY[1], STORY[3]):
        result = support.apply_support_event(state, event, LIMITS, PEOPLE, detected_at=0)
        assert result.alerts == [] and result.signals == []
    assert repr(state) == snapshot


def test_a_long_ticket_keeps_its_latest_events_and_still_judges_them_in_order():
    events = [ticket_event(1, "ticket_opened", T0), ticket_event(2, "agent_replied", T0 + MINUTE_MS)]
    for n in range(1, 41):  # a long chat, every customer message answered within a minute
        events += [ticket_event(100 + n, "customer_replied", T0 + n * HOUR_MS),
                   ticket_event(200 + n, "agent_replied", T0 + n * HOUR_MS + MINUTE_MS)]
    # The last answer is read before the message it answers.
    state, alerts, _ = run(events[:-2] + [events[-1], events[-2]])
    assert alerts == [] and len(state["events"]) == support.MAX_KEPT
    assert support.next_due(state, LIMITS, PEOPLE) is None
    # Older than every kept event: applied as read (an agent reply to nobody waiting changes nothing).
    state, alerts, _ = run([ticket_event(998, "agent_replied", T0 + 2 * MINUTE_MS)], state)
    assert alerts == [] and support.next_due(state, LIMITS, PEOPLE) is None


def test_a_ticket_stored_before_events_were_kept_carries_on():
    state, _, _ = run([ticket_event(1, "ticket_opened", T0)])
    for key in ("events", "base", "horizon", "clock", "published", "opened_event", "first_reply_ts"):
        del state[key]
    assert pairs(tick(state, T0 + 96_000)) == [("support_sla_risk", "open")]
    state, alerts, signals = run([ticket_event(2, "agent_replied", T0 + 100_000)], state)
    assert pairs(alerts) == [("support_sla_risk", "resolved")]
    assert [s[1]["kind"] for s in signals] == ["ticket_answered"]
