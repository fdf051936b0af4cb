"""Properties of schemas.codec over every schema: valid records come back as they went in, bad bytes never crash.

Records are generated from the parsed ``.avsc`` files themselves (``records_for``), so a new schema or
field is covered without touching this file. Bytes that are not a message (random, cut short, with a
fingerprint or registry id nobody knows) must raise the codec's own DecodeError, with a documented
reason and a message, and nothing else. The end of the file keeps the cases these properties found.
"""

from __future__ import annotations

import json
import struct
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schemas.codec import (
    Codec,
    DecodeError,
    RecordError,
    default_store,
    format_timestamp_ms,
    names,
    parse_timestamp_ms,
    record_from_json,
    record_to_json,
    semantic_problems,
)

# Same examples on every run and machine, nothing kept between runs, no per-example time limit
# (a loaded two-core machine must not turn a slow example into a failure).
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=25,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
# The instants a timestamp written as JSON can name: years 0001 to 9999 in UTC.
JSON_TIMESTAMP_RANGE = (parse_timestamp_ms("0001-01-01T00:00:00Z"), parse_timestamp_ms("9999-12-31T23:59:59.999Z"))

# Text as customers and reps write it, besides whatever hypothesis makes up.
INDIC_TEXT = ["नमस्ते", "मेरा ऑर्डर कहाँ है?", "क्षमा करें, डिलीवरी में देर हुई", "আমার অর্ডার কোথায়?", "ধন্যবাদ",
              "পণ্যটি ভাঙা এসেছে"]
TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(INDIC_TEXT),
    st.text(st.characters(min_codepoint=0x0900, max_codepoint=0x09FF), max_size=12),  # Devanagari, Bengali
)


def _numbers(low: int, high: int) -> st.SearchStrategy[int]:
    # Small positive numbers most often (quantities, prices), the whole range too, and its edges.
    return st.one_of(st.integers(1, 100), st.integers(low, high), st.sampled_from([low, high, 0, -1]))


def _json_timestamps() -> st.SearchStrategy[str]:
    """ISO-8601 text with a timezone, as a person writes it: Z or an offset, milliseconds or not."""
    low, high = JSON_TIMESTAMP_RANGE
    utc = st.integers(low, high).map(format_timestamp_ms)
    offset = st.builds(
        lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
        st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
        st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    )
    return st.one_of(utc, offset)


class _RecordStrategies:
    """Walks one parsed schema and builds the strategy of its values.

    ``json_form``: values as ``record_from_json`` takes them (timestamps as ISO text, bytes as
    latin-1 text, fields with a default sometimes left out); otherwise as the codec encodes them.
    ``timestamps``: the strategy of timestamp-millis longs in the codec form.
    """

    def __init__(self, named: Mapping[str, Any], json_form: bool, timestamps: st.SearchStrategy[int]) -> None:
        self.named = named
        self.json_form = json_form
        self.timestamps = timestamps
        self.by_name: dict[str, st.SearchStrategy] = {}

    def of(self, schema: Any) -> st.SearchStrategy:
        if isinstance(schema, list):
            return st.one_of([self.of(branch) for branch in schema])
        if isinstance(schema, str):
            if schema in self.by_name:
                return self.by_name[schema]
            if schema in self.named:
                # A named type (possibly one still being built, if a schema were recursive).
                return st.deferred(lambda: self.by_name.get(schema) or self.of(self.named[schema]))
            return self._primitive(schema)
        kind = schema["type"]
        if schema.get("logicalType") == "timestamp-millis" and kind == "long":
            return _json_timestamps() if self.json_form else self.timestamps
        if kind == "enum":
            return self._named(schema, st.sampled_from(schema["symbols"]))
        if kind == "fixed":
            size = schema["size"]
            return self._named(schema, self._bytes(st.binary(min_size=size, max_size=size)))
        if kind == "array":
            return st.lists(self.of(schema["items"]), max_size=4)
        if kind == "map":
            return st.dictionaries(TEXT, self.of(schema["values"]), max_size=4)
        if kind in ("record", "error"):
            return self._record(schema)
        return self._primitive(kind)

    def _primitive(self, kind: str) -> st.SearchStrategy:
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": _numbers(*INT_RANGE),
            "long": _numbers(*LONG_RANGE),
            "float": st.floats(width=32, allow_nan=False, allow_infinity=False),
            "double": st.floats(allow_nan=False, allow_infinity=False),
            "string": TEXT,
            "bytes": self._bytes(st.binary(max_size=16)),
        }[kind]

    def _bytes(self, raw: st.SearchStrategy[bytes]) -> st.SearchStrategy:
        return raw.map(lambda data: data.decode("latin-1")) if self.json_form else raw

    def _named(self, schema: dict, strategy: st.SearchStrategy) -> st.SearchStrategy:
        self.by_name[schema["name"]] = strategy
        return strategy

    def _record(self, schema: dict) -> st.SearchStrategy[dict]:
        fields = schema["fields"]
        placeholder = st.deferred(lambda: built)
        self.by_name[schema["name"]] = placeholder
        required = {f["name"]: self.of(f["type"]) for f in fields if not (self.json_form and "default" in f)}
        optional = {f["name"]: self.of(f["type"]) for f in fields if self.json_form and "default" in f}
        built = st.fixed_dictionaries(required, optional=optional)
        self.by_name[schema["name"]] = built
        return built


def records_for(name: str, *, json_form: bool = False,
                timestamps: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[dict]:
    """Valid records of the current schema `name`, derived from its .avsc (see _RecordStrategies)."""
    entry = default_store().current(name)
    walker = _RecordStrategies(entry.named, json_form, st.integers(*LONG_RANGE) if timestamps is None else timestamps)
    return walker.of(entry.parsed)


class FakeRegistry:
    """A schema registry in memory: ids from 1 in order of registration; others are unknown (404)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.texts: dict[int, str] = {}

    def register_schema(self, subject: str, schema: Schema) -> int:
        schema_id = self.ids.setdefault(schema.schema_str, len(self.ids) + 1)
        self.texts[schema_id] = schema.schema_str
        return schema_id

    def get_schema(self, schema_id: int) -> Schema:
        if schema_id not in self.texts:
            raise SchemaRegistryError(404, 40403, "Schema not found")
        return Schema(self.texts[schema_id], "AVRO")


REASONS = {"empty", "unknown-framing", "header", "unknown-fingerprint", "no-registry", "unknown-schema-id",
           "not-avro", "unexpected-schema", "incompatible-schema", "body"}
SCHEMAS = names()


def refusal(codec: Codec, data: bytes, expected: str | None = None) -> DecodeError | None:
    """The DecodeError decoding `data` raises, or None when it decodes; any other exception fails the test."""
    try:
        name, record = codec.decode(data, expected=expected)
    except DecodeError as exc:
        assert exc.reason in REASONS, exc.reason
        assert exc.message.strip() and str(exc) == exc.message
        return exc
    assert name in SCHEMAS and isinstance(record, dict)
    return None


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


@pytest.fixture(scope="module")
def registry_codec() -> Codec:
    return Codec(registry_client=FakeRegistry())


# ---------------------------------------------------------------- valid records come back unchanged


def test_the_strategies_cover_every_schema_file():
    from schemas.codec import SCHEMA_DIR

    assert sorted(p.name.removesuffix(".avsc") for p in SCHEMA_DIR.glob("*.avsc")) == SCHEMAS


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY
@given(data=st.data())
def test_every_valid_record_round_trips_in_single_object_framing(codec, name, data):
    record = data.draw(records_for(name))
    encoded = codec.encode(name, record)
    assert codec.decode(encoded) == (name, record)
    assert codec.decode(encoded, expected=name) == (name, record)


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY
@given(data=st.data())
def test_every_valid_record_round_trips_in_the_registry_framing(registry_codec, name, data):
    record = data.draw(records_for(name))
    encoded = registry_codec.encode(name, record, topic="prop-topic")
    assert encoded[:1] == b"\x00"
    assert registry_codec.decode(encoded, expected=name) == (name, record)
    # A codec that has never written this schema fetches it from the registry by id.
    reader = Codec(registry_client=registry_codec._registry_client)
    assert reader.decode(encoded) == (name, record)


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY
@given(data=st.data())
def test_every_record_written_as_json_reads_back_as_the_same_record(name, data):
    record = data.draw(records_for(name, timestamps=st.integers(*JSON_TIMESTAMP_RANGE)))
    assume(not semantic_problems(name, record))  # e.g. a placed order without lines: refused, rightly
    text = json.dumps(record_to_json(name, record), ensure_ascii=False)
    assert record_from_json(name, json.loads(text)) == record


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY
@given(data=st.data())
def test_every_record_the_codec_decodes_can_be_shown_as_json(codec, name, data):
    # Any long is a valid timestamp-millis on the wire (a writer that put microseconds there, say):
    # `forewarn alerts`, the web page and the worker's refusals all show such records as text.
    record = data.draw(records_for(name))
    _, decoded = codec.decode(codec.encode(name, record))
    shown = record_to_json(name, decoded)
    json.dumps(shown, ensure_ascii=False).encode("utf-8")
    for field in default_store().current(name).parsed["fields"]:
        if isinstance(field["type"], dict) and field["type"].get("logicalType") == "timestamp-millis":
            assert shown[field["name"]].endswith("Z")


# ---------------------------------------------------------------- anything else is refused with a reason


def _framed_garbage() -> st.SearchStrategy[bytes]:
    """Bytes that start like a message often enough to get past the framing checks."""
    fingerprints = [default_store().current(n).fingerprint for n in SCHEMAS]
    body = st.binary(max_size=64)
    return st.one_of(
        st.binary(max_size=64),
        st.builds(lambda fp, b: b"\xc3\x01" + fp + b, st.sampled_from(fingerprints), body),
        st.builds(lambda fp, b: b"\xc3\x01" + fp + b, st.binary(min_size=8, max_size=8), body),
        st.builds(lambda schema_id, b: b"\x00" + struct.pack(">I", schema_id) + b, st.integers(0, 2**32 - 1), body),
    )


@settings(PROPERTY, max_examples=300)
@given(data=_framed_garbage(), expected=st.one_of(st.none(), st.sampled_from(SCHEMAS)))
def test_random_bytes_are_refused_with_a_reason_and_never_crash(codec, registry_codec, data, expected):
    refusal(codec, data, expected)
    refusal(registry_codec, data, expected)


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY
@given(data=st.data())
def test_a_frame_cut_short_is_refused(codec, registry_codec, name, data):
    for writer in (codec, registry_codec):
        encoded = writer.encode(name, data.draw(records_for(name)), topic="prop-topic")
        cut = data.draw(st.integers(1, len(encoded) - 1), label="kept bytes")
        error = refusal(writer, encoded[:cut])
        assert error is not None and error.reason in ("header", "body")


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY
@given(data=st.data())
def test_a_frame_with_bytes_after_the_record_is_refused(codec, name, data):
    encoded = codec.encode(name, data.draw(records_for(name)))
    error = refusal(codec, encoded + data.draw(st.binary(min_size=1, max_size=8)))
    assert error is not None and error.reason == "body"


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY
@given(data=st.data())
def test_a_changed_fingerprint_is_refused_as_unknown(codec, name, data):
    encoded = codec.encode(name, data.draw(records_for(name)))
    mask = data.draw(st.binary(min_size=8, max_size=8).filter(any), label="xor mask")
    fingerprint = bytes(a ^ b for a, b in zip(encoded[2:10], mask))
    assume(codec.store.by_fingerprint(fingerprint) is None)
    error = refusal(codec, encoded[:2] + fingerprint + encoded[10:])
    assert error is not None and error.reason == "unknown-fingerprint"
    assert fingerprint.hex() in error.message


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY
@given(data=st.data())
def test_a_registry_id_nobody_knows_is_refused(codec, name, data):
    registry = FakeRegistry()
    writer = Codec(registry_client=registry)
    encoded = writer.encode(name, data.draw(records_for(name)), topic="prop-topic")
    unknown_id = data.draw(st.integers(0, 2**32 - 1).filter(lambda i: i not in registry.texts), label="id")
    forged = b"\x00" + struct.pack(">I", unknown_id) + encoded[5:]
    error = refusal(Codec(registry_client=registry), forged)
    assert error is not None and error.reason == "unknown-schema-id" and str(unknown_id) in error.message
    # Without a registry the same frame cannot be read at all, and says why.
    error = refusal(codec, forged)
    assert error is not None and error.reason == "no-registry"


# ---------------------------------------------------------------- cases the properties found


@pytest.mark.parametrize("ms, text", [
    (1_772_442_900_000, "2026-03-02T09:15:00Z"),
    (1_772_442_900_000_000, "+58136-06-24T10:00:00Z"),  # microseconds in a millisecond field
    (253_402_300_800_000, "+10000-01-01T00:00:00Z"),
    (-62_135_596_800_001, "0000-12-31T23:59:59.999Z"),
    (2**63 - 1, "+292278994-08-17T07:12:55.807Z"),
    (-(2**63), "-292275055-05-16T16:47:04.192Z"),
])
def test_every_long_is_shown_as_a_timestamp_even_outside_the_years_1_to_9999(ms, text):
    # This raised OverflowError: `forewarn produce` and the worker crashed on a record stamped in
    # microseconds while saying it was in the future, and `forewarn alerts` on showing one.
    assert format_timestamp_ms(ms) == text


def test_a_timestamp_in_the_year_10000_in_utc_is_refused_where_it_is_read():
    with pytest.raises(RecordError) as err:
        record_from_json("forewarn.StockLevel", {"event_id": "s", "ts": "9999-12-31T23:59:59-23:59",
                                                 "event_type": "stock_level", "sku": "A", "available": 1})
    assert err.value.path == "ts" and "outside the years 0001 to 9999" in err.value.problem
    assert parse_timestamp_ms("9999-12-31T23:59:59.999Z") == JSON_TIMESTAMP_RANGE[1]


@pytest.mark.parametrize("value, path", [
    ({"sku": "A\ud83d"}, "sku"),
    ({"warehouse": "\udc00 north"}, "warehouse"),
])
def test_half_a_surrogate_pair_is_refused_with_its_field_not_at_encoding(value, path):
    # JSON can spell "\ud83d" alone; it passed validation and failed at encoding, with no field named.
    obj = dict({"event_id": "s", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A",
                "available": 1}, **value)
    with pytest.raises(RecordError) as err:
        record_from_json("forewarn.StockLevel", obj)
    assert err.value.path == path and "surrogate" in err.value.problem
    str(err.value).encode("utf-8")  # the message itself prints anywhere


def test_half_a_surrogate_pair_in_a_map_key_is_refused_with_the_key():
    alert = record_to_json("forewarn.Alert", {
        "alert_id": "a", "rule": "r", "status": "open", "severity": "info", "audience": "cs", "dedup_key": "k",
        "title": "t", "summary": "s", "event_ts": 0, "detected_at": 0})
    alert["details"] = {"ok": "1", "bad\udfff": "2"}
    with pytest.raises(RecordError) as err:
        record_from_json("forewarn.Alert", alert)
    assert err.value.path == 'details["bad\\udfff"]' and "key character 4" in err.value.problem


def test_an_unknown_field_with_a_huge_or_unprintable_name_is_named_briefly():
    obj = {"event_id": "s", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A", "available": 1}
    with pytest.raises(RecordError) as err:
        record_from_json("forewarn.StockLevel", dict(obj, **{"x" * 100_000: 1}))
    assert err.value.path == "x" * 57 + "..." and len(str(err.value)) < 300
    with pytest.raises(RecordError) as err:
        record_from_json("forewarn.StockLevel", dict(obj, **{"a\nb\ud800": 1}))
    assert err.value.path == '"a\\nb\\ud800"'
