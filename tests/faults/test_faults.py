"""Kill a broker, then a worker, while 50,000 events stream through two detection workers.

Each test plays the replayable workload of tests/faults/workload.py into a
three-broker cluster (replication factor 3, min.insync.replicas=2) at a steady
pace while two workers detect, kills one process with SIGKILL a third of the
way in and restarts it, then checks the outcome against what the workload
says must happen:

* every expected out_of_stock_open_order alert is there, and no other;
* each order has one alert episode: `open`, or `open` then `resolved` for the
  short orders that were cancelled; never an `open` after its resolution;
* the workers' consumer group reaches zero lag (nothing is stuck);
* and it reports how long detection was interrupted, measured with canary
  orders on an out-of-stock SKU produced every quarter second: the alert's
  detection time minus the canary's production time.
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
from pathlib import Path

import pytest

from aiokafka import AIOKafkaProducer
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from schemas.codec import Codec, DecodeError
from streams import topics
from streams.app import worker_is_ready
from streams.brokers import single_record_batches
from streams.embedded import die_with_parent_hook
from streams.follow import read_topic
from streams.settings import Settings
from tests.faults.workload import build
from tests.integration.helpers import Workers, forewarn_env, run_forewarn, wait_for

RATE = float(os.environ.get("FOREWARN_FAULT_RATE", "250"))  # workload events per second
CANARY_EVERY_S = 0.25
CANARY_SKU = "F-CANARY"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class PacedProducer(threading.Thread):
    """Plays the workload at RATE events/s and a canary order every CANARY_EVERY_S seconds.

    It uses aiokafka, not librdkafka: librdkafka 2.x can crash the whole process
    with a segmentation fault when a broker dies under an idempotent producer,
    which would take the test down with the broker it kills.
    """

    def __init__(self, bootstrap: str, prefix: str, events: list[tuple[str, dict]]) -> None:
        super().__init__(name="paced-producer", daemon=True)
        self.bootstrap, self.prefix, self.events = bootstrap, prefix, events
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
                now = time.monotonic()
                if now >= next_canary:
                    await self._canary(producer)
                    next_canary += CANARY_EVERY_S
                due = start + self.sent / RATE
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


def run_with_fault(cluster, tmp_path, fault: str) -> dict:
    prefix = f"f-{fault}-{uuid.uuid4().hex[:6]}-"
    env = forewarn_env(cluster.bootstrap, prefix, tmp_path, FOREWARN_REPLICATION_FACTOR="3")
    created = run_forewarn(["topics", "create"], env)
    assert created.returncode == 0, created.stderr
    workload = build()
    workers = Workers(env, count=2, log_dir=tmp_path).start()
    producer = PacedProducer(cluster.bootstrap, prefix, workload.events)
    try:
        # Canary latencies should measure the fault, not the workers' start-up.
        wait_for(lambda: workers.assert_running() or all(
            worker_is_ready(Settings(data_dir=tmp_path, topic_prefix=prefix, worker_id=f"w{n}")) for n in range(2)),
            timeout=180, what="both workers to be assigned partitions")
        producer.start()
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
        group = f"{prefix}forewarn"
        watched = [f"{prefix}{s.name}" for s in topics.GROUP_INPUTS]
        watch = LagWatch(cluster.bootstrap, group, watched, tmp_path / "lag-watch.log")
        try:
            wait_for_zero_lag(watch, group, workers)
        finally:
            watch.close()
        alerts = [item[1] for item in read_topic(cluster.bootstrap, f"{prefix}alerts", Codec())
                  if not isinstance(item, DecodeError)]
    finally:
        workers.stop()
    try:
        return check_outcome(workload, producer, alerts, fault, fault_started, fault_ended, tmp_path,
                             lag_watch_restarts=len(watch.restarts))
    except AssertionError as failure:
        orders = set(re.findall(r"(?:F-O-\d{6}|CANARY-\d{5})", str(failure))[:5])
        where = write_diagnosis(cluster.bootstrap, prefix, orders, tmp_path)
        raise AssertionError(f"{failure}\n(every message about {sorted(orders)}: {where})") from None


def write_diagnosis(bootstrap: str, prefix: str, order_ids: set[str], tmp_path) -> str:
    """Every message about the failing orders, with its position, from every topic on their path.

    A lifecycle failure after a fault is only explained by what each stage
    read and wrote, in what order: this keeps that evidence beside the worker logs.
    """
    codec = Codec()
    history: dict[str, list] = {order_id: [] for order_id in order_ids}
    for spec in (topics.ORDERS, topics.ORDER_LINES, topics.ORDER_SHORTAGES, topics.ALERTS):
        for partition, offset, timestamp, record in read_positions(bootstrap, f"{prefix}{spec.name}", codec):
            if record.get("order_id") in history:
                history[record["order_id"]].append({"topic": spec.name, "partition": partition, "offset": offset,
                                                    "log_time": timestamp, "record": record})
    path = tmp_path / "diagnosis.json"
    path.write_text(json.dumps(history, indent=2, default=str))
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


def check_outcome(workload, producer, alerts, fault, fault_started, fault_ended, tmp_path,
                  lag_watch_restarts: int = 0) -> dict:
    per_order: dict[str, list[dict]] = {}
    for alert in alerts:
        if alert["rule"] == "out_of_stock_open_order":
            per_order.setdefault(alert["order_id"], []).append(alert)
    expected = workload.short_orders | set(producer.canaries)
    missing = expected - set(per_order)
    unexpected = set(per_order) - expected
    assert not missing, f"{len(missing)} expected alerts missing, e.g. {sorted(missing)[:5]}"
    assert not unexpected, f"{len(unexpected)} unexpected alerts, e.g. {sorted(unexpected)[:5]}"

    redelivered = 0
    for order_id, history in per_order.items():
        assert len({a["alert_id"] for a in history}) == 1, f"{order_id}: more than one episode: {history}"
        # At-least-once processing may deliver one alert message twice after a crash; a consumer
        # dedupes on (alert_id, status, event_ts). What must never happen is a second lifecycle.
        distinct = []
        for alert in history:
            step = (alert["status"], alert["event_ts"])
            if step in distinct:
                redelivered += 1
                continue
            distinct.append(step)
        statuses = [status for status, _ in distinct]
        want = ["open", "resolved"] if order_id in workload.cancelled_short else ["open"]
        assert statuses == want, f"{order_id}: lifecycle {statuses}, expected {want}"
        if order_id in workload.cancelled_short:
            assert history[-1]["details"]["resolution"] == "cancelled"

    latencies = []
    for order_id, produced_ms in producer.canaries.items():
        first_open = min(a["detected_at"] for a in per_order[order_id] if a["status"] == "open")
        latencies.append(((produced_ms / 1000) - fault_started, (first_open - produced_ms) / 1000))
    before = [lat for at, lat in latencies if at < 0]
    during = [lat for at, lat in latencies if 0 <= at <= (fault_ended - fault_started) + 30]
    report = {
        "fault": fault,
        "events": len(workload.events),
        "expected_alerts": len(expected),
        "cancelled_short_orders": len(workload.cancelled_short),
        "alert_messages": len(alerts),
        "redelivered_alert_messages": redelivered,
        "fault_seconds": round(fault_ended - fault_started, 1),
        "median_detection_latency_before_fault_s": round(statistics.median(before), 2) if before else None,
        "max_detection_latency_during_fault_s": round(max(during), 2) if during else None,
        # How much longer than usual detection took at worst: the interruption.
        "detection_interrupted_s": round(max(during) - statistics.median(before), 2) if before and during else None,
        # Times the child process reading the group's lag died (see LagWatch); 0 when all went well.
        "lag_watch_restarts": lag_watch_restarts,
    }
    print(f"\nfault report: {json.dumps(report)}")
    (tmp_path / "fault-report.json").write_text(json.dumps(report, indent=2))
    return report


@pytest.mark.timeout(1500)
def test_broker_killed_and_restarted_mid_stream(cluster, tmp_path):
    report = run_with_fault(cluster, tmp_path, "broker")
    assert report["expected_alerts"] > 700


@pytest.mark.timeout(1500)
def test_worker_killed_and_restarted_mid_stream(cluster, tmp_path):
    report = run_with_fault(cluster, tmp_path, "worker")
    assert report["expected_alerts"] > 700
