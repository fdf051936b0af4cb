"""JSON objects in and out of records: schemas.codec.record_from_json / record_to_json."""

from __future__ import annotations

import json

import pytest

from schemas.codec import (
    Codec,
    RecordError,
    format_timestamp_ms,
    names,
    parse_timestamp_ms,
    record_from_json,
    record_to_json,
)

T0 = 1_772_442_900_000  # 2026-03-02T09:15:00Z

ORDER = {
    "event_id": "ev-1",
    "ts": "2026-03-02T09:15:00Z",
    "event_type": "placed",
    "order_id": "o-1",
    "customer_id": "c-1",
    "lines": [{"sku": "SKU-1", "qty": 2, "unit_price_cents": 1999}, {"sku": "SKU-2", "qty": 1, "unit_price_cents": 5}],
    "promised_ship_by": "2026-03-03T09:15:00Z",
    "channel": "web",
}

# One JSON object per schema, in the form a person writes for `forewarn produce`.
JSON_SAMPLES: dict[str, dict] = {
    "forewarn.OrderEvent": ORDER,
    "forewarn.StockLevel": {"event_id": "ev-2", "ts": "2026-03-02T09:15:00.001Z", "event_type": "stock_level",
                            "sku": "SKU-1", "available": 0, "warehouse": "berlin"},
    "forewarn.CatalogItem": {"event_id": "ev-3", "ts": "2026-03-02T09:15:00Z", "sku": "SKU-1", "name": "Kettle",
                             "category": "kitchen", "price_cents": 4999, "active": False},
    "forewarn.Customer": {"event_id": "ev-4", "ts": "2026-03-02T09:15:00Z", "customer_id": "c-1", "name": "Ada",
                          "tier": "gold", "lifetime_value_cents": 123456, "email": None,
                          "preferred_channel": "email", "language": None, "phone": "+91 98200 12345"},
    "forewarn.WebEvent": {"event_id": "ev-5", "ts": "2026-03-02T09:15:00Z", "event_type": "error",
                          "session_id": "s-1", "page": "/checkout/payment", "customer_id": None, "sku": None,
                          "qty": None, "cart_item_count": 3, "status_code": 502, "order_id": None, "found": None},
    "forewarn.SupportEvent": {"event_id": "ev-6", "ts": "2026-03-02T09:15:00Z", "event_type": "customer_replied",
                              "ticket_id": "t-1", "customer_id": "c-1", "channel": "sms", "category": None,
                              "text": "still waiting", "order_id": "o-1", "agent_id": None, "language": None},
    "forewarn.ReturnEvent": {"event_id": "ev-7", "ts": "2026-03-02T09:15:00Z", "return_id": "r-1",
                             "order_id": "o-1", "customer_id": "c-1", "sku": "SKU-1", "qty": 1, "reason": "damaged"},
    "forewarn.FeedbackEvent": {"event_id": "ev-8", "ts": "2026-03-02T09:15:00Z", "event_type": "review",
                               "customer_id": "c-1", "score": 1, "text": "broken", "order_id": None,
                               "ticket_id": None},
    "forewarn.Alert": {"alert_id": "a-1", "rule": "order_short", "status": "resolved", "severity": "info",
                       "audience": "cs", "dedup_key": "order_short:o-1", "title": "t", "summary": "s",
                       "customer_id": None, "order_id": "o-1", "sku": None, "ticket_id": None, "session_id": None,
                       "page": None, "category": None, "details": {"k": "v"}, "evidence": ["ev-1"],
                       "event_ts": "2026-03-02T09:15:00Z", "detected_at": "2026-03-02T09:15:00.250Z"},
    "forewarn.OutreachTask": {"task_id": "t-1", "alert_id": "a-1", "rule": "out_of_stock_open_order",
                              "customer_id": "c-1", "priority": "P1", "queue": "swarm",
                              "action": "Call the customer today.", "due_by": "2026-03-02T10:15:00Z",
                              "status": "claimed", "assignee": "asha", "context": {"order_id": "o-1"},
                              "created_at": "2026-03-02T09:15:00Z", "updated_at": "2026-03-02T09:20:00Z",
                              "case_number": 1,
                              "problems": [{"alert_id": "a-1", "rule": "out_of_stock_open_order", "status": "open",
                                            "severity": "warning", "title": "t", "summary": "s",
                                            "action": "Call the customer today.", "queue": "fulfillment",
                                            "priority": "P1", "due_by": "2026-03-02T10:15:00Z", "order_id": "o-1",
                                            "ticket_id": None, "sku": None, "resolution": None,
                                            "added_at": "2026-03-02T09:15:00Z",
                                            "updated_at": "2026-03-02T09:15:00Z", "details": {"k": "v"}}]},
    "forewarn.TaskUpdate": {"event_id": "tu-1", "ts": "2026-03-02T09:20:00Z", "task_id": "t-1", "action": "done",
                            "assignee": "asha"},
    "forewarn.internal.OrderLine": {"event_id": "ev-1", "ts": "2026-03-02T09:15:00Z", "action": "close",
                                    "order_id": "o-1", "customer_id": "c-1", "sku": "SKU-1", "qty": 2,
                                    "placed_ts": "2026-03-01T23:59:59.999Z", "reason": "shipped"},
    "forewarn.internal.LineShortage": {"event_id": "ev-2", "ts": "2026-03-02T09:15:00Z", "order_id": "o-1",
                                       "sku": "SKU-1", "ordered": 2, "short": 0, "available": 5,
                                       "reason": "stock_level", "evidence": []},
    "forewarn.internal.Watermark": {"source": "orders:0", "watermark": "2026-03-02T09:15:00Z",
                                    "sent_at": "2026-03-02T09:15:00.250Z"},
    "forewarn.TaskUpdateRejected": {"event_id": "tu-2", "ts": "2026-03-02T09:20:00Z", "task_id": "t-9",
                                    "action": "claim", "assignee": "asha", "reason": "not_assignee",
                                    "message": "t-9 is claimed by bilal, not asha", "task_status": "claimed",
                                    "rejected_at": "2026-03-02T09:20:01Z"},
    "forewarn.internal.Signal": {"event_id": "w-1", "ts": "2026-03-02T09:15:00Z", "kind": "page_hit",
                                 "key": "/shop", "data": {"status_code": "503"}},
}


def error_for(schema_name: str, obj) -> RecordError:
    with pytest.raises(RecordError) as err:
        record_from_json(schema_name, obj)
    return err.value


def order(**changes) -> dict:
    obj = json.loads(json.dumps(ORDER))
    for key, value in changes.items():
        if value is ...:
            del obj[key]
        else:
            obj[key] = value
    return obj


# ---------------------------------------------------------------- accepted


def test_a_full_order_event():
    record = record_from_json("forewarn.OrderEvent", ORDER)
    assert record == {
        "event_id": "ev-1", "ts": T0, "event_type": "placed", "order_id": "o-1", "customer_id": "c-1",
        "lines": [{"sku": "SKU-1", "qty": 2, "unit_price_cents": 1999},
                  {"sku": "SKU-2", "qty": 1, "unit_price_cents": 5}],
        "promised_ship_by": T0 + 86_400_000, "channel": "web",
    }


def test_absent_optional_fields_and_defaults():
    record = record_from_json("forewarn.OrderEvent", order(event_type="cancelled", lines=..., channel=...,
                                                            promised_ship_by=...))
    assert record["lines"] == [] and record["channel"] is None and record["promised_ship_by"] is None
    alert = dict(JSON_SAMPLES["forewarn.Alert"])
    for optional in ("details", "evidence", "customer_id", "page"):
        del alert[optional]
    record = record_from_json("forewarn.Alert", alert)
    assert record["details"] == {} and record["evidence"] == [] and record["customer_id"] is None
    # Defaults are fresh objects, not one list shared by every record.
    record["evidence"].append("x")
    assert record_from_json("forewarn.Alert", alert)["evidence"] == []


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2026-03-02T09:15:00Z", T0),
        ("2026-03-02T09:15:00.250Z", T0 + 250),
        ("2026-03-02T09:15:00.250999Z", T0 + 250),
        ("2026-03-02T09:15:00+00:00", T0),
        ("2026-03-02T10:15:00+01:00", T0),
        ("2026-03-02T04:15:00-05:00", T0),
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_timestamps_with_any_explicit_offset_become_utc_epoch_ms(text, expected_ms):
    assert parse_timestamp_ms(text) == expected_ms
    assert record_from_json("forewarn.OrderEvent", order(ts=text))["ts"] == expected_ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [(T0, "2026-03-02T09:15:00Z"), (T0 + 250, "2026-03-02T09:15:00.250Z"), (T0 + 7, "2026-03-02T09:15:00.007Z"),
     (0, "1970-01-01T00:00:00Z"), (-1, "1969-12-31T23:59:59.999Z")],
)
def test_timestamps_print_as_utc_with_z_and_milliseconds_only_when_set(ms, text):
    assert format_timestamp_ms(ms) == text


@pytest.mark.parametrize("name", sorted(JSON_SAMPLES))
def test_json_round_trip_for_every_schema(name):
    record = record_from_json(name, JSON_SAMPLES[name])
    assert record_to_json(name, record) == JSON_SAMPLES[name]
    # A record from JSON encodes and decodes unchanged.
    codec = Codec()
    assert codec.decode(codec.encode(name, record)) == (name, record)


def test_every_schema_has_a_json_sample():
    assert sorted(JSON_SAMPLES) == names()


def test_record_to_json_is_plain_json():
    record = record_from_json("forewarn.Alert", JSON_SAMPLES["forewarn.Alert"])
    out = record_to_json("forewarn.Alert", record)
    assert json.loads(json.dumps(out)) == out
    assert out["status"] == "resolved" and out["event_ts"] == "2026-03-02T09:15:00Z"
    assert out["detected_at"] == "2026-03-02T09:15:00.250Z"


# ---------------------------------------------------------------- rejected


def test_wrong_type_deep_in_a_list():
    lines = ORDER["lines"] + [{"sku": "SKU-3", "qty": "two", "unit_price_cents": 1}]
    lines[1] = {"sku": "SKU-2", "qty": "two", "unit_price_cents": 5}
    err = error_for("forewarn.OrderEvent", order(lines=lines))
    assert err.path == "lines[1].qty"
    assert str(err) == 'lines[1].qty: expected int, got "two"'


def test_unknown_enum_symbol_lists_the_symbols():
    err = error_for("forewarn.OrderEvent", order(event_type="shiped"))
    assert err.path == "event_type"
    assert str(err) == ('event_type: unknown symbol "shiped"; expected one of placed, cancelled, shipped, '
                        'delivered, payment_failed, payment_succeeded')


def test_required_field_missing():
    err = error_for("forewarn.OrderEvent", order(customer_id=...))
    assert (err.path, err.problem) == ("customer_id", "required field missing")
    assert str(err) == "customer_id: required field missing"


def test_required_field_in_a_nested_record_missing():
    err = error_for("forewarn.OrderEvent", order(lines=[{"sku": "SKU-1", "qty": 1}]))
    assert str(err) == "lines[0].unit_price_cents: required field missing"


def test_unknown_field_is_rejected():
    err = error_for("forewarn.OrderEvent", order(ship_by="2026-03-03T09:15:00Z"))
    assert err.path == "ship_by"
    assert err.problem.startswith("unknown field; OrderEvent has event_id, ts, event_type,")


def test_unknown_field_in_a_nested_record_is_rejected():
    line = {"sku": "A", "qty": 1, "unit_price_cents": 1, "colour": "red"}
    err = error_for("forewarn.OrderEvent", order(lines=[line]))
    assert err.path == "lines[0].colour"


def test_timestamp_without_timezone_is_rejected():
    err = error_for("forewarn.OrderEvent", order(ts="2026-03-02T09:15:00"))
    assert err.path == "ts"
    assert err.problem == ('timestamp "2026-03-02T09:15:00" has no timezone; add Z for UTC, '
                           'e.g. "2026-03-02T09:15:00Z"')


@pytest.mark.parametrize("value", ["yesterday", "2026-13-02T09:15:00Z", 1772442900000, None])
def test_timestamp_that_is_not_an_iso_string_is_rejected(value):
    err = error_for("forewarn.OrderEvent", order(ts=value))
    assert err.path == "ts"
    assert err.problem.startswith("expected an ISO-8601 timestamp such as \"2026-03-02T09:15:00Z\", got ")
    assert json.dumps(value) in err.problem


def test_bad_optional_timestamp_names_its_field():
    err = error_for("forewarn.OrderEvent", order(promised_ship_by="tomorrow"))
    assert err.path == "promised_ship_by"


def test_placed_order_needs_lines():
    err = error_for("forewarn.OrderEvent", order(lines=[]))
    assert str(err) == "lines: must not be empty when event_type is placed"
    err = error_for("forewarn.OrderEvent", order(lines=...))
    assert err.path == "lines"


def test_order_line_qty_must_be_positive():
    lines = [dict(ORDER["lines"][0]), {"sku": "SKU-2", "qty": 0, "unit_price_cents": 5}]
    err = error_for("forewarn.OrderEvent", order(lines=lines))
    assert str(err) == "lines[1].qty: must be greater than 0, got 0"
    cancelled = order(event_type="cancelled", lines=[{"sku": "A", "qty": -1, "unit_price_cents": 5}])
    assert error_for("forewarn.OrderEvent", cancelled).path == "lines[0].qty"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("order_id", None, "order_id: expected string, got null"),
        ("order_id", 42, "order_id: expected string, got 42"),
        ("lines", {"sku": "A"}, "lines: expected a list, got an object"),
        ("channel", ["web"], "channel: expected string, got a list"),
    ],
)
def test_wrong_types_say_what_was_expected_and_found(field, value, expected):
    assert str(error_for("forewarn.OrderEvent", order(**{field: value}))) == expected


def test_booleans_are_not_numbers_and_numbers_are_not_booleans():
    stock = dict(JSON_SAMPLES["forewarn.StockLevel"], available=True)
    assert str(error_for("forewarn.StockLevel", stock)) == "available: expected int, got true"
    item = dict(JSON_SAMPLES["forewarn.CatalogItem"], active=1)
    assert str(error_for("forewarn.CatalogItem", item)) == "active: expected boolean, got 1"


def test_int_out_of_range():
    stock = dict(JSON_SAMPLES["forewarn.StockLevel"], available=2**31)
    err = error_for("forewarn.StockLevel", stock)
    assert err.path == "available" and "out of range" in err.problem


def test_fractional_number_for_an_int():
    web = dict(JSON_SAMPLES["forewarn.WebEvent"], qty=1.5)
    assert str(error_for("forewarn.WebEvent", web)) == "qty: expected int, got 1.5"


def test_wrong_map_value_names_its_key():
    alert = dict(JSON_SAMPLES["forewarn.Alert"], details={"short": 2})
    assert str(error_for("forewarn.Alert", alert)) == 'details["short"]: expected string, got 2'


def test_wrong_array_item():
    alert = dict(JSON_SAMPLES["forewarn.Alert"], evidence=["ev-1", None])
    assert str(error_for("forewarn.Alert", alert)) == "evidence[1]: expected string, got null"


def test_enum_in_another_schema():
    customer = dict(JSON_SAMPLES["forewarn.Customer"], tier="diamond")
    err = error_for("forewarn.Customer", customer)
    assert err.path == "tier" and err.problem == 'unknown symbol "diamond"; expected one of standard, gold, platinum'


def test_not_an_object_at_all():
    err = error_for("forewarn.StockLevel", ["not", "an", "object"])
    assert err.path == "" and str(err) == "expected an object (StockLevel), got a list"


def test_unknown_schema_name():
    with pytest.raises(KeyError, match="forewarn.OrderEvent"):
        record_from_json("forewarn.Order", ORDER)
