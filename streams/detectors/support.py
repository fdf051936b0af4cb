"""Per ticket: ``support_sla_risk`` and ``support_sla_breach``, and the facts other stages need.

A ticket waits from ``ticket_opened`` (and again from each ``customer_replied``
or ``ticket_reopened`` after an agent's reply) until the next
``agent_replied`` or ``ticket_resolved``. The reply target depends on the
channel, halved for platinum customers (streams.thresholds). At the risk
share of the target (80%) the ticket gets a risk alert; at the target, the
breach alert (the risk alert then resolves as superseded). Deadlines follow
the worker clock, and an event first brings its ticket's deadlines up to its
own time: a reply that comes after the target still raises the breach, and
resolves it.

A ticket's events are judged in event-time order, whatever order they are
read in (two systems may write one ticket's events). The ticket keeps its
latest ``MAX_KEPT`` events; one read earlier in event time than an event
already applied is put in its place and the wait is worked out again from
the kept events, up to the furthest the clock has brought the ticket. What
that gives is compared with what the ticket has already published: alerts it
has not published yet go out, and an alert it left open that event-time order
does not leave open is resolved (``WITHDRAWN``). So a reply read just before
the opening it answers raises nothing, and a late reply read first still
raises the breach and resolves it. An event older than every kept one (the
ticket has had more than ``MAX_KEPT``) is applied as read.

Signals: ``ticket_waiting`` / ``ticket_answered`` to the channel stage (the
backlog of tickets waiting for a first reply), ``ticket_opened`` /
``ticket_resolved`` to the customer stage (repeat contacts), and one
``complaint`` per new ticket to the category stage, with the category the
ticket carries or, without one, the one its text is classified into. They
follow reading order, as the receiving stages expect: one ``ticket_waiting``
and one ``complaint`` per ticket, with its first ``ticket_opened`` read; a
``ticket_answered`` for each reply earlier in event time than any read before
it (the channel stage keeps the earliest); ``ticket_answered`` may come before
``ticket_waiting``, and ``ticket_resolved`` before ``ticket_opened``.
"""

from __future__ import annotations

import bisect
import copy

from streams.detectors.alerts import dedup_key
from streams.detectors.classify import ticket_category
from streams.detectors.lifecycle import Result, alert_for, iso, is_open, minutes, signal, transition
from streams.thresholds import Thresholds

RISK_RULE = "support_sla_risk"
BREACH_RULE = "support_sla_breach"
CHANNEL_SIGNALS = "forewarn-channel-signals"
CUSTOMER_SIGNALS = "forewarn-customer-signals"
CATEGORY_SIGNALS = "forewarn-category-signals"
TEXT_KEPT = 200
# Events a ticket keeps to re-judge one read out of event-time order; also its redelivery memory.
MAX_KEPT = 30
# Alert statuses a ticket remembers having published, so a re-judgement publishes each only once: a
# wait publishes at most four (risk and breach, open and resolved), and each kept event starts at most one.
PUBLISHED_KEPT = 4 * MAX_KEPT
WITHDRAWN = "not late once the ticket's events are taken in event-time order"


def _new_wait() -> dict:
    """The part of a ticket's state its events decide, in event-time order."""
    return {"opened_ts": None, "waiting_since": None, "wait_event": None, "replied": False, "resolved": False,
            "risk_raised": False, "breach_raised": False, "tracks": {}}


WAIT_FIELDS = tuple(_new_wait())


def new_ticket(ticket_id: str) -> dict:
    return {"ticket_id": ticket_id, "customer_id": None, "channel": None, "category": None, "order_id": None,
            "text": "", "seen": [], "opened_event": None, "first_reply_ts": None, **_new_wait(),
            # Kept events as [ts, event_type, event_id] in event-time order; the wait as it stood before
            # the oldest of them (None: before any event) and the time of the last event folded into it.
            "events": [], "base": None, "horizon": None,
            # The furthest event time the ticket's deadlines were brought to, and "alert_id status" published.
            "clock": None, "published": []}


def apply_support_event(state: dict | None, event: dict, limits: Thresholds, customers: dict, *,
                        detected_at: int) -> Result:
    state = _upgraded(state) if state else new_ticket(event["ticket_id"])
    event_id, ts = event["event_id"], event["ts"]
    if event_id in state["seen"] or any(kept[2] == event_id for kept in state["events"]):
        return Result(state)
    state["seen"] = (state["seen"] + [event_id])[-MAX_KEPT:]
    _describe(state, event)
    signals = _signals(state, event, limits, customers)
    kept = [ts, event["event_type"], event_id]
    if state["horizon"] is not None and ts < state["horizon"]:
        # Older than every kept event: applied as read, and to the wait the kept events start from.
        alerts = _apply_to_wait(state, kept, limits, customers, detected_at)
        _fold(state, kept, limits, customers)
    elif state["events"] and ts < state["events"][-1][0]:
        alerts = _rejudged(state, kept, limits, customers, detected_at)
    else:
        state["events"].append(kept)
        alerts = _apply_to_wait(state, kept, limits, customers, detected_at)
    while len(state["events"]) > MAX_KEPT:
        oldest = state["events"].pop(0)
        _fold(state, oldest, limits, customers)
        state["horizon"] = oldest[0]
    state["clock"] = ts if state["clock"] is None else max(state["clock"], ts)
    _remember(state, alerts)
    return Result(state, alerts=alerts, signals=signals)


def due(state: dict, clock: int, limits: Thresholds, customers: dict, *, detected_at: int,
        cause: str | None = None) -> Result:
    """Raise the risk and breach of the current wait that have passed at event time `clock`."""
    state = _upgraded(state)
    alerts = _due(state, clock, limits, customers, detected_at=detected_at, cause=cause)
    state["clock"] = clock if state["clock"] is None else max(state["clock"], clock)
    _remember(state, alerts)
    return Result(state, alerts=alerts)


def _describe(state: dict, event: dict) -> None:
    """What the ticket is about: each field from the first event read that has it."""
    for field in ("customer_id", "channel", "order_id", "language"):
        if event.get(field) and not state.get(field):
            state[field] = event[field]
    if event.get("text") and not state["text"]:
        state["text"] = event["text"][:TEXT_KEPT]
    if event["event_type"] == "agent_replied":
        state["agent_id"] = event.get("agent_id") or state.get("agent_id")
    if event["event_type"] == "ticket_opened" and state["opened_event"] is None:
        state["opened_event"] = event["event_id"]
        state["category"] = ticket_category(event)
        state["category_derived"] = not event.get("category")


def _signals(state: dict, event: dict, limits: Thresholds, customers: dict) -> list[tuple[str, dict]]:
    """The facts this event gives other stages, in reading order (see the module docstring).

    Records the earliest reply read so far, which decides whether a reply is news to the channel stage.
    """
    kind, ts, event_id, ticket = event["event_type"], event["ts"], event["event_id"], state["ticket_id"]
    signals = []
    if kind == "ticket_opened" and state["opened_event"] == event_id:
        target = _target(state, limits, customers)
        signals.append(signal(CHANNEL_SIGNALS, state["channel"], "ticket_waiting", event_id, ts,
                              ticket_id=ticket, target_ms=target, customer_id=state["customer_id"]))
        signals.append(signal(CUSTOMER_SIGNALS, state["customer_id"], "ticket_opened", event_id, ts,
                              ticket_id=ticket, channel=state["channel"], order_id=state["order_id"],
                              category=state["category"], text=state["text"] or None))
        signals.append(signal(CATEGORY_SIGNALS, state["category"], "complaint", event_id, ts,
                              ticket_id=ticket, channel=state["channel"],
                              derived="true" if state["category_derived"] else "false"))
    if kind in ("agent_replied", "ticket_resolved") and (state["first_reply_ts"] is None
                                                         or ts < state["first_reply_ts"]):
        state["first_reply_ts"] = ts
        signals.append(signal(CHANNEL_SIGNALS, state["channel"], "ticket_answered", event_id, ts, ticket_id=ticket))
    if kind == "ticket_resolved":
        signals.append(signal(CUSTOMER_SIGNALS, state["customer_id"], "ticket_resolved", event_id, ts,
                              ticket_id=ticket))
    return signals


def _apply_to_wait(state: dict, kept: list, limits: Thresholds, customers: dict, detected_at: int) -> list[dict]:
    """Bring the wait to the event's time, then apply the event to it; the alerts that gives."""
    ts, kind, event_id = kept
    alerts = _due(state, ts, limits, customers, detected_at=detected_at, cause=event_id)
    if kind == "ticket_opened":
        if state["opened_ts"] is None:
            state["opened_ts"] = ts
            _start_wait(state, ts, event_id)
    elif kind == "agent_replied":
        state["replied"] = True
        alerts += _end_wait(state, ts, event_id, "agent replied", limits, customers, detected_at)
    elif kind in ("customer_replied", "ticket_reopened"):
        if kind == "ticket_reopened":
            state["resolved"] = False
        if state["waiting_since"] is None:
            _start_wait(state, ts, event_id)
    elif kind == "ticket_resolved":
        state["replied"] = True
        state["resolved"] = True
        alerts += _end_wait(state, ts, event_id, "ticket resolved", limits, customers, detected_at)
    return alerts


def _replaying(state: dict) -> dict:
    """A working copy of the ticket with the wait its kept events start from."""
    return dict(state, **copy.deepcopy(state["base"] or _new_wait()))


def _rejudged(state: dict, kept: list, limits: Thresholds, customers: dict, detected_at: int) -> list[dict]:
    """Put an event read out of event-time order in its place, work the wait out again, publish the difference."""
    events = state["events"]
    # After the kept events of the same time: among equal times, reading order.
    events.insert(bisect.bisect_right([each[0] for each in events], kept[0]), kept)
    work = _replaying(state)
    in_order: list[dict] = []
    for each in events:
        in_order += _apply_to_wait(work, each, limits, customers, detected_at)
    in_order += _due(work, state["clock"], limits, customers, detected_at=detected_at)
    published = set(state["published"])
    closed_in_order = {alert["alert_id"] for alert in in_order if alert["status"] == "resolved"}
    alerts = []
    for rule in (RISK_RULE, BREACH_RULE):
        said, judged = state["tracks"].get(rule), work["tracks"].get(rule)
        if not is_open(said) or said["alert_id"] in closed_in_order:
            continue
        if is_open(judged) and judged["alert_id"] == said["alert_id"]:
            continue
        # Open, though event-time order never raised it or closed it already: resolved first, before
        # any new episode of the same key below.
        alerts += _withdrawn(work, rule, said, kept, limits, customers, detected_at)
    alerts += [alert for alert in in_order if _status_of(alert) not in published]
    state.update({field: work[field] for field in WAIT_FIELDS})
    return alerts


def _withdrawn(work: dict, rule: str, said: dict, kept: list, limits: Thresholds, customers: dict,
               detected_at: int) -> list[dict]:
    judged = work["tracks"].get(rule)
    work["tracks"][rule] = said
    alerts = _sla_alert(work, rule, False, kept[0], limits, customers, detected_at, kept[2],
                        _target(work, limits, customers), resolution=WITHDRAWN)
    work["tracks"][rule] = judged
    return alerts


def _fold(state: dict, kept: list, limits: Thresholds, customers: dict) -> None:
    """Apply an event no longer kept to the wait the kept events start from (its alerts were published)."""
    work = _replaying(state)
    _apply_to_wait(work, kept, limits, customers, detected_at=0)
    state["base"] = {field: work[field] for field in WAIT_FIELDS}


def _remember(state: dict, alerts: list[dict]) -> None:
    if alerts:
        state["published"] = (state["published"] + [_status_of(alert) for alert in alerts])[-PUBLISHED_KEPT:]


def _status_of(alert: dict) -> str:
    return f"{alert['alert_id']} {alert['status']}"


def _upgraded(state: dict) -> dict:
    """A state stored before tickets kept their events: what it holds becomes the wait later events start from."""
    if "events" in state:
        return state
    known = [t for t in (state.get("opened_ts"), state.get("waiting_since")) if t is not None]
    tracks = [track for track in state.get("tracks", {}).values() if track]
    state.update(
        events=[], base={field: copy.deepcopy(state.get(field, value)) for field, value in _new_wait().items()},
        horizon=max(known, default=None), clock=max(known, default=None),
        published=[f"{t['alert_id']} {status}" for t in tracks for status in ("open", "resolved")
                   if status == "open" or not t.get("open")],
        opened_event=state.get("opened_event") or ("" if state.get("opened_ts") is not None else None),
        # Its first reply, if any, was announced; its time is not known.
        first_reply_ts=state.get("first_reply_ts", 0 if state.get("replied") else None))
    return state


def _due(state: dict, clock: int, limits: Thresholds, customers: dict, *, detected_at: int,
         cause: str | None = None) -> list[dict]:
    """The risk and breach alerts of the current wait that have passed at event time `clock`."""
    alerts: list[dict] = []
    since = state["waiting_since"]
    if since is None or state["channel"] is None:
        return alerts
    target = _target(state, limits, customers)
    risk_at = since + target * limits.sla_risk_percent // 100
    breach_at = since + target
    cause = cause or f"clock:{clock}"
    if risk_at <= clock and not state.get("risk_raised"):
        state["risk_raised"] = True
        alerts += _sla_alert(state, RISK_RULE, True, risk_at, limits, customers, detected_at,
                             state["wait_event"], target)
    if breach_at <= clock and not state.get("breach_raised"):
        state["breach_raised"] = True
        alerts += _sla_alert(state, RISK_RULE, False, breach_at, limits, customers, detected_at,
                             cause, target, resolution="breached")
        alerts += _sla_alert(state, BREACH_RULE, True, breach_at, limits, customers, detected_at,
                             state["wait_event"], target)
    return alerts


def next_due(state: dict, limits: Thresholds, customers: dict) -> int | None:
    since = state["waiting_since"]
    if since is None or state["channel"] is None:
        return None
    target = _target(state, limits, customers)
    if not state.get("risk_raised"):
        return since + target * limits.sla_risk_percent // 100
    if not state.get("breach_raised"):
        return since + target
    return None


def finished(state: dict) -> bool:
    """Resolved, nobody waiting, no alert open. A reopening starts a new state from its own fields."""
    return state["resolved"] and state["waiting_since"] is None and not any(
        track and track.get("open") for track in state["tracks"].values())


def _target(state: dict, limits: Thresholds, customers: dict) -> int:
    tier = (customers.get(state["customer_id"]) or {}).get("tier")
    return limits.sla_target_ms(state["channel"], tier)


def _start_wait(state: dict, ts: int, event_id: str) -> None:
    state["waiting_since"], state["wait_event"] = ts, event_id
    state["risk_raised"] = state["breach_raised"] = False


def _end_wait(state: dict, ts: int, event_id: str, why: str, limits: Thresholds, customers: dict,
              detected_at: int) -> list[dict]:
    if state["waiting_since"] is None:
        return []
    target = _target(state, limits, customers)
    state["waiting_since"] = None
    alerts = []
    for rule in (RISK_RULE, BREACH_RULE):
        alerts += _sla_alert(state, rule, False, ts, limits, customers, detected_at, event_id, target, resolution=why)
    return alerts


def _sla_alert(state: dict, rule: str, active: bool, at: int, limits: Thresholds, customers: dict,
               detected_at: int, cause: str, target: int, resolution: str | None = None) -> list[dict]:
    ticket = state["ticket_id"]
    key = dedup_key(rule, ticket)
    severity = "critical" if rule == BREACH_RULE else "warning"
    track, status = transition(state["tracks"].get(rule), key=key, active=active, severity=severity, ts=at,
                               event_id=cause, cooldown_ms=limits.alert_cooldown_ms)
    state["tracks"][rule] = track
    if status is None:
        return []
    customer = customers.get(state["customer_id"]) or {}
    who = customer.get("name") or state["customer_id"]
    tier = customer.get("tier") or "unknown"
    since = state["waiting_since"] if state["waiting_since"] is not None else track.get("opened_ts", at)
    first = not state["replied"]
    what = "first reply" if first else "reply"
    breach_at = (state["waiting_since"] + target) if state["waiting_since"] is not None else None
    if status == "resolved":
        title = f"Ticket {ticket}: {resolution}"
        summary = f"Ticket {ticket} ({state['channel']}) for {who}: {resolution}."
    elif rule == RISK_RULE:
        title = f"Ticket {ticket} ({state['channel']}) about to miss its {what} target"
        summary = (f"{who} ({tier}) has waited on {state['channel']} since {iso(since)} for a {what}; the target is "
                   f"{minutes(target)}, reached at {iso(breach_at)}. Reply now.")
    else:
        title = f"Ticket {ticket} ({state['channel']}) missed its {what} target"
        summary = (f"{who} ({tier}) has waited on {state['channel']} since {iso(since)} for a {what}, longer than "
                   f"the {minutes(target)} target. Reply and apologise; a senior rep should take it.")
    details = {"channel": state["channel"], "waiting_since": iso(since), "target": minutes(target),
               "due_by_ms": breach_at, "first_reply": "true" if first else "false",
               "category": state["category"], "text": state["text"] or None, "customer_name": who,
               "customer_tier": tier, "resolution": resolution}
    return [alert_for(track, status, rule=rule, audience="cs", key=key, title=title, summary=summary,
                      details=details, event_ts=at, detected_at=detected_at, customer_id=state["customer_id"],
                      ticket_id=ticket, order_id=state["order_id"], category=state["category"])]
