"""The SKU stage: held events are released once their time is safe, and its state is logged per order.

The stage runs here on its real tables (Faust memory tables, no broker) with a
context whose inventory progress the test sets; what it publishes is recorded.
"""

import json

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

    def line(self, order_id: str, sku: str, ts: int, action: str = "open") -> None:
        self.stage.apply(self.ctx, topics.ORDER_LINES.schema, {
            "event_id": f"o-{order_id}-{action}", "ts": ts, "action": action, "order_id": order_id,
            "customer_id": "C-1", "sku": sku, "qty": 1, "placed_ts": ts,
            "reason": "placed" if action == "open" else "cancelled"})

    def logged(self) -> dict[str, list[tuple[int, bytes, bytes | None]]]:
        """What the runtime would send to each table's changelog at the next commit."""
        return {name: list(table.changes()) for name, table in self.tables.items()}

    def recover_from(self, changelogs: list[dict[str, list[tuple[int, bytes, bytes | None]]]]) -> None:
        """Fill empty tables from changelog records, as Faust's recovery does after a rebalance."""
        for logged in changelogs:
            for name, records in logged.items():
                store = self.tables[name].table.data
                for partition, key, value in records:
                    key = json.loads(key)
                    if value is None:
                        store.data.pop(key, None)
                        store._key_partition.pop(key, None)
                    else:
                        store.data[key] = value
                        store._key_partition[key] = partition

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



def caught_up(h: Harness) -> None:
    for source in range(PARTITIONS):
        h.marker(source, T0 + 10 ** 9)


def test_a_sku_is_logged_as_its_own_record_and_one_record_per_order():
    h = Harness()
    caught_up(h)
    h.stock("SKU-1", T0, 1)
    for n in range(3):
        h.line(f"O-{n}", "SKU-1", T0 + 1_000 + n)
    logged = h.logged()
    (head,) = [value for _, key, value in logged[SkuStage.name] if json.loads(key) == "SKU-1"]
    assert "lines" not in json.loads(head) and "emitted" not in json.loads(head)
    per_order = {tuple(json.loads(json.loads(key))): json.loads(value) for _, key, value in logged[SkuStage.LINES]}
    assert set(per_order) == {("SKU-1", "O-0"), ("SKU-1", "O-1"), ("SKU-1", "O-2")}
    assert per_order[("SKU-1", "O-0")]["told"] is None  # the one unit went to the oldest order
    assert per_order[("SKU-1", "O-2")]["told"][1] == 1 and per_order[("SKU-1", "O-2")]["line"]["qty"] == 1
    # One more order logs its own record and the SKU's, not the other orders' again.
    h.line("O-3", "SKU-1", T0 + 2_000)
    assert [json.loads(json.loads(key)) for _, key, _ in h.logged()[SkuStage.LINES]] == [["SKU-1", "O-3"]]


def test_no_record_grows_with_a_skus_demand():
    h = Harness()
    caught_up(h)
    h.stock("SKU-1", T0, 10_000)
    for n in range(3_000):  # as one record, about 200 kB; 15,000 such lines would pass the broker's 1 MB
        h.line(f"O-{n:05}", "SKU-1", T0 + 1_000 + n)
    logged = h.logged()
    assert len(logged[SkuStage.LINES]) == 3_000
    assert max(len(value) for records in logged.values() for _, _, value in records if value) < 2_000


def test_after_a_rebalance_the_lines_are_read_back_from_their_records():
    h = Harness()
    caught_up(h)
    h.stock("SKU-1", T0, 2)
    for n in range(3):
        h.line(f"O-{n}", "SKU-1", T0 + 1_000 + n)
    assert h.shortages() == ["O-2"]
    first = h.logged()
    h.line("O-0", "SKU-1", T0 + 5_000, action="cancel")  # O-2 gets O-0's unit
    taken_over = Harness()
    taken_over.recover_from([first, h.logged()])
    # The worker that takes the partition over knows all three orders and who was told what.
    taken_over.stock("SKU-1", T0 + 6_000, 1)  # one unit left: for O-1, placed before O-2
    assert taken_over.shortages() == ["O-2"]
    (told,) = [record for name, record in taken_over.published if name == topics.ORDER_SHORTAGES.name]
    assert told["short"] == 1 and told["reason"] == "stock_level"
    # The first worker, had it kept the partition, would have said the same.
    h.published.clear()
    h.stock("SKU-1", T0 + 6_000, 1)
    assert [r for n, r in h.published if n == topics.ORDER_SHORTAGES.name] == [told]


def test_a_sku_logged_before_the_per_order_records_moves_its_lines_to_them():
    h = Harness()
    caught_up(h)
    h.tables[SkuStage.name].put(0, "SKU-1", {
        **h.stage._new(h.ctx, "SKU-1"), "lines": {"O-1": {"qty": 2, "placed_ts": T0, "event_id": "o-O-1"}},
        "emitted": {"O-1": [T0, 2]}, "levels": [[T0, 0, "s-0"]], "latest_ts": T0})
    h.logged()
    h.stock("SKU-1", T0 + 1_000, 1)  # O-1 is now one unit short, not two
    assert [(r["order_id"], r["short"]) for n, r in h.published if n == topics.ORDER_SHORTAGES.name] == [("O-1", 1)]
    logged = h.logged()
    (head,) = [json.loads(value) for _, _, value in logged[SkuStage.name]]
    assert "lines" not in head and "emitted" not in head
    (record,) = [json.loads(value) for _, _, value in logged[SkuStage.LINES]]
    assert record == {"line": {"qty": 2, "placed_ts": T0, "event_id": "o-O-1"}, "told": [T0 + 1_000, 1]}


def _assert_tallies_match_a_recount(stage: SkuStage) -> None:
    for lines, told in stage._views.values():
        open_lines = [line for line in lines.values() if line.get("closed_ts") is None]
        told_short = [units for _, units in told.values() if units > 0]
        assert (lines.counted, lines.total) == (len(open_lines), sum(line["qty"] for line in open_lines))
        assert (told.counted, told.total) == (len(told_short), sum(told_short))


def test_the_running_tallies_of_a_skus_lines_match_a_recount_also_when_read_back_after_a_rebalance():
    import random

    rng = random.Random(5)
    h = Harness()
    caught_up(h)
    changelogs = []
    opened: list[str] = []
    for n in range(400):
        sku = rng.choice(("SKU-1", "SKU-2"))
        ts = T0 + n * 10 - (rng.randint(1, 40) if rng.random() < 0.1 else 0)
        roll = rng.random()
        if roll < 0.15:
            h.stock(sku, ts, rng.choice((0, 3, 10, 100)))
        elif roll < 0.3 and opened:
            h.line(opened.pop(rng.randrange(len(opened))), sku, ts, action="cancel")
        elif roll < 0.35 and opened:
            h.line(rng.choice(opened), sku, ts)  # redelivered
        else:
            opened.append(f"O-{n}")
            h.line(opened[-1], sku, ts)
        _assert_tallies_match_a_recount(h.stage)
        if n % 50 == 0:
            changelogs.append(h.logged())
    changelogs.append(h.logged())
    taken_over = Harness()
    taken_over.recover_from(changelogs)
    caught_up(taken_over)
    taken_over.stock("SKU-1", T0 + 10_000, 5)
    taken_over.stock("SKU-2", T0 + 10_000, 5)
    assert set(taken_over.stage._views) == {"SKU-1", "SKU-2"}
    assert all(len(lines) > 10 for lines, _ in taken_over.stage._views.values())
    _assert_tallies_match_a_recount(taken_over.stage)
    h.stage.on_revoked()  # the same worker reads its own tables back
    h.stock("SKU-1", T0 + 10_000, 5)
    h.stock("SKU-2", T0 + 10_000, 5)
    _assert_tallies_match_a_recount(h.stage)
    assert {sku: dict(told) for sku, (_, told) in h.stage._views.items()} == {
        sku: dict(told) for sku, (_, told) in taken_over.stage._views.items()}


def test_a_skus_maps_copied_keep_what_they_track():
    import copy
    import pickle

    h = Harness()
    caught_up(h)
    h.stock("SKU-1", T0, 1)
    h.line("O-1", "SKU-1", T0 + 1)
    h.line("O-2", "SKU-1", T0 + 2)
    lines, told = h.stage._views["SKU-1"]
    lines.touched.add("O-x")
    for copied in (copy.deepcopy(lines), pickle.loads(pickle.dumps(lines))):
        assert type(copied) is type(lines) and copied == lines
        assert (copied.counted, copied.total, copied.touched) == (lines.counted, lines.total, lines.touched)
    assert (told.counted, told.total) == (1, 1)
