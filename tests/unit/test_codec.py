"""Encoding, framing, schema evolution and decode failures of schemas.codec."""

from __future__ import annotations

import copy
import io
import json
import struct

import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.codec import (
    SCHEMA_DIR,
    Codec,
    DecodeError,
    EncodeError,
    SchemaLoadError,
    SchemaStore,
    fingerprint_of,
    names,
    schema_for,
)

T0 = 1_772_442_900_000  # 2026-03-02T09:15:00Z

SAMPLES: dict[str, dict] = {
    "forewarn.OrderEvent": {
        "event_id": "ev-1", "ts": T0, "event_type": "placed", "order_id": "o-1", "customer_id": "c-1",
        "lines": [{"sku": "SKU-1", "qty": 2, "unit_price_cents": 1999},
                  {"sku": "SKU-2", "qty": 1, "unit_price_cents": 5}],
        "promised_ship_by": T0 + 86_400_000, "channel": "web",
    },
    "forewarn.StockLevel": {
        "event_id": "ev-2", "ts": T0 + 1, "event_type": "stock_level", "sku": "SKU-1", "available": -3,
        "warehouse": None,
    },
    "forewarn.CatalogItem": {
        "event_id": "ev-3", "ts": T0, "sku": "SKU-1", "name": "Kettle ü", "category": "kitchen",
        "price_cents": 4999, "active": True,
    },
    "forewarn.Customer": {
        "event_id": "ev-4", "ts": T0, "customer_id": "c-1", "name": "Ada", "tier": "platinum",
        "lifetime_value_cents": 2**40, "email": "ada@example.org", "preferred_channel": None, "language": "de",
        "phone": "+49 30 1234567",
    },
    "forewarn.WebEvent": {
        "event_id": "ev-5", "ts": T0, "event_type": "order_lookup", "session_id": "s-1", "page": "/orders/o-1",
        "customer_id": "c-1", "sku": None, "qty": None, "cart_item_count": 0, "status_code": 200,
        "order_id": "o-1", "found": False,
    },
    "forewarn.SupportEvent": {
        "event_id": "ev-6", "ts": T0, "event_type": "ticket_opened", "ticket_id": "t-1", "customer_id": "c-1",
        "channel": "chat", "category": "delivery", "text": "Where is my order?", "order_id": "o-1",
        "agent_id": None, "language": "en",
    },
    "forewarn.ReturnEvent": {
        "event_id": "ev-7", "ts": T0, "return_id": "r-1", "order_id": "o-1", "customer_id": "c-1",
        "sku": "SKU-1", "qty": 1, "reason": "damaged",
    },
    "forewarn.FeedbackEvent": {
        "event_id": "ev-8", "ts": T0, "event_type": "nps", "customer_id": None, "score": -1, "text": None,
        "order_id": None, "ticket_id": "t-1",
    },
    "forewarn.Alert": {
        "alert_id": "a-1", "rule": "order_short", "status": "open", "severity": "critical", "audience": "ops",
        "dedup_key": "order_short:o-1", "title": "Order o-1 cannot ship", "summary": "SKU-1 is short by 2",
        "customer_id": "c-1", "order_id": "o-1", "sku": "SKU-1", "ticket_id": None, "session_id": None,
        "page": None, "category": None, "details": {"short": "2", "available": "0"},
        "evidence": ["ev-1", "ev-2"], "event_ts": T0, "detected_at": T0 + 5,
    },
    "forewarn.OutreachTask": {
        "task_id": "t-1", "alert_id": "a-1", "rule": "out_of_stock_open_order", "customer_id": "c-1",
        "priority": "P2", "queue": "customer-success", "action": "Call the customer and offer an alternative.",
        "due_by": T0 + 3_600_000, "status": "open", "assignee": None, "context": {"order_id": "o-1"},
        "created_at": T0 + 5, "updated_at": T0 + 5, "case_number": 2,
        "problems": [{"alert_id": "a-1", "rule": "out_of_stock_open_order", "status": "open", "severity": "warning",
                      "title": "Order o-1 has short lines", "summary": "1 of 2 lines short",
                      "action": "Call the customer and offer an alternative.", "queue": "fulfillment",
                      "priority": "P2", "due_by": T0 + 3_600_000, "order_id": "o-1", "ticket_id": None, "sku": None,
                      "resolution": None, "added_at": T0 + 5, "updated_at": T0 + 5,
                      "details": {"lines_json": "[]"}}],
    },
    "forewarn.TaskUpdate": {
        "event_id": "tu-1", "ts": T0 + 60_000, "task_id": "t-1", "action": "claim", "assignee": "asha",
    },
    "forewarn.internal.OrderLine": {
        "event_id": "ev-1", "ts": T0, "action": "open", "order_id": "o-1", "customer_id": "c-1",
        "sku": "SKU-1", "qty": 2, "placed_ts": T0, "reason": "placed",
    },
    "forewarn.internal.LineShortage": {
        "event_id": "ev-2", "ts": T0 + 1, "order_id": "o-1", "sku": "SKU-1", "ordered": 2, "short": 2,
        "available": 0, "reason": "stock_level", "evidence": ["ev-2"],
    },
    "forewarn.internal.Watermark": {"source": "orders:3", "watermark": T0, "sent_at": T0 + 7},
    "forewarn.TaskUpdateRejected": {
        "event_id": "tu-2", "ts": T0 + 60_000, "task_id": "t-9", "action": "claim", "assignee": "asha",
        "reason": "unknown_task", "message": "no task t-9", "task_status": None, "rejected_at": T0 + 61_000,
    },
    "forewarn.internal.Signal": {
        "event_id": "w-1", "ts": T0, "kind": "cart_lost", "key": "/shop/filters", "data": {"session_id": "s-1"},
    },
}


def raw_schema(name: str) -> dict:
    """The schema exactly as written in its file."""
    return json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())


def with_extra_field(name: str, extra: dict) -> dict:
    newer = raw_schema(name)
    newer["fields"].append(extra)
    return newer


GIFT_WRAP = {"name": "gift_wrap", "type": ["null", "boolean"], "default": None}
REFERRER = {"name": "referrer", "type": ["null", "string"], "default": None}


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


def test_every_schema_file_is_loaded_and_has_a_sample():
    assert names() == sorted(SAMPLES)
    assert len(list(SCHEMA_DIR.glob("*.avsc"))) == len(SAMPLES)
    for name in names():
        assert schema_for(name)["doc"], name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(codec, name):
    data = codec.encode(name, SAMPLES[name])
    assert codec.decode(data) == (name, SAMPLES[name])
    assert codec.decode(data, expected=name)[1] == SAMPLES[name]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_single_object_framing_matches_the_avro_specification(codec, name):
    data = codec.encode(name, SAMPLES[name])
    canonical = to_parsing_canonical_form(fastavro.parse_schema(raw_schema(name)))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    # The body is plain Avro binary of the schema as written in the file.
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(raw_schema(name)), SAMPLES[name])
    assert data[10:] == body.getvalue()


def test_fingerprint_matches_the_avro_test_vector():
    # Avro's schema test vectors give CRC-64-AVRO("int") = 8247732601305521295;
    # single-object framing carries it little-endian.
    assert fingerprint_of("int") == struct.pack("<Q", 8247732601305521295)


def test_timestamps_decode_as_epoch_millisecond_ints(codec):
    _, record = codec.decode(codec.encode("forewarn.OrderEvent", SAMPLES["forewarn.OrderEvent"]))
    assert type(record["ts"]) is int and record["ts"] == T0
    assert type(record["promised_ship_by"]) is int


def test_field_defaults_fill_absent_optional_fields_on_encode(codec):
    sparse = {k: v for k, v in SAMPLES["forewarn.OrderEvent"].items() if k not in ("channel", "promised_ship_by")}
    sparse["event_type"] = "cancelled"
    del sparse["lines"]
    _, record = codec.decode(codec.encode("forewarn.OrderEvent", sparse))
    assert record["channel"] is None and record["promised_ship_by"] is None and record["lines"] == []


def test_encode_rejects_a_record_that_does_not_fit(codec):
    broken = dict(SAMPLES["forewarn.ReturnEvent"])
    del broken["sku"]
    with pytest.raises(EncodeError, match="forewarn.ReturnEvent.*sku"):
        codec.encode("forewarn.ReturnEvent", broken)
    with pytest.raises(EncodeError, match="shiped"):
        codec.encode("forewarn.OrderEvent", {**SAMPLES["forewarn.OrderEvent"], "event_type": "shiped"})


def test_encode_of_an_unknown_schema_names_the_known_ones(codec):
    with pytest.raises(KeyError, match="forewarn.OrderEvent"):
        codec.encode("forewarn.Nope", {})


def test_single_object_encoding_ignores_the_topic(codec):
    record = SAMPLES["forewarn.StockLevel"]
    assert codec.encode("forewarn.StockLevel", record, topic="a") == codec.encode("forewarn.StockLevel", record)


# ---------------------------------------------------------------- evolution


@pytest.mark.parametrize(
    ("name", "extra", "value"),
    [("forewarn.OrderEvent", GIFT_WRAP, True), ("forewarn.WebEvent", REFERRER, "https://news.example/")],
)
def test_older_reader_reads_a_newer_writer(name, extra, value):
    newer = with_extra_field(name, extra)
    writer_store = SchemaStore()
    writer_store.add(newer, current=True)
    data = Codec(writer_store).encode(name, {**SAMPLES[name], extra["name"]: value})

    reader_store = SchemaStore()
    with pytest.raises(DecodeError) as unknown:
        Codec(reader_store).decode(data)
    assert unknown.value.reason == "unknown-fingerprint"

    reader_store.add(newer)  # known, but the file version stays current
    assert Codec(reader_store).decode(data) == (name, SAMPLES[name])


@pytest.mark.parametrize(
    ("name", "extra"), [("forewarn.OrderEvent", GIFT_WRAP), ("forewarn.WebEvent", REFERRER)]
)
def test_newer_reader_reads_an_older_writer(name, extra):
    data = Codec().encode(name, SAMPLES[name])  # written with the file version

    reader_store = SchemaStore()  # knows the file version ...
    newer = reader_store.add(with_extra_field(name, extra), current=True)  # ... and reads into the newer
    assert newer.fingerprint != SchemaStore().current(name).fingerprint

    decoded_name, record = Codec(reader_store).decode(data)
    assert decoded_name == name
    assert record == {**SAMPLES[name], extra["name"]: None}


def test_making_a_new_version_current_changes_what_an_existing_codec_writes():
    store = SchemaStore()
    codec = Codec(store)
    before = codec.encode("forewarn.OrderEvent", SAMPLES["forewarn.OrderEvent"])
    store.add(with_extra_field("forewarn.OrderEvent", GIFT_WRAP), current=True)
    after = codec.encode("forewarn.OrderEvent", {**SAMPLES["forewarn.OrderEvent"], "gift_wrap": True})
    assert before[2:10] != after[2:10]
    assert codec.decode(before)[1]["gift_wrap"] is None
    assert codec.decode(after)[1]["gift_wrap"] is True


def test_incompatible_writer_is_reported_as_such():
    # A writer that lacks a field the reader requires (no default) cannot be resolved.
    older = raw_schema("forewarn.ReturnEvent")
    older["fields"] = [f for f in older["fields"] if f["name"] != "reason"]
    writer_store = SchemaStore()
    writer_store.add(older, current=True)
    record = {k: v for k, v in SAMPLES["forewarn.ReturnEvent"].items() if k != "reason"}
    data = Codec(writer_store).encode("forewarn.ReturnEvent", record)

    reader_store = SchemaStore()
    reader_store.add(older)
    with pytest.raises(DecodeError) as err:
        Codec(reader_store).decode(data)
    assert err.value.reason == "incompatible-schema"


# ---------------------------------------------------------------- decode failures


def reason_of(codec: Codec, data: bytes, **kwargs) -> str:
    with pytest.raises(DecodeError) as err:
        codec.decode(data, **kwargs)
    assert str(err.value)  # a human message goes with every reason
    return err.value.reason


def test_empty_message(codec):
    assert reason_of(codec, b"") == "empty"


@pytest.mark.parametrize("data", [b"{\"event_id\": 1}", b"\x7fgarbage", b"\xc3\x02" + bytes(20)])
def test_unknown_framing(codec, data):
    assert reason_of(codec, data) == "unknown-framing"


def test_unknown_fingerprint(codec):
    data = codec.encode("forewarn.StockLevel", SAMPLES["forewarn.StockLevel"])
    forged = data[:2] + bytes(8) + data[10:]
    with pytest.raises(DecodeError) as err:
        codec.decode(forged)
    assert err.value.reason == "unknown-fingerprint"
    assert "0000000000000000" in str(err.value)


@pytest.mark.parametrize("cut", [1, 5])
def test_truncated_body(codec, cut):
    data = codec.encode("forewarn.Alert", SAMPLES["forewarn.Alert"])
    assert reason_of(codec, data[:-cut]) == "body"


def test_trailing_bytes_after_the_body(codec):
    data = codec.encode("forewarn.Alert", SAMPLES["forewarn.Alert"])
    assert reason_of(codec, data + b"\x00") == "body"


def test_body_of_another_schema_under_a_known_fingerprint(codec):
    order = codec.encode("forewarn.OrderEvent", SAMPLES["forewarn.OrderEvent"])
    stock = codec.encode("forewarn.StockLevel", SAMPLES["forewarn.StockLevel"])
    assert reason_of(codec, stock[:10] + order[10:]) == "body"


@pytest.mark.parametrize("data", [b"\xc3", b"\xc3\x01\x66\x34", b"\x00\x00\x01"])
def test_truncated_header(codec, data):
    assert reason_of(codec, data) == "header"


def test_confluent_frame_without_a_registry(codec):
    body = codec.encode("forewarn.StockLevel", SAMPLES["forewarn.StockLevel"])[10:]
    data = b"\x00" + struct.pack(">I", 42) + body
    with pytest.raises(DecodeError) as err:
        codec.decode(data)
    assert err.value.reason == "no-registry"
    assert "schema id 42" in str(err.value) and "no schema registry is configured" in str(err.value)


def test_unexpected_schema(codec):
    data = codec.encode("forewarn.StockLevel", SAMPLES["forewarn.StockLevel"])
    assert reason_of(codec, data, expected="forewarn.OrderEvent") == "unexpected-schema"


def test_decode_accepts_bytearray_and_memoryview(codec):
    data = codec.encode("forewarn.CatalogItem", SAMPLES["forewarn.CatalogItem"])
    assert codec.decode(bytearray(data))[1] == SAMPLES["forewarn.CatalogItem"]
    assert codec.decode(memoryview(data))[1] == SAMPLES["forewarn.CatalogItem"]


# ---------------------------------------------------------------- registry framing
# Against a real registry: tests/integration/test_schema_registry.py.


def test_a_registry_codec_connects_to_nothing_until_it_must():
    # Port 9 on loopback has no registry: construction and single-object decoding must not care.
    codec = Codec(registry_url="http://127.0.0.1:9")
    data = Codec().encode("forewarn.StockLevel", SAMPLES["forewarn.StockLevel"])
    assert codec.decode(data) == ("forewarn.StockLevel", SAMPLES["forewarn.StockLevel"])


def test_registry_schema_text_is_self_contained_and_fingerprints_the_same():
    store = SchemaStore()
    for name in store.names():
        entry = store.current(name)
        again = SchemaStore(directory=None).add(json.loads(entry.text))
        assert again.fingerprint == entry.fingerprint
        # Registered as written: logical types kept, so other languages see timestamps.
        assert '"logicalType":"timestamp-millis"' in entry.text


def test_store_keeps_the_files_as_written():
    original = raw_schema("forewarn.OrderEvent")
    snapshot = copy.deepcopy(original)
    store = SchemaStore()
    store.add(with_extra_field("forewarn.OrderEvent", GIFT_WRAP))
    assert raw_schema("forewarn.OrderEvent") == snapshot
    # Every current schema, the earlier versions kept in schemas/previous, and the one added.
    assert len(store) == len(SAMPLES) + len(list((SCHEMA_DIR / "previous").glob("*.avsc"))) + 1


# ---------------------------------------------------------------- loading


def write_schema(directory, file_name: str, schema: dict) -> None:
    (directory / file_name).write_text(json.dumps(schema))


def test_a_file_may_use_a_type_from_another_file_and_stays_self_contained(tmp_path):
    write_schema(tmp_path, "demo.Money.avsc", {
        "type": "record", "name": "Money", "namespace": "demo", "doc": "An amount.",
        "fields": [{"name": "cents", "type": "long"}],
    })
    write_schema(tmp_path, "demo.Invoice.avsc", {
        "type": "record", "name": "Invoice", "namespace": "demo", "doc": "A bill.",
        "fields": [{"name": "total", "type": "demo.Money"}, {"name": "tax", "type": "Money"}],
    })
    store = SchemaStore(tmp_path)
    invoice = store.current("demo.Invoice")
    assert store.names() == ["demo.Invoice", "demo.Money"]
    assert set(store.named_types) >= {"demo.Invoice", "demo.Money"}
    # The registry copy and the fingerprint need nothing but the invoice schema itself.
    assert SchemaStore(directory=None).add(invoice.text).fingerprint == invoice.fingerprint
    record = {"total": {"cents": 1200}, "tax": {"cents": 228}}
    codec = Codec(store)
    assert codec.decode(codec.encode("demo.Invoice", record)) == ("demo.Invoice", record)


@pytest.mark.parametrize(
    ("file_name", "schema", "complaint"),
    [
        ("demo.Wrong.avsc", {"type": "record", "name": "Right", "namespace": "demo", "doc": "d", "fields": []},
         "name the file demo.Right.avsc"),
        ("demo.Bare.avsc", {"type": "record", "name": "Bare", "namespace": "demo", "fields": []}, "doc"),
        ("demo.Bad.avsc", {"type": "record", "name": "Bad", "namespace": "demo", "doc": "d",
                           "fields": [{"name": "x", "type": "demo.Missing"}]}, "demo.Bad.avsc"),
    ],
)
def test_a_bad_schema_file_is_named_in_the_error(tmp_path, file_name, schema, complaint):
    write_schema(tmp_path, file_name, schema)
    with pytest.raises(SchemaLoadError, match=complaint):
        SchemaStore(tmp_path)


def test_messages_written_with_an_earlier_version_of_a_record_still_decode():
    # A customer record written before `phone` existed (schemas/previous/forewarn.Customer.v1.avsc),
    # as durable topics keep them, reads through the current schema with phone null.
    import json as _json

    from schemas.codec import SCHEMA_DIR, SchemaStore

    v1 = SchemaStore(directory=None)
    v1.add(_json.loads((SCHEMA_DIR / "previous" / "forewarn.Customer.v1.avsc").read_text()), current=True)
    record = {"event_id": "c1", "ts": 1_772_442_900_000, "customer_id": "C1", "name": "Priya Nair",
              "tier": "gold", "lifetime_value_cents": 1000, "email": None, "preferred_channel": None,
              "language": "en"}
    old_message = Codec(store=v1).encode("forewarn.Customer", record)
    name, decoded = Codec().decode(old_message)
    assert name == "forewarn.Customer"
    assert decoded == dict(record, phone=None)
    # What the current version writes carries the phone.
    _, current = Codec().decode(Codec().encode("forewarn.Customer", dict(record, phone="+91 98200 12345")))
    assert current["phone"] == "+91 98200 12345"


def test_a_task_written_before_cases_decodes_as_a_first_case_without_problems():
    # An outreach task of version 1 (schemas/previous/forewarn.OutreachTask.v1.avsc: one task per alert)
    # reads through the current schema as case 1 with an empty problem list; a reader of version 1
    # decodes what the current version writes (its own fields, the rest skipped).
    import json as _json

    from schemas.codec import SCHEMA_DIR, SchemaStore

    v1 = SchemaStore(directory=None)
    v1.add(_json.loads((SCHEMA_DIR / "previous" / "forewarn.OutreachTask.v1.avsc").read_text()), current=True)
    current = SAMPLES["forewarn.OutreachTask"]
    old = {key: value for key, value in current.items() if key not in ("case_number", "problems")}
    _, decoded = Codec().decode(Codec(store=v1).encode("forewarn.OutreachTask", old))
    assert decoded == dict(old, case_number=1, problems=[])
    # The other way: an old reader that knows only version 1 still gets its fields from a new message.
    import fastavro

    new_body = Codec().encode("forewarn.OutreachTask", current)
    writer = Codec().store.current("forewarn.OutreachTask").parsed
    reader = v1.current("forewarn.OutreachTask").parsed
    from io import BytesIO

    from schemas.codec import SINGLE_OBJECT_MARKER
    assert new_body[:2] == SINGLE_OBJECT_MARKER
    read = fastavro.schemaless_reader(BytesIO(new_body[10:]), writer, reader, return_record_name=False)
    millis = {key: int(value.timestamp() * 1000) for key, value in read.items() if hasattr(value, "timestamp")}
    assert dict(read, **millis) == old
