"""Reference data every worker holds in full: catalog, customers and the latest stock levels.

Faust's GlobalTable does not reliably hold other workers' writes (see the
README's design notes), so each worker reads these topics itself with a plain
consumer that is assigned every partition and belongs to no consumer group,
the way Kafka Streams builds a global table. The views are only used to
enrich alerts (names, tiers, in-stock alternatives); the join that decides
whether an order is short runs on co-partitioned data, never on these views.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from schemas.codec import Codec, DecodeError
from streams import topics
from streams.detectors.stock import Reference
from streams.kafka_security import kafka_client_config
from streams.settings import Settings

log = logging.getLogger(__name__)


class ReferenceView:
    """Follows catalog, customers and inventory from the beginning in a background thread."""

    def __init__(self, settings: Settings, bootstrap: str, codec: Codec | None = None) -> None:
        self._settings = settings
        self._bootstrap = bootstrap
        self._codec = codec or Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
        # Copy-on-write for the catalog (alternatives iterate over it from another
        # thread); point lookups only for the other two, so they update in place.
        self.catalog: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        self.stock: dict[str, int] = {}
        self._stock_ts: dict[str, int] = {}
        self._loaded = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.undecodable = 0

    def reference(self) -> Reference:
        return Reference(catalog=self.catalog, stock=self.stock, customers=self.customers)

    def start(self, timeout: float = 30.0) -> None:
        """Start following and wait until everything that existed at start has been read."""
        self._thread = threading.Thread(target=self._run, name="forewarn-reference", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._loaded.wait(0.1):
            if self._error is not None:
                raise RuntimeError(f"reading reference topics failed: {self._error}") from self._error
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"reference topics (catalog, customers, inventory) not read to their end within {timeout:.0f}s "
                    f"from {self._bootstrap}"
                )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self._follow()
        except BaseException as exc:  # surfaced by start(); logged for a running worker
            self._error = exc
            log.exception("reference view stopped")

    def _follow(self) -> None:
        names = {
            self._settings.topic(topics.CATALOG.name): self._apply_catalog,
            self._settings.topic(topics.CUSTOMERS.name): self._apply_customer,
            self._settings.topic(topics.INVENTORY.name): self._apply_stock,
        }
        consumer = Consumer(
            kafka_client_config(self._bootstrap, {
                # Assigned, never subscribed: the group id is only a required label, no offsets are committed.
                "group.id": self._settings.topic("forewarn-reference"),
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            })
        )
        try:
            metadata = consumer.list_topics(timeout=10)
            assignment = []
            for name in names:
                topic_meta = metadata.topics.get(name)
                if topic_meta is None or topic_meta.error is not None:
                    raise RuntimeError(f"topic {name} does not exist (run `forewarn topics create`)")
                assignment += [TopicPartition(name, p, OFFSET_BEGINNING) for p in topic_meta.partitions]
            consumer.assign(assignment)
            pending = {(tp.topic, tp.partition) for tp in assignment}
            while not self._stop.is_set():
                batch = consumer.consume(num_messages=1000, timeout=0.2)
                catalog_updates: dict[str, dict] = {}
                for message in batch:
                    if message.error() is not None:
                        if message.error().code() == -191:  # _PARTITION_EOF: read to the end
                            pending.discard((message.topic(), message.partition()))
                            continue
                        raise KafkaException(message.error())
                    apply: Callable = names[message.topic()]
                    try:
                        _, record = self._codec.decode(message.value())
                    except DecodeError:
                        # The worker's agents dead-letter undecodable input; here it is only skipped.
                        self.undecodable += 1
                        continue
                    apply(record, catalog_updates)
                if catalog_updates:
                    merged = dict(self.catalog)
                    merged.update(catalog_updates)
                    self.catalog = merged
                if not pending:
                    self._loaded.set()
        finally:
            consumer.close()

    def _apply_catalog(self, record: dict, updates: dict[str, dict]) -> None:
        updates[record["sku"]] = record

    def _apply_customer(self, record: dict, _updates: dict) -> None:
        self.customers[record["customer_id"]] = record

    def _apply_stock(self, record: dict, _updates: dict) -> None:
        sku = record["sku"]
        # Absolute levels: the newest by event time wins, whatever order they are read in.
        if record["ts"] >= self._stock_ts.get(sku, record["ts"]):
            self._stock_ts[sku] = record["ts"]
            self.stock[sku] = record["available"]
