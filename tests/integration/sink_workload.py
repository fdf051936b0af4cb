"""Valid events for every topic the ClickHouse sink reads: for its tests and its benchmark."""

from __future__ import annotations

import random

T0 = 1_772_442_900_000  # 2026-03-02T09:15:00Z

# Share of each kind below in a shop's traffic: orders, inventory, catalog, customers, web, support,
# returns, feedback, task updates, alerts, outreach tasks. Web and orders dominate.
REALISTIC_MIX = (20, 10, 0.5, 0.5, 40, 12, 3, 5, 1, 6, 2)


def mixed_events(n: int, seed: int = 5, realistic: bool = False) -> list[tuple[str, dict]]:
    """`n` valid events spread over every topic the sink reads, with optional fields both set and null.

    By default the topics take turns (event i is of kind i % 11), so a test
    knows what each event is; ``realistic`` draws them in the proportions of
    REALISTIC_MIX instead.
    """
    rng = random.Random(seed)
    kinds = rng.choices(range(11), weights=REALISTIC_MIX, k=n) if realistic else [i % 11 for i in range(n)]
    events: list[tuple[str, dict]] = []
    for i, kind in enumerate(kinds):
        ts = T0 + i * 1000
        if kind == 0:
            events.append(("orders", {"event_id": f"o-{i}", "ts": ts, "event_type": "placed", "order_id": f"O-{i}",
                                      "customer_id": f"C-{i % 17}", "channel": "web" if i % 2 else None,
                                      "promised_ship_by": ts + 86_400_000 if i % 3 else None,
                                      "lines": [{"sku": f"S-{i % 7}", "qty": 1 + i % 3, "unit_price_cents": 1250},
                                                {"sku": f"S-{(i + 1) % 7}", "qty": 2, "unit_price_cents": 990}]}))
        elif kind == 1:
            events.append(("inventory", {"event_id": f"k-{i}", "ts": ts, "event_type": "stock_level",
                                         "sku": f"S-{i % 7}", "available": rng.randint(0, 50), "warehouse": None}))
        elif kind == 2:
            events.append(("catalog", {"event_id": f"c-{i}", "ts": ts, "sku": f"S-{i % 7}", "name": f"Beans {i}",
                                       "category": "beans", "price_cents": 1250, "active": bool(i % 2)}))
        elif kind == 3:
            events.append(("customers", {"event_id": f"u-{i}", "ts": ts, "customer_id": f"C-{i % 17}",
                                         "name": "Arjun Mehta", "tier": "gold", "lifetime_value_cents": 250_000,
                                         "email": None, "preferred_channel": "email", "language": "hi"}))
        elif kind == 4:
            events.append(("web", {"event_id": f"w-{i}", "ts": ts, "event_type": "cart_view", "session_id": f"W-{i}",
                                   "page": "/sale", "customer_id": None, "sku": None, "qty": None,
                                   "cart_item_count": 0, "status_code": None, "order_id": None, "found": None}))
        elif kind == 5:
            events.append(("support", {"event_id": f"s-{i}", "ts": ts, "event_type": "ticket_opened",
                                       "ticket_id": f"T-{i}", "customer_id": f"C-{i % 17}", "channel": "chat",
                                       "category": None, "text": "আমার অর্ডার কোথায়?", "order_id": None,
                                       "agent_id": None, "language": "bn"}))
        elif kind == 6:
            events.append(("returns", {"event_id": f"r-{i}", "ts": ts, "return_id": f"R-{i}", "order_id": f"O-{i}",
                                       "customer_id": f"C-{i % 17}", "sku": f"S-{i % 7}", "qty": 1,
                                       "reason": "damaged"}))
        elif kind == 7:
            events.append(("feedback", {"event_id": f"f-{i}", "ts": ts, "event_type": "csat",
                                        "customer_id": None if i % 2 else f"C-{i % 17}", "score": 2, "text": None,
                                        "order_id": None, "ticket_id": None}))
        elif kind == 8:
            events.append(("task-updates", {"event_id": f"t-{i}", "ts": ts, "task_id": f"K-{i}", "action": "claim",
                                            "assignee": "asha"}))
        elif kind == 9:
            events.append(("alerts", {"alert_id": f"A-{i}", "rule": "out_of_stock_open_order", "status": "open",
                                      "severity": "warning", "audience": "cs",
                                      "dedup_key": f"out_of_stock_open_order:O-{i}", "title": "short",
                                      "summary": "1 item out of stock", "customer_id": f"C-{i % 17}",
                                      "order_id": f"O-{i}", "sku": None, "ticket_id": None, "session_id": None,
                                      "page": None, "category": None, "details": {f"short.S-{i % 7}": "2"},
                                      "evidence": [f"o-{i}"], "event_ts": ts, "detected_at": ts + 250}))
        else:
            events.append(("outreach-tasks", {"task_id": f"K-{i}", "alert_id": f"A-{i - 1}",
                                              "rule": "out_of_stock_open_order", "customer_id": f"C-{i % 17}",
                                              "priority": "P2", "queue": "customer-success",
                                              "action": "Call the customer and offer an alternative.",
                                              "due_by": ts + 3_600_000, "status": "open", "assignee": None,
                                              "context": {"order_id": f"O-{i - 1}"}, "created_at": ts,
                                              "updated_at": ts, **(case_of(i, ts) if i % 2 == 0 else {})}))
    return events


def case_of(i: int, ts: int) -> dict:
    """A customer's second case with two problems (forewarn.OutreachTask version 2), one of them resolved."""
    def problem(alert_id: str, rule: str, status: str, resolution: str | None) -> dict:
        return {"alert_id": alert_id, "rule": rule, "status": status, "severity": "warning", "title": rule,
                "summary": f"{rule} for C-{i % 17}", "action": f"Handle {rule}.", "queue": "customer-success",
                "priority": "P2", "due_by": ts + 3_600_000, "order_id": f"O-{i - 1}", "ticket_id": None,
                "sku": None, "resolution": resolution, "added_at": ts, "updated_at": ts,
                "details": {"lines_json": '[{"sku": "S-1"}]'} if rule == "out_of_stock_open_order" else {}}

    return {"case_number": 2, "problems": [problem(f"A-{i - 1}", "out_of_stock_open_order", "open", None),
                                           problem(f"P-{i}", "payment_failed", "resolved", "payment_retried")]}
