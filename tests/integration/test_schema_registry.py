"""The Confluent wire format against a real schema registry, and interop with Confluent's Avro serde.

The registry is rivven-schema started for the session (see tests/integration/registry.py),
or the one FOREWARN_TEST_SCHEMA_REGISTRY points at. Every test registers under
fresh subjects, so runs against a shared registry never meet.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.codec import SCHEMA_DIR, Codec, DecodeError, SchemaEntry, SchemaStore, record_from_json
from streams.kafka_security import kafka_client_config
from tests.integration.helpers import forewarn_env, read_raw, run_forewarn, write_jsonl
from tests.integration.registry import (
    RegistryNotInstallable,
    RegistryUnavailable,
    RivvenSchemaRegistry,
    find_rivven_schema,
    install_rivven_schema,
    registry_answers,
)

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

ORDER_EVENT = "forewarn.OrderEvent"
STOCK_LEVEL = "forewarn.StockLevel"
T0 = 1_772_442_900_000  # 2026-03-02T09:15:00Z
ORDER = {
    "event_id": "ev-1", "ts": T0, "event_type": "placed", "order_id": "o-1", "customer_id": "c-1",
    "lines": [{"sku": "SKU-1", "qty": 2, "unit_price_cents": 1999}],
    "promised_ship_by": T0 + 86_400_000, "channel": "web",
}
LEVEL = {"event_id": "ev-2", "ts": T0 + 1, "event_type": "stock_level", "sku": "SKU-1", "available": 0,
         "warehouse": None}
GIFT_WRAP = {"name": "gift_wrap", "type": ["null", "boolean"], "default": None}


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory, pytestconfig):
    configured = os.environ.get("FOREWARN_TEST_SCHEMA_REGISTRY", "").strip().rstrip("/")
    if configured:
        if not registry_answers(configured):
            pytest.fail(f"FOREWARN_TEST_SCHEMA_REGISTRY={configured}: GET {configured}/subjects does not answer")
        yield configured
        return

    def announce(text: str) -> None:
        # Shown as it happens, not only when a test fails: a build takes minutes.
        log.warning("%s", text)
        with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print(f"\n{text}", flush=True)

    try:
        binary = find_rivven_schema() or install_rivven_schema(announce)
    except RegistryNotInstallable as exc:
        pytest.skip(str(exc))
    except RegistryUnavailable as exc:
        pytest.fail(str(exc))
    registry = RivvenSchemaRegistry(binary, tmp_path_factory.mktemp("schema-registry") / "registry.log")
    try:
        try:
            url = registry.start()
        except RegistryUnavailable as exc:
            pytest.fail(str(exc))
        yield url
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def registry(schema_registry_url) -> SchemaRegistryClient:
    """Confluent's own client, to look at what the codec registered."""
    return SchemaRegistryClient({"url": schema_registry_url})


def fresh_topic(name: str) -> str:
    return f"t-{uuid.uuid4().hex[:8]}.{name}"


def order_event_with_gift_wrap() -> dict:
    """The OrderEvent schema one version on: an optional field added."""
    newer = json.loads((SCHEMA_DIR / f"{ORDER_EVENT}.avsc").read_text())
    newer["fields"].append(GIFT_WRAP)
    return newer


def schema_id_of(data: bytes) -> int:
    assert data[:1] == b"\x00", f"not Confluent-framed: {data[:5].hex()}"
    return struct.unpack(">I", data[1:5])[0]


def as_millis(record: dict) -> dict:
    """A record read by Confluent's deserializer, with its datetimes back as epoch milliseconds."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return {k: (v - epoch) // timedelta(milliseconds=1) if isinstance(v, datetime) else v
            for k, v in record.items()}


# ---------------------------------------------------------------- Confluent wire format


def test_a_message_names_its_registry_id_and_a_fresh_codec_reads_it_through_the_registry(
        schema_registry_url, registry):
    topic = fresh_topic("orders")
    data = Codec(SchemaStore(), registry_url=schema_registry_url).encode(ORDER_EVENT, ORDER, topic=topic)

    registered = registry.get_latest_version(f"{topic}-value")
    assert schema_id_of(data) == registered.schema_id
    assert len(data) > 5
    # What the registry holds is the schema file, whatever text form it keeps.
    assert (SchemaEntry.from_schema(registered.schema.schema_str).fingerprint
            == SchemaStore().current(ORDER_EVENT).fingerprint)

    # Another process knows nothing but the id in the message.
    reader = Codec(SchemaStore(), registry_url=schema_registry_url)
    assert reader.decode(data, expected=ORDER_EVENT) == (ORDER_EVENT, ORDER)
    assert type(reader.decode(data)[1]["ts"]) is int


def test_without_a_topic_the_subject_is_the_record_name(schema_registry_url, registry):
    namespace = f"t{uuid.uuid4().hex[:8]}"
    store = SchemaStore(directory=None)
    store.add({"type": "record", "name": "Probe", "namespace": namespace, "doc": "A probe.",
               "fields": [{"name": "n", "type": "int"}]}, current=True)
    data = Codec(store, registry_url=schema_registry_url).encode(f"{namespace}.Probe", {"n": 7})
    assert registry.get_latest_version(f"{namespace}.Probe").schema_id == schema_id_of(data)


def test_a_subject_evolves_and_each_schema_version_reads_the_other(schema_registry_url, registry):
    topic = fresh_topic("orders")
    older_data = Codec(SchemaStore(), registry_url=schema_registry_url).encode(ORDER_EVENT, ORDER, topic=topic)
    newer_store = SchemaStore()
    newer_store.add(order_event_with_gift_wrap(), current=True)
    newer_data = Codec(newer_store, registry_url=schema_registry_url).encode(
        ORDER_EVENT, {**ORDER, "gift_wrap": True}, topic=topic)

    assert registry.get_versions(f"{topic}-value") == [1, 2]
    assert schema_id_of(newer_data) != schema_id_of(older_data)

    # A reader still on the file schema meets the newer one only through the registry.
    older_reader = Codec(SchemaStore(), registry_url=schema_registry_url)
    assert older_reader.decode(newer_data) == (ORDER_EVENT, ORDER)
    assert older_reader.decode(older_data) == (ORDER_EVENT, ORDER)

    # A reader already on the newer schema reads older messages, the new field defaulted.
    newer_reader_store = SchemaStore()
    newer_reader_store.add(order_event_with_gift_wrap(), current=True)
    newer_reader = Codec(newer_reader_store, registry_url=schema_registry_url)
    assert newer_reader.decode(older_data) == (ORDER_EVENT, {**ORDER, "gift_wrap": None})
    assert newer_reader.decode(newer_data) == (ORDER_EVENT, {**ORDER, "gift_wrap": True})


def test_an_id_the_registry_does_not_know_is_an_unknown_schema_id(schema_registry_url):
    body = Codec().encode(STOCK_LEVEL, LEVEL)[10:]
    data = b"\x00" + struct.pack(">I", 2**31 - 1) + body  # the last id a registry could hand out
    with pytest.raises(DecodeError) as err:
        Codec(SchemaStore(), registry_url=schema_registry_url).decode(data)
    assert err.value.reason == "unknown-schema-id"
    assert str(2**31 - 1) in str(err.value)


def test_a_registry_codec_reads_both_framings_and_a_plain_codec_reads_single_object(schema_registry_url):
    single_object = Codec(SchemaStore()).encode(STOCK_LEVEL, LEVEL)
    confluent = Codec(SchemaStore(), registry_url=schema_registry_url).encode(
        STOCK_LEVEL, LEVEL, topic=fresh_topic("inventory"))
    assert single_object[:2] == b"\xc3\x01" and confluent[:1] == b"\x00"

    with_registry = Codec(SchemaStore(), registry_url=schema_registry_url)
    assert with_registry.decode(single_object) == (STOCK_LEVEL, LEVEL)
    assert with_registry.decode(confluent) == (STOCK_LEVEL, LEVEL)

    without_registry = Codec(SchemaStore())
    assert without_registry.decode(single_object) == (STOCK_LEVEL, LEVEL)
    with pytest.raises(DecodeError) as err:
        without_registry.decode(confluent)
    assert err.value.reason == "no-registry"


# ---------------------------------------------------------------- Confluent's Avro serde


def test_confluent_avro_deserializer_reads_our_messages(schema_registry_url, registry):
    topic = fresh_topic("orders")
    ours = Codec(SchemaStore(), registry_url=schema_registry_url).encode(ORDER_EVENT, ORDER, topic=topic)
    theirs = AvroDeserializer(registry)(ours, SerializationContext(topic, MessageField.VALUE))
    # Registered with its logical types, so other clients see timestamps as timestamps.
    assert theirs["ts"] == datetime(2026, 3, 2, 9, 15, tzinfo=timezone.utc)
    assert as_millis(theirs) == ORDER


def test_our_codec_reads_confluent_avro_serializer_messages(schema_registry_url, registry):
    topic = fresh_topic("orders")
    serializer = AvroSerializer(registry, SchemaStore().current(ORDER_EVENT).text)
    theirs = serializer(ORDER, SerializationContext(topic, MessageField.VALUE))
    assert schema_id_of(theirs) == registry.get_latest_version(f"{topic}-value").schema_id

    name, record = Codec(SchemaStore(), registry_url=schema_registry_url).decode(theirs)
    assert (name, record) == (ORDER_EVENT, ORDER)
    assert type(record["ts"]) is int and type(record["promised_ship_by"]) is int
    # Byte for byte what our codec writes to the same topic.
    ours = Codec(SchemaStore(), registry_url=schema_registry_url).encode(ORDER_EVENT, ORDER, topic=topic)
    assert ours == theirs


# ---------------------------------------------------------------- the CLI on a real broker


def test_forewarn_produce_with_a_registry_writes_confluent_framed_records(
        schema_registry_url, registry, kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path, FOREWARN_SCHEMA_REGISTRY=schema_registry_url)
    created = run_forewarn(["topics", "create"], env)
    assert created.returncode == 0, created.stderr
    levels = [
        {"event_id": "e1", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A", "available": 3},
        {"event_id": "e2", "ts": "2026-03-02T09:16:30.250Z", "event_type": "stock_level", "sku": "B",
         "available": 0, "warehouse": "north"},
    ]
    produced = run_forewarn(["produce", "--topic", "inventory", str(write_jsonl(tmp_path / "levels.jsonl", levels))],
                            env)
    assert produced.returncode == 0, produced.stderr

    topic = f"{fresh_prefix}inventory"
    messages = read_raw(kafka_bootstrap, topic, expected=len(levels))
    assert len(messages) == len(levels), f"{topic}: {len(messages)} of {len(levels)} messages"
    schema_id = registry.get_latest_version(f"{topic}-value").schema_id
    assert [schema_id_of(m.value()) for m in messages] == [schema_id] * len(levels)

    reader = Codec(SchemaStore(), registry_url=schema_registry_url)
    decoded = sorted((reader.decode(m.value(), expected=STOCK_LEVEL)[1] for m in messages),
                     key=lambda r: r["event_id"])
    assert decoded == [record_from_json(STOCK_LEVEL, level) for level in levels]
    assert sorted(m.key() for m in messages) == [b"A", b"B"]


def test_the_sink_stores_two_schema_versions_of_one_partition_in_order(
        schema_registry_url, kafka_bootstrap, fresh_prefix, tmp_path):
    """Messages of the file schema and of a newer one (a field added) on one partition all land.

    The sink writes one insert per writer schema, split where the schema changes
    within the partition; the column the table lacks is left out.
    """
    import json as json_

    from confluent_kafka import Producer

    from tests.integration.test_sink import SinkProcess

    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path / "data", FOREWARN_SCHEMA_REGISTRY=schema_registry_url)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    topic = f"{fresh_prefix}orders"
    older = Codec(SchemaStore(), registry_url=schema_registry_url)
    newer_store = SchemaStore()
    newer_store.add(order_event_with_gift_wrap(), current=True)
    newer = Codec(newer_store, registry_url=schema_registry_url)
    producer = Producer(kafka_client_config(kafka_bootstrap))
    # One key, so one partition: old, new, old, new.
    for n in range(4):
        record = {**ORDER, "event_id": f"ev-{n}", "ts": T0 + n}
        data = older.encode(ORDER_EVENT, record, topic=topic) if n % 2 == 0 else \
            newer.encode(ORDER_EVENT, {**record, "gift_wrap": True}, topic=topic)
        producer.produce(topic, key=b"o-1", value=data)
    assert producer.flush(30) == 0
    sink = SinkProcess(env, tmp_path / "sink.log").start()
    try:
        def stored():
            out = run_forewarn(["sql", "SELECT event_id, kafka_offset FROM order_events ORDER BY kafka_offset",
                                "--format", "json"], env)
            assert out.returncode == 0, out.stderr
            rows = [json_.loads(line) for line in out.stdout.splitlines()]
            return rows if len(rows) == 4 else None

        from tests.integration.helpers import wait_for

        rows = wait_for(stored, timeout=60, what="both schema versions in ClickHouse")
        assert [r["event_id"] for r in rows] == ["ev-0", "ev-1", "ev-2", "ev-3"]
        assert [r["kafka_offset"] for r in rows] == [0, 1, 2, 3]
    finally:
        assert sink.stop() == 0
