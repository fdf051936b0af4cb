"""The stage runtime: everything Faust, so that stages and detectors need none of it.

Faust subscribes every stage's co-partitioned topics (group membership,
assignment, table recovery, commits), and its fetch loop hands each message
straight to ``Runtime.handle`` (``streams.runtime.delivery``): no agent,
channel queue or stream per event. Each event is decoded, checked and
applied synchronously: the stage reads and changes
its entity's state in memory (``streams.runtime.state``) and queues what it
publishes on the output producer (``streams.runtime.output``); nothing in
that path waits for the broker. Changed keys are logged to the stage's
changelog once per commit, not once per change.

The order that makes processing at least once lives here, in
``before_commit``: Faust fixes the offsets it is about to commit, then the
runtime logs every changed key and waits until the broker has acknowledged
everything sent (outputs and changelogs), and only then are those offsets
committed (``streams.runtime.faust_fixes.register_before_commit``).

Signals to the few, busy entities of some stages (pages, channels, categories)
are gathered per key and sent as bundles (``streams.runtime.bundles``), flushed
every ``BUNDLE_S`` and before every commit.

Deadlines fire in the stage that owns the entity: a tick a few times a second
reads the worker clock (``streams.clock``) and calls ``Stage.fire`` for every
entity of an active partition whose deadline it has passed.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import traceback
from pathlib import Path
from typing import Any

import faust

from schemas.codec import Codec, DecodeError, format_timestamp_ms
from sinks.dlq import dead_letter_headers
from streams import topics
from streams.brokers import WORKER_FETCH_MAX_WAIT_MS, session_timeout_s
from streams.clock import WorkerClock
from streams.metrics import LATENCY_BUCKETS, LATENESS_BUCKETS, Buckets
from streams.runtime import delivery, faust_fixes
from streams.runtime.bundles import Bundler, unbundle
from streams.runtime.output import Output
from streams.runtime.stage import Stage, StageContext
from streams.runtime.state import DeadlineIndex, StageTable
from streams.kafka_security import faust_credentials, kafka_client_config
from streams.settings import Settings
from streams.skew import FUTURE_TIMESTAMP, future_timestamp
from streams.words import counted

log = logging.getLogger(__name__)

# How often deadlines are looked at and progress markers sent.
TICK_S = 0.1
# Longest Stage.settle_ms the runtime keeps clock readings for.
MAX_SETTLE_MS = 5_000
# Signal topics whose signals travel in bundles: many events, few receiving entities (pages, channels,
# categories). Their stages emit no signals of their own (see streams.runtime.bundles).
BUNDLED_TOPICS = (topics.PAGE_SIGNALS, topics.CHANNEL_SIGNALS, topics.CATEGORY_SIGNALS)
# How long signals of the bundled topics gather before they are sent (streams.runtime.bundles). Stages fed
# by signals judge their deadlines on the clock as it read streams.stages.SIGNAL_SETTLE_MS (500 ms) ago,
# well above this: a signal still gathering is read before a deadline it bears on is judged.
BUNDLE_S = 0.1
# Changed keys kept before they are logged even without a commit (bounds what a standby lags behind).
MAX_DIRTY_KEYS = 20_000

_ERROR_CLASS = {"key-mismatch": "KeyMismatch", "unexpected-schema": "UnexpectedSchema",
                "processing-error": "ProcessingError", FUTURE_TIMESTAMP: "FutureTimestamp"}


def wall_ms() -> int:
    return int(time.time() * 1000)


class Rejected(Exception):
    """An input event no stage can use: it goes to the dead-letter topic with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Runtime:
    def __init__(self, settings: Settings, bootstrap: str, codec: Codec, reference, datadir: Path,
                 *, unclocked: tuple[topics.TopicSpec, ...] = ()) -> None:
        self.settings = settings
        self.codec = codec
        self.reference = reference
        self.datadir = datadir
        self.clock = WorkerClock(settings.allowed_lateness_ms)
        self.dead_lettered = 0
        # Plain numbers for the metrics (streams.metrics): bumped on the hot path, read at scrape time.
        self.processed: collections.Counter = collections.Counter()  # topic -> events
        self.alerts: collections.Counter = collections.Counter()  # (rule, status) -> alert messages
        self.dead_letters_by_source: collections.Counter = collections.Counter()  # source topic -> messages
        self.event_to_alert = Buckets(LATENCY_BUCKETS)
        self.deadline_lateness = Buckets(LATENESS_BUCKETS)
        self.lag: dict[str, int] = {}
        self.table_entries: dict[str, int] = {}
        self.clock_behind_s: float | None = None
        self._assigned_count = 0
        # When the event being handled was written to Kafka (wall ms), for the event-to-alert latency.
        self._event_written_ms: float | None = None
        self.app = faust.App(
            settings.topic("forewarn"),
            broker=f"kafka://{bootstrap}",
            # The login of every aiokafka client Faust builds (streams.kafka_security).
            broker_credentials=faust_credentials(),
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
            broker_session_timeout=session_timeout_s(settings, bootstrap),
            broker_commit_interval=1.0,
            # Static membership: a restarted worker takes its partitions back without a rebalance.
            consumer_group_instance_id=(f"{settings.topic('forewarn')}-{settings.worker_id}"
                                        if settings.worker_id else None),
        )
        faust_fixes.set_fetch_max_wait(self.app, WORKER_FETCH_MAX_WAIT_MS)
        self.output = Output(bootstrap)
        self.bundler = Bundler()
        self._bundled = {settings.topic(spec.name) for spec in BUNDLED_TOPICS}
        self.bootstrap = bootstrap
        self._seeded: set = set()
        self.stages: list[Stage] = []
        self.tables: dict[str, StageTable] = {}
        self.contexts: dict[str, StageContext] = {}
        self.indexes: dict[str, DeadlineIndex] = {}
        # Full names of the topics whose events move the worker clock, and of every input topic.
        self.clocked_topics: set[str] = set()
        self.input_topics: set[str] = set()
        self._unclocked = {settings.topic(spec.name) for spec in unclocked}
        self._ready_parts: dict[str, frozenset[int]] = {}
        self._stall_watch = faust_fixes.CommitStallWatch()
        # Each partition's highwater as the fetch being handled began (streams.runtime.delivery).
        self._highwaters = delivery.batch_highwaters(self.app)
        # (wall ms, clock) readings of the last few seconds, oldest first
        self._clock_history: collections.deque = collections.deque()
        faust_fixes.register_before_commit(self.app, self.before_commit)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.timer(TICK_S, name="forewarn-tick")(self._tick)
        self.app.timer(BUNDLE_S, name="forewarn-bundles")(self._send_bundles)
        self.app.timer(1.0, name="forewarn-lag")(self._report_lag)

    # ------------------------------------------------------------------ wiring
    def add_stage(self, stage: Stage) -> None:
        for name in (stage.name, *stage.extra_tables):
            # Values are raw bytes: the JSON StageTable writes, kept as it is (streams.runtime.state).
            table = self.app.Table(name, default=None, partitions=self.settings.partitions, value_type=bytes)
            self.tables[name] = StageTable(table)
        index = DeadlineIndex(stage.next_due) if stage.has_deadlines else None
        if index is not None:
            self.indexes[stage.name] = index

        def schedule(partition: int, key: str, state: Any) -> None:
            if index is not None:
                index.schedule(partition, key, state)

        ctx = StageContext(stage, self.tables, self.publish, self.send_to_partition, self.reference.reference,
                           self._read_up_to, self._watermark_of, schedule)
        self.contexts[stage.name] = ctx
        self.stages.append(stage)
        names = [self.settings.topic(spec.name) for spec in stage.inputs]
        self.input_topics.update(names)
        self.clocked_topics.update(n for n in names if n not in self._unclocked)
        # Subscribed through Faust (group membership, assignment, commits), delivered directly
        # (streams.runtime.delivery): no agent, channel queue or stream per event.
        self.app.topics.add(self.app.topic(*names, key_serializer="raw", value_serializer="raw"))
        for name in names:
            delivery.deliver_directly(self.app, name, lambda message, stage=stage, ctx=ctx: self.handle(stage, ctx, message))

    # ------------------------------------------------------------------ one event
    def handle(self, stage: Stage, ctx: StageContext, msg) -> None:
        self.processed[msg.topic] += 1
        self._event_written_ms = msg.timestamp * 1000 if msg.timestamp else None
        try:
            schema, record = self.decode(stage, msg)
        except Rejected as exc:
            self.dead_letter(msg, exc.reason, str(exc), stage.name)
            return
        ts = record.get("ts")
        if ts is not None and msg.topic in self.clocked_topics:
            # Progress markers are sent between events (Runtime._tick), never while this one is half done.
            highwater = self._highwaters.get(msg.tp)
            self.clock.observe((msg.topic, msg.partition), ts, behind=highwater is None or msg.offset + 1 < highwater)
        ctx.partition = msg.partition
        ctx.src = f"{msg.topic}:{msg.partition}:{msg.offset}"
        ctx.wall_ms = wall_ms()
        if msg.topic in self._bundled:
            self._apply_bundle(stage, ctx, msg, schema, record)
            return
        try:
            stage.apply(ctx, schema, record)
        except Exception:
            log.exception("processing failed in %s", stage.name)
            self.dead_letter(msg, "processing-error", traceback.format_exc(limit=3), stage.name)
        finally:
            self._event_written_ms = None

    def _apply_bundle(self, stage: Stage, ctx: StageContext, msg, schema: str, record: dict) -> None:
        """Each signal of a bundle in turn; a failing one is dead-lettered with the bundle, the rest applied."""
        try:
            signals = unbundle(record)
        except (ValueError, TypeError, KeyError) as exc:
            self.dead_letter(msg, "bad-bundle", f"a signal bundle that cannot be read: {exc!r}", stage.name)
            return
        failed = []
        for signal in signals:
            try:
                stage.apply(ctx, schema, signal)
            except Exception:
                log.exception("processing failed in %s", stage.name)
                failed.append(f"signal {signal['event_id']} ({signal['kind']}): {traceback.format_exc(limit=3)}")
        if failed:
            self.dead_letter(msg, "processing-error", f"{counted(len(failed), 'signal')} of "
                             f"{len(signals)} in this bundle failed; " + "\n".join(failed), stage.name)

    def decode(self, stage: Stage, msg) -> tuple[str, dict]:
        try:
            schema, record = self.codec.decode(msg.value)
        except DecodeError as exc:
            raise Rejected(exc.reason, str(exc)) from None
        if schema not in stage.keys:
            raise Rejected("unexpected-schema", f"{schema} is not expected on {msg.topic}")
        key_field = stage.keys[schema]
        if key_field is not None:
            key = msg.key.decode(errors="replace") if isinstance(msg.key, (bytes, bytearray)) else msg.key
            if key != record.get(key_field):
                # State for a key lives in the partition its key hashes to: a message keyed
                # otherwise would split one entity's state across partitions.
                raise Rejected("key-mismatch", f"message key {key!r} differs from {key_field} "
                                               f"{record.get(key_field)!r}; producers must key {msg.topic} by {key_field}")
        ts = record.get("ts")
        if ts is not None and msg.topic in self.clocked_topics:
            ahead = future_timestamp(ts, wall_ms(), self.settings.max_clock_skew_ms)
            if ahead is not None:
                raise Rejected(FUTURE_TIMESTAMP, ahead)
        return schema, record

    # ------------------------------------------------------------------ outputs
    def publish(self, spec: topics.TopicSpec, record: dict) -> None:
        if spec is topics.ALERTS:
            self.alerts[(record["rule"], record["status"])] += 1
            if self._event_written_ms is not None:
                self.event_to_alert.observe(max(0.0, wall_ms() - self._event_written_ms) / 1000)
        name = self.settings.topic(spec.name)
        if name in self._bundled:
            if self.bundler.add(name, record):
                self._flush_bundles()
            return
        self.output.send(name, record[spec.key_field].encode(), self.codec.encode(spec.schema, record, topic=name))

    def send_to_partition(self, spec: topics.TopicSpec, schema: str, record: dict, partition: int) -> None:
        name = self.settings.topic(spec.name)
        self.output.send(name, None, self.codec.encode(schema, record, topic=name), partition=partition)

    def _flush_bundles(self) -> None:
        for name, record in self.bundler.drain():
            self.output.send(name, record["key"].encode(),
                             self.codec.encode(topics.SIGNAL_SCHEMA, record, topic=name))

    async def _send_bundles(self) -> None:
        self._flush_bundles()

    def dead_letter(self, msg, reason: str, message: str, processor: str) -> None:
        self.dead_lettered += 1
        self.dead_letters_by_source[msg.topic] += 1
        log.warning("dead-lettered %s[%s]@%s: %s: %s", msg.topic, msg.partition, msg.offset, reason, message)
        self.output.send(self.settings.topic(topics.DEAD_LETTERS.name), msg.key, msg.value, headers=dead_letter_headers(
            reason=reason, message=message, topic=msg.topic, partition=msg.partition, offset=msg.offset,
            processor=processor, now_ms=wall_ms(), error_class=_ERROR_CLASS.get(reason, "DecodeError")))

    def log_changes(self) -> int:
        """Send the signals still gathered, then every changed key of every table to its changelog.

        Returns how many changelog records were sent. Called before offsets are
        committed: what the committed events caused must be on its way first.
        """
        self._flush_bundles()
        sent = 0
        for table in self.tables.values():
            topic = table.changelog_topic
            for partition, key, value in table.changes():
                self.output.send(topic, key, value, partition=partition, bulk=True)
                sent += 1
        return sent

    async def before_commit(self) -> None:
        """Called by Faust between fixing the offsets to commit and committing them."""
        self.log_changes()
        await self.output.settled()

    async def _on_revoked(self, app, revoked, **kwargs) -> None:
        for stage in self.stages:
            stage.on_revoked()
        # Whoever takes these partitions over recovers them from the changelogs: complete those first.
        self.log_changes()
        await self.output.settled()

    # ------------------------------------------------------------------ time
    def _read_up_to(self, name: str, partition: int) -> int | None:
        return self.clock.read_up_to((self.settings.topic(name), partition))

    def _watermark_of(self, name: str, partition: int) -> int | None:
        return self.clock.watermark_of((self.settings.topic(name), partition))

    def ready_partitions(self) -> set:
        """Active input partitions that are recovered and being read, or empty while rebalancing."""
        app = self.app
        if app.rebalancing or getattr(app, "in_recovery", False):
            return set()
        paused = getattr(app.consumer, "_paused_partitions", set())
        return {tp for tp in app.assignor.assigned_actives() if tp.topic in self.input_topics and tp not in paused}

    def _clock_as_of(self, now: int, clock: int | None, ago_ms: int) -> int | None:
        """The clock as it read `ago_ms` of wall time ago (see Stage.settle_ms); None before that."""
        history = self._clock_history
        if clock is not None:
            history.append((now, clock))
        while len(history) > 1 and history[1][0] <= now - MAX_SETTLE_MS:
            history.popleft()
        if ago_ms == 0:
            return clock
        readings = [c for at, c in history if at <= now - ago_ms]
        return readings[-1] if readings else None

    async def _tick(self) -> None:
        ready = self.ready_partitions()
        now = wall_ms()
        clock_now = self.clock.now(now)
        self._clock_as_of(now, clock_now, 0)
        for stage in self.stages:
            names = {self.settings.topic(spec.name) for spec in stage.inputs}
            parts = frozenset(tp.partition for tp in ready if tp.topic in names)
            index = self.indexes.get(stage.name)
            if parts != self._ready_parts.get(stage.name):
                self._ready_parts[stage.name] = parts
                if index is not None:
                    index.rebuild(self.tables[stage.name], set(parts))
                stage.on_ready(parts)
            ctx = self.contexts[stage.name]
            clock = clock_now if not stage.settle_ms else self._clock_as_of(now, None, stage.settle_ms)
            clocked = [name for name in names if name in self.clocked_topics]
            for partition in sorted(parts):
                ctx.partition, ctx.src, ctx.wall_ms = partition, None, now
                stage.tick(ctx)
                if index is None or clock is None:
                    continue
                # An entity is judged no later than its own partition has been read: a partition this
                # worker has just taken over may still hold the reply that meets a deadline the
                # worker's clock (never going back) has long passed.
                read_to = [self.clock.read_up_to((name, partition)) for name in clocked]
                if None in read_to:
                    continue
                judged = min([clock, *read_to])
                for key in index.pop_due(partition, judged):
                    state = ctx.get(key)
                    if state is None:
                        continue
                    due = stage.next_due(state)
                    try:
                        stage.fire(ctx, key, state, judged)
                        if due is not None:
                            self.deadline_lateness.observe(max(0, judged - due) / 1000)
                    except Exception:
                        log.exception("deadline of %s %r failed; it is looked at again on the next event", stage.name, key)
        if sum(len(t.dirty) for t in self.tables.values()) > MAX_DIRTY_KEYS:
            self.log_changes()

    async def _report_lag(self) -> None:
        consumer = self.app.consumer
        # Only the stages' inputs count: changelogs and Faust's own topics are not event streams.
        assigned = [tp for tp in consumer.assignment() if tp.topic in self.clocked_topics]
        self.clock.sync_assignment((tp.topic, tp.partition) for tp in assigned)
        # The client's position counts a message as read once it is fetched: one still being handled,
        # or fetched in the fetch loop's current batch and not handled yet (its last handled offset is
        # further back), leaves its partition behind, or a backlog would pass for caught up.
        unfinished = {m.tp for m in list(getattr(consumer, "_unacked_messages", ()))}
        positions = {}
        lag: dict[str, int] = dict.fromkeys(self.clocked_topics, 0)
        read = await delivery.positions_and_highwaters(consumer, assigned)
        for tp, (position, highwater) in read.items():
            positions[tp] = position
            last = delivery.last_handled(consumer, tp)
            self.clock.report_lag((tp.topic, tp.partition), behind=(
                highwater is None or position is None or position < highwater or tp in unfinished
                or (last is not None and last + 1 < position)))
            if highwater is not None and position is not None:
                lag[tp.topic] += max(0, highwater - position)
        self.lag = lag
        self.table_entries = {name: len(table._store.data) for name, table in self.tables.items()}
        now = wall_ms()
        clock = self.clock.now(now)
        self.clock_behind_s = (now - clock) / 1000 if clock is not None else None
        await self._seed_clock(assigned)
        await faust_fixes.heal_stalled_commits(self, self._stall_watch, assigned, positions)
        self._assigned_count = len(assigned)
        self.write_status(len(assigned))
        ready_marker = self.datadir / "ready"
        if assigned and not ready_marker.exists():
            # Processes that supervise this worker (forewarn up, demo, tests) wait for this file.
            ready_marker.write_text(f"{counted(len(assigned), 'partition')} assigned\n")

    async def _seed_clock(self, assigned) -> None:
        """Tell the clock the last event of each caught-up partition it has read nothing from (streams.clock).

        Done once per partition and process, off the event loop: a worker started on
        an idle stack then fires the deadlines that passed while no worker ran.
        """
        wanted = [(tp.topic, tp.partition) for tp in assigned
                  if (tp.topic, tp.partition) not in self._seeded and self.clock.needs_seed((tp.topic, tp.partition))]
        if not wanted:
            return
        self._seeded.update(wanted)
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(None, last_events, self.bootstrap, wanted, self.codec)
        except Exception:  # noqa: BLE001 - the clock then waits for the next event, as before
            log.warning("could not read the last events of %s for the clock", counted(len(wanted), "partition"),
                        exc_info=True)
            return
        for tp, (event_ts, written_wall) in found.items():
            self.clock.seed(tp, event_ts, min(written_wall, wall_ms()))

    def describe_metrics(self, out) -> None:
        """The worker's numbers as Prometheus metric families (called at scrape time, see streams.metrics)."""
        out.counter("forewarn_events_processed_total", "Input events read by this worker's stages, per topic.",
                    dict(self.processed), ("topic",))
        out.counter("forewarn_alerts_total", "Alert messages published, per rule and status.", dict(self.alerts),
                    ("rule", "status"))
        out.histogram("forewarn_event_to_alert_seconds", "From the write to Kafka of the message whose processing "
                      "published an alert to its publication (wall time); deadline alerts are not counted.",
                      self.event_to_alert)
        out.histogram("forewarn_deadline_lateness_seconds", "How far past its deadline, on the worker clock, "
                      "a deadline was judged.", self.deadline_lateness)
        out.gauge("forewarn_consumer_lag_messages", "Messages of each input topic not yet read by this worker "
                  "(its assigned partitions).", dict(self.lag), ("topic",))
        out.gauge("forewarn_worker_clock_behind_seconds", "Wall time minus the worker clock (event time); "
                  "absent before the clock has read an event.", self.clock_behind_s)
        out.gauge("forewarn_table_entries", "Entities held in each state table of this worker.",
                  dict(self.table_entries), ("table",))
        out.counter("forewarn_dead_letters_total", "Messages sent to the dead-letter topic, per source topic.",
                    dict(self.dead_letters_by_source), ("source",))
        out.gauge("forewarn_partitions_assigned", "Input partitions assigned to this worker.",
                  self._assigned_count)

    def write_status(self, assigned: int) -> None:
        """What an operator wants to see of a running worker, rewritten every second."""
        now = wall_ms()
        clock = self.clock.now(now)
        status = {
            "clock_ms": clock,
            "clock": format_timestamp_ms(clock) if clock is not None else None,
            "partitions_assigned": assigned,
            "partitions_behind": self.clock.behind_count(),
            "dead_lettered": self.dead_lettered,
            "metrics_url": getattr(self, "metrics_url", None),
            "updated_at": format_timestamp_ms(now),
        }
        path = self.datadir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(path)


def last_events(bootstrap: str, partitions: list[tuple[str, int]], codec: Codec,
                timeout_s: float = 5.0) -> dict[tuple[str, int], tuple[int, int]]:
    """For each (topic, partition), its last message's event time and Kafka timestamp, when it has one.

    A partition that is empty, or whose last message is undecodable or has no
    `ts`, is left out.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(kafka_client_config(bootstrap, {
        "group.id": "forewarn-clock-seed", "enable.auto.commit": False, "enable.partition.eof": True,
    }))
    try:
        ends = {}
        for topic, partition in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            if high > 0:
                ends[(topic, partition)] = high
        if not ends:
            return {}
        consumer.assign([TopicPartition(t, p, high - 1) for (t, p), high in ends.items()])
        found: dict[tuple[str, int], tuple[int, int]] = {}
        pending = set(ends)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            tp = (msg.topic(), msg.partition())
            if msg.error() is not None:
                pending.discard(tp)  # end of partition, or an error: nothing to learn there
                continue
            pending.discard(tp)
            try:
                _schema, record = codec.decode(msg.value())
            except DecodeError:
                continue
            _kind, written = msg.timestamp()
            if isinstance(record.get("ts"), int) and written > 0:
                found[tp] = (record["ts"], written)
        return found
    finally:
        consumer.close()
