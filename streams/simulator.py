"""A small coffee shop's traffic, with the founding story of SEEDS.md played among it.

``store_timeline(duration_s, seed)`` returns a deterministic schedule of
(offset in seconds, topic, record) covering reference data, ordinary traffic
(web sessions, orders, shipments, stock movements) and the story:

* Arjun Mehta, a loyal gold customer, follows a marketing email to the sale
  page for Ethiopia Yirgacheffe beans and orders them with filters;
* the sale is popular: two dozen other customers order the same beans;
* a warehouse recount drops the beans to zero: every one of those orders is
  short, Arjun's included, and operations see a roll-up for the SKU;
* a part restock serves the oldest orders first; a customer cancels; others ship.

Event times are given at play time (``ts`` is filled in by the player), so the
same schedule works live in the demo and as a recorded timeline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CATALOG = [
    # sku, name, category, price in cents
    ("ETH-SALE-1KG", "Ethiopia Yirgacheffe 1kg (sale)", "beans", 1990),
    ("KEN-AA-1KG", "Kenya AA 1kg", "beans", 2450),
    ("COL-SUP-1KG", "Colombia Supremo 1kg", "beans", 2100),
    ("BRA-SAN-1KG", "Brazil Santos 1kg", "beans", 1850),
    ("GUA-ANT-1KG", "Guatemala Antigua 1kg", "beans", 2300),
    ("HOUSE-ESP-1KG", "House Espresso 1kg", "beans", 1690),
    ("DECAF-1KG", "Swiss Water Decaf 1kg", "beans", 2250),
    ("MACH-ESP-200", "Espresso Machine E200", "machines", 34900),
    ("MACH-ESP-400", "Espresso Machine E400", "machines", 59900),
    ("MACH-DRIP-10", "Drip Brewer D10", "machines", 8900),
    ("GRND-BURR-60", "Burr Grinder B60", "grinders", 12900),
    ("GRND-BURR-80", "Burr Grinder B80", "grinders", 18900),
    ("GRND-HAND-1", "Hand Grinder H1", "grinders", 4900),
    ("FILT-PAPER-100", "Paper Filters x100", "filters", 490),
    ("FILT-PAPER-200", "Paper Filters x200", "filters", 890),
    ("FILT-WATER-3", "Water Filter Cartridges x3", "filters", 2490),
    ("CUP-CERAMIC-2", "Ceramic Cups x2", "cups", 1990),
    ("CUP-GLASS-2", "Double-wall Glasses x2", "cups", 2490),
    ("CUP-TRAVEL", "Travel Mug", "cups", 1790),
]

STORY_SKU = "ETH-SALE-1KG"
STORY_CUSTOMER = "C-ARJUN"
FIRST_NAMES = ["Asha", "Bilal", "Chitra", "Dev", "Esha", "Farhan", "Gita", "Hari", "Isha", "Jai", "Kavya",
               "Leela", "Mohan", "Nisha", "Omar", "Priya", "Rahul", "Sana", "Tara", "Uday", "Vikram", "Zoya"]
LAST_NAMES = ["Banerjee", "Chatterjee", "Das", "Gupta", "Iyer", "Khan", "Menon", "Patel", "Rao", "Sen", "Shah"]
PAGES = ["/", "/shop/beans", "/shop/machines", "/shop/grinders", "/shop/cups", "/shop/filters", "/account/orders"]


@dataclass(frozen=True)
class Scheduled:
    at: float  # seconds from the start of the run
    topic: str
    record: dict  # without ts; the player stamps it


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:06d}"


def store_timeline(duration_s: float = 60.0, seed: int = 7, customers: int = 40) -> list[Scheduled]:
    rng = random.Random(seed)
    ids = _Ids()
    out: list[Scheduled] = []

    def at(fraction: float, topic: str, record: dict) -> None:
        out.append(Scheduled(round(max(0.0, fraction) * duration_s, 3), topic, record))

    # Reference data and opening stock first.
    for sku, name, category, price in CATALOG:
        at(0.0, "catalog", {"event_id": ids("cat"), "sku": sku, "name": name, "category": category,
                            "price_cents": price, "active": True})
    people = [(STORY_CUSTOMER, "Arjun Mehta", "gold", 412_000)]
    for n in range(customers):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        tier = rng.choices(["standard", "gold", "platinum"], weights=[7, 2, 1])[0]
        people.append((f"C-{n + 1:04d}", name, tier, rng.randint(5_000, 300_000)))
    for customer_id, name, tier, ltv in people:
        at(0.0, "customers", {"event_id": ids("cus"), "customer_id": customer_id, "name": name, "tier": tier,
                              "lifetime_value_cents": ltv,
                              "email": f"{name.split()[0].lower()}.{customer_id.lower()}@example.com",
                              "preferred_channel": rng.choice(["email", "chat", "phone", "sms"]),
                              "language": rng.choice(["en", "hi", "bn"])})
    stock = {sku: rng.randint(40, 120) for sku, *_ in CATALOG}
    stock[STORY_SKU] = 60
    for sku, level in stock.items():
        at(0.0, "inventory", {"event_id": ids("stk"), "event_type": "stock_level", "sku": sku, "available": level,
                              "warehouse": "BLR-1"})

    # Ordinary traffic, spread over the run.
    open_orders: list[tuple[float, str, str]] = []
    steps = max(10, int(duration_s * 2))
    for step in range(steps):
        t = 0.02 + 0.93 * step / steps
        customer_id, *_ = rng.choice(people[1:])
        session = ids("sess")
        for page in rng.sample(PAGES, k=2):
            at(t, "web", {"event_id": ids("web"), "event_type": "page_view", "session_id": session, "page": page,
                          "customer_id": customer_id})
        if rng.random() < 0.45:
            sku, *_ = rng.choice([c for c in CATALOG if c[0] != STORY_SKU])
            order_id = ids("O")
            at(t + 0.002, "orders", {"event_id": ids("ord"), "event_type": "placed", "order_id": order_id,
                                     "customer_id": customer_id, "channel": "web",
                                     "lines": [{"sku": sku, "qty": rng.randint(1, 2),
                                                "unit_price_cents": dict((c[0], c[3]) for c in CATALOG)[sku]}]})
            open_orders.append((t, order_id, customer_id))
        if open_orders and rng.random() < 0.3:
            placed_at, order_id, customer_id = open_orders.pop(0)
            at(max(t, placed_at + 0.05), "orders", {"event_id": ids("ord"), "event_type": "shipped",
                                                    "order_id": order_id, "customer_id": customer_id})

    # The story.
    price = dict((c[0], c[3]) for c in CATALOG)
    story_session = "sess-arjun-sale"
    for fraction, event_type, page, extra in [
        (0.08, "page_view", "/sale/ethiopia-yirgacheffe", {}),
        (0.085, "cart_add", "/sale/ethiopia-yirgacheffe", {"sku": STORY_SKU, "qty": 2, "cart_item_count": 2}),
        (0.09, "page_view", "/shop/filters", {}),
        (0.095, "cart_view", "/cart", {"cart_item_count": 0}),
    ]:
        at(fraction, "web", {"event_id": ids("web"), "event_type": event_type, "session_id": story_session,
                             "page": page, "customer_id": STORY_CUSTOMER, **extra})
    story_order = "O-ARJUN-1"
    at(0.12, "orders", {"event_id": ids("ord"), "event_type": "placed", "order_id": story_order,
                        "customer_id": STORY_CUSTOMER, "channel": "web",
                        "lines": [{"sku": STORY_SKU, "qty": 2, "unit_price_cents": price[STORY_SKU]},
                                  {"sku": "FILT-PAPER-100", "qty": 1, "unit_price_cents": price["FILT-PAPER-100"]}]})
    sale_orders = []
    for n in range(24):
        customer_id, *_ = people[1 + n % (len(people) - 1)]
        order_id = f"O-SALE-{n + 1:02d}"
        sale_orders.append((order_id, customer_id))
        at(0.14 + 0.2 * n / 24, "orders", {"event_id": ids("ord"), "event_type": "placed", "order_id": order_id,
                                           "customer_id": customer_id, "channel": "email-campaign",
                                           "lines": [{"sku": STORY_SKU, "qty": rng.randint(1, 3),
                                                      "unit_price_cents": price[STORY_SKU]}]})
    # The recount: the sale beans were never there.
    at(0.40, "inventory", {"event_id": ids("stk"), "event_type": "stock_level", "sku": STORY_SKU, "available": 0,
                           "warehouse": "BLR-1"})
    at(0.50, "web", {"event_id": ids("web"), "event_type": "order_lookup", "session_id": "sess-arjun-account",
                     "page": "/account/orders", "customer_id": STORY_CUSTOMER, "order_id": story_order,
                     "found": False})
    # A second, smaller shortage: one grinder order, later cancelled by the customer.
    grinder_customer, *_ = people[5]
    at(0.30, "orders", {"event_id": ids("ord"), "event_type": "placed", "order_id": "O-GRINDER-1",
                        "customer_id": grinder_customer, "channel": "web",
                        "lines": [{"sku": "GRND-BURR-80", "qty": 1, "unit_price_cents": price["GRND-BURR-80"]}]})
    at(0.55, "inventory", {"event_id": ids("stk"), "event_type": "stock_level", "sku": "GRND-BURR-80",
                           "available": 0, "warehouse": "BLR-1"})
    at(0.80, "orders", {"event_id": ids("ord"), "event_type": "cancelled", "order_id": "O-GRINDER-1",
                        "customer_id": grinder_customer})
    # A part restock: the oldest orders are served first.
    at(0.70, "inventory", {"event_id": ids("stk"), "event_type": "stock_level", "sku": STORY_SKU, "available": 12,
                           "warehouse": "BLR-1"})
    for order_id, customer_id in sale_orders[-3:]:
        at(0.85, "orders", {"event_id": ids("ord"), "event_type": "cancelled", "order_id": order_id,
                            "customer_id": customer_id})

    out.sort(key=lambda s: s.at)
    return out
