"""The worker clock: one event-time "now" for deadlines, safe for replays and idle streams.

The clock is a watermark over the input partitions a worker reads:

* A partition that still has unread messages (it is *behind*) holds the clock
  at the event time of the last message read from it, so a topic that happens
  to be read later than another never makes a deadline fire early. A behind
  partition from which nothing has been read yet holds the clock where it is.
* A partition that is caught up holds nothing back, however long it is idle.
* When every partition is caught up, the clock follows the newest event time
  seen and, while nothing new arrives, advances with wall time from there, so
  an idle stream still reaches its deadlines. Before the first event it has
  no reading at all.
* A worker that starts on partitions with nothing left to read (a restart of
  an idle stack) learns each one's last event from the partition itself
  (``seed``): its event time, and the wall time it was written. The clock then
  reads as if this worker had been running all along, so a deadline that
  passed while no worker ran is due at once.

The clock never goes backwards. An event older than the clock is still
applied to state by the detectors; ``allowed_lateness_ms`` only bounds how
long closed windows are kept for such events (``window_cutoff``).

Pure: wall time is passed in, nothing here reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable


# Event time that is later than any real event: what a caught-up partition holds back.
CAUGHT_UP = 2**62


@dataclass
class _Partition:
    last_ts: int | None = None
    # Unknown lag counts as behind: the partition might hold older events.
    behind: bool = True
    # Wall time at which last_ts was written, when it was learnt by seed() rather than read.
    seen_wall: int | None = None


class WorkerClock:
    def __init__(self, allowed_lateness_ms: int = 10 * 60 * 1000) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self._parts: dict[Hashable, _Partition] = {}
        self._value: int | None = None
        # Where the clock stood, and the wall time then, the last time events moved it.
        self._anchor_value: int | None = None
        self._anchor_wall: int | None = None

    def assign(self, partitions: Iterable[Hashable]) -> None:
        for tp in partitions:
            self._parts.setdefault(tp, _Partition())

    def revoke(self, partitions: Iterable[Hashable]) -> None:
        for tp in partitions:
            self._parts.pop(tp, None)

    def sync_assignment(self, partitions: Iterable[Hashable]) -> None:
        """Make the assigned partitions exactly these (after a rebalance)."""
        wanted = set(partitions)
        self.revoke([tp for tp in self._parts if tp not in wanted])
        self.assign(wanted)

    def read_up_to(self, tp: Hashable) -> int | None:
        """How far in event time partition `tp` is known to be read.

        A caught-up partition holds nothing back (a time beyond any event); one
        that is behind, its last event's time; one never heard of, or behind with
        nothing read yet, None.
        """
        part = self._parts.get(tp)
        if part is None:
            return None
        if not part.behind:
            return CAUGHT_UP
        return part.last_ts

    def watermark_of(self, tp: Hashable) -> int | None:
        """No output for an event older than this is still to come from `tp` (for progress markers).

        A caught-up partition holds nothing back (CAUGHT_UP): an event produced
        to it later is new, and one that is older than what others already
        applied is late and handled as such. A partition that is behind: just
        before its last event's time (that event's own output may still be on
        its way). Unknown: None.
        """
        part = self._parts.get(tp)
        if part is None:
            return None
        if not part.behind:
            return CAUGHT_UP
        return None if part.last_ts is None else part.last_ts - 1

    def behind_count(self) -> int:
        return sum(1 for p in self._parts.values() if p.behind)

    def observe(self, tp: Hashable, event_ts: int, behind: bool) -> None:
        """A message with event time `event_ts` was read from `tp`; `behind` says more are waiting."""
        part = self._parts.setdefault(tp, _Partition())
        # Event time within a partition may wobble; the partition has reached its max.
        if part.last_ts is None or event_ts >= part.last_ts:
            part.last_ts, part.seen_wall = event_ts, None
        part.behind = behind

    def seed(self, tp: Hashable, event_ts: int, written_wall: int) -> None:
        """`tp`'s last event, read from the partition by a worker that has read nothing from it.

        `written_wall` is when that event was written (its Kafka timestamp).
        Ignored once anything was read from `tp`: what was read is newer.
        """
        part = self._parts.setdefault(tp, _Partition())
        if part.last_ts is None:
            part.last_ts, part.seen_wall = event_ts, written_wall

    def needs_seed(self, tp: Hashable) -> bool:
        """True while `tp` is caught up and nothing has been read from it: seed() can tell its last event."""
        part = self._parts.get(tp)
        return part is not None and not part.behind and part.last_ts is None

    def report_lag(self, tp: Hashable, behind: bool) -> None:
        """Periodic news of a partition's lag, also for partitions that deliver nothing."""
        self._parts.setdefault(tp, _Partition()).behind = behind

    def now(self, wall_ms: int) -> int | None:
        """The clock's reading at wall time `wall_ms`; None until it knows any time at all."""
        behind = [p for p in self._parts.values() if p.behind]
        if behind:
            if all(p.last_ts is not None for p in behind):
                self._advance_to(min(p.last_ts for p in behind))
            # Time stands still while held; it flows again from here once released.
            if self._value is not None:
                self._anchor_value, self._anchor_wall = self._value, wall_ms
            return self._value
        newest = max((p.last_ts for p in self._parts.values() if p.last_ts is not None), default=None)
        if self._anchor_value is None:
            if newest is None:
                # No event read yet: no reading. Nothing can be due before the first event, and a
                # worker started before a replay of older events must not begin at wall time (every
                # deadline of the replay would be due at once).
                return self._value
            # Time has flowed since a seeded event was written, as it would have for a worker
            # that read it then.
            seen = [p.seen_wall for p in self._parts.values() if p.last_ts == newest and p.seen_wall is not None]
            self._anchor_value, self._anchor_wall = newest, min(min(seen, default=wall_ms), wall_ms)
        flowing = self._anchor_value + max(0, wall_ms - self._anchor_wall)
        if newest is not None and newest > flowing:
            # Events are ahead of the extrapolation (a replay running fast): follow them.
            self._anchor_value, self._anchor_wall = newest, wall_ms
            flowing = newest
        return self._advance_to(flowing)

    def window_cutoff(self, wall_ms: int) -> int | None:
        """Windows that closed before this event time may be dropped."""
        now = self.now(wall_ms)
        return None if now is None else now - self.allowed_lateness_ms

    def _advance_to(self, candidate: int) -> int:
        if self._value is None or candidate > self._value:
            self._value = candidate
        return self._value
