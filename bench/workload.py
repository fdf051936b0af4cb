"""Shared pieces of the worker benchmarks: a broker, a shop's event mix, producing, workers, lag, memory.

Used by ``bench/worker_bench.py`` (throughput), ``bench/latency_bench.py``
(detection latency) and ``bench/memory_bench.py`` (resident memory).

``Shop`` makes valid records for every input schema with plausible stories:
sessions browse a few pages and then some add to the cart and check out;
orders are placed and later some ship, are delivered, are cancelled or fail
a payment; stock levels move, with a tenth of the SKUs short; tickets open
and most get replies; shipped orders come back as returns; customers leave
feedback. The caller gives every event its time, so the same generator
serves pre-produced runs (times spread over the last hour) and live traffic
(time = wall clock at production).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, deque
from pathlib import Path
from typing import Callable, Iterable, Iterator

from schemas.codec import Codec
from streams import topics
from streams.kafka_security import kafka_client_config
from streams.produce import producer_for
from streams.settings import Settings
from tests.integration.helpers import stop_process

REPO = Path(__file__).resolve().parents[1]

# Share of each input topic in a mix, in per cent.
MIXES: dict[str, dict[str, int]] = {
    "shop": {"web": 60, "orders": 20, "inventory": 8, "support": 8, "returns": 2, "feedback": 2},
    "orders-stock": {"orders": 20, "inventory": 8},
}
DEFAULT_EVENTS = {"shop": 28_800, "orders-stock": 10_200}

CATEGORIES = [("beans", 1500, 3000), ("machines", 8900, 60000), ("grinders", 4900, 19000),
              ("filters", 490, 2500), ("cups", 1500, 2500)]
PAGES = ["/", "/shop/beans", "/shop/machines", "/shop/grinders", "/shop/cups", "/shop/filters", "/sale",
         "/account", "/account/orders", "/help"]
FIRST_NAMES = ["Asha", "Bilal", "Chitra", "Dev", "Esha", "Farhan", "Gita", "Hari", "Isha", "Jai", "Kavya",
               "Leela", "Mohan", "Nisha", "Omar", "Priya", "Rahul", "Sana", "Tara", "Uday", "Vikram", "Zoya"]
LAST_NAMES = ["Banerjee", "Chatterjee", "Das", "Gupta", "Iyer", "Khan", "Menon", "Patel", "Rao", "Sen", "Shah"]
TICKET_TEXTS = [("order_status", "Where is my order? It was due yesterday."),
                ("payment", "I was charged twice for one order."),
                ("product_question", "Does the grinder work for espresso?"),
                ("returns", "How do I send back a damaged mug?"),
                (None, "My order still hasn't arrived"),
                (None, "The website logged me out during checkout"),
                ("account", "I cannot change my delivery address.")]
RETURN_REASONS = ["damaged in transit", "not as described", "changed my mind", "stopped working", "wrong item"]


class BenchError(RuntimeError):
    """A benchmark could not finish (a timeout, a worker that died); the message says what to do."""


# ---------------------------------------------------------------- the broker

def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--kafka", metavar="HOST:PORT",
                       help="use this broker; default: start the embedded default (one Apache Kafka node)")
    where.add_argument("--apache", action="store_true",
                       help="start one Apache Kafka node with deploy/kafka/kafka.sh instead")
    where.add_argument("--memory", action="store_true", help="start the in-memory broker (FOREWARN_EMBEDDED=memory)")


@contextlib.contextmanager
def broker_for(args: argparse.Namespace, scratch: Path) -> Iterator[str]:
    """The bootstrap address to use: --kafka as given, or a broker started here and stopped on exit."""
    if args.kafka:
        yield args.kafka
        return
    if args.apache:
        sys.path.insert(0, str(REPO))
        from tests.integration.apache_kafka import start_apache_kafka

        say("starting one Apache Kafka node (the first run on a machine resolves its jars from Maven Central)")
        kafka = start_apache_kafka(scratch, brokers=1)
        try:
            yield kafka.bootstrap
        finally:
            kafka.stop()
        return
    from streams.runner import embedded_broker
    from streams.settings import Settings

    broker = embedded_broker(Settings(data_dir=scratch, embedded="memory" if args.memory else "kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def say(message: str) -> None:
    """Progress for the person watching, on stderr; the figures go to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's main; a BenchError ends it with its message and status 1."""
    try:
        main()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


# ---------------------------------------------------------------- the shop

class Shop:
    """Records for every input topic of a coffee shop, each story consistent with what came before."""

    def __init__(self, seed: int = 7, skus: int = 200, customers: int = 2000, short_share: float = 0.1,
                 tag: str = "b") -> None:
        self.rng = random.Random(seed)
        self.tag = tag
        self._n = 0
        rng = self.rng
        self.catalog: list[dict] = []
        for i in range(skus):
            category, low, high = CATEGORIES[i % len(CATEGORIES)]
            self.catalog.append({"sku": f"{category[:4].upper()}-{i:04d}", "name": f"{category.title()} item {i}",
                                 "category": category, "price_cents": rng.randrange(low, high, 10)})
        self.price = {item["sku"]: item["price_cents"] for item in self.catalog}
        self.skus = [item["sku"] for item in self.catalog]
        # A few SKUs sell most: orders pick SKUs by a Zipf-like weight.
        self.sku_weights = [1.0 / (rank + 1) ** 0.8 for rank in range(skus)]
        self.short_skus = set(rng.sample(self.skus, max(1, int(skus * short_share)))) if short_share > 0 else set()
        self.stock = {sku: (rng.randint(0, 3) if sku in self.short_skus else rng.randint(200, 2000))
                      for sku in self.skus}
        self.customers: list[dict] = []
        for i in range(customers):
            self.customers.append({"customer_id": f"C-{i:05d}",
                                   "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                                   "tier": rng.choices(["standard", "gold", "platinum"], weights=[7, 2, 1])[0],
                                   "lifetime_value_cents": rng.randint(5_000, 300_000),
                                   "preferred_channel": rng.choice(["email", "chat", "phone", "sms"]),
                                   "language": rng.choice(["en", "en", "hi", "bn"])})
        self.sessions: list[dict] = []
        self.open_orders: deque[dict] = deque(maxlen=20_000)
        self.shipped: deque[dict] = deque(maxlen=20_000)
        self.tickets: deque[dict] = deque(maxlen=5_000)
        self.failed_payments: deque[dict] = deque(maxlen=1_000)
        self.placed = 0

    def event_id(self, kind: str) -> str:
        self._n += 1
        return f"{kind}-{self.tag}-{self._n}"

    def customer(self) -> str:
        return self.rng.choice(self.customers)["customer_id"]

    def pick_skus(self, k: int) -> list[str]:
        picked: list[str] = []
        while len(picked) < k:
            sku = self.rng.choices(self.skus, weights=self.sku_weights)[0]
            if sku not in picked:
                picked.append(sku)
        return picked

    # -- reference data and opening stock (read by the worker outside its group)

    def reference(self, ts: int) -> list[tuple[topics.TopicSpec, dict]]:
        out = [(topics.CATALOG, {"event_id": self.event_id("cat"), "ts": ts, "active": True, **item})
               for item in self.catalog]
        out += [(topics.CUSTOMERS, {"event_id": self.event_id("cus"), "ts": ts,
                                    "email": f"{c['customer_id'].lower()}@example.com", **c})
                for c in self.customers]
        return out

    def opening_stock(self, ts: int) -> list[tuple[topics.TopicSpec, dict]]:
        return [(topics.INVENTORY, self.stock_level(sku, self.stock[sku], ts)) for sku in self.skus]

    def stock_level(self, sku: str, available: int, ts: int) -> dict:
        return {"event_id": self.event_id("stk"), "ts": ts, "event_type": "stock_level", "sku": sku,
                "available": available, "warehouse": "BLR-1"}

    # -- one event of a topic

    def next_record(self, topic: str, ts: int) -> dict:
        return getattr(self, f"_{topic}")(ts)

    def _web(self, ts: int) -> dict:
        rng = self.rng
        if len(self.sessions) < 40 or rng.random() < 0.05:
            self.sessions.append(self._plan_session())
        index = rng.randrange(len(self.sessions))
        session = self.sessions[index]
        step = session["steps"].popleft()
        if not session["steps"]:
            self.sessions[index] = self.sessions[-1]
            self.sessions.pop()
        return {"event_id": self.event_id("web"), "ts": ts, "session_id": session["session_id"],
                "customer_id": session["customer_id"], "sku": None, "qty": None, "cart_item_count": None,
                "status_code": None, "order_id": None, "found": None, **step}

    def _plan_session(self) -> dict:
        """Several page views, and for some a cart and a checkout; now and then an error or a lookup."""
        rng = self.rng
        steps: deque[dict] = deque()
        for _ in range(rng.randint(2, 6)):
            if rng.random() < 0.3:
                steps.append({"event_type": "page_view", "page": f"/p/{rng.choice(self.skus)}"})
            else:
                steps.append({"event_type": "page_view", "page": rng.choice(PAGES)})
            if rng.random() < 0.01:
                steps.append({"event_type": "error", "page": rng.choice(PAGES), "status_code": rng.choice([500, 503])})
        if self.open_orders and rng.random() < 0.04:
            order = rng.choice(self.open_orders)
            steps.append({"event_type": "order_lookup", "page": "/account/orders", "order_id": order["order_id"],
                          "found": True})
        if rng.random() < 0.35:
            items = 0
            for sku in self.pick_skus(rng.choice([1, 1, 2])):
                qty = rng.randint(1, 2)
                items += qty
                steps.append({"event_type": "cart_add", "page": f"/p/{sku}", "sku": sku, "qty": qty,
                              "cart_item_count": items})
            steps.append({"event_type": "cart_view", "page": "/cart", "cart_item_count": items})
            if rng.random() < 0.6:
                steps.append({"event_type": "checkout_started", "page": "/checkout", "cart_item_count": items})
                if rng.random() < 0.85:
                    steps.append({"event_type": "checkout_completed", "page": "/checkout/done"})
        anonymous = rng.random() < 0.3
        return {"session_id": self.event_id("sess"), "customer_id": None if anonymous else self.customer(),
                "steps": steps}

    def _orders(self, ts: int) -> dict:
        rng = self.rng
        roll = rng.random()
        if self.open_orders and roll < 0.30:
            order = self.open_orders.popleft() if rng.random() < 0.8 else self._pop_random(self.open_orders)
            kind = "shipped" if rng.random() < 0.85 else "cancelled"
            if kind == "shipped":
                self.shipped.append(order)
            return self.order_event(kind, order, ts)
        if self.shipped and roll < 0.34:
            return self.order_event("delivered", self.shipped[rng.randrange(len(self.shipped))], ts)
        if self.failed_payments and roll < 0.35:
            # Most failed payments are retried successfully (a few never are: payment_failed alerts).
            return self.order_event("payment_succeeded", self.failed_payments.popleft(), ts)
        if self.open_orders and roll < 0.36:
            order = self.open_orders[rng.randrange(len(self.open_orders))]
            if rng.random() < 0.8:
                self.failed_payments.append(order)
            return self.order_event("payment_failed", order, ts)
        return self.place_order(ts)

    def place_order(self, ts: int, skus: list[str] | None = None, order_id: str | None = None,
                    keep: bool = True) -> dict:
        rng = self.rng
        skus = skus or self.pick_skus(rng.choices([1, 2, 3], weights=[70, 25, 5])[0])
        self.placed += 1
        order = {"order_id": order_id or self.event_id("O"), "customer_id": self.customer(),
                 "lines": [{"sku": sku, "qty": rng.randint(1, 3), "unit_price_cents": self.price.get(sku, 1000)}
                           for sku in skus]}
        if keep:
            self.open_orders.append(order)
        record = self.order_event("placed", order, ts)
        record["lines"] = order["lines"]
        record["channel"] = rng.choice(["web", "web", "web", "app", "email-campaign"])
        if rng.random() < 0.1:
            record["promised_ship_by"] = ts + rng.randint(2, 48) * 3_600_000
        return record

    def order_event(self, kind: str, order: dict, ts: int) -> dict:
        return {"event_id": self.event_id("ord"), "ts": ts, "event_type": kind, "order_id": order["order_id"],
                "customer_id": order["customer_id"], "lines": [], "promised_ship_by": None, "channel": None}

    def _inventory(self, ts: int) -> dict:
        rng = self.rng
        sku = rng.choice(self.skus)
        if sku in self.short_skus:
            level = rng.randint(0, 3)
        else:
            level = self.stock[sku] - rng.randint(1, 40)
            if level < 100:
                level += rng.randint(500, 1500)  # a delivery
        self.stock[sku] = level
        return self.stock_level(sku, level, ts)

    def _support(self, ts: int) -> dict:
        rng = self.rng
        roll = rng.random()
        if self.tickets and roll < 0.55:
            ticket = self._pop_random(self.tickets) if rng.random() < 0.5 else self.tickets.popleft()
            if ticket["waiting"]:
                kind = "agent_replied"
            else:
                kind = rng.choices(["customer_replied", "ticket_resolved"], weights=[1, 3])[0]
            ticket["waiting"] = kind == "customer_replied"
            if kind != "ticket_resolved":
                self.tickets.append(ticket)
            return self.ticket_event(kind, ticket, ts, agent_id=f"agent-{rng.randint(1, 12)}"
                                     if kind == "agent_replied" else None)
        return self.open_ticket(ts)

    def open_ticket(self, ts: int, channel: str | None = None, customer_id: str | None = None,
                    ticket_id: str | None = None, keep: bool = True) -> dict:
        rng = self.rng
        category, text = rng.choice(TICKET_TEXTS)
        ticket = {"ticket_id": ticket_id or self.event_id("TKT"), "customer_id": customer_id or self.customer(),
                  "channel": channel or rng.choices(["chat", "email", "phone", "social", "sms"],
                                                    weights=[35, 35, 15, 10, 5])[0],
                  "waiting": True}
        if keep:
            self.tickets.append(ticket)
        order_id = self.open_orders[-1]["order_id"] if self.open_orders and category == "order_status" else None
        return self.ticket_event("ticket_opened", ticket, ts, category=category, text=text, order_id=order_id,
                                 language="en")

    def ticket_event(self, kind: str, ticket: dict, ts: int, **extra) -> dict:
        record = {"event_id": self.event_id("sup"), "ts": ts, "event_type": kind, "ticket_id": ticket["ticket_id"],
                  "customer_id": ticket["customer_id"], "channel": ticket["channel"], "category": None,
                  "text": None, "order_id": None, "agent_id": None, "language": None}
        record.update(extra)
        return record

    def _returns(self, ts: int) -> dict:
        rng = self.rng
        pool = self.shipped or self.open_orders
        if pool:
            order = pool[rng.randrange(len(pool))]
        else:  # nothing shipped in this run yet: an order from before it
            order = {"order_id": self.event_id("O-OLD"), "customer_id": self.customer(),
                     "lines": [{"sku": self.pick_skus(1)[0], "qty": 1}]}
        line = rng.choice(order["lines"])
        return {"event_id": self.event_id("ret"), "ts": ts, "return_id": self.event_id("R"),
                "order_id": order["order_id"], "customer_id": order["customer_id"], "sku": line["sku"],
                "qty": 1, "reason": rng.choice(RETURN_REASONS)}

    def _feedback(self, ts: int) -> dict:
        rng = self.rng
        kind = rng.choices(["csat", "nps", "review", "social_mention"], weights=[40, 30, 20, 10])[0]
        score = {"csat": lambda: rng.choices([1, 2, 3, 4, 5], weights=[5, 5, 10, 35, 45])[0],
                 "nps": lambda: rng.choices(range(11), weights=[2, 1, 1, 1, 2, 3, 5, 10, 20, 25, 30])[0],
                 "review": lambda: rng.choices([1, 2, 3, 4, 5], weights=[5, 5, 10, 30, 50])[0],
                 "social_mention": lambda: rng.choice([-3, -1, 0, 1, 2, 3, 3])}[kind]()
        order_id = self.shipped[-1]["order_id"] if self.shipped and kind in ("csat", "review") else None
        return {"event_id": self.event_id("fbk"), "ts": ts, "event_type": kind, "customer_id": self.customer(),
                "score": score, "text": None if score is None or score > 2 else "Not happy with this.",
                "order_id": order_id, "ticket_id": None}

    def _pop_random(self, pool: deque) -> dict:
        index = self.rng.randrange(len(pool))
        pool.rotate(-index)
        item = pool.popleft()
        pool.rotate(index)
        return item


def mix_events(shop: Shop, mix: str, events: int, start_ms: int, end_ms: int,
               opening_stock: bool = True) -> Iterator[tuple[topics.TopicSpec, dict]]:
    """`events` input events of `mix`, event times spread evenly from start_ms to end_ms.

    Every SKU's opening stock level comes first (and counts among the events)
    when the mix has stock at all; then each event's topic is drawn by the
    mix's shares.
    """
    weights = MIXES[mix]
    names, shares = list(weights), list(weights.values())
    span = max(1, end_ms - start_ms)
    n = 0

    def ts_of(i: int) -> int:
        return start_ms + span * i // max(1, events - 1)

    if opening_stock and "inventory" in weights:
        for spec, record in shop.opening_stock(start_ms):
            if n >= events:
                return
            record["ts"] = ts_of(n)
            yield spec, record
            n += 1
    while n < events:
        topic = shop.rng.choices(names, weights=shares)[0]
        yield topics.BY_NAME[topic], shop.next_record(topic, ts_of(n))
        n += 1


# ---------------------------------------------------------------- producing

class Sender:
    """Encodes and produces records keyed by their topic's key field; counts them per topic."""

    def __init__(self, settings: Settings, bootstrap: str, **producer_overrides) -> None:
        self.settings = settings
        self.codec = Codec()
        # Warnings and errors only: the broker closing an idle connection is not news.
        self.producer = producer_for(bootstrap, **{"log_level": 4, **producer_overrides})
        self.counts: Counter[str] = Counter()
        self.failed = 0

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self.failed += 1

    def send(self, spec: topics.TopicSpec, record: dict) -> None:
        name = self.settings.topic(spec.name)
        key = record.get(spec.key_field)
        value = self.codec.encode(spec.schema, record, topic=name)
        while True:
            try:
                self.producer.produce(name, key=None if key is None else str(key).encode(), value=value,
                                      on_delivery=self._delivered)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)
        self.counts[spec.name] += 1

    def send_all(self, items: Iterable[tuple[topics.TopicSpec, dict]]) -> int:
        before = sum(self.counts.values())
        for spec, record in items:
            self.send(spec, record)
        return sum(self.counts.values()) - before

    def flush(self, timeout: float = 300.0) -> None:
        left = self.producer.flush(timeout)
        if left:
            raise BenchError(f"{left} messages still unsent {timeout:.0f}s after the last produce; is the broker up?")
        if self.failed:
            raise BenchError(f"the broker refused {self.failed} messages; see the broker's log")

    def close(self) -> None:
        """Flush and let the producer go, so an idle client does not linger (and log) through the run."""
        self.flush()
        self.producer = None


def describe_counts(counts: Counter) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.most_common())


# ---------------------------------------------------------------- the worker

def worker_datadir(settings: Settings) -> Path:
    """Where the worker keeps its files, including the `ready` marker (wherever the runtime defines it)."""
    try:
        from streams.app import worker_datadir as datadir
    except ImportError:
        try:
            from streams.runtime import worker_datadir as datadir
        except ImportError:
            # The layout the worker has used so far.
            return settings.data_dir / "faust" / f"{settings.topic('forewarn')}-{settings.worker_id or 'worker'}"
    return datadir(settings)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system, every thread) process `pid` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WorkerProcess:
    """One `python -m streams worker` in a child process, its log in the scratch directory."""

    def __init__(self, settings: Settings, bootstrap: str, worker_id: str, log_path: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings.with_(worker_id=worker_id)
        self.log_path = log_path
        env = dict(os.environ, FOREWARN_KAFKA=bootstrap, FOREWARN_DATA_DIR=str(settings.data_dir),
                   FOREWARN_TOPIC_PREFIX=settings.topic_prefix, FOREWARN_WORKER_ID=worker_id,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env.update(extra_env or {})
        # A port of its own for /metrics, so a benchmark can see when it processed its first event.
        self.metrics_port: int | None = None
        if "FOREWARN_METRICS_ADDR" not in env:
            self.metrics_port = free_port()
            env["FOREWARN_METRICS_ADDR"] = f"127.0.0.1:{self.metrics_port}"
        self.marker = worker_datadir(self.settings) / "ready"
        self.marker.unlink(missing_ok=True)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], cwd=REPO, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self) -> bool:
        return self.marker.exists()

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise BenchError(f"the worker exited with status {code}; its log ends:\n{log_tail(self.log_path)}")

    def _wait_until(self, done: Callable[[], object], timeout: float, interval: float, failure: str) -> float:
        """Poll `done` while the worker lives; returns the monotonic time it held, or raises `failure`."""
        deadline = time.monotonic() + timeout
        while not done():
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{failure}; its log ends:\n{log_tail(self.log_path)}")
            time.sleep(interval)
        return time.monotonic()

    def wait_ready(self, timeout: float) -> float:
        """Wait for the ready marker; returns the monotonic time it appeared."""
        return self._wait_until(self.ready, timeout, 0.1,
                                f"the worker did not join its group within {timeout:.0f}s (no {self.marker})")

    def events_processed(self) -> float | None:
        """The worker's `forewarn_events_processed_total` over every topic, from its /metrics; None: not served."""
        if self.metrics_port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("forewarn_events_processed_total{"))

    def wait_first_event(self, timeout: float) -> float:
        """Poll /metrics every 20 ms until the worker has processed an event; returns that monotonic time."""
        return self._wait_until(self.events_processed, timeout, 0.02,
                                f"the worker processed no event within {timeout:.0f}s")

    def wait_joined(self, bootstrap: str, timeout: float) -> tuple[float, str]:
        """Wait until the worker's consumer group (new in each run) is stable: joined, partitions assigned.

        Returns the monotonic time and how it was seen. The group's state, asked
        of the broker every 0.1 s, comes first; the ready marker, written by a
        timer in the worker that can run late while the agents are busy, is the
        fallback for a broker that cannot describe groups.
        """
        from confluent_kafka import ConsumerGroupState
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(kafka_client_config(bootstrap))
        group = self.settings.topic("forewarn")
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                described = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=5)
                # Stable: the join and the assignment are done. (The embedded broker lists no members.)
                if described.state == ConsumerGroupState.STABLE:
                    return time.monotonic(), "group stable"
            except Exception:  # noqa: BLE001 - any failure here means "not known yet"; the marker decides
                pass
            if self.ready():
                return time.monotonic(), "ready marker"
            if time.monotonic() > deadline:
                raise BenchError(f"the worker did not join its group within {timeout:.0f}s "
                                 f"(no {self.marker}); its log ends:\n{log_tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)
        self._log.close()


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").rstrip()
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty log)"


def group_topics(settings: Settings) -> list[str]:
    """Every topic the detection workers' consumer group reads, with the run's prefix."""
    return [settings.topic(spec.name) for spec in topics.GROUP_INPUTS]


def wait_for_zero_lag(bootstrap: str, settings: Settings, worker: WorkerProcess, timeout: float,
                      progress_every: float = 30.0, on_poll: Callable[[int | None], None] | None = None,
                      poll_s: float = 0.25) -> float:
    """Wait until the workers' group has committed everything on every GROUP_INPUTS topic.

    Returns the monotonic time zero lag was first seen, asked every `poll_s`
    (each look is three requests to the broker). Internal topics count: the
    work an input causes is done only once the stage it was sent to has
    committed it too. `on_poll` is called with each reading (None: unknown).
    """
    from streams.follow import LagProbe

    group, watched = settings.topic("forewarn"), group_topics(settings)
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    with LagProbe(bootstrap) as probe:
        while True:
            worker.check_alive()
            lag = probe.total(group, watched)
            now = time.monotonic()
            if on_poll is not None:
                on_poll(lag)
            if lag == 0:
                return now
            if now > deadline:
                raise BenchError(f"the worker's group still had {lag if lag is not None else 'unknown'} messages "
                                 f"to commit {timeout:.0f}s on (raise --timeout); worker log: {worker.log_path}")
            if now - last_report >= progress_every:
                last_report = now
                say(f"group lag {lag if lag is not None else 'unknown'}")
            time.sleep(poll_s)


def uncommitted(bootstrap: str, settings: Settings, names: list[str]) -> int | None:
    """The workers' group lag right now over the topics `names` (None: unknown)."""
    from streams.follow import group_lag

    return group_lag(bootstrap, settings.topic("forewarn"), names)


def memory_of(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS (current) of a process, in kB, from /proc/PID/status."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                out[name] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out
