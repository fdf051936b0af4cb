"""Per order: ``late_shipment``, ``payment_failed`` and ``order_not_visible``.

Deadline rules follow the worker clock: ``due(state, clock)`` raises what is
due by then, and every event first brings its order's deadlines up to the
event's own time before it is applied. So a shipment (or payment) that
arrives after its deadline still raises the breach, and resolves it with
that same event, whether it is read live or replayed.

``order_not_visible`` joins the session stage's ``order_lookup`` signals with
the order's own lifecycle: a lookup that did not find an order placed before
it means the customer cannot see his order in his account. A lookup read
before the order's ``placed`` is kept and judged when the order arrives.
"""

from __future__ import annotations

from streams.detectors.alerts import dedup_key
from streams.detectors.lifecycle import Result, alert_for, iso, minutes, note_evidence, signal, transition
from streams.thresholds import Thresholds
from streams.words import counted

LATE_RULE = "late_shipment"
PAYMENT_RULE = "payment_failed"
VISIBLE_RULE = "order_not_visible"
CUSTOMER_SIGNALS = "forewarn-customer-signals"
CLOSING = ("shipped", "delivered", "cancelled")
MAX_LOOKUPS = 20


def new_order(order_id: str) -> dict:
    return {"order_id": order_id, "customer_id": None, "placed_ts": None, "placed_event_id": None,
            "promised": None, "closed": None, "closed_ts": None, "payment_failed": None, "paid_ts": None,
            "lookups": [], "tracks": {}, "seen": []}


def apply_order_event(state: dict | None, event: dict, limits: Thresholds, customers: dict, *,
                      detected_at: int) -> Result:
    state = state or new_order(event["order_id"])
    if event["event_id"] in state["seen"]:
        return Result(state)
    state["seen"] = (state["seen"] + [event["event_id"]])[-20:]
    state["customer_id"] = state["customer_id"] or event["customer_id"]
    ts, kind = event["ts"], event["event_type"]
    # Deadlines passed by this event's time are raised before the event is applied.
    result = due(state, ts, limits, customers, detected_at=detected_at, cause=event["event_id"])
    if kind == "placed":
        if state["placed_event_id"] is None:
            state["placed_ts"], state["placed_event_id"] = ts, event["event_id"]
            state["promised"] = event.get("promised_ship_by")
            state["lines"] = [[line["sku"], line["qty"]] for line in event.get("lines") or []]
            state["total_cents"] = sum(line["qty"] * line.get("unit_price_cents", 0)
                                       for line in event.get("lines") or [])
            result.signals.append(signal(CUSTOMER_SIGNALS, event["customer_id"], "order_placed", event["event_id"],
                                         ts, order_id=state["order_id"]))
            result.extend(due(state, ts, limits, customers, detected_at=detected_at, cause=event["event_id"]))
            if state["lookups"]:
                result.extend(_visibility(state, limits, customers, detected_at, event["event_id"], ts))
    elif kind in CLOSING:
        if state["closed"] is None or (state["closed"] == "shipped" and kind == "delivered"):
            state["closed"], state["closed_ts"] = kind, ts
        if _may_be_late(state):
            result.extend(_late(state, ts, limits, customers, detected_at, event["event_id"]))
        if state["payment_failed"] is not None:
            result.extend(_payment(state, ts, limits, customers, detected_at, event["event_id"]))
        if kind in ("delivered", "cancelled") and state["lookups"]:
            result.extend(_visibility(state, limits, customers, detected_at, event["event_id"], ts))
    elif kind == "payment_failed":
        if state["payment_failed"] is None or (state["paid_ts"] is not None and ts > state["paid_ts"]):
            state["payment_failed"], state["paid_ts"] = [ts, event["event_id"]], None
        note_evidence(state["tracks"].get(PAYMENT_RULE), event["event_id"])
    elif kind == "payment_succeeded":
        state["paid_ts"] = ts
        if state["payment_failed"] is not None:
            result.extend(_payment(state, ts, limits, customers, detected_at, event["event_id"]))
    result.state = state
    return result


def apply_lookup(state: dict | None, sig: dict, limits: Thresholds, customers: dict, *, detected_at: int) -> Result:
    """An order_lookup signal from a web session."""
    state = state or new_order(sig["key"])
    if any(lookup[2] == sig["event_id"] for lookup in state["lookups"]):
        return Result(state)
    data = sig["data"]
    state["lookups"] = (state["lookups"] + [[sig["ts"], data.get("found") == "true", sig["event_id"],
                                             data.get("session_id", ""), data.get("page", "")]])[-MAX_LOOKUPS:]
    state["lookups"].sort(key=lambda lookup: lookup[0])
    return _visibility(state, limits, customers, detected_at, sig["event_id"], sig["ts"])


def due(state: dict, clock: int, limits: Thresholds, customers: dict, *, detected_at: int,
        cause: str | None = None) -> Result:
    """Raise every deadline of this order that has passed at event time `clock`."""
    cause = cause or f"clock:{clock}"
    result = Result(state)
    # Each rule is looked at only when it can say something (most orders have no promise and no failed payment).
    if _may_be_late(state):
        result.extend(_late(state, clock, limits, customers, detected_at, cause))
    if state["payment_failed"] is not None:
        result.extend(_payment(state, clock, limits, customers, detected_at, cause))
    return result


def next_due(state: dict, limits: Thresholds) -> int | None:
    """The next event time at which a deadline of this order changes something."""
    points = []
    if state["promised"] is not None and state["closed"] is None and state["placed_ts"] is not None:
        track = state["tracks"].get(LATE_RULE)
        warn_at = state["promised"] - limits.late_shipment_warning_ms
        if not (track and track.get("open")):
            points.append(warn_at)
        if not (track and track.get("open") and track["severity"] == "critical"):
            points.append(state["promised"])
    if state["payment_failed"] is not None and state["paid_ts"] is None and state["closed"] != "cancelled":
        track = state["tracks"].get(PAYMENT_RULE)
        if not (track and track.get("open")):
            points.append(state["payment_failed"][0] + limits.payment_grace_ms)
    return min(points) if points else None


def finished(state: dict) -> bool:
    """Delivered or cancelled with no alert open: nothing about the order can still fire."""
    return state["closed"] in ("delivered", "cancelled") and not any(
        track and track.get("open") for track in state["tracks"].values())


def _order_alert(state: dict, track: dict, status: str, rule: str, audience: str, title: str, summary: str,
                 details: dict, at: int, detected_at: int, customers: dict, **entity) -> Result:
    """An alert about this order: its lines and customer go into every one."""
    who, tier = _customer(state, customers)
    details = dict(details, lines=",".join(f"{sku} x{qty}" for sku, qty in state.get("lines", [])),
                   customer_name=who, customer_tier=tier)
    alert = alert_for(track, status, rule=rule, audience=audience, key=dedup_key(rule, state["order_id"]),
                      title=title, summary=summary, details=details, event_ts=at, detected_at=detected_at,
                      customer_id=state["customer_id"], order_id=state["order_id"], **entity)
    return Result(state, alerts=[alert])


def _customer(state: dict, customers: dict) -> tuple[str, str]:
    customer = customers.get(state["customer_id"]) or {}
    return customer.get("name") or state["customer_id"] or "unknown customer", customer.get("tier") or "unknown"


def _may_be_late(state: dict) -> bool:
    """Whether `_late` can say anything about this order: it has a promised time and has been placed."""
    return state["promised"] is not None and state["placed_ts"] is not None


def _late(state: dict, now: int, limits: Thresholds, customers: dict, detected_at: int, cause: str) -> Result:
    """Warning before the promise, breach at it; a shipment after the promise still missed it."""
    promised = state["promised"]
    result = Result(state)
    if not _may_be_late(state):
        return result
    closed_ts = state["closed_ts"] if state["closed"] else None
    for at, severity in ((promised - limits.late_shipment_warning_ms, "warning"), (promised, "critical")):
        at = max(at, state["placed_ts"])
        if at <= now and (closed_ts is None or at <= closed_ts):
            result.extend(_late_transition(state, True, severity, at, limits, customers, detected_at, cause))
    if closed_ts is not None:
        shipped_late = state["closed"] in ("shipped", "delivered") and closed_ts > promised
        resolution = state["closed"] + (" late" if shipped_late else "")
        result.extend(_late_transition(state, False, "warning", closed_ts, limits, customers, detected_at, cause,
                                       resolution=resolution))
    return result


def _late_transition(state: dict, active: bool, severity: str, at: int, limits: Thresholds, customers: dict,
                     detected_at: int, cause: str, resolution: str | None = None) -> Result:
    key = dedup_key(LATE_RULE, state["order_id"])
    track = state["tracks"].get(LATE_RULE)
    if active and track and track.get("open") and track["severity"] == "critical":
        severity = "critical"
    track, status = transition(track, key=key, active=active, severity=severity, ts=at, event_id=cause,
                               cooldown_ms=limits.alert_cooldown_ms)
    state["tracks"][LATE_RULE] = track
    if status is None:
        return Result(state)
    who, tier = _customer(state, customers)
    promised = state["promised"]
    order_id = state["order_id"]
    if status == "resolved":
        title = f"Order {order_id} {resolution}"
        summary = f"Order {order_id} for {who} is {resolution} (promised to ship by {iso(promised)})."
    elif severity == "critical":
        title = f"Order {order_id} missed its ship-by time"
        summary = (f"{who} ({tier}) was promised order {order_id} would ship by {iso(promised)}; it has not. "
                   f"Tell the customer before they ask, with a new date.")
    else:
        title = f"Order {order_id} ships by {iso(promised)} and has not shipped"
        summary = (f"Order {order_id} for {who} ({tier}) is due to ship within "
                   f"{minutes(limits.late_shipment_warning_ms)} and has not shipped yet.")
    details = {"promised_ship_by": iso(promised), "due_by_ms": promised, "placed_at": iso(state["placed_ts"]),
               "resolution": resolution}
    return _order_alert(state, track, status, LATE_RULE, "cs", title, summary, details, at, detected_at, customers)


def _payment(state: dict, now: int, limits: Thresholds, customers: dict, detected_at: int, cause: str) -> Result:
    failed = state["payment_failed"]
    if failed is None:
        return Result(state)
    deadline = failed[0] + limits.payment_grace_ms
    paid = state["paid_ts"]
    cancelled_ts = state["closed_ts"] if state["closed"] == "cancelled" else None
    ended = min(t for t in (paid, cancelled_ts) if t is not None) if (paid or cancelled_ts) else None
    result = Result(state)
    if deadline <= now and (ended is None or ended >= deadline):
        result.extend(_payment_transition(state, True, deadline, limits, customers, detected_at, failed[1]))
    if ended is not None and ended <= now:
        resolution = "paid" if paid is not None and paid == ended else "cancelled"
        result.extend(_payment_transition(state, False, ended, limits, customers, detected_at, cause, resolution))
    return result


def _payment_transition(state: dict, active: bool, at: int, limits: Thresholds, customers: dict, detected_at: int,
                        cause: str, resolution: str | None = None) -> Result:
    key = dedup_key(PAYMENT_RULE, state["order_id"])
    who, tier = _customer(state, customers)
    severity = "critical" if tier == "platinum" or state.get("total_cents", 0) >= 50_000 else "warning"
    track, status = transition(state["tracks"].get(PAYMENT_RULE), key=key, active=active, severity=severity,
                               ts=at, event_id=cause, cooldown_ms=limits.alert_cooldown_ms)
    state["tracks"][PAYMENT_RULE] = track
    if status is None:
        return Result(state)
    order_id = state["order_id"]
    failed_at = state["payment_failed"][0]
    if status == "resolved":
        title = f"Payment for order {order_id} settled ({resolution})"
        summary = f"Order {order_id} for {who}: {resolution} after the failed payment at {iso(failed_at)}."
    else:
        title = f"Payment failed on order {order_id} and was not retried"
        summary = (f"{who} ({tier}) had a payment fail on order {order_id} at {iso(failed_at)} and no payment "
                   f"succeeded within {minutes(limits.payment_grace_ms)}. Help them pay before the order lapses.")
    details = {"payment_failed_at": iso(failed_at), "order_total": f"{state.get('total_cents', 0) / 100:.2f}",
               "resolution": resolution}
    return _order_alert(state, track, status, PAYMENT_RULE, "cs", title, summary, details, at, detected_at,
                        customers)


def _visibility(state: dict, limits: Thresholds, customers: dict, detected_at: int, cause: str, ts: int) -> Result:
    """Open while the latest lookup after placement did not find the order; resolved by one that did."""
    if state["placed_ts"] is None:
        return Result(state)
    lookups = [lookup for lookup in state["lookups"] if lookup[0] >= state["placed_ts"]]
    track = state["tracks"].get(VISIBLE_RULE)
    misses = [lookup for lookup in lookups if not lookup[1]]
    if not lookups:
        return Result(state)
    latest = lookups[-1]
    active = not latest[1] and state["closed"] not in ("delivered", "cancelled")
    if not active and not (track and track.get("open")):
        return Result(state)
    severity = "critical" if len(misses) >= 2 else "warning"
    key = dedup_key(VISIBLE_RULE, state["order_id"])
    at = latest[0] if state["closed"] not in ("delivered", "cancelled") else max(ts, latest[0])
    track, status = transition(track, key=key, active=active, severity=severity, ts=at, event_id=latest[2],
                               cooldown_ms=limits.alert_cooldown_ms, fingerprint=str(len(misses)))
    state["tracks"][VISIBLE_RULE] = track
    if status is None:
        return Result(state)
    note_evidence(track, state["placed_event_id"], *(lookup[2] for lookup in misses))
    who, tier = _customer(state, customers)
    order_id = state["order_id"]
    if status == "resolved":
        resolution = "found in the account" if latest[1] else state["closed"]
        title = f"Order {order_id} visible to its customer again"
        summary = f"Order {order_id} for {who}: {resolution}."
    else:
        resolution = None
        title = f"Order {order_id} missing from {who}'s account"
        summary = (f"{who} ({tier}) looked up order {order_id} in their account {counted(len(misses), 'time')} "
                   f"and it was not found, although it was placed at {iso(state['placed_ts'])}. The account view "
                   f"is not showing orders: confirm the order to the customer and fix the account view.")
    details = {"placed_at": iso(state["placed_ts"]), "lookups_not_found": len(misses),
               "last_lookup_at": iso(latest[0]), "last_lookup_page": latest[4], "session_id": latest[3],
               "resolution": resolution}
    return _order_alert(state, track, status, VISIBLE_RULE, "it", title, summary, details, at, detected_at,
                        customers, session_id=latest[3] or None)
