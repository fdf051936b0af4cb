"""Events stamped in the future: the one check every path that takes an event applies.

An event whose ``ts`` is far ahead of wall time comes from a device with a
wrong clock. Let through, it would move the worker clock, which follows event
time, and every deadline before it (a year ahead: every waiting ticket) would
fall due at once. So an event more than ``FOREWARN_MAX_CLOCK_SKEW_MS`` ahead
of wall time is refused with the reason ``future-timestamp``: the worker sends
it to the dead-letter topic, ``forewarn produce`` and ``forewarn replay``
report its line and do not send it. Only the future is refused; an event of
any age in the past is fine, or history could not be replayed.

Pure: wall time is passed in, never read here.
"""

from __future__ import annotations

from schemas.codec import format_timestamp_ms

# The reason, as the dead-letter header `forewarn.error.reason` and the refused line say it.
FUTURE_TIMESTAMP = "future-timestamp"
SETTING = "FOREWARN_MAX_CLOCK_SKEW_MS"


def future_timestamp(ts_ms: int, now_ms: int, max_skew_ms: int) -> str | None:
    """Why an event stamped `ts_ms` is refused at wall time `now_ms`, or None when it is not.

    Refused when it is more than `max_skew_ms` ahead of `now_ms`; exactly that
    far ahead is still accepted. All times are milliseconds since the epoch.
    """
    ahead = ts_ms - now_ms
    if ahead <= max_skew_ms:
        return None
    return (f"event time {format_timestamp_ms(ts_ms)} is {_span(ahead)} ahead of wall time "
            f"{format_timestamp_ms(now_ms)} ({SETTING}={max_skew_ms})")


def _span(ms: int) -> str:
    """A duration for people: whole days or hours when long (365 days), else minutes and seconds."""
    for unit, size in (("days", 86_400_000), ("hours", 3_600_000)):
        if ms >= 2 * size:
            return f"{ms // size} {unit}"
    minutes, rest = divmod(ms, 60_000)
    parts = [f"{minutes} minute{'' if minutes == 1 else 's'}"] if minutes else []
    if rest or not parts:
        # Seconds to the millisecond: just past a limit of 5 minutes must not read as 5 minutes.
        parts.append(f"{rest / 1000:g} second{'' if rest == 1000 else 's'}")
    return " ".join(parts)
