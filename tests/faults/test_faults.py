"""Kill a broker, then a worker, while a shop's 50,000 events stream through two detection workers.

Each test plays the replayable workload of tests/faults/workload.py (orders,
stock, web sessions, support tickets, returns, feedback) into a three-broker
cluster (replication factor 3, min.insync.replicas=2) at a steady pace while
two workers detect, kills one process with SIGKILL a third of the way in and
restarts it, then checks the outcome:

* against an undisturbed run of the same workload on the same cluster (fresh
  topics, no fault, played once per session at the same pace): every alert
  key it raised is raised, no other, and each key ends its episodes the same
  way (``Lifecycles``);
* no key has a second lifecycle: an ``open`` after its ``resolved`` in one
  episode (one alert id);
* every expected out_of_stock_open_order alert is there, and no other: `open`,
  or `open` then `resolved` for the short orders that were cancelled;
* the workers' consumer group reaches zero lag (nothing is stuck);
* and it reports how long detection was interrupted, measured with canary
  orders on an out-of-stock SKU produced every quarter second: the alert's
  detection time minus the canary's production time, and how many alert
  messages were repeated (at least once delivery after a crash).

Why a real run and not the stages driven in-process: a model of the runtime
(signals between stages, the SKU stage's progress markers, each worker's
clock, signal-fed stages judging on the clock as it read a moment before)
could drift from the runtime it stands for; the undisturbed run is the
runtime. The workload keeps every outcome far from its deadline and ends with
a tail that carries every clock past every deadline, so two runs agree on what
fires however their partitions interleave.

Why the reference is paced like the fault runs, although it has no fault to
wait for: it must be the same input, also in the order in which the brokers
take it. Played as fast as the producer can, the three brokers take their
partitions' writes at different speeds, so an older order can reach its
orders partition after a newer order of the same SKU, on another partition,
has been read and allocated. To the SKU stage that older order is late data:
it applies it by re-simulating the SKU's history, which revises what it told
the newer order, and a revision from "not short" back to "short" is a second
episode of that order's alert (README: the out-of-stock rule, late events).
Such a run once gave a short order a second episode without any fault. At
the fault runs' pace, two orders of one short SKU are about a second of wall
time apart, far more than the brokers' skew.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from aiokafka import AIOKafkaProducer
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from schemas.codec import Codec, DecodeError
from streams import topics
from streams.app import read_status, worker_is_ready
from streams.brokers import single_record_batches
from streams.embedded import die_with_parent_hook
from streams.follow import read_topic
from streams.settings import Settings
from tests.faults.workload import RULES, Workload, build
from tests.integration.helpers import Workers, forewarn_env, run_forewarn, wait_for

RATE = float(os.environ.get("FOREWARN_FAULT_RATE", "250"))  # workload events per second
CANARY_EVERY_S = 0.25
CANARY_SKU = "F-CANARY"
WORKERS = 2
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class PacedProducer(threading.Thread):
    """Plays the workload at `rate` events/s and a canary order every CANARY_EVERY_S seconds.

    With `hold_before` it stops before that event, once everything before it
    is acknowledged, sets `holding` and goes on when `release` is set (the
    undisturbed run holds its tail back so).

    It uses aiokafka, not librdkafka: librdkafka 2.x can crash the whole process
    with a segmentation fault when a broker dies under an idempotent producer,
    which would take the test down with the broker it kills.
    """

    def __init__(self, bootstrap: str, prefix: str, events: list[tuple[str, dict]],
                 rate: float = RATE, hold_before: int | None = None) -> None:
        super().__init__(name="paced-producer", daemon=True)
        self.bootstrap, self.prefix, self.events, self.rate = bootstrap, prefix, events, rate
        self.hold_before = hold_before
        self.holding, self.release = threading.Event(), threading.Event()
        self.codec = Codec()
        self.sent = 0
        self.canaries: dict[str, int] = {}  # order_id -> wall ms when produced
        self.event_ts = 0  # the latest event time sent
        self.error: BaseException | None = None
        self._deliveries: list[asyncio.Future] = []

    def run(self) -> None:
        try:
            asyncio.run(self._play())
        except BaseException as exc:
            self.error = exc

    async def _play(self) -> None:
        # acks=all with idempotence: writes continue through a broker outage, without duplicates.
        # (The embedded broker, where the harness can be tried out, has neither idempotence nor
        # exact watermarks for batches: see streams/brokers.py.)
        tansu = single_record_batches(self.bootstrap)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=not tansu,
                                    linger_ms=5, request_timeout_ms=120_000, max_batch_size=1 if tansu else 16384)
        await producer.start()
        try:
            await self._send(producer, "inventory", {"event_id": "stk-canary", "ts": 0,
                                                     "event_type": "stock_level", "sku": CANARY_SKU,
                                                     "available": 0, "warehouse": None})
            start = time.monotonic()
            next_canary = start
            for topic, record in self.events:
                if self.sent == self.hold_before:
                    await producer.flush()
                    await asyncio.gather(*self._deliveries)
                    self.holding.set()
                    await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
                    # The rest at the same pace, from now on.
                    start = time.monotonic() - self.sent / self.rate
                now = time.monotonic()
                if now >= next_canary:
                    await self._canary(producer)
                    next_canary += CANARY_EVERY_S
                due = start + self.sent / self.rate
                if due > now:
                    await asyncio.sleep(due - now)
                await self._send(producer, topic, record)
                self.sent += 1
            await self._canary(producer)
            await producer.flush()
            # Every message must have been acknowledged; a failed delivery raises here.
            await asyncio.gather(*self._deliveries)
        finally:
            await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, topic: str, record: dict) -> None:
        spec = topics.BY_NAME[topic]
        name = f"{self.prefix}{spec.name}"
        self.event_ts = max(self.event_ts, record["ts"])
        value = self.codec.encode(spec.schema, record, topic=name)
        self._deliveries.append(await producer.send(name, key=record[spec.key_field].encode(), value=value))

    async def _canary(self, producer: AIOKafkaProducer) -> None:
        wall = int(time.time() * 1000)
        order_id = f"CANARY-{len(self.canaries):05d}"
        self.canaries[order_id] = wall
        # Event time is the workload's, right after the last event sent: a canary stamped with the
        # wall clock would run months ahead of the workload and move every order source's watermark
        # with it, so the SKU stage could no longer apply order lines in event-time order.
        await self._send(producer, "orders", {"event_id": f"ev-{order_id}", "ts": self.event_ts + 1,
                                              "event_type": "placed",
                                              "order_id": order_id, "customer_id": "F-C-CANARY", "channel": None,
                                              "promised_ship_by": None,
                                              "lines": [{"sku": CANARY_SKU, "qty": 1, "unit_price_cents": 100}]})


class LagWatch:
    """A consumer group's lag, read by a child process (tests/faults/lag_watch.py) once a second.

    The C Kafka client has killed this test process with a segmentation fault
    while it polled the lag as brokers went away and came back (no Python
    traceback). In a child process such a crash costs one reading, not the
    test: the watch says so (the child runs with faulthandler; whatever it
    prints goes to `log_path`), starts another child and goes on. A child that
    gives no reading for HUNG_S is killed and replaced the same way. After a
    broker restart several children in a row have crashed, so there is no cap
    on restarts as such: the test still fails if the lag stops shrinking (see
    wait_for_zero_lag), and the watch gives up when MAX_BARREN children in a
    row died without a single reading (a child that cannot work at all).
    """

    MAX_BARREN = 20
    # Longer than one reading can take: LagProbe makes four requests of at most 10 s each.
    HUNG_S = 60.0

    def __init__(self, bootstrap: str, group: str, watched: list[str], log_path) -> None:
        self.args = [sys.executable, "-X", "faulthandler", "-m", "tests.faults.lag_watch", bootstrap, group, *watched]
        self.log_path = log_path
        self.restarts: list[int] = []
        self.barren = 0  # children in a row that died without a reading
        self._start()

    def _start(self) -> None:
        self.lines: queue.Queue = queue.Queue()
        self.readings = 0
        with open(self.log_path, "ab") as log:
            # From the project's root, where `tests` is importable, wherever pytest was started.
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log, text=True,
                                         cwd=PROJECT_ROOT, preexec_fn=die_with_parent_hook())
        self.pump = threading.Thread(target=self._pump, args=(self.proc, self.lines), daemon=True)
        self.pump.start()

    @staticmethod
    def _pump(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)  # the child is gone

    def read(self) -> dict[tuple[str, int], int] | None:
        """The next reading: messages behind per (topic, partition); None if unknown or none came."""
        try:
            line = self.lines.get(timeout=self.HUNG_S)
        except queue.Empty:
            print(f"lag watch gave no reading for {self.HUNG_S:.0f}s; killing it", flush=True)
            self.proc.kill()  # its pump then reports it gone, and the next read replaces it
            return None
        if line is None:
            self._stop_child()
            code = self.proc.returncode
            self.restarts.append(code)
            print(f"lag watch exited with status {code} (see {self.log_path}); starting another", flush=True)
            self.barren = 0 if self.readings else self.barren + 1
            if self.barren >= self.MAX_BARREN:
                raise AssertionError(f"{self.barren} lag watch children in a row died without a reading "
                                     f"(exit statuses {self.restarts[-self.barren:]}; see {self.log_path})")
            self._start()
            return None
        self.readings += 1
        rows = json.loads(line)
        return None if rows is None else {(t, p): n for t, p, n in rows}

    def _stop_child(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.pump.join(timeout=10)
        self.proc.stdout.close()

    def close(self) -> None:
        self._stop_child()


def wait_for_zero_lag(watch: LagWatch, group: str, workers, stall_s: float = 240) -> None:
    """Wait until the group has committed everything; fail if its lag stops shrinking for `stall_s`.

    Two workers on two cores may take a while to work off a backlog; what
    must not happen is a group that stops making progress. The failure names
    the partitions still behind.
    """
    best = None
    best_at = time.monotonic()
    last_report = 0.0
    while True:
        workers.assert_running()
        behind = watch.read() or {}
        lag = sum(behind.values()) if behind else None
        if lag == 0:
            return
        now = time.monotonic()
        if lag is not None and (best is None or lag < best):
            best, best_at = lag, now
        if now - last_report > 30:
            print(f"lag of {group}: {lag}", flush=True)
            last_report = now
        if now - best_at > stall_s:
            stuck = {f"{t}[{p}]": n for (t, p), n in sorted(behind.items()) if n}
            raise AssertionError(f"the workers' group stopped making progress for {stall_s:.0f}s at lag {lag}: {stuck}")


class Played:
    """What one run of the workload left: its topics' prefix, the alerts, and the fault's times."""

    def __init__(self, prefix: str, producer: PacedProducer, alerts: list[dict], fault_started: float | None,
                 fault_ended: float | None, lag_watch_restarts: int, seconds: float) -> None:
        self.prefix, self.producer, self.alerts = prefix, producer, alerts
        self.fault_started, self.fault_ended = fault_started, fault_ended
        self.lag_watch_restarts, self.seconds = lag_watch_restarts, seconds


def play(cluster, tmp_path, workload: Workload, fault: str | None) -> Played:
    """Run the workload through two fresh workers on fresh topics, with `fault` ("broker", "worker" or None)."""
    began = time.monotonic()
    prefix = f"f-{fault or 'none'}-{uuid.uuid4().hex[:6]}-"
    env = forewarn_env(cluster.bootstrap, prefix, tmp_path, FOREWARN_REPLICATION_FACTOR="3")
    created = run_forewarn(["topics", "create"], env)
    assert created.returncode == 0, created.stderr
    settings = [Settings(data_dir=tmp_path, topic_prefix=prefix, worker_id=f"w{n}") for n in range(WORKERS)]
    workers = Workers(env, count=WORKERS, log_dir=tmp_path).start()
    # The undisturbed run holds the tail back until the main span is processed (see workload.py).
    producer = PacedProducer(cluster.bootstrap, prefix, workload.events,
                             hold_before=workload.tail_index if fault is None else None)
    group = f"{prefix}forewarn"
    watched = [f"{prefix}{s.name}" for s in topics.GROUP_INPUTS]
    fault_started = fault_ended = None
    watch, lag_watch_restarts = None, 0
    try:
        # Canary latencies should measure the fault, not the workers' start-up; and a reference run
        # should not begin with a rebalance either.
        wait_for(lambda: workers.assert_running() or all(worker_is_ready(s) for s in settings),
                 timeout=180, what="both workers to be assigned partitions")
        producer.start()
        if producer.hold_before is not None:
            wait_for(lambda: producer.holding.is_set() or not producer.is_alive(), timeout=600,
                     what="the workload's main span produced")
            watch = LagWatch(cluster.bootstrap, group, watched, tmp_path / "lag-watch.log")
            try:
                wait_for_zero_lag(watch, group, workers)
            finally:
                watch.close()
            producer.release.set()
        if fault is not None:
            wait_for(lambda: producer.sent >= len(workload.events) // 3 or producer.error, timeout=600,
                     what="a third of the workload produced")
            fault_started = time.time()
            if fault == "broker":
                cluster.kill_broker(1)
            else:
                workers.kill(0)
            wait_for(lambda: producer.sent >= len(workload.events) // 2 or not producer.is_alive(), timeout=600,
                     what="half of the workload produced during the fault")
            if fault == "broker":
                cluster.restart_broker(1)
            else:
                workers.restart(0)
            fault_ended = time.time()
        producer.join(timeout=900)
        assert producer.error is None, producer.error
        assert not producer.is_alive(), "the producer did not finish"
        lag_watch_restarts += len(watch.restarts) if watch is not None else 0
        watch = LagWatch(cluster.bootstrap, group, watched, tmp_path / "lag-watch.log")
        try:
            wait_for_zero_lag(watch, group, workers)
        finally:
            watch.close()
        # The tail's last events carry each worker's clock past every deadline of the workload; the
        # deadlines fire on the ticks after that, which no offset commit waits for.
        wait_for(lambda: workers.assert_running() or all(
            ((read_status(s) or {}).get("clock_ms") or 0) > workload.final_ts for s in settings),
            timeout=180, what=f"both workers' clocks to pass the workload's last event time {workload.final_ts}")
        alerts = read_settled_alerts(cluster.bootstrap, prefix, workers)
        # Beside the worker logs: what a failed comparison is read against.
        (tmp_path / "alerts.json").write_text(json.dumps(alerts, default=str))
    finally:
        producer.release.set()  # a producer still holding must not outlive the test
        workers.stop()
    return Played(prefix, producer, alerts, fault_started, fault_ended,
                  lag_watch_restarts + (len(watch.restarts) if watch is not None else 0),
                  time.monotonic() - began)


def read_settled_alerts(bootstrap: str, prefix: str, workers, quiet_s: float = 3.0, timeout: float = 120) -> list[dict]:
    """The alerts topic once two readings `quiet_s` apart find the same messages."""
    codec = Codec()

    def read() -> list[dict]:
        return [item[1] for item in read_topic(bootstrap, f"{prefix}{topics.ALERTS.name}", codec)
                if not isinstance(item, DecodeError)]

    previous = read()
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(quiet_s)  # the interval between two readings, not a wait for anything
        workers.assert_running()
        current = read()
        if len(current) == len(previous):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"the alerts topic was still growing {timeout:.0f}s after zero lag "
                                 f"({len(previous)} -> {len(current)} messages)")
        previous = current


def repeated_steps(alerts: list[dict]) -> Counter:
    """Per rule, `open` and `resolved` messages with the alert id, status and event time of one read before.

    That is what a consumer dedupes on, and what at least once delivery repeats after a crash. An
    `updated` is left out: one key can go back and forth between two figures at one event time (a
    backlog of one ticket, then two, then one), which says the same thing twice without a repeat.
    """
    seen: set[tuple] = set()
    repeated: Counter = Counter()
    for alert in alerts:
        if alert["status"] == "updated":
            continue
        step = (alert["alert_id"], alert["status"], alert["event_ts"])
        if step in seen:
            repeated[alert["rule"]] += 1
        seen.add(step)
    return repeated


def is_canary(alert: dict) -> bool:
    """Alerts about the canaries: timed by the wall clock, so not part of the comparison with the reference."""
    return "CANARY" in alert["dedup_key"]


class Lifecycles:
    """Each dedup key's episodes, from the alert messages in the order of their partition.

    An episode is one alert id: `open`, any `updated`, then `resolved`;
    never `open` again after that (a second lifecycle). An `open` or
    `resolved` repeated (``repeated_steps``) is counted, not applied. What two runs are compared on is
    each key's `shape`: how each of its episodes ended (open or resolved), in
    order. Alert ids and the `updated` steps are not compared: an alert opened
    by a deadline takes its id from the clock reading that fired it, and how
    often a roll-up's figures change depends on when they are looked at.
    """

    def __init__(self, alerts: list[dict]) -> None:
        self.episodes: dict[str, dict[str, list[str]]] = {}
        self.rules: dict[str, str] = {}
        self.prefix: str | None = None  # the run's topic prefix, for the diagnosis
        alerts = [alert for alert in alerts if not is_canary(alert)]
        self.repeated = repeated_steps(alerts)
        seen: set[tuple] = set()
        for alert in alerts:
            step = (alert["alert_id"], alert["status"], alert["event_ts"])
            if alert["status"] != "updated" and step in seen:
                continue
            seen.add(step)
            self.rules[alert["dedup_key"]] = alert["rule"]
            self.episodes.setdefault(alert["dedup_key"], {}).setdefault(alert["alert_id"], []).append(alert["status"])

    def shape(self, key: str) -> tuple[str, ...]:
        return tuple("resolved" if "resolved" in statuses else "open" for statuses in self.episodes[key].values())

    def broken(self) -> dict[str, list[str]]:
        """Keys with an episode that does not start with `open`, or opens again after its `resolved`."""
        out = {}
        for key, episodes in self.episodes.items():
            for statuses in episodes.values():
                resolved = statuses.index("resolved") if "resolved" in statuses else len(statuses)
                if statuses[0] != "open" or "open" in statuses[resolved:]:
                    out[key] = statuses
        return out

    def by_rule(self) -> dict[str, int]:
        return dict(sorted(Counter(self.rules.values()).items()))


class OutcomeFailure(AssertionError):
    """A failed check, with the dedup keys and orders whose messages explain it."""

    def __init__(self, message: str, keys=(), orders=()) -> None:
        super().__init__(message)
        self.keys, self.orders = list(keys)[:10], list(orders)[:5]


def compare_with_reference(actual: Lifecycles, expected: Lifecycles) -> None:
    missing = sorted(set(expected.episodes) - set(actual.episodes))
    unexpected = sorted(set(actual.episodes) - set(expected.episodes))
    differing = sorted(key for key in set(actual.episodes) & set(expected.episodes)
                       if actual.shape(key) != expected.shape(key))
    broken = actual.broken()
    problems = []
    if missing:
        problems.append(f"{len(missing)} expected alert keys missing, e.g. {missing[:5]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected alert keys, e.g. "
                        + ", ".join(f"{k} {actual.shape(k)}" for k in unexpected[:5]))
    if differing:
        problems.append(f"{len(differing)} alert keys ended otherwise than in the undisturbed run, e.g. "
                        + ", ".join(f"{k}: {actual.shape(k)} instead of {expected.shape(k)}" for k in differing[:5]))
    if broken:
        problems.append(f"{len(broken)} alert keys with a second lifecycle in one episode, e.g. "
                        + ", ".join(f"{k}: {v}" for k, v in list(broken.items())[:5]))
    if problems:
        raise OutcomeFailure("; ".join(problems), keys=missing[:3] + unexpected[:3] + differing[:3] + list(broken)[:3])


@pytest.fixture(scope="session")
def undisturbed(cluster, tmp_path_factory) -> Lifecycles:
    """The workload played once without a fault, at the fault runs' pace: what every fault run must match."""
    tmp_path = tmp_path_factory.mktemp("undisturbed")
    workload = build()
    played = play(cluster, tmp_path, workload, fault=None)
    reference = Lifecycles(played.alerts)
    report = {"events": len(workload.events), "alert_messages": len(played.alerts),
              "alert_keys": len(reference.episodes), "repeated_alert_messages": sum(reference.repeated.values()),
              "seconds": round(played.seconds, 1), "keys_by_rule": reference.by_rule()}
    print(f"\nundisturbed run: {json.dumps(report)}")
    (tmp_path / "undisturbed-report.json").write_text(json.dumps(dict(report, stories=workload.stories), indent=2))
    broken = reference.broken()
    assert not broken, f"the undisturbed run has keys with a second lifecycle: {list(broken.items())[:5]}"
    silent = [rule for rule in RULES if rule not in report["keys_by_rule"]]
    assert not silent, f"the workload no longer fires {silent} (see tests/faults/workload.py)"
    check_out_of_stock(workload, played.alerts, set(played.producer.canaries))
    reference.prefix = played.prefix
    return reference


def run_with_fault(cluster, tmp_path, fault: str, reference: Lifecycles) -> dict:
    workload = build()
    played = play(cluster, tmp_path, workload, fault)
    try:
        return check_outcome(workload, played, reference, fault, tmp_path)
    except AssertionError as failure:
        orders = set(re.findall(r"(?:F-O[A-Z]?-[\w-]+|CANARY-\d{5})", str(failure))[:5])
        keys = list(getattr(failure, "keys", []))
        if isinstance(failure, OutcomeFailure):
            orders |= set(failure.orders)
        where = write_diagnosis(cluster.bootstrap, played.prefix, orders, tmp_path, keys=keys,
                                reference_prefix=reference.prefix)
        raise AssertionError(f"{failure}\n(every message about {sorted(orders) + keys}: {where})") from None


# Where the entity of a failing alert key (what follows the rule in the key) is named.
ENTITY_FIELDS = ("order_id", "ticket_id", "session_id", "customer_id", "sku", "key")
ENTITY_TOPICS = (topics.ORDERS, topics.SUPPORT, topics.WEB, topics.RETURNS, topics.FEEDBACK, topics.ORDER_SIGNALS,
                 topics.CHANNEL_SIGNALS, topics.CUSTOMER_SIGNALS, topics.CATEGORY_SIGNALS, topics.PAGE_SIGNALS)


def write_diagnosis(bootstrap: str, prefix: str, order_ids: set[str], tmp_path, keys=(),
                    reference_prefix: str | None = None) -> str:
    """Every message about the failing orders and alert keys, with its position, from every topic on their path.

    A lifecycle failure after a fault is only explained by what each stage
    read and wrote, in what order: this keeps that evidence beside the worker
    logs. For an order: its messages on the order topics and alerts. For an
    alert key: every alert message of the key in this run and in the
    undisturbed one, and every input event and signal naming its entity in this run.
    """
    codec = Codec()

    def position(spec, partition, offset, timestamp, record) -> dict:
        return {"topic": spec.name, "partition": partition, "offset": offset, "log_time": timestamp,
                "record": record}

    history: dict[str, list] = {order_id: [] for order_id in order_ids}
    for spec in (topics.ORDERS, topics.ORDER_LINES, topics.ORDER_SHORTAGES, topics.ALERTS):
        for partition, offset, timestamp, record in read_positions(bootstrap, f"{prefix}{spec.name}", codec):
            if record.get("order_id") in history:
                history[record["order_id"]].append(position(spec, partition, offset, timestamp, record))
    runs = {"this run": prefix, "undisturbed run": reference_prefix}
    by_key: dict[str, dict[str, list]] = {key: {**{run: [] for run in runs}, "inputs": []} for key in keys}
    entities = {key.split(":", 1)[1]: key for key in keys}
    for run, run_prefix in runs.items():
        if run_prefix is None or not by_key:
            continue
        for partition, offset, timestamp, record in read_positions(bootstrap, f"{run_prefix}alerts", codec):
            if record.get("dedup_key") in by_key:
                by_key[record["dedup_key"]][run].append(position(topics.ALERTS, partition, offset, timestamp, record))
    for spec in ENTITY_TOPICS if entities else ():
        for partition, offset, timestamp, record in read_positions(bootstrap, f"{prefix}{spec.name}", codec):
            for name in ENTITY_FIELDS:
                key = entities.get(record.get(name))
                if key is not None:
                    by_key[key]["inputs"].append(position(spec, partition, offset, timestamp, record))
                    break
    path = tmp_path / "diagnosis.json"
    path.write_text(json.dumps({**history, **{f"alert key {k}": v for k, v in by_key.items()}}, indent=2,
                               default=str))
    return str(path)


def read_positions(bootstrap: str, topic: str, codec: Codec):
    """(partition, offset, log time, record) for every decodable message of `topic`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"diagnosis-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        while pending:
            for message in consumer.consume(num_messages=500, timeout=1.0):
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    raise KafkaException(message.error())
                try:
                    record = codec.decode(message.value())[1]
                except DecodeError:
                    continue
                yield message.partition(), message.offset(), message.timestamp()[1], record
    finally:
        consumer.close()


def out_of_stock_alerts(alerts: list[dict]) -> dict[str, list[dict]]:
    per_order: dict[str, list[dict]] = {}
    for alert in alerts:
        if alert["rule"] == "out_of_stock_open_order":
            per_order.setdefault(alert["order_id"], []).append(alert)
    return per_order


def check_out_of_stock(workload: Workload, alerts: list[dict], canaries: set[str]) -> None:
    """Every short order (and canary) has one out_of_stock_open_order episode, as the workload says; no other order."""
    per_order = out_of_stock_alerts(alerts)
    expected = workload.short_orders | canaries
    missing = expected - set(per_order)
    unexpected = set(per_order) - expected
    assert not missing, f"{len(missing)} expected alerts missing, e.g. {sorted(missing)[:5]}"
    assert not unexpected, f"{len(unexpected)} unexpected alerts, e.g. {sorted(unexpected)[:5]}"
    for order_id, history in per_order.items():
        assert len({a["alert_id"] for a in history}) == 1, f"{order_id}: more than one episode: {history}"
        # At-least-once processing may deliver one alert message twice after a crash; a consumer
        # dedupes on (alert_id, status, event_ts). What must never happen is a second lifecycle.
        distinct = []
        for alert in history:
            step = (alert["status"], alert["event_ts"])
            if step not in distinct:
                distinct.append(step)
        statuses = [status for status, _ in distinct]
        want = ["open", "resolved"] if order_id in workload.cancelled_short else ["open"]
        assert statuses == want, f"{order_id}: lifecycle {statuses}, expected {want}"
        if order_id in workload.cancelled_short:
            # The last message is what a view of each alert's latest message (alerts_latest) shows.
            told = [(a["status"], a["event_ts"], a["details"].get("resolution"), a["detected_at"]) for a in history]
            assert history[-1]["details"]["resolution"] == "cancelled", (
                f"{order_id} was cancelled, but its last alert message gives the resolution "
                f"{history[-1]['details'].get('resolution')!r}; (status, event_ts, resolution, detected_at): {told}")


def check_outcome(workload: Workload, played: Played, reference: Lifecycles, fault: str, tmp_path) -> dict:
    producer, alerts = played.producer, played.alerts
    per_order = out_of_stock_alerts(alerts)
    actual = Lifecycles(alerts)

    latencies = []
    for order_id, produced_ms in producer.canaries.items():
        opened = [a["detected_at"] for a in per_order.get(order_id, []) if a["status"] == "open"]
        if opened:  # a missing canary fails check_out_of_stock below
            latencies.append(((produced_ms / 1000) - played.fault_started, (min(opened) - produced_ms) / 1000))
    before = [lat for at, lat in latencies if at < 0]
    during = [lat for at, lat in latencies if 0 <= at <= (played.fault_ended - played.fault_started) + 30]
    report = {
        "fault": fault,
        "events": len(workload.events),
        "expected_alerts": len(workload.short_orders) + len(producer.canaries),
        "cancelled_short_orders": len(workload.cancelled_short),
        # Dedup keys of every rule (canaries aside), all matched with the undisturbed run's.
        "alert_keys": len(actual.episodes),
        "alert_messages": len(alerts),
        # `open` and `resolved` messages with the alert id, status and event time of one read before,
        # canaries included (see repeated_steps).
        "redelivered_alert_messages": sum(repeated_steps(alerts).values()),
        "redelivered_by_rule": dict(sorted(actual.repeated.items())),
        "fault_seconds": round(played.fault_ended - played.fault_started, 1),
        "median_detection_latency_before_fault_s": round(statistics.median(before), 2) if before else None,
        "max_detection_latency_during_fault_s": round(max(during), 2) if during else None,
        # How much longer than usual detection took at worst: the interruption.
        "detection_interrupted_s": round(max(during) - statistics.median(before), 2) if before and during else None,
        # Times the child process reading the group's lag died (see LagWatch); 0 when all went well.
        "lag_watch_restarts": played.lag_watch_restarts,
        "run_seconds": round(played.seconds, 1),
    }
    # Printed before the checks, so a failing run still tells how it went.
    print(f"\nfault report: {json.dumps(report)}")
    (tmp_path / "fault-report.json").write_text(json.dumps(dict(report, keys_by_rule=actual.by_rule()), indent=2))
    compare_with_reference(actual, reference)
    check_out_of_stock(workload, alerts, set(producer.canaries))
    return report


@pytest.mark.timeout(1500)
def test_broker_killed_and_restarted_mid_stream(cluster, tmp_path, undisturbed):
    report = run_with_fault(cluster, tmp_path, "broker", undisturbed)
    assert report["expected_alerts"] > 700 and report["alert_keys"] > 1000


@pytest.mark.timeout(1500)
def test_worker_killed_and_restarted_mid_stream(cluster, tmp_path, undisturbed):
    report = run_with_fault(cluster, tmp_path, "worker", undisturbed)
    assert report["expected_alerts"] > 700 and report["alert_keys"] > 1000
