"""Everything a worker writes, through two idempotent confluent-kafka producers.

Alerts, signals to other stages, task versions, dead letters and the stages'
changelog records all go through ``Output``. ``send`` only queues (librdkafka
batches and sends from its own thread), so a stage never waits for the broker
while it processes an event.

Changelog records go through a second producer of their own (``bulk=True``),
on a connection of its own: a broker handles the requests of one connection
one at a time, in order, and the changelog records of a whole commit
interval, sent at once before each commit, held the signals and alerts sent
just after them for 100–250 ms (measured with bench/latency_bench.py: the
slowest out-of-stock alerts were those whose hops fell in a commit).

``settled()`` waits until everything queued so far on either producer has
been acknowledged by the broker: the runtime awaits it before each offset
commit, which is what makes processing at least once.

Keys are hashed with murmur2 like every other producer of these topics
(``streams.produce``), so a record keyed for another stage lands on the
partition number that stage reads for that key.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from confluent_kafka import KafkaError, Producer

from streams.brokers import confluent_producer_overrides
from streams.kafka_security import kafka_client_config, not_authorized
from streams.words import counted

log = logging.getLogger(__name__)


# What each producer may hold queued and unacknowledged, in kilobytes. librdkafka's default (1 GB)
# let a worker that reads faster than the broker takes its writes queue hundreds of megabytes of
# records, which its allocator then kept: `bench/memory_bench.py --orders 300000` peaked at
# 818-846 MB with the default and 729 MB with this bound (and ran no slower). A full queue makes
# `send` wait, which stops the stage reading more (backpressure).
QUEUE_MAX_KBYTES = 32 * 1024


class OutputFailed(RuntimeError):
    """A record the worker sent was not written: its input must not be committed."""


class Output:
    def __init__(self, bootstrap: str, linger_ms: int = 5) -> None:
        config = kafka_client_config(bootstrap, {
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "compression.type": "none",
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": QUEUE_MAX_KBYTES,
            "on_delivery": self._delivered,
            **confluent_producer_overrides(bootstrap),
        })
        self.producer = Producer(config)
        self.bulk_producer = Producer(config)
        self.sent = 0
        self.delivered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        # Delivery reports are served by this thread alone, so the counters have one writer.
        self._poller = threading.Thread(target=self._poll, name="forewarn-output", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.02)
            self.bulk_producer.poll(0.005)

    def _delivered(self, err: KafkaError | None, msg) -> None:
        if err is not None:
            if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                # An ACL taken away while the worker runs: say which, as the start-up check would.
                self.failures.append(not_authorized("write", msg.topic()))
            else:
                self.failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")
        self.delivered += 1

    def send(self, topic: str, key: bytes | None, value: bytes | None, *, partition: int | None = None,
             headers: list | None = None, bulk: bool = False) -> None:
        """Queue one record; `bulk`: on the producer of changelog records (see the module's docstring)."""
        if self.failures:
            raise OutputFailed(f"earlier records were not written: {self.failures[0]}")
        kwargs = {} if partition is None else {"partition": partition}
        if headers:
            kwargs["headers"] = headers
        producer = self.bulk_producer if bulk else self.producer
        while True:
            try:
                producer.produce(topic, value, key, **kwargs)
                break
            except BufferError:
                # The local queue is full: the broker is slow or gone. Wait here (the poller
                # thread serves deliveries meanwhile), which stops the stage reading more:
                # backpressure, nothing dropped.
                time.sleep(0.01)
        self.sent += 1

    async def settled(self, timeout_s: float = 120.0) -> None:
        """Wait until every record sent so far is acknowledged; raise OutputFailed if any was not."""
        target = self.sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        delay = 0.001
        while self.delivered < target and not self.failures:
            if loop.time() > deadline:
                raise OutputFailed(f"{counted(target - self.delivered, 'record')} not acknowledged within "
                                   f"{timeout_s:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        if self.failures:
            raise OutputFailed(f"records were not written: {self.failures[0]}")

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._poller.join(timeout=1)
        self.producer.flush(timeout_s)
        self.bulk_producer.flush(timeout_s)
