"""A small coffee shop's traffic, with every story of SEEDS.md played among it.

``store_timeline(duration_s, seed)`` returns a deterministic schedule of
(offset in seconds, topic, record) covering reference data, ordinary traffic
(web sessions, orders, shipments, stock movements, support tickets answered
in time, happy feedback) and the stories:

* the coffee-bean customer: Arjun Mehta follows a marketing email to the sale
  page, his cart empties when he moves to another page (so do five other
  shoppers' carts: a site defect), he orders anyway; a warehouse recount
  drops the sale beans to zero, so his order and two dozen others are short;
  his order is missing from his account; he emails support, then calls about
  the same order; finally he complains in public;
* waiting time: a chat nobody answers in time, and an email queue that
  outgrows the team;
* hot buttons: a burst of "my order has not arrived" tickets in English,
  Hindi and Bengali with no category, a grinder that keeps coming back, a
  checkout page failing at peak;
* proactive care: an order that will not ship by its promised time, a
  payment that fails and is never retried, an unhappy survey.

Event times are given at play time (``ts`` is filled in by the player, see
``shop_time``), so the same schedule works live in the demo and as a
recorded timeline.
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


# The demo plays one hour of the shop, whatever its duration in wall time: reply targets,
# payment grace periods and complaint windows are minutes to an hour long.
SHOP_SPAN_MS = 60 * 60 * 1000


def shop_time(at: float, duration_s: float, start_ms: int) -> int:
    """Event time of a schedule offset `at` (seconds of a `duration_s` run) in the hour from `start_ms`."""
    return start_ms + int(at / max(duration_s, 1e-9) * SHOP_SPAN_MS)


@dataclass(frozen=True)
class At:
    """A time inside the schedule (seconds from the start) in a field that holds an event time."""

    seconds: float


@dataclass(frozen=True)
class Scheduled:
    at: float  # seconds from the start of the run
    topic: str
    record: dict  # without ts; the player stamps it

    def stamped(self, duration_s: float, start_ms: int) -> dict:
        """The record with its event time, and every At field turned into an event time."""
        record = {k: shop_time(v.seconds, duration_s, start_ms) if isinstance(v, At) else v
                  for k, v in self.record.items()}
        record["ts"] = shop_time(self.at, duration_s, start_ms)
        return record


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:06d}"


def store_timeline(duration_s: float = 60.0, seed: int = 7, customers: int = 60) -> list[Scheduled]:
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
    for number, (customer_id, name, tier, ltv) in enumerate(people):
        # A made-up mobile number per customer, derived from its place (the random draws stay as they were).
        phone = f"+91 98{(number * 7919) % 1000:03d} {(number * 104729) % 100000:05d}"
        at(0.0, "customers", {"event_id": ids("cus"), "customer_id": customer_id, "name": name, "tier": tier,
                              "lifetime_value_cents": ltv, "phone": phone,
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
        if rng.random() < 0.06:
            # A question answered well in time, by one of the customers no story uses.
            asker, *_ = rng.choice(people[51:] or people[1:])
            ticket_id = ids("TKT")
            channel = rng.choice(["chat", "email", "phone"])
            for offset, kind in ((0.0, "ticket_opened"), (0.001, "agent_replied"), (0.004, "ticket_resolved")):
                at(t + offset, "support", {"event_id": ids("sup"), "event_type": kind, "ticket_id": ticket_id,
                                           "customer_id": asker, "channel": channel,
                                           "category": "product_question" if kind == "ticket_opened" else None})
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

    _more_stories(at, ids, rng, people, price, story_order, duration_s)
    out.sort(key=lambda s: s.at)
    return out


def _more_stories(at, ids, rng: random.Random, people: list, price: dict, story_order: str,
                  duration_s: float) -> None:
    """Every other story of SEEDS.md, at fixed points of the hour, among the ordinary traffic."""
    customers = [p[0] for p in people[1:]]
    platinum = next((p[0] for p in people[1:] if p[2] == "platinum"), customers[0])

    def web(fraction, kind, session, page, customer=None, **extra):
        at(fraction, "web", {"event_id": ids("web"), "event_type": kind, "session_id": session, "page": page,
                             "customer_id": customer, **extra})

    def ticket(fraction, kind, ticket_id, customer, channel, **extra):
        at(fraction, "support", {"event_id": ids("sup"), "event_type": kind, "ticket_id": ticket_id,
                                 "customer_id": customer, "channel": channel, **extra})

    def order(fraction, kind, order_id, customer, lines=(), **extra):
        at(fraction, "orders", {"event_id": ids("ord"), "event_type": kind, "order_id": order_id,
                                "customer_id": customer, "channel": "web",
                                "lines": [{"sku": sku, "qty": qty, "unit_price_cents": price[sku]} for sku, qty in lines],
                                **extra})

    # The sale page loses five more carts within minutes: a site defect, not one customer's bad luck.
    for n in range(5):
        session = f"sess-sale-{n + 1}"
        web(0.10 + 0.01 * n, "page_view", session, "/sale/ethiopia-yirgacheffe", customers[n])
        web(0.102 + 0.01 * n, "cart_add", session, "/sale/ethiopia-yirgacheffe", customers[n], sku=STORY_SKU,
            qty=1, cart_item_count=1)
        web(0.104 + 0.01 * n, "page_view", session, "/shop/filters", customers[n])
        web(0.106 + 0.01 * n, "cart_view", session, "/cart", customers[n], cart_item_count=0)

    # Arjun asks support which items are missing, then calls about the same order.
    ticket(0.45, "ticket_opened", "TKT-ARJUN-1", STORY_CUSTOMER, "email", order_id=story_order,
           text="You wrote that some items of my order are out of stock. Which ones? I cannot see the order "
                "in my account either.")
    ticket(0.47, "agent_replied", "TKT-ARJUN-1", STORY_CUSTOMER, "email", agent_id="agent-7")
    ticket(0.58, "ticket_opened", "TKT-ARJUN-2", STORY_CUSTOMER, "phone", order_id=story_order,
           text="Calling again about order O-ARJUN-1: still not in my account and nobody says what is missing.")
    ticket(0.59, "agent_replied", "TKT-ARJUN-2", STORY_CUSTOMER, "phone", agent_id="agent-2")
    # ... and finally in public.
    at(0.90, "feedback", {"event_id": ids("fbk"), "event_type": "social_mention", "customer_id": STORY_CUSTOMER,
                          "score": -3, "text": "Twice now my order vanished and nobody could tell me what was "
                                               "out of stock. Done with this brand."})

    # Waiting time: a chat nobody answers for six minutes ...
    ticket(0.50, "ticket_opened", "TKT-CHAT-WAIT", customers[6], "chat", category="order_status",
           text="Is my order coming today?")
    ticket(0.60, "agent_replied", "TKT-CHAT-WAIT", customers[6], "chat", agent_id="agent-3")
    # ... and an email queue that outgrows the team (answered well within the email target, but 22 at once).
    topics_ = ["returns", "payment", "account", "stock", "website"]
    for n in range(22):
        who = customers[(10 + n) % len(customers)]
        ticket(0.30 + 0.002 * n, "ticket_opened", f"TKT-MAIL-{n + 1:02d}", who, "email",
               category=topics_[n % len(topics_)], text="Question about my account")
        ticket(0.70 + 0.002 * n, "agent_replied", f"TKT-MAIL-{n + 1:02d}", who, "email", agent_id="agent-5")

    # Hot button: late deliveries, described in three languages, no category given.
    texts = ["My order still hasn't arrived", "मेरा ऑर्डर अभी तक नहीं पहुंचा", "আমার অর্ডার এখনও আসেনি",
             "Where is my parcel? Tracking shows no update", "डिलीवरी कब होगी? पांच दिन हो गए",
             "অর্ডার কবে আসবে? এখনও ডেলিভারি হয়নি"]
    for n in range(12):
        who = customers[(32 + n) % len(customers)]
        ticket(0.62 + 0.004 * n, "ticket_opened", f"TKT-LATE-{n + 1:02d}", who, "chat", text=texts[n % len(texts)],
               language=["en", "hi", "bn"][n % 3])
        ticket(0.622 + 0.004 * n, "agent_replied", f"TKT-LATE-{n + 1:02d}", who, "chat", agent_id="agent-1")

    # A grinder that keeps coming back.
    grinder = "GRND-BURR-60"
    for n in range(6):
        who = customers[(44 + n) % len(customers)]
        returned = f"O-GRIND-{n + 1}"
        order(0.05 + 0.01 * n, "placed", returned, who, [(grinder, 1)])
        order(0.07 + 0.01 * n, "shipped", returned, who)
        at(0.72 + 0.02 * n, "returns", {"event_id": ids("ret"), "return_id": f"R-{n + 1}", "order_id": returned,
                                        "customer_id": who, "sku": grinder, "qty": 1,
                                        "reason": ["burrs misaligned", "motor stopped", "burrs misaligned"][n % 3]})

    # The checkout page fails at peak.
    for n in range(30):
        web(0.66 + 0.001 * n, "page_view" if n % 6 == 0 else "error", f"sess-peak-{n}", "/checkout",
            customers[n % len(customers)], **({} if n % 6 == 0 else {"status_code": 503}))

    # An order that will miss its promised ship-by time, and one that ships in time.
    order(0.20, "placed", "O-LATE-1", customers[3], [("MACH-ESP-200", 1)], promised_ship_by=At(0.55 * duration_s))
    order(0.75, "shipped", "O-LATE-1", customers[3])
    # A payment that fails and is never retried, and one that is retried in time.
    order(0.25, "placed", "O-PAY-1", platinum, [("MACH-ESP-400", 1)])
    order(0.26, "payment_failed", "O-PAY-1", platinum)
    order(0.25, "placed", "O-PAY-2", customers[4], [("CUP-TRAVEL", 2)])
    order(0.26, "payment_failed", "O-PAY-2", customers[4])
    order(0.28, "payment_succeeded", "O-PAY-2", customers[4])
    # An unhappy survey after a late delivery, and a happy one.
    at(0.85, "feedback", {"event_id": ids("fbk"), "event_type": "csat", "customer_id": customers[3], "score": 1,
                          "text": "The machine came a day late and nobody told me.", "order_id": "O-LATE-1"})
    at(0.86, "feedback", {"event_id": ids("fbk"), "event_type": "nps", "customer_id": customers[8], "score": 9})
