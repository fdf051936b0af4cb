"""End to end on a real broker: `forewarn produce` in, two detection workers, alerts read back from the topic."""

from __future__ import annotations

import json

import pytest

from streams import topics
from streams.follow import group_lag
from tests.integration.helpers import Workers, forewarn_env, read_alerts, run_forewarn, wait_for, write_jsonl

pytestmark = pytest.mark.integration

T0 = "2026-03-02T09:{:02d}:00Z"


def ev(topic: str, minute: int, **value) -> dict:
    value.setdefault("event_id", f"{topic}-{minute}-{value.get('order_id') or value.get('sku') or value.get('customer_id')}")
    return {"topic": topic, "value": {"ts": T0.format(minute), **value}}


def reference_data() -> list[dict]:
    beans = [("ETH", "Ethiopia 1kg", 2400), ("KEN", "Kenya 1kg", 2450), ("COL", "Colombia 1kg", 2000),
             ("BRA", "Brazil 1kg", 2300), ("PER", "Peru 1kg", 2390)]
    items = [ev("catalog", 0, sku=sku, name=name, category="beans", price_cents=price, active=True)
             for sku, name, price in beans]
    items.append(ev("catalog", 0, sku="MUG", name="Mug", category="cups", price_cents=900, active=True))
    items += [ev("customers", 0, customer_id=c, name=n, tier=t, lifetime_value_cents=v)
              for c, n, t, v in [("C1", "Ravi Kumar", "gold", 90000), ("C2", "Mita Sen", "platinum", 400000),
                                 ("C3", "Omar Khan", "standard", 1000)]]
    items += [ev("inventory", 1, event_type="stock_level", sku=sku, available=level)
              for sku, level in [("ETH", 14), ("KEN", 6), ("COL", 30), ("BRA", 3), ("PER", 0), ("MUG", 50)]]
    return items


def placed(minute: int, order_id: str, customer: str, *lines: tuple[str, int]) -> dict:
    return ev("orders", minute, event_type="placed", order_id=order_id, customer_id=customer,
              lines=[{"sku": s, "qty": q, "unit_price_cents": 2400} for s, q in lines])


def caught_up(bootstrap: str, prefix: str) -> bool:
    """The workers' group has committed every message of every topic it reads: read and processed."""
    return group_lag(bootstrap, f"{prefix}forewarn", [f"{prefix}{spec.name}" for spec in topics.GROUP_INPUTS]) == 0


def by_order(alerts: list[dict], rule: str = "out_of_stock_open_order") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for alert in alerts:
        if alert["rule"] == rule:
            out.setdefault(alert["order_id"], []).append(alert)
    return out


def short_of(alert: dict) -> dict[str, tuple[int, int]]:
    return {line["sku"]: (line["short"], line["ordered"]) for line in json.loads(alert["details"]["lines_json"])}


def test_stock_drop_makes_existing_open_orders_short_with_two_workers_one_killed(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path, FOREWARN_STOCKOUT_ROLLUP_ORDERS="3")
    created = run_forewarn(["topics", "create"], env)
    assert created.returncode == 0, created.stderr

    phase1 = reference_data() + [
        placed(2, "O1", "C1", ("ETH", 4)),
        placed(3, "O2", "C2", ("ETH", 4), ("KEN", 1)),
        placed(4, "O3", "C3", ("ETH", 4)),
        placed(5, "O4", "C1", ("KEN", 2), ("MUG", 1)),
        placed(6, "O5", "C2", ("ETH", 2), ("COL", 1)),
        placed(7, "O7", "C3", ("PER", 1)),  # PER is at 0 already: short on arrival
    ]
    produced = run_forewarn(["produce", str(write_jsonl(tmp_path / "phase1.jsonl", phase1))], env)
    assert produced.returncode == 0, produced.stderr

    with Workers(env, count=2, log_dir=tmp_path) as workers:
        alerts = wait_for(lambda: workers.assert_running() or by_order(read_alerts(kafka_bootstrap, fresh_prefix)),
                          timeout=180, what="the alert for O7, short on arrival")
        assert list(alerts) == ["O7"]
        (o7,) = alerts["O7"]
        assert o7["status"] == "open" and short_of(o7) == {"PER": (1, 1)}
        # ETH's 14 units cover O1, O2, O3 and O5 exactly: nothing else is short yet.
        # Wait until every order and its lines have been through every stage before dropping the
        # stock, so the drop, not the orders, is what makes the existing orders short (and an alert
        # that should not exist has had every chance to appear).
        wait_for(lambda: caught_up(kafka_bootstrap, fresh_prefix), timeout=120,
                 what="the workers to process every order and order line")
        assert set(by_order(read_alerts(kafka_bootstrap, fresh_prefix))) == {"O7"}

        phase2 = [
            ev("inventory", 10, event_type="stock_level", sku="ETH", available=5),
            placed(11, "O6", "C1", ("ETH", 1)),  # arrives for a SKU that is already short
        ]
        assert run_forewarn(["produce", str(write_jsonl(tmp_path / "phase2.jsonl", phase2))], env).returncode == 0

        def short_orders():
            current = by_order(read_alerts(kafka_bootstrap, fresh_prefix))
            latest = {o: a[-1] for o, a in current.items()}
            rollups = [a for a in read_alerts(kafka_bootstrap, fresh_prefix) if a["rule"] == "sku_stockout_impact"]
            if {o for o, a in latest.items() if a["status"] != "resolved"} == {"O2", "O3", "O5", "O6", "O7"} and \
                    short_of(latest["O6"]) == {"ETH": (1, 1)} and rollups and \
                    rollups[-1]["details"]["affected_orders"] == "4":
                return latest
            return None

        latest = wait_for(short_orders, timeout=120, what="O2, O3, O5, O6 short after the stock drop")
        # Oldest first: O1 keeps its 4 units, O2 gets the last 1.
        assert short_of(latest["O2"]) == {"ETH": (3, 4)}
        assert short_of(latest["O3"]) == {"ETH": (4, 4)}
        assert short_of(latest["O5"]) == {"ETH": (2, 2)}
        assert latest["O2"]["customer_id"] == "C2"
        assert latest["O2"]["details"]["customer_name"] == "Mita Sen"
        (eth_line,) = json.loads(latest["O3"]["details"]["lines_json"])
        # In stock, same category, closest price first; PER is out of stock, MUG another category.
        assert [a["sku"] for a in eth_line["alternatives"]] == ["KEN", "BRA", "COL"]

        alerts = read_alerts(kafka_bootstrap, fresh_prefix)
        rollups = [a for a in alerts if a["rule"] == "sku_stockout_impact"]
        assert rollups and rollups[0]["status"] == "open" and rollups[0]["sku"] == "ETH"
        assert rollups[-1]["details"]["affected_orders"] == "4"
        assert rollups[-1]["details"]["short_units"] == "10"
        # One alert per order: one open per dedup key, every later message for it an update.
        for order_id, history in by_order(alerts).items():
            assert [a["status"] for a in history][0] == "open"
            assert {a["alert_id"] for a in history} == {history[0]["alert_id"]}, order_id

        # One worker dies without warning: the other takes over its partitions and
        # rebuilds their tables from the changelogs, so the restock still resolves everything.
        workers.kill(0)
        phase3 = [
            ev("inventory", 20, event_type="stock_level", sku="ETH", available=100),
            ev("orders", 21, event_type="cancelled", order_id="O7", customer_id="C3", lines=[]),
        ]
        assert run_forewarn(["produce", str(write_jsonl(tmp_path / "phase3.jsonl", phase3))], env).returncode == 0

        def all_resolved():
            alerts = read_alerts(kafka_bootstrap, fresh_prefix)
            latest = {o: a[-1] for o, a in by_order(alerts).items()}
            rollups = [a for a in alerts if a["rule"] == "sku_stockout_impact"]
            done = latest and all(a["status"] == "resolved" for a in latest.values()) and \
                rollups and rollups[-1]["status"] == "resolved"
            return latest if done else None

        latest = wait_for(all_resolved, timeout=120, what="every alert resolved after restock and cancellation")
        assert {o: a["details"]["resolution"] for o, a in latest.items()} == {
            "O2": "restocked", "O3": "restocked", "O5": "restocked", "O6": "restocked", "O7": "cancelled"}
        workers.assert_running()
    assert "O1" not in by_order(read_alerts(kafka_bootstrap, fresh_prefix))


def test_a_timeline_produced_at_once_gives_the_alerts_of_event_time_order(kafka_bootstrap, fresh_prefix, tmp_path):
    """A replayed day: everything is in the topics before the workers start, so stock changes are
    read long before the order lines that reach the SKU stage one hop later. The alerts must still
    be the ones reading in event-time order gives: a shortage episode from 09:10 to 09:20."""
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    timeline = reference_data() + [
        placed(2, "O1", "C1", ("ETH", 6)),
        placed(3, "O2", "C2", ("ETH", 4)),
        placed(4, "O3", "C3", ("ETH", 4)),
        ev("inventory", 10, event_type="stock_level", sku="ETH", available=7),
        ev("inventory", 20, event_type="stock_level", sku="ETH", available=40),
        placed(30, "O4", "C1", ("KEN", 2)),
        ev("orders", 40, event_type="shipped", order_id="O4", customer_id="C1", lines=[]),
        ev("inventory", 35, event_type="stock_level", sku="KEN", available=0),  # read after the shipment
        # Two orders compete for BRA while its stock falls, one is cancelled, then a restock.
        ev("inventory", 41, event_type="stock_level", sku="BRA", available=5),
        placed(42, "O11", "C1", ("BRA", 3)),
        placed(43, "O12", "C2", ("BRA", 3)),
        ev("inventory", 44, event_type="stock_level", sku="BRA", available=2),
        ev("orders", 46, event_type="cancelled", order_id="O11", customer_id="C1", lines=[]),
        ev("inventory", 47, event_type="stock_level", sku="BRA", available=10),
    ]
    assert run_forewarn(["produce", str(write_jsonl(tmp_path / "day.jsonl", timeline))], env).returncode == 0
    expected = {
        "O2": [("open", T0.format(10), {"ETH": (3, 4)}), ("resolved", T0.format(20), None)],
        "O3": [("open", T0.format(10), {"ETH": (4, 4)}), ("resolved", T0.format(20), None)],
        # KEN dropped to 0 at 09:35 while O4 was still open; it shipped at 09:40.
        "O4": [("open", T0.format(35), {"KEN": (2, 2)}), ("resolved", T0.format(40), None)],
        # Oldest first: O11 keeps 3 of 5, O12 is 1 short; at 2 in stock O11 is 1 short and O12 3;
        # O11's cancellation gives O12 the 2; the restock covers it.
        "O11": [("open", T0.format(44), {"BRA": (1, 3)}), ("resolved", T0.format(46), None)],
        "O12": [("open", T0.format(43), {"BRA": (1, 3)}), ("updated", T0.format(44), {"BRA": (3, 3)}),
                ("updated", T0.format(46), {"BRA": (1, 3)}), ("resolved", T0.format(47), None)],
    }
    from schemas.codec import parse_timestamp_ms
    from streams.detectors.alerts import alert_id_for

    def story():
        alerts = by_order(read_alerts(kafka_bootstrap, fresh_prefix))
        return {order_id: [(a["status"], a["event_ts"], short_of(a) if a["status"] != "resolved" else None)
                           for a in history] for order_id, history in alerts.items()}

    expected_ts = {o: [(s, parse_timestamp_ms(t), lines) for s, t, lines in steps] for o, steps in expected.items()}
    with Workers(env, count=2, log_dir=tmp_path) as workers:
        wait_for(lambda: workers.assert_running() or story() == expected_ts, timeout=180,
                 what=f"alerts {expected_ts}")
        alerts = by_order(read_alerts(kafka_bootstrap, fresh_prefix))
    assert alerts["O2"][0]["alert_id"] == alert_id_for("out_of_stock_open_order:O2", "inventory-10-ETH")
    assert alerts["O4"][-1]["details"]["resolution"] == "shipped"
    assert alerts["O11"][-1]["details"]["resolution"] == "cancelled"
    assert alerts["O12"][-1]["details"]["resolution"] == "restocked"
