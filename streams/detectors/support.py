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

Signals: ``ticket_waiting`` / ``ticket_answered`` to the channel stage (the
backlog of tickets waiting for a first reply), ``ticket_opened`` /
``ticket_resolved`` to the customer stage (repeat contacts), and one
``complaint`` per new ticket to the category stage, with the category the
ticket carries or, without one, the one its text is classified into.
"""

from __future__ import annotations

from streams.detectors.alerts import dedup_key
from streams.detectors.classify import classify
from streams.detectors.lifecycle import Result, alert_for, iso, minutes, signal, transition
from streams.thresholds import Thresholds

RISK_RULE = "support_sla_risk"
BREACH_RULE = "support_sla_breach"
CHANNEL_SIGNALS = "forewarn-channel-signals"
CUSTOMER_SIGNALS = "forewarn-customer-signals"
CATEGORY_SIGNALS = "forewarn-category-signals"
TEXT_KEPT = 200


def new_ticket(ticket_id: str) -> dict:
    return {"ticket_id": ticket_id, "customer_id": None, "channel": None, "category": None, "order_id": None,
            "opened_ts": None, "waiting_since": None, "wait_event": None, "replied": False, "resolved": False,
            "tracks": {}, "seen": [], "text": ""}


def apply_support_event(state: dict | None, event: dict, limits: Thresholds, customers: dict, *,
                        detected_at: int) -> Result:
    state = state or new_ticket(event["ticket_id"])
    if event["event_id"] in state["seen"]:
        return Result(state)
    state["seen"] = (state["seen"] + [event["event_id"]])[-30:]
    kind, ts = event["event_type"], event["ts"]
    for field in ("customer_id", "channel", "order_id", "language"):
        if event.get(field) and not state.get(field):
            state[field] = event[field]
    if event.get("text") and not state["text"]:
        state["text"] = event["text"][:TEXT_KEPT]
    result = due(state, ts, limits, customers, detected_at=detected_at, cause=event["event_id"])
    ticket = state["ticket_id"]
    if kind == "ticket_opened":
        if state["opened_ts"] is not None:
            return result
        state["opened_ts"] = ts
        state["category"] = event.get("category") or classify(event.get("text"), event.get("language"))
        state["category_derived"] = not event.get("category")
        _start_wait(state, ts, event["event_id"])
        target = _target(state, limits, customers)
        result.signals.append(signal(CHANNEL_SIGNALS, state["channel"], "ticket_waiting", event["event_id"], ts,
                                     ticket_id=ticket, target_ms=target, customer_id=state["customer_id"]))
        result.signals.append(signal(CUSTOMER_SIGNALS, state["customer_id"], "ticket_opened", event["event_id"], ts,
                                     ticket_id=ticket, channel=state["channel"], order_id=state["order_id"],
                                     category=state["category"], text=state["text"] or None))
        result.signals.append(signal(CATEGORY_SIGNALS, state["category"], "complaint", event["event_id"], ts,
                                     ticket_id=ticket, channel=state["channel"],
                                     derived="true" if state["category_derived"] else "false"))
    elif kind == "agent_replied":
        if not state["replied"]:
            state["replied"] = True
            result.signals.append(signal(CHANNEL_SIGNALS, state["channel"], "ticket_answered", event["event_id"],
                                         ts, ticket_id=ticket))
        state["agent_id"] = event.get("agent_id") or state.get("agent_id")
        result.alerts += _end_wait(state, ts, event["event_id"], "agent replied", limits, customers, detected_at)
    elif kind in ("customer_replied", "ticket_reopened"):
        if kind == "ticket_reopened":
            state["resolved"] = False
        if state["waiting_since"] is None:
            _start_wait(state, ts, event["event_id"])
    elif kind == "ticket_resolved":
        if not state["replied"]:
            state["replied"] = True
            result.signals.append(signal(CHANNEL_SIGNALS, state["channel"], "ticket_answered", event["event_id"],
                                         ts, ticket_id=ticket))
        state["resolved"] = True
        result.alerts += _end_wait(state, ts, event["event_id"], "ticket resolved", limits, customers, detected_at)
        result.signals.append(signal(CUSTOMER_SIGNALS, state["customer_id"], "ticket_resolved", event["event_id"],
                                     ts, ticket_id=ticket))
    result.state = state
    return result


def due(state: dict, clock: int, limits: Thresholds, customers: dict, *, detected_at: int,
        cause: str | None = None) -> Result:
    """Raise the risk and breach of the current wait that have passed at event time `clock`."""
    result = Result(state)
    since = state["waiting_since"]
    if since is None or state["channel"] is None:
        return result
    target = _target(state, limits, customers)
    risk_at = since + target * limits.sla_risk_percent // 100
    breach_at = since + target
    cause = cause or f"clock:{clock}"
    if risk_at <= clock and not state.get("risk_raised"):
        state["risk_raised"] = True
        result.alerts += _sla_alert(state, RISK_RULE, True, risk_at, limits, customers, detected_at,
                                    state["wait_event"], target)
    if breach_at <= clock and not state.get("breach_raised"):
        state["breach_raised"] = True
        result.alerts += _sla_alert(state, RISK_RULE, False, breach_at, limits, customers, detected_at,
                                    cause, target, resolution="breached")
        result.alerts += _sla_alert(state, BREACH_RULE, True, breach_at, limits, customers, detected_at,
                                    state["wait_event"], target)
    return result


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
