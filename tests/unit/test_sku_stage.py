"""The SKU stage's progress markers: held events are released once their time is safe, and only then.

The stage runs here on its real tables (Faust memory tables, no broker) with a
context whose inventory progress the test sets; what it publishes is recorded.
"""

import faust

from streams import topics
from streams.detectors.stock import Reference
from streams.runtime.stage import StageContext
from streams.runtime.state import StageTable
from streams.settings import Settings
from streams.stages.stock import SkuStage

T0 = 1_700_000_000_000
PARTITIONS = 2


class Harness:
    def __init__(self) -> None:
        app = faust.App("test-sku-stage", broker="kafka://localhost:1", store="memory://", autodiscover=False)
        self.stage = SkuStage(Settings(partitions=PARTITIONS), lambda: Reference())
        self.tables = {name: StageTable(app.Table(name, default=None, partitions=PARTITIONS))
                       for name in (self.stage.name, *self.stage.extra_tables)}
        self.inventory_read_to: int | None = 10 ** 15  # caught up
        self.published: list[tuple[str, dict]] = []
        self.reads = 0
        self.ctx = StageContext(self.stage, self.tables, lambda spec, record: self.published.append((spec.name, record)),
                                lambda *args: None, Reference, self._read_up_to, lambda *args: None,
                                lambda *args: None)
        self.ctx.partition = 0
        table = self.tables[self.stage.name]
        get = table.get

        def counting_get(key):
            self.reads += 1
            return get(key)

        table.get = counting_get

    def _read_up_to(self, name: str, partition: int) -> int | None:
        assert name == topics.INVENTORY.name
        return self.inventory_read_to

    def marker(self, source: int, watermark: int) -> None:
        self.stage.apply(self.ctx, topics.WATERMARK_SCHEMA,
                         {"source": f"orders:{source}", "watermark": watermark, "sent_at": 0})

    def stock(self, sku: str, ts: int, available: int) -> None:
        self.stage.apply(self.ctx, topics.INVENTORY.schema,
                         {"event_id": f"s-{sku}-{ts}", "ts": ts, "sku": sku, "available": available})

    def line(self, order_id: str, sku: str, ts: int) -> None:
        self.stage.apply(self.ctx, topics.ORDER_LINES.schema, {
            "event_id": f"o-{order_id}", "ts": ts, "action": "open", "order_id": order_id, "customer_id": "C-1",
            "sku": sku, "qty": 1, "placed_ts": ts, "reason": "placed"})

    def shortages(self) -> list[str]:
        return [record["order_id"] for name, record in self.published if name == topics.ORDER_SHORTAGES.name]


def test_a_line_is_held_until_every_orders_source_has_passed_its_time_then_released_by_a_marker():
    h = Harness()
    h.stock("SKU-1", T0, 0)
    h.line("O-1", "SKU-1", T0 + 1_000)
    assert h.shortages() == []  # no source has reported: nothing is safe yet
    h.marker(0, T0 + 5_000)
    assert h.shortages() == []  # one of two sources
    h.marker(1, T0 + 5_000)
    assert h.shortages() == ["O-1"]


def test_markers_that_leave_the_threshold_where_it_was_do_not_read_the_held_skus_again():
    h = Harness()
    h.marker(0, T0)
    h.marker(1, T0)
    h.line("O-1", "SKU-1", T0 + 10_000)  # held: past the threshold
    h.marker(0, T0 + 20_000)
    reads = h.reads
    for watermark in range(T0 + 21_000, T0 + 30_000, 1_000):
        h.marker(0, watermark)  # source 1 still holds the minimum at T0
    assert h.reads == reads
    h.marker(1, T0 + 20_000)
    assert h.reads > reads  # the threshold moved: the held SKU is looked at again


def test_a_line_held_while_the_stock_input_fell_behind_is_released_when_the_threshold_comes_back():
    h = Harness()
    h.stock("SKU-1", T0, 0)
    h.marker(0, T0 + 5_000)
    h.marker(1, T0 + 5_000)
    h.inventory_read_to = T0  # more stock levels arrived and are not read yet
    h.line("O-1", "SKU-1", T0 + 2_000)
    assert h.shortages() == []
    h.inventory_read_to = 10 ** 15  # read again; the next marker brings back the same threshold as before
    h.marker(0, T0 + 5_000)
    assert h.shortages() == ["O-1"]


def test_after_a_rebalance_the_same_threshold_releases_again():
    h = Harness()
    h.stock("SKU-1", T0, 0)
    h.marker(0, T0 + 5_000)
    h.marker(1, T0 + 5_000)
    # Recovery after a rebalance may bring a SKU state with a held line at or before the threshold.
    h.tables[h.stage.name].put(0, "SKU-1", {
        **h.tables[h.stage.name].get("SKU-1"), "pending": [[T0 + 1_000, "line", {
            "event_id": "o-O-2", "ts": T0 + 1_000, "action": "open", "order_id": "O-2", "customer_id": "C-1",
            "sku": "SKU-1", "qty": 1, "placed_ts": T0 + 1_000, "reason": "placed"}]]})
    progress = h.tables[SkuStage.PROGRESS]
    here = progress.get("p0")
    progress.put(0, "p0", {**here, "holding": ["SKU-1"]})
    h.stage.on_revoked()
    h.marker(0, T0 + 5_000)
    assert h.shortages() == ["O-2"]

