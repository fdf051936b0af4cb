"""Stage state: one Faust table per stage, changes coalesced per key, deadlines in memory.

A Faust table write (``table[k] = v``) sends one changelog record at once and
costs far more than the detection itself. ``StageTable`` keeps Faust's table
for what it does well (recovery from the changelog after a rebalance, standby
copies on the other worker) but writes its in-memory store directly and
remembers which keys changed. ``changes()`` hands each changed key out once,
however often it changed, and the runtime logs them before it commits the
offsets of the events behind them (``streams.runtime.worker``).

Between changes an entity is kept as the JSON its changelog record carries,
not as Python objects: an open order takes a few hundred bytes instead of a
few kilobytes of dicts and lists, which is what lets one worker hold a
million open orders. The table's values are raw bytes for the same reason:
recovery from the changelog fills the store with those bytes as they are.
``get`` decodes on demand; a changed entity stays decoded until it is logged.

``DeadlineIndex`` is when each entity of a stage next needs looking at: a heap
per partition, rebuilt from the table after every rebalance, so it needs no
changelog of its own.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Iterator

import orjson

# Keys that are not strings become strings, as with the standard library's json.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def encode_json(value: Any) -> bytes:
    """Compact JSON, what Faust's "json" serializer reads back on recovery.

    orjson, not the standard library: the changelog records of every changed
    entity are encoded before each commit, and ``json.dumps`` took a twentieth
    of the worker's time there (bench/worker_bench.py profiled); orjson does
    the same in about a tenth of the time.

    Fix for an orjson defect (3.13; ijl/orjson issue 483): the bytes object
    ``orjson.dumps`` returns keeps the whole buffer it was written in, at
    least 4 KB, whatever the length of the JSON. The store keeps every entity
    as these bytes, so each is copied into a bytes object of its own length:
    `bench/memory_bench.py --orders 300000` peaked at 4,317 MB without the
    copy and 739 MB with the standard library. The copy costs a fraction of a
    microsecond (tests/unit/test_runtime_state.py reproduces the defect).
    """
    return memoryview(orjson.dumps(value, option=_JSON_OPTIONS)).tobytes()


decode_json = orjson.loads


class StageTable:
    def __init__(self, table) -> None:
        self.table = table  # faust.Table, memory store
        self.dirty: dict[Any, int] = {}  # key -> partition

    @property
    def _store(self):
        return self.table.data

    @property
    def changelog_topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    def get(self, key: Any) -> Any:
        value = self._store.data.get(key)
        if type(value) is bytes:
            # Not cached decoded: a caller that changes it stores it again with put().
            return decode_json(value)
        return value

    def put(self, partition: int, key: Any, value: Any) -> None:
        store = self._store
        store.data[key] = value
        # Faust's memory store drops the keys of partitions this worker no longer holds by this map.
        store._key_partition[key] = partition
        self.dirty[key] = partition

    def delete(self, partition: int, key: Any) -> None:
        store = self._store
        if store.data.pop(key, None) is not None or key in self.dirty:
            store._key_partition.pop(key, None)
            self.dirty[key] = partition

    def items_in(self, partitions: set[int]) -> Iterator[tuple[Any, int, Any]]:
        store = self._store
        for key, partition in list(store._key_partition.items()):
            if partition in partitions:
                value = self.get(key)
                if value is not None:
                    yield key, partition, value

    def changes(self) -> Iterator[tuple[int, bytes, bytes | None]]:
        """(partition, key, value or None for a deletion) of every key changed since the last call."""
        dirty, self.dirty = self.dirty, {}
        data = self._store.data
        for key, partition in dirty.items():
            value = data.get(key)
            if value is None:
                yield partition, encode_json(key), None
                continue
            if type(value) is not bytes:
                value = data[key] = encode_json(value)
            yield partition, encode_json(key), value


class DeadlineIndex:
    """The next deadline of each entity, by partition; stale heap entries are skipped, not removed."""

    def __init__(self, next_due: Callable[[Any], int | None]) -> None:
        self.next_due = next_due
        self._heaps: dict[int, list[tuple[int, Any]]] = {}
        self._due: dict[Any, int] = {}

    def schedule(self, partition: int, key: Any, state: Any) -> None:
        due = None if state is None else self.next_due(state)
        if due is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heaps.setdefault(partition, []), (due, key))

    def pop_due(self, partition: int, clock: int) -> list[Any]:
        """Entities of `partition` whose deadline is at or before `clock`, earliest first."""
        heap = self._heaps.get(partition)
        out: list[Any] = []
        while heap and heap[0][0] <= clock:
            due, key = heapq.heappop(heap)
            if self._due.get(key) == due:
                del self._due[key]
                out.append(key)
        return out

    def first_due(self, partition: int) -> int | None:
        heap = self._heaps.get(partition)
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def rebuild(self, table: StageTable, partitions: set[int]) -> None:
        """Index exactly the entities of `partitions` (after a rebalance)."""
        self._heaps = {}
        self._due = {}
        for key, partition, state in table.items_in(partitions):
            self.schedule(partition, key, state)
