"""Per complaint category: ``complaint_spike``, a category rising above its own recent level.

Tickets are counted in fixed event-time windows (one hour by default). A
window spikes when its count reaches max(minimum, factor x the mean of the
previous ``complaint_spike_history`` windows), absent windows counting as
zero. The alert opens in the spiking window, is updated as the count
doubles, and resolves when that window has ended and the current one is
under its threshold. Tickets reach this stage from several partitions, so a
ticket read late is also judged in its own window.
"""

from __future__ import annotations

from streams.detectors.alerts import dedup_key, merge_evidence
from streams.detectors.lifecycle import Result, alert_for, already_applied, iso, minutes, transition
from streams.thresholds import Thresholds
from streams.words import counted

RULE = "complaint_spike"


def new_category(category: str) -> dict:
    return {"category": category, "counts": {}, "evidence": {}, "channels": {}, "now": None, "track": None,
            "seen": []}


def window_of(ts: int, limits: Thresholds) -> int:
    return ts - ts % limits.complaint_spike_window_ms


def threshold_for(state: dict, window: int, limits: Thresholds) -> int:
    size = limits.complaint_spike_window_ms
    history = [state["counts"].get(str(window - n * size), 0) for n in range(1, limits.complaint_spike_history + 1)]
    mean = sum(history) / len(history)
    return max(limits.complaint_spike_min, int(-(-limits.complaint_spike_factor * mean // 1)))


def apply_complaint(state: dict | None, sig: dict, limits: Thresholds, *, detected_at: int) -> Result:
    state = state or new_category(sig["key"])
    if sig["event_id"] in state["seen"] or already_applied(state, sig):
        return Result(state)
    state["seen"] = (state["seen"] + [sig["event_id"]])[-50:]
    window = str(window_of(sig["ts"], limits))
    state["counts"][window] = state["counts"].get(window, 0) + 1
    state["evidence"][window] = merge_evidence(state["evidence"].get(window, [])[-30:], sig["event_id"])
    channel = sig["data"].get("channel", "")
    per_channel = state["channels"].setdefault(window, {})
    per_channel[channel] = per_channel.get(channel, 0) + 1
    result = Result(state)
    if state["now"] is not None and window_of(sig["ts"], limits) < window_of(state["now"], limits):
        # Read late (tickets come from several partitions): its own window may have spiked.
        result.alerts += _judge(state, sig["ts"], limits, detected_at, sig["event_id"], may_resolve=False)
    return result.extend(evaluate(state, sig["ts"], limits, detected_at=detected_at, cause=sig["event_id"]))


def evaluate(state: dict, now: int, limits: Thresholds, *, detected_at: int, cause: str | None = None) -> Result:
    state["now"] = now if state["now"] is None else max(state["now"], now)
    _forget(state, state["now"], limits)
    return Result(state, alerts=_judge(state, state["now"], limits, detected_at, cause or f"clock:{state['now']}"))


def _judge(state: dict, now: int, limits: Thresholds, detected_at: int, cause: str, may_resolve: bool = True) -> list:
    current = window_of(now, limits)
    count = state["counts"].get(str(current), 0)
    threshold = threshold_for(state, current, limits)
    active = count >= threshold
    if not may_resolve and not active:
        return []
    track = state["track"]
    if track and track.get("open") and not active:
        # The spiking window itself stays open until it ends.
        spiking = track.get("window")
        if spiking is not None and now < spiking + limits.complaint_spike_window_ms:
            return []
    severity = "critical" if active and count >= 2 * threshold else "warning"
    key = dedup_key(RULE, state["category"])
    band = str(count.bit_length()) if active else ""
    track, status = transition(track, key=key, active=active, severity=severity, ts=now, event_id=cause,
                               cooldown_ms=limits.alert_cooldown_ms, fingerprint=band)
    state["track"] = track
    if status is None:
        return []
    if active:
        track["window"] = current
        track["evidence"] = merge_evidence(track["evidence"], *state["evidence"].get(str(current), []))
    category = state["category"]
    window = minutes(limits.complaint_spike_window_ms)
    size = limits.complaint_spike_window_ms
    history = [state["counts"].get(str(current - n * size), 0) for n in range(1, limits.complaint_spike_history + 1)]
    mean = sum(history) / len(history)
    if status == "resolved":
        title = f"Complaints about {category} back under the spike threshold"
        summary = (f"{counted(count, f'{category} ticket')} in the window from {iso(current)}, "
                   f"under the threshold of {threshold}.")
    else:
        channels = state["channels"].get(str(current), {})
        title = f"Complaint spike: {counted(count, f'{category} ticket')} in {window}"
        summary = (f"{counted(count, 'ticket')} about {category} since {iso(current)}, "
                   f"against {mean:.1f} per {window} over the previous {counted(len(history), 'window')} "
                   f"(threshold {threshold}). Find the common cause; by channel: "
                   + ", ".join(f"{c} {n}" for c, n in sorted(channels.items())))
    details = {"count": count, "threshold": threshold, "previous_mean": f"{mean:.2f}", "window_start": iso(current),
               "window": window}
    return [alert_for(track, status, rule=RULE, audience="ops", key=key, title=title, summary=summary,
                      details=details, event_ts=now, detected_at=detected_at, category=category)]


def next_due(state: dict, limits: Thresholds) -> int | None:
    """The end of the spiking window: the time to decide whether the spike is over."""
    track = state["track"]
    if track and track.get("open") and track.get("window") is not None:
        now = state["now"] or 0
        end = window_of(now, limits) + limits.complaint_spike_window_ms
        return end
    return None


def _forget(state: dict, now: int, limits: Thresholds) -> None:
    oldest = window_of(now, limits) - (limits.complaint_spike_history + 1) * limits.complaint_spike_window_ms
    for table in ("counts", "evidence", "channels"):
        state[table] = {w: v for w, v in state[table].items() if int(w) >= oldest}
