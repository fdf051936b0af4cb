"""Web sessions (rule ``cart_lost``), and the per-page and per-order facts other stages need.

Per session, the cart the session's own ``cart_add`` / ``cart_remove`` events
imply is compared with every ``cart_view``: a view showing fewer items, with
no ``checkout_completed`` in between, is a lost cart. The alert names the
SKUs that were in the cart and the last page the customer visited before the
loss (where the site dropped it). It resolves when the customer checks out,
puts every SKU of an emptied cart back, or a cart view shows a partly lost
cart whole again.

Every web event also becomes a ``page_hit`` signal for its page (the page
stage counts server errors against traffic), every loss a ``cart_lost``
signal for the page visited before it (the page stage watches for a burst of
those), and every ``order_lookup`` an ``order_lookup`` signal for the order
stage (an order the customer cannot see in his account).
"""

from __future__ import annotations

import json

from streams.detectors.alerts import dedup_key
from streams.detectors.lifecycle import Result, alert_for, is_open, signal, transition
from streams.thresholds import Thresholds
from streams.words import counted

RULE = "cart_lost"
PAGE_SIGNALS = "forewarn-page-signals"
ORDER_SIGNALS = "forewarn-order-signals"
# Event ids a session remembers to ignore redelivered events.
RECENT_EVENTS = 50
# Pages a session remembers, so a lost cart's task shows the way the customer came (oldest first).
RECENT_PAGES = 5


def new_session(session_id: str) -> dict:
    return {"session_id": session_id, "customer_id": None, "cart": {}, "adjust": 0, "last_page": None,
            "lost": {}, "lost_page": None, "track": None, "recent": []}


def apply_web_event(state: dict | None, event: dict, limits: Thresholds, *, detected_at: int) -> Result:
    state = state or new_session(event["session_id"])
    if event["event_id"] in state["recent"]:
        return Result(state)  # redelivered
    state["recent"] = (state["recent"] + [event["event_id"]])[-RECENT_EVENTS:]
    if event.get("customer_id"):
        state["customer_id"] = event["customer_id"]
    kind, ts, page = event["event_type"], event["ts"], event["page"]
    result = Result(state)
    result.signals.append(signal(PAGE_SIGNALS, page, "page_hit", event["event_id"], ts,
                                 status_code=event.get("status_code") if kind == "error" else None))
    if kind == "order_lookup" and event.get("order_id"):
        result.signals.append(signal(ORDER_SIGNALS, event["order_id"], "order_lookup", event["event_id"], ts,
                                     found="true" if event.get("found") else "false",
                                     session_id=state["session_id"], customer_id=state["customer_id"], page=page))
    cart = state["cart"]
    if kind == "cart_add" and event.get("sku"):
        cart[event["sku"]] = cart.get(event["sku"], 0) + max(1, event.get("qty") or 1)
        # After a whole cart was lost the customer can put it back; after a partial loss nobody knows
        # which items went, so only the site restoring them (below) or a checkout ends it.
        if is_open(state["track"]) and not state["adjust"] and \
                all(cart.get(sku, 0) >= qty for sku, qty in state["lost"].items()):
            result.extend(_cart_lost(state, False, event, limits, detected_at, resolution="items_added_back"))
    elif kind == "cart_remove" and event.get("sku"):
        left = cart.get(event["sku"], 0) - max(1, event.get("qty") or 1)
        if left > 0:
            cart[event["sku"]] = left
        else:
            cart.pop(event["sku"], None)
    elif kind == "checkout_completed":
        state["cart"], state["adjust"] = {}, 0
        if is_open(state["track"]):
            result.extend(_cart_lost(state, False, event, limits, detected_at, resolution="checked_out"))
    elif kind == "cart_view" and event.get("cart_item_count") is not None:
        implied = sum(cart.values()) + state["adjust"]
        shown = event["cart_item_count"]
        if is_open(state["track"]) and state["adjust"] and shown >= sum(cart.values()):
            # The site shows every item the session put in again: a partial loss restored.
            state["adjust"] = 0
            result.extend(_cart_lost(state, False, event, limits, detected_at, resolution="cart_restored"))
        elif shown < implied:
            # The loss is told from the last page before this view: the page the site dropped the cart on.
            # All of a partly emptied cart's SKUs are named: which of them went, no event says.
            state["lost"] = dict(cart)
            state["lost_page"] = state["last_page"] or page
            state["lost_pages"] = list(state.get("pages") or [state["lost_page"]])
            state["lost_count"] = implied - shown
            if shown == 0:
                state["cart"], state["adjust"] = {}, 0
            else:
                state["adjust"] += shown - implied
            result.signals.append(signal(PAGE_SIGNALS, state["lost_page"], "cart_lost", event["event_id"], ts,
                                         session_id=state["session_id"], customer_id=state["customer_id"],
                                         items=implied - shown))
            result.extend(_cart_lost(state, True, event, limits, detected_at))
    if kind in ("page_view", "cart_add", "cart_remove", "checkout_started", "order_lookup"):
        state["last_page"] = page
        if (state.get("pages") or [None])[-1] != page:
            state["pages"] = ((state.get("pages") or []) + [page])[-RECENT_PAGES:]
    return result


def finished(state: dict) -> bool:
    """Nothing in the cart and no open alert: nothing left to lose, the session's state can go."""
    return not state["cart"] and not state["adjust"] and not is_open(state["track"])


def _cart_lost(state: dict, active: bool, event: dict, limits: Thresholds, detected_at: int,
               resolution: str | None = None) -> Result:
    key = dedup_key(RULE, state["session_id"])
    lost = state["lost"]
    fingerprint = json.dumps(sorted(lost.items()))
    track, status = transition(state["track"], key=key, active=active, severity="warning", ts=event["ts"],
                               event_id=event["event_id"], cooldown_ms=limits.alert_cooldown_ms,
                               fingerprint=fingerprint)
    state["track"] = track
    if status is None:
        return Result(state)
    skus = ", ".join(f"{sku} x{qty}" for sku, qty in sorted(lost.items())) or "unknown items"
    page = state["lost_page"]
    who = state["customer_id"] or "an anonymous visitor"
    if status == "resolved":
        title = f"Cart of session {state['session_id']} recovered ({resolution})"
        summary = f"The cart {who} lost after {page} is no longer a problem: {resolution.replace('_', ' ')}."
    else:
        lost_count = state.get("lost_count", 0)
        title = f"Cart emptied after {page}: {counted(lost_count, 'item')} lost"
        summary = (f"{who} had {skus} in the cart; a cart view after visiting {page} showed "
                   f"{counted(lost_count, 'fewer item')}. Reach out with the items so the sale is not lost.")
    details = {"lost_skus": ",".join(sorted(lost)), "lost_items_json": json.dumps(lost, sort_keys=True),
               "last_page": page, "last_pages": " > ".join(state.get("lost_pages") or [page]),
               "items_lost": state.get("lost_count", 0), "resolution": resolution}
    alert = alert_for(track, status, rule=RULE, audience="cs", key=key, title=title, summary=summary,
                      details=details, event_ts=event["ts"], detected_at=detected_at,
                      customer_id=state["customer_id"], session_id=state["session_id"], page=page,
                      sku=next(iter(lost)) if len(lost) == 1 else None)
    return Result(state, alerts=[alert])
