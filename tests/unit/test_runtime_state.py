"""The runtime's stage state: coalesced changelog records and the in-memory deadline index."""

import json
import tracemalloc

import faust
import orjson

from streams.runtime.state import DeadlineIndex, StageTable, encode_json


def stage_table(name: str = "t") -> StageTable:
    app = faust.App(f"test-{name}", broker="kafka://localhost:1", store="memory://", autodiscover=False)
    return StageTable(app.Table(name, default=None, partitions=4))


def test_many_changes_to_one_key_give_one_changelog_record_with_the_last_value():
    table = stage_table()
    for n in range(100):
        table.put(2, "order-1", {"n": n})
    table.put(3, "order-2", {"n": 0})
    records = sorted(table.changes())
    assert records == [(2, b'"order-1"', b'{"n":99}'), (3, b'"order-2"', b'{"n":0}')]
    assert list(table.changes()) == []  # handed out once
    assert table.get("order-1") == {"n": 99}


def test_a_logged_entity_is_kept_as_its_changelog_bytes_and_decoded_on_demand():
    table = stage_table()
    table.put(0, "order-1", {"lines": [["SKU-1", 2]]})
    assert table.get("order-1") == {"lines": [["SKU-1", 2]]}  # a changed entity stays decoded
    [(_, _, logged)] = list(table.changes())
    assert table.table.data.data["order-1"] == logged == b'{"lines":[["SKU-1",2]]}'
    state = table.get("order-1")
    state["lines"].append(["SKU-2", 1])
    assert table.get("order-1") == {"lines": [["SKU-1", 2]]}  # a change counts only once put back
    table.put(0, "order-1", state)
    assert [value for _, _, value in table.changes()] == [b'{"lines":[["SKU-1",2],["SKU-2",1]]}']


def test_a_deleted_key_is_logged_as_a_tombstone_and_gone_from_the_store():
    table = stage_table()
    table.put(1, "s", {"cart": {}})
    list(table.changes())
    table.delete(1, "s")
    assert list(table.changes()) == [(1, b'"s"', None)]
    assert table.get("s") is None
    table.delete(1, "never-there")
    assert list(table.changes()) == []


def test_changelog_values_read_back_as_faust_json():
    table = stage_table()
    value = {"lines": {"O-1": {"qty": 2}}, "levels": [[1, 5, "e1"]], "text": "देरी"}
    table.put(0, "SKU-1", value)
    [(_, key, encoded)] = list(table.changes())
    assert json.loads(key) == "SKU-1" and json.loads(encoded) == value


def test_items_in_yields_only_the_given_partitions():
    table = stage_table()
    table.put(0, "a", {"x": 1})
    table.put(1, "b", {"x": 2})
    assert [(k, p) for k, p, _ in table.items_in({1})] == [("b", 1)]


def test_deadline_index_pops_due_entities_in_time_order_and_skips_rescheduled_ones():
    index = DeadlineIndex(lambda state: state.get("due"))
    index.schedule(0, "late", {"due": 300})
    index.schedule(0, "early", {"due": 100})
    index.schedule(1, "other", {"due": 50})
    index.schedule(0, "moved", {"due": 150})
    index.schedule(0, "moved", {"due": 1000})  # rescheduled: the 150 entry is stale
    assert index.first_due(0) == 100
    assert index.pop_due(0, 99) == []
    assert index.pop_due(0, 400) == ["early", "late"]
    assert index.first_due(0) == 1000
    assert index.pop_due(1, 50) == ["other"]
    index.schedule(0, "moved", None)  # nothing due any more
    assert index.pop_due(0, 10_000) == [] and index.first_due(0) is None


def test_deadline_index_rebuilds_from_the_table_for_the_partitions_given():
    table = stage_table("r")
    table.put(0, "a", {"due": 10})
    table.put(1, "b", {"due": 20})
    table.put(1, "c", {})
    index = DeadlineIndex(lambda state: state.get("due"))
    index.schedule(3, "gone", {"due": 1})
    index.rebuild(table, {1})
    assert index.pop_due(3, 100) == [] and index.pop_due(0, 100) == []
    assert index.pop_due(1, 100) == ["b"]


def _retained_bytes(encode, values: list) -> int:
    """Memory held, as the allocator was asked for it, by the results of `encode` over `values`."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode(value) for value in values]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == len(values)
    return held


def test_an_encoded_entity_holds_about_its_own_length_in_memory():
    """orjson's own result keeps its whole write buffer (ijl/orjson issue 483): the store must not keep that."""
    values = [{"order_id": f"O-{n}", "status": "placed", "lines": [{"sku": "A", "qty": 2}], "ts": n} for n in range(2_000)]
    length = sum(len(encode_json(value)) for value in values)
    assert _retained_bytes(encode_json, values) < 2 * length + 64 * len(values)
    # The defect, reproduced against the installed orjson: what encode_json exists to avoid.
    assert _retained_bytes(orjson.dumps, values) > 4 * length
