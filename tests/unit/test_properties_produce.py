"""Properties of `forewarn produce` over bad input: every line is either sent or reported by number and field.

Lines are made from the topics' schemas (valid records, see ``records_for``) and then broken the ways
people and tools break them: random JSON, nesting thousands deep, huge strings, wrong types, enum
symbols the schema does not list, fields it does not have, bytes that are not UTF-8. Nothing may raise;
every rejection names its line (and the field, when the line is JSON); every valid line in the same
batch is still sent. The Kafka client is replaced by one in memory: what reaches it is what would
reach the broker. The end of the file keeps the cases these properties found.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import Codec, RecordError, default_store, record_from_json
from streams import topics
from streams.produce import (
    KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    LineError,
    decode_line,
    message_key,
    parse_line,
    produce_lines,
)
from streams.settings import Settings
from tests.unit.test_properties_codec import JSON_TIMESTAMP_RANGE, PROPERTY, TEXT, records_for

CODEC = Codec()

TOPICS = sorted(topics.PRODUCIBLE)
# Wall time for the runs below: the end of the year 9999, so no generated timestamp is in the future.
END_OF_TIME_MS = JSON_TIMESTAMP_RANGE[1]


class MemoryProducer:
    """Takes the place of the Kafka client: keeps every message, acknowledges it on the next poll or flush."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | None, bytes]] = []
        self._unacknowledged: list = []

    def produce(self, topic, key=None, value=None, on_delivery=None) -> None:
        self.messages.append((topic, key, value))
        self._unacknowledged.append(on_delivery)

    def poll(self, timeout=None) -> int:
        served, self._unacknowledged = self._unacknowledged, []
        for delivered in served:
            delivered(None, None)
        return len(served)

    def flush(self, timeout=None) -> int:
        self.poll()
        return 0


def run(lines: list[bytes], topic: str | None = None, in_time_order: bool = False):
    producer = MemoryProducer()
    rejected: list[LineError] = []
    report = produce_lines(lines, Settings(), "memory:9092", topic=topic, codec=Codec(), producer=producer,
                           on_reject=rejected.append, flush_timeout=0, in_time_order=in_time_order,
                           now_ms=lambda: END_OF_TIME_MS)
    return report, rejected, producer.messages


def assert_reported_for_people(error: LineError, line_no: int) -> None:
    assert isinstance(error, LineError) and error.line == line_no
    assert error.message.strip()
    shown = str(error)
    assert shown.startswith(f"line {line_no}: ")
    shown.encode("utf-8")  # prints on any terminal: no half surrogate pairs from the input
    assert len(shown) < 1_000, shown[:200]  # a huge input is not echoed back whole


# ---------------------------------------------------------------- what the schemas say


def _resolved(schema_name: str, field_type: Any) -> Any:
    named = default_store().current(schema_name).named
    return named.get(field_type, field_type) if isinstance(field_type, str) else field_type


def fields_of(schema_name: str) -> list[dict]:
    return default_store().current(schema_name).parsed["fields"]


def enum_fields(schema_name: str) -> dict[str, list[str]]:
    """Top-level fields whose type is an enum, with its symbols."""
    out = {}
    for f in fields_of(schema_name):
        kind = _resolved(schema_name, f["type"])
        if isinstance(kind, dict) and kind["type"] == "enum":
            out[f["name"]] = kind["symbols"]
    return out


def string_fields(schema_name: str) -> list[str]:
    """Top-level fields that hold text (possibly null)."""
    return [f["name"] for f in fields_of(schema_name) if f["type"] in ("string", ["null", "string"])]


def required_fields(schema_name: str) -> list[str]:
    return [f["name"] for f in fields_of(schema_name) if "default" not in f]


def _is_valid(schema_name: str, obj: dict) -> bool:
    try:
        record_from_json(schema_name, obj)
    except RecordError as exc:
        # Only the rules beyond Avro may refuse what the schema's own strategy makes (a placed order
        # without lines, a line of no units): anything else is a valid record refused.
        assert exc.path == "lines" or exc.path.endswith("].qty"), (schema_name, str(exc))
        return False
    return True


@st.composite
def valid_objects(draw, topic: str | None = None) -> tuple[str, dict]:
    """(topic, JSON object) of a record the topic's schema accepts (rules beyond Avro included)."""
    topic = topic or draw(st.sampled_from(TOPICS))
    schema = topics.PRODUCIBLE[topic].schema
    return topic, draw(records_for(schema, json_form=True).filter(lambda obj: _is_valid(schema, obj)))


def text_of(topic: str, obj: Any, timeline: bool) -> str:
    return json.dumps({"topic": topic, "value": obj} if timeline else obj, ensure_ascii=False)


def line_of(topic: str, obj: Any, timeline: bool) -> bytes:
    """A line as a file holds it; half a surrogate pair is written as JSON escapes it (UTF-8 cannot hold it)."""
    text = text_of(topic, obj, timeline)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps({"topic": topic, "value": obj} if timeline else obj).encode()


def json_values(max_leaves: int = 10) -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=max_leaves)


# Values that fit few fields or none: containers, nesting, numbers of the wrong kind or size, text that is
# not a time, half a surrogate pair, long text.
WRONG_VALUES = [[], {}, [[["deep"]]], {"nested": {"object": [1, 2]}}, True, 1.5, -1e308, "not-a-time",
                2**70, "", "\ud800", "x" * 5000]


# ---------------------------------------------------------------- one line at a time


@settings(PROPERTY, max_examples=300)
@given(value=json_values(), timeline=st.booleans(), topic=st.sampled_from(TOPICS), line_no=st.integers(1, 10**6))
def test_any_json_value_is_a_record_or_an_error_naming_its_line(value, timeline, topic, line_no):
    text = json.dumps({"topic": topic, "value": value} if timeline else value)
    parsed = parse_line(text, line_no, None if timeline else topic)
    if isinstance(parsed, LineError):
        assert_reported_for_people(parsed, line_no)
        if timeline:
            assert parsed.path.startswith("value")  # the topic is right: what is wrong is in the value
    else:
        spec, record = parsed
        assert spec.name == topic and CODEC.encode(spec.schema, record)


@settings(PROPERTY, max_examples=150)
@given(data=st.data(), timeline=st.booleans(), line_no=st.integers(1, 10**6))
def test_a_wrong_value_in_any_field_is_named_by_its_path_or_accepted(data, timeline, line_no):
    topic, obj = data.draw(valid_objects())
    schema = topics.PRODUCIBLE[topic].schema
    field = data.draw(st.sampled_from([f["name"] for f in fields_of(schema)]), label="field")
    wrong = data.draw(st.one_of(st.sampled_from(WRONG_VALUES), json_values(5)), label="value")
    obj = dict(obj, **{field: wrong})
    parsed = parse_line(text_of(topic, obj, timeline), line_no, None if timeline else topic)
    if isinstance(parsed, LineError):
        assert_reported_for_people(parsed, line_no)
        where = ("value." if timeline else "") + field
        assert parsed.path == where or parsed.path.startswith((f"{where}.", f"{where}[")), (parsed.path, field)
    else:
        spec, record = parsed
        assert CODEC.encode(spec.schema, record)  # the value fitted the field after all (text in a text field)


@PROPERTY
@given(data=st.data(), timeline=st.booleans())
def test_an_enum_symbol_the_schema_does_not_list_is_named_with_the_symbols_it_does(data, timeline):
    topic = data.draw(st.sampled_from([t for t in TOPICS if enum_fields(topics.PRODUCIBLE[t].schema)]))
    _, obj = data.draw(valid_objects(topic))
    field, symbols = data.draw(st.sampled_from(sorted(enum_fields(topics.PRODUCIBLE[topic].schema).items())))
    symbol = data.draw(st.one_of(st.text(max_size=30), st.sampled_from([s.upper() for s in symbols] + ["plac ed"]))
                       .filter(lambda s: s not in symbols), label="symbol")
    parsed = parse_line(text_of(topic, dict(obj, **{field: symbol}), timeline), 7, None if timeline else topic)
    assert_reported_for_people(parsed, 7)
    assert parsed.path == ("value." if timeline else "") + field
    assert "unknown symbol" in parsed.message and ", ".join(symbols) in parsed.message


@PROPERTY
@given(data=st.data(), timeline=st.booleans())
def test_a_missing_or_unknown_field_is_named(data, timeline):
    topic, obj = data.draw(valid_objects())
    schema = topics.PRODUCIBLE[topic].schema
    prefix = "value." if timeline else ""
    missing = data.draw(st.sampled_from(required_fields(schema)), label="missing")
    parsed = parse_line(text_of(topic, {k: v for k, v in obj.items() if k != missing}, timeline), 3,
                        None if timeline else topic)
    assert_reported_for_people(parsed, 3)
    assert parsed.path == prefix + missing and "required field missing" in parsed.message
    known = {f["name"] for f in fields_of(schema)}
    unknown = data.draw(st.one_of(st.text(string.ascii_letters + "_", min_size=1, max_size=20), TEXT)
                        .filter(lambda name: name not in known), label="unknown")
    parsed = parse_line(text_of(topic, dict(obj, **{unknown: 1}), timeline), 3, None if timeline else topic)
    assert_reported_for_people(parsed, 3)
    assert parsed.path.startswith(prefix) and "unknown field" in parsed.message
    if unknown.isprintable() and 0 < len(unknown) <= 60:
        assert parsed.path == prefix + unknown


@PROPERTY
@given(depth=st.one_of(st.integers(1, 50), st.integers(500, 200_000)), brackets=st.sampled_from(["[]", "{}"]),
       timeline=st.booleans(), topic=st.sampled_from(TOPICS))
def test_nesting_of_any_depth_is_an_error_naming_its_line(depth, brackets, timeline, topic):
    inner = "[" * depth + "1" + "]" * depth if brackets == "[]" else '{"k":' * depth + "1" + "}" * depth
    text = f'{{"topic": "{topic}", "value": {inner}}}' if timeline else inner
    parsed = parse_line(text, 9, None if timeline else topic)
    assert_reported_for_people(parsed, 9)
    assert parsed.path in ("", "value") or parsed.path.startswith(("value.", "k"))


@PROPERTY
@given(data=st.data(), timeline=st.booleans())
def test_huge_text_is_sent_when_the_message_fits_and_refused_by_its_field_when_not(data, timeline):
    topic = data.draw(st.sampled_from([t for t in TOPICS if string_fields(topics.PRODUCIBLE[t].schema)]))
    spec = topics.PRODUCIBLE[topic]
    _, obj = data.draw(valid_objects(topic))
    field = data.draw(st.sampled_from(string_fields(spec.schema)), label="field")
    # Built, not drawn character by character: up to 3.2 MB of text, in characters of 1 to 4 bytes.
    char = data.draw(st.sampled_from(["x", "é", "क", "ধ", "\U0001F4E6"]), label="character")
    obj = dict(obj, **{field: char * data.draw(st.integers(200_000, 800_000), label="length")})
    line = line_of(topic, obj, timeline)
    report, rejected, sent = run([line], topic=None if timeline else topic)
    record = record_from_json(spec.schema, obj)
    size = len(Codec().encode(spec.schema, record)) + len(message_key(spec, record) or b"")
    if size <= KAFKA_DEFAULT_MAX_MESSAGE_BYTES:
        assert rejected == [] and len(sent) == 1 and report.sent == 1
    else:
        assert sent == [] and report.sent == 0
        (error,) = rejected
        assert_reported_for_people(error, 1)
        assert error.path == ("value." if timeline else "") + field
        assert f"{size:,} bytes" in error.message and f"{KAFKA_DEFAULT_MAX_MESSAGE_BYTES:,}" in error.message


@settings(PROPERTY, max_examples=300)
@given(raw=st.binary(max_size=40), line_no=st.integers(1, 10))
def test_bytes_that_are_not_utf8_are_reported_with_the_byte_at_fault(raw, line_no):
    text = decode_line(raw, line_no)
    if isinstance(text, str):
        assert text.encode("utf-8") in (raw, raw.removeprefix(b"\xef\xbb\xbf"))
        return
    assert_reported_for_people(text, line_no)
    column = int(text.message.split("at byte ", 1)[1].split(" ", 1)[0])
    assert 1 <= column <= len(raw) and f"0x{raw[column - 1]:02x}" in text.message
    # Every byte before the one named is good UTF-8.
    raw[:column - 1].decode("utf-8")


# ---------------------------------------------------------------- whole batches


@st.composite
def bad_lines(draw, topic: str | None) -> bytes:
    """A line that must be rejected, made one of the ways input goes wrong."""
    timeline = topic is None
    line_topic, obj = draw(valid_objects(topic))
    schema = topics.PRODUCIBLE[line_topic].schema
    how = draw(st.sampled_from(["bytes", "not-json", "deep", "enum", "type", "unknown-field", "surrogate",
                                "not-object"]))
    if how == "bytes":
        good = line_of(line_topic, obj, timeline)
        at = draw(st.integers(0, len(good)))
        return good[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe0\x80", b"\xed\xa0\x80"])) + good[at:]
    if how == "not-json":
        return draw(st.sampled_from([b"{", b"{'single': 'quotes'}", b"[1,]", b"nul", b"{\"a\" 1}"]))
    if how == "deep":
        return b"[" * 100_000 + b"]" * 100_000
    if how == "enum" and enum_fields(schema):
        field, symbols = sorted(enum_fields(schema).items())[0]
        return line_of(line_topic, dict(obj, **{field: "not-" + symbols[0]}), timeline)
    if how == "type":
        return line_of(line_topic, dict(obj, event_id=draw(st.sampled_from([1, [], {}, True]))), timeline)
    if how == "unknown-field":
        return line_of(line_topic, dict(obj, surprise_field="x"), timeline)
    if how == "surrogate":
        return line_of(line_topic, dict(obj, event_id="ok\udc00"), timeline)
    return json.dumps(draw(st.one_of(st.lists(json_values(3), max_size=3), st.integers(), st.text()))).encode()


@settings(PROPERTY, max_examples=60)
@given(data=st.data(), timeline=st.booleans(), in_time_order=st.booleans())
def test_in_a_mixed_batch_every_bad_line_is_reported_once_and_every_good_line_is_sent(data, timeline, in_time_order):
    topic = None if timeline else data.draw(st.sampled_from(TOPICS), label="topic")
    in_time_order = in_time_order and timeline  # replay takes timelines only
    # At least one good and one bad line, in any order, among others and blank lines.
    others = data.draw(st.lists(st.sampled_from(["good", "bad", "blank"]), max_size=10), label="others")
    kinds = data.draw(st.permutations(["good", "bad", *others]), label="kinds")
    lines, good = [], {}
    for line_no, kind in enumerate(kinds, start=1):
        if kind == "good":
            line_topic, obj = data.draw(valid_objects(topic))
            lines.append(line_of(line_topic, obj, timeline))
            good[line_no] = (topics.PRODUCIBLE[line_topic], record_from_json(topics.PRODUCIBLE[line_topic].schema, obj))
        elif kind == "bad":
            lines.append(data.draw(bad_lines(topic)))
        else:
            lines.append(data.draw(st.sampled_from([b"", b"   ", b"\t"])))
    report, rejected, sent = run(lines, topic=topic, in_time_order=in_time_order)

    bad = [n for n, kind in enumerate(kinds, start=1) if kind == "bad"]
    assert sorted(e.line for e in rejected) == bad  # each once
    for error in rejected:
        assert_reported_for_people(error, error.line)
    assert report.errors == rejected and report.sent == len(good) == len(sent)
    expected = sorted(good, key=lambda n: good[n][1]["ts"]) if in_time_order else sorted(good)
    codec = Codec()
    for line_no, (topic_name, key, value) in zip(expected, sent):
        spec, record = good[line_no]
        assert topic_name == spec.name and key == message_key(spec, record)
        assert codec.decode(value, expected=spec.schema)[1] == record


# ---------------------------------------------------------------- cases the properties found


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, "[" * 2_000 + "]" * 2_000])
def test_json_nested_too_deeply_for_the_reader_is_an_error_not_a_crash(text):
    # RecursionError escaped parse_line and ended `forewarn produce` at this line, sending none after it.
    error = parse_line(text, 4, "orders")
    assert isinstance(error, LineError) and error.line == 4
    assert "nested too deeply" in error.message or "expected an object" in error.message


def test_a_number_longer_than_python_reads_is_an_error_not_a_crash():
    # ValueError (int_max_str_digits) escaped parse_line the same way.
    error = parse_line('{"available": ' + "9" * 5_000 + "}", 2, "inventory")
    assert isinstance(error, LineError) and error.line == 2
    assert error.message == "a number has more than 4300 digits; no field takes one that long"


def test_a_time_past_the_year_9999_in_utc_is_refused_by_its_field_not_a_crash():
    # Read as a long past year 9999, it crashed the future-time check (OverflowError) and the run with it.
    line = json.dumps({"topic": "inventory", "value": {"event_id": "s", "ts": "9999-12-31T23:59:59-23:59",
                                                       "event_type": "stock_level", "sku": "A", "available": 1}})
    report, rejected, sent = run([line.encode(), b"{"], in_time_order=False)
    assert [(e.line, e.path) for e in rejected] == [(1, "value.ts"), (2, "")]
    assert "outside the years 0001 to 9999" in rejected[0].message and sent == []


def test_half_a_surrogate_pair_is_refused_by_its_field_before_encoding():
    good = {"event_id": "s", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A", "available": 1}
    lines = [json.dumps(dict(good, sku="A\ud83d")).encode(), json.dumps(good).encode()]
    report, rejected, sent = run(lines, topic="inventory")
    assert [(e.line, e.path) for e in rejected] == [(1, "sku")]
    assert "surrogate" in rejected[0].message and [key for _, key, _ in sent] == [b"A"]


def test_a_huge_unknown_topic_or_key_is_named_briefly():
    huge = "t" * 1_000_000
    error = parse_line(json.dumps({"topic": huge, "value": {}}), 1, None)
    assert error.path == "topic" and len(str(error)) < 300
    error = parse_line(json.dumps({"topic": "orders", "value": {}, huge: 1}), 1, None)
    assert error.path == "t" * 57 + "..."


def test_a_record_over_the_kafka_message_limit_is_refused_before_the_client_and_the_rest_are_sent():
    base = {"event_id": "t", "ts": "2026-03-02T09:15:00Z", "event_type": "ticket_opened", "ticket_id": "T1",
            "customer_id": "C1", "channel": "email"}
    lines = [json.dumps({"topic": "support", "value": dict(base, ticket_id=f"T{n}", text=text)}).encode()
             for n, text in ((1, "short"), (2, "word " * 300_000), (3, "x" * 999_000))]
    report, rejected, sent = run(lines, in_time_order=True)
    [error] = rejected
    assert (error.line, error.path) == (2, "value.text")
    assert str(error) == ("line 2: value.text: too large: the message would be 1,500,037 bytes, over the 1,000,000 "
                          "bytes a Kafka message may hold by default; this field holds about 1,500,000 of them")
    assert [key for _, key, _ in sent] == [b"T1", b"T3"] and report.sent == 2
    assert report.first_ts == report.last_ts == 1_772_442_900_000
