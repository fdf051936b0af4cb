"""Outreach tasks: which alerts need a person, how urgent, which queue, and the task's state machine.

``task_request(alert)`` turns an alert about a customer into a request for the
task stage, keyed by the task's id (one task per alert episode). The task
stage keeps one state per task:

* a request for an open or updated alert creates the task (``open``) or
  refreshes its priority and context while nobody has finished it;
* a request for a resolved alert cancels the task if nobody has claimed it
  yet (the problem went away before anyone acted); a claimed task stays with
  its rep, whose action becomes "confirm with the customer" (the context says
  the alert resolved, and how);
* rep actions from ``task-updates`` move it: ``claim`` (open -> claimed),
  ``release`` (claimed -> open, by its assignee), ``done`` (claimed -> done,
  by its assignee). Anything else is rejected with a reason, never dropped.

Priority is swarming, not tiers: it adds up the alert's severity, the
customer's tier and lifetime value, and how close the deadline is; the
highest (P1) goes straight to the ``swarm`` queue of the most experienced
people, the rest to the queue of the team that can fix the cause.
"""

from __future__ import annotations

import json
import uuid

from streams.detectors.lifecycle import iso

QUEUES = ("fulfillment", "support-leads", "swarm", "customer-success", "billing", "it")
PRIORITIES = ("P1", "P2", "P3", "P4")
_TASK_NAMESPACE = uuid.UUID("0b8f4c52-6f7e-4a43-9d2b-3c1e5a7d9f10")
MINUTE_MS = 60_000

# Rules whose alerts become outreach tasks: queue of the team that fixes the cause, the action in a
# sentence, and how long the rep has when the alert gives no deadline of its own.
TASK_RULES: dict[str, tuple[str, str, int]] = {
    "out_of_stock_open_order": ("fulfillment", "Call {who} about order {order}: say which items are short and "
                                "offer the in-stock alternatives listed, or a partial shipment.", 4 * 60),
    "late_shipment": ("fulfillment", "Tell {who} that order {order} is late, with a new ship date, before they "
                      "have to ask.", 2 * 60),
    "cart_lost": ("customer-success", "Contact {who}: their cart lost {skus} on our site; send a link that "
                  "restores the cart.", 60),
    "order_not_visible": ("it", "Confirm order {order} to {who} (it exists, it is not shown in their account) "
                          "and get the account view fixed.", 2 * 60),
    "support_sla_risk": ("customer-success", "Reply to ticket {ticket} from {who} now, before its reply target "
                         "passes.", 15),
    "support_sla_breach": ("support-leads", "Ticket {ticket} from {who} missed its reply target: reply, "
                           "apologise and own it to the end.", 30),
    "repeat_contact": ("support-leads", "{who} has contacted us {tickets} times: take the case with its whole "
                       "history (in the context) and solve it in one go; do not ask them to explain again.", 2 * 60),
    "negative_feedback": ("customer-success", "Call {who} about their {feedback} ({score}): listen, fix what "
                          "went wrong, follow up.", 24 * 60),
    "payment_failed": ("billing", "Help {who} complete payment for order {order}: the payment failed and was "
                       "not retried.", 2 * 60),
}


def task_id_for(alert_id: str) -> str:
    return "T-" + uuid.uuid5(_TASK_NAMESPACE, alert_id).hex[:12]


def needs_task(alert: dict) -> bool:
    return alert["rule"] in TASK_RULES and bool(alert.get("customer_id"))


def priority_for(severity: str, tier: str | None, lifetime_value_cents: int, due_in_ms: int) -> str:
    """P1..P4 from severity, the customer's tier and value, and the time left."""
    score = {"info": 0, "warning": 1, "critical": 3}.get(severity, 1)
    score += {"platinum": 2, "gold": 1}.get(tier or "", 0)
    score += 1 if lifetime_value_cents >= 200_000 else 0
    score += 2 if due_in_ms <= 30 * MINUTE_MS else 1 if due_in_ms <= 2 * 60 * MINUTE_MS else 0
    if score >= 6:
        return "P1"
    if score >= 4:
        return "P2"
    if score >= 2:
        return "P3"
    return "P4"


def new_task(alert: dict, customer: dict, catalog: dict | None = None) -> dict:
    """The first version of the task for `alert` (status open)."""
    task = {"task_id": task_id_for(alert["alert_id"]), "alert_id": alert["alert_id"], "rule": alert["rule"],
            "customer_id": alert["customer_id"], "status": "open", "assignee": None,
            "created_at": alert["event_ts"], "updated_at": alert["event_ts"]}
    return refresh(task, alert, customer, catalog)


def products(items: dict[str, int], catalog: dict | None) -> str:
    """`Ethiopia Yirgacheffe 1kg (ETH-1KG) x2, ...` for {sku: qty}: the names a rep can say to a customer."""
    named = []
    for sku, qty in sorted(items.items()):
        name = ((catalog or {}).get(sku) or {}).get("name")
        named.append(f"{name} ({sku}) x{qty}" if name else f"{sku} x{qty}")
    return ", ".join(named)


def refresh(task: dict, alert: dict, customer: dict, catalog: dict | None = None) -> dict:
    """Priority, queue, action, due time and context from the latest alert version.

    `catalog` (SKU -> catalog item) names the products of a lost cart.
    """
    queue, action, minutes_left = TASK_RULES[alert["rule"]]
    details = alert.get("details") or {}
    due_by = int(details["due_by_ms"]) if details.get("due_by_ms") else task["created_at"] + minutes_left * MINUTE_MS
    priority = priority_for(alert["severity"], customer.get("tier"), int(customer.get("lifetime_value_cents") or 0),
                            due_by - alert["event_ts"])
    who = customer.get("name") or alert["customer_id"]
    lost = _json_dict(details.get("lost_items_json"))
    words = {"who": who, "order": alert.get("order_id") or "-", "ticket": alert.get("ticket_id") or "-",
             "skus": products(lost, catalog) if lost else details.get("lost_skus") or alert.get("sku") or "items", "tickets": details.get("tickets", "2"),
             "feedback": details.get("feedback_type", "feedback").replace("_", " "), "score": details.get("score", "")}
    context = {f"alert.{k}": v for k, v in details.items() if k != "due_by_ms"}
    context.update({"alert_title": alert["title"], "alert_summary": alert["summary"],
                    "alert_severity": alert["severity"], "alert_status": alert["status"],
                    "customer_name": who, "customer_tier": customer.get("tier") or "unknown",
                    "customer_lifetime_value": f"{int(customer.get('lifetime_value_cents') or 0) / 100:.2f}"})
    for field in ("phone", "email", "preferred_channel", "language"):
        if customer.get(field):
            context[f"customer_{field}"] = customer[field]
    for field in ("order_id", "ticket_id", "sku", "session_id", "page"):
        if alert.get(field):
            context[field] = alert[field]
    if lost:
        context["cart_lost_products"] = products(lost, catalog)
    return dict(task, priority=priority, queue="swarm" if priority == "P1" else queue,
                action=action.format(**words), due_by=due_by, context=context)


def _json_dict(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def apply_alert(state: dict | None, alert: dict, customer: dict,
                catalog: dict | None = None) -> tuple[dict | None, dict | None]:
    """A new version of the alert behind a task: (new state, task version to publish or None)."""
    if state is None:
        if alert["status"] == "resolved":
            return None, None  # resolved before a task existed: nothing to do
        task = new_task(alert, customer, catalog)
        return {"task": task, "actions": []}, task
    task = state["task"]
    if task["status"] in ("done", "cancelled"):
        return state, None
    updated_at = max(task["updated_at"], alert["event_ts"])
    if alert["status"] == "resolved":
        if task["status"] == "open":
            task = dict(task, status="cancelled", updated_at=updated_at)
        else:
            # The rep keeps the customer, but the problem is gone: the action no longer asks them to
            # report it, only to confirm all is well.
            resolution = (alert.get("details") or {}).get("resolution", "resolved")
            context = dict(task["context"], alert_status="resolved", alert_resolution=resolution)
            who = context.get("customer_name") or task["customer_id"]
            action = (f"The problem went away ({resolution.replace('_', ' ')}): confirm with {who} that all is "
                      f"well, then mark the task done.")
            task = dict(task, context=context, action=action, updated_at=updated_at)
    else:
        task = dict(refresh(task, alert, customer, catalog), updated_at=updated_at)
    if task == state["task"]:
        return state, None
    state["task"] = task
    return state, task


def apply_update(state: dict | None, update: dict, *, now_ms: int) -> tuple[dict | None, dict | None, dict | None]:
    """A rep's action: (new state, task version to publish, rejection to publish); one of the two is set."""
    action, who, task_id = update["action"], update["assignee"], update["task_id"]

    def reject(reason: str, message: str, status: str | None) -> tuple[dict | None, None, dict]:
        return state, None, {"event_id": update["event_id"], "ts": update["ts"], "task_id": task_id,
                             "action": action, "assignee": who, "reason": reason, "message": message,
                             "task_status": status, "rejected_at": now_ms}

    if state is None:
        return reject("unknown_task", f"no task {task_id}", None)
    if update["event_id"] in state["actions"]:
        return state, None, None  # redelivered: already applied
    task = state["task"]
    status, holder = task["status"], task.get("assignee")
    if action == "claim":
        if status != "open":
            held = f" by {holder}" if holder and status == "claimed" else ""
            return reject("illegal_transition", f"cannot claim a {status} task{held}", status)
        task = dict(task, status="claimed", assignee=who)
    elif action in ("done", "release"):
        if status != "claimed":
            return reject("illegal_transition", f"cannot {action} a {status} task; claim it first" if status == "open"
                          else f"cannot {action} a {status} task", status)
        if holder != who:
            return reject("not_assignee", f"{task_id} is claimed by {holder}, not {who}", status)
        task = dict(task, status="done", assignee=who) if action == "done" else dict(task, status="open", assignee=None)
    else:
        return reject("illegal_transition", f"unknown action {action!r}", status)
    task["updated_at"] = max(task["updated_at"], update["ts"])
    state["task"] = task
    state["actions"] = (state["actions"] + [update["event_id"]])[-20:]
    return state, task, None


def describe(task: dict) -> str:
    return (f"{task['priority']} {task['queue']} {task['status']} due {iso(task['due_by'])} "
            f"{task['rule']} {task['customer_id']}: {task['action']}")


def request_record(alert: dict) -> dict:
    """The forewarn.internal.Signal asking the task stage to act on this alert version."""
    task_id = task_id_for(alert["alert_id"])
    return {"event_id": alert["alert_id"] + ":" + alert["status"] + ":" + str(alert["event_ts"]),
            "ts": alert["event_ts"], "kind": "alert", "key": task_id, "data": {"alert": json.dumps(alert)}}
