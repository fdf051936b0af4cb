"""Fixes for faust-streaming 0.15.3's commit and rebalance bookkeeping, kept in one place.

Each fix below is a small function patched over one Faust method; its
docstring names the upstream issue and says what goes wrong without it.
``install(app)`` applies them once, and refuses any Faust but the pinned
``FAUST_VERSION``: the patches replace internals that change between releases.
``ORIGINALS`` keeps every replaced function, so tests can show each defect
against the installed Faust before showing it closed.

The commit, as patched here (``commit_snapshot``), goes in this order, and the
order is the whole at-least-once guarantee:

1. Faust fixes the offsets it is about to commit (the snapshot). A partition's
   offset covers only events an agent has finished with, contiguously from
   where this assignment started reading it, and never reaches past an event
   still being processed.
2. Every hook registered with ``register_before_commit`` is awaited: the stage
   runtime flushes its own producer and its state changelogs there.
3. Faust's producer is flushed completely (its buffer of table changelog
   records, then aiokafka's), within ``FLUSH_TIMEOUT_S``.
4. Only then are the snapshot's offsets committed.

Anything acknowledged while steps 2–3 run is not in the snapshot: it is
committed next time, after its own outputs have been flushed. If a hook
raises, the flush does not finish in time or a rebalance intervenes, nothing
is committed this time; the offsets stay where they were and the events are
read again after a restart, never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import metadata
from typing import Awaitable, Callable, Iterable

from streams.words import counted

log = logging.getLogger(__name__)

FAUST_VERSION = "0.15.3"

# How long the flush before a commit may take before that commit is given up.
FLUSH_TIMEOUT_S = 120.0

# "Class.method" -> the function Faust shipped, as found before patching.
ORIGINALS: dict[str, Callable] = {}

BeforeCommitHook = Callable[[], Awaitable[None]]


# ---------------------------------------------------------------- version pin
def check_faust_version(installed: str | None = None) -> None:
    """Refuse to patch a Faust other than the one these fixes were written against."""
    if installed is None:
        installed = metadata.version("faust-streaming")
    if installed != FAUST_VERSION:
        raise RuntimeError(
            f"streams.runtime.faust_fixes patches faust-streaming {FAUST_VERSION}, but "
            f"faust-streaming {installed} is installed: install faust-streaming=={FAUST_VERSION} "
            f"(pinned in pyproject.toml), or re-check every fix in this module against {installed} "
            f"and change FAUST_VERSION")


# ------------------------------------------------------------- pure helpers
def committable_offset(start: int | None, acked: Iterable[int], gaps: Iterable[tuple[int, int]] = (),
                       in_flight_floor: int | None = None) -> int | None:
    """The offset a partition may be committed at (the next one to read), or None for no commit.

    ``start`` is where this assignment began reading the partition (None: not
    known yet), ``acked`` the offsets agents have finished with, ``gaps`` the
    half-open ranges known not to hold a record (compaction, transaction
    markers), ``in_flight_floor`` the lowest offset delivered to a stream and
    not yet finished. The answer is the first offset from ``start`` on that is
    neither acked nor in a gap, and never beyond ``in_flight_floor``.
    """
    if start is None:
        return None
    done = set(acked)
    spans = sorted(gaps)
    offset, i = start, 0
    while True:
        if offset in done:
            offset += 1
            continue
        while i < len(spans) and spans[i][1] <= offset:
            i += 1
        if i < len(spans) and spans[i][0] <= offset:
            offset = spans[i][1]
            continue
        break
    if in_flight_floor is not None:
        offset = min(offset, in_flight_floor)
    return offset if offset > start else None


def in_flight_floors(messages: Iterable, generation_id: int | None) -> dict:
    """Per partition, the lowest offset of a message of this generation delivered to a stream and not finished."""
    floors: dict = {}
    for message in list(messages):
        if message.acked or message.generation_id != generation_id:
            continue
        tp = message.tp
        if tp not in floors or message.offset < floors[tp]:
            floors[tp] = message.offset
    return floors


def ack_counts(message, generation_id: int | None, flow_active: bool) -> bool:
    """Whether an acknowledgement says an agent really finished with ``message``.

    A stream skips, and then acknowledges, a message fetched in an older
    consumer generation or delivered while flow is suspended for a rebalance;
    it skips it before tracking it, so an untracked message acknowledged while
    flow is suspended was skipped, not processed. Neither may make an offset
    committable: the partition is read again from its committed offset after
    the rebalance's seek.
    """
    if message.generation_id != generation_id:
        return False
    return bool(message.tracked) or flow_active


def _tp_state(consumer) -> dict:
    """Per partition, where the current assignment started reading it (see ``perform_seek``)."""
    state = consumer.__dict__.get("_forewarn_start")
    if state is None:
        state = consumer.__dict__["_forewarn_start"] = {}
    return state


def _gap_spans(consumer, tp) -> list[tuple[int, int]]:
    tree = consumer._gap.get(tp)
    return [(iv.begin, iv.end) for iv in tree] if tree else []


def _forget_before(consumer, tp, offset: int) -> None:
    """Drop the acknowledgement bookkeeping below ``offset`` once it is committed there."""
    acked = consumer._acked.get(tp)
    if acked is not None:
        acked[:] = [o for o in acked if o >= offset]
    index = consumer._acked_index.get(tp)
    if index is not None:
        index.difference_update([o for o in index if o < offset])
    tree = consumer._gap.get(tp)
    if tree:
        tree.chop(0, offset)


def _reset_bookkeeping(consumer, tp) -> None:
    for book in (consumer._acked, consumer._acked_index, consumer._gap):
        book.pop(tp, None)


# ---------------------------------------------------------------- fix 1
def new_offset(self, tp):
    """Fix for Consumer._new_offset (faust-streaming issue 606, open PR 707).

    Faust's guard ``min(acked) - committed > 1`` lets a run of acked offsets
    that starts one past the committed offset be committed, although the
    message at the committed offset may still be in an agent (with
    ``concurrency`` > 1, or a slow event while later ones finish); it applies
    no guard at all when the committed offset is 0 or unknown; and it removes
    the offsets from its list while computing, so a commit that then fails
    loses them. Here the offset is contiguous from where the assignment
    started, capped at the first in-flight message, and computing it changes
    nothing (``commit_snapshot`` forgets acks only after a commit succeeded).
    """
    floor = in_flight_floors((m for m in self._unacked_messages if m.tp == tp),
                             self.app.consumer_generation_id).get(tp)
    return committable_offset(_tp_state(self).get(tp), self._acked.get(tp, ()), _gap_spans(self, tp), floor)


async def add_gap(self, tp, offset_from: int, offset_to: int) -> None:
    """Fix for Consumer._add_gap (faust-streaming issue 606; the gap bookkeeping of issue 596).

    The fetch loop calls it with the offset after the last one read and the
    offset of the message it is about to deliver. Faust records the range up
    to and including that message, so the message counts as done before any
    agent has seen it. Here only the offsets in between, the ones with no
    record, are recorded, and never below the assignment's start.
    """
    start = _tp_state(self).get(tp)
    if start is not None:
        offset_from = max(offset_from, start)
    if offset_from < offset_to:
        tree = self._gap[tp]
        tree.addi(offset_from, offset_to)
        await asyncio.sleep(0)  # building a large gap should not starve health checks
        tree.merge_overlaps()


# ---------------------------------------------------------------- fix 2
async def perform_seek(self) -> None:
    """Fix for Consumer.perform_seek (no guard while the committed offset is unknown; issue 216).

    Faust drops a partition's committed offset when it is revoked and learns
    it again only at the new generation's seek, and in between applies no
    guard; it stores a committed offset of 0 as unknown; and table recovery
    resumes the stream partitions before that seek (0.15.3 has the order
    issue 216 reported and PR 217 once fixed). Here every partition whose acks
    are committed gets a known start at this seek: its committed offset, or
    for a partition never committed the earliest (or latest, per
    ``consumer_auto_offset_reset``) offset, sought explicitly so the position
    and the start agree. Acknowledgements recorded before the seek are
    dropped: what they covered is read again from the start.
    """
    committed = await self.seek_to_committed()
    acking = self.app.topics.acks_enabled_for
    tps = [tp for tp in committed if acking(tp.topic)]
    unset = [tp for tp in tps if not committed[tp]]
    resets: dict = {}
    if unset:
        if self.app.conf.consumer_auto_offset_reset == "latest":
            resets = await self.highwaters(*unset)
        else:
            resets = await self.earliest_offsets(*unset)
        for tp in unset:
            await self._seek(tp, resets[tp])
    starts = _tp_state(self)
    for tp in committed:
        if tp in tps:
            start = committed[tp] if committed[tp] else resets[tp]
            _reset_bookkeeping(self, tp)
            starts[tp] = start
            self._committed_offset[tp] = start
            # The fetch loop reads this as the last offset delivered.
            self._read_offset[tp] = start - 1 if start > 0 else None
        else:
            offset = committed[tp]
            self._read_offset[tp] = offset if offset is not None and offset >= 0 else None
            if offset:
                self._committed_offset[tp] = offset
    deferred = self.__dict__.pop("_forewarn_deferred", set())
    if deferred:
        ORIGINALS["Consumer.resume_partitions"](self, {tp for tp in deferred if tp in starts})


def resume_partitions(self, tps) -> None:
    """Fix for Consumer.resume_partitions (issue 216: streams resumed before the seek).

    A stream partition without a known start is kept paused and resumed by
    ``perform_seek`` once it has one, so nothing is fetched for it from
    wherever the previous generation left its position.
    """
    starts = _tp_state(self)
    acking = self.app.topics.acks_enabled_for
    tps = set(tps)
    waiting = {tp for tp in tps if acking(tp.topic) and tp not in starts}
    if waiting:
        self.__dict__.setdefault("_forewarn_deferred", set()).update(waiting)
    ORIGINALS["Consumer.resume_partitions"](self, tps - waiting)


async def on_partitions_revoked(self, revoked) -> None:
    """Companion of ``perform_seek``: a revoked partition's start is no longer known."""
    starts = _tp_state(self)
    deferred = self.__dict__.get("_forewarn_deferred", set())
    for tp in revoked:
        starts.pop(tp, None)
        deferred.discard(tp)
    await ORIGINALS["Consumer.on_partitions_revoked"](self, revoked)


async def on_partitions_assigned(self, assigned, generation_id: int = 0) -> None:
    """Companion of ``perform_seek``: a new generation knows no start until its seek."""
    _tp_state(self).clear()
    self.__dict__.pop("_forewarn_deferred", None)
    await ORIGINALS["Consumer.on_partitions_assigned"](self, assigned, generation_id)


# ---------------------------------------------------------------- fix 3
def ack(self, message) -> bool:
    """Fix for Consumer.ack (skipped events were acknowledged).

    ``Stream.__aiter__`` skips a message fetched in an older generation or
    delivered while flow is suspended, and acknowledges it in its ``finally``
    as if an agent had processed it; acknowledged, its offset could be
    committed. Such acknowledgements (``ack_counts``) are not recorded here;
    the message is read again after the rebalance's seek.
    """
    if not ack_counts(message, self.app.consumer_generation_id, self.app.flow_control.is_active()):
        message.acked = True
        self._unacked_messages.discard(message)
        return False
    return ORIGINALS["Consumer.ack"](self, message)


def use_python_stream_iterator() -> None:
    """Make every acknowledgement go through ``Consumer.ack``.

    Faust's Cython stream iterator writes acknowledgements into the
    consumer's lists itself, past ``Consumer.ack`` and so past fix 3. The
    pure-Python iterator does the same work through ``Consumer.ack``; measured
    here, the worker is no slower without the Cython one.
    """
    import faust.streams

    if "_CStreamIterator" not in ORIGINALS:
        ORIGINALS["_CStreamIterator"] = faust.streams._CStreamIterator
    faust.streams._CStreamIterator = None


# ---------------------------------------------------------------- fix 4
class BufferFlushTimeout(Exception):
    """Faust's producer buffer did not hand over its records in time."""


def buffer_put(self, fut) -> None:
    """Counts what enters Faust's producer buffer (see ``buffer_flush``)."""
    self.__dict__["_forewarn_put"] = self.__dict__.get("_forewarn_put", 0) + 1
    ORIGINALS["ProducerBuffer.put"](self, fut)


async def buffer_send_pending(self, fut) -> None:
    """Counts what leaves Faust's producer buffer for aiokafka (see ``buffer_flush``)."""
    try:
        await ORIGINALS["ProducerBuffer._send_pending"](self, fut)
    finally:
        self.__dict__["_forewarn_sent"] = self.__dict__.get("_forewarn_sent", 0) + 1


async def buffer_flush(self, timeout: float | None = None) -> None:
    """Fix for ProducerBuffer.flush (the flush before a commit; PR 273 added that flush).

    ``flush`` is ``flush_atmost(None)``, which returns as soon as 0.1 s pass
    without a record leaving the buffer, with records still in it (table
    changelog records, written with ``send_soon``); the commit that follows
    then commits offsets whose changelog records were never sent. Here it
    waits until every record put in before the call has been handed to
    aiokafka (whose own flush, next in ``Producer.flush``, waits for the
    broker), and raises ``BufferFlushTimeout`` after ``timeout`` seconds.
    """
    if timeout is None:
        timeout = FLUSH_TIMEOUT_S
    target = self.__dict__.get("_forewarn_put", 0)
    deadline = time.monotonic() + timeout
    while self.__dict__.get("_forewarn_sent", 0) < target:
        if self.state != "running" and self.size:
            raise RuntimeError("Cannot flush: Producer not Running")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BufferFlushTimeout(
                f"{counted(target - self.__dict__.get('_forewarn_sent', 0), 'record')} still in Faust's "
                f"producer buffer after {timeout:.0f}s")
        self.message_sent.clear()
        try:
            # Short waits: other waiters clear the same event.
            await asyncio.wait_for(self.message_sent.wait(), timeout=min(remaining, 0.05))
        except asyncio.TimeoutError:
            pass


async def flush_producer(app, timeout: float = FLUSH_TIMEOUT_S) -> bool:
    """Flush Faust's producer completely; False (logged) if it did not finish within ``timeout``."""
    try:
        await asyncio.wait_for(app.producer.flush(), timeout=timeout)
    except (asyncio.TimeoutError, BufferFlushTimeout) as exc:
        log.error("Faust's producer did not flush within %.1fs (%s): not committing this time",
                  timeout, exc or type(exc).__name__)
        return False
    return True


# ---------------------------------------------------------------- fix 5
def register_before_commit(app, hook: BeforeCommitHook) -> None:
    """Have ``await hook()`` run between fixing the offsets to commit and committing them.

    A hook that raises stops that commit (it is logged; the next commit tries
    again). Hooks run in the order they were registered.
    """
    hooks = app.__dict__.setdefault("_forewarn_before_commit", [])
    if hook not in hooks:
        hooks.append(hook)


async def run_before_commit_hooks(app) -> bool:
    """Await every registered hook; False (logged) if one raised."""
    for hook in list(app.__dict__.get("_forewarn_before_commit", ())):
        try:
            await hook()
        except Exception:
            log.exception("before-commit hook %r failed: not committing this time", hook)
            return False
    return True


async def commit_snapshot(self, tps, start_new_transaction: bool = True) -> bool:
    """Replaces Consumer._commit_tps: snapshot, hooks, flush, commit (see the module docstring).

    Faust's version computes the offsets, sends attachments, flushes with the
    defective buffer flush and commits, with nothing between to flush the
    runtime's outputs. A rebalance while the hooks or the flush run (another
    generation, or a partition's start re-established) drops that commit.
    """
    from faust.exceptions import ProducerSendError

    generation = self.app.consumer_generation_id
    starts = _tp_state(self)
    floors = in_flight_floors(self._unacked_messages, generation)
    snapshot = {}
    for tp in tps:
        offset = committable_offset(starts.get(tp), self._acked.get(tp, ()), _gap_spans(self, tp), floors.get(tp))
        if offset is not None and self._should_commit(tp, offset):
            snapshot[tp] = (offset, starts[tp])
    if not snapshot:
        return False
    offsets = {tp: offset for tp, (offset, _) in snapshot.items()}
    try:
        await self._handle_attached(offsets)
    except ProducerSendError as exc:
        await self.crash(exc)
        return False
    if not await run_before_commit_hooks(self.app):
        return False
    if not await flush_producer(self.app):
        return False
    if self.app.consumer_generation_id != generation:
        log.info("a rebalance started while flushing before a commit: not committing %r", offsets)
        return False
    assignment = self.assignment()
    offsets = {tp: offset for tp, (offset, start) in snapshot.items()
               if tp in assignment and starts.get(tp) == start}
    if not offsets:
        return False
    did_commit = await self._commit(offsets)
    if not did_commit:
        return False
    for tp, offset in offsets.items():
        if starts.get(tp) is not None:
            starts[tp] = offset
        _forget_before(self, tp, offset)
    self._committed_offset.update(offsets)
    self.app.tables.on_commit(offsets)
    self.app.monitor.on_tp_commit(offsets)
    return True


# ------------------------------------------- moved from streams/app.py, unchanged
class CommitStallWatch:
    """Finds input partitions whose commit is stuck although everything in them has been read.

    Faust commits a partition only up to its first unacknowledged offset, and
    its bookkeeping of acknowledgements can go wrong when a partition stays with
    a worker through two rebalances in a row (faust-streaming issue 318): the
    worker has read and processed everything, yet the committed offset never
    moves again and the group's lag never reaches zero. Seen in the
    worker-kill fault test. A partition is called stalled when its committed
    offset has not moved for ``patience_ms`` while the consumer's position is
    at the end of the partition, past the commit, and no message of it is
    waiting to be acknowledged. The worker then reads it again from the
    committed offset (``heal_stalled_commits``); the detectors are idempotent
    for redelivered events, so this costs a replay of those messages, never a
    wrong alert.
    """

    def __init__(self, patience_ms: int = 30_000) -> None:
        self.patience_ms = patience_ms
        self._since: dict = {}  # tp -> (committed offset, wall ms when first seen stuck there)

    def stalled(self, tp, committed: int | None, position: int | None, highwater: int | None,
                unacked: bool, now_ms: int) -> bool:
        stuck = (committed is not None and position is not None and highwater is not None
                 and position >= highwater and committed < position and not unacked)
        if not stuck:
            self._since.pop(tp, None)
            return False
        seen = self._since.get(tp)
        if seen is None or seen[0] != committed:
            self._since[tp] = (committed, now_ms)
            return False
        if now_ms - seen[1] < self.patience_ms:
            return False
        self._since.pop(tp, None)
        return True


async def heal_stalled_commits(worker, watch: CommitStallWatch, assigned, positions: dict) -> None:
    """Read again, from its committed offset, every input partition ``watch`` finds stalled."""
    consumer = worker.app.consumer
    unacked = {m.tp for m in list(getattr(consumer, "_unacked_messages", ()))}
    now = int(time.time() * 1000)
    for tp in assigned:
        committed = getattr(consumer, "_committed_offset", {}).get(tp)
        if not watch.stalled(tp, committed, positions.get(tp), consumer.highwater(tp), tp in unacked, now):
            continue
        log.warning("commit of %s[%d] stuck at offset %d with everything read; reading it again from there",
                    tp.topic, tp.partition, committed)
        for bookkeeping in ("_acked", "_acked_index", "_gap"):
            getattr(consumer, bookkeeping, {}).pop(tp, None)
        await consumer.seek(tp, committed)


def seek_uncommitted_partitions_to_beginning(stream_topics: set[str]) -> None:
    """Make a partition with no committed offset start from its beginning when it changes owner.

    aiokafka's seek_to_committed moves a partition only when its committed
    offset is above 0. A worker that is handed a partition before anyone
    committed on it has often prefetched its first records during table
    recovery and dropped them; without a seek its position stays past them and
    those records are never processed (seen with two workers joining Apache
    Kafka one after the other). Only the agents' input topics are reset here;
    changelogs are Faust's own business.
    """
    from aiokafka import AIOKafkaConsumer

    original = AIOKafkaConsumer.seek_to_committed
    if getattr(original, "forewarn_topics", None) is not None:
        original.forewarn_topics.update(stream_topics)
        return

    async def seek_to_committed(self, *partitions):
        committed = await original(self, *partitions)
        never_committed = []
        for tp, offset in committed.items():
            if tp.topic not in seek_to_committed.forewarn_topics:
                continue
            if offset is None:
                never_committed.append(tp)
            elif offset == 0:
                self.seek(tp, 0)
        if never_committed:
            # One request for all: each call waits for the fetcher's next offset reset (over a second).
            await self.seek_to_beginning(*never_committed)
        return committed

    seek_to_committed.forewarn_topics = set(stream_topics)
    AIOKafkaConsumer.seek_to_committed = seek_to_committed


def unseekable_changelog_partitions(tps, offsets) -> list:
    """The changelog partitions among `tps` whose recorded offset cannot be sought to.

    Faust's table recovery keeps, per changelog partition, the offset of the last
    record read (-1: none yet). A partition assigned to this worker while a
    recovery is already under way (the group rebalancing again as a killed worker
    drops out) has no offset recorded yet (None), and one whose earliest offset
    could not be read may hold a value below -1. Both are returned here; they are
    read from the beginning, as a partition never read before is.
    """
    return [tp for tp in tps if not isinstance(offsets.get(tp), int) or offsets[tp] < -1]


def guard_changelog_seeks() -> None:
    """Make table recovery read a changelog partition with no usable offset from its beginning.

    Without this, Faust hands such an offset to aiokafka's seek, whose ValueError
    ("Offset must be a positive integer") ends the whole worker. Seen on the
    surviving worker when its partner was killed: the standby changelog
    partitions assigned in the rebalance that followed had no offset yet.
    """
    from faust.tables.recovery import Recovery

    original = Recovery._seek_offsets
    if getattr(original, "forewarn_guard", False):
        return

    async def _seek_offsets(self, consumer, tps, offsets, title):
        for tp in unseekable_changelog_partitions(tps, offsets):
            log.warning("%s changelog %s[%d] has no usable offset (%r): reading it from the beginning",
                        title, tp.topic, tp.partition, offsets.get(tp))
            offsets[tp] = -1
        await original(self, consumer, tps, offsets, title)

    _seek_offsets.forewarn_guard = True
    Recovery._seek_offsets = _seek_offsets


# ------------------------------------------------------------------- a setting Faust does not expose
def set_fetch_max_wait(app, ms: int) -> None:
    """Make the worker's consumer wait at most `ms` for a fetch to fill, instead of Faust's fixed 1,500.

    Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no
    setting to change it. A broker that answers a fetch over many partitions
    only when that time is up (the embedded broker does; Apache Kafka answers
    as soon as one record is there) then adds up to 1.5 s to every hop an
    event takes from one stage to the next.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._create_worker_consumer
    if not getattr(original, "forewarn_fetch_wait", False):
        def _create_worker_consumer(self, transport):
            consumer = original(self, transport)
            wait = getattr(self.app, "_forewarn_fetch_max_wait_ms", None)
            if wait is not None:
                consumer._fetch_max_wait_ms = wait
            return consumer

        _create_worker_consumer.forewarn_fetch_wait = True
        AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    app.__dict__["_forewarn_fetch_max_wait_ms"] = ms


# ------------------------------------------------------------------- install
def _patches() -> list[tuple[type, str, Callable]]:
    from faust.transport.consumer import Consumer
    from faust.transport.producer import ProducerBuffer

    return [
        (Consumer, "_new_offset", new_offset),
        (Consumer, "_add_gap", add_gap),
        (Consumer, "perform_seek", perform_seek),
        (Consumer, "resume_partitions", resume_partitions),
        (Consumer, "on_partitions_revoked", on_partitions_revoked),
        (Consumer, "on_partitions_assigned", on_partitions_assigned),
        (Consumer, "ack", ack),
        (Consumer, "_commit_tps", commit_snapshot),
        (ProducerBuffer, "put", buffer_put),
        (ProducerBuffer, "_send_pending", buffer_send_pending),
        (ProducerBuffer, "flush", buffer_flush),
    ]


def check_app_settings(app) -> None:
    """Refuse settings the fixes do not cover, naming the setting to change."""
    conf = app.conf
    if str(getattr(conf.processing_guarantee, "value", conf.processing_guarantee)) != "at_least_once":
        raise RuntimeError("processing_guarantee must be 'at_least_once': Faust's exactly_once is broken "
                           "upstream (faust-streaming issues 323, 517, 440) and these fixes do not cover it")
    if conf.producer_threaded:
        raise RuntimeError("producer_threaded must be False: the flush before a commit "
                           "(faust_fixes.buffer_flush) counts records in the unthreaded buffer only")


def install(app=None) -> None:
    """Patch Faust once (later calls do nothing more) and, given ``app``, check its settings.

    The two seek patches moved here from the worker need the stream topics:
    call ``seek_uncommitted_partitions_to_beginning(topics)`` yourself;
    ``guard_changelog_seeks`` is applied here.
    """
    check_faust_version()
    from faust.transport.consumer import Consumer

    if not getattr(Consumer, "_forewarn_fixed", False):
        for cls, name, function in _patches():
            ORIGINALS[f"{cls.__name__}.{name}"] = cls.__dict__[name]
            setattr(cls, name, function)
        Consumer._forewarn_fixed = True
        use_python_stream_iterator()
        guard_changelog_seeks()
    if app is not None:
        check_app_settings(app)


def original(name: str) -> Callable:
    """The function Faust shipped as ``name`` ("Class.method"), patched or not."""
    if name in ORIGINALS:
        return ORIGINALS[name]
    from faust.transport.consumer import Consumer
    from faust.transport.producer import ProducerBuffer

    cls_name, attr = name.split(".")
    return {"Consumer": Consumer, "ProducerBuffer": ProducerBuffer}[cls_name].__dict__[attr]


__all__ = [
    "FAUST_VERSION", "FLUSH_TIMEOUT_S", "ORIGINALS", "BufferFlushTimeout", "CommitStallWatch",
    "ack_counts", "check_faust_version", "committable_offset", "flush_producer", "guard_changelog_seeks",
    "heal_stalled_commits", "in_flight_floors", "install", "original", "register_before_commit",
    "run_before_commit_hooks", "seek_uncommitted_partitions_to_beginning", "unseekable_changelog_partitions",
]
