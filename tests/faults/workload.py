"""A replayable workload whose out-of-stock outcome is known in advance.

Orders have one line of one unit. Most go to well-stocked SKUs; a few go to
"short" SKUs whose stock covers only their first orders: every later order
on a short SKU is short. Some short orders are cancelled later, which
resolves their alert without changing anyone else's allocation (a short
order holds no units). Stock levels are restated along the way without
changing them, so stock events flow all the time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

CATEGORIES = ("beans", "machines", "grinders", "cups", "filters")


@dataclass
class Workload:
    events: list[tuple[str, dict]]  # (topic, record) in event-time order
    short_orders: set[str]  # every order that must get an out_of_stock_open_order alert
    cancelled_short: set[str] = field(default_factory=set)  # of those, cancelled later: open then resolved
    short_skus: dict[str, int] = field(default_factory=dict)  # sku -> stock level


def build(total_events: int = 50_000, seed: int = 11, skus: int = 60, short_skus: int = 6,
          short_stock: int = 30, short_share: float = 0.02) -> Workload:
    rng = random.Random(seed)
    events: list[tuple[str, dict]] = []
    ts = 1_772_442_900_000  # 2026-03-02T09:15:00Z
    all_skus = [f"F-SKU-{n:03d}" for n in range(skus)]
    shorts = all_skus[:short_skus]
    for n, sku in enumerate(all_skus):
        events.append(("catalog", {"event_id": f"cat-{sku}", "ts": ts, "sku": sku, "name": f"Product {n}",
                                   "category": CATEGORIES[n % len(CATEGORIES)], "price_cents": 500 + 37 * n,
                                   "active": True}))
    levels = {sku: (short_stock if sku in shorts else 1_000_000) for sku in all_skus}
    for sku, level in levels.items():
        events.append(("inventory", {"event_id": f"stk-0-{sku}", "ts": ts, "event_type": "stock_level",
                                     "sku": sku, "available": level, "warehouse": None}))
    taken = {sku: 0 for sku in shorts}
    short_orders: list[str] = []
    cancelled: set[str] = set()
    n = 0
    while len(events) < total_events:
        ts += 50
        n += 1
        sku = rng.choice(shorts) if rng.random() < short_share else rng.choice(all_skus[short_skus:])
        order_id = f"F-O-{n:06d}"
        events.append(("orders", {"event_id": f"ord-{n}", "ts": ts, "event_type": "placed", "order_id": order_id,
                                  "customer_id": f"F-C-{n % 997}", "channel": None, "promised_ship_by": None,
                                  "lines": [{"sku": sku, "qty": 1, "unit_price_cents": 100}]}))
        if sku in taken:
            taken[sku] += 1
            if taken[sku] > levels[sku]:
                short_orders.append(order_id)
        if rng.random() < 0.05:
            restated = rng.choice(all_skus)
            events.append(("inventory", {"event_id": f"stk-{n}", "ts": ts + 1, "event_type": "stock_level",
                                         "sku": restated, "available": levels[restated], "warehouse": None}))
        if short_orders and rng.random() < 0.01:
            victim = short_orders[rng.randrange(len(short_orders))]
            if victim not in cancelled:
                cancelled.add(victim)
                events.append(("orders", {"event_id": f"cxl-{victim}", "ts": ts + 2, "event_type": "cancelled",
                                          "order_id": victim, "customer_id": "F-C", "channel": None,
                                          "promised_ship_by": None, "lines": []}))
    return Workload(events, set(short_orders), cancelled, {sku: levels[sku] for sku in shorts})
