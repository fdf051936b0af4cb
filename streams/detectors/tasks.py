"""Outreach cases: which alerts need a person, how urgent, which queue, and one case per customer.

A customer with several problems at once (a late reply, a failed payment and
unhappy feedback about one order) must hear from one person who knows all of
them, not from three reps of three teams who each ask them to explain again.
So every problem of one customer goes to one case, keyed by the customer's
case id (``case_id_for``), and the task stage keeps one state per customer:

* the first problem (an open alert about the customer) opens a case; later
  problems join it, each listed with its own alert, evidence and action;
* the case's priority, queue, due time and action follow its most urgent open
  problem (swarming: a P1 case goes to ``swarm``), and the action names the
  others, to be handled in the same contact; once a rep has claimed the case,
  new problems join it with that rep;
* a problem whose alert resolves is marked resolved on the case. An unclaimed
  case whose problems have all resolved is cancelled (it went away before
  anyone acted); on a claimed case the problem's action becomes "confirm with
  the customer", and the rep finishes the case;
* rep actions from ``task-updates`` move it: ``claim`` (open -> claimed),
  ``release`` (claimed -> open, by its assignee), ``done`` (claimed -> done,
  by its assignee). Anything else is rejected with a reason, never dropped;
* a done or cancelled case is closed: the customer's next problem opens the
  next case (``case_number`` + 1) under the same task id; updates to the
  problems of a closed case do not reopen it.

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


def case_id_for(customer_id: str) -> str:
    """The task id of every case of this customer (so task requests and rep actions share one key)."""
    return "T-" + uuid.uuid5(_TASK_NAMESPACE, "customer:" + customer_id).hex[:12]


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


CLOSED = ("done", "cancelled")
# How a problem that went away while a rep had the case ends its action: the rep confirms with the customer.
CONFIRMED = "that all is well."
# Alert ids of a customer's closed cases kept in the stage's state, so a late version of one of their
# alerts does not reopen what a rep finished.
_CLOSED_ALERTS_KEPT = 50
# Alert fields a rep reads about a problem, kept with its details (the context's plain keys in version 1).
_ALERT_KEYS = ("session_id", "page")


def products(items: dict[str, int], catalog: dict | None) -> str:
    """`Ethiopia Yirgacheffe 1kg (ETH-1KG) x2, ...` for {sku: qty}: the names a rep can say to a customer."""
    named = []
    for sku, qty in sorted(items.items()):
        name = ((catalog or {}).get(sku) or {}).get("name")
        named.append(f"{name} ({sku}) x{qty}" if name else f"{sku} x{qty}")
    return ", ".join(named)


def _who(customer: dict, customer_id: str) -> str:
    return customer.get("name") or customer_id


def problem_for(alert: dict, customer: dict, catalog: dict | None, added_at: int) -> dict:
    """One problem of a case from the latest version of its (open or updated) alert.

    `catalog` (SKU -> catalog item) names the products of a lost cart.
    """
    queue, action, minutes_left = TASK_RULES[alert["rule"]]
    details = alert.get("details") or {}
    due_by = int(details["due_by_ms"]) if details.get("due_by_ms") else added_at + minutes_left * MINUTE_MS
    priority = priority_for(alert["severity"], customer.get("tier"), int(customer.get("lifetime_value_cents") or 0),
                            due_by - alert["event_ts"])
    lost = _json_dict(details.get("lost_items_json"))
    words = {"who": _who(customer, alert["customer_id"]), "order": alert.get("order_id") or "-",
             "ticket": alert.get("ticket_id") or "-",
             "skus": products(lost, catalog) if lost else details.get("lost_skus") or alert.get("sku") or "items",
             "tickets": details.get("tickets", "2"),
             "feedback": details.get("feedback_type", "feedback").replace("_", " "), "score": details.get("score", "")}
    kept = {key: str(value) for key, value in details.items() if key != "due_by_ms"}
    kept.update({key: alert[key] for key in _ALERT_KEYS if alert.get(key)})
    if lost:
        kept["cart_lost_products"] = products(lost, catalog)
    return {"alert_id": alert["alert_id"], "rule": alert["rule"], "status": "open", "severity": alert["severity"],
            "title": alert["title"], "summary": alert["summary"], "action": action.format(**words), "queue": queue,
            "priority": priority, "due_by": due_by, "order_id": alert.get("order_id"),
            "ticket_id": alert.get("ticket_id"), "sku": alert.get("sku"), "resolution": None, "added_at": added_at,
            "updated_at": alert["event_ts"], "details": kept}


def _resolved(problem: dict, alert: dict, claimed: bool, who: str) -> dict:
    """The problem once its alert resolved: what is left to do depends on whether a rep has the case."""
    resolution = (alert.get("details") or {}).get("resolution") or "resolved"
    said = resolution.replace("_", " ")
    action = (f"It went away ({said}): confirm with {who} {CONFIRMED}" if claimed
              else f"It went away ({said}) before anyone contacted {who}: no need to raise it.")
    return dict(problem, status="resolved", resolution=resolution, action=action,
                updated_at=max(problem["updated_at"], alert["event_ts"]))


def _urgency(problem: dict) -> tuple:
    return PRIORITIES.index(problem["priority"]), problem["due_by"], problem["added_at"]


def _case_action(problems: list[dict], lead: dict, claimed: bool, who: str) -> str:
    """The most urgent open problem's action, then the others' to handle in the same contact."""
    still = [p for p in problems if p["status"] == "open"]
    if not still:
        said = ", ".join(dict.fromkeys((p["resolution"] or "resolved").replace("_", " ") for p in problems))
        gone = "The problem went away" if len(problems) == 1 else "Every problem went away"
        return f"{gone} ({said}): confirm with {who} that all is well, then mark the task done."
    action = lead["action"]
    others = [p for p in sorted(still, key=_urgency) if p is not lead]
    if others:
        noun = "problem" if len(others) == 1 else "problems"
        action += f" In the same contact, {len(others)} more {noun}: " + " ".join(p["action"] for p in others)
    gone = [p for p in problems if p["status"] == "resolved" and p["action"].endswith(CONFIRMED)]
    if claimed and gone:
        rules = ", ".join(p["rule"] for p in gone)
        action += f" Went away since you took the case ({rules}): confirm with {who} that all is well."
    return action


def _context(lead: dict, customer: dict, who: str) -> dict[str, str]:
    """Version 1's flat context: the customer, and the most urgent problem's alert and details."""
    context = {(key if key in _ALERT_KEYS or key == "cart_lost_products" else f"alert.{key}"): value
               for key, value in lead["details"].items()}
    context.update({"alert_title": lead["title"], "alert_summary": lead["summary"],
                    "alert_severity": lead["severity"], "alert_status": lead["status"],
                    "customer_name": who, "customer_tier": customer.get("tier") or "unknown",
                    "customer_lifetime_value": f"{int(customer.get('lifetime_value_cents') or 0) / 100:.2f}"})
    if lead["resolution"]:
        context["alert_resolution"] = lead["resolution"]
    for field in ("phone", "email", "preferred_channel", "language"):
        if customer.get(field):
            context[f"customer_{field}"] = customer[field]
    for field in ("order_id", "ticket_id", "sku"):
        if lead.get(field):
            context[field] = lead[field]
    return context


def _shaped(case: dict, problems: list[dict], customer: dict) -> dict:
    """The case's priority, queue, due time, action and context from its problems."""
    who = _who(customer, case["customer_id"])
    still = [p for p in problems if p["status"] == "open"]
    lead = min(still or problems, key=_urgency)
    return dict(case, alert_id=lead["alert_id"], rule=lead["rule"], priority=lead["priority"],
                queue="swarm" if lead["priority"] == "P1" else lead["queue"],
                due_by=min(p["due_by"] for p in still) if still else lead["due_by"],
                action=_case_action(problems, lead, case["status"] == "claimed", who),
                context=_context(lead, customer, who), problems=problems)


def _json_dict(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _closing(state: dict) -> None:
    """Remember the closed case's alerts, so a late version of one of them opens no new case."""
    ids = [p["alert_id"] for p in state["task"].get("problems") or []] or [state["task"]["alert_id"]]
    state["closed_alerts"] = (state.get("closed_alerts", []) + ids)[-_CLOSED_ALERTS_KEPT:]


def apply_alert(state: dict | None, alert: dict, customer: dict,
                catalog: dict | None = None) -> tuple[dict | None, dict | None]:
    """A new version of an alert about the customer: (new state, case version to publish or None)."""
    case = state["task"] if state else None
    if case is None or case["status"] in CLOSED:
        if alert["status"] == "resolved" or alert["alert_id"] in (state or {}).get("closed_alerts", ()):
            return state, None  # gone before a case existed, or part of a case already closed
        opened = {"task_id": case_id_for(alert["customer_id"]), "customer_id": alert["customer_id"],
                  "case_number": (case.get("case_number") or 1) + 1 if case else 1, "status": "open",
                  "assignee": None, "created_at": alert["event_ts"],
                  # Never older than the closed case's last version: readers keep the latest per task id.
                  "updated_at": max(alert["event_ts"], case["updated_at"] if case else alert["event_ts"])}
        opened = _shaped(opened, [problem_for(alert, customer, catalog, alert["event_ts"])], customer)
        state = {"actions": [], "closed_alerts": [], **(state or {}), "task": opened}
        return state, opened
    problems = list(case.get("problems") or [])
    at = next((i for i, p in enumerate(problems) if p["alert_id"] == alert["alert_id"]), None)
    if alert["status"] == "resolved":
        if at is None or problems[at]["status"] == "resolved":
            return state, None
        problems[at] = _resolved(problems[at], alert, case["status"] == "claimed",
                                 _who(customer, case["customer_id"]))
    elif at is None:
        problems.append(problem_for(alert, customer, catalog, alert["event_ts"]))
    elif problems[at]["status"] == "resolved":
        return state, None
    else:
        problems[at] = problem_for(alert, customer, catalog, problems[at]["added_at"])
    changed = _shaped(dict(case, updated_at=max(case["updated_at"], alert["event_ts"])), problems, customer)
    if changed["status"] == "open" and all(p["status"] == "resolved" for p in problems):
        changed["status"] = "cancelled"  # every problem went away before anyone acted
    if changed == case:
        return state, None
    state["task"] = changed
    if changed["status"] in CLOSED:
        _closing(state)
    return state, changed


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
    if task["status"] in CLOSED:
        _closing(state)
    return state, task, None


def describe(task: dict) -> str:
    return (f"{task['priority']} {task['queue']} {task['status']} due {iso(task['due_by'])} "
            f"{task['rule']} {task['customer_id']}: {task['action']}")


def request_record(alert: dict) -> dict:
    """The forewarn.internal.Signal asking the task stage to act on this alert version (keyed by the case)."""
    task_id = case_id_for(alert["customer_id"])
    return {"event_id": alert["alert_id"] + ":" + alert["status"] + ":" + str(alert["event_ts"]),
            "ts": alert["event_ts"], "kind": "alert", "key": task_id, "data": {"alert": json.dumps(alert)}}
