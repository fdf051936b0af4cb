"""Detection latency of the worker: out-of-stock orders, and reply-target breaches against their deadline.

    python bench/latency_bench.py [--rate R] [--seconds S] [--background EV_PER_S]
        [--sla-chat-s T] [--tickets K] [--singles N] [--grace SECONDS] [--kafka HOST:PORT | --apache | --memory]

Starts one worker on an idle stack (reference data and opening stock only),
sets a few SKUs to zero stock and waits until the worker has read all that.
Then, for S seconds (default 30):

* orders for an out-of-stock SKU at R orders/s (default 5), each stamped
  ``ts`` = wall-clock ms when it is produced. ``--rate 0`` sends N single
  orders (--singles, default 5) one second apart instead, with no background
  traffic unless --background is given;
* background shop traffic (bench/workload.py's mix, stamped the same way) at
  --background events/s (default 20, 0 with --rate 0), starting --warmup
  seconds (default 5 with background traffic) before the orders and tickets,
  so that they meet a steady load;
* K chat tickets (default 5) opened early enough that their first-reply
  target passes during the run, and never answered. The worker runs with
  FOREWARN_SLA_CHAT_S=T (default 10 s instead of the 2-minute default) so the
  target passes within a short run; the tickets' customers have no reference
  record, so the standard target applies: deadline = ts + T.

The ``alerts`` topic is read throughout. Prints p50/p99/max of
``detected_at - ts`` over the ``out_of_stock_open_order`` alerts (status open)
of the bench's orders, and p50/p99/max of ``detected_at - deadline`` over the
``support_sla_breach`` alerts (status open) of its tickets. Exits with status 1
if some of those alerts have not come --grace seconds (default 60) after the
traffic ends. The bench's orders and tickets are sent at once (linger.ms=0),
so the figures are the broker's and the worker's, not a producer's batching
delay. The background traffic goes through a producer of its own that
batches for up to 5 ms (linger.ms=5), as a shop's busy producers would:
one request per background event would load the broker, which shares the
worker's two cores here, with work a separate broker would do elsewhere.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: E402

from bench.workload import (  # noqa: E402
    MIXES,
    BenchError,
    Sender,
    Shop,
    WorkerProcess,
    add_broker_arguments,
    broker_for,
    describe_counts,
    run_main,
    say,
    wait_for_zero_lag,
)
from schemas.codec import Codec, DecodeError  # noqa: E402
from streams import topics  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.kafka_security import kafka_client_config
from streams.settings import Settings  # noqa: E402
from streams.thresholds import Thresholds  # noqa: E402

STOCKOUT_RULE = "out_of_stock_open_order"
BREACH_RULE = "support_sla_breach"
OUT_OF_STOCK_SKUS = 5
# How long the background traffic's producer batches (the probes are sent at once).
BACKGROUND_LINGER_MS = 5


def wall_ms() -> int:
    return int(time.time() * 1000)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of `values` (share in 0..1)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(min(rank, len(ordered))) - 1]


def spread(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"p50 {percentile(values, 0.5):,.0f} ms, p99 {percentile(values, 0.99):,.0f} ms, "
            f"max {max(values):,.0f} ms")


class AlertReader(threading.Thread):
    """Reads the alerts topic from the beginning and keeps the first open alert of each watched entity."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True, name="alert-reader")
        self.bootstrap, self.topic = bootstrap, topic
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.orders: dict[str, dict] = {}  # order_id -> first open stock-out alert
        self.breaches: dict[str, dict] = {}  # ticket_id -> first open breach alert
        self.total = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        codec = Codec()
        consumer = Consumer(kafka_client_config(self.bootstrap, {
            "group.id": f"bench-alerts-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        }))
        try:
            metadata = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
            while not self.stop.is_set():
                for message in consumer.consume(num_messages=500, timeout=0.1):
                    if message.error() is not None:
                        continue
                    try:
                        _, alert = codec.decode(message.value())
                    except DecodeError:
                        continue
                    with self.lock:
                        self.total += 1
                        if alert["status"] != "open":
                            continue
                        if alert["rule"] == STOCKOUT_RULE and alert.get("order_id"):
                            self.orders.setdefault(alert["order_id"], alert)
                        elif alert["rule"] == BREACH_RULE and alert.get("ticket_id"):
                            self.breaches.setdefault(alert["ticket_id"], alert)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            consumer.close()


class Schedule:
    """Evenly spaced send times from `start` (monotonic), `rate` per second, until `end`."""

    def __init__(self, start: float, rate: float, end: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else None
        self.next = start if self.interval else float("inf")
        self.end = end

    def due(self, now: float) -> bool:
        return self.next <= now and self.next < self.end

    def advance(self) -> None:
        self.next += self.interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0,
                        help="out-of-stock orders per second (default 5); 0: single orders 1 s apart")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the traffic lasts (default 30)")
    parser.add_argument("--background", type=float,
                        help="background shop events per second (default 20; 0 with --rate 0)")
    parser.add_argument("--singles", type=int, default=5, help="orders sent with --rate 0 (default 5)")
    parser.add_argument("--tickets", type=int, default=5, help="chat tickets left unanswered (default 5)")
    parser.add_argument("--sla-chat-s", type=float, default=10.0,
                        help="the worker's chat first-reply target in seconds (FOREWARN_SLA_CHAT_S; default 10)")
    parser.add_argument("--grace", type=float, default=60.0,
                        help="seconds to wait for the last alerts after the traffic ends (default 60)")
    parser.add_argument("--warmup", type=float,
                        help="seconds of background traffic alone before the probes start (default 5 with "
                             "background traffic, else 0): the figures are then those of a steady load, not "
                             "of an idle worker's first second under it")
    parser.add_argument("--seed", type=int, default=7)
    add_broker_arguments(parser)
    args = parser.parse_args()
    for flag in ("rate", "seconds", "background", "singles", "tickets", "sla_chat_s", "grace", "warmup"):
        value = getattr(args, flag)
        if value is not None and value < 0:
            parser.error(f"--{flag.replace('_', '-')} must not be negative, got {value:g}")
    background = args.background if args.background is not None else (0.0 if args.rate == 0 else 20.0)
    seconds = max(args.seconds, args.singles + 1.0) if args.rate == 0 else args.seconds
    worker_env = {"FOREWARN_SLA_CHAT_S": f"{args.sla_chat_s:g}"}
    target_ms = Thresholds.from_env(worker_env).sla_target_ms("chat", None)
    # Tickets open early enough for their target to pass a second before the traffic ends.
    ticket_window = seconds - target_ms / 1000 - 1.0
    tickets = args.tickets if ticket_window > 0 else 0
    if args.tickets and not tickets:
        say(f"no unanswered tickets: a {seconds:g}s run cannot see a {target_ms / 1000:g}s target pass "
            f"(lengthen --seconds or shorten --sla-chat-s)")

    scratch = Path(tempfile.mkdtemp(prefix="forewarn-latency-bench-"))
    say(f"scratch directory {scratch}")
    with broker_for(args, scratch) as bootstrap:
        settings = Settings(kafka=bootstrap, data_dir=scratch, topic_prefix=f"bench-{uuid.uuid4().hex[:6]}-")
        ensure_topics(settings, bootstrap)
        shop = Shop(seed=args.seed)
        # The out-of-stock SKUs are kept out of the shop's own traffic, so nothing restocks them.
        oos = [f"OOS-{n:03d}" for n in range(OUT_OF_STOCK_SKUS)]
        sender = Sender(settings, bootstrap, **{"linger.ms": 0})
        back_sender = Sender(settings, bootstrap, **{"linger.ms": BACKGROUND_LINGER_MS})
        opened = wall_ms() - 60_000
        sender.send_all(shop.reference(opened))
        for sku in oos:
            sender.send(topics.CATALOG, {"event_id": shop.event_id("cat"), "ts": opened, "sku": sku,
                                         "name": f"Sold-out beans {sku}", "category": "beans",
                                         "price_cents": 1990, "active": True})
        sender.send_all(shop.opening_stock(opened))
        for sku in oos:
            sender.send(topics.INVENTORY, shop.stock_level(sku, 50, opened))
        sender.flush()

        worker = WorkerProcess(settings, bootstrap, "lat0", scratch / "worker.log", extra_env=worker_env)
        reader = AlertReader(bootstrap, settings.topic(topics.ALERTS.name))
        try:
            worker.wait_ready(timeout=300)
            wait_for_zero_lag(bootstrap, settings, worker, timeout=300)
            for sku in oos:
                sender.send(topics.INVENTORY, shop.stock_level(sku, 0, wall_ms()))
            sender.flush()
            wait_for_zero_lag(bootstrap, settings, worker, timeout=300)
            say(f"worker idle, {len(oos)} SKUs out of stock; traffic for {seconds:g}s: "
                + (f"{args.rate:g} orders/s" if args.rate else f"{args.singles} single orders 1 s apart")
                + f", {background:g} background events/s, {tickets} unanswered chat tickets")
            reader.start()
            probes, deadlines = run_traffic(args, shop, sender, back_sender, oos, seconds, background, tickets,
                                            ticket_window, target_ms, worker)
            missing = wait_for_alerts(reader, probes, deadlines, args.grace, worker)
            hops = hop_times(bootstrap, settings, set(probes))
        finally:
            reader.stop.set()
            worker.stop()
            if reader.is_alive():
                reader.join(timeout=10)

    with reader.lock:
        order_latency = [reader.orders[o]["detected_at"] - ts for o, ts in probes.items() if o in reader.orders]
        lateness = [reader.breaches[t]["detected_at"] - d for t, d in deadlines.items() if t in reader.breaches]
        due_by_mismatch = sum(1 for t, d in deadlines.items() if t in reader.breaches
                              and (reader.breaches[t].get("details") or {}).get("due_by_ms") not in (None, str(d)))
        total = reader.total
    print(f"traffic: {seconds:g}s, {describe_counts(sender.counts + back_sender.counts)} "
          f"(the bench's orders and tickets included); "
          f"{total:,} alert messages in all")
    print(f"{STOCKOUT_RULE}: {len(order_latency)}/{len(probes)} orders alerted; detected_at - ts: "
          f"{spread(order_latency)}")
    if deadlines:
        print(f"{BREACH_RULE} (chat target {target_ms / 1000:g}s): {len(lateness)}/{len(deadlines)} tickets; "
              f"detected_at - deadline: {spread(lateness)}")
    if order_latency:
        describe_hops(hops, probes, reader.orders)
    if due_by_mismatch:
        print(f"   (caveat: {due_by_mismatch} breach alerts name a due_by_ms other than ts + target)")
    if missing:
        raise BenchError(missing)


def hop_times(bootstrap: str, settings: Settings, orders: set[str]) -> dict[str, dict[str, int]]:
    """For each of `orders`: when the order stage wrote its first line and the SKU stage its first shortage.

    Kafka timestamps of the internal topics (the worker's producer stamps each
    record when it is sent), read from the beginning to the end.
    """
    codec = Codec()
    found: dict[str, dict[str, int]] = {}
    consumer = Consumer(kafka_client_config(bootstrap, {
        "group.id": f"bench-hops-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False, "enable.partition.eof": True,
    }))
    try:
        for spec, hop in ((topics.ORDER_LINES, "line"), (topics.ORDER_SHORTAGES, "shortage")):
            name = settings.topic(spec.name)
            partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
            consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
            ended: set[int] = set()
            deadline = time.monotonic() + 60
            while len(ended) < len(partitions) and time.monotonic() < deadline:
                for message in consumer.consume(num_messages=1_000, timeout=0.5):
                    if message.error() is not None:
                        ended.add(message.partition())
                        continue
                    try:
                        _, record = codec.decode(message.value())
                    except DecodeError:
                        continue
                    order_id = record.get("order_id")
                    if order_id in orders:
                        found.setdefault(order_id, {}).setdefault(hop, message.timestamp()[1])
    finally:
        consumer.close()
    return found


def describe_hops(hops: dict[str, dict[str, int]], probes: dict[str, int], alerts: dict[str, dict]) -> None:
    """Where the time of the slowest out-of-stock alerts went, hop by hop."""
    rows = []
    for order_id, ts in probes.items():
        alert, hop = alerts.get(order_id), hops.get(order_id, {})
        if alert is None or "line" not in hop or "shortage" not in hop:
            continue
        rows.append((alert["detected_at"] - ts, hop["line"] - ts, hop["shortage"] - hop["line"],
                     alert["detected_at"] - hop["shortage"], (ts - min(probes.values())) / 1000))
    if not rows:
        return
    rows.sort(reverse=True)
    print("   by hop (order stage to its line; SKU stage to the shortage; order stage to the alert), p50: "
          + ", ".join(f"{percentile([row[i] for row in rows], 0.5):.0f} ms" for i in (1, 2, 3)))
    print("   the five slowest: " + "; ".join(f"{total} = {a} + {b} + {c} ms ({at:.1f}s in)"
                                             for total, a, b, c, at in rows[:5]))


def run_traffic(args, shop: Shop, sender: Sender, back_sender: Sender, oos: list[str], seconds: float,
                background: float, tickets: int, ticket_window: float, target_ms: int,
                worker: WorkerProcess) -> tuple[dict[str, int], dict[str, int]]:
    """Send the probes (`sender`) and the background traffic (`back_sender`); returns {order_id: ts} and
    {ticket_id: deadline}."""
    mix = MIXES["shop"]
    names, shares = list(mix), list(mix.values())
    warmup = args.warmup if args.warmup is not None else (5.0 if background > 0 else 0.0)
    began = time.monotonic()
    # Background traffic alone for the warm-up, then the probes with it for `seconds`.
    start = began + warmup
    end = start + seconds
    back = Schedule(began, background, end)
    if args.rate > 0:
        order_times: list[float] = []
        orders = Schedule(start, args.rate, end)
    else:
        order_times = [start + 1.0 + n for n in range(args.singles)]
        orders = None
    ticket_times = [start + ticket_window * (n + 0.5) / tickets for n in range(tickets)]
    probes: dict[str, int] = {}
    deadlines: dict[str, int] = {}
    last_check = began
    sender.counts.clear()
    back_sender.counts.clear()
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now - last_check > 1.0:
            worker.check_alive()
            last_check = now
        sent_any = False
        if (orders is not None and orders.due(now)) or (order_times and order_times[0] <= now):
            if orders is not None:
                orders.advance()
            else:
                order_times.pop(0)
            order_id = f"LAT-{len(probes) + 1:06d}"
            ts = wall_ms()
            record = shop.place_order(ts, skus=[oos[len(probes) % len(oos)]], order_id=order_id, keep=False)
            record["promised_ship_by"] = None
            sender.send(topics.ORDERS, record)
            probes[order_id] = ts
            sent_any = True
        if ticket_times and ticket_times[0] <= now:
            ticket_times.pop(0)
            n = len(deadlines) + 1
            ts = wall_ms()
            sender.send(topics.SUPPORT, shop.open_ticket(ts, channel="chat", customer_id=f"C-LAT-{n}",
                                                         ticket_id=f"SLA-{n:04d}", keep=False))
            deadlines[f"SLA-{n:04d}"] = ts + target_ms
            sent_any = True
        if back.due(now):
            back.advance()
            topic = shop.rng.choices(names, weights=shares)[0]
            back_sender.send(topics.BY_NAME[topic], shop.next_record(topic, wall_ms()))
            sent_any = True
        if not sent_any:
            upcoming = min([back.next, orders.next if orders else float("inf"), end]
                           + order_times[:1] + ticket_times[:1])
            time.sleep(max(0.0, min(upcoming - time.monotonic(), 0.05)))
    sender.flush()
    back_sender.flush()
    return probes, deadlines


def wait_for_alerts(reader: AlertReader, probes: dict[str, int], deadlines: dict[str, int], grace: float,
                    worker: WorkerProcess) -> str | None:
    """Wait until every probe has its alert; returns what is still missing after `grace` seconds, or None."""
    deadline = time.monotonic() + grace
    while True:
        if reader.error is not None:
            raise BenchError(f"reading the alerts topic failed: {reader.error}")
        with reader.lock:
            orders_left = [o for o in probes if o not in reader.orders]
            tickets_left = [t for t in deadlines if t not in reader.breaches]
        if not orders_left and not tickets_left:
            return None
        if time.monotonic() > deadline:
            return (f"{grace:.0f}s after the traffic ended, {len(orders_left)} of {len(probes)} orders had no "
                    f"{STOCKOUT_RULE} alert and {len(tickets_left)} of {len(deadlines)} tickets no "
                    f"{BREACH_RULE} alert (raise --grace, or see the worker log {worker.log_path})")
        worker.check_alive()
        time.sleep(0.2)


if __name__ == "__main__":
    run_main(main)
