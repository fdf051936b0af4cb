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

RULE = "support_backlog"
# Tickets answered are remembered a while so an answer read before its ticket_waiting still cancels it.
ANSWERED_KEPT = 500


def new_channel(channel: str) -> dict:
    return {"channel": channel, "waiting": {}, "answered": [], "now": None, "track": None}


def apply_channel_signal(state: dict | None, sig: dict, limits: Thresholds, *, detected_at: int) -> Result:
    state = state or new_channel(sig["key"])
    ticket = sig["data"].get("ticket_id", "")
    if sig["kind"] == "ticket_waiting":
        if ticket not in state["answered"]:
            state["waiting"][ticket] = [sig["ts"], int(sig["data"].get("target_ms") or 0), sig["event_id"]]
    elif sig["kind"] == "ticket_answered":
        state["waiting"].pop(ticket, None)
        state["answered"] = (state["answered"] + [ticket])[-ANSWERED_KEPT:]
    return evaluate(state, sig["ts"], limits, detected_at=detected_at, cause=sig["event_id"])


def evaluate(state: dict, now: int, limits: Thresholds, *, detected_at: int, cause: str | None = None) -> Result:
    state["now"] = now if state["now"] is None else max(state["now"], now)
    now = state["now"]
    waiting = state["waiting"]
    count = len(waiting)
    overdue = [t for t, (since, target, _) in waiting.items() if target and now - since > limits.backlog_oldest_targets * target]
    many = count >= limits.backlog_tickets
    active = many or bool(overdue)
    severity = "critical" if (many and overdue) or count >= 2 * limits.backlog_tickets else "warning"
    key = dedup_key(RULE, state["channel"])
    # Updated when the queue doubles or halves, not on every ticket.
    band = f"{count.bit_length()}:{bool(overdue)}" if active else ""
    track, status = transition(state["track"], key=key, active=active, severity=severity, ts=now,
                               event_id=cause or f"clock:{now}", cooldown_ms=limits.alert_cooldown_ms,
                               fingerprint=band)
    state["track"] = track
    if status is None:
        return Result(state)
    oldest = min(waiting.items(), key=lambda item: item[1][0], default=None)
    channel = state["channel"]
    if status == "resolved":
        title = f"{channel} backlog cleared"
        summary = f"{count} {channel} tickets wait for a first reply, none past {limits.backlog_oldest_targets}x target."
    else:
        waited = minutes(now - oldest[1][0]) if oldest else "0 s"
        title = f"{count} {channel} tickets waiting for a first reply (oldest {waited})"
        summary = (f"The {channel} queue holds {count} tickets without a first reply; the oldest, {oldest[0] if oldest else '-'}, "
                   f"has waited {waited}. Move people to {channel} or open another channel.")
    details = {"waiting": count, "overdue": len(overdue), "oldest_ticket": oldest[0] if oldest else None,
               "oldest_waiting_since": iso(oldest[1][0]) if oldest else None,
               "threshold": f">= {limits.backlog_tickets} waiting or oldest > {limits.backlog_oldest_targets}x target",
               "tickets": ",".join(sorted(waiting)[:50])}
    return Result(state, alerts=[alert_for(track, status, rule=RULE, audience="ops", key=key, title=title,
                                           summary=summary, details=details, event_ts=now,
                                           detected_at=detected_at)])


def next_due(state: dict, limits: Thresholds) -> int | None:
    """When the oldest waiting ticket passes its overdue mark (nothing to wait for if already open and overdue)."""
    marks = [since + limits.backlog_oldest_targets * target + 1 for since, target, _ in state["waiting"].values()
             if target]
    now = state["now"] or 0
    future = [m for m in marks if m > now]
    return min(future) if future else None
