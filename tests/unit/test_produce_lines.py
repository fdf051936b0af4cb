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


class FakeProducer:
    """Records what was produced; acknowledges on poll/flush unless told to refuse or to stay silent."""

    def __init__(self, raise_on: dict[int, list[BaseException]] | None = None, refuse: set[int] = frozenset(),
                 answer: bool = True, queue_full: bool = False) -> None:
        self.raise_on = {n: list(excs) for n, excs in (raise_on or {}).items()}  # call number -> exceptions
        self.refuse = refuse  # produce call numbers the "broker" refuses
        self.answer = answer
        self.queue_full = queue_full  # every produce raises BufferError, as with a broker that never answers
        self.calls = 0
        self.queued: list[tuple[int, object]] = []
        self.sent: list[dict] = []
        self.flushed = False

    def produce(self, topic, key=None, value=None, on_delivery=None):
        if self.queue_full:
            raise BufferError("Local: Queue full")
        self.calls += 1
        pending = self.raise_on.get(self.calls)
        if pending:
            self.calls -= 1  # a retried call keeps its number
            raise pending.pop(0)
        self.sent.append({"topic": topic, "key": key, "value": value})
        self.queued.append((self.calls, on_delivery))

    def _deliver(self) -> None:
        if not self.answer:
            return
        queued, self.queued = self.queued, []
        for n, callback in queued:
            error = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization failed") \
                if n in self.refuse else None
            callback(error, None)

    def poll(self, timeout=0):
        self._deliver()
        return 0

    def flush(self, timeout=0):
        self.flushed = True
        self._deliver()
        return len(self.queued)


def produce(lines, producer, **kwargs):
    rejected: list = []
    report = produce_lines(lines, Settings(topic_prefix="p-"), "kafka:9092", codec=Codec(), producer=producer,
                           on_reject=rejected.append, **kwargs)
    return report, rejected


def test_anonymous_feedback_is_sent_without_a_key():
    feedback = {"event_id": "f1", "ts": "2026-03-02T09:15:00Z", "event_type": "review", "score": 2,
                "text": "slow delivery"}
    producer = FakeProducer()
    report, rejected = produce([json.dumps(feedback).encode(), json.dumps(dict(feedback, customer_id="C7")).encode()],
                               producer, topic="feedback")
    assert rejected == [] and report.sent == 2 and report.per_topic == {"feedback": 2}
    assert [(m["topic"], m["key"]) for m in producer.sent] == [("p-feedback", None), ("p-feedback", b"C7")]


def test_a_line_that_is_not_utf8_is_rejected_and_the_lines_around_it_are_sent():
    producer = FakeProducer()
    lines = [b"\xef\xbb\xbf" + stock_line(), stock_line(event_id="s2")[:-3] + b"\xff\"}}", stock_line(event_id="s3")]
    report, rejected = produce(lines, producer)
    assert [str(e) for e in rejected] == [
        f"line 2: not valid UTF-8 at byte {len(lines[1]) - 3} of the line (0xff: invalid start byte); "
        f"save the file as UTF-8"]
    assert report.sent == 2  # line 1's byte-order mark is allowed
    assert [Codec().decode(m["value"])[1]["event_id"] for m in producer.sent] == ["s1", "s3"]


def test_a_byte_order_mark_after_line_1_is_not_json():
    assert decode_line(b"\xef\xbb\xbf{}", 2) == "\ufeff{}"
    report, rejected = produce([stock_line(), b"\xef\xbb\xbf" + stock_line()], FakeProducer())
    assert [e.line for e in rejected] == [2] and "not valid JSON" in rejected[0].message


def test_read_lines_keeps_bytes_and_drops_line_endings(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"a\r\nb\xff\nc")
    with open(path, "rb") as f:
        assert list(read_lines(f)) == [b"a", b"b\xff", b"c"]


def test_a_line_the_client_refuses_is_reported_with_the_reason_and_the_rest_are_sent():
    too_large = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE,
                                          "Unable to produce message: Broker: Message size too large"))
    producer = FakeProducer(raise_on={2: [too_large]})
    report, rejected = produce([stock_line(event_id=f"s{n}") for n in (1, 2, 3)], producer)
    assert len(rejected) == 1 and rejected[0].line == 2
    assert "not sent: Unable to produce message: Broker: Message size too large" in rejected[0].message
    assert "bytes" in rejected[0].message  # the size, so the user sees how far over it is
    assert report.sent == 2 and report.errors == rejected and producer.flushed
    assert [Codec().decode(m["value"])[1]["event_id"] for m in producer.sent] == ["s1", "s3"]


def test_a_full_queue_waits_for_acknowledgements_instead_of_dropping_the_line():
    producer = FakeProducer(raise_on={1: [BufferError("Local: Queue full"), BufferError("Local: Queue full")]})
    report, rejected = produce([stock_line()], producer)
    assert rejected == [] and report.sent == 1


def test_a_queue_that_stays_full_rejects_lines_without_waiting_again_for_each():
    producer = FakeProducer(queue_full=True)
    started = time.monotonic()
    report, rejected = produce([stock_line(event_id="s1"), stock_line(event_id="s2")], producer, flush_timeout=0.5)
    assert time.monotonic() - started < 0.9  # line 1 waited 0.5s; line 2 did not wait again
    assert [e.line for e in rejected] == [1, 2]
    assert "queue stayed full" in rejected[0].message and "kafka:9092" in rejected[0].message
    assert report.sent == 0


def test_a_message_the_broker_refuses_is_reported_by_its_line():
    producer = FakeProducer(refuse={2})
    report, rejected = produce([stock_line(event_id=f"s{n}") for n in (1, 2, 3)], producer)
    assert [e.line for e in rejected] == [2]
    assert "refused it (Broker: Topic authorization failed)" in rejected[0].message
    assert report.sent == 2 and report.refused == 1 and report.not_acknowledged == 1


def test_messages_not_acknowledged_in_time_are_counted_and_rejections_are_still_reported():
    producer = FakeProducer(answer=False)
    report, rejected = produce([stock_line(event_id="s1"), b"{oops", stock_line(event_id="s3")], producer)
    assert [e.line for e in rejected] == [2]
    assert report.sent == 0 and report.unacknowledged == 2 and report.first_unacknowledged_line == 1


def test_the_producer_is_flushed_even_when_a_failure_ends_the_run():
    class RegistryDown(Codec):
        def encode(self, schema_name, record, topic=None):
            if record["event_id"] == "s2":
                raise RegistryError("schema registry at http://registry:8081 is unavailable")
            return super().encode(schema_name, record, topic)

    producer = FakeProducer()
    with pytest.raises(RegistryError):
        produce_lines([stock_line(event_id="s1"), stock_line(event_id="s2")], Settings(), "kafka:9092",
                      codec=RegistryDown(), producer=producer)
    assert producer.flushed and producer.queued == []  # s1 was delivered before the error went up


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_with_no_broker_listening_the_messages_are_reported_unacknowledged_not_raised():
    bootstrap = f"127.0.0.1:{closed_port()}"
    producer = Producer({"bootstrap.servers": bootstrap, "logger": quiet_client_logger()})
    rejected: list = []
    report = produce_lines([stock_line(event_id="s1"), b"[1", stock_line(event_id="s3")], Settings(), bootstrap,
                           producer=producer, on_reject=rejected.append, flush_timeout=1.0)
    assert [e.line for e in rejected] == [2]
    assert report.sent == 0 and report.unacknowledged == 2 and report.first_unacknowledged_line == 1
