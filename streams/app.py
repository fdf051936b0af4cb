"""The Faust application, built from one Settings object; nothing connects at import time.

``build_worker()`` returns a ``Worker`` holding the app and everything its
agents share: the codec, the reference views, the worker clock and the topic
handles. Agents (``streams.agents``) register on it and stay thin: decode,
call a pure detector, publish what it returns.
"""

from __future__ import annotations

import collections
import json
import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import faust

from schemas.codec import Codec, DecodeError, format_timestamp_ms
from sinks.dlq import dead_letter_headers
from streams import topics
from streams.brokers import faust_producer_overrides, session_timeout_s
from streams.clock import WorkerClock
from streams.reference import ReferenceView
from streams.settings import Settings

log = logging.getLogger(__name__)


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Worker:
    settings: Settings
    bootstrap: str
    app: faust.App
    codec: Codec
    reference: ReferenceView
    clock: WorkerClock
    # Raw-bytes topic handles by unprefixed name; values are encoded by the codec.
    out: dict[str, faust.TopicT] = field(default_factory=dict)
    dead_lettered: int = 0
    # Full names of the topics the agents read; the clock watches these partitions.
    clocked_topics: set[str] = field(default_factory=set)
    # Full names of every topic the agents read (clocked or not).
    input_topics: set[str] = field(default_factory=set)
    # orders partition -> (watermark, wall ms) of the last progress marker this worker sent for it
    markers_sent: dict[int, tuple[int, int]] = field(default_factory=dict)
    tables: dict[str, faust.Table] = field(default_factory=dict)
    # The deadline stages' indexes (streams.agents.deadlines): the tick timer reads them.
    due_indexes: list = field(default_factory=list)
    # forewarn-ticks partition -> wall ms of the last tick sent to it
    ticks_sent: dict[int, int] = field(default_factory=dict)
    # (wall ms, clock) readings of the last few seconds, oldest first (see send_ticks)
    clock_history: collections.deque = field(default_factory=collections.deque)

    def channel(self, *specs: topics.TopicSpec) -> faust.TopicT:
        """One channel over several co-partitioned topics (same key, same partition count)."""
        self.clocked_topics.update(self.settings.topic(s.name) for s in specs)
        self.input_topics.update(self.settings.topic(s.name) for s in specs)
        return self.app.topic(*(self.settings.topic(s.name) for s in specs),
                              key_serializer="raw", value_serializer="raw")

    def table(self, name: str) -> faust.Table:
        """The worker's table of that name (one per name: a stage may read another's, never write it)."""
        if name not in self.tables:
            # Without a key or value type, Faust stores table keys and values as JSON.
            self.tables[name] = self.app.Table(name, default=None, partitions=self.settings.partitions)
        return self.tables[name]

    async def publish(self, spec: topics.TopicSpec, record: dict) -> None:
        key = record[spec.key_field]
        value = self.codec.encode(spec.schema, record, topic=self.settings.topic(spec.name))
        await self.out[spec.name].send(key=key.encode(), value=value)

    async def publish_alert(self, alert: dict) -> None:
        """An alert, and for alerts a rep should act on, the request that makes or updates its task."""
        from streams.detectors import tasks

        await self.publish(topics.ALERTS, alert)
        if tasks.needs_task(alert):
            await self.publish(topics.TASK_REQUESTS, tasks.request_record(alert))

    async def emit(self, result) -> None:
        """Everything a detector's Result asks to publish (streams.detectors.lifecycle.Result)."""
        for alert in result.alerts:
            await self.publish_alert(alert)
        for topic, record in result.signals:
            if record["key"] is None or record["key"] == "":
                continue  # a fact about no entity (e.g. a ticket without a customer) has no stage to go to
            await self.publish(topics.BY_NAME[topic], record)
        for task in result.tasks:
            await self.publish(topics.OUTREACH_TASKS, task)
        for rejection in result.rejections:
            await self.publish(topics.TASK_UPDATES_REJECTED, rejection)

    def decode(self, event, allowed: dict[str, str]) -> tuple[str, dict] | tuple[None, str]:
        """Decode one Faust event; returns (schema, record), or (None, reason) when it cannot be used.

        `allowed` maps each schema the channel may carry to the field its key must equal
        (None: the message is not keyed).
        """
        try:
            schema, record = self.codec.decode(event.value)
        except DecodeError as exc:
            return None, f"{exc.reason}|{exc}"
        if schema not in allowed:
            return None, f"unexpected-schema|{schema} is not expected on {event.message.topic}"
        key_field = allowed[schema]
        if key_field is None:
            return schema, record  # progress markers: unkeyed, sent to every partition
        key = event.key.decode(errors="replace") if isinstance(event.key, (bytes, bytearray)) else event.key
        if key != record.get(key_field):
            # State for a key lives in the partition its key hashes to: a message keyed
            # otherwise would split one entity's state across partitions.
            return None, (f"key-mismatch|message key {key!r} differs from {key_field} "
                          f"{record.get(key_field)!r}; producers must key {event.message.topic} by {key_field}")
        return schema, record

    async def dead_letter(self, event, reason_and_message: str, processor: str) -> None:
        reason, _, message = reason_and_message.partition("|")
        error_class = {"key-mismatch": "KeyMismatch", "unexpected-schema": "UnexpectedSchema",
                       "processing-error": "ProcessingError"}.get(reason, "DecodeError")
        msg = event.message
        self.dead_lettered += 1
        log.warning("dead-lettered %s[%s]@%s: %s: %s", msg.topic, msg.partition, msg.offset, reason, message)
        await self.out[topics.DEAD_LETTERS.name].send(
            key=event.key,
            value=event.value,
            headers=dead_letter_headers(reason=reason, message=message, topic=msg.topic,
                                        partition=msg.partition, offset=msg.offset,
                                        processor=processor, now_ms=wall_ms(), error_class=error_class),
        )

    async def processing_failed(self, event, processor: str) -> None:
        """A detector raised: keep the message on the dead-letter topic rather than lose it."""
        log.exception("processing failed in %s", processor)
        await self.dead_letter(event, f"processing-error|{traceback.format_exc(limit=3)}", processor)

    def observe(self, event, event_ts: int) -> None:
        msg = event.message
        if msg.topic not in self.clocked_topics:
            return
        tp = (msg.topic, msg.partition)
        highwater = self.app.consumer.highwater(msg.tp)
        behind = highwater is None or msg.offset + 1 < highwater
        self.clock.observe(tp, event_ts, behind=behind)


def worker_datadir(settings: Settings) -> Path:
    name = settings.worker_id or "worker"
    return settings.data_dir / "faust" / f"{settings.topic('forewarn')}-{name}"


def worker_is_ready(settings: Settings) -> bool:
    """The worker with these settings has joined its group and been given partitions."""
    return (worker_datadir(settings) / "ready").exists()


# How often an unchanged progress marker is repeated (see send_order_watermarks).
MARKER_REFRESH_MS = 60_000


async def send_order_watermarks(worker: Worker, assigned) -> None:
    """Tell every SKU-stage partition how far each orders partition this worker reads has got.

    The SKU stage applies stock and order lines in event-time order; it needs
    to know that no order line older than some time is still on its way. A
    marker that says nothing new is sent again only every MARKER_REFRESH_MS:
    the SKU stage keeps the last one in a table, and an idle stack should not
    write (and leave uncommitted) a stream of repeated markers.
    """
    orders = worker.settings.topic(topics.ORDERS.name)
    lines = worker.out[topics.ORDER_LINES.name]
    now = wall_ms()
    mine = {tp.partition for tp in assigned if tp.topic == orders}
    # A partition that comes back after a rebalance gets a marker at once.
    for partition in set(worker.markers_sent) - mine:
        del worker.markers_sent[partition]
    for tp in assigned:
        if tp.topic != orders:
            continue
        watermark = worker.clock.watermark_of((tp.topic, tp.partition))
        if watermark is None:
            continue
        last = worker.markers_sent.get(tp.partition)
        if last is not None and last[0] == watermark and now - last[1] < MARKER_REFRESH_MS:
            continue
        worker.markers_sent[tp.partition] = (watermark, now)
        value = worker.codec.encode(topics.WATERMARK_SCHEMA, {
            "source": f"{topics.ORDERS.name}:{tp.partition}", "watermark": watermark, "sent_at": now})
        for partition in range(worker.settings.partitions):
            await lines.send(key=None, value=value, partition=partition)


# Ticks carry the clock as it read this long ago (wall time); see send_ticks.
TICK_DELAY_MS = 2_000


async def send_ticks(worker: Worker, assigned) -> None:
    """Send the worker clock to each forewarn-ticks partition of this worker where a deadline is due.

    The clock sent is the one read TICK_DELAY_MS ago: a fact one stage has
    just sent another (a ticket answered, on its way to the channel stage)
    is not yet readable, and while a replay runs, event time moves far in
    those moments; a tick with the current clock could judge the channel at
    a time that fact should already have changed. At most one tick per
    partition per second; nothing at all while nothing is due, so an idle
    stack writes nothing.
    """
    now = wall_ms()
    history = worker.clock_history
    reading = worker.clock.now(now)
    if reading is not None:
        history.append((now, reading))
    while len(history) > 1 and history[1][0] <= now - TICK_DELAY_MS:
        history.popleft()
    if not history or history[0][0] > now - TICK_DELAY_MS:
        return
    clock = history[0][1]
    ticks = worker.settings.topic(topics.TICKS.name)
    for tp in assigned:
        if tp.topic != ticks:
            continue
        dues = [d for d in (index.first_due(tp.partition) for index in worker.due_indexes) if d is not None]
        if not dues or min(dues) > clock or now - worker.ticks_sent.get(tp.partition, 0) < 1000:
            continue
        worker.ticks_sent[tp.partition] = now
        value = worker.codec.encode(topics.TICKS.schema, {"clock": clock, "sent_at": now})
        await worker.out[topics.TICKS.name].send(key=None, value=value, partition=tp.partition)


def write_status(worker: Worker, path: Path, assigned: int) -> None:
    """What an operator wants to see of a running worker, rewritten every second."""
    now = wall_ms()
    clock = worker.clock.now(now)
    status = {
        "clock_ms": clock,
        "clock": format_timestamp_ms(clock) if clock is not None else None,
        "partitions_assigned": assigned,
        "partitions_behind": worker.clock.behind_count(),
        "dead_lettered": worker.dead_lettered,
        "updated_at": format_timestamp_ms(now),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    tmp.replace(path)


def read_status(settings: Settings) -> dict | None:
    try:
        return json.loads((worker_datadir(settings) / "status.json").read_text())
    except (OSError, ValueError):
        return None


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


async def heal_stalled_commits(worker: Worker, watch: CommitStallWatch, assigned, positions: dict) -> None:
    """Read again, from its committed offset, every input partition ``watch`` finds stalled."""
    consumer = worker.app.consumer
    unacked = {m.tp for m in list(getattr(consumer, "_unacked_messages", ()))}
    now = wall_ms()
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


def build_worker(settings: Settings, bootstrap: str) -> Worker:
    datadir = worker_datadir(settings)
    # Tables live in memory and recover from their changelogs; anything a previous
    # run left on disk would only be stale, so every start begins clean.
    shutil.rmtree(datadir, ignore_errors=True)
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.topic("forewarn"),
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        **faust_producer_overrides(bootstrap),
        broker_session_timeout=session_timeout_s(settings, bootstrap),
    )
    codec = Codec(registry_url=settings.schema_registry)
    worker = Worker(
        settings=settings,
        bootstrap=bootstrap,
        app=app,
        codec=codec,
        reference=ReferenceView(settings, bootstrap, codec),
        clock=WorkerClock(settings.allowed_lateness_ms),
    )
    outputs = (topics.ALERTS, topics.OUTREACH_TASKS, topics.TASK_UPDATES_REJECTED, topics.ORDER_LINES,
               topics.ORDER_SHORTAGES, topics.PAGE_SIGNALS, topics.ORDER_SIGNALS, topics.CHANNEL_SIGNALS,
               topics.CUSTOMER_SIGNALS, topics.CATEGORY_SIGNALS, topics.TASK_REQUESTS, topics.TICKS,
               topics.DEAD_LETTERS)
    for spec in outputs:
        worker.out[spec.name] = app.topic(settings.topic(spec.name), key_serializer="raw", value_serializer="raw")

    ready_marker = datadir / "ready"
    status_file = datadir / "status.json"

    stall_watch = CommitStallWatch()

    @app.timer(1.0)
    async def report_lag() -> None:
        # Only the agents' inputs count: changelogs and Faust's own topics are not event streams.
        assigned = [tp for tp in app.consumer.assignment() if tp.topic in worker.clocked_topics]
        worker.clock.sync_assignment((tp.topic, tp.partition) for tp in assigned)
        # Partitions that deliver nothing still need to tell the clock whether they are caught up.
        # Fetched is not processed: a message some agent has not finished with yet (unacknowledged)
        # leaves its partition behind, or a backlog in the agents' buffers would pass for caught up.
        unfinished = {m.tp for m in list(getattr(app.consumer, "_unacked_messages", ()))}
        positions = {}
        for tp in assigned:
            highwater = app.consumer.highwater(tp)
            position = positions[tp] = await app.consumer.position(tp)
            worker.clock.report_lag((tp.topic, tp.partition), behind=(
                highwater is None or position is None or position < highwater or tp in unfinished))
        await heal_stalled_commits(worker, stall_watch, assigned, positions)
        await send_order_watermarks(worker, assigned)
        await send_ticks(worker, [tp for tp in app.consumer.assignment() if tp.topic == ticks_topic])
        write_status(worker, status_file, len(assigned))
        if assigned and not ready_marker.exists():
            # Processes that supervise this worker (forewarn up, demo, tests) wait for this file.
            ready_marker.write_text(f"{len(assigned)} partitions assigned\n")

    from streams.agents import rules, stock

    stock.register(worker)
    rules.register(worker)
    # Ticks carry the clock; they are not events whose time the clock should wait for. Reps' task
    # updates happen in wall time: a rep acting while older events are replayed must not move the
    # clock (and every deadline of the replay) to today.
    ticks_topic = settings.topic(topics.TICKS.name)
    worker.clocked_topics.discard(ticks_topic)
    worker.clocked_topics.discard(settings.topic(topics.TASK_UPDATES.name))
    seek_uncommitted_partitions_to_beginning(worker.input_topics)
    guard_changelog_seeks()
    return worker
