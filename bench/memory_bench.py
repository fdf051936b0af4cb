"""Resident memory of one worker holding many open orders.

    python bench/memory_bench.py [--orders 1000000] [--skus 300] [--timeout SECONDS] [--kafka HOST:PORT | --apache | --memory]

Pre-produces the stock of S SKUs (default 300, each with far more stock than
every order together asks for, so no order is short) and N placed orders
(default 1,000,000; one or two lines of one unit each, event times spread
over the last hour) that are never shipped or cancelled, so every one stays
open in the worker's state. Catalog and customer reference data go beside
them. Then runs one worker until its group's lag over every topic in
``topics.GROUP_INPUTS`` is zero, and prints the worker's peak resident memory
(VmHWM in /proc/PID/status) and its resident memory at that point (VmRSS),
with the input rate as a side figure. Progress (lag, memory) goes to stderr
every 30 s. Exits with status 1 and a message if the lag is not zero within
--timeout seconds (default 6 hours: the current worker passes a few hundred
orders a second). Uses the embedded default (one Apache Kafka node) unless --kafka, --apache or --memory is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workload import (  # noqa: E402
    Sender,
    Shop,
    WorkerProcess,
    add_broker_arguments,
    broker_for,
    describe_counts,
    memory_of,
    run_main,
    say,
    wait_for_zero_lag,
)
from streams import topics  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.settings import Settings  # noqa: E402


def open_orders(shop: Shop, orders: int, start_ms: int, end_ms: int):
    """Placed orders, one or two lines of one unit each, never closed."""
    rng = shop.rng
    span = max(1, end_ms - start_ms)
    customers = [c["customer_id"] for c in shop.customers]
    for n in range(orders):
        skus = rng.sample(shop.skus, 1 if rng.random() < 0.7 else 2)
        yield topics.ORDERS, {
            "event_id": f"ord-mem-{n}", "ts": start_ms + span * n // max(1, orders - 1), "event_type": "placed",
            "order_id": f"O-MEM-{n:07d}", "customer_id": customers[n % len(customers)], "channel": "web",
            "promised_ship_by": None,
            "lines": [{"sku": sku, "qty": 1, "unit_price_cents": shop.price[sku]} for sku in skus]}


def mb(kb: int | None) -> str:
    return "unknown" if kb is None else f"{kb / 1024:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--skus", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=6 * 3600.0,
                        help="seconds the worker may take to read everything (default 21600)")
    add_broker_arguments(parser)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="forewarn-memory-bench-"))
    say(f"scratch directory {scratch}")
    with broker_for(args, scratch) as bootstrap:
        settings = Settings(kafka=bootstrap, data_dir=scratch, topic_prefix=f"bench-{uuid.uuid4().hex[:6]}-")
        ensure_topics(settings, bootstrap)
        shop = Shop(seed=args.seed, skus=args.skus, short_share=0)
        now = int(time.time() * 1000)
        start_ms, end_ms = now - 55 * 60_000, now - 5_000
        sender = Sender(settings, bootstrap)
        sender.send_all(shop.reference(start_ms - 1))
        sender.counts.clear()
        # Far more than every order together can ask for: nothing is ever short.
        plenty = 10 * args.orders + 1000
        sender.send_all((topics.INVENTORY, shop.stock_level(sku, plenty, start_ms - 1)) for sku in shop.skus)
        say(f"producing {args.orders:,} open orders")
        began = time.monotonic()
        sender.send_all(open_orders(shop, args.orders, start_ms, end_ms))
        sender.close()
        sent = sum(sender.counts.values())
        say(f"produced {sent:,} events in {time.monotonic() - began:.0f}s ({describe_counts(sender.counts)})")

        worker = WorkerProcess(settings, bootstrap, "mem0", scratch / "worker.log")
        last_report = [time.monotonic()]

        def watch(_lag) -> None:
            if time.monotonic() - last_report[0] >= 30:
                last_report[0] = time.monotonic()
                seen = memory_of(worker.pid)
                say(f"worker memory: VmRSS {mb(seen.get('VmRSS'))}, VmHWM {mb(seen.get('VmHWM'))}")

        try:
            joined, how = worker.wait_joined(bootstrap, timeout=300)
            done = wait_for_zero_lag(bootstrap, settings, worker, args.timeout, on_poll=watch)
            memory = memory_of(worker.pid)
        finally:
            worker.stop()

    print(f"{sent:,} input events ({describe_counts(sender.counts)}), every order open at the end")
    print(f"worker peak resident memory (VmHWM): {mb(memory.get('VmHWM'))}")
    print(f"worker resident memory at zero lag (VmRSS): {mb(memory.get('VmRSS'))}")
    print(f"(side figure: {sent / (done - joined):,.0f} input events/s from joining ({how}) to zero lag, "
          f"{done - joined:,.0f}s)")


if __name__ == "__main__":
    run_main(main)
