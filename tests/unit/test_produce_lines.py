"""`forewarn produce` line validation: every rejection names the line and the field."""

from __future__ import annotations

import json

import pytest

from streams.produce import LineError, parse_line

GOOD_ORDER = {"event_id": "e1", "ts": "2026-03-02T09:15:00Z", "event_type": "placed", "order_id": "O1",
              "customer_id": "C1", "lines": [{"sku": "A", "qty": 2, "unit_price_cents": 100}]}


def test_a_good_line_for_a_named_topic_becomes_an_avro_ready_record():
    spec, record = parse_line(json.dumps(GOOD_ORDER), 1, "orders")
    assert spec.name == "orders" and spec.key_field == "order_id"
    assert record["ts"] == 1_772_442_900_000 and record["promised_ship_by"] is None


def test_a_timeline_line_names_its_topic():
    spec, record = parse_line(json.dumps({"topic": "inventory", "value": {
        "event_id": "e2", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A", "available": 3}}),
        7, None)
    assert spec.name == "inventory" and record["available"] == 3


@pytest.mark.parametrize(
    "text, topic, path, words",
    [
        ("{not json", "orders", "", "not valid JSON"),
        (json.dumps({"topic": "ordrs", "value": GOOD_ORDER}), None, "topic", "unknown topic 'ordrs'"),
        (json.dumps({"value": GOOD_ORDER}), None, "topic", "required"),
        (json.dumps({"topic": "orders"}), None, "value", "required"),
        (json.dumps({"topic": "alerts", "value": {}}), None, "topic", "unknown topic 'alerts'"),
        (json.dumps({k: v for k, v in GOOD_ORDER.items() if k != "customer_id"}), "orders", "customer_id",
         "missing"),
        (json.dumps(dict(GOOD_ORDER, event_type="shiped")), "orders", "event_type", "shiped"),
        (json.dumps(dict(GOOD_ORDER, lines=[{"sku": "A", "qty": "two", "unit_price_cents": 1}])), "orders",
         "lines[0].qty", "int"),
        (json.dumps({"topic": "orders", "value": dict(GOOD_ORDER, lines=[])}), None, "value.lines", "placed"),
        (json.dumps(dict(GOOD_ORDER, ts="2026-03-02 09:15")), "orders", "ts", ""),
    ],
)
def test_bad_lines_are_reported_by_line_and_field(text, topic, path, words):
    error = parse_line(text, 42, topic)
    assert isinstance(error, LineError)
    assert error.line == 42
    assert error.path == path
    assert words in error.message
    assert str(error).startswith(f"line 42: {path}" if path else "line 42: ")
