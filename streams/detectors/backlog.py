"""Per support channel: ``support_backlog``, the queue of tickets waiting for a first reply.

Fed by the ticket stage's ``ticket_waiting`` / ``ticket_answered`` signals.
The backlog alert opens when the channel has ``backlog_tickets`` or more
tickets waiting, or when the oldest has waited more than
``backlog_oldest_targets`` times its target; it resolves when neither holds.
It is the operations roll-up of the per-ticket SLA alerts: one alert for the
channel instead of one per ticket.
"""

from __future__ import annotations

from streams.detectors.alerts import dedup_key
from streams.detectors.lifecycle import Result, alert_for, iso, minutes, transition
from streams.thresholds import Thresholds
from streams.words import counted

RULE = "support_backlog"
# Answered tickets are kept this many targets after their answer, so a ticket_waiting read late still
# meets the answers of its own time (they come from other ticket partitions).
KEEP_ANSWERED_TARGETS = 4


def new_channel(channel: str) -> dict:
    # ticket -> [waiting since, target ms, event id, answered at or None]; since None: answer read first.
    return {"channel": channel, "tickets": {}, "now": None, "track": None}


def apply_channel_signal(state: dict | None, sig: dict, limits: Thresholds, *, detected_at: int) -> Result:
    state = state or new_channel(sig["key"])
    ticket = sig["data"].get("ticket_id", "")
    entry = state["tickets"].setdefault(ticket, [None, 0, sig["event_id"], None])
    if sig["kind"] == "ticket_waiting":
        entry[0], entry[1], entry[2] = sig["ts"], int(sig["data"].get("target_ms") or 0), sig["event_id"]
    elif sig["kind"] == "ticket_answered":
        entry[3] = sig["ts"] if entry[3] is None else min(entry[3], sig["ts"])
    result = Result(state)
    if state["now"] is not None and sig["ts"] < state["now"] and sig["kind"] == "ticket_waiting":
        # Read late (tickets come from several partitions): the queue may have been a backlog at some
        # time since the signal's own; it was longest just after a ticket started waiting.
        at = max(_starts_between(state, sig["ts"], state["now"]), key=lambda t: (len(waiting_at(state, t)), -t))
        result.alerts += _judge(state, at, limits, detected_at, sig["event_id"], may_resolve=False)
    return result.extend(evaluate(state, sig["ts"], limits, detected_at=detected_at, cause=sig["event_id"]))


def _starts_between(state: dict, first: int, last: int) -> list[int]:
    return [first] + sorted({e[0] for e in state["tickets"].values() if e[0] is not None and first < e[0] <= last})


def waiting_at(state: dict, at: int) -> dict[str, list]:
    """The tickets waiting for a first reply at event time `at`."""
    return {t: e for t, e in state["tickets"].items()
            if e[0] is not None and e[0] <= at and (e[3] is None or e[3] > at)}


def evaluate(state: dict, now: int, limits: Thresholds, *, detected_at: int, cause: str | None = None) -> Result:
    state["now"] = now if state["now"] is None else max(state["now"], now)
    _forget(state, limits)
    return Result(state, alerts=_judge(state, state["now"], limits, detected_at, cause or f"clock:{state['now']}"))


def _judge(state: dict, at: int, limits: Thresholds, detected_at: int, cause: str, may_resolve: bool = True) -> list:
    waiting = waiting_at(state, at)
    count = len(waiting)
    overdue = [t for t, (since, target, _, _) in waiting.items()
               if target and at - since > limits.backlog_oldest_targets * target]
    many = count >= limits.backlog_tickets
    active = many or bool(overdue)
    if not may_resolve and not active:
        return []
    severity = "critical" if (many and overdue) or count >= 2 * limits.backlog_tickets else "warning"
    key = dedup_key(RULE, state["channel"])
    # Updated when the queue doubles or halves, not on every ticket.
    band = f"{count.bit_length()}:{bool(overdue)}" if active else ""
    track, status = transition(state["track"], key=key, active=active, severity=severity, ts=at, event_id=cause,
                               cooldown_ms=limits.alert_cooldown_ms, fingerprint=band)
    state["track"] = track
    if status is None:
        return []
    oldest = min(waiting.items(), key=lambda item: item[1][0], default=None)
    channel = state["channel"]
    if status == "resolved":
        title = f"{channel} backlog cleared"
        summary = (f"{counted(count, f'{channel} ticket')} waiting for a first reply, none past "
                   f"{limits.backlog_oldest_targets}x its target.")
    else:
        waited = minutes(at - oldest[1][0]) if oldest else "0 s"
        title = f"{counted(count, f'{channel} ticket')} waiting for a first reply (oldest {waited})"
        summary = (f"The {channel} queue holds {counted(count, 'ticket')} without a first reply; the oldest, "
                   f"{oldest[0] if oldest else '-'}, has waited {waited}. Move people to {channel} or steer "
                   f"customers to another channel.")
    details = {"waiting": count, "overdue": len(overdue), "oldest_ticket": oldest[0] if oldest else None,
               "oldest_waiting_since": iso(oldest[1][0]) if oldest else None,
               "threshold": f">= {limits.backlog_tickets} waiting or oldest > {limits.backlog_oldest_targets}x target",
               "tickets": ",".join(sorted(waiting)[:50])}
    return [alert_for(track, status, rule=RULE, audience="ops", key=key, title=title, summary=summary,
                      details=details, event_ts=at, detected_at=detected_at)]


def next_due(state: dict, limits: Thresholds) -> int | None:
    """When a waiting ticket passes its overdue mark."""
    now = state["now"] or 0
    marks = [e[0] + limits.backlog_oldest_targets * e[1] + 1 for e in waiting_at(state, now).values() if e[1]]
    future = [m for m in marks if m > now]
    return min(future) if future else None


def _forget(state: dict, limits: Thresholds) -> None:
    now = state["now"]
    state["tickets"] = {t: e for t, e in state["tickets"].items()
                        if e[3] is None or now - e[3] <= KEEP_ANSWERED_TARGETS * max(e[1], 60_000)}
