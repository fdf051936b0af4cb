"""The batching sink: every input topic, alerts, outreach tasks and task updates into ClickHouse.

Two calls, as every batching sink has: ``add(message)`` buffers a Kafka
message, ``flush()`` writes what was buffered and only then returns the
offsets that may be committed. ``run_sink`` drives it with a confluent-kafka
consumer in its own consumer group (``<prefix>forewarn-sink``): it flushes
when 50,000 rows are buffered or the oldest has waited a second, and commits
after ClickHouse acknowledged the insert.

Decoding. ClickHouse parses the Avro bodies itself (see avro_blocks): Python
only checks each message's framing and looks up its writer schema. The
exception is a topic with derived columns (tables.DERIVED_COLUMNS: a support
event's complaint category, as the complaint_spike rule decides it): Python
decodes those messages to work the values out. A message whose framing or
schema is wrong, whose body ClickHouse cannot parse (found by decoding that
block's messages in Python), or, on a topic with derived columns, whose body
Python cannot decode, goes to ``forewarn.dlq`` with headers naming the source
topic, partition, offset, error class and message; its neighbours land.

No duplicates. A crash between insert and commit makes the next owner of the
partition read the batch again. Every row carries its Kafka coordinates
(with the topic's id, which changes when a topic is recreated), and before
writing a partition for the first time after it was assigned, the sink asks
ClickHouse which offsets from the partition's first uncommitted one on are
already stored, and skips exactly those. (Exactly those, not everything up to
the highest: ClickHouse stores one insert as one part per month partition, so
a crash can leave a later month's rows stored and an earlier month's not.)
Each insert also carries a deterministic deduplication token (table, topic
ids and offset ranges), so an insert that is retried after an unclear
failure (a timeout after ClickHouse had written it) is not stored twice
either. The materialized views (order lines, hourly complaint counts) are
filled by the same insert; a crash at the instant between a table's part and
its view's part can leave the view short of that insert's rows.

Fault injection: with FOREWARN_SINK_KILL_AFTER_FLUSHES=N the process kills
itself with SIGKILL after its N-th flush that wrote rows, before committing
(the tests use it to crash between insert and commit on purpose).

No loss. While ClickHouse is unreachable the sink keeps the batch, pauses
consumption, retries with exponential backoff (0.5 s to 30 s) and commits
nothing; it resumes where it was when ClickHouse answers again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition

from schemas.codec import SINGLE_OBJECT_MARKER, Codec, DecodeError, RegistryError
from sinks import dlq
from sinks.clickhouse.avro_blocks import ContainerFile, coordinates, derived_values
from streams.metrics import Buckets, new_registry, serve_metrics
from sinks.clickhouse.tables import DERIVED_COLUMNS, SINK_TOPICS, TABLE_FOR_TOPIC, DerivedColumn
from streams import topics
from streams.kafka_security import kafka_client_config
from streams.settings import Settings, clickhouse_address
from streams.words import counted

log = logging.getLogger("forewarn.sink")

PROCESSOR = "forewarn-sink"
GROUP = "forewarn-sink"


class StoreUnavailable(Exception):
    """ClickHouse could not be reached or did not answer; the batch is kept and retried."""


class StoreRefused(StoreUnavailable):
    """ClickHouse refused rows that are valid by the contract: a store problem, retried like an outage."""


@dataclass(frozen=True)
class SinkLimits:
    max_rows: int = 50_000  # flush when this many messages are buffered ...
    max_wait_s: float = 1.0  # ... or when the oldest has waited this long
    min_backoff_s: float = 0.5
    max_backoff_s: float = 30.0


@dataclass
class SinkStats:
    stored_rows: int = 0
    skipped_already_stored: int = 0
    dead_letters: int = 0
    inserts: int = 0
    flushes: int = 0
    last_flush_at: float | None = None  # wall clock
    first_message_at: float | None = None  # monotonic
    store_error: str | None = None
    per_table: dict[str, int] = field(default_factory=dict)
    # For the metrics: each table's insert durations, dead letters per source topic.
    flush_seconds: dict[str, Buckets] = field(default_factory=dict)
    dead_letters_by_source: dict[str, int] = field(default_factory=dict)


class Store:
    """The ClickHouse connection the sink writes through, opened (and migrated) on first use.

    ``open_client`` returns a clickhouse-connect client; every failure to reach
    ClickHouse surfaces as StoreUnavailable, so the caller's retry loop sees
    one kind of trouble. A bad insert (ClickHouse answered, and refused the
    data) is raised as it is.
    """

    def __init__(self, open_client: Callable[[], object]) -> None:
        self._open_client = open_client
        self._client = None
        self.lock = threading.Lock()  # the query endpoint shares the client

    @property
    def client(self):
        if self._client is None:
            from sinks.clickhouse.migrate import apply_migrations

            try:
                client = self._open_client()
                apply_migrations(client)
            except Exception as exc:  # noqa: BLE001 - classified below
                if _unreachable(exc):
                    raise StoreUnavailable(_one_line(exc)) from exc
                raise
            self._client = client
        return self._client

    def insert_avro(self, table: str, data: bytes, token: str) -> None:
        try:
            with self.lock:
                self.client.raw_insert(table, None, data, fmt="Avro", settings={
                    "insert_deduplication_token": token,
                    "insert_deduplicate": 1,
                    "deduplicate_blocks_in_dependent_materialized_views": 1,
                    # Writers one schema version apart: a column the writer lacks gets its default,
                    # a field the table lacks (until a DDL file adds it) is left out.
                    "input_format_avro_allow_missing_fields": 1,
                    "input_format_skip_unknown_fields": 1,
                })
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            if _unreachable(exc):
                self._client = None
                raise StoreUnavailable(_one_line(exc)) from exc
            raise

    def stored_offsets(self, table: str, topic: str, topic_id: str,
                       from_offsets: dict[int, int]) -> dict[int, set[int]]:
        """Offsets of ``topic``'s partitions already in ``table``, from each partition's given offset on."""
        where = " OR ".join(f"(kafka_partition = {int(p)} AND kafka_offset >= {int(o)})"
                            for p, o in sorted(from_offsets.items()))
        try:
            with self.lock:
                rows = self.client.query(
                    f"SELECT kafka_partition, groupArray(kafka_offset) FROM {table} "
                    f"WHERE kafka_topic = {{topic:String}} AND kafka_topic_id = {{topic_id:String}} AND ({where}) "
                    f"GROUP BY kafka_partition",
                    parameters={"topic": topic, "topic_id": topic_id}).result_rows
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a read that failed is retried, whatever the reason
            if _unreachable(exc):
                self._client = None
            raise StoreUnavailable(f"reading the offsets stored in {table}: {_one_line(exc)}") from exc
        return {int(partition): set(offsets) for partition, offsets in rows}


def _unreachable(exc: BaseException) -> bool:
    from clickhouse_connect.driver.exceptions import OperationalError

    return isinstance(exc, (OperationalError, OSError, ConnectionError, TimeoutError))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


@dataclass
class _Group:
    """One insert: messages of one table and one writer schema, in offset order per partition."""

    table: str
    container: ContainerFile
    messages: list = field(default_factory=list)
    # (topic, partition) -> [lowest offset, highest offset, messages]: what the dedup token names
    ranges: dict = field(default_factory=dict)
    # topic -> Kafka's topic id, so that a recreated topic's offsets never repeat an old token
    topic_ids: dict = field(default_factory=dict)
    done: bool = False

    def add(self, message, topic: str, partition: int, offset: int, coords: bytes, value: bytes,
            derived: bytes = b"") -> None:
        self.container.add(coords, offset, value, derived)
        self.messages.append(message)
        bounds = self.ranges.get((topic, partition))
        if bounds is None:
            self.ranges[(topic, partition)] = [offset, offset, 1]
        else:
            if offset < bounds[0]:
                bounds[0] = offset
            if offset > bounds[1]:
                bounds[1] = offset
            bounds[2] += 1

    def token(self) -> str:
        text = ";".join(f"{t}/{self.topic_ids.get(t, '')}/{p}/{lo}-{hi}/{n}"
                        for (t, p), (lo, hi, n) in sorted(self.ranges.items()))
        return f"{self.table}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


class DeadLetters:
    """Republishes unusable messages, unchanged, to the dead-letter topic with headers saying why.

    ``confirm`` returns only when Kafka acknowledged every dead letter sent so
    far; one that failed is produced again and ``confirm`` raises, so the
    caller retries before it stores anything after it.
    """

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self._failed: list[tuple[bytes | None, bytes | None, list]] = []

    def send(self, message, reason: str, error_class: str, text: str) -> None:
        headers = dlq.dead_letter_headers(
            reason=reason, message=text, topic=message.topic(), partition=message.partition(),
            offset=message.offset(), processor=PROCESSOR, now_ms=int(time.time() * 1000), error_class=error_class)
        log.warning("dead letter: %s[%d]@%d: %s (%s)", message.topic(), message.partition(), message.offset(),
                    reason, text)
        self._produce(message.key(), message.value(), headers)

    def _produce(self, key, value, headers) -> None:
        def delivered(err, _msg) -> None:
            if err is not None:
                self._failed.append((key, value, headers))

        while True:
            try:
                self.producer.produce(self.topic, key=key, value=value, headers=headers, on_delivery=delivered)
                return
            except BufferError:
                self.producer.poll(0.1)

    def confirm(self, timeout: float = 30.0) -> None:
        """Wait until Kafka acknowledged every dead letter; raise if one was not (nothing is committed then)."""
        if not len(self.producer) and not self._failed:
            return
        left = self.producer.flush(timeout)
        failed, self._failed = self._failed, []
        for key, value, headers in failed:
            self._produce(key, value, headers)  # kept in the producer until it is acknowledged
        if left or failed:
            unacknowledged = counted(left + len(failed), "dead letter")
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT,
                                            f"{unacknowledged} not acknowledged by Kafka yet"))


class ClickHouseSink:
    """Buffers Kafka messages and writes them to ClickHouse in batches; see the module doc."""

    def __init__(self, store: Store, codec: Codec, dead_letters: DeadLetters, settings: Settings,
                 limits: SinkLimits = SinkLimits()) -> None:
        self.store, self.codec, self.dead_letters, self.limits = store, codec, dead_letters, limits
        # full topic name -> (table, record schema, topic id)
        self.routes = {settings.topic(spec.name): (TABLE_FOR_TOPIC[spec.name], spec.schema) for spec in SINK_TOPICS}
        # full topic name -> the columns worked out in Python from its decoded records
        self.derived = {settings.topic(name): columns for name, columns in DERIVED_COLUMNS.items()}
        self.topic_ids: dict[str, str] = {}
        self.stats = SinkStats()
        self._pending: list = []
        self._pending_since: float | None = None
        self._batch: list | None = None  # being flushed; kept until it is all written
        self._groups: list[_Group] | None = None
        # (topic, partition) -> offsets found in ClickHouse when the partition was first written after
        # being assigned (what a crashed predecessor stored and did not commit); skipped exactly.
        self._stored: dict[tuple[str, int], set[int]] = {}
        self._commits: dict[tuple[str, int], int] = {}

    # -- the two calls

    def add(self, message) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()
            if self.stats.first_message_at is None:
                self.stats.first_message_at = self._pending_since
        self._pending.append(message)

    def due(self, now: float | None = None) -> bool:
        if self._batch is not None:
            return True
        if not self._pending:
            return False
        now = time.monotonic() if now is None else now
        return len(self._pending) >= self.limits.max_rows or now - self._pending_since >= self.limits.max_wait_s

    @property
    def room(self) -> int:
        """How many more messages fit before the batch is full."""
        return max(0, self.limits.max_rows - len(self._pending))

    @property
    def buffered(self) -> int:
        return len(self._pending) + (len(self._batch) if self._batch else 0)

    def flush(self) -> list[TopicPartition]:
        """Write the batch; return the offsets to commit. StoreUnavailable leaves it to retry."""
        if self._batch is None:
            if not self._pending:
                return []
            self._batch, self._pending, self._pending_since = self._pending, [], None
            self._groups = None
        if self._groups is None:
            self._groups = self._plan(self._batch)
            # Dead letters are acknowledged before anything after them is stored: once a later
            # offset of their partition is in ClickHouse, a restart would skip past them.
            self.dead_letters.confirm()
        for group in self._groups:
            if not group.done:
                self._write(group)
                group.done = True
        self.dead_letters.confirm()
        commits = self._commits
        for key, offset in commits.items():
            skip = self._stored.get(key)
            if skip:  # offsets below the commit will not be read again
                self._stored[key] = {o for o in skip if o >= offset}
        self._batch, self._groups = None, None
        self.stats.flushes += 1
        self.stats.last_flush_at = time.time()
        self.stats.store_error = None
        return [TopicPartition(t, p, o) for (t, p), o in sorted(commits.items())]

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Partitions taken away: drop what is buffered for them and what we knew of their stored offsets.

        Nothing of theirs was committed, so their next owner reads it again.
        """
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._pending = [m for m in self._pending if (m.topic(), m.partition()) not in gone]
        if self._batch is not None:
            self._batch = [m for m in self._batch if (m.topic(), m.partition()) not in gone]
            self._groups = None
            if not self._batch:
                self._batch = None
        if not self._pending:
            self._pending_since = None
        for key in gone:
            self._stored.pop(key, None)

    # -- inside flush

    def _plan(self, batch: list) -> list[_Group]:
        """Group the batch into inserts; dead-letter what cannot be framed; skip what is stored already."""
        self._learn_stored_offsets(batch)
        groups: dict[tuple, _Group] = {}
        order: list[tuple] = []
        # A partition's messages are split where its writer schema changes (its "generation"),
        # and inserts run in generation order, so each partition is always stored as a prefix.
        last_header: dict[tuple[str, int], bytes] = {}
        generation: dict[tuple[str, int], int] = {}
        encoded_coordinates: dict[tuple[str, int], bytes] = {}
        # (topic, header) -> writer schema, for headers already checked in this batch
        checked: dict[tuple[str, bytes], object] = {}
        stored = self._stored
        derived_of = self.derived
        commits = self._commits = {}  # (topic, partition) -> the offset to commit once all is written
        for m in batch:
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            key = (topic, partition)
            if offset >= commits.get(key, 0):
                commits[key] = offset + 1
            if offset in stored[key]:
                self.stats.skipped_already_stored += 1
                continue
            value = m.value() or b""
            header = value[:10] if value[:2] == SINGLE_OBJECT_MARKER else value[:5]
            entry = checked.get((topic, header))
            if entry is None:
                try:
                    header, entry = self.codec.writer_schema(value, expected=self.routes[topic][1])
                except DecodeError as exc:
                    self._dead_letter(m, exc.reason, "DecodeError", str(exc))
                    continue
                checked[(topic, header)] = entry
            columns = derived_of.get(topic)
            derived = b""
            if columns:
                try:
                    derived = self._derived(m, columns)
                except DecodeError as exc:
                    self._dead_letter(m, exc.reason, "DecodeError", str(exc))
                    continue
            if last_header.get(key, header) != header:
                generation[key] = generation.get(key, 0) + 1
            last_header[key] = header
            table = self.routes[topic][0]
            group_key = (generation.get(key, 0), table, header)
            group = groups.get(group_key)
            if group is None:
                group = groups[group_key] = _Group(table, self._container(topic, entry, header),
                                                   topic_ids=self.topic_ids)
                order.append(group_key)
            coords = encoded_coordinates.get(key)
            if coords is None:
                coords = encoded_coordinates[key] = coordinates(topic, self.topic_ids.get(topic, ""), partition)
            group.add(m, topic, partition, offset, coords, value, derived)
        return [groups[k] for k in sorted(order, key=lambda k: k[0])]

    def _container(self, topic: str, entry, header: bytes) -> ContainerFile:
        return ContainerFile(entry, header, tuple(column.name for column in self.derived.get(topic, ())))

    def _derived(self, message, columns: tuple[DerivedColumn, ...]) -> bytes:
        """The encoded values of a message's derived columns; DecodeError if its body does not decode."""
        _, record = self.codec.decode(message.value(), expected=self.routes[message.topic()][1])
        return derived_values(column.value_of(record) for column in columns)

    def _learn_stored_offsets(self, batch: list) -> None:
        lowest: dict[tuple[str, int], int] = {}
        for m in batch:
            key = (m.topic(), m.partition())
            if key not in self._stored and m.offset() < lowest.get(key, m.offset() + 1):
                lowest[key] = m.offset()
        for topic in sorted({t for t, _ in lowest}):
            if topic not in self.topic_ids:
                raise StoreUnavailable(f"the id of topic {topic} is not known yet")
            table, _ = self.routes[topic]
            stored = self.store.stored_offsets(table, topic, self.topic_ids[topic],
                                               {p: o for (t, p), o in lowest.items() if t == topic})
            for (t, partition) in lowest:
                if t == topic:
                    self._stored[(t, partition)] = stored.get(partition, set())

    def _write(self, group: _Group) -> None:
        if not group.messages:
            return
        started = time.monotonic()
        try:
            self.store.insert_avro(group.table, group.container.getvalue(), group.token())
        except StoreUnavailable as exc:
            self.stats.store_error = str(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - ClickHouse refused the data: find the messages at fault
            self._write_without_bad_messages(group, exc)
            return
        self.stats.flush_seconds.setdefault(group.table, Buckets()).observe(time.monotonic() - started)
        self._stored_up_to(group)

    def _write_without_bad_messages(self, group: _Group, refusal: Exception) -> None:
        """ClickHouse refused a block: dead-letter the messages Python cannot decode either, write the rest.

        If Python decodes every one of them, the messages are valid by the
        contract and the store is at fault (a table that lost a column, say):
        nothing is dead-lettered, and the refusal is retried like an outage
        until someone fixes the store.
        """
        _, schema = self.routes[group.messages[0].topic()]
        good = []
        for m in group.messages:
            try:
                self.codec.decode(m.value(), expected=schema)
            except DecodeError as exc:
                self._dead_letter(m, exc.reason, "DecodeError", str(exc))
            else:
                good.append(m)
        if len(good) == len(group.messages):
            raise StoreRefused(f"ClickHouse refuses valid rows for table {group.table}: {_one_line(refusal)}") \
                from refusal
        self.dead_letters.confirm()
        # From now on this group is its good rows only: a retry does not dead-letter again.
        if not good:
            group.messages, group.ranges = [], {}
            return
        retry = self._group_of(group.table, good)
        group.container, group.messages, group.ranges = retry.container, retry.messages, retry.ranges
        try:
            self.store.insert_avro(group.table, retry.container.getvalue(), retry.token())
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise StoreRefused(f"ClickHouse refuses valid rows for table {group.table}: {_one_line(exc)}") from exc
        self._stored_up_to(retry)

    def _group_of(self, table: str, messages: list) -> _Group:
        header, entry = self.codec.writer_schema(messages[0].value())
        group = _Group(table, self._container(messages[0].topic(), entry, header), topic_ids=self.topic_ids)
        for m in messages:
            coords = coordinates(m.topic(), self.topic_ids.get(m.topic(), ""), m.partition())
            columns = self.derived.get(m.topic())
            group.add(m, m.topic(), m.partition(), m.offset(), coords, m.value(),
                      self._derived(m, columns) if columns else b"")
        return group

    def _stored_up_to(self, group: _Group) -> None:
        self.stats.inserts += 1
        self.stats.stored_rows += len(group.messages)
        self.stats.per_table[group.table] = self.stats.per_table.get(group.table, 0) + len(group.messages)

    def _dead_letter(self, message, reason: str, error_class: str, text: str) -> None:
        self.dead_letters.send(message, reason, error_class, text)
        by_source = self.stats.dead_letters_by_source
        by_source[message.topic()] = by_source.get(message.topic(), 0) + 1
        self.stats.dead_letters += 1


# ---------------------------------------------------------------- running it


def topic_ids(bootstrap: str, names: list[str], timeout: float = 10.0) -> dict[str, str | None]:
    """Kafka's id for each topic (it changes when a topic is deleted and created again).

    '' for a broker that has no topic ids (the all-zero id); None where the
    broker did not answer, which the caller retries.
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_client_config(bootstrap))
    ids: dict[str, str | None] = {name: None for name in names}
    try:
        futures = admin.describe_topics(TopicCollection(names), request_timeout=timeout)
    except KafkaException:
        return ids
    for name, future in futures.items():
        try:
            description = future.result(timeout=timeout)
        except Exception:  # noqa: BLE001 - unanswered: None, retried
            continue
        topic_id = str(description.topic_id) if description.topic_id is not None else ""
        ids[name] = "" if topic_id.strip("A") == "" else topic_id
    return ids


def _failed_dependency(exc: BaseException) -> str:
    if isinstance(exc, StoreUnavailable):
        return "ClickHouse"
    if isinstance(exc, RegistryError):
        return "the schema registry"
    if isinstance(exc, KafkaException):
        return "Kafka"
    return type(exc).__name__


def status_path(settings: Settings) -> Path:
    return settings.data_dir / "sink" / "status.json"


def write_status(settings: Settings, sink: ClickHouseSink, assigned: int, paused: bool) -> None:
    path = status_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = sink.stats
    status = {
        "pid": os.getpid(), "assigned_partitions": assigned, "buffered": sink.buffered, "paused": paused,
        "stored_rows": stats.stored_rows, "dead_letters": stats.dead_letters, "inserts": stats.inserts,
        "flushes": stats.flushes, "skipped_already_stored": stats.skipped_already_stored,
        "last_flush_at": stats.last_flush_at, "store_error": stats.store_error, "per_table": stats.per_table,
        "written_at": time.time(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)


def read_status(settings: Settings) -> dict | None:
    try:
        return json.loads(status_path(settings).read_text())
    except (OSError, ValueError):
        return None


def run_sink(settings: Settings, bootstrap: str, stop: threading.Event, store: Store,
             limits: SinkLimits = SinkLimits(), observe: Callable[[ClickHouseSink], None] | None = None) -> None:
    """Consume, batch and write until ``stop`` is set; flush and commit what is buffered on the way out.

    ``observe`` is handed the sink once it exists (the benchmark reads its statistics).
    """
    from streams.brokers import confluent_producer_overrides, session_timeout_s
    from streams.produce import quiet_client_logger

    names = [settings.topic(spec.name) for spec in SINK_TOPICS]
    codec = Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
    producer = Producer(kafka_client_config(bootstrap, {
        "linger.ms": 5, "logger": quiet_client_logger(), **confluent_producer_overrides(bootstrap),
    }))
    dead = DeadLetters(producer, settings.topic(topics.DEAD_LETTERS.name))
    sink = ClickHouseSink(store, codec, dead, settings, limits)
    if observe is not None:
        observe(sink)
    consumer = Consumer(kafka_client_config(bootstrap, {
        "group.id": settings.topic(GROUP),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": int(session_timeout_s(settings, bootstrap) * 1000),
        "logger": quiet_client_logger(),
    }))
    # paused: consumption stopped while a write fails; repause: a rebalance brought partitions
    # that must be paused too; ids_wanted: topics assigned whose id must be (re)read.
    state = {"paused": False, "repause": False, "assigned": set(), "ids_wanted": set()}

    def commit(offsets: list[TopicPartition]) -> None:
        mine = [tp for tp in offsets if (tp.topic, tp.partition) in state["assigned"]]
        if not mine:
            return
        try:
            consumer.commit(offsets=mine, asynchronous=False)
        except KafkaException as exc:
            # The rows are in ClickHouse; whoever reads these partitions next skips them.
            log.warning("commit failed (%s); the next owner of these partitions skips what is stored", exc)

    def on_assign(_consumer, partitions) -> None:
        state["assigned"] |= {(tp.topic, tp.partition) for tp in partitions}
        # A topic deleted and created again keeps its name but not its id: read it on every assignment.
        state["ids_wanted"] |= {tp.topic for tp in partitions}
        # The partitions are assigned when this returns; the loop pauses them then if it must.
        state["repause"] = state["paused"]

    def on_revoke(_consumer, partitions) -> None:
        # Write what we hold for the partitions leaving us while we still own them.
        try:
            learn_topic_ids()
            commit(sink.flush())
        except Exception as exc:  # noqa: BLE001 - nothing was committed; the next owner reads it again
            log.warning("could not write the batch before giving partitions away (%s); their next owner "
                        "reads it again", _one_line(exc))
        sink.forget(partitions)
        state["assigned"] -= {(tp.topic, tp.partition) for tp in partitions}

    def on_lost(_consumer, partitions) -> None:
        sink.forget(partitions)
        state["assigned"] -= {(tp.topic, tp.partition) for tp in partitions}

    kill_after = int(os.environ.get("FOREWARN_SINK_KILL_AFTER_FLUSHES") or 0)

    def learn_topic_ids() -> None:
        wanted = sorted(state["ids_wanted"])
        if not wanted:
            return
        found = topic_ids(bootstrap, wanted)
        unknown = [t for t in wanted if found.get(t) is None]
        sink.topic_ids.update({t: i for t, i in found.items() if i is not None})
        state["ids_wanted"] = set(unknown)
        if unknown:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"could not read the ids of {', '.join(unknown)}"))

    def flush_and_commit() -> None:
        learn_topic_ids()
        stored_before = sink.stats.stored_rows
        offsets = sink.flush()
        if kill_after and sink.stats.stored_rows > stored_before:
            state["flushes_with_rows"] = state.get("flushes_with_rows", 0) + 1
            if state["flushes_with_rows"] >= kill_after:
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
        commit(offsets)

    consumer.subscribe(names, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    backoff = limits.min_backoff_s
    retry_at = 0.0
    last_status = 0.0
    last_complaint = 0.0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if state["repause"]:
                consumer.pause(consumer.assignment())
                state["repause"] = False
            if state["paused"] and not sink.buffered and now >= retry_at:
                # A rebalance took the batch that could not be written: try with what comes next.
                consumer.resume(consumer.assignment())
                state["paused"] = False
            if sink.due(now) and now >= retry_at:
                try:
                    flush_and_commit()
                    if state["paused"]:
                        print("forewarn sink: writing again; resuming", flush=True)
                        consumer.resume(consumer.assignment())
                        state["paused"] = False
                    backoff = limits.min_backoff_s
                except Exception as exc:  # noqa: BLE001 - whatever failed, the batch is kept and retried
                    sink.stats.store_error = f"{_failed_dependency(exc)}: {_one_line(exc)}"
                    if not isinstance(exc, (StoreUnavailable, RegistryError, KafkaException)):
                        log.exception("unexpected failure writing a batch; retrying")
                    if not state["paused"]:
                        consumer.pause(consumer.assignment())
                        state["paused"] = True
                    if now - last_complaint > 30 or backoff == limits.min_backoff_s:
                        print(f"forewarn sink: cannot write ({sink.stats.store_error}); holding "
                              f"{counted(sink.buffered, 'message')} uncommitted, retrying in {backoff:.1f}s",
                              flush=True)
                        last_complaint = now
                    retry_at = now + backoff
                    backoff = min(backoff * 2, limits.max_backoff_s)
            messages = consumer.consume(num_messages=max(1, min(sink.room, 10_000)), timeout=0.1)
            for m in messages:
                error = m.error()
                if error is not None:
                    if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                        continue
                    if error.fatal():
                        raise KafkaException(error)
                    log.warning("consumer: %s", error)
                    continue
                sink.add(m)
            if now - last_status > 1.0:
                write_status(settings, sink, len(state["assigned"]), state["paused"])
                last_status = now
        # Stopping: write and commit what is buffered, if ClickHouse lets us.
        try:
            flush_and_commit()
        except Exception as exc:  # noqa: BLE001 - reported; nothing unwritten was committed
            print(f"forewarn sink: stopping with {counted(sink.buffered, 'message')} unwritten ({_one_line(exc)}); "
                  f"nothing unwritten was committed, so it will be read again", flush=True)
        write_status(settings, sink, len(state["assigned"]), state["paused"])
    finally:
        consumer.close()
        producer.flush(10)


def serve(settings: Settings, bootstrap: str, limits: SinkLimits = SinkLimits()) -> int:
    """`forewarn sink`: run the sink in this process until SIGINT or SIGTERM; returns the exit status.

    With the embedded store (chDB) this process owns the data directory's
    store, so it opens it at once (failing fast if another process has it)
    and serves `forewarn sql` on a loopback endpoint. A ClickHouse server is
    opened on first use and retried while it is unreachable.
    """
    import signal

    from sinks.clickhouse.query import QueryEndpoint
    from sinks.clickhouse.store import open_store

    stop = threading.Event()
    store = Store(lambda: open_store(settings))
    endpoint = None
    if not settings.clickhouse:
        _open_embedded_store(store)
        endpoint = QueryEndpoint(settings, lambda: store.client, store.lock).start()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    running: list[ClickHouseSink] = []
    metrics_url = serve_metrics(new_registry(lambda out: describe_metrics(out, running)), settings.metrics_addr)
    print(start_line(settings, bootstrap, endpoint.url if endpoint else None)
          + (f"; metrics at {metrics_url}" if metrics_url else ""), flush=True)
    try:
        run_sink(settings, bootstrap, stop, store, limits, observe=running.append)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if endpoint is not None:
            endpoint.stop()
    return 0


def describe_metrics(out, running: list[ClickHouseSink]) -> None:
    """The sink's numbers as Prometheus metric families (at scrape time; see streams.metrics)."""
    stats = running[0].stats if running else SinkStats()
    out.counter("forewarn_sink_rows_total", "Rows written to ClickHouse, per table.", dict(stats.per_table),
                ("table",))
    out.histogram("forewarn_sink_flush_seconds", "How long one insert into a table took.", dict(stats.flush_seconds),
                  ("table",))
    out.counter("forewarn_sink_flushes_total", "Batches written (every table of a batch in one flush).",
                stats.flushes)
    out.counter("forewarn_sink_skipped_rows_total", "Rows read again after a crash and found already stored.",
                stats.skipped_already_stored)
    out.counter("forewarn_dead_letters_total", "Messages sent to the dead-letter topic, per source topic.",
                dict(stats.dead_letters_by_source), ("source",))
    out.gauge("forewarn_sink_buffered_messages", "Messages read and not yet written.",
              running[0].buffered if running else 0)
    out.gauge("forewarn_sink_store_failing", "1 while ClickHouse cannot be written to, else 0.",
              1 if stats.store_error else 0)
    out.gauge("forewarn_sink_last_flush_timestamp_seconds", "When the sink last wrote a batch (Unix time).",
              stats.last_flush_at)


def start_line(settings: Settings, bootstrap: str, queries_url: str | None = None) -> str:
    """What the sink prints on start: where it reads and where it writes, never a password."""
    where = (clickhouse_address(settings.clickhouse).shown if settings.clickhouse
             else f"chDB in {settings.data_dir / 'clickhouse'}")
    return (f"forewarn sink: Kafka at {bootstrap}, group {settings.topic(GROUP)}; writing to {where}"
            + (f"; queries at {queries_url}" if queries_url else ""))


def _open_embedded_store(store: Store, patience_s: float = 30.0) -> None:
    """Open (and migrate) chDB now: the directory is this process's or the start fails.

    A `forewarn sql` run just before the sink started may hold the directory
    for a moment, so a refusal is retried for ``patience_s`` before giving up.
    """
    from streams.settings import SettingsError

    deadline = time.monotonic() + patience_s
    while True:
        try:
            store.client  # noqa: B018
            return
        except SettingsError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
