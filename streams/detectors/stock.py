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


def new_sku_state(sku: str) -> dict:
    return {
        "sku": sku,
        "available": None,  # unknown until the first stock_level: no shortage claimed
        "stock_ts": None,
        "stock_event_id": None,
        "lines": {},  # order_id -> {qty, placed_ts, customer_id, event_id}
        "short": {},  # order_id -> units short, as last published
        "rollup": None,  # the open sku_stockout_impact episode, if any
    }


def apply_stock_level(
    state: dict | None,
    event: dict,
    ref: Reference,
    *,
    detected_at: int,
    rollup_orders: int,
) -> Outcome:
    """A new absolute stock level for one SKU."""
    state = state or new_sku_state(event["sku"])
    # Levels are absolute, so a level older than the one we hold is history,
    # not news: applying it would undo a newer level that arrived first.
    if state["stock_ts"] is not None and event["ts"] < state["stock_ts"]:
        return Outcome(state)
    state["available"] = int(event["available"])
    state["stock_ts"] = event["ts"]
    state["stock_event_id"] = event["event_id"]
    return _reallocate(state, event["event_id"], event["ts"], "stock_level", ref, detected_at, rollup_orders)


def apply_order_line(
    state: dict | None,
    line: dict,
    ref: Reference,
    *,
    detected_at: int,
    rollup_orders: int,
) -> Outcome:
    """An order line for this SKU opened (order placed) or closed (shipped, delivered, cancelled)."""
    state = state or new_sku_state(line["sku"])
    order_id = line["order_id"]
    if line["action"] == "open":
        if order_id in state["lines"]:
            return Outcome(state)  # redelivered: already counted
        state["lines"][order_id] = {
            "qty": int(line["qty"]),
            "placed_ts": line["placed_ts"],
            "customer_id": line["customer_id"],
            "event_id": line["event_id"],
        }
        reason = "order_placed"
    else:
        if state["lines"].pop(order_id, None) is None:
            return Outcome(state)
        reason = f"order_{line['reason']}"
    return _reallocate(state, line["event_id"], line["ts"], reason, ref, detected_at, rollup_orders)


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


def _reallocate(
    state: dict,
    cause_event_id: str,
    cause_ts: int,
    reason: str,
    ref: Reference,
    detected_at: int,
    rollup_orders: int,
) -> Outcome:
    sku = state["sku"]
    available = state["available"]
    new_short = {} if available is None else allocate_oldest_first(available, state["lines"])
    old_short = state["short"]
    shortages = []
    for order_id in sorted(set(old_short) | set(new_short)):
        before, after = old_short.get(order_id, 0), new_short.get(order_id, 0)
        if before == after:
            continue
        line = state["lines"].get(order_id)
        shortages.append(
            {
                "event_id": cause_event_id,
                "ts": cause_ts,
                "order_id": order_id,
                "sku": sku,
                "ordered": line["qty"] if line else 0,
                "short": after,
                "available": available if available is not None else 0,
                "reason": reason,
                "evidence": [e for e in (line and line["event_id"], state["stock_event_id"], cause_event_id) if e],
            }
        )
    state["short"] = new_short
    alerts = _rollup_transition(state, cause_event_id, cause_ts, ref, detected_at, rollup_orders)
    return Outcome(state, alerts=alerts, shortages=shortages)


def _rollup_transition(
    state: dict, cause_event_id: str, cause_ts: int, ref: Reference, detected_at: int, threshold: int
) -> list[dict]:
    sku = state["sku"]
    orders = len(state["short"])
    units = sum(state["short"].values())
    episode = state["rollup"]
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
    episode["orders"], episode["units"] = orders, units
    episode["evidence"] = merge_evidence(episode["evidence"], state["stock_event_id"], cause_event_id)
    item = ref.catalog.get(sku) or {}
    name = item.get("name") or sku
    open_demand = sum(line["qty"] for line in state["lines"].values())
    if status == RESOLVED:
        title = f"{name} ({sku}) no longer short on open orders"
        summary = f"Stock of {name} ({sku}) now covers every open order."
    else:
        title = f"{name} ({sku}) short on {orders} open orders"
        summary = (
            f"{name} ({sku}) is {units} units short across {orders} open orders: "
            f"{state['available']} available against {open_demand} ordered. "
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
                "available": state["available"],
                "open_demand_units": open_demand,
                "open_orders": len(state["lines"]),
                "sku_name": name,
                "category": item.get("category") or "",
            },
            evidence=episode["evidence"],
            event_ts=cause_ts,
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
        outcome = Outcome(state, line_events=_line_events(state, event, "close", kind))
        if _alert_is_open(state):
            state["evidence"] = merge_evidence(state["evidence"], event["event_id"])
            outcome.alerts.append(
                _order_alert(state, RESOLVED, event["ts"], ref, detected_at, max_alternatives, resolution=kind)
            )
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
    """The SKU stage says how short one of this order's lines now is."""
    if state is None or state["status"] != "open":
        return Outcome(state)  # closed orders have nothing left to short
    sku = shortage["sku"]
    before = dict(state["short"])
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
        status, resolution = RESOLVED, "restocked"
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
    for line in lines:
        details[f"short.{line['sku']}"] = (
            f"{line['name']}: {line['short']} of {line['ordered']} units short ({line['available']} in stock)"
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
        title = f"Order {order_id}: {len(lines)} item{'s' if len(lines) != 1 else ''} out of stock ({units} units)"
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
