"""The README's analyst queries, end to end: the known workload through Kafka and the sink into chDB.

tests/unit/test_analyst_views.py defines a small workload whose answers are
worked out by hand, and checks the views and the README's ten queries on it
with the rows written straight into the tables. Here the same workload is
produced to the topics as Avro messages, the sink writes it, and the same
queries must give the same answers.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from schemas.codec import Codec
from sinks.clickhouse.tables import TABLE_FOR_TOPIC
from streams import topics
from streams.brokers import confluent_producer_overrides
from streams.follow import group_lag
from streams.kafka_security import kafka_client_config
from tests.integration.helpers import forewarn_env, run_forewarn, wait_for
from tests.integration.test_sink import SinkProcess
from tests.unit.test_analyst_views import KAFKA, load_workload

pytestmark = pytest.mark.integration

TOPIC_FOR_TABLE = {table: topic for topic, table in TABLE_FOR_TOPIC.items()}


class WorkloadRecorder:
    """Takes the workload's table inserts and keeps them, in order, as (topic, record) to produce."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def insert(self, table: str, rows: list, column_names: list[str]) -> None:
        topic = TOPIC_FOR_TABLE[table]
        for row in rows:
            record: dict = {}
            nested: dict[str, dict[str, list]] = {}
            for name, value in zip(column_names, row):
                if name in KAFKA:
                    continue  # the broker assigns the coordinates
                if isinstance(value, dt.datetime):
                    value = int(value.timestamp() * 1000)
                if "." in name:  # a Nested column such as lines.sku: one array per field
                    outer, inner = name.split(".", 1)
                    nested.setdefault(outer, {})[inner] = value
                else:
                    record[name] = value
            for outer, columns in nested.items():
                record[outer] = [dict(zip(columns, values)) for values in zip(*columns.values())]
            self.events.append((topic, record))


def test_the_readme_queries_answer_the_same_after_kafka_and_the_sink(kafka_bootstrap, fresh_prefix, tmp_path):
    recorder = WorkloadRecorder()
    load_workload(recorder)
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path / "data")
    assert run_forewarn(["topics", "create"], env).returncode == 0
    codec = Codec()
    producer = Producer(kafka_client_config(kafka_bootstrap, {
        "partitioner": "murmur2_random", **confluent_producer_overrides(kafka_bootstrap),
    }))
    for topic, record in recorder.events:
        spec = topics.BY_NAME[topic]
        schema = codec.store.current(spec.schema).parsed
        full = {f["name"]: record.get(f["name"], f.get("default")) for f in schema["fields"]}
        key = full[spec.key_field]
        producer.produce(f"{fresh_prefix}{topic}", key=None if key is None else str(key).encode(),
                         value=codec.encode(spec.schema, full))
    assert producer.flush(60) == 0

    sink = SinkProcess(env, tmp_path / "sink.log").start()
    try:
        sink_topics = [f"{fresh_prefix}{t}" for t in TOPIC_FOR_TABLE.values()]
        wait_for(lambda: sink.alive() and group_lag(kafka_bootstrap, f"{fresh_prefix}forewarn-sink", sink_topics) == 0,
                 timeout=120, what="the sink to write the whole workload")
    finally:
        assert sink.stop() == 0
    # The sink has stopped, so the store may be opened directly: in a process of its own, because
    # the ClickHouse engine and this process's Kafka client threads do not share a process safely
    # (the test process once died of a segmentation fault here).
    store = (tmp_path / "data" / "clickhouse").resolve()
    checked = subprocess.run([sys.executable, "-c", CHECK_IN_THE_STORE, str(store)], capture_output=True, text=True,
                             timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "checked" in checked.stdout


# The sink brought the schema up to date, and every README query answers as on the hand-computed workload.
CHECK_IN_THE_STORE = """
import sys
import clickhouse_connect
from sinks.clickhouse.migrate import apply_migrations
from tests.unit.test_analyst_views import README, check_analyst_queries

client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
try:
    assert apply_migrations(client) == [], "the sink left migrations unapplied"
    check_analyst_queries(client, README.read_text())
finally:
    client.close()
print("checked")
"""

