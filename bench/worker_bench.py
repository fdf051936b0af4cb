"""End-to-end throughput of detection workers on a real broker.

    python bench/worker_bench.py [--orders N] [--skus S] [--workers W] [--kafka HOST:PORT]

Produces N placed orders (one line each, over S SKUs (200), a tenth of them on
SKUs with too little stock) and their stock levels, starts W workers, and
times how long until the workers' consumer group has committed every input
and internal message. Uses the embedded broker unless --kafka is given.
Prints input events per second. Run by hand; figures go in the README with
the command that produced them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from schemas.codec import Codec
from streams import topics
from streams.admin import ensure_topics
from streams.app import worker_datadir
from streams.embedded import EmbeddedBroker
from streams.follow import group_lag
from streams.produce import producer_for
from streams.settings import Settings


def produce_workload(settings: Settings, bootstrap: str, orders: int, skus: int = 200) -> int:
    codec = Codec()
    producer = producer_for(bootstrap)
    sent = 0

    def send(spec: topics.TopicSpec, record: dict) -> None:
        nonlocal sent
        name = settings.topic(spec.name)
        while True:
            try:
                producer.produce(name, key=record[spec.key_field].encode(), value=codec.encode(spec.schema, record))
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1

    for n in range(skus):
        send(topics.INVENTORY, {"event_id": f"s{n}", "ts": 0, "event_type": "stock_level", "sku": f"SKU-{n}",
                                "available": 5 if n < skus // 10 else 10_000, "warehouse": None})
    for n in range(orders):
        send(topics.ORDERS, {"event_id": f"o{n}", "ts": 1000 + n, "event_type": "placed", "order_id": f"O-{n}",
                             "customer_id": f"C-{n % 1000}", "channel": None, "promised_ship_by": None,
                             "lines": [{"sku": f"SKU-{n % skus}", "qty": 1, "unit_price_cents": 100}]})
    producer.flush(120)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--skus", type=int, default=200, help="fewer SKUs: more open orders per SKU")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--kafka", help="bootstrap address; default: start the embedded broker")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="forewarn-bench-"))
    broker = None
    bootstrap = args.kafka
    if bootstrap is None:
        broker = EmbeddedBroker(data_dir / "broker.log").start()
        bootstrap = broker.bootstrap
    settings = Settings(kafka=bootstrap, data_dir=data_dir, topic_prefix=f"bench-{uuid.uuid4().hex[:6]}-")
    procs = []
    try:
        ensure_topics(settings, bootstrap)
        sent = produce_workload(settings, bootstrap, args.orders, args.skus)
        env = dict(os.environ, FOREWARN_KAFKA=bootstrap, FOREWARN_DATA_DIR=str(data_dir),
                   FOREWARN_TOPIC_PREFIX=settings.topic_prefix)
        start = time.monotonic()
        for n in range(args.workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "streams", "worker"],
                                          env=dict(env, FOREWARN_WORKER_ID=f"b{n}"),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        watched = [settings.topic(s.name) for s in topics.GROUP_INPUTS]
        # A worker writes this marker once it has joined the group and been given partitions.
        ready = [worker_datadir(settings.with_(worker_id=f"b{n}")) / "ready" for n in range(args.workers)]
        joined = None
        while True:
            if joined is None and all(marker.exists() for marker in ready):
                joined = time.monotonic()
            if joined is not None and group_lag(bootstrap, settings.topic("forewarn"), watched) == 0:
                break
            time.sleep(0.5)
        done = time.monotonic()
        print(f"{sent} input events, {args.workers} worker(s): all processed {done - start:.1f}s after start "
              f"({joined - start:.1f}s to join); {sent / (done - joined):,.0f} input events/s once joined")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
