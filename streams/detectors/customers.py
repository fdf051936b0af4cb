"""Per customer: ``repeat_contact`` and ``negative_feedback``, one history across every channel.

The customer stage keeps each customer's recent tickets (from the ticket
stage's ``ticket_opened`` / ``ticket_resolved`` signals) and latest orders
(``order_placed`` from the order stage), and reads the ``feedback`` topic,
which is keyed by customer too.

* ``repeat_contact``: a second ticket within the window (72 h) on any channel.
  Critical when it is about the same order as an earlier one or comes on a
  different channel (the customer is chasing). The alert carries every
  earlier ticket so nobody asks the customer to explain again; it resolves
  when all of the episode's tickets are resolved.
* ``negative_feedback``: a low csat, nps or review score, or a social mention
  with a negative score; one alert per feedback event, linked to the
  customer's most recent order and ticket.
"""

from __future__ import annotations

import json

from streams.detectors.alerts import dedup_key
from streams.detectors.lifecycle import Result, alert_for, iso, minutes, transition
from streams.thresholds import Thresholds
from streams.words import counted

REPEAT_RULE = "repeat_contact"
FEEDBACK_RULE = "negative_feedback"
MAX_ORDERS = 5
MAX_TICKETS = 12
MAX_FEEDBACK = 10
FEEDBACK_KEPT_MS = 7 * 24 * 3_600_000


def new_customer(customer_id: str | None) -> dict:
    return {"customer_id": customer_id, "tickets": [], "orders": [], "track": None, "feedback_seen": []}


def apply_customer_signal(state: dict | None, sig: dict, limits: Thresholds, customers: dict, *,
                          detected_at: int) -> Result:
    state = state or new_customer(sig["key"])
    data, ts = sig["data"], sig["ts"]
    if sig["kind"] == "order_placed":
        if all(order[1] != data["order_id"] for order in state["orders"]):
            state["orders"] = sorted(state["orders"] + [[ts, data["order_id"]]])[-MAX_ORDERS:]
        return Result(state, alerts=_relink_feedback(state, customers, detected_at))
    ticket_id = data.get("ticket_id", "")
    known = next((t for t in state["tickets"] if t["ticket_id"] == ticket_id), None)
    if sig["kind"] == "ticket_resolved":
        if known is None:
            # Read before its ticket_opened: remember the resolution so the opening finds it.
            state["tickets"].append({"ticket_id": ticket_id, "ts": None, "resolved_ts": ts, "event_id": None})
        else:
            known["resolved_ts"] = ts
        return _repeat(state, ts, limits, customers, detected_at, sig["event_id"])
    if sig["kind"] != "ticket_opened" or (known is not None and known.get("ts") is not None):
        return Result(state)
    ticket = known if known is not None else {"ticket_id": ticket_id, "resolved_ts": None}
    ticket.update(ts=ts, event_id=sig["event_id"], channel=data.get("channel"), order_id=data.get("order_id"),
                  category=data.get("category"), text=data.get("text", "")[:120])
    if known is None:
        state["tickets"].append(ticket)
    horizon = ts - 2 * limits.repeat_contact_window_ms
    state["tickets"] = sorted((t for t in state["tickets"] if t["ts"] is None or t["ts"] >= horizon),
                              key=lambda t: (t["ts"] is None, t["ts"] or 0))[-MAX_TICKETS:]
    result = _repeat(state, ts, limits, customers, detected_at, sig["event_id"])
    result.alerts += _relink_feedback(state, customers, detected_at)
    return result


def _episode(state: dict, limits: Thresholds) -> list[dict]:
    """The latest ticket and every ticket opened within the window before it, oldest first."""
    opened = [t for t in state["tickets"] if t["ts"] is not None]
    if not opened:
        return []
    latest = opened[-1]
    chain = [latest]
    for ticket in reversed(opened[:-1]):
        if chain[0]["ts"] - ticket["ts"] <= limits.repeat_contact_window_ms:
            chain.insert(0, ticket)
        else:
            break
    return chain


def _repeat(state: dict, ts: int, limits: Thresholds, customers: dict, detected_at: int, cause: str) -> Result:
    chain = _episode(state, limits)
    track = state["track"]
    repeated = len(chain) >= 2
    unresolved = [t for t in chain if t.get("resolved_ts") is None]
    active = repeated and bool(unresolved)
    if not repeated and not (track and track.get("open")):
        return Result(state)
    latest = chain[-1] if chain else None
    earlier = chain[:-1]
    same_order = bool(latest and latest.get("order_id")
                      and any(t.get("order_id") == latest["order_id"] for t in earlier))
    other_channel = bool(latest and any(t.get("channel") != latest.get("channel") for t in earlier))
    severity = "critical" if same_order or other_channel or len(chain) >= 3 else "warning"
    key = dedup_key(REPEAT_RULE, state["customer_id"])
    track, status = transition(track, key=key, active=active, severity=severity, ts=ts, event_id=cause,
                               cooldown_ms=limits.alert_cooldown_ms, fingerprint=str(len(chain)))
    state["track"] = track
    if status is None:
        return Result(state)
    track["evidence"] = list(dict.fromkeys(track["evidence"] + [t["event_id"] for t in chain if t["event_id"]]))[:50]
    customer = customers.get(state["customer_id"]) or {}
    who = customer.get("name") or state["customer_id"]
    tier = customer.get("tier") or "unknown"
    history = [{"ticket_id": t["ticket_id"], "opened_at": iso(t["ts"]), "channel": t.get("channel"),
                "category": t.get("category"), "order_id": t.get("order_id"), "text": t.get("text", ""),
                "resolved": t.get("resolved_ts") is not None} for t in chain]
    if status == "resolved":
        title = f"{who}'s repeated contacts resolved"
        summary = f"Every ticket of {who}'s repeated contacts is resolved."
    else:
        span = minutes(latest["ts"] - chain[0]["ts"])
        reasons = [r for r, on in (("about the same order", same_order), ("on another channel", other_channel)) if on]
        title = f"{who} contacted support {counted(len(chain), 'time')} in {span}"
        summary = (f"{who} ({tier}) opened {counted(len(chain), 'ticket')} within {span}"
                   + (f", {' and '.join(reasons)}" if reasons else "")
                   + ". One senior person should own this with the whole history below; do not ask the customer "
                     "to explain again. Earlier: "
                   + " | ".join(f"{h['ticket_id']} ({h['channel']}, {h['opened_at']}): {h['text'] or h['category']}"
                                for h in history[:-1]))
    details = {"tickets": len(chain), "history_json": json.dumps(history, ensure_ascii=False),
               "earlier_tickets": ",".join(t["ticket_id"] for t in earlier), "same_order": str(same_order).lower(),
               "other_channel": str(other_channel).lower(), "customer_name": who, "customer_tier": tier}
    return Result(state, alerts=[alert_for(track, status, rule=REPEAT_RULE, audience="cs", key=key, title=title,
                                           summary=summary, details=details, event_ts=ts, detected_at=detected_at,
                                           customer_id=state["customer_id"],
                                           ticket_id=latest["ticket_id"] if latest else None,
                                           order_id=latest.get("order_id") if latest else None)])


def is_negative(event: dict, limits: Thresholds) -> bool:
    score = event.get("score")
    if score is None:
        return False
    limit = {"csat": limits.csat_negative_max, "nps": limits.nps_negative_max,
             "review": limits.review_negative_max, "social_mention": -1}[event["event_type"]]
    return score <= limit


def _links(state: dict, event: dict) -> tuple[str | None, str | None]:
    """The order and ticket a feedback is about: its own, else the customer's latest before it."""
    orders = [o for o in state["orders"] if o[0] <= event["ts"]]
    tickets = [t for t in state["tickets"] if t["ts"] is not None and t["ts"] <= event["ts"]]
    order_id = event.get("order_id") or (orders[-1][1] if orders else None)
    ticket_id = event.get("ticket_id") or (tickets[-1]["ticket_id"] if tickets else None)
    return order_id, ticket_id


def apply_feedback(state: dict | None, event: dict, limits: Thresholds, customers: dict, *,
                   detected_at: int) -> Result:
    state = state or new_customer(event.get("customer_id"))
    if event["event_id"] in state["feedback_seen"] or not is_negative(event, limits):
        return Result(state)
    state["feedback_seen"] = (state["feedback_seen"] + [event["event_id"]])[-20:]
    kind, score = event["event_type"], event["score"]
    key = dedup_key(FEEDBACK_RULE, event["event_id"])
    public = kind in ("social_mention", "review")
    severe = (kind == "csat" and score <= 1) or (kind == "nps" and score <= 3) or (kind == "review" and score <= 1)
    severity = "critical" if public and severe or kind == "social_mention" else "warning"
    order_id, ticket_id = _links(state, event)
    track, status = transition(None, key=key, active=True, severity=severity, ts=event["ts"],
                               event_id=event["event_id"], cooldown_ms=limits.alert_cooldown_ms,
                               fingerprint=f"{order_id}|{ticket_id}")
    entry = {"event": {k: event.get(k) for k in ("event_id", "ts", "event_type", "customer_id", "score", "text",
                                                 "order_id", "ticket_id")}, "track": track}
    # Kept a while: an order or ticket from before the feedback may still be on its way (another partition).
    state["feedback"] = [e for e in state.get("feedback", []) if e["event"]["ts"] > event["ts"] - FEEDBACK_KEPT_MS]
    state["feedback"] = (state["feedback"] + [entry])[-MAX_FEEDBACK:]
    return Result(state, alerts=[_feedback_alert(entry, status, order_id, ticket_id, customers, detected_at)])


def _relink_feedback(state: dict, customers: dict, detected_at: int) -> list[dict]:
    """Feedback whose latest order or ticket before it arrived after the feedback itself: updated."""
    alerts = []
    for entry in state.get("feedback", []):
        order_id, ticket_id = _links(state, entry["event"])
        fingerprint = f"{order_id}|{ticket_id}"
        if fingerprint != entry["track"].get("fingerprint"):
            entry["track"] = dict(entry["track"], fingerprint=fingerprint)
            alerts.append(_feedback_alert(entry, "updated", order_id, ticket_id, customers, detected_at))
    return alerts


def _feedback_alert(entry: dict, status: str, order_id: str | None, ticket_id: str | None, customers: dict,
                    detected_at: int) -> dict:
    event, track = entry["event"], entry["track"]
    kind, score = event["event_type"], event["score"]
    public = kind in ("social_mention", "review")
    customer = customers.get(event.get("customer_id")) or {}
    who = customer.get("name") or event.get("customer_id") or "a customer"
    tier = customer.get("tier") or "unknown"
    scale = {"csat": "1-5", "nps": "0-10", "review": "1-5", "social_mention": "sentiment"}[kind]
    text = (event.get("text") or "")[:300]
    title = f"Unhappy {kind.replace('_', ' ')} from {who} ({score} on {scale})"
    summary = (f"{who} ({tier}) gave {kind.replace('_', ' ')} {score}"
               + (f": \"{text}\"" if text else "")
               + (f". Latest order {order_id}" if order_id else "")
               + (f", latest ticket {ticket_id}" if ticket_id else "")
               + ". Call before it turns into a lost customer" + (" or a public complaint." if not public else "."))
    details = {"feedback_type": kind, "score": score, "text": text or None, "linked_order": order_id,
               "linked_ticket": ticket_id, "public": str(public).lower(), "customer_name": who, "customer_tier": tier}
    return alert_for(track, status, rule=FEEDBACK_RULE, audience="cs", key=dedup_key(FEEDBACK_RULE, event["event_id"]),
                     title=title, summary=summary, details=details, event_ts=event["ts"], detected_at=detected_at,
                     customer_id=event.get("customer_id"), order_id=order_id, ticket_id=ticket_id)
