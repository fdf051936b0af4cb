"""A replayable shop workload for the fault tests, every outcome far from its deadline.

Event times are derived from ``START_MS`` and the seed alone. The workload has
three parts, in event-time order:

* **The main span** (40 minutes of event time, inside one hour-long complaint
  window): orders and stock as before, the out-of-stock outcome known in
  advance (see below), and among them the stories that fire the other rules:
  web sessions, some of which lose their cart (``cart_lost``) and some of
  which look up an order the account page does not show
  (``order_not_visible``); support tickets on every channel, answered early,
  answered after their reply target or never (``support_sla_risk`` /
  ``_breach``, and ``support_backlog`` for the channels with a ticket waiting
  for good), customers writing twice (``repeat_contact``), the tickets'
  categories (``complaint_spike``); failed payments retried in time, late or
  never (``payment_failed``); promised orders shipped in time, late or never
  (``late_shipment``); returns, with a few SKUs that keep coming back
  (``return_spike``); and feedback, some of it negative (``negative_feedback``).
* **The tail**, five to nine hours after the start: the late replies,
  payments and shipments whose time falls after the main span, what ends the
  unseen orders' episodes, then every SKU's stock level restated at the end.
  The tail carries every worker's clock past every deadline of the main span,
  so what the rules decide is settled by events, not by how long a test
  waits afterwards; and the undisturbed run holds it back until the main span
  is processed, so nothing in it is read before what comes before it.

An undisturbed run is the reference the fault tests compare with, so no
outcome may hinge on which of two partitions a worker happens to read first:
a reply comes within a twentieth to a tenth of its target or after the
target (a reply after it raises and resolves the breach whichever is read
first, the reply or the clock), payments and shipments are minutes away from
their deadlines, and the roll-ups are either clearly crossed or clearly not
(``check_margins`` asserts the last part). ``bench.workload.Shop`` draws its
stories at random moments, so a reply there can fall a second either side of
its target; its page names, ticket texts and return reasons are reused here.

Out of stock: orders have one line of one unit. Most go to well-stocked SKUs;
a few go to "short" SKUs whose stock covers only their first orders: every
later order on a short SKU is short. Some short orders are cancelled later,
which resolves their alert without changing anyone else's allocation (a short
order holds no units). Stock levels are restated along the way without
changing them, so stock events flow all the time.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from bench.workload import PAGES, RETURN_REASONS, TICKET_TEXTS
from streams.thresholds import HOUR_MS, MINUTE_MS, Thresholds

CATEGORIES = ("beans", "machines", "grinders", "cups", "filters")
START_MS = 1_772_442_900_000  # 2026-03-02T09:15:00Z
MAIN_SPAN_MS = 40 * MINUTE_MS
# Stories end a few minutes before the main span does: nothing they decide is still in flight when
# the tail moves the clocks on by hours.
STORIES_END_MS = START_MS + 36 * MINUTE_MS
TAIL_START_MS = START_MS + 5 * HOUR_MS
FINAL_MS = START_MS + 9 * HOUR_MS
CHANNELS = ("chat", "phone", "sms", "social", "email")
SECOND = 1000

# The rules an undisturbed run of this workload must fire (the tests check it, so a story that
# stops firing its rule is noticed, not silently compared as "nothing expected, nothing seen").
RULES = ("out_of_stock_open_order", "sku_stockout_impact", "cart_lost", "order_not_visible", "support_sla_risk",
         "support_sla_breach", "support_backlog", "repeat_contact", "complaint_spike", "payment_failed",
         "late_shipment", "return_spike", "negative_feedback")


@dataclass
class Workload:
    events: list[tuple[str, dict]]  # (topic, record) in event-time order
    short_orders: set[str]  # every order that must get an out_of_stock_open_order alert
    cancelled_short: set[str] = field(default_factory=set)  # of those, cancelled later: open then resolved
    short_skus: dict[str, int] = field(default_factory=dict)  # sku -> stock level
    final_ts: int = FINAL_MS  # the latest event time: every worker's clock must pass it
    tail_index: int = 0  # events[tail_index:] are the tail
    stories: dict[str, int] = field(default_factory=dict)  # how many of each story, for the report
    by_topic: dict[str, int] = field(default_factory=dict)


class _Timeline:
    """Events with their times; sorted by time (then by insertion) at the end."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int, str, dict]] = []
        self.tail: list[tuple[int, int, str, dict]] = []
        self.stories: Counter[str] = Counter()

    def add(self, ts: int, topic: str, record: dict) -> None:
        self.items.append((ts, len(self.items), topic, dict(record, ts=ts)))

    def add_late(self, ts: int, topic: str, record: dict, to_tail: bool = False) -> None:
        """An event of a story that may fall after the main span (or must come after it all, `to_tail`):
        then it moves to the tail, in order."""
        if ts <= STORIES_END_MS and not to_tail:
            self.add(ts, topic, record)
        else:
            self.tail.append((ts, len(self.tail), topic, record))


def build(total_events: int = 50_000, seed: int = 11, skus: int = 60, short_skus: int = 6,
          short_stock: int = 30, short_share: float = 0.02) -> Workload:
    rng = random.Random(seed)
    limits = Thresholds()
    line = _Timeline()
    all_skus = [f"F-SKU-{n:03d}" for n in range(skus)]
    shorts = all_skus[:short_skus]
    regular = all_skus[short_skus:]
    returned_skus = [f"F-SKU-R{n:02d}" for n in range(3)]  # the SKUs that keep coming back
    for n, sku in enumerate(all_skus + returned_skus):
        line.add(START_MS, "catalog", {"event_id": f"cat-{sku}", "sku": sku, "name": f"Product {n}",
                                       "category": CATEGORIES[n % len(CATEGORIES)], "price_cents": 500 + 37 * n,
                                       "active": True})
    levels = {sku: (short_stock if sku in shorts else 1_000_000) for sku in all_skus + returned_skus}
    for sku, level in levels.items():
        line.add(START_MS, "inventory", {"event_id": f"stk-0-{sku}", "event_type": "stock_level", "sku": sku,
                                         "available": level, "warehouse": None})

    story_orders = _Orders(line, rng, regular)
    _web_sessions(line, rng, regular, limits)
    _lookups(line, rng, story_orders)
    _tickets(line, rng, limits)
    _payments(line, rng, story_orders, limits)
    _shipments(line, rng, story_orders, limits)
    _returns(line, rng, story_orders, regular, returned_skus)
    _feedback(line, rng, story_orders)

    # The tail: deferred story events in their own order, a second apart, then every level restated.
    tail = sorted(line.tail)
    finals = len(levels)
    background = total_events - len(line.items) - len(tail) - finals
    if background < total_events // 2:
        raise ValueError(f"{total_events} events leave too few ({background}) for orders and stock")
    short_orders, cancelled = _orders_and_stock(line, rng, background, shorts, regular, levels, short_share)

    events = [(topic, record) for _, _, topic, record in sorted(line.items)]
    main_end = events[-1][1]["ts"]
    if main_end >= START_MS + 44 * MINUTE_MS:
        raise ValueError("the main span runs into the next complaint window; give the orders a shorter step")
    tail_index = len(events)
    for n, (_, _, topic, record) in enumerate(tail):
        events.append((topic, dict(record, ts=TAIL_START_MS + n * SECOND)))
    for sku, level in levels.items():
        events.append(("inventory", {"event_id": f"stk-final-{sku}", "ts": FINAL_MS, "event_type": "stock_level",
                                     "sku": sku, "available": level, "warehouse": None}))
    check_margins(events, limits)
    stories = dict(line.stories, tail_events=len(tail), short_orders=len(short_orders))
    return Workload(events, set(short_orders), cancelled, {sku: levels[sku] for sku in shorts},
                    final_ts=FINAL_MS, tail_index=tail_index, stories=stories,
                    by_topic=dict(Counter(topic for topic, _ in events)))


def _at(rng: random.Random, first_min: float, last_min: float) -> int:
    """A time between two minutes of the main span, on a whole second."""
    return START_MS + int(rng.uniform(first_min, last_min) * 60) * SECOND


class _Orders:
    """Orders the stories place (on well-stocked SKUs), each with its own customer."""

    def __init__(self, line: _Timeline, rng: random.Random, regular: list[str]) -> None:
        self.line, self.rng, self.regular = line, rng, regular
        self.placed: list[tuple[int, str]] = []  # (ts, order_id)

    def place(self, ts: int, order_id: str, sku: str | None = None, promised: int | None = None) -> str:
        customer = f"F-SC-{order_id[2:]}"
        self.line.add(ts, "orders", {"event_id": f"ord-{order_id}", "event_type": "placed", "order_id": order_id,
                                     "customer_id": customer, "channel": "web", "promised_ship_by": promised,
                                     "lines": [{"sku": sku or self.rng.choice(self.regular), "qty": 1,
                                                "unit_price_cents": 1500}]})
        self.placed.append((ts, order_id))
        return customer

    def event(self, ts: int, kind: str, order_id: str, late: bool = False, to_tail: bool = False) -> None:
        record = {"event_id": f"{kind}-{order_id}", "event_type": kind, "order_id": order_id,
                  "customer_id": f"F-SC-{order_id[2:]}", "lines": []}
        if late or to_tail:
            self.line.add_late(ts, "orders", record, to_tail=to_tail)
        else:
            self.line.add(ts, "orders", record)


def _web_sessions(line: _Timeline, rng: random.Random, regular: list[str], limits: Thresholds) -> None:
    """Browsing sessions, some with a cart and a checkout; some lose their cart, most of those recover."""
    def web(ts, session, kind, page, customer, **extra):
        line.add(ts, "web", {"event_id": f"web-{session}-{ts}-{kind}", "event_type": kind, "session_id": session,
                             "page": page, "customer_id": customer, **extra})

    for n in range(1300):
        session, customer = f"F-S-{n:05d}", (None if n % 4 == 0 else f"F-WC-{n:05d}")
        ts = _at(rng, 0.5, 34)
        for _ in range(rng.randint(2, 5)):
            web(ts, session, "page_view", rng.choice(PAGES), customer)
            ts += rng.randint(3, 20) * SECOND
        if rng.random() < 0.3:
            items = 0
            for sku in rng.sample(regular, rng.choice([1, 1, 2])):
                items += 1
                web(ts, session, "cart_add", f"/p/{sku}", customer, sku=sku, qty=1, cart_item_count=items)
                ts += rng.randint(3, 15) * SECOND
            web(ts, session, "cart_view", "/cart", customer, cart_item_count=items)
            if rng.random() < 0.7:
                web(ts + 10 * SECOND, session, "checkout_started", "/checkout", customer, cart_item_count=items)
                web(ts + 40 * SECOND, session, "checkout_completed", "/checkout/done", customer)
        line.stories["sessions"] += 1

    # Lost carts: each loss is told from a product page, the pages taken in turn, so no page loses
    # carts often enough for a cart_loss_spike (check_margins holds that).
    starts = sorted(_at(rng, 1, 33) for _ in range(150))
    for n, ts in enumerate(starts):
        session, customer = f"F-SL-{n:04d}", f"F-LC-{n:04d}"
        skus = rng.sample(regular, 2)
        for count, sku in enumerate(skus, 1):
            web(ts, session, "cart_add", f"/p/{sku}", customer, sku=sku, qty=1, cart_item_count=count)
            ts += 5 * SECOND
        web(ts, session, "page_view", f"/p/{regular[n % len(regular)]}", customer)
        ts += 10 * SECOND
        whole = n % 2 == 0
        web(ts, session, "cart_view", "/cart", customer, cart_item_count=0 if whole else 1)
        ts += 30 * SECOND
        ending = n % 3
        if ending == 0:  # checks out all the same: resolved
            web(ts, session, "checkout_started", "/checkout", customer, cart_item_count=2)
            web(ts + 20 * SECOND, session, "checkout_completed", "/checkout/done", customer)
            line.stories["carts_lost_then_bought"] += 1
        elif ending == 1 and whole:  # puts both back: resolved
            for count, sku in enumerate(skus, 1):
                web(ts, session, "cart_add", f"/p/{sku}", customer, sku=sku, qty=1, cart_item_count=count)
                ts += 5 * SECOND
            line.stories["carts_lost_then_refilled"] += 1
        elif ending == 1:  # the site shows the whole cart again: resolved
            web(ts, session, "cart_view", "/cart", customer, cart_item_count=2)
            line.stories["carts_lost_then_restored"] += 1
        else:
            line.stories["carts_lost_for_good"] += 1


def _lookups(line: _Timeline, rng: random.Random, orders: _Orders) -> None:
    """Orders the customer looks up and does not find; found later, delivered, or never.

    What ends the episode (the lookup that finds the order, the delivery) comes in the tail: the
    rule judges a lookup against what the order stage has read by then, so a lookup read after a
    later delivery or a later successful lookup (another partition, another stage on the way) raises
    nothing. Hours apart, the two are read in event-time order however partitions interleave.
    """
    def lookup(ts, order_id, customer, n, found, to_tail=False):
        session = f"F-SV-{order_id[2:]}-{n}"
        line.add_late(ts, "web", {"event_id": f"web-{session}-view", "event_type": "page_view",
                                  "session_id": session, "page": "/account", "customer_id": customer},
                      to_tail=to_tail)
        line.add_late(ts + 5 * SECOND, "web", {"event_id": f"web-{session}-lookup", "event_type": "order_lookup",
                                               "session_id": session, "page": "/account/orders",
                                               "customer_id": customer, "order_id": order_id, "found": found},
                      to_tail=to_tail)

    for n in range(30):
        order_id = f"F-OV-{n:03d}"
        placed = _at(rng, 1, 24)
        customer = orders.place(placed, order_id)
        lookup(placed + 3 * MINUTE_MS, order_id, customer, 1, False)
        if n % 3 == 0:
            lookup(placed + 8 * MINUTE_MS, order_id, customer, 2, True, to_tail=True)
            line.stories["orders_unseen_then_found"] += 1
        elif n % 3 == 1:
            orders.event(placed + 5 * MINUTE_MS, "shipped", order_id)
            orders.event(placed + 9 * MINUTE_MS, "delivered", order_id, to_tail=True)
            line.stories["orders_unseen_then_delivered"] += 1
        else:
            if n % 2 == 0:
                lookup(placed + 6 * MINUTE_MS, order_id, customer, 2, False)
            line.stories["orders_unseen_for_good"] += 1


def _tickets(line: _Timeline, rng: random.Random, limits: Thresholds) -> None:
    """Tickets on every channel: answered early, after the target, or never; customers writing twice."""
    def ticket(ts, ticket_id, customer, channel, kind, late=False, **extra):
        record = {"event_id": f"sup-{ticket_id}-{kind}", "event_type": kind, "ticket_id": ticket_id,
                  "customer_id": customer, "channel": channel, **extra}
        (line.add_late if late else line.add)(ts, "support", record)

    def opened(ts, ticket_id, customer, channel):
        category, text = rng.choice(TICKET_TEXTS)
        ticket(ts, ticket_id, customer, channel, "ticket_opened", category=category, text=text, language="en")

    # Early replies: a twentieth of the target (a tenth on sms), a fiftieth on email, so that no queue
    # grows anywhere near the backlog threshold.
    early = {"chat": 0.05, "phone": 0.05, "sms": 0.1, "social": 0.05, "email": 0.02}
    plan = {"chat": (60, 6, 1), "phone": (40, 5, 1), "sms": (30, 4, 1), "social": (30, 4, 1), "email": (20, 4, 1)}
    n = 0
    for index, channel in enumerate(CHANNELS):
        target = limits.sla_target_ms(channel, None)
        # The channel's first ticket waits for good: its backlog opens once and stays open.
        n += 1
        opened(START_MS + (30 + index) * SECOND, f"F-T-{n:04d}", f"F-TC-{n:04d}", channel)
        line.stories["tickets_never_answered"] += 1
        in_time, late, never = plan[channel]
        reply_in = max(SECOND, int(early[channel] * target))
        for _ in range(in_time):
            n += 1
            ts = _at(rng, 1, (STORIES_END_MS - START_MS - reply_in) / MINUTE_MS - 1)
            opened(ts, f"F-T-{n:04d}", f"F-TC-{n:04d}", channel)
            ticket(ts + reply_in, f"F-T-{n:04d}", f"F-TC-{n:04d}", channel, "agent_replied", agent_id="agent-1")
            ticket(ts + reply_in + 30 * SECOND, f"F-T-{n:04d}", f"F-TC-{n:04d}", channel, "ticket_resolved")
            line.stories["tickets_answered_in_time"] += 1
        for _ in range(late):
            n += 1
            ts = _at(rng, 2, 30)
            reply = ts + target + target // 4
            opened(ts, f"F-T-{n:04d}", f"F-TC-{n:04d}", channel)
            ticket(reply, f"F-T-{n:04d}", f"F-TC-{n:04d}", channel, "agent_replied", late=True, agent_id="agent-2")
            ticket(reply + 30 * SECOND, f"F-T-{n:04d}", f"F-TC-{n:04d}", channel, "ticket_resolved", late=True)
            line.stories["tickets_answered_late"] += 1
        for _ in range(never):
            n += 1
            opened(_at(rng, 2, 30), f"F-T-{n:04d}", f"F-TC-{n:04d}", channel)
            line.stories["tickets_never_answered"] += 1

    # Customers who write twice within minutes, on two channels, each ticket answered early; a few
    # of the second tickets are never marked resolved, so their repeat_contact stays open.
    for c in range(20):
        customer = f"F-RC-{c:03d}"
        first_channel, second_channel = rng.sample(("chat", "phone", "sms"), 2)
        ts = _at(rng, 1, 24)
        for k, channel in enumerate((first_channel, second_channel)):
            n += 1
            ticket_id = f"F-T-{n:04d}"
            at = ts + k * 5 * MINUTE_MS
            reply_in = max(SECOND, int(early[channel] * limits.sla_target_ms(channel, None)))
            opened(at, ticket_id, customer, channel)
            ticket(at + reply_in, ticket_id, customer, channel, "agent_replied", agent_id="agent-3")
            if k == 0 or c % 4:
                ticket(at + reply_in + 30 * SECOND, ticket_id, customer, channel, "ticket_resolved")
        line.stories["customers_writing_twice"] += 1


def _payments(line: _Timeline, rng: random.Random, orders: _Orders, limits: Thresholds) -> None:
    """Failed payments: retried within minutes, retried a quarter of an hour after the grace, or never."""
    grace = limits.payment_grace_ms
    for n in range(60):
        order_id = f"F-OP-{n:03d}"
        placed = _at(rng, 1, 30)
        orders.place(placed, order_id)
        failed = placed + MINUTE_MS
        orders.event(failed, "payment_failed", order_id)
        if n % 3 == 0:
            orders.event(failed + 2 * MINUTE_MS, "payment_succeeded", order_id)
            line.stories["payments_retried_in_time"] += 1
        elif n % 3 == 1:
            orders.event(failed + grace + 15 * MINUTE_MS, "payment_succeeded", order_id, late=True)
            line.stories["payments_retried_late"] += 1
        else:
            line.stories["payments_never_retried"] += 1


def _shipments(line: _Timeline, rng: random.Random, orders: _Orders, limits: Thresholds) -> None:
    """Orders promised to ship within 20 minutes: shipped after 5, shipped after 30, or never."""
    for n in range(40):
        order_id = f"F-OL-{n:03d}"
        placed = _at(rng, 1, 30)
        orders.place(placed, order_id, promised=placed + 20 * MINUTE_MS)
        if n % 4 in (0, 1):
            orders.event(placed + 5 * MINUTE_MS, "shipped", order_id)
            orders.event(placed + 12 * MINUTE_MS, "delivered", order_id)
            line.stories["promises_kept"] += 1
        elif n % 4 == 2:
            orders.event(placed + 30 * MINUTE_MS, "shipped", order_id, late=True)
            line.stories["promises_shipped_late"] += 1
        else:
            line.stories["promises_never_shipped"] += 1


def _returns(line: _Timeline, rng: random.Random, orders: _Orders, regular: list[str],
             returned_skus: list[str]) -> None:
    """A few returns of many SKUs, and seven returns each of three SKUs hardly anyone bought."""
    def give_back(ts, order_id, sku, n):
        line.add(ts, "returns", {"event_id": f"ret-{order_id}-{n}", "return_id": f"F-R-{order_id[2:]}-{n}",
                                 "order_id": order_id, "customer_id": f"F-SC-{order_id[2:]}", "sku": sku,
                                 "qty": 1, "reason": rng.choice(RETURN_REASONS)})

    for k, sku in enumerate(returned_skus):
        bought = [f"F-OR-S{k}-{m}" for m in range(2)]
        for order_id in bought:
            orders.place(_at(rng, 0.5, 3), order_id, sku=sku)
        for m in range(7):
            give_back(_at(rng, 5, 34), bought[m % 2], sku, m)
        line.stories["skus_returned_often"] += 1
    for n, sku in enumerate(regular[:30]):
        order_id = f"F-OR-{n:03d}"
        placed = _at(rng, 0.5, 20)
        orders.place(placed, order_id, sku=sku)
        give_back(placed + rng.randint(5, 14) * MINUTE_MS, order_id, sku, 0)
        line.stories["returns_of_ordinary_skus"] += 1


def _feedback(line: _Timeline, rng: random.Random, orders: _Orders) -> None:
    """Surveys, reviews and mentions from customers with no other contact; about two in five negative.

    Each names its order (or none), so the alert's links never change with the order in which the
    customer's other facts arrive.
    """
    scores = {"csat": [1, 2, 4, 5], "nps": [2, 5, 8, 9, 10], "review": [1, 2, 4, 5], "social_mention": [-3, -1, 2, 3]}
    negative = {"csat": 2, "nps": 6, "review": 2, "social_mention": -1}
    for n in range(250):
        ts = _at(rng, 3, 34)
        kind = rng.choice(sorted(scores))
        score = rng.choice(scores[kind])
        earlier = [order_id for placed, order_id in orders.placed if placed < ts]
        order_id = rng.choice(earlier) if earlier and rng.random() < 0.6 else None
        line.add(ts, "feedback", {"event_id": f"fbk-{n:04d}", "event_type": kind, "customer_id": f"F-FB-{n:04d}",
                                  "score": score, "text": "Not happy with this." if score <= negative[kind] else None,
                                  "order_id": order_id, "ticket_id": None})
        line.stories["feedback_negative" if score <= negative[kind] else "feedback_positive"] += 1


def _orders_and_stock(line: _Timeline, rng: random.Random, budget: int, shorts: list[str], regular: list[str],
                      levels: dict[str, int], short_share: float) -> tuple[list[str], set[str]]:
    """The out-of-stock background: `budget` order, restatement and cancellation events over the main span."""
    # About 1.06 events per step (an order, a restatement one step in twenty, a cancellation one in a hundred).
    step = MAIN_SPAN_MS * 106 // (budget * 100)
    taken = {sku: 0 for sku in shorts}
    short_orders: list[str] = []
    cancelled: set[str] = set()
    ts, n, made = START_MS, 0, 0
    while made < budget:
        ts += step
        n += 1
        sku = rng.choice(shorts) if rng.random() < short_share else rng.choice(regular)
        order_id = f"F-O-{n:06d}"
        line.add(ts, "orders", {"event_id": f"ord-{n}", "event_type": "placed", "order_id": order_id,
                                "customer_id": f"F-C-{n % 997}", "channel": None, "promised_ship_by": None,
                                "lines": [{"sku": sku, "qty": 1, "unit_price_cents": 100}]})
        made += 1
        if sku in taken:
            taken[sku] += 1
            if taken[sku] > levels[sku]:
                short_orders.append(order_id)
        if made < budget and rng.random() < 0.05:
            restated = rng.choice(shorts + regular)
            line.add(ts + 1, "inventory", {"event_id": f"stk-{n}", "event_type": "stock_level", "sku": restated,
                                           "available": levels[restated], "warehouse": None})
            made += 1
        if made < budget and short_orders and rng.random() < 0.01:
            victim = short_orders[rng.randrange(len(short_orders))]
            if victim not in cancelled:
                cancelled.add(victim)
                line.add(ts + 2, "orders", {"event_id": f"cxl-{victim}", "event_type": "cancelled",
                                            "order_id": victim, "customer_id": "F-C", "channel": None,
                                            "promised_ship_by": None, "lines": []})
                made += 1
    return short_orders, cancelled


def check_margins(events: list[tuple[str, dict]], limits: Thresholds) -> None:
    """Fail if a roll-up could go either way with the order in which partitions are read.

    A channel's queue of tickets waiting for a first reply stays well under the backlog threshold
    (its backlog comes only from tickets waiting past twice their target), and no page loses carts
    often enough to come near a cart_loss_spike.
    """
    waits: dict[str, list[tuple[int, int]]] = defaultdict(list)  # channel -> (ts, +1 waiting / -1 answered)
    answered: set[str] = set()
    losses: dict[str, list[int]] = defaultdict(list)  # page -> times a session lost its cart after it
    lost: set[str] = set()
    last_page: dict[str, str] = {}
    for topic, record in events:
        if topic == "support":
            kind, ticket = record["event_type"], record["ticket_id"]
            if kind == "ticket_opened":
                waits[record["channel"]].append((record["ts"], 1))
            elif kind in ("agent_replied", "ticket_resolved") and ticket not in answered:
                answered.add(ticket)
                waits[record["channel"]].append((record["ts"], -1))
        elif topic == "web":
            session = record["session_id"]
            if record["event_type"] == "cart_view" and session.startswith("F-SL-") and session not in lost:
                lost.add(session)
                losses[last_page[session]].append(record["ts"])
            if record["event_type"] in ("page_view", "cart_add"):
                last_page[session] = record["page"]
    for channel, changes in waits.items():
        waiting = peak = 0
        for _, change in sorted(changes):
            waiting += change
            peak = max(peak, waiting)
        if peak > limits.backlog_tickets - 5:
            raise ValueError(f"{peak} {channel} tickets wait at once, too near the backlog threshold")
    window = limits.cart_loss_spike_window_ms
    for page, times in losses.items():
        times.sort()
        for i, ts in enumerate(times):
            near = sum(1 for other in times[i:] if other - ts < window)
            if near > limits.cart_loss_spike_sessions - 2:
                raise ValueError(f"{near} carts lost after {page} within {window // MINUTE_MS} min")
