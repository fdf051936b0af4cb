"""Per SKU: ``return_spike``, a product that keeps coming back.

Reads the ``returns`` topic, keyed by SKU like the out-of-stock SKU stage,
whose state counts the units of each SKU ordered per day (``ordered``, see
``streams.detectors.stock.count_ordered``): returns and sales of one SKU
meet on one partition without a second pass over the order lines. A SKU
spikes when it has ``return_spike_returns`` or more returns in the return
window (7 days) and the units returned are ``return_spike_percent`` or more
of the units ordered in the order window (30 days, at most the 31 days the
SKU stage keeps). The alert names the top reasons, for the product team; it
resolves when either condition no longer holds.
"""

from __future__ import annotations

import collections

from streams.detectors.alerts import dedup_key
from streams.detectors.lifecycle import Result, alert_for, minutes, transition
from streams.thresholds import DAY_MS, Thresholds
from streams.words import counted

RULE = "return_spike"


def new_sku(sku: str) -> dict:
    return {"sku": sku, "returns": [], "now": None, "track": None}


def apply_return(state: dict | None, event: dict, limits: Thresholds, catalog: dict, ordered: dict, *,
                 detected_at: int) -> Result:
    """A return; `ordered` is the SKU's units ordered per day (day number as a string -> units)."""
    state = state or new_sku(event["sku"])
    if any(r[3] == event["event_id"] for r in state["returns"]):
        return Result(state)
    state["returns"].append([event["ts"], int(event["qty"]), event["reason"], event["event_id"], event["order_id"]])
    state["returns"].sort(key=lambda r: r[0])
    return evaluate(state, event["ts"], limits, catalog, ordered, detected_at=detected_at, cause=event["event_id"])


def evaluate(state: dict, now: int, limits: Thresholds, catalog: dict, ordered: dict, *, detected_at: int,
             cause: str | None = None) -> Result:
    state["now"] = now if state["now"] is None else max(state["now"], now)
    now = state["now"]
    state["returns"] = [r for r in state["returns"] if r[0] > now - limits.return_spike_window_ms]
    first_day = (now - limits.return_spike_orders_window_ms) // DAY_MS
    returns = state["returns"]
    returned = sum(r[1] for r in returns)
    ordered = sum(n for d, n in ordered.items() if first_day < int(d) <= now // DAY_MS)
    share = 100.0 * returned / ordered if ordered else 100.0
    active = len(returns) >= limits.return_spike_returns and share >= limits.return_spike_percent
    severity = "critical" if active and share >= 3 * limits.return_spike_percent else "warning"
    key = dedup_key(RULE, state["sku"])
    band = str(len(returns).bit_length()) if active else ""
    track, status = transition(state["track"], key=key, active=active, severity=severity, ts=now,
                               event_id=cause or f"clock:{now}", cooldown_ms=limits.alert_cooldown_ms,
                               fingerprint=band)
    state["track"] = track
    if status is None:
        return Result(state)
    if active:
        track["evidence"] = list(dict.fromkeys(track["evidence"] + [r[3] for r in returns]))[:50]
    reasons = collections.Counter()
    for r in returns:
        reasons[r[2]] += r[1]
    top = reasons.most_common(3)
    item = catalog.get(state["sku"]) or {}
    name = item.get("name") or state["sku"]
    window = minutes(limits.return_spike_window_ms)
    if status == "resolved":
        title = f"Returns of {name} back to normal"
        summary = (f"{name} ({state['sku']}): {counted(len(returns), 'return')} in {window}, "
                   f"{share:.0f}% of units ordered.")
    else:
        title = f"{name}: {counted(len(returns), 'return')} in {window} ({share:.0f}% of units ordered)"
        summary = (f"{name} ({state['sku']}) came back {counted(len(returns), 'time')} "
                   f"({counted(returned, 'unit')}) in {window}, against {counted(ordered, 'unit')} ordered in "
                   f"{minutes(limits.return_spike_orders_window_ms)}. Top reasons: "
                   + "; ".join(f"{reason} ({counted(units, 'unit')})" for reason, units in top)
                   + ". Check the product and its description.")
    details = {"returns": len(returns), "units_returned": returned, "units_ordered": ordered,
               "return_percent": f"{share:.1f}", "top_reasons": "; ".join(f"{r}={n}" for r, n in top),
               "sku_name": name, "category": item.get("category")}
    return Result(state, alerts=[alert_for(track, status, rule=RULE, audience="product", key=key, title=title,
                                           summary=summary, details=details, event_ts=now, detected_at=detected_at,
                                           sku=state["sku"], category=item.get("category"))])


def next_due(state: dict, limits: Thresholds) -> int | None:
    """When the oldest return leaves the window of an open spike."""
    if state["track"] and state["track"].get("open") and state["returns"]:
        return state["returns"][0][0] + limits.return_spike_window_ms + 1
    return None
