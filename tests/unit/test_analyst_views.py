"""The analysts' views (ddl/0003) and the README's analyst queries, on a small known workload in chDB.

The workload is written straight into the base tables, one row per Kafka message as the sink
stores them (a support event with the complaint category the sink works out for it), after the
migrations ran (so the materialized views see it arrive). Every expected
number below is worked out by hand from that workload; the comment beside it says how.

Timeline (UTC), customers C1 Arjun, C2 Bea, C3 Chen, C4 Dana, C5 Eve:

  tickets  T0 C5 phone  delivery  opened 02-20 08:00, reply 08:30             (1800 s)
           T1 C1 chat   delivery  opened 03-02 09:05, replies 09:07 and 09:12  (120 s)
           T2 C2 chat   delivery  opened 03-02 09:20, reply 09:26              (360 s)
           T3 C3 email  (none)    opened 03-02 09:30, reply 11:30              (7200 s)
           T4 C4 email  billing   opened 03-02 10:15, never answered
           T7 C3 email  stock     opened 03-02 14:00, reply 15:00              (3600 s)
           T8 C4 phone  billing   opened 03-03 09:10, reply 09:12:30           (150 s)
           T5 C1 phone  stock     opened 03-03 10:40, reply 10:41              (60 s)
           T6 C2 chat   stock     opened 03-03 10:50, reply 10:52              (120 s)
           T9 only an agent reply (its opening is not stored): not a ticket here
  orders   O3 01-15 ETH 10 (cancelled 01-16)   O4 02-01 ETH 4   O1 03-01 ETH 2 + COL 1
           O5 03-02 BRA 8   O2 03-02 ETH 3   O6 03-04 ETH 5
  returns  03-02 ETH: damaged 1, damaged 2, wrong item 1
           03-03 BRA: too bitter, arrived late, damaged, changed mind (1 unit each)
           03-03 ETH: damaged 1      03-03 DECAF: damaged 1 (DECAF never ordered)
  alerts   A1 out_of_stock O1/C1: open 09:00 (ETH 2, COL 1 short), updated 09:30 (only ETH 2)
           A2 out_of_stock O2/C2: open 09:10 (ETH 3 short), resolved 03-03 (cancelled)
           R1 sku_stockout_impact ETH: open 09:10
           L4 cart_lost /sale/beans anonymous: event 03-01 23:59:50, detected 03-02 00:00:20
           L1 cart_lost /sale/beans C3: open 09:40, resolved 09:45
           L2 cart_lost /sale/beans anonymous: open 09:50
           L3 cart_lost /checkout C5: open 10:05
  tasks    TK1 for A1 created 09:01 (three versions), TK2 for A2 created 09:30,
           TK3 for L3 created 10:06 (two versions); no task for L1
  feedback csat C2 1, nps C2 9, nps C3 6, review C1 4, anonymous social mention,
           csat C4 2, review C5 1
"""

from __future__ import annotations

import json
import math
import re
import zlib
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from sinks.clickhouse.migrate import DDL_DIR, apply_migrations, migrations
from streams.detectors.classify import ticket_category

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION_HEADING = "## For analysts"
PARTITIONS = 4


def utc(text: str) -> datetime:
    """'2026-03-02 09:05' or '2026-03-02 09:05:30.5' as an aware UTC datetime."""
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    raise ValueError(text)


def at(text: str) -> datetime:
    """The naive UTC datetime clickhouse-connect returns for a UTC column."""
    return utc(text).replace(tzinfo=None)


class Log:
    """Kafka coordinates as the sink stores them: partition by key, offsets rising per partition."""

    TOPIC_IDS = {
        "orders": "dGhlLW9yZGVycy10b3BpYw",
        "support": "dGhlLXN1cHBvcnQtdG9waWM",
        "returns": "dGhlLXJldHVybnMtdG9waWM",
        "feedback": "dGhlLWZlZWRiYWNrLXRvcGk",
        "customers": "dGhlLWN1c3RvbWVycy10b3A",
        "alerts": "dGhlLWFsZXJ0cy10b3BpYw",
        "outreach-tasks": "dGhlLW91dHJlYWNoLXRhc2s",
    }

    def __init__(self) -> None:
        self.next_offset: dict[tuple[str, int], int] = {}

    def coordinates(self, topic: str, key: str | None) -> list:
        partition = zlib.crc32((key or "").encode()) % PARTITIONS
        offset = self.next_offset.get((topic, partition), 0)
        self.next_offset[(topic, partition)] = offset + 1
        return [topic, self.TOPIC_IDS[topic], partition, offset]


KAFKA = ["kafka_topic", "kafka_topic_id", "kafka_partition", "kafka_offset"]


def load_workload(client) -> None:
    log = Log()

    customers = [
        ("C1", "Arjun Mehta", "gold"), ("C2", "Bea Santos", "standard"), ("C3", "Chen Wei", "standard"),
        ("C4", "Dana Roy", "platinum"), ("C5", "Eve Okafor", "standard"),
    ]
    client.insert(
        "customers",
        [[f"cust-{cid}", utc("2026-01-01 00:00"), cid, name, tier, 100_000, f"{cid.lower()}@example.com", "email",
          "en", *log.coordinates("customers", cid)] for cid, name, tier in customers],
        column_names=["event_id", "ts", "customer_id", "name", "tier", "lifetime_value_cents", "email",
                      "preferred_channel", "language", *KAFKA],
    )

    # (event time, ticket, type, customer, channel, category). Each ticket is its own insert, so the
    # hourly complaint counts arrive as separate partial rows that the view must add up.
    tickets = {
        "T0": [("2026-02-20 08:00", "ticket_opened", "C5", "phone", "delivery"),
               ("2026-02-20 08:30", "agent_replied", "C5", "phone", "delivery")],
        "T1": [("2026-03-02 09:05", "ticket_opened", "C1", "chat", "delivery"),
               ("2026-03-02 09:07", "agent_replied", "C1", "chat", "delivery"),
               ("2026-03-02 09:10", "customer_replied", "C1", "chat", "delivery"),
               ("2026-03-02 09:12", "agent_replied", "C1", "chat", "delivery")],
        "T2": [("2026-03-02 09:20", "ticket_opened", "C2", "chat", "delivery"),
               ("2026-03-02 09:26", "agent_replied", "C2", "chat", "delivery")],
        "T3": [("2026-03-02 09:30", "ticket_opened", "C3", "email", None),
               ("2026-03-02 11:30", "agent_replied", "C3", "email", None)],
        "T4": [("2026-03-02 10:15", "ticket_opened", "C4", "email", "billing")],
        "T7": [("2026-03-02 14:00", "ticket_opened", "C3", "email", "stock"),
               ("2026-03-02 15:00", "agent_replied", "C3", "email", "stock")],
        "T8": [("2026-03-03 09:10", "ticket_opened", "C4", "phone", "billing"),
               ("2026-03-03 09:12:30", "agent_replied", "C4", "phone", "billing")],
        "T5": [("2026-03-03 10:40", "ticket_opened", "C1", "phone", "stock"),
               ("2026-03-03 10:41", "agent_replied", "C1", "phone", "stock")],
        "T6": [("2026-03-03 10:50", "ticket_opened", "C2", "chat", "stock"),
               ("2026-03-03 10:52", "agent_replied", "C2", "chat", "stock")],
        "T9": [("2026-03-02 09:00", "agent_replied", "C4", "email", "billing")],
    }
    for ticket_id, events in tickets.items():
        client.insert(
            "support_events",
            [[f"{ticket_id}-{n}", utc(ts), event_type, ticket_id, customer, channel, category,
              "agent-7" if event_type == "agent_replied" else None, ticket_category({"category": category}),
              *log.coordinates("support", ticket_id)]
             for n, (ts, event_type, customer, channel, category) in enumerate(events)],
            column_names=["event_id", "ts", "event_type", "ticket_id", "customer_id", "channel", "category",
                          "agent_id", "complaint_category", *KAFKA],
        )

    # Orders: order_lines is filled by its materialized view from the placed events.
    orders = [
        ("2026-01-15 10:00", "placed", "O3", "C3", [("ETH-SALE-1KG", 10)]),
        ("2026-01-16 10:00", "cancelled", "O3", "C3", []),
        ("2026-02-01 12:00", "placed", "O4", "C4", [("ETH-SALE-1KG", 4)]),
        ("2026-03-01 10:00", "placed", "O1", "C1", [("ETH-SALE-1KG", 2), ("COL-SUP-1KG", 1)]),
        ("2026-03-02 07:00", "placed", "O5", "C3", [("BRA-SAN-1KG", 8)]),
        ("2026-03-02 08:00", "placed", "O2", "C2", [("ETH-SALE-1KG", 3)]),
        ("2026-03-04 09:00", "placed", "O6", "C5", [("ETH-SALE-1KG", 5)]),
    ]
    client.insert(
        "order_events",
        [[f"{order_id}-{event_type}", utc(ts), event_type, order_id, customer,
          [sku for sku, _ in lines], [qty for _, qty in lines], [2000 for _ in lines], "web",
          *log.coordinates("orders", order_id)]
         for ts, event_type, order_id, customer, lines in orders],
        column_names=["event_id", "ts", "event_type", "order_id", "customer_id", "lines.sku", "lines.qty",
                      "lines.unit_price_cents", "channel", *KAFKA],
    )

    returns = [
        ("R1", "2026-03-02 11:00", "O1", "C1", "ETH-SALE-1KG", 1, "damaged"),
        ("R2", "2026-03-02 12:00", "O4", "C4", "ETH-SALE-1KG", 2, "damaged"),
        ("R3", "2026-03-02 13:00", "O1", "C1", "ETH-SALE-1KG", 1, "wrong item"),
        ("R4", "2026-03-03 08:00", "O5", "C3", "BRA-SAN-1KG", 1, "too bitter"),
        ("R5", "2026-03-03 08:10", "O5", "C3", "BRA-SAN-1KG", 1, "arrived late"),
        ("R6", "2026-03-03 08:20", "O5", "C3", "BRA-SAN-1KG", 1, "damaged"),
        ("R7", "2026-03-03 08:30", "O5", "C3", "BRA-SAN-1KG", 1, "changed mind"),
        ("R8", "2026-03-03 09:00", "O7", "C4", "DECAF-1KG", 1, "damaged"),
        ("R9", "2026-03-03 12:00", "O1", "C1", "ETH-SALE-1KG", 1, "damaged"),
    ]
    client.insert(
        "returns",
        [[f"ret-{rid}", utc(ts), rid, order_id, customer, sku, qty, reason, *log.coordinates("returns", sku)]
         for rid, ts, order_id, customer, sku, qty, reason in returns],
        column_names=["event_id", "ts", "return_id", "order_id", "customer_id", "sku", "qty", "reason", *KAFKA],
    )

    feedback = [
        ("2026-03-02 16:00", "csat", "C2", 1), ("2026-03-02 16:05", "nps", "C2", 9),
        ("2026-03-02 16:10", "nps", "C3", 6), ("2026-03-02 16:15", "review", "C1", 4),
        ("2026-03-02 16:20", "social_mention", None, None), ("2026-03-03 11:00", "csat", "C4", 2),
        ("2026-03-03 11:30", "review", "C5", 1),
    ]
    client.insert(
        "feedback",
        [[f"fb-{n}", utc(ts), event_type, customer, score, *log.coordinates("feedback", customer)]
         for n, (ts, event_type, customer, score) in enumerate(feedback)],
        column_names=["event_id", "ts", "event_type", "customer_id", "score", *KAFKA],
    )

    # Alert messages in the order they were published; an alert's messages share a dedup_key and so
    # a partition, and later messages get higher offsets.
    def oos_details(short: dict[str, int], resolution: str | None = None) -> dict[str, str]:
        names = {"ETH-SALE-1KG": "Ethiopia Yirgacheffe 1kg (sale)", "COL-SUP-1KG": "Colombia Supremo 1kg"}
        lines = [{"sku": sku, "name": names[sku], "ordered": units, "short": units, "available": 0}
                 for sku, units in sorted(short.items())]
        details = {"customer_tier": "gold", "lines_json": json.dumps(lines, separators=(",", ":")),
                   "short_skus": ",".join(sorted(short))}
        if resolution:
            details["resolution"] = resolution
        else:
            for sku, units in short.items():
                # The detector's text for the rep: the units short are not a bare number here.
                details[f"short.{sku}"] = f"{names[sku]}: {units} of {units} units short (0 in stock)"
        return details

    alerts = [
        # alert, rule, status, audience, dedup key, customer, order, sku, session, page, details, event_ts, detected_at
        ("L4", "cart_lost", "open", "cs", "cart_lost:S4", None, None, None, "S4", "/sale/beans", {},
         "2026-03-01 23:59:50", "2026-03-02 00:00:20"),
        ("A1", "out_of_stock_open_order", "open", "cs", "out_of_stock_open_order:O1", "C1", "O1", None, None, None,
         oos_details({"ETH-SALE-1KG": 2, "COL-SUP-1KG": 1}), "2026-03-02 09:00", "2026-03-02 09:00:02"),
        ("A2", "out_of_stock_open_order", "open", "cs", "out_of_stock_open_order:O2", "C2", "O2", "ETH-SALE-1KG",
         None, None, oos_details({"ETH-SALE-1KG": 3}), "2026-03-02 09:10", "2026-03-02 09:10:05"),
        ("R1", "sku_stockout_impact", "open", "ops", "sku_stockout_impact:ETH-SALE-1KG", None, None, "ETH-SALE-1KG",
         None, None, {"affected_orders": "2", "short_units": "5"}, "2026-03-02 09:10", "2026-03-02 09:10:06"),
        ("A1", "out_of_stock_open_order", "updated", "cs", "out_of_stock_open_order:O1", "C1", "O1", "ETH-SALE-1KG",
         None, None, oos_details({"ETH-SALE-1KG": 2}), "2026-03-02 09:30", "2026-03-02 09:30:01"),
        ("L1", "cart_lost", "open", "cs", "cart_lost:S1", "C3", None, None, "S1", "/sale/beans", {},
         "2026-03-02 09:40", "2026-03-02 09:41"),
        ("L1", "cart_lost", "resolved", "cs", "cart_lost:S1", "C3", None, None, "S1", "/sale/beans", {},
         "2026-03-02 09:45", "2026-03-02 09:45:02"),
        ("L2", "cart_lost", "open", "cs", "cart_lost:S2", None, None, None, "S2", "/sale/beans", {},
         "2026-03-02 09:50", "2026-03-02 09:50:30"),
        ("L3", "cart_lost", "open", "cs", "cart_lost:S3", "C5", None, None, "S3", "/checkout", {},
         "2026-03-02 10:05", "2026-03-02 10:05:10"),
        ("A2", "out_of_stock_open_order", "resolved", "cs", "out_of_stock_open_order:O2", "C2", "O2", "ETH-SALE-1KG",
         None, None, oos_details({"ETH-SALE-1KG": 3}, resolution="cancelled"), "2026-03-03 12:00",
         "2026-03-03 12:00:01"),
    ]
    client.insert(
        "alerts",
        [[alert_id, rule, status, "warning", audience, key, f"{rule} {status}", f"{rule} {status} summary",
          customer, order_id, sku, session, page, details, [], utc(event_ts), utc(detected_at),
          *log.coordinates("alerts", key)]
         for alert_id, rule, status, audience, key, customer, order_id, sku, session, page, details, event_ts,
         detected_at in alerts],
        column_names=["alert_id", "rule", "status", "severity", "audience", "dedup_key", "title", "summary",
                      "customer_id", "order_id", "sku", "session_id", "page", "details", "evidence", "event_ts",
                      "detected_at", *KAFKA],
    )

    tasks = [
        # task, alert, rule, customer, status, created_at, updated_at
        ("TK1", "A1", "out_of_stock_open_order", "C1", "open", "2026-03-02 09:01", "2026-03-02 09:01"),
        ("TK1", "A1", "out_of_stock_open_order", "C1", "claimed", "2026-03-02 09:01", "2026-03-02 09:20"),
        ("TK2", "A2", "out_of_stock_open_order", "C2", "open", "2026-03-02 09:30", "2026-03-02 09:30"),
        ("TK1", "A1", "out_of_stock_open_order", "C1", "done", "2026-03-02 09:01", "2026-03-02 09:40"),
        ("TK3", "L3", "cart_lost", "C5", "open", "2026-03-02 10:06", "2026-03-02 10:06"),
        ("TK3", "L3", "cart_lost", "C5", "cancelled", "2026-03-02 10:06", "2026-03-02 11:00"),
    ]
    client.insert(
        "outreach_tasks",
        [[task_id, alert_id, rule, customer, "P2", "customer-success", "Call the customer", utc(created),
          status, utc(created), utc(updated), *log.coordinates("outreach-tasks", task_id)]
         for task_id, alert_id, rule, customer, status, created, updated in tasks],
        column_names=["task_id", "alert_id", "rule", "customer_id", "priority", "queue", "action", "due_by",
                      "status", "created_at", "updated_at", *KAFKA],
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('analyst_views')}")
    try:
        apply_migrations(client)
        # Keep the complaint counts' parts unmerged, as they are between background merges, so the
        # test sees complaints_hourly add up partial rows.
        client.command("SYSTEM STOP MERGES complaints_hourly_counts")
        load_workload(client)
        yield client
    finally:
        client.close()


def rows(client, sql: str, **settings) -> list[tuple]:
    return [tuple(row) for row in client.query(sql, settings=settings or None).result_rows]


def same(actual, expected) -> bool:
    """Equal, with floats compared to 1e-9 and aware datetimes compared in UTC."""
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(actual, datetime) and actual.tzinfo is not None:
        actual = actual.astimezone(timezone.utc).replace(tzinfo=None)
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected))
    return actual == expected


def assert_rows(actual: list[tuple], expected: list[tuple]) -> None:
    assert same(actual, expected), f"\nactual:   {actual}\nexpected: {expected}"


def test_the_analyst_views_migration_is_idempotent_statement_by_statement(store):
    # Nothing left to apply, and every statement of 0003 runs again cleanly (an interrupted run is
    # finished by the next one) without touching the data.
    assert apply_migrations(store) == []
    [analyst_views] = [m for m in migrations(DDL_DIR) if m.path.name == "0003_analyst_views.sql"]
    for statement in analyst_views.statements():
        store.command(statement)
    assert rows(store, "SELECT sum(tickets) FROM complaints_hourly") == [(9,)]


def test_complaints_hourly_sums_partial_rows_per_category_channel_and_hour(store):
    # T1 and T2 were inserted apart: two rows for one key in the table behind the view.
    assert rows(store, "SELECT count() FROM complaints_hourly_counts") == [(9,)]
    assert_rows(rows(store, "SELECT * FROM complaints_hourly ORDER BY hour, category, channel"), [
        (at("2026-02-20 08:00"), "delivery", "phone", 1),       # T0
        (at("2026-03-02 09:00"), "delivery", "chat", 2),        # T1 and T2, two inserts added up
        (at("2026-03-02 09:00"), "other", "email", 1),          # T3: no category, no text
        (at("2026-03-02 10:00"), "billing", "email", 1),        # T4
        (at("2026-03-02 14:00"), "stock", "email", 1),          # T7
        (at("2026-03-03 09:00"), "billing", "phone", 1),        # T8
        (at("2026-03-03 10:00"), "stock", "chat", 1),           # T6
        (at("2026-03-03 10:00"), "stock", "phone", 1),          # T5
    ])  # T9 has no ticket_opened and is not a complaint


def test_first_response_times_one_row_per_opened_ticket(store):
    assert_rows(rows(store, "SELECT * FROM first_response_times ORDER BY opened_at"), [
        ("T0", "phone", "C5", at("2026-02-20 08:00"), at("2026-02-20 08:30"), 1800.0),
        ("T1", "chat", "C1", at("2026-03-02 09:05"), at("2026-03-02 09:07"), 120.0),  # first of two replies
        ("T2", "chat", "C2", at("2026-03-02 09:20"), at("2026-03-02 09:26"), 360.0),
        ("T3", "email", "C3", at("2026-03-02 09:30"), at("2026-03-02 11:30"), 7200.0),
        ("T4", "email", "C4", at("2026-03-02 10:15"), None, None),                    # unanswered
        ("T7", "email", "C3", at("2026-03-02 14:00"), at("2026-03-02 15:00"), 3600.0),
        ("T8", "phone", "C4", at("2026-03-03 09:10"), at("2026-03-03 09:12:30"), 150.0),
        ("T5", "phone", "C1", at("2026-03-03 10:40"), at("2026-03-03 10:41"), 60.0),
        ("T6", "chat", "C2", at("2026-03-03 10:50"), at("2026-03-03 10:52"), 120.0),
    ])  # T9: a reply without an opening is not a ticket here


def test_first_response_by_channel_daily_quantiles_over_answered_tickets(store):
    # quantileExactInclusive over n sorted waits: position q*(n-1), interpolated.
    assert_rows(rows(store, "SELECT * FROM first_response_by_channel_daily ORDER BY day, channel"), [
        (date(2026, 2, 20), "phone", 1, 1, 1800.0, 1800.0),
        (date(2026, 3, 2), "chat", 2, 2, 240.0, 336.0),      # [120, 360]: 120+0.5*240, 120+0.9*240
        (date(2026, 3, 2), "email", 3, 2, 5400.0, 6840.0),   # T4 unanswered; [3600, 7200]: 3600+0.9*3600
        (date(2026, 3, 3), "chat", 1, 1, 120.0, 120.0),
        (date(2026, 3, 3), "phone", 2, 2, 105.0, 141.0),     # [60, 150]: 60+0.5*90, 60+0.9*90
    ])


def test_returns_daily_reasons_and_rate_over_the_thirty_days_up_to_the_day(store):
    assert_rows(rows(store, "SELECT * FROM returns_daily ORDER BY day, sku"), [
        # ETH on 03-02: 3 returns, 1+2+1 units; damaged twice, wrong item once. Ordered 02-01..03-02:
        # O4 4 (02-01, the window's first day) + O1 2 + O2 3 = 9; O3 (01-15) and O6 (03-04) are out.
        (date(2026, 3, 2), "ETH-SALE-1KG", 3, 4, ["damaged", "wrong item"], 9, 4 / 9),
        # BRA on 03-03: four reasons once each, so the first three alphabetically; O5 ordered 8.
        (date(2026, 3, 3), "BRA-SAN-1KG", 4, 4, ["arrived late", "changed mind", "damaged"], 8, 0.5),
        # DECAF was never ordered: no rate.
        (date(2026, 3, 3), "DECAF-1KG", 1, 1, ["damaged"], 0, None),
        # ETH on 03-03: window 02-02..03-03 drops O4, leaving O1 2 + O2 3 = 5.
        (date(2026, 3, 3), "ETH-SALE-1KG", 1, 1, ["damaged"], 5, 0.2),
    ])


def test_stockout_impact_counts_orders_per_short_sku(store):
    assert_rows(rows(store, "SELECT * FROM stockout_impact ORDER BY sku"), [
        # COL: only A1's open message names it; A1's latest message (updated) no longer does, so
        # although A1 is still open, no order is still short of COL.
        ("COL-SUP-1KG", 1, 1, at("2026-03-02 09:00:02"), at("2026-03-02 09:00:02"), 0),
        # ETH: O1 (A1: 2 units, open then updated) and O2 (A2: 3 units, then resolved). First
        # named at A1's open, last at A1's update; only O1 is still short (A2 resolved).
        ("ETH-SALE-1KG", 2, 3, at("2026-03-02 09:00:02"), at("2026-03-02 09:30:01"), 1),
    ])  # R1 (sku_stockout_impact) has no short.<sku> keys and is not counted


def test_carts_lost_hourly_counts_opened_cart_lost_alerts_per_page(store):
    assert_rows(rows(store, "SELECT * FROM carts_lost_hourly ORDER BY hour, page"), [
        (at("2026-03-01 23:00"), "/sale/beans", 1),  # L4, by its event time, detected after midnight
        (at("2026-03-02 09:00"), "/sale/beans", 2),  # L1 (its resolved message not counted) and L2
        (at("2026-03-02 10:00"), "/checkout", 1),    # L3
    ])


def test_alerts_daily_counts_opened_alerts_and_detection_time(store):
    assert_rows(rows(store, "SELECT * FROM alerts_daily ORDER BY day, rule, audience"), [
        (date(2026, 3, 1), "cart_lost", "cs", 1, 30.0, 30.0, 0),            # L4: 23:59:50 -> 00:00:20
        (date(2026, 3, 2), "cart_lost", "cs", 3, 30.0, 54.0, 1),            # L3 10, L2 30, L1 60 s; L1 resolved
        (date(2026, 3, 2), "out_of_stock_open_order", "cs", 2, 3.5, 4.7, 1),  # A1 2 s, A2 5 s; A2 resolved
        (date(2026, 3, 2), "sku_stockout_impact", "ops", 1, 6.0, 6.0, 0),   # R1 6 s
    ])


def test_proactive_share_daily_compares_the_task_with_the_next_ticket(store):
    assert_rows(rows(store, "SELECT * FROM proactive_share_daily ORDER BY day, rule"), [
        # Problems (alerts opened with a customer): L1 (C3) and L3 (C5); L2 and L4 are anonymous.
        # L1 has no task. L3's task (10:06) is proactive: C5's only ticket (T0, 02-20) came before
        # the alert, so C5 never called about it.
        (date(2026, 3, 2), "cart_lost", 2, 1, 1, 0.5),
        # A1 (C1): task 09:01 before T1 09:05, proactive. A2 (C2): task 09:30 after T2 09:20, not.
        (date(2026, 3, 2), "out_of_stock_open_order", 2, 2, 1, 0.5),
    ])


@pytest.mark.parametrize("view", ["returns_daily", "stockout_impact", "alerts_daily", "proactive_share_daily"])
def test_views_with_joins_answer_the_same_whatever_join_use_nulls_says(store, view):
    query = f"SELECT * FROM {view} ORDER BY ALL"
    assert_rows(rows(store, query, join_use_nulls=1), rows(store, query, join_use_nulls=0))


# The README's analyst queries, in the order of the questions, with the rows each returns here.
README_EXPECTED: list[list[tuple]] = [
    # (1) complaints this week: the 7 days up to the latest hour (03-03 10:00) leave out T0 (02-20).
    # stock T7 T5 T6, billing T4 T8, delivery T1 T2, other T3 (no category, no text).
    [("stock", 3), ("billing", 2), ("delivery", 2), ("other", 1)],
    # (2) this hour 03-03 10:00 against the 24 hours 03-02 10:00..03-03 09:00: stock has T5 T6 now
    # and T7 before (1/24), billing none now and T4 T8 before (2/24). delivery and other
    # had nothing in those 25 hours.
    [(at("2026-03-03 10:00"), "stock", 2, 1 / 24), (at("2026-03-03 10:00"), "billing", 0, 2 / 24)],
    # (3) first reply per channel, tickets opened in the 7 days up to the latest (T0 is out):
    # chat [120, 120, 360]; email [3600, 7200] and T4 unanswered; phone [60, 150].
    [("chat", 3, 3, 120.0, 312.0), ("email", 3, 2, 5400.0, 6840.0), ("phone", 2, 2, 105.0, 141.0)],
    # (4) products that come back most: BRA 4 returns (4 reasons once each), ETH 4 returns
    # (damaged 3, wrong item 1) and 5 units, DECAF 1.
    [("BRA-SAN-1KG", 4, 4, [("arrived late", 1), ("changed mind", 1), ("damaged", 1)]),
     ("ETH-SALE-1KG", 4, 5, [("damaged", 3), ("wrong item", 1)]),
     ("DECAF-1KG", 1, 1, [("damaged", 1)])],
    # (5) return rate over the 30 days up to the latest return day (02-02..03-03): ETH returned
    # 4+1 of O1 2 + O2 3 ordered; BRA 4 of 8; COL 0 of 1; DECAF 1 of none.
    [("ETH-SALE-1KG", 5, 5, 1.0), ("BRA-SAN-1KG", 4, 8, 0.5), ("COL-SUP-1KG", 0, 1, 0.0),
     ("DECAF-1KG", 1, 0, None)],
    # (6) stockout impact, most affected first.
    [("ETH-SALE-1KG", 2, 1, 3, at("2026-03-02 09:00:02"), at("2026-03-02 09:30:01")),
     ("COL-SUP-1KG", 1, 0, 1, at("2026-03-02 09:00:02"), at("2026-03-02 09:00:02"))],
    # (7) carts lost per page, latest hour first.
    [(at("2026-03-02 10:00"), "/checkout", 1), (at("2026-03-02 09:00"), "/sale/beans", 2),
     (at("2026-03-01 23:00"), "/sale/beans", 1)],
    # (8) alerts per rule per day with detection times (as in alerts_daily), latest day first.
    [(date(2026, 3, 2), "cart_lost", "cs", 3, 30.0, 54.0, 1),
     (date(2026, 3, 2), "out_of_stock_open_order", "cs", 2, 3.5, 4.7, 1),
     (date(2026, 3, 2), "sku_stockout_impact", "ops", 1, 6.0, 6.0, 0),
     (date(2026, 3, 1), "cart_lost", "cs", 1, 30.0, 30.0, 0)],
    # (9) proactive share per rule over all days: one of two in each rule.
    [("cart_lost", 2, 1, 1, 0.5), ("out_of_stock_open_order", 2, 2, 1, 0.5)],
    # (10) problems per customer: alerts A1 C1, A2 C2, L1 C3, L3 C5; tickets two each for C1..C4
    # and T0 for C5; negative feedback csat C2 1, nps C3 6, csat C4 2, review C5 1 (C2's nps 9 and
    # C1's review 4 are not negative).
    [("C2", "Bea Santos", 1, 2, 1, 4), ("C3", "Chen Wei", 1, 2, 1, 4), ("C1", "Arjun Mehta", 1, 2, 0, 3),
     ("C4", "Dana Roy", 0, 2, 1, 3), ("C5", "Eve Okafor", 1, 1, 1, 3)],
]


def analyst_queries(markdown: str) -> list[str]:
    """Every ```sql block of the '## For analysts' section (up to the next '## ' heading)."""
    lines = markdown.splitlines()
    try:
        start = lines.index(SECTION_HEADING)
    except ValueError:
        raise LookupError(f"no line '{SECTION_HEADING}'") from None
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("## ")), len(lines))
    section = "\n".join(lines[start:end])
    return [block.strip() for block in re.findall(r"^```sql[ \t]*\n(.*?)^```[ \t]*$", section, re.M | re.S)]


def check_analyst_queries(client, markdown: str) -> None:
    queries = analyst_queries(markdown)
    assert len(queries) == len(README_EXPECTED) == 10, f"expected 10 sql blocks, found {len(queries)}"
    for number, (sql, expected) in enumerate(zip(queries, README_EXPECTED), start=1):
        assert not sql.rstrip().endswith(";"), f"query {number} ends with a semicolon"
        actual = rows(client, sql)
        assert same(actual, expected), f"query {number}:\n{sql}\nactual:   {actual}\nexpected: {expected}"


def test_the_readme_analyst_queries_answer_on_the_workload(store):
    text = README.read_text()
    if SECTION_HEADING not in text.splitlines():
        pytest.fail(f"{README} has no {SECTION_HEADING!r} section "
                    f"(its queries are checked against this workload)")
    check_analyst_queries(store, text)
