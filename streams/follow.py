"""Reading a topic from the beginning outside any consumer group: `forewarn alerts`, the demo, the tests."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from schemas.codec import Codec, DecodeError
from streams.kafka_security import kafka_client_config


class TopicNotFound(KafkaException):
    """The topic to read does not exist (yet) on the broker."""

    def __init__(self, topic: str, bootstrap: str) -> None:
        super().__init__(f"topic {topic} does not exist at {bootstrap}")
        self.topic = topic
        self.bootstrap = bootstrap


def read_topic(
    bootstrap: str,
    topic: str,
    codec: Codec,
    follow: bool = False,
    stop: threading.Event | None = None,
    metadata_timeout: float = 10.0,
) -> Iterator[tuple[str, dict] | DecodeError]:
    """Yield (schema, record) for every message of `topic`, from the beginning.

    Without `follow`, stops once every partition has been read to the end it
    had when reading started. Undecodable messages are yielded as DecodeError
    so the caller can report them.
    """
    consumer = Consumer(kafka_client_config(bootstrap, {
        "group.id": f"forewarn-reader-{time.time_ns()}",  # assigned, never subscribed or committed
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    }))
    try:
        meta = consumer.list_topics(topic, timeout=metadata_timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise TopicNotFound(topic, bootstrap)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        pending = set(meta.partitions)
        while follow or pending:
            if stop is not None and stop.is_set():
                return
            for message in consumer.consume(num_messages=500, timeout=0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    raise KafkaException(error)
                try:
                    yield codec.decode(message.value())
                except DecodeError as exc:
                    yield exc
    finally:
        consumer.close()


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_alert(alert: dict, verbose: bool = True) -> str:
    """An alert as a person reads it: when, status, severity, audience, title; then the summary."""
    head = (f"{iso(alert['event_ts'])}  {alert['status'].upper():8} {alert['severity']:8} "
            f"{alert['audience']:7} {alert['rule']}  {alert['title']}")
    if not verbose:
        return head
    lines = [head, f"    {alert['summary']}"]
    details = alert.get("details") or {}
    for key in sorted(details):
        if key.startswith("alternatives."):
            lines.append(f"    alternatives for {key.split('.', 1)[1]}: {details[key]}")
    return "\n".join(lines)


def collect(
    bootstrap: str,
    topic: str,
    codec: Codec,
    until: Callable[[list[dict]], bool],
    timeout: float,
) -> list[dict]:
    """Read `topic` again and again until `until(records)` holds or the deadline passes; return the records."""
    deadline = time.monotonic() + timeout
    records: list[dict] = []
    while True:
        records = [item[1] for item in read_topic(bootstrap, topic, codec) if not isinstance(item, DecodeError)]
        if until(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def group_lag(bootstrap: str, group: str, topic_names: list[str], timeout: float = 10.0) -> int | None:
    """Messages of `topic_names` that consumer group `group` has not committed yet; None if unknown.

    A partition the group has never committed counts in full, so a group that
    has not started yet is never mistaken for one that is done. For one look;
    to watch a group, keep a LagProbe.
    """
    with LagProbe(bootstrap, timeout) as probe:
        return probe.total(group, topic_names)


def lag_by_partition(bootstrap: str, group: str, topic_names: list[str],
                     timeout: float = 10.0) -> dict[tuple[str, int], int] | None:
    """Uncommitted messages per (topic, partition) of `topic_names` for `group`; None if unknown (one look)."""
    with LagProbe(bootstrap, timeout) as probe:
        return probe.by_partition(group, topic_names)


class LagProbe:
    """Watches consumer groups' lag with one admin client (and a consumer per group) while it is open.

    Each look is three requests whatever the number of partitions: the
    metadata, the group's committed offsets, and the partitions' first and
    next offsets (ListOffsets, batched). A loop that asks every second should
    neither create and destroy Kafka clients each time nor send a request per
    partition.

    Committed offsets are read by a consumer that carries the group's id
    (``Consumer.committed``; it never subscribes, so it never joins the group),
    not by the admin client's ListConsumerGroupOffsets. That is the one place
    working around a defect of the C client (librdkafka issue #5040, open in
    the version confluent-kafka 2.16 bundles): when the broker answers an
    admin client's OffsetFetch with NOT_COORDINATOR, as it does while a
    broker starts or the group's coordinator moves, the client asks its
    consumer-group handle to look the coordinator up again, and an admin
    client has none: a NULL dereference on a thread of the C client kills the
    whole process with SIGSEGV, with no Python frame to report. A consumer has
    that handle and simply asks again. tests/integration/test_lag_probe.py
    reads lag from a broker that is still starting.
    """

    def __init__(self, bootstrap: str, timeout: float = 10.0) -> None:
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.timeout = timeout
        self.admin = AdminClient(kafka_client_config(bootstrap))
        self._readers: dict[str, Consumer] = {}

    def __enter__(self) -> "LagProbe":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self.admin = None

    def committed(self, group: str, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The group's committed offsets (OFFSET_INVALID, negative, where it committed none)."""
        reader = self._readers.get(group)
        if reader is None:
            reader = Consumer(kafka_client_config(self.bootstrap, {
                "group.id": group, "enable.auto.commit": False, "enable.auto.offset.store": False,
            }))
            self._readers[group] = reader
        return reader.committed(partitions, timeout=self.timeout)

    def total(self, group: str, topic_names: list[str]) -> int | None:
        behind = self.by_partition(group, topic_names)
        return None if behind is None else sum(behind.values())

    def by_partition(self, group: str, topic_names: list[str]) -> dict[tuple[str, int], int] | None:
        from confluent_kafka.admin import OffsetSpec

        try:
            metadata = self.admin.list_topics(timeout=self.timeout)
        except KafkaException:  # no broker answered in time: unknown for now
            return None
        # A topic missing from the metadata, or reported with an error (as a broker comes back),
        # makes the whole answer unknown: leaving it out could pass for zero lag.
        found = [metadata.topics.get(name) for name in topic_names]
        if not found or any(meta is None or meta.error is not None or not meta.partitions for meta in found):
            return None
        partitions = [TopicPartition(meta.topic, p) for meta in found for p in meta.partitions]
        try:
            committed = self.committed(group, partitions)
            # e.g. leadership moving after a broker restart fails these: unknown for now
            ends = self._offsets(partitions, OffsetSpec.latest())
            starts = self._offsets(partitions, OffsetSpec.earliest())
        except (KafkaException, TimeoutError):
            return None
        if any(tp.error is not None for tp in committed):
            return None
        offsets = {(tp.topic, tp.partition): tp.offset for tp in committed}
        behind = {}
        for key in ends:
            done = offsets.get(key, -1)
            low, high = starts[key], ends[key]
            behind[key] = high - max(done, low) if done >= 0 else high - low
        return behind

    def _offsets(self, partitions: list[TopicPartition], spec) -> dict[tuple[str, int], int]:
        futures = self.admin.list_offsets({tp: spec for tp in partitions}, request_timeout=self.timeout)
        return {(tp.topic, tp.partition): future.result(timeout=self.timeout).offset for tp, future in futures.items()}
