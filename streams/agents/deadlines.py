"""Which entities of a partition have a deadline when: the index behind the ``forewarn-ticks`` timer.

Faust lets a table change only while an event of the table's partition is
being processed, so a deadline cannot be acted on from a timer directly. The
worker's timer instead sends a tick (the worker clock) to partition p of
``forewarn-ticks`` when this index says something in p is due; every
deadline stage reads that topic beside its inputs (all co-partitioned), and
on the tick processes the entities due in p.

Layout in the stage's index table (a plain mapping in tests):

* ``"<p>"``: {bucket: earliest due time in it} for partition p;
* ``"<p>:<bucket>"``: the entity keys with a deadline in that bucket.

Buckets are ``BUCKET_MS`` (one minute) wide, so scheduling rewrites only the
list of entities due in the same minute (every table write is a changelog
message carrying the whole value: a shop placing ten orders a second with a
ship-by deadline would otherwise rewrite thousands of ids per order), and a
tick reads only the buckets that are due. The bucket width may change between
versions: a tick trusts the earliest due time stored per bucket, not its
number. An entity may appear in a bucket after its deadline moved (entries are
not removed when rescheduled); the stage checks each entity's real next
deadline, so stale entries only cost a lookup.
"""

from __future__ import annotations

from typing import MutableMapping

BUCKET_MS = 60 * 1000


class DueIndex:
    def __init__(self, table: MutableMapping) -> None:
        self.table = table

    def schedule(self, partition: int, entity: str, due: int | None) -> None:
        if due is None:
            return
        bucket = str(due // BUCKET_MS)
        heads = self.table.get(str(partition)) or {}
        members = self.table.get(f"{partition}:{bucket}") or []
        if entity not in members:
            self.table[f"{partition}:{bucket}"] = members + [entity]
        if bucket not in heads or due < heads[bucket]:
            self.table[str(partition)] = dict(heads, **{bucket: due})

    def first_due(self, partition: int) -> int | None:
        heads = self.table.get(str(partition)) or {}
        return min(heads.values(), default=None)

    def due_entities(self, partition: int, clock: int) -> list[str]:
        """Entities in every bucket whose earliest deadline has passed, in bucket order."""
        heads = self.table.get(str(partition)) or {}
        out: list[str] = []
        for bucket in sorted(heads, key=int):
            if heads[bucket] > clock:
                continue
            for entity in self.table.get(f"{partition}:{bucket}") or []:
                if entity not in out:
                    out.append(entity)
        return out

    def settle(self, partition: int, clock: int, next_due: dict[str, int | None]) -> None:
        """After a tick: drop the due buckets, then schedule each processed entity's next deadline."""
        heads = dict(self.table.get(str(partition)) or {})
        for bucket in [b for b, due in heads.items() if due <= clock]:
            del heads[bucket]
            self.table.pop(f"{partition}:{bucket}", None)
        self.table[str(partition)] = heads
        for entity, due in next_due.items():
            self.schedule(partition, entity, due)
