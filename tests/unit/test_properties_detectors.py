"""Properties of the out-of-stock join and the alert lifecycle over random histories.

The two stages of ``streams.detectors.stock`` are wired in memory the way the worker wires them
through topics: order lines go to the SKU stage and shortages back to the order stage over channels
that keep order per key, as a topic partition does, while which key is served next is up to the
test. Over random orders, stock levels, closings and redeliveries for a few SKUs and orders:

* an order (and a SKU's roll-up) never has two open alerts at once, and never updates or resolves
  one that is not open;
* stock is never allocated beyond what is available, at either stage;
* a message delivered again (as after a crash or rebalance), at once or, for inputs and order
  lines, any time later, changes no state and raises no alert, nor does anything it sends on.

The lifecycle every rule shares (``streams.detectors.lifecycle``) gets the same two properties
for one dedup key. The end of the file keeps the case these properties found.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detectors import lifecycle
from streams.detectors.alerts import OPEN, RESOLVED, UPDATED
from streams.detectors.stock import (
    RULE,
    Reference,
    allocate_oldest_first,
    apply_line_shortage,
    apply_order_event,
    apply_order_line,
    apply_stock_level,
)
from tests.unit.test_properties_codec import PROPERTY

NOW = 1_800_000_000_000
SKUS = ["A", "B", "C"]
ORDERS = ["O1", "O2", "O3", "O4", "O5"]
CLOSINGS = ["shipped", "delivered", "cancelled"]
# A roll-up after two short orders, so random histories reach it.
ROLLUP_ORDERS = 2


# ---------------------------------------------------------------- allocation alone


@PROPERTY
@given(available=st.integers(-10, 40),
       lines=st.dictionaries(st.sampled_from(ORDERS + ["O6", "O7"]),
                             st.fixed_dictionaries({"qty": st.integers(1, 9), "placed_ts": st.integers(0, 5)}),
                             max_size=7))
def test_allocation_never_gives_more_than_the_stock_and_serves_the_oldest_first(available, lines):
    short = allocate_oldest_first(available, lines)
    given_out = {order_id: line["qty"] - short.get(order_id, 0) for order_id, line in lines.items()}
    assert all(0 <= units <= lines[order_id]["qty"] for order_id, units in given_out.items())
    assert sum(given_out.values()) <= max(available, 0)
    assert set(short) <= set(lines) and all(units > 0 for units in short.values())
    # Nothing is held back while an order waits: either every order is served or the stock is used up.
    assert not short or sum(given_out.values()) == max(available, 0)
    # Oldest first (ties by order id): once an order is short, every younger one gets nothing.
    in_turn = sorted(lines, key=lambda order_id: (lines[order_id]["placed_ts"], order_id))
    first_short = next((i for i, order_id in enumerate(in_turn) if order_id in short), len(in_turn))
    assert all(given_out[order_id] == 0 for order_id in in_turn[first_short + 1:])


# ---------------------------------------------------------------- both stages, wired


@dataclass
class Message:
    kind: str  # order-event, stock-level (inputs), order-line, line-shortage (between the stages)
    record: dict
    # Sent because of a redelivered message: must change nothing where it arrives.
    echo: bool = False


class Join:
    """The order stage and the SKU stage, with a FIFO channel per (topic, key) between them."""

    def __init__(self) -> None:
        self.ref = Reference()
        self.orders: dict[str, dict | None] = {}
        self.skus: dict[str, dict] = {}
        self.channels: dict[tuple[str, str], deque[Message]] = {}
        self.alerts: list[dict] = []
        self.open_alerts: dict[str, str] = {}  # dedup_key -> alert_id of its open episode

    def busy_channels(self) -> list[tuple[str, str]]:
        return sorted(key for key, queue in self.channels.items() if queue)

    def deliver(self, message: Message) -> Message:
        """Apply `message` at its stage, queue what that stage sends on, check every alert raised."""
        record = copy.deepcopy(message.record)
        if message.kind in ("order-event", "line-shortage"):
            states, key = self.orders, record["order_id"]
        else:
            states, key = self.skus, record["sku"]
        before = copy.deepcopy(states.get(key))
        if message.kind == "order-event":
            outcome = apply_order_event(states.get(key), record, self.ref, detected_at=NOW, max_alternatives=2)
        elif message.kind == "line-shortage":
            outcome = apply_line_shortage(states.get(key), record, self.ref, detected_at=NOW, max_alternatives=2)
        elif message.kind == "stock-level":
            outcome = apply_stock_level(states.get(key), record, self.ref, detected_at=NOW,
                                        rollup_orders=ROLLUP_ORDERS)
        else:
            outcome = apply_order_line(states.get(key), record, self.ref, detected_at=NOW,
                                       rollup_orders=ROLLUP_ORDERS)
        states[key] = outcome.state
        if message.echo:
            assert outcome.alerts == [], f"a redelivered {message.kind} raised {outcome.alerts}"
            assert states[key] == before, f"a redelivered {message.kind} changed the state of {key}"
        for line in outcome.line_events:
            self.channels.setdefault(("order-line", line["sku"]), deque()).append(
                Message("order-line", line, message.echo))
        for shortage in outcome.shortages:
            self.channels.setdefault(("line-shortage", shortage["order_id"]), deque()).append(
                Message("line-shortage", shortage, message.echo))
        for alert in outcome.alerts:
            self._check_lifecycle(alert)
        if message.kind in ("stock-level", "order-line"):
            assert_sku_allocation_within_stock(self.skus[key])
        return message

    def _check_lifecycle(self, alert: dict) -> None:
        key, status = alert["dedup_key"], alert["status"]
        self.alerts.append(alert)
        if status == OPEN:
            assert key not in self.open_alerts, f"{key}: opened again while {self.open_alerts.get(key)} is open"
            self.open_alerts[key] = alert["alert_id"]
        else:
            assert status in (UPDATED, RESOLVED)
            assert self.open_alerts.get(key) == alert["alert_id"], f"{key}: {status} of an alert that is not open"
            if status == RESOLVED:
                del self.open_alerts[key]


def assert_sku_allocation_within_stock(state: dict) -> None:
    """What the SKU stage has told the orders leaves no more units allocated than the stock it knows."""
    if not state["levels"]:
        assert not any(short for _, short in state["emitted"].values())  # no stock known: nobody is called short
        return
    # Levels are kept in time order (the last read wins among equal times): the last is the one in force now.
    level = state["levels"][-1][1]
    open_lines = {order_id: line for order_id, line in state["lines"].items() if line.get("closed_ts") is None}
    told = {order_id: state["emitted"].get(order_id, [None, 0])[1] for order_id in open_lines}
    assert all(0 <= told[order_id] <= line["qty"] for order_id, line in open_lines.items())
    assert sum(line["qty"] - told[order_id] for order_id, line in open_lines.items()) <= max(level, 0)
    # Not just within the stock: exactly the oldest-first allocation of it.
    expected = allocate_oldest_first(level, open_lines)
    assert {order_id: units for order_id, units in told.items() if units} == expected


@st.composite
def order_histories(draw) -> list[Message]:
    """Orders placed, paid, shipped and cancelled, and stock levels, for a few SKUs; times in any order."""
    messages = []
    for n in range(draw(st.integers(1, 24))):
        kind = draw(st.sampled_from(["stock", "stock", "placed", "placed", "placed", "closing", "payment"]))
        # Often the same few times: events of equal time are where ordering rules are tested hardest.
        ts = draw(st.one_of(st.integers(0, 3), st.integers(0, 3_000)))
        event_id = f"e{n}"
        if kind == "stock":
            messages.append(Message("stock-level", {"event_id": event_id, "ts": ts, "event_type": "stock_level",
                                                    "sku": draw(st.sampled_from(SKUS)),
                                                    "available": draw(st.integers(-2, 8))}))
            continue
        lines = []
        if kind == "placed":
            lines = [{"sku": sku, "qty": qty, "unit_price_cents": 100}
                     for sku, qty in draw(st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 4)),
                                                   min_size=1, max_size=3))]
        event_type = {"placed": "placed", "payment": "payment_failed"}.get(kind) or draw(st.sampled_from(CLOSINGS))
        messages.append(Message("order-event", {"event_id": event_id, "ts": ts, "event_type": event_type,
                                                "order_id": draw(st.sampled_from(ORDERS)), "customer_id": "C1",
                                                "lines": lines}))
    return messages


@settings(PROPERTY, max_examples=600)
@given(history=order_histories(), data=st.data())
def test_random_histories_keep_one_open_alert_per_order_and_allocate_within_the_stock(history, data):
    join = Join()
    inputs = deque(history)
    # Messages that may come again at any later time: the inputs and the order lines, which the stages
    # know again by their ids. A shortage comes again only at once here: one read again after a crash
    # is followed again by every later one from its partition (the last told is the truth), so a
    # stale shortage alone, long after, is not something a topic delivers.
    redeliverable: list[Message] = []
    last: Message | None = None
    redeliveries = data.draw(st.integers(0, len(history)), label="redeliveries")
    while inputs or join.busy_channels():
        choices = [("input",)] if inputs else []
        choices += [("channel", key) for key in join.busy_channels()]
        if redeliverable and redeliveries:
            choices.append(("again later",))
        if last is not None and redeliveries:
            choices.append(("last again",))
        choice, *channel = data.draw(st.sampled_from(choices), label="next")
        if choice == "input":
            last = join.deliver(inputs.popleft())
            redeliverable.append(last)
        elif choice == "again later":
            # Read again after others, as after a crash before its offset was committed.
            redeliveries -= 1
            earlier = data.draw(st.sampled_from(redeliverable), label="redelivered")
            last = join.deliver(Message(earlier.kind, earlier.record, echo=True))
        elif choice == "last again":
            # Any message read twice in a row (inputs and the topics between the stages alike).
            redeliveries -= 1
            last = join.deliver(Message(last.kind, last.record, echo=True))
        else:
            last = join.deliver(join.channels[channel[0]].popleft())
            if last.kind == "order-line" and not last.echo:
                redeliverable.append(last)

    # Quiet now: the order stage agrees with the SKU stage, and neither gives away more than the stock.
    for sku, state in join.skus.items():
        if not state["levels"]:
            continue
        level = state["levels"][-1][1]
        given_out = 0
        for order_id, order in join.orders.items():
            if order is None or order["status"] != "open" or sku not in order["lines"]:
                continue
            short = order["short"].get(sku, {}).get("short", 0)
            assert short == state["emitted"].get(order_id, [None, 0])[1], (order_id, sku)
            given_out += order["lines"][sku] - short
        assert given_out <= max(level, 0), (sku, given_out, level)
    for order_id, order in join.orders.items():
        key = f"{RULE}:{order_id}"
        # An alert is open exactly while the order, still open, has short lines.
        assert (key in join.open_alerts) == bool(order and order["status"] == "open" and order["short"]), (
            order_id, order and order["status"], order and order["short"])


# ---------------------------------------------------------------- the lifecycle every rule shares


@st.composite
def conditions(draw) -> list[dict]:
    """Whether one rule's condition holds at each of a series of times, and how badly."""
    ts = 0
    out = []
    for n in range(draw(st.integers(1, 30))):
        ts += draw(st.integers(0, 120_000))
        out.append({"active": draw(st.booleans()), "severity": draw(st.sampled_from(["info", "warning", "critical"])),
                    "fingerprint": draw(st.sampled_from(["", "2 short", "3 short"])), "ts": ts,
                    "event_id": f"e{n}"})
    return out


@settings(PROPERTY, max_examples=200)
@given(inputs=conditions(), cooldown_ms=st.sampled_from([0, 60_000, 600_000]), twice=st.lists(st.booleans()))
def test_a_key_never_has_two_open_episodes_and_an_input_applied_twice_changes_nothing(inputs, cooldown_ms, twice):
    track, open_id = None, None
    for n, condition in enumerate(inputs):
        track, status = lifecycle.transition(track, key="rule:K", cooldown_ms=cooldown_ms, **condition)
        if status == OPEN:
            assert open_id is None, "opened while open"
            open_id = track["alert_id"]
        elif status in (UPDATED, RESOLVED):
            assert open_id == track["alert_id"], f"{status} while nothing is open"
            open_id = None if status == RESOLVED else open_id
        assert lifecycle.is_open(track) == (open_id is not None)
        if n < len(twice) and twice[n]:
            again, status_again = lifecycle.transition(copy.deepcopy(track), key="rule:K", cooldown_ms=cooldown_ms,
                                                       **condition)
            assert status_again is None and again == track


@PROPERTY
@given(offsets=st.lists(st.tuples(st.sampled_from(["page_hit", "cart_lost"]), st.integers(0, 2), st.integers(0, 50)),
                        max_size=30))
def test_a_signal_read_again_is_recognised_and_a_new_one_is_not(offsets):
    state: dict = {}
    highest: dict[tuple[str, int], int] = {}
    for kind, partition, offset in offsets:
        sig = {"kind": kind, "data": {"src": f"web:{partition}:{offset}"}}
        repeat = offset <= highest.get((kind, partition), -1)
        assert lifecycle.already_applied(state, sig) == repeat
        highest[(kind, partition)] = max(offset, highest.get((kind, partition), -1))
        assert lifecycle.already_applied(state, sig) is True  # the same signal again, at once


# ---------------------------------------------------------------- cases the properties found


def test_an_order_line_read_again_after_a_later_read_level_of_the_same_time_changes_no_alert():
    # The SKU stage tells a redelivered order line's shortage again, with the stock figure worked out
    # again from the levels it holds now. A level of the same time read after the first telling gave
    # another figure for the same units short, and the order stage sent an `updated` alert for it.
    ref = Reference()
    placed = {"event_id": "o1", "ts": 100, "event_type": "placed", "order_id": "O1", "customer_id": "C1",
              "lines": [{"sku": "A", "qty": 1, "unit_price_cents": 100}]}
    order = apply_order_event(None, placed, ref, detected_at=NOW, max_alternatives=2)
    (line,) = order.line_events

    def level(event_id: str, available: int) -> dict:
        return {"event_id": event_id, "ts": 100, "event_type": "stock_level", "sku": "A", "available": available}

    sku = apply_stock_level(None, level("s1", 0), ref, detected_at=NOW, rollup_orders=5)
    sku = apply_order_line(sku.state, line, ref, detected_at=NOW, rollup_orders=5)
    (told,) = sku.shortages
    order = apply_line_shortage(order.state, told, ref, detected_at=NOW, max_alternatives=2)
    assert [a["status"] for a in order.alerts] == ["open"]
    assert apply_stock_level(sku.state, level("s2", -2), ref, detected_at=NOW, rollup_orders=5).shortages == []

    again = apply_order_line(sku.state, line, ref, detected_at=NOW, rollup_orders=5)
    (retold,) = again.shortages
    assert (retold["short"], retold["available"]) == (told["short"], -2) != (told["short"], told["available"])
    before = copy.deepcopy(order.state)
    out = apply_line_shortage(order.state, retold, ref, detected_at=NOW, max_alternatives=2)
    assert out.alerts == [] and out.state == before


# ---------------------------------------------------------------- events of one time


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(["stock", "open", "close"]), st.sampled_from(ORDERS),
                          st.integers(0, 2), st.integers(0, 4)), min_size=1, max_size=14))
def test_events_of_one_time_released_together_never_flap_an_order_and_end_where_one_by_one_ends(steps):
    """An order is never told "not short" and then "short" again for one moment (the second episode
    the every-stage fault suite saw), and the SKU ends with the orders short that one-by-one application
    leaves short."""
    from streams.detectors.stock import hold, release_due

    events, opened = [], {}
    for n, (kind, order, at, qty) in enumerate(steps):
        ts = NOW + at * 1_000
        if kind == "stock":
            events.append(("stock", {"event_id": f"s{n}", "ts": ts, "sku": "A", "available": qty}))
        elif kind == "open" and order not in opened:
            opened[order] = ts
            events.append(("line", {"event_id": f"p{n}", "ts": ts, "action": "open", "order_id": order,
                                    "customer_id": "C", "sku": "A", "qty": qty, "placed_ts": ts, "reason": "placed"}))
        elif kind == "close" and order in opened:
            events.append(("line", {"event_id": f"c{n}", "ts": max(ts, opened.pop(order)), "action": "close",
                                    "order_id": order, "customer_id": "C", "sku": "A", "qty": qty,
                                    "placed_ts": ts, "reason": "cancelled"}))
    if not events:
        return
    events.sort(key=lambda event: event[1]["ts"])
    held = None
    for kind, record in copy.deepcopy(events):
        held = hold(held, "A", kind, record)
    together = release_due(held, NOW + 10_000, Reference(), detected_at=NOW, rollup_orders=ROLLUP_ORDERS)
    told: dict[tuple[str, int], int] = {}
    for shortage in together.shortages:
        moment = (shortage["order_id"], shortage["ts"])
        assert not (told.get(moment) == 0 and shortage["short"] > 0), shortage
        told[moment] = shortage["short"]
    one_by_one = None
    for kind, record in copy.deepcopy(events):
        apply = apply_stock_level if kind == "stock" else apply_order_line
        one_by_one = apply(one_by_one, record, Reference(), detected_at=NOW, rollup_orders=ROLLUP_ORDERS).state
    def still_short(state: dict) -> dict:
        return {order: short for order, (_, short) in state["emitted"].items() if short > 0}

    # One by one may tell an order short and then not for one moment; together tells nothing then.
    assert still_short(together.state) == still_short(one_by_one)


def test_an_older_short_order_cancelled_with_a_stock_level_of_the_same_time_leaves_the_younger_short_once():
    """The every-stage fault suite's case: the younger short order kept one episode."""
    from streams.detectors.stock import hold, release_due

    def line(order: str, ts: int, action: str) -> dict:
        return {"event_id": f"{action}-{order}", "ts": ts, "action": action, "order_id": order, "customer_id": "C",
                "sku": "A", "qty": 2, "placed_ts": ts if action == "open" else NOW, "reason": "cancelled"}

    state = None
    for kind, record in [("stock", {"event_id": "s0", "ts": NOW, "sku": "A", "available": 2}),
                         ("line", line("O1", NOW + 1, "open")), ("line", line("O2", NOW + 2, "open")),
                         # O1 is cancelled; the shop's stock system sends its level at the same moment.
                         ("line", line("O1", NOW + 9, "close")),
                         ("stock", {"event_id": "s1", "ts": NOW + 9, "sku": "A", "available": 0})]:
        state = hold(state, "A", kind, record)
    told = [(s["order_id"], s["ts"] - NOW, s["short"])
            for s in release_due(state, NOW + 10, Reference(), detected_at=NOW, rollup_orders=ROLLUP_ORDERS).shortages]
    # O1 has the two units, O2 none; O1's cancellation alone would free them for O2, the level with it
    # says they are gone: O2 stays short, and is told so once.
    assert [t for t in told if t[0] == "O2"] == [("O2", 2, 2)]
