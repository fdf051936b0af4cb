"""`forewarn produce`: JSON lines in, validated Avro records out, keyed as each topic declares.

Each line is either a record for the topic named with ``--topic``, or, without
it, ``{"topic": T, "value": {...}}`` so one file can hold a timeline across
topics, produced in file order. A bad line is reported with its line number
and the path of the offending field and is not sent; every valid line is still
sent, and ``produce_lines`` returns only once the broker has acknowledged
every message sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, TextIO

from confluent_kafka import Producer

from schemas.codec import Codec, RecordError, record_from_json
from streams.brokers import confluent_producer_overrides
from streams import topics
from streams.settings import Settings


@dataclass
class LineError:
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class ProduceReport:
    sent: int = 0
    errors: list[LineError] = field(default_factory=list)
    per_topic: dict[str, int] = field(default_factory=dict)


def producer_for(bootstrap: str, **overrides) -> Producer:
    config = {
        "bootstrap.servers": bootstrap,
        # The Java client and the worker's client hash keys with murmur2; librdkafka's
        # default (CRC32) would put a key on a different partition than the worker's
        # own repartitioned topics, and the joins would never meet.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 20,
        "compression.type": "none",
    }
    config.update(confluent_producer_overrides(bootstrap))
    config.update(overrides)
    return Producer(config)


def parse_line(text: str, line_no: int, topic: str | None) -> tuple[topics.TopicSpec, dict] | LineError:
    """Validate one JSON line; return its topic spec and Avro-ready record, or what is wrong with it."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return LineError(line_no, "", f"not valid JSON ({exc.msg} at column {exc.colno})")
    if topic is None:
        if not isinstance(obj, dict):
            return LineError(line_no, "", 'expected an object {"topic": ..., "value": {...}}')
        unknown = sorted(set(obj) - {"topic", "value"})
        if unknown:
            return LineError(line_no, unknown[0], 'unexpected key; lines hold only "topic" and "value"')
        name = obj.get("topic")
        if not isinstance(name, str):
            return LineError(line_no, "topic", "required: the name of an input topic")
        if "value" not in obj:
            return LineError(line_no, "value", "required: the record to produce")
        value = obj["value"]
        prefix = "value."
    else:
        name, value, prefix = topic, obj, ""
    spec = topics.PRODUCIBLE.get(name)
    if spec is None:
        return LineError(line_no, "topic" if topic is None else "", (
            f"unknown topic {name!r}; expected one of {', '.join(sorted(topics.PRODUCIBLE))}"))
    try:
        record = record_from_json(spec.schema, value)
    except RecordError as exc:
        return LineError(line_no, f"{prefix}{exc.path}" if exc.path else prefix.rstrip("."), exc.problem)
    return spec, record


def produce_lines(
    lines: Iterable[str],
    settings: Settings,
    bootstrap: str,
    topic: str | None = None,
    codec: Codec | None = None,
    producer: Producer | None = None,
) -> ProduceReport:
    if topic is not None and topic not in topics.PRODUCIBLE:
        raise ValueError(f"unknown topic {topic!r}; expected one of {', '.join(sorted(topics.PRODUCIBLE))}")
    codec = codec or Codec(registry_url=settings.schema_registry)
    producer = producer or producer_for(bootstrap)
    report = ProduceReport()
    failures: list[str] = []

    def delivered(err, msg) -> None:
        if err is not None:
            failures.append(f"{msg.topic()}: {err}")

    for line_no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        parsed = parse_line(text, line_no, topic)
        if isinstance(parsed, LineError):
            report.errors.append(parsed)
            continue
        spec, record = parsed
        full_name = settings.topic(spec.name)
        value = codec.encode(spec.schema, record, topic=full_name)
        while True:
            try:
                producer.produce(full_name, key=record[spec.key_field].encode(), value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: wait for acknowledgements, never drop
        producer.poll(0)
        report.sent += 1
        report.per_topic[spec.name] = report.per_topic.get(spec.name, 0) + 1
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} messages not acknowledged by {bootstrap} within 60s")
    if failures:
        raise RuntimeError(f"{len(failures)} messages were refused by the broker; first: {failures[0]}")
    return report


def read_lines(source: TextIO) -> Iterable[str]:
    for line in source:
        yield line.rstrip("\n")
