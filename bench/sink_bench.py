"""Throughput of the ClickHouse sink against raw consumption of the same events, in one run.

    python bench/sink_bench.py [--events N] [--kafka HOST:PORT] [--batch-rows R]

Pre-produces N events (default 500,000) in a shop's proportions over every
topic the sink reads (tests/integration/sink_workload.py), then measures, one
after the other in this process:

1. raw consumption: a confluent-kafka consumer reading every partition from
   the beginning until it has all N messages (no decoding, nothing written);
2. the sink end to end: ``run_sink`` in its own consumer group, consuming,
   framing, inserting into a fresh chDB store and committing, from its first
   message until all N rows are stored (and its offsets are committed).

Prints messages per second for both and their ratio. Uses the embedded default
(one Apache Kafka node) unless --kafka or --memory is given. Run by hand; figures go in the README with the
command that produced them.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas.codec import Codec  # noqa: E402
from sinks.clickhouse.sink import SinkLimits, Store, run_sink  # noqa: E402
from sinks.clickhouse.store import open_store  # noqa: E402
from sinks.clickhouse.tables import SINK_TOPICS  # noqa: E402
from streams import topics  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.kafka_security import kafka_client_config
from streams.runner import embedded_broker  # noqa: E402
from streams.follow import group_lag  # noqa: E402
from streams.produce import producer_for  # noqa: E402
from streams.settings import Settings  # noqa: E402
from tests.integration.sink_workload import mixed_events  # noqa: E402


def produce(settings: Settings, bootstrap: str, n: int) -> float:
    codec = Codec()
    producer = producer_for(bootstrap, **{"enable.idempotence": False, "linger.ms": 50})
    started = time.perf_counter()
    for topic, record in mixed_events(n, seed=1, realistic=True):
        spec = topics.BY_NAME[topic]
        key = record[spec.key_field]
        value = codec.encode(spec.schema, record)
        while True:
            try:
                producer.produce(settings.topic(topic), key=None if key is None else key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(300):
        raise SystemExit("the broker did not acknowledge every event")
    return time.perf_counter() - started


def raw_consume(settings: Settings, bootstrap: str, n: int) -> float:
    consumer = Consumer(kafka_client_config(bootstrap, {
        "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False,
    }))
    metadata = consumer.list_topics(timeout=10)
    assignment = [TopicPartition(settings.topic(spec.name), p, OFFSET_BEGINNING) for spec in SINK_TOPICS
                  for p in metadata.topics[settings.topic(spec.name)].partitions]
    consumer.assign(assignment)
    seen = 0
    first = None
    while seen < n:
        batch = consumer.consume(num_messages=10_000, timeout=1.0)
        got = sum(1 for m in batch if m.error() is None)
        if got and first is None:
            first = time.perf_counter()
        seen += got
    elapsed = time.perf_counter() - first
    consumer.close()
    return elapsed


def sink_end_to_end(settings: Settings, bootstrap: str, n: int, limits: SinkLimits) -> tuple[float, dict]:
    store = Store(lambda: open_store(settings))
    store.client  # noqa: B018 - open and migrate before the clock starts
    stop = threading.Event()
    holder: dict = {}
    thread = threading.Thread(target=run_sink, args=(settings, bootstrap, stop, store, limits),
                              kwargs={"observe": lambda sink: holder.setdefault("sink", sink)}, daemon=True)
    thread.start()
    while "sink" not in holder or holder["sink"].stats.stored_rows < n:
        time.sleep(0.05)
        if not thread.is_alive():
            raise SystemExit("the sink stopped early")
    sink = holder["sink"]
    elapsed = time.monotonic() - sink.stats.first_message_at
    group = settings.topic("forewarn-sink")
    names = [settings.topic(spec.name) for spec in SINK_TOPICS]
    while group_lag(bootstrap, group, names) != 0:
        time.sleep(0.2)
    stop.set()
    thread.join(timeout=60)
    stored = store.client.query("SELECT count(), uniqExact(event_id) FROM (SELECT event_id FROM order_events "
                                "UNION ALL SELECT event_id FROM web_events)").result_rows[0]
    return elapsed, {"inserts": sink.stats.inserts, "flushes": sink.stats.flushes,
                     "orders_and_web_rows": stored[0], "distinct_event_ids": stored[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--kafka", help="bootstrap address; default: the embedded default (one Apache Kafka node)")
    parser.add_argument("--memory", action="store_true", help="start the in-memory broker instead")
    parser.add_argument("--batch-rows", type=int, default=SinkLimits.max_rows)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sink-bench-") as tmp:
        broker = None
        bootstrap = args.kafka
        if bootstrap is None:
            broker = embedded_broker(Settings(data_dir=Path(tmp), embedded="memory" if args.memory else "kafka"))
            broker.start()
            bootstrap = broker.bootstrap
        try:
            settings = Settings(kafka=bootstrap, data_dir=Path(tmp) / "data",
                                topic_prefix=f"bench-{uuid.uuid4().hex[:6]}-", topic_prefix_given=True)
            ensure_topics(settings, bootstrap)
            produced_s = produce(settings, bootstrap, args.events)
            print(f"produced {args.events:,} events in {produced_s:.1f}s", flush=True)
            raw_s = raw_consume(settings, bootstrap, args.events)
            print(f"raw confluent-kafka consumption: {args.events / raw_s:,.0f} msg/s ({raw_s:.2f}s)", flush=True)
            sink_s, facts = sink_end_to_end(settings, bootstrap, args.events, SinkLimits(max_rows=args.batch_rows))
            print(f"sink end to end into chDB:       {args.events / sink_s:,.0f} events/s ({sink_s:.2f}s; "
                  f"{facts['flushes']} flushes, {facts['inserts']} inserts)")
            print(f"sink / raw: {raw_s / sink_s:.2f}; peak RSS of this process "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
                  f"orders+web rows {facts['orders_and_web_rows']:,}, distinct ids {facts['distinct_event_ids']:,}")
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()
