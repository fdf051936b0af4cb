"""Per page: ``web_error_spike`` (server errors against the page's traffic) and ``cart_loss_spike``.

Both are operations-level roll-ups for the web team: one alert per page, not
one per session. Inputs are the ``page_hit`` and ``cart_lost`` signals the
session stage sends. Windows slide over event time; a page's "now" is the
newest event time it has seen (or the worker clock on a tick), so an alert
resolves once its window has passed even when the page goes quiet.
"""

from __future__ import annotations

from bisect import bisect_right

from streams.detectors.alerts import dedup_key, merge_evidence
from streams.detectors.lifecycle import Result, alert_for, already_applied, minutes, transition
from streams.thresholds import Thresholds
from streams.words import counted

ERROR_RULE = "web_error_spike"
LOSS_RULE = "cart_loss_spike"
# Traffic is counted in buckets of this many ms (a fraction of the error window).
BUCKET_MS = 10_000


def new_page(page: str) -> dict:
    return {"page": page, "now": None, "buckets": {}, "errors": [], "losses": [], "error_track": None,
            "loss_track": None}


def apply_page_signal(state: dict | None, sig: dict, limits: Thresholds, *, detected_at: int) -> Result:
    state = state or new_page(sig["key"])
    if already_applied(state, sig):
        return Result(state)
    ts = sig["ts"]
    if sig["kind"] == "page_hit":
        bucket = str(ts // BUCKET_MS)
        if ts // BUCKET_MS <= (state.get("kept_from") or -1):
            state["kept_from"] = None  # a bucket already out of the kept windows: forget it again
        counts = state["buckets"].setdefault(bucket, [0, 0])
        counts[0] += 1
        status = int(sig["data"].get("status_code") or 0)
        if status >= limits.web_error_status:
            counts[1] += 1
            state["errors"] = merge_evidence(state["errors"][-40:], sig["event_id"])
    elif sig["kind"] == "cart_lost":
        session = sig["data"].get("session_id", sig["event_id"])
        if any(loss[1] == session and loss[0] == ts for loss in state["losses"]):
            return Result(state)  # redelivered
        state["losses"].append([ts, session, sig["event_id"], sig["data"].get("customer_id", "")])
    result = Result(state)
    if state["now"] is not None and ts < state["now"]:
        # Read late (it came from another session partition): judge the windows it belongs to as well,
        # each window ending between its time and the page's latest (a look back only opens).
        last = min(state["now"], ts + limits.web_error_window_ms)
        sums = _bucket_sums(state)  # the buckets stay as they are while windows are looked back at
        for end in [ts] + list(range((ts // BUCKET_MS + 1) * BUCKET_MS, last + 1, BUCKET_MS)):
            alerts = _error_spike(state, end, limits, detected_at, sig["event_id"], may_resolve=False, sums=sums)
            result.alerts += alerts
            if alerts:
                break
        last = min(state["now"], ts + limits.cart_loss_spike_window_ms)
        for end in [ts] + sorted({loss[0] for loss in state["losses"] if ts < loss[0] <= last}):
            alerts = _loss_spike(state, end, limits, detected_at, sig["event_id"], may_resolve=False)
            result.alerts += alerts
            if alerts:
                break
    return result.extend(evaluate(state, ts, limits, detected_at=detected_at, event_id=sig["event_id"]))


def evaluate(state: dict, now: int, limits: Thresholds, *, detected_at: int, event_id: str | None = None) -> Result:
    """Both rules at the page's latest event time (or `now`, if later): open, update or resolve."""
    state["now"] = now if state["now"] is None else max(state["now"], now)
    now = state["now"]
    cause = event_id or f"clock:{now}"
    _forget(state, now, limits)
    result = Result(state)
    result.alerts += _error_spike(state, now, limits, detected_at, cause)
    result.alerts += _loss_spike(state, now, limits, detected_at, cause)
    return result


def next_due(state: dict, limits: Thresholds) -> int | None:
    """When an open alert's window next loses an event (the time to look again), or None."""
    now = state["now"] or 0
    due = []
    if state["error_track"] and state["error_track"].get("open"):
        first = (now - limits.web_error_window_ms) // BUCKET_MS
        inside = [int(b) for b in state["buckets"] if int(b) > first]
        due.append((min(inside) + 1) * BUCKET_MS + limits.web_error_window_ms if inside else now)
    if state["loss_track"] and state["loss_track"].get("open"):
        inside = [loss[0] for loss in state["losses"] if loss[0] > now - limits.cart_loss_spike_window_ms]
        due.append(min(inside) + limits.cart_loss_spike_window_ms if inside else now)
    return min(due) if due else None


def _forget(state: dict, now: int, limits: Thresholds) -> None:
    """Keep two windows: events read late still meet the events of their own window."""
    first_bucket = (now - 2 * limits.web_error_window_ms) // BUCKET_MS
    # Buckets can only fall out of the kept windows when `now` enters a new bucket.
    if state.get("kept_from") != first_bucket:
        state["buckets"] = {b: c for b, c in state["buckets"].items() if int(b) > first_bucket}
        state["kept_from"] = first_bucket
    state["losses"] = [loss for loss in state["losses"] if loss[0] > now - 2 * limits.cart_loss_spike_window_ms]


def _bucket_sums(state: dict) -> tuple[list[int], list[int], list[int]]:
    """The page's buckets in time order, with running totals of requests and errors."""
    keys, hits, errors = [], [0], [0]
    for bucket, (h, e) in sorted((int(b), c) for b, c in state["buckets"].items()):
        keys.append(bucket)
        hits.append(hits[-1] + h)
        errors.append(errors[-1] + e)
    return keys, hits, errors


def _error_spike(state: dict, now: int, limits: Thresholds, detected_at: int, cause: str,
                 may_resolve: bool = True, sums: tuple | None = None) -> list[dict]:
    """The error rule over the window ending at `now`; a look back in time (`may_resolve` False) only opens.

    `sums` is ``_bucket_sums(state)`` when the caller judges several windows over unchanged buckets.
    """
    first, last = (now - limits.web_error_window_ms) // BUCKET_MS, now // BUCKET_MS
    if sums is None:
        hits = errors = 0
        buckets = state["buckets"]
        for bucket in range(first + 1, last + 1):
            counts = buckets.get(str(bucket))
            if counts:
                hits += counts[0]
                errors += counts[1]
    else:
        keys, hit_sums, error_sums = sums
        lo, hi = bisect_right(keys, first), bisect_right(keys, last)
        hits, errors = hit_sums[hi] - hit_sums[lo], error_sums[hi] - error_sums[lo]
    share = 100.0 * errors / hits if hits else 0.0
    active = errors >= limits.web_error_min and share >= limits.web_error_percent
    if not may_resolve and not active:
        return []
    severity = "critical" if active and (share >= 25 or errors >= 5 * limits.web_error_min) else "warning"
    key = dedup_key(ERROR_RULE, state["page"])
    # Updated when the error count doubles, not on every error.
    band = str(errors.bit_length()) if active else ""
    track, status = transition(state["error_track"], key=key, active=active, severity=severity, ts=now,
                               event_id=cause, cooldown_ms=limits.alert_cooldown_ms, fingerprint=band)
    state["error_track"] = track
    if status is None:
        return []
    track["evidence"] = merge_evidence(track["evidence"], *state["errors"][-20:])
    span = minutes(limits.web_error_window_ms)
    page = state["page"]
    if status == "resolved":
        title, summary = f"Server errors on {page} back to normal", (
            f"{page} had {counted(errors, 'server error')} in {counted(hits, 'request')} over the last {span}, "
            f"under the thresholds.")
    else:
        title = f"{counted(errors, 'server error')} on {page} in {span} ({share:.0f}% of requests)"
        summary = (f"{page} answered {errors} of {counted(hits, 'request')} with status "
                   f"{limits.web_error_status} or above in the last {span}. Customers on this page are failing "
                   f"to shop; check the service behind it.")
    details = {"errors": errors, "requests": hits, "error_percent": f"{share:.1f}", "window": span,
               "threshold": f">= {counted(limits.web_error_min, 'error')} and >= {limits.web_error_percent}%"}
    return [alert_for(track, status, rule=ERROR_RULE, audience="it", key=key, title=title, summary=summary,
                      details=details, event_ts=now, detected_at=detected_at, page=page)]


def _loss_spike(state: dict, now: int, limits: Thresholds, detected_at: int, cause: str,
                may_resolve: bool = True) -> list[dict]:
    """The cart-loss rule over the window ending at `now`; a look back in time (`may_resolve` False) only opens."""
    losses = [loss for loss in state["losses"] if now - limits.cart_loss_spike_window_ms < loss[0] <= now]
    sessions = sorted({loss[1] for loss in losses})
    active = len(sessions) >= limits.cart_loss_spike_sessions
    if not may_resolve and not active:
        return []
    severity = "critical" if len(sessions) >= 3 * limits.cart_loss_spike_sessions else "warning"
    key = dedup_key(LOSS_RULE, state["page"])
    band = str(len(sessions) // limits.cart_loss_spike_sessions) if active else ""
    track, status = transition(state["loss_track"], key=key, active=active, severity=severity, ts=now,
                               event_id=cause, cooldown_ms=limits.alert_cooldown_ms, fingerprint=band)
    state["loss_track"] = track
    if status is None:
        return []
    track["evidence"] = merge_evidence(track["evidence"], *(loss[2] for loss in losses))
    window = minutes(limits.cart_loss_spike_window_ms)
    page = state["page"]
    if status == "resolved":
        title = f"Carts no longer lost after {page}"
        summary = (f"Fewer than {counted(limits.cart_loss_spike_sessions, 'session')} lost their cart after {page} "
                   f"in the last {window}.")
    else:
        title = f"{counted(len(sessions), 'session')} lost their cart after visiting {page}"
        summary = (f"{counted(len(sessions), 'session')} lost their cart within {window} after visiting {page}: "
                   f"the page likely drops the cart (a site defect). Customer service has one alert per session.")
    customers = sorted({loss[3] for loss in losses if loss[3]})
    details = {"sessions": len(sessions), "window": window, "session_ids": ",".join(sessions[:50]),
               "customers": ",".join(customers[:50])}
    return [alert_for(track, status, rule=LOSS_RULE, audience="it", key=key, title=title, summary=summary,
                      details=details, event_ts=now, detected_at=detected_at, page=page)]
