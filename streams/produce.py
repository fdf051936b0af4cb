"""`forewarn produce`: JSON lines in, validated Avro records out, keyed as each topic declares.

Each line is either a record for the topic named with ``--topic``, or, without
it, ``{"topic": T, "value": {...}}`` so one file can hold a timeline across
topics, produced in file order. A bad line (not UTF-8, not JSON, not the
topic's schema, stamped further in the future than FOREWARN_MAX_CLOCK_SKEW_MS
allows, larger than a Kafka message may be, or refused by the client or the
broker) is reported with its line number and, where there is one, the path of
the offending field, and is not sent; every valid line is still sent.
``produce_lines`` always flushes before it returns or raises: every message
sent is then acknowledged, refused (and reported by line), or, if the broker
did not answer in time, counted as unacknowledged in the report.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Iterator

from confluent_kafka import KafkaError, KafkaException, Producer

from schemas.codec import Codec, EncodeError, RecordError, record_from_json
from streams.brokers import confluent_producer_overrides
from streams import topics
from streams.kafka_security import client_logger, kafka_client_config
from streams.settings import Settings
from streams.skew import FUTURE_TIMESTAMP, future_timestamp


# How long produce waits for the broker to acknowledge what it sent before giving up on it.
FLUSH_TIMEOUT_S = 60.0

# The largest message produce sends, key and value together: the Kafka client's default limit on a
# message (librdkafka's message.max.bytes; a broker takes a little more by default, 1,048,588 with
# framing). A bigger record is refused by its line and its largest field before anything is sent.
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_000_000


@dataclass
class LineError:
    line: int
    path: str
    message: str
    # A short token for refusals the worker shares (e.g. streams.skew.FUTURE_TIMESTAMP); empty otherwise.
    reason: str = ""

    def __str__(self) -> str:
        where = f"line {self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class ProduceReport:
    # Messages the broker acknowledged.
    sent: int = 0
    # Lines not written: invalid, refused by the client, or refused by the broker.
    errors: list[LineError] = field(default_factory=list)
    per_topic: dict[str, int] = field(default_factory=dict)
    # Of the errors, messages the broker refused after they were sent.
    refused: int = 0
    # Messages sent but neither acknowledged nor refused when the flush timed out.
    unacknowledged: int = 0
    first_unacknowledged_line: int | None = None
    # In time order (`forewarn replay`): the event times of the first and last valid records.
    first_ts: int | None = None
    last_ts: int | None = None

    @property
    def not_acknowledged(self) -> int:
        return self.refused + self.unacknowledged


def quiet_client_logger() -> logging.Logger:
    """A logger that swallows librdkafka's own log lines (one per failed connection attempt).

    The commands report a broker problem once, in words; the client's retry
    chatter on stderr would bury that line.
    """
    logger = client_logger()
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


def producer_for(bootstrap: str, **overrides) -> Producer:
    config = kafka_client_config(bootstrap, {
        # The Java client and the worker's client hash keys with murmur2; librdkafka's
        # default (CRC32) would put a key on a different partition than the worker's
        # own repartitioned topics, and the joins would never meet.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 20,
        "compression.type": "none",
    })
    config.update(confluent_producer_overrides(bootstrap))
    config.update(overrides)
    return Producer(config)


def message_key(spec: topics.TopicSpec, record: dict) -> bytes | None:
    """The message key: the record's key field, or no key when that field is optional and null.

    Feedback, for one, is keyed by customer_id, which anonymous feedback lacks;
    such a message goes to a partition of the producer's choosing.
    """
    value = record[spec.key_field]
    return None if value is None else str(value).encode()


def decode_line(raw: bytes | str, line_no: int) -> str | LineError:
    """One line of input as text; a UTF-8 byte-order mark is allowed at the start of line 1 only."""
    if isinstance(raw, str):
        return raw[1:] if line_no == 1 and raw.startswith("\ufeff") else raw
    try:
        return raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        skipped_bom = 3 if line_no == 1 and raw.startswith(b"\xef\xbb\xbf") else 0
        column = exc.start + skipped_bom + 1
        return LineError(line_no, "", f"not valid UTF-8 at byte {column} of the line "
                                      f"(0x{raw[column - 1]:02x}: {exc.reason}); save the file as UTF-8")


def parse_line(text: str, line_no: int, topic: str | None) -> tuple[topics.TopicSpec, dict] | LineError:
    """Validate one JSON line; return its topic spec and Avro-ready record, or what is wrong with it."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return LineError(line_no, "", f"not valid JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        # The JSON reader recurses once per level: some thousand brackets exhaust the stack.
        return LineError(line_no, "", "JSON nested too deeply to read; no record nests more than a few levels")
    except ValueError:
        # Python reads integers of at most sys.get_int_max_str_digits() digits (4300 by default).
        return LineError(line_no, "", f"a number has more than {sys.get_int_max_str_digits()} digits; "
                                      f"no field takes one that long")
    if topic is None:
        if not isinstance(obj, dict):
            return LineError(line_no, "", 'expected an object {"topic": ..., "value": {...}}')
        unknown = sorted(set(obj) - {"topic", "value"})
        if unknown:
            return LineError(line_no, _shown(unknown[0]), 'unexpected key; lines hold only "topic" and "value"')
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
            f"unknown topic {_shown(repr(name))}; expected one of {', '.join(sorted(topics.PRODUCIBLE))}"))
    try:
        record = record_from_json(spec.schema, value)
    except RecordError as exc:
        return LineError(line_no, f"{prefix}{exc.path}" if exc.path else prefix.rstrip("."), exc.problem)
    return spec, record


def _shown(text: str) -> str:
    """Text from the input as an error shows it: escaped if it cannot be printed, cut if long."""
    if not text.isprintable() or not text:
        text = json.dumps(text)
    return text if len(text) <= 60 else text[:57] + "..."


def oversized_line(line_no: int, record: dict, size: int, topic: str | None,
                   limit: int = KAFKA_DEFAULT_MAX_MESSAGE_BYTES) -> LineError | None:
    """The refusal of a record whose message (key and value) is `size` bytes, over `limit`; None if it fits.

    The field named is the one that holds most of the bytes, which is nearly always the one to shorten.
    """
    if size <= limit:
        return None
    field_name = max(record, key=lambda name: _weight(record[name]))
    return LineError(line_no, field_name if topic is not None else f"value.{field_name}", (
        f"too large: the message would be {size:,} bytes, over the {limit:,} bytes a Kafka message may "
        f"hold by default; this field holds about {_weight(record[field_name]):,} of them"))


def _weight(value) -> int:
    """About how many bytes a value takes in Avro: its text and bytes in full, a few for anything else."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, dict):
        return sum(_weight(k) + _weight(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_weight(v) for v in value)
    return 1 if value is None or isinstance(value, bool) else 8


def future_line(line_no: int, record: dict, topic: str | None, now_ms: int, max_skew_ms: int) -> LineError | None:
    """The refusal of a record stamped more than `max_skew_ms` ahead of wall time `now_ms`, or None.

    The same check, with the same reason, as the worker's (streams.skew); the
    field is ``ts`` for a line of ``--topic``, ``value.ts`` for a timeline line.
    """
    if record.get("ts") is None:
        return None
    why = future_timestamp(record["ts"], now_ms, max_skew_ms)
    if why is None:
        return None
    return LineError(line_no, "ts" if topic is not None else "value.ts", f"refused ({FUTURE_TIMESTAMP}): {why}",
                     reason=FUTURE_TIMESTAMP)


def wall_ms() -> int:
    return int(time.time() * 1000)


def produce_lines(
    lines: Iterable[bytes | str],
    settings: Settings,
    bootstrap: str,
    topic: str | None = None,
    codec: Codec | None = None,
    producer: Producer | None = None,
    on_reject: Callable[[LineError], None] | None = None,
    flush_timeout: float = FLUSH_TIMEOUT_S,
    in_time_order: bool = False,
    speed: float | None = None,
    now_ms: Callable[[], int] = wall_ms,
) -> ProduceReport:
    """Validate and produce every line; return once every message sent is acknowledged or refused.

    By default lines are produced in file order as they are read. With
    ``in_time_order`` (`forewarn replay`) every line is read and checked
    first, then the records are produced in event-time order (``ts``; file
    order among equal times), as fast as possible, or with ``speed`` at that
    many times real time: two events an hour apart in event time are produced
    an hour / speed apart.

    ``lines`` are raw lines (bytes, decoded here one by one so one bad byte
    rejects one line) or text. ``on_reject`` is called with each line not
    written as soon as that is known, including lines the broker refuses
    later. Whatever happens, the producer is flushed (for at most
    ``flush_timeout`` seconds) before this returns or raises; messages still
    unacknowledged then are counted in the report, not raised.

    A record stamped more than ``settings.max_clock_skew_ms`` ahead of wall
    time (``now_ms()``) is refused like an invalid line (``future_line``).
    """
    if topic is not None and topic not in topics.PRODUCIBLE:
        raise ValueError(f"unknown topic {topic!r}; expected one of {', '.join(sorted(topics.PRODUCIBLE))}")
    codec = codec or Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
    producer = producer or producer_for(bootstrap, logger=quiet_client_logger())
    report = ProduceReport()
    pending: set[int] = set()  # line numbers sent and not yet acknowledged or refused
    stalled = False  # the local queue stayed full: the broker is not taking messages

    def reject(error: LineError) -> None:
        report.errors.append(error)
        if on_reject is not None:
            on_reject(error)

    def on_delivery(line_no: int, topic_name: str):
        def delivered(err, _msg) -> None:
            pending.discard(line_no)
            if err is None:
                report.sent += 1
                report.per_topic[topic_name] = report.per_topic.get(topic_name, 0) + 1
            else:
                report.refused += 1
                reject(LineError(line_no, "", f"not written: Kafka at {bootstrap} refused it ({err.str()})"))
        return delivered

    def send(line_no: int, spec: topics.TopicSpec, key: bytes | None, value: bytes) -> LineError | None:
        nonlocal stalled
        deadline = time.monotonic() + flush_timeout
        while True:
            try:
                producer.produce(settings.topic(spec.name), key=key, value=value,
                                 on_delivery=on_delivery(line_no, spec.name))
                stalled = False
                pending.add(line_no)
                return None
            except BufferError:
                # The local queue is full: wait for acknowledgements rather than drop the
                # line, but not forever, and not again for every line once it has stalled.
                if stalled or time.monotonic() > deadline:
                    stalled = True
                    return LineError(line_no, "", (
                        f"not sent: the producer's queue stayed full for {flush_timeout:g}s; "
                        f"Kafka at {bootstrap} is not acknowledging messages"))
                producer.poll(0.1)
            except KafkaException as exc:
                return LineError(line_no, "", f"not sent: {_kafka_reason(exc)} "
                                              f"(the encoded record is {len(value)} bytes)")

    def valid_lines() -> Iterator[tuple[int, topics.TopicSpec, dict, bytes | None, bytes]]:
        for line_no, raw in enumerate(lines, start=1):
            text = decode_line(raw, line_no)
            if isinstance(text, LineError):
                reject(text)
                continue
            if not text.strip():
                continue
            parsed = parse_line(text, line_no, topic)
            if isinstance(parsed, LineError):
                reject(parsed)
                continue
            # Checked on the record exactly as it will be sent (anything that changes its ts must come
            # before this), and before a replay orders and paces the records, so a refused one sets
            # neither the replay's span nor its pace. A replay sends later than it checks: wall time
            # has only moved on by then, so a record within the skew here still is when sent.
            refused = future_line(line_no, parsed[1], topic, now_ms(), settings.max_clock_skew_ms)
            if refused is not None:
                reject(refused)
                continue
            spec, record = parsed
            try:
                value = codec.encode(spec.schema, record, topic=settings.topic(spec.name))
            except EncodeError as exc:
                reject(LineError(line_no, "", f"not sent: {exc}"))
                continue
            key = message_key(spec, record)
            # Checked before a replay orders the records, like the time: a refused one sets no span.
            refused = oversized_line(line_no, record, len(value) + len(key or b""), topic)
            if refused is not None:
                reject(refused)
                continue
            yield line_no, spec, record, key, value

    items: Iterable[tuple[int, topics.TopicSpec, dict, bytes | None, bytes]] = valid_lines()
    if in_time_order:
        items = sorted(items, key=lambda item: item[2]["ts"])  # stable: file order among equal times
        report.first_ts = items[0][2]["ts"] if items else None
        report.last_ts = items[-1][2]["ts"] if items else None
    started = time.monotonic()
    try:
        for line_no, spec, record, key, value in items:
            if speed:
                due = started + (record["ts"] - report.first_ts) / 1000 / speed
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(min(wait, 0.5))
            problem = send(line_no, spec, key, value)
            if problem is not None:
                reject(problem)
            producer.poll(0)
    finally:
        producer.flush(flush_timeout)
        # The messages whose delivery report never came. Not flush()'s return value: librdkafka's queue
        # length also counts events such as a connection error still to be logged (one more message).
        report.unacknowledged = len(pending)
        if report.unacknowledged:
            report.first_unacknowledged_line = min(pending, default=None)
    return report


def _kafka_reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def read_lines(source: BinaryIO) -> Iterator[bytes]:
    """The lines of a binary stream without their line endings, undecoded (see ``decode_line``)."""
    for line in source:
        yield line.rstrip(b"\n").rstrip(b"\r")
