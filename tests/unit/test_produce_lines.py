"""`forewarn produce`: every rejected line is named with its line and field, and every valid line is sent."""

from __future__ import annotations

import json
import socket
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from schemas.codec import Codec, RegistryError
from streams.produce import LineError, decode_line, parse_line, produce_lines, quiet_client_logger, read_lines
from streams.settings import Settings

GOOD_ORDER = {"event_id": "e1", "ts": "2026-03-02T09:15:00Z", "event_type": "placed", "order_id": "O1",
              "customer_id": "C1", "lines": [{"sku": "A", "qty": 2, "unit_price_cents": 100}]}


def test_a_good_line_for_a_named_topic_becomes_an_avro_ready_record():
    spec, record = parse_line(json.dumps(GOOD_ORDER), 1, "orders")
    assert spec.name == "orders" and spec.key_field == "order_id"
    assert record["ts"] == 1_772_442_900_000 and record["promised_ship_by"] is None


def test_a_timeline_line_names_its_topic():
    spec, record = parse_line(json.dumps({"topic": "inventory", "value": {
        "event_id": "e2", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A", "available": 3}}),
        7, None)
    assert spec.name == "inventory" and record["available"] == 3


@pytest.mark.parametrize(
    "text, topic, path, words",
    [
        ("{not json", "orders", "", "not valid JSON"),
        (json.dumps({"topic": "ordrs", "value": GOOD_ORDER}), None, "topic", "unknown topic 'ordrs'"),
        (json.dumps({"value": GOOD_ORDER}), None, "topic", "required"),
        (json.dumps({"topic": "orders"}), None, "value", "required"),
        (json.dumps({"topic": "alerts", "value": {}}), None, "topic", "unknown topic 'alerts'"),
        (json.dumps({k: v for k, v in GOOD_ORDER.items() if k != "customer_id"}), "orders", "customer_id",
         "missing"),
        (json.dumps(dict(GOOD_ORDER, event_type="shiped")), "orders", "event_type", "shiped"),
        (json.dumps(dict(GOOD_ORDER, lines=[{"sku": "A", "qty": "two", "unit_price_cents": 1}])), "orders",
         "lines[0].qty", "int"),
        (json.dumps({"topic": "orders", "value": dict(GOOD_ORDER, lines=[])}), None, "value.lines", "placed"),
        (json.dumps(dict(GOOD_ORDER, ts="2026-03-02 09:15")), "orders", "ts", ""),
    ],
)
def test_bad_lines_are_reported_by_line_and_field(text, topic, path, words):
    error = parse_line(text, 42, topic)
    assert isinstance(error, LineError)
    assert error.line == 42
    assert error.path == path
    assert words in error.message
    assert str(error).startswith(f"line 42: {path}" if path else "line 42: ")


# -- produce_lines: what reaches Kafka, and what is reported, when things go wrong

GOOD_STOCK = {"event_id": "s1", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A", "available": 3}


def stock_line(**changes) -> bytes:
    return json.dumps({"topic": "inventory", "value": dict(GOOD_STOCK, **changes)}).encode()


def produce(lines, producer, **kwargs):
    rejected: list = []
    report = produce_lines(lines, Settings(topic_prefix="p-"), "kafka:9092", codec=Codec(), producer=producer,
                           on_reject=rejected.append, **kwargs)
    return report, rejected


def test_a_byte_order_mark_after_line_1_is_not_json():
    assert decode_line(b"\xef\xbb\xbf{}", 2) == "\ufeff{}"
    assert isinstance(decode_line(b"\xef\xbb\xbf{}", 1), str) and decode_line(b"\xef\xbb\xbf{}", 1) == "{}"
    parsed = parse_line("\ufeff" + stock_line().decode(), 2, None)
    assert isinstance(parsed, LineError) and "not valid JSON" in parsed.message


def test_read_lines_keeps_bytes_and_drops_line_endings(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"a\r\nb\xff\nc")
    with open(path, "rb") as f:
        assert list(read_lines(f)) == [b"a", b"b\xff", b"c"]


# Bound but never listening: a connection to such a port is refused at once. The sockets stay
# bound for the whole run, so no broker or client started meanwhile can be given the same port
# (one that accepted and never answered would hold a message in flight past every flush timeout).
_HELD_PORTS: list[socket.socket] = []


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(sock)
    return sock.getsockname()[1]


def test_with_no_broker_listening_the_messages_are_reported_unacknowledged_not_raised():
    bootstrap = f"127.0.0.1:{closed_port()}"
    producer = Producer({"bootstrap.servers": bootstrap, "logger": quiet_client_logger()})
    rejected: list = []
    report = produce_lines([stock_line(event_id="s1"), b"[1", stock_line(event_id="s3")], Settings(), bootstrap,
                           producer=producer, on_reject=rejected.append, flush_timeout=1.0)
    assert [e.line for e in rejected] == [2]
    assert report.sent == 0 and report.unacknowledged == 2 and report.first_unacknowledged_line == 1


# The Kafka client below is the real one (confluent-kafka), talking to a port where nothing listens:
# what it does when no broker takes the messages is what these tests are about. What it does with a
# broker that does is in tests/integration/test_produce_client.py.


class CountingProducer(Producer):
    """The real client, counting its poll calls, so a test can tell when the producer waited."""

    def __init__(self, config: dict) -> None:
        super().__init__(dict(config, logger=quiet_client_logger()))
        self.polls = 0

    def poll(self, timeout=None):
        self.polls += 1
        return super().poll(0 if timeout is None else timeout)


def unanswered(**config) -> tuple[str, CountingProducer]:
    bootstrap = f"127.0.0.1:{closed_port()}"
    return bootstrap, CountingProducer(dict({"bootstrap.servers": bootstrap}, **config))


def test_a_queue_that_stays_full_rejects_lines_without_waiting_again_for_each():
    # Room for one message, which no broker takes: line 2 waits for room, then line 3 does not.
    bootstrap, producer = unanswered(**{"queue.buffering.max.messages": 1})
    polls_at_rejection = []
    report = produce_lines([stock_line(event_id=f"s{n}") for n in (1, 2, 3)], Settings(), bootstrap,
                           producer=producer, flush_timeout=0.5,
                           on_reject=lambda error: polls_at_rejection.append((error.line, producer.polls)))
    (line_2, polls_2), (line_3, polls_3) = polls_at_rejection
    assert (line_2, line_3) == (2, 3)
    assert polls_2 >= 1  # line 2 polled for room for its 0.5 s ...
    assert polls_3 - polls_2 <= 1  # ... line 3 was refused at once (one poll(0) between lines)
    assert "queue stayed full for 0.5s; Kafka at" in str(report.errors[0])
    assert report.sent == 0 and report.unacknowledged == 1 and report.first_unacknowledged_line == 1


def test_a_line_the_client_refuses_is_reported_with_the_reason_and_its_size():
    bootstrap, producer = unanswered(**{"message.max.bytes": 1000})
    big = stock_line(event_id="s2", sku="X" * 2000)
    rejected: list = []
    report = produce_lines([stock_line(event_id="s1"), big, stock_line(event_id="s3")], Settings(), bootstrap,
                           producer=producer, on_reject=rejected.append, flush_timeout=0.5)
    assert [e.line for e in rejected] == [2]
    assert "not sent: Unable to produce message: Broker: Message size too large" in rejected[0].message
    assert "(the encoded record is 20" in rejected[0].message  # the size, so the user sees how far over it is
    assert report.unacknowledged == 2  # lines 1 and 3 were handed to the client


def test_messages_kafka_does_not_take_are_reported_by_their_line():
    # The client gives up on each message after 300 ms: every delivery report is a failure.
    bootstrap, producer = unanswered(**{"message.timeout.ms": 300})
    rejected: list = []
    report = produce_lines([stock_line(event_id="s1"), b"{oops", stock_line(event_id="s3")], Settings(), bootstrap,
                           producer=producer, on_reject=rejected.append, flush_timeout=10)
    assert sorted(e.line for e in rejected) == [1, 2, 3]
    refused = {e.line: e.message for e in rejected if e.line != 2}
    assert all(f"not written: Kafka at {bootstrap} refused it (Local: Message timed out)" in m
               for m in refused.values())
    assert report.sent == 0 and report.refused == 2 and report.unacknowledged == 0


def test_the_producer_is_flushed_even_when_a_failure_ends_the_run():
    class RegistryDown(Codec):
        def encode(self, schema_name, record, topic=None):
            if record["event_id"] == "s2":
                raise RegistryError("schema registry at http://registry:8081 is unavailable")
            return super().encode(schema_name, record, topic)

    bootstrap, producer = unanswered(**{"message.timeout.ms": 300})
    rejected: list = []
    with pytest.raises(RegistryError):
        produce_lines([stock_line(event_id="s1"), stock_line(event_id="s2")], Settings(), bootstrap,
                      codec=RegistryDown(), producer=producer, on_reject=rejected.append, flush_timeout=10)
    # s1's delivery report (a timeout: no broker takes it) was waited for and served before the error
    # went up. (len(producer) would not do: it also counts the client's log events, and a refused
    # connection keeps adding those.)
    assert [(e.line, "Message timed out" in e.message) for e in rejected] == [(1, True)]


# -- events stamped in the future (streams.skew): refused by line and field, the rest still sent

NOW = 1_796_464_800_000  # 2026-12-05T10:00:00Z, the wall time the produce runs below see


def at(ms: int) -> str:
    from schemas.codec import format_timestamp_ms

    return format_timestamp_ms(ms)


class RecordingProducer(CountingProducer):
    """The real client (nothing listening), remembering the key of every message it was handed."""

    def __init__(self, config: dict) -> None:
        super().__init__(config)
        self.keys: list[bytes] = []

    def produce(self, topic, key=None, value=None, on_delivery=None):
        self.keys.append(key)
        return super().produce(topic, key=key, value=value, on_delivery=on_delivery)


def recording() -> tuple[str, RecordingProducer]:
    bootstrap = f"127.0.0.1:{closed_port()}"
    return bootstrap, RecordingProducer({"bootstrap.servers": bootstrap})


def produce_at_now(lines, settings=None, **kwargs):
    bootstrap, producer = recording()
    rejected: list = []
    report = produce_lines(lines, settings or Settings(), bootstrap, producer=producer, on_reject=rejected.append,
                           flush_timeout=0.2, now_ms=lambda: NOW, **kwargs)
    return report, rejected, producer.keys


def test_a_line_stamped_a_year_ahead_is_refused_by_line_and_field_and_the_others_are_sent():
    lines = [stock_line(sku="A", ts=at(NOW - 3_600_000)), stock_line(sku="B", ts=at(NOW + 365 * 86_400_000)),
             stock_line(sku="C", ts=at(NOW))]
    report, rejected, keys = produce_at_now(lines)
    assert keys == [b"A", b"C"]
    assert [(e.line, e.path, e.reason) for e in rejected] == [(2, "value.ts", "future-timestamp")]
    assert str(rejected[0]) == (
        "line 2: value.ts: refused (future-timestamp): event time 2027-12-05T10:00:00Z is 365 days ahead of wall "
        "time 2026-12-05T10:00:00Z (FOREWARN_MAX_CLOCK_SKEW_MS=300000)")
    assert report.errors == rejected


def test_with_a_topic_named_the_field_is_ts():
    line = json.dumps(dict(GOOD_STOCK, ts=at(NOW + 86_400_000))).encode()
    _, rejected, keys = produce_at_now([line], topic="inventory")
    assert keys == [] and [(e.line, e.path, e.reason) for e in rejected] == [(1, "ts", "future-timestamp")]


def test_ahead_within_the_allowed_skew_is_sent_and_the_setting_sets_the_limit():
    lines = [stock_line(sku="A", ts=at(NOW + 300_000)), stock_line(sku="B", ts=at(NOW + 300_001))]
    _, rejected, keys = produce_at_now(lines)
    assert keys == [b"A"] and [e.line for e in rejected] == [2]
    _, rejected, keys = produce_at_now(lines, settings=Settings(max_clock_skew_ms=600_000))
    assert keys == [b"A", b"B"] and rejected == []
    _, rejected, keys = produce_at_now([stock_line(ts=at(NOW + 1))], settings=Settings(max_clock_skew_ms=0))
    assert keys == [] and "FOREWARN_MAX_CLOCK_SKEW_MS=0" in rejected[0].message


def test_history_of_any_age_is_sent():
    lines = [stock_line(sku="A", ts="2001-01-01T00:00:00Z"), stock_line(sku="B", ts=at(NOW - 400 * 86_400_000))]
    _, rejected, keys = produce_at_now(lines)
    assert rejected == [] and keys == [b"A", b"B"]


def test_replay_refuses_a_future_line_before_ordering_so_it_sets_neither_the_span_nor_the_order():
    lines = [stock_line(sku="late", ts=at(NOW - 60_000)), stock_line(sku="future", ts=at(NOW + 30 * 86_400_000)),
             stock_line(sku="early", ts=at(NOW - 120_000))]
    report, rejected, keys = produce_at_now(lines, in_time_order=True)
    assert keys == [b"early", b"late"]
    assert [(e.line, e.path, e.reason) for e in rejected] == [(2, "value.ts", "future-timestamp")]
    assert (report.first_ts, report.last_ts) == (NOW - 120_000, NOW - 60_000)


def test_wall_time_is_read_as_lines_are_checked():
    # A long-running produce (standard input from a live source) judges each line against the time it is read.
    clock = iter([NOW, NOW + 86_400_000])
    bootstrap, producer = recording()
    rejected: list = []
    produce_lines([stock_line(sku="A", ts=at(NOW + 86_400_000)), stock_line(sku="B", ts=at(NOW + 86_400_000))],
                  Settings(), bootstrap, producer=producer, on_reject=rejected.append, flush_timeout=0.2,
                  now_ms=lambda: next(clock))
    assert [e.line for e in rejected] == [1] and producer.keys == [b"B"]
