"""Out-of-stock items on open orders (rule ``out_of_stock_open_order``) and its roll-up.

The join runs in two stages so that it stays correct with many workers:

1. Per SKU (``apply_stock_level`` / ``apply_order_line``): the SKU's absolute
   stock level meets the open order lines for that SKU, repartitioned by SKU.
   Stock is allocated to open lines oldest order first; a line is short when
   its allocation is below its quantity. Every change in an order's shortage
   becomes a ``LineShortage`` record keyed by order. The same stage raises the
   operations roll-up ``sku_stockout_impact`` when one SKU's shortage touches
   many open orders.
2. Per order (``apply_order_event`` / ``apply_line_shortage``): the order's
   lifecycle meets the shortages of all its SKUs, so one alert per order names
   every short line, the customer and in-stock alternatives, and follows the
   order through ``open``, ``updated`` and ``resolved``.

Everything here is plain data in, plain data out. State is a dict the caller
stores (a Faust table value or a test variable); time comes in as arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping

from streams.thresholds import DAY_MS
from streams.words import counted
from streams.detectors.alerts import (
    OPEN,
    RESOLVED,
    UPDATED,
    alert_id_for,
    alert_record,
    dedup_key,
    merge_evidence,
)

RULE = "out_of_stock_open_order"
ROLLUP_RULE = "sku_stockout_impact"

# An order is open from `placed` until one of these.
CLOSING_EVENTS = ("shipped", "delivered", "cancelled")


@dataclass(frozen=True)
class Reference:
    """Read-only lookups every worker holds in full (see streams.reference)."""

    catalog: Mapping[str, dict] = field(default_factory=dict)  # sku -> CatalogItem
    stock: Mapping[str, int] = field(default_factory=dict)  # sku -> latest available
    customers: Mapping[str, dict] = field(default_factory=dict)  # customer_id -> Customer


@dataclass
class Outcome:
    """What one event changes: the new state and the records to publish."""

    state: dict | None
    alerts: list[dict] = field(default_factory=list)
    # forewarn.internal.OrderLine records, to be keyed by sku.
    line_events: list[dict] = field(default_factory=list)
    # forewarn.internal.LineShortage records, to be keyed by order_id.
    shortages: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- stage 1: per SKU

# How far back in event time a SKU keeps its history (stock levels, closed lines)
# so that an event read late is still applied at its own time (see _resimulate).
DEFAULT_REORDER_HORIZON_MS = 24 * 60 * 60 * 1000
# Bounds on that history per SKU, so one busy SKU's state stays small.
MAX_LEVELS = 200
MAX_CLOSED_LINES = 500


class _Tallied(dict):
    """A per-order map of a SKU's state that keeps the number and the sum of the weights of its entries.

    `_weight` gives an entry's weight, or None when the entry does not count.
    Every change made through the map keeps `counted` and `total` exact, so
    the hot path reads them instead of walking every order of a busy SKU.
    Entries are replaced, never changed in place (the SKU stage's change
    tracking relies on that too). A plain dict in their place works the
    same, only recounted when read (see `_open_demand`, `_told_short`).
    """

    __slots__ = ("counted", "total")

    @staticmethod
    def _weight(value) -> int | None:
        raise NotImplementedError

    def __init__(self, *args, **kwargs) -> None:
        dict.__init__(self, *args, **kwargs)
        self.recount()

    @classmethod
    def count(cls, entries: Mapping) -> tuple[int, int]:
        """(entries that count, sum of their weights) of any map of this kind's entries, by walking it."""
        counted = total = 0
        for value in entries.values():
            weight = cls._weight(value)
            if weight is not None:
                counted += 1
                total += weight
        return counted, total

    def recount(self) -> None:
        """Work the tally out anew from the entries (after entries were set around the map's methods)."""
        self.counted, self.total = self.count(self)

    def _add(self, value, sign: int) -> None:
        weight = self._weight(value)
        if weight is not None:
            self.counted += sign
            self.total += sign * weight

    def __setitem__(self, key, value) -> None:
        old = dict.get(self, key, _ABSENT)
        super().__setitem__(key, value)
        if old is not _ABSENT:
            self._add(old, -1)
        self._add(value, 1)

    def __delitem__(self, key) -> None:
        old = dict.__getitem__(self, key)
        super().__delitem__(key)
        self._add(old, -1)

    def pop(self, key, *default):
        if key not in self:
            return super().pop(key, *default)
        old = super().pop(key)
        self._add(old, -1)
        return old

    def setdefault(self, key, default=None):
        if key in self:
            return dict.__getitem__(self, key)
        dict.__setitem__(self, key, default)
        self._add(default, 1)
        return default

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other):
        self.update(other)
        return self

    def popitem(self):
        key, old = super().popitem()
        self._add(old, -1)
        return key, old

    def clear(self) -> None:
        super().clear()
        self.counted = self.total = 0

    def __reduce__(self):
        # Copies and pickles are built from the entries, their tally worked out anew.
        return type(self), (dict(self),)


_ABSENT = object()


def _open_weight(line: dict) -> int | None:
    return line["qty"] if line.get("closed_ts") is None else None


def _short_weight(told) -> int | None:
    return told[1] if told[1] > 0 else None


class Lines(_Tallied):
    """A SKU's `lines`: the tally is the number of open lines and the units they order."""

    __slots__ = ()
    _weight = staticmethod(_open_weight)


class Told(_Tallied):
    """A SKU's `emitted`: the tally is the number of orders last told short and the units short."""

    __slots__ = ()
    _weight = staticmethod(_short_weight)


def _tally(entries: Mapping, kind: type[_Tallied]) -> tuple[int, int]:
    if isinstance(entries, kind):
        return entries.counted, entries.total
    return kind.count(entries)


def _open_demand(lines: Mapping[str, dict]) -> tuple[int, int]:
    """(open lines, units they order) of a SKU's `lines`."""
    return _tally(lines, Lines)


def _told_short(emitted: Mapping[str, list]) -> tuple[int, int]:
    """(orders last told short, units short) of a SKU's `emitted`."""
    return _tally(emitted, Told)


def new_sku_state(sku: str) -> dict:
    return {
        "sku": sku,
        # Stock levels by event time: [ts, available, event_id]. None known: no shortage claimed.
        "levels": [],
        # order_id -> {qty, placed_ts, event_id} and, once closed, closed_ts, close_event_id, close_reason
        "lines": Lines(),
        # order_id -> [ts, units short]: the last shortage told to the order stage.
        "emitted": Told(),
        "rollup": None,  # the open sku_stockout_impact episode, if any
        "latest_ts": None,
        # Events held until every input has passed their event time: [ts, kind, record].
        "pending": [],
    }


def apply_stock_level(
    state: dict | None,
    event: dict,
    ref: Reference,
    *,
    detected_at: int,
    rollup_orders: int,
    horizon_ms: int = DEFAULT_REORDER_HORIZON_MS,
) -> Outcome:
    """A new absolute stock level for one SKU, applied at its own event time."""
    state = state or new_sku_state(event["sku"])
    since = _record_stock_level(state, event)
    if since is None:
        return Outcome(state)
    level_ts, _, event_id = state["levels"][-1]
    if level_ts == since and event_id == event["event_id"]:
        covered = _newest_change_covered(state, since, event_id, ref, detected_at, rollup_orders, horizon_ms)
        if covered is not None:
            return covered
    return _resimulate(state, since, ref, detected_at, rollup_orders, horizon_ms)


def _record_stock_level(state: dict, event: dict) -> int | None:
    """Keep the level; the time to re-simulate from, or None when it is known already (redelivered)."""
    if any(level[2] == event["event_id"] for level in state["levels"]):
        return None
    state["levels"].append([event["ts"], int(event["available"]), event["event_id"]])
    state["levels"].sort(key=lambda level: level[0])
    return event["ts"]


def apply_order_line(
    state: dict | None,
    line: dict,
    ref: Reference,
    *,
    detected_at: int,
    rollup_orders: int,
    horizon_ms: int = DEFAULT_REORDER_HORIZON_MS,
) -> Outcome:
    """An order line for this SKU opened (order placed) or closed (shipped, delivered, cancelled)."""
    state = state or new_sku_state(line["sku"])
    since, told_again = _record_order_line(state, line)
    if told_again is not None or since is None:
        return told_again or Outcome(state)
    if line["action"] == "open":
        appended = _append_newest(state, line["order_id"], ref, detected_at, rollup_orders, horizon_ms)
        if appended is not None:
            return appended
    else:
        closing = state["lines"][line["order_id"]]["close_event_id"]
        covered = _newest_change_covered(state, since, closing, ref, detected_at, rollup_orders, horizon_ms)
        if covered is not None:
            return covered
    return _resimulate(state, since, ref, detected_at, rollup_orders, horizon_ms)


def _record_order_line(state: dict, line: dict) -> tuple[int | None, Outcome | None]:
    """Keep the line's opening or closing: (the time to re-simulate from, None), or (None, what to tell
    again) for a redelivered opening, or (None, None) when nothing changed."""
    order_id = line["order_id"]
    known = state["lines"].get(order_id)
    if line["action"] == "open":
        if known is not None:
            # Redelivered: already counted. The line comes again when the order stage read its order
            # again after a crash; it may have read (and dropped, knowing no such order yet) this
            # order's shortage before that, so the shortage is told again. Telling it twice changes
            # nothing at the order stage.
            told = state["emitted"].get(order_id)
            if told is None or told[1] <= 0:
                return None, None
            level, level_event, _ = _situation_at(state, told[0])
            return None, Outcome(state, shortages=[_tell_shortage(state, order_id, told[0], told[1], level,
                                                                  level_event, known["event_id"], "order_placed")])
        count_ordered(state, line["placed_ts"], int(line["qty"]))
        # Closing adds closed_ts, close_event_id and close_reason: an open line stores none of them
        # (a busy SKU has many open lines, each kept in memory and in a changelog record).
        state["lines"][order_id] = {"qty": int(line["qty"]), "placed_ts": line["placed_ts"], "event_id": line["event_id"]}
        return line["placed_ts"], None
    if known is None or known.get("closed_ts") is not None:
        return None, None
    # A line is closed from its closing event on, never before it was placed. Replaced, never changed
    # in place: the SKU stage logs a line when its entry of `lines` is set (streams.stages.stock).
    closed_ts = max(line["ts"], known["placed_ts"])
    state["lines"][order_id] = {**known, "closed_ts": closed_ts, "close_event_id": line["event_id"],
                                "close_reason": line["reason"]}
    return closed_ts, None


def apply_together(
    state: dict | None,
    events: list[tuple[str, dict]],
    sku: str,
    ref: Reference,
    *,
    detected_at: int,
    rollup_orders: int,
    horizon_ms: int = DEFAULT_REORDER_HORIZON_MS,
) -> Outcome:
    """Stock levels and order lines (kind "stock" or "line") of one event time, applied as one change.

    Applied one by one, two events of the same time (an order cancelled and
    the stock level that goes with it, say) would tell an order the shortage
    between them: resolved by the first, short again by the second, at the
    same moment, which the order stage can only take as a second episode.
    """
    state = state or new_sku_state(sku)
    outcome = Outcome(state)
    since = None
    for kind, record in events:
        if kind == "stock":
            changed, told_again = _record_stock_level(state, record), None
        else:
            changed, told_again = _record_order_line(state, record)
        if told_again is not None:
            outcome.shortages += told_again.shortages
        if changed is not None:
            since = changed if since is None else min(since, changed)
    if since is not None:
        step = _resimulate(state, since, ref, detected_at, rollup_orders, horizon_ms)
        outcome.alerts += step.alerts
        outcome.shortages += step.shortages
    return outcome


# Units ordered per day are kept this many days (the return-spike rule reads them; see streams.detectors.returns).
ORDERED_DAYS = 31


def count_ordered(state: dict, placed_ts: int, qty: int) -> None:
    """Units of this SKU ordered per day of placement, for the last ORDERED_DAYS days."""
    ordered = state.setdefault("ordered", {})
    day = placed_ts // DAY_MS
    ordered[str(day)] = ordered.get(str(day), 0) + qty
    for old in [d for d in ordered if int(d) < day - ORDERED_DAYS]:
        del ordered[old]


def allocate_oldest_first(available: int, lines: Mapping[str, dict]) -> dict[str, int]:
    """Units short per order when `available` units go to the oldest open orders first.

    Oldest first because the customer who waited longest has the strongest
    claim; ties on placement time fall back to order id so every worker and
    every replay allocates the same way.
    """
    remaining = max(available, 0)
    short: dict[str, int] = {}
    for order_id, line in sorted(lines.items(), key=lambda item: (item[1]["placed_ts"], item[0])):
        allocated = min(line["qty"], remaining)
        remaining -= allocated
        if allocated < line["qty"]:
            short[order_id] = line["qty"] - allocated
    return short


def hold(state: dict | None, sku: str, kind: str, record: dict) -> dict:
    """Keep a stock level (kind "stock") or order line (kind "line") until its time is safe to apply.

    Stock levels reach the SKU stage directly, order lines one hop later
    through the order stage. Applying them as they arrive would let a stock
    drop read early overtake the orders placed before it. Held events are
    applied by ``release_due`` in event-time order once every input has
    passed their time (the release threshold comes from the watermarks).
    """
    state = state or new_sku_state(sku)
    pending = state.setdefault("pending", [])
    pending.append([record["ts"], kind, record])
    # Stable: events with equal times keep their arrival order.
    pending.sort(key=lambda item: item[0])
    return state


def release_due(
    state: dict,
    threshold: int | None,
    ref: Reference,
    *,
    detected_at: int,
    rollup_orders: int,
    horizon_ms: int = DEFAULT_REORDER_HORIZON_MS,
) -> Outcome:
    """Apply, in event-time order, every held event at or before `threshold`."""
    outcome = Outcome(state)
    pending = state.get("pending") or []
    if threshold is None or not pending or pending[0][0] > threshold:
        return outcome
    due = [item for item in pending if item[0] <= threshold]
    state["pending"] = [item for item in pending if item[0] > threshold]
    at = 0
    while at < len(due):
        # Events of one time are applied as one change (see apply_together).
        end = at + 1
        while end < len(due) and due[end][0] == due[at][0]:
            end += 1
        if end - at == 1:
            _, kind, record = due[at]
            apply = apply_stock_level if kind == "stock" else apply_order_line
            step = apply(state, record, ref, detected_at=detected_at, rollup_orders=rollup_orders,
                         horizon_ms=horizon_ms)
        else:
            step = apply_together(state, [(kind, record) for _, kind, record in due[at:end]], state["sku"], ref,
                                  detected_at=detected_at, rollup_orders=rollup_orders, horizon_ms=horizon_ms)
        outcome.alerts += step.alerts
        outcome.shortages += step.shortages
        at = end
    return outcome


def release_threshold(watermarks: Mapping[str, int], sources: int, inventory_hold: int | None) -> int | None:
    """The event time up to which held events are safe to apply, or None while unknown.

    `watermarks` holds each order source's progress; until all `sources` have
    reported, nothing is safe. `inventory_hold` is how far the stock input has
    been read (None: unknown, hold everything; a caught-up input holds nothing
    back and is passed as a very large number).
    """
    if len(watermarks) < sources or inventory_hold is None:
        return None
    return min(min(watermarks.values()), inventory_hold)


def _changes(state: dict, since: int) -> list[tuple[int, str, str]]:
    """Every change to this SKU's stock or demand from `since` on, as (ts, event_id, reason), in time order."""
    points = [(ts, event_id, "stock_level") for ts, _, event_id in state["levels"] if ts >= since]
    for line in state["lines"].values():
        if line["placed_ts"] >= since:
            points.append((line["placed_ts"], line["event_id"], "order_placed"))
        if line.get("closed_ts") is not None and line["closed_ts"] >= since:
            points.append((line["closed_ts"], line["close_event_id"], f"order_{line['close_reason']}"))
    points.sort(key=lambda point: point[0])
    return points


def _situation_at(state: dict, ts: int) -> tuple[int | None, str | None, dict[str, dict]]:
    """The stock level (and its event) in force at `ts`, and the lines open then."""
    level, level_event = None, None
    for level_ts, available, event_id in state["levels"]:
        if level_ts > ts:
            break
        level, level_event = available, event_id
    open_lines = {
        order_id: line
        for order_id, line in state["lines"].items()
        if line["placed_ts"] <= ts and (line.get("closed_ts") is None or line["closed_ts"] > ts)
    }
    return level, level_event, open_lines


def _resimulate(
    state: dict, since: int, ref: Reference, detected_at: int, rollup_orders: int, horizon_ms: int
) -> Outcome:
    """Replay this SKU's history in event-time order from `since`, and tell what changed.

    Stock levels and order lines reach this stage through different paths
    (order lines take one more hop), so in a replay or after a backlog a
    stock drop may be read before the orders placed ahead of it. Evaluating
    the allocation at each change from the late event's own time onwards
    gives the order stage the same sequence of shortages that reading in
    event-time order would have given: same alerts live and in a replay.
    Shortages already told for a later time are not rewritten; the latest
    value always is.
    """
    outcome = Outcome(state)
    latest = state["latest_ts"]
    state["latest_ts"] = since if latest is None else max(latest, since)
    points = _changes(state, since)
    for ts in sorted({point[0] for point in points}):
        causes = [point for point in points if point[0] == ts]
        # The stock event at this time explains the figures best; otherwise the order event.
        cause_event_id, reason = next(((e, r) for _, e, r in causes if r == "stock_level"), causes[-1][1:])
        level, level_event, open_lines = _situation_at(state, ts)
        short = {} if level is None else allocate_oldest_first(level, open_lines)
        for order_id in sorted(set(short) | set(state["emitted"])):
            told_ts, told = state["emitted"].get(order_id, (None, 0))
            now_short = short.get(order_id, 0)
            if now_short == told or (told_ts is not None and ts < told_ts):
                continue
            own = state["lines"].get(order_id)
            if now_short == 0 and own is not None and own.get("closed_ts") == ts:
                # The order's own line closed: its own close event ends the episode, with its own
                # reason (cancelled, shipped), whichever of the two the order stage reads first.
                outcome.shortages.append(_tell_shortage(state, order_id, ts, 0, level, level_event,
                                                        own["close_event_id"], LINE_CLOSED))
                continue
            outcome.shortages.append(
                _tell_shortage(state, order_id, ts, now_short, level, level_event, cause_event_id, reason))
        demand = sum(line["qty"] for line in open_lines.values())
        outcome.alerts += _rollup_transition(
            state, len(short), sum(short.values()), level, demand, len(open_lines), cause_event_id, level_event,
            ts, ref, detected_at, rollup_orders,
        )
    _maybe_trim(state, horizon_ms)
    return outcome


def _append_newest(
    state: dict, order_id: str, ref: Reference, detected_at: int, rollup_orders: int, horizon_ms: int
) -> Outcome | None:
    """`_resimulate` for the common case, in one cheap pass; None when the case does not apply.

    The case: the line just added is newer than anything this SKU has seen
    and a stock level is known. Oldest-first allocation then leaves every
    older line as it was (the new line comes last), so what the SKU last
    told each older order still holds, and only the new line can be short,
    by what the stock left over after the older lines cannot cover. This
    saves a sort of every open line per order placed, on a well-stocked SKU
    with many open orders and on one out of stock alike (the hot path of the
    SKU stage). Same result as `_resimulate`, which the unit tests check on
    random histories.
    """
    line = state["lines"][order_id]
    ts = line["placed_ts"]
    latest = state["latest_ts"]
    if not _FAST_APPEND or latest is None or ts <= latest or not state["levels"]:
        return None
    # Every other line was placed before `ts`, and every closed one closed before it.
    open_lines, demand = _open_demand(state["lines"])
    demand_before = demand - line["qty"]
    _, level, level_event = state["levels"][-1]
    left = max(max(level, 0) - demand_before, 0)
    state["latest_ts"] = ts
    outcome = Outcome(state)
    now_short = line["qty"] - min(line["qty"], left)
    # The orders short now: those last told short (all told at or before `latest`), and the new line
    # (which may have been told before: a line opened again after its closing was forgotten).
    orders, units = _told_short(state["emitted"])
    if now_short:
        told_before = state["emitted"].get(order_id)
        if told_before is not None and told_before[1] > 0:
            units -= told_before[1]
        else:
            orders += 1
        units += now_short
    cause = line["event_id"]
    # Nothing was told after `ts`, and the new line was never told: tell it only if short.
    if now_short:
        outcome.shortages.append(
            _tell_shortage(state, order_id, ts, now_short, level, level_event, cause, "order_placed"))
    outcome.alerts += _rollup_transition(
        state, orders, units, level, demand, open_lines, cause, level_event, ts, ref, detected_at, rollup_orders,
    )
    _maybe_trim(state, horizon_ms)
    return outcome


def _newest_change_covered(
    state: dict, ts: int, cause: str, ref: Reference, detected_at: int, rollup_orders: int, horizon_ms: int
) -> Outcome | None:
    """`_resimulate` for a stock level or a line's closing that leaves every open order covered; else None.

    The case: the change (already recorded, at `ts`, caused by event `cause`)
    is newer than anything this SKU has seen, a stock level is known, no order
    was last told short, and the level in force covers every open line. The
    allocation then shorts nobody before and after, so there is nothing to
    tell any order, and only the SKU's roll-up is judged again: a well-stocked
    SKU's stock levels and closed orders no longer sort every open line.
    Same result as `_resimulate`, which the unit tests check on random
    histories.
    """
    latest = state["latest_ts"]
    if not _FAST_APPEND or latest is None or ts <= latest or not state["levels"]:
        return None
    if _told_short(state["emitted"])[0]:
        return None
    # Every line was placed, and every closed one closed, at or before `ts`: the open ones are those
    # without a closing.
    open_lines, demand = _open_demand(state["lines"])
    _, level, level_event = state["levels"][-1]
    if max(level, 0) < demand:
        return None
    state["latest_ts"] = ts
    outcome = Outcome(state)
    outcome.alerts += _rollup_transition(
        state, 0, 0, level, demand, open_lines, cause, level_event, ts, ref, detected_at, rollup_orders,
    )
    _maybe_trim(state, horizon_ms)
    return outcome


# LineShortage.reason when an order's shortage ends because its own line closed.
LINE_CLOSED = "line_closed"


def _tell_shortage(state: dict, order_id: str, ts: int, short: int, level: int | None, level_event: str | None,
                   cause_event_id: str, reason: str) -> dict:
    """The LineShortage record telling the order stage how short `order_id` is from `ts` on; remembered as told."""
    line = state["lines"].get(order_id)
    state["emitted"][order_id] = [ts, short]
    return {
        "event_id": cause_event_id,
        "ts": ts,
        "order_id": order_id,
        "sku": state["sku"],
        "ordered": line["qty"] if line else 0,
        "short": short,
        "available": level if level is not None else 0,
        "reason": reason,
        "evidence": [e for e in (line and line["event_id"], level_event, cause_event_id) if e],
    }


# Off only in tests that compare the quick paths (`_append_newest`, `_newest_change_covered`) with the
# full re-simulation.
_FAST_APPEND = True


def _maybe_trim(state: dict, horizon_ms: int) -> None:
    # Trimming walks the whole history: do it when it can matter, not on every event. A SKU with
    # thousands of open lines is trimmed once per MAX_CLOSED_LINES lines added, not on every line.
    due = state.get("trimmed_at") is None or state["latest_ts"] - state["trimmed_at"] >= horizon_ms // 24
    grown = len(state["lines"]) > state.get("lines_after_trim", 0) + MAX_CLOSED_LINES
    if due or grown or len(state["levels"]) > MAX_LEVELS:
        _trim(state, horizon_ms)
        state["trimmed_at"] = state["latest_ts"]
        state["lines_after_trim"] = len(state["lines"])


def _trim(state: dict, horizon_ms: int) -> None:
    """Forget history no late event within the horizon can need."""
    cutoff = state["latest_ts"] - horizon_ms
    levels = state["levels"]
    # Keep the level in force at the cutoff: it is the starting point of any replay.
    first_kept = max((i for i, level in enumerate(levels) if level[0] <= cutoff), default=0)
    del levels[: max(first_kept, len(levels) - MAX_LEVELS)]
    closed = sorted(
        (line["closed_ts"], order_id) for order_id, line in state["lines"].items() if line.get("closed_ts") is not None
    )
    excess = len(closed) - MAX_CLOSED_LINES
    for n, (closed_ts, order_id) in enumerate(closed):
        if closed_ts < cutoff or n < excess:
            del state["lines"][order_id]
            if state["emitted"].get(order_id, [None, 0])[1] == 0:
                state["emitted"].pop(order_id, None)
    for order_id in [o for o, (_, told) in state["emitted"].items() if told == 0 and o not in state["lines"]]:
        del state["emitted"][order_id]


def _rollup_transition(
    state: dict,
    orders: int,
    units: int,
    available: int | None,
    open_demand: int,
    open_orders: int,
    cause_event_id: str,
    level_event: str | None,
    ts: int,
    ref: Reference,
    detected_at: int,
    threshold: int,
) -> list[dict]:
    """The roll-up's change when `orders` open orders are `units` short in all."""
    sku = state["sku"]
    episode = state["rollup"]
    if episode is not None and ts < episode.get("ts", ts):
        return []  # already told for a later time
    if episode is None:
        if orders < threshold:
            return []
        key = dedup_key(ROLLUP_RULE, sku)
        episode = state["rollup"] = {
            "alert_id": alert_id_for(key, cause_event_id),
            "orders": orders,
            "units": units,
            "evidence": [cause_event_id],
        }
        status = OPEN
    elif orders == 0:
        # The incident is the stockout itself: it ends when no open order is short,
        # not when the count dips below the threshold that made it worth a roll-up.
        status = RESOLVED
        state["rollup"] = None
    elif (orders, units) != (episode["orders"], episode["units"]):
        status = UPDATED
    else:
        return []
    episode["orders"], episode["units"], episode["ts"] = orders, units, ts
    episode["evidence"] = merge_evidence(episode["evidence"], level_event, cause_event_id)
    item = ref.catalog.get(sku) or {}
    name = item.get("name") or sku
    if status == RESOLVED:
        title = f"{name} ({sku}) no longer short on open orders"
        summary = f"Stock of {name} ({sku}) now covers every open order."
    else:
        title = f"{name} ({sku}) short on {counted(orders, 'open order')}"
        summary = (
            f"{name} ({sku}) is {counted(units, 'unit')} short across {counted(orders, 'open order')}: "
            f"{available} available against {open_demand} ordered. "
            f"Customer service has one alert per affected order."
        )
    return [
        alert_record(
            alert_id=episode["alert_id"],
            rule=ROLLUP_RULE,
            status=status,
            severity="critical" if orders >= 2 * threshold else "warning",
            audience="ops",
            key=dedup_key(ROLLUP_RULE, sku),
            title=title,
            summary=summary,
            details={
                "affected_orders": orders,
                "short_units": units,
                "available": available,
                "open_demand_units": open_demand,
                "open_orders": open_orders,
                "sku_name": name,
                "category": item.get("category") or "",
            },
            evidence=episode["evidence"],
            event_ts=ts,
            detected_at=detected_at,
            sku=sku,
            category=item.get("category"),
        )
    ]


# ---------------------------------------------------------------- stage 2: per order


def apply_order_event(
    state: dict | None,
    event: dict,
    ref: Reference,
    *,
    detected_at: int,
    max_alternatives: int,
) -> Outcome:
    """An event from the orders topic; opens or closes the order's lines per SKU."""
    kind = event["event_type"]
    if kind == "placed":
        if state is not None and state.get("placed_event_id"):
            return Outcome(state)  # the order is already known: redelivery
        closed_by = state["status"] if state else None
        state = {
            "order_id": event["order_id"],
            "customer_id": event["customer_id"],
            "placed_ts": event["ts"],
            "placed_event_id": event["event_id"],
            "lines": _qty_per_sku(event["lines"]),
            # A closing event read before its `placed` (the producer's clocks or
            # partitions disagreed) still closes the order: it is never opened.
            "status": closed_by or "open",
            "short": {},
            "evidence": [event["event_id"]],
            "alert": None,
        }
        if closed_by:
            return Outcome(state)
        return Outcome(state, line_events=_line_events(state, event, "open", "placed"))
    if kind in CLOSING_EVENTS:
        if state is None:
            return Outcome({"order_id": event["order_id"], "customer_id": event["customer_id"],
                            "status": kind, "lines": {}, "short": {}, "evidence": [], "alert": None,
                            "placed_event_id": None, "placed_ts": None})
        if state["status"] != "open":
            return Outcome(state)  # e.g. delivered after shipped
        state["status"] = kind
        state["closed_ts"] = event["ts"]
        outcome = Outcome(state, line_events=_line_events(state, event, "close", kind))
        if _alert_is_open(state):
            state["evidence"] = merge_evidence(state["evidence"], event["event_id"])
            outcome.alerts.append(
                _order_alert(state, RESOLVED, event["ts"], ref, detected_at, max_alternatives, resolution=kind)
            )
        state["short_at_close"] = sorted(state["short"])
        state["short"] = {}
        return outcome
    return Outcome(state)  # payments do not change stock allocation


def apply_line_shortage(
    state: dict | None,
    shortage: dict,
    ref: Reference,
    *,
    detected_at: int,
    max_alternatives: int,
) -> Outcome:
    """The SKU stage says how short one of this order's lines is from the shortage's time on."""
    if state is None or not state.get("placed_event_id"):
        return Outcome(state)
    if state["status"] != "open":
        # A shortage from before the order closed is history read late: it still gets its
        # episode, which the SKU stage ends with the closing time. After closing: nothing.
        if shortage["short"] > 0 and shortage["ts"] >= state.get("closed_ts", shortage["ts"]):
            return Outcome(state)
        # Nor when the order was already short on this SKU as it closed: the closing ended
        # that episode, and this is the same shortage told again (a redelivery, or the SKU
        # stage re-announcing it with another cause after it re-read its inputs).
        if shortage["short"] > 0 and shortage["sku"] in state.get("short_at_close", ()):
            return Outcome(state)
        if shortage["short"] == 0 and not _alert_is_open(state):
            return Outcome(state)
    elif shortage["short"] == 0 and shortage.get("reason") == LINE_CLOSED:
        # The SKU stage saw this order's line close, so the order's close event was processed
        # once: if this state does not show it yet (a worker that took the partition over reads
        # the two topics in any order), the event is read again and resolves the alert with its
        # own reason. Resolving here would call a cancelled order "restocked".
        return Outcome(state)
    sku = shortage["sku"]
    before = dict(state["short"])
    known = state["short"].get(sku)
    if shortage["short"] > 0 and known and (known["ordered"], known["short"]) == (shortage["ordered"],
                                                                                 shortage["short"]):
        # The SKU stage tells a change only when the units short change. The same units told again come
        # from a redelivered order line, with the stock figure worked out anew from the levels held now
        # (a level of the same time may have been read since): no news, so no state change and no alert.
        return Outcome(state)
    if shortage["short"] > 0:
        state["short"][sku] = {
            "ordered": shortage["ordered"],
            "short": shortage["short"],
            "available": shortage["available"],
        }
    else:
        state["short"].pop(sku, None)
    if state["short"] == before:
        return Outcome(state)
    state["evidence"] = merge_evidence(state["evidence"], *shortage["evidence"], shortage["event_id"])
    if state["short"]:
        if _alert_is_open(state):
            status = UPDATED
        else:
            key = dedup_key(RULE, state["order_id"])
            state["alert"] = {"alert_id": alert_id_for(key, shortage["event_id"]), "status": OPEN}
            status = OPEN
        resolution = None
    elif _alert_is_open(state):
        status, resolution = RESOLVED, ("restocked" if state["status"] == "open" else state["status"])
    else:
        return Outcome(state)
    alert = _order_alert(state, status, shortage["ts"], ref, detected_at, max_alternatives, resolution)
    return Outcome(state, alerts=[alert])


def alternatives_for(sku: str, ref: Reference, limit: int, exclude: set[str] = frozenset()) -> list[dict]:
    """In-stock, active products of the same category, closest in price first."""
    item = ref.catalog.get(sku)
    if item is None or limit <= 0:
        return []
    price = item["price_cents"]
    candidates = [
        other
        for other_sku, other in ref.catalog.items()
        if other_sku != sku
        and other_sku not in exclude
        and other.get("active")
        and other.get("category") == item.get("category")
        and ref.stock.get(other_sku, 0) > 0
    ]
    candidates.sort(key=lambda other: (abs(other["price_cents"] - price), other["price_cents"], other["sku"]))
    return [
        {
            "sku": other["sku"],
            "name": other["name"],
            "price_cents": other["price_cents"],
            "available": ref.stock.get(other["sku"], 0),
        }
        for other in candidates[:limit]
    ]


def _qty_per_sku(lines: list[dict]) -> dict[str, int]:
    per_sku: dict[str, int] = {}
    for line in lines:
        per_sku[line["sku"]] = per_sku.get(line["sku"], 0) + int(line["qty"])
    return per_sku


def _line_events(state: dict, event: dict, action: str, reason: str) -> list[dict]:
    return [
        {
            "event_id": event["event_id"],
            "ts": event["ts"],
            "action": action,
            "order_id": state["order_id"],
            "customer_id": state["customer_id"],
            "sku": sku,
            "qty": qty,
            "placed_ts": state["placed_ts"],
            "reason": reason,
        }
        for sku, qty in sorted(state["lines"].items())
    ]


def _alert_is_open(state: dict) -> bool:
    return state.get("alert") is not None and state["alert"]["status"] != RESOLVED


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}"


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _order_alert(
    state: dict,
    status: str,
    event_ts: int,
    ref: Reference,
    detected_at: int,
    max_alternatives: int,
    resolution: str | None = None,
) -> dict:
    order_id = state["order_id"]
    state["alert"]["status"] = status
    customer = ref.customers.get(state["customer_id"]) or {}
    who = customer.get("name") or state["customer_id"]
    tier = customer.get("tier") or "unknown"
    short_skus = sorted(state["short"])
    lines = []
    for sku in short_skus:
        line = state["short"][sku]
        item = ref.catalog.get(sku) or {}
        lines.append(
            {
                "sku": sku,
                "name": item.get("name") or sku,
                "ordered": line["ordered"],
                "short": line["short"],
                "available": line["available"],
                "alternatives": alternatives_for(sku, ref, max_alternatives, exclude=set(short_skus)),
            }
        )
    details: dict[str, str] = {
        "customer_name": who,
        "customer_tier": tier,
        "order_placed_at": _iso(state["placed_ts"]),
        "order_lines": str(len(state["lines"])),
        "short_skus": ",".join(short_skus),
        "lines_json": json.dumps(lines, separators=(",", ":")),
    }
    for key in ("email", "preferred_channel", "language"):
        if customer.get(key):
            details[f"customer_{key}"] = customer[key]
    if status == RESOLVED:
        # Nothing to offer any more: a resolved alert names what was short, not alternatives.
        details["lines_json"] = json.dumps([{k: v for k, v in line.items() if k != "alternatives"}
                                            for line in lines], separators=(",", ":"))
        lines = []
    for line in lines:
        details[f"short.{line['sku']}"] = (
            f"{line['name']}: {line['short']} of {counted(line['ordered'], 'unit')} short "
            f"({line['available']} in stock)"
        )
        details[f"alternatives.{line['sku']}"] = "; ".join(
            f"{alt['name']} ({alt['sku']}, {_money(alt['price_cents'])}, {alt['available']} in stock)"
            for alt in line["alternatives"]
        ) or "none in stock in this category"
    if status == RESOLVED:
        details["resolution"] = resolution or "restocked"
        title = f"Order {order_id} no longer short ({details['resolution']})"
        summary = f"Order {order_id} for {who} is no longer waiting on stock: {details['resolution']}."
        severity = state["alert"].get("severity", "warning")
    else:
        fully_short = all(
            state["short"].get(sku, {}).get("short", 0) >= qty for sku, qty in state["lines"].items()
        )
        severity = "critical" if fully_short or tier == "platinum" else "warning"
        state["alert"]["severity"] = severity
        parts = []
        for line in lines:
            offer = ", ".join(f"{alt['name']} ({alt['sku']}, {_money(alt['price_cents'])})" for alt in line["alternatives"])
            parts.append(
                f"{line['name']} ({line['sku']}) short {line['short']} of {line['ordered']}"
                + (f"; offer {offer}" if offer else "; no in-stock alternative")
            )
        units = sum(line["short"] for line in lines)
        title = f"Order {order_id}: {counted(len(lines), 'item')} out of stock ({counted(units, 'unit')})"
        summary = f"{who} ({tier}) has an open order {order_id} that cannot ship complete: " + " | ".join(parts)
    return alert_record(
        alert_id=state["alert"]["alert_id"],
        rule=RULE,
        status=status,
        severity=severity,
        audience="cs",
        key=dedup_key(RULE, order_id),
        title=title,
        summary=summary,
        details=details,
        evidence=state["evidence"],
        event_ts=event_ts,
        detected_at=detected_at,
        customer_id=state["customer_id"],
        order_id=order_id,
        sku=short_skus[0] if len(short_skus) == 1 else None,
    )
