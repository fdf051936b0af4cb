"""An outreach case as a rep reads it (`forewarn task show`), and as structured JSON.

A case (``forewarn.OutreachTask``) holds the customer in its flat context map
(``customer_name``, ``customer_phone``, ...) and each problem with its own
details, some of which are JSON held in a string on the topic (the order's
short lines with their alternatives, every earlier ticket, the items a cart
lost). ``structured`` turns that into nested data a program can use without
parsing strings twice; ``render`` prints it for a person: the case's action
first, then the customer, then each problem with its own action, the lines and
alternatives, the earlier tickets, the cart, and the rest of its evidence.

A task written before cases existed (version 1 of the record: one alert, no
problem list) reads as a case with one problem made from its context.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from streams.words import counted

__all__ = ["render", "structured"]

# Details that hold JSON in a string, and the name their parsed form gets.
_JSON_ENTRIES = {"lines_json": "order_lines", "history_json": "earlier_tickets", "lost_items_json": "cart_lost_items"}
_CUSTOMER = ("name", "tier", "lifetime_value", "phone", "email", "preferred_channel", "language")
_PROBLEM_FIELDS = ("alert_id", "rule", "status", "severity", "title", "summary", "action", "queue", "priority",
                   "due_by", "order_id", "ticket_id", "sku", "resolution", "added_at", "updated_at")


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _parsed(text: str):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _problems_of(task: dict) -> list[dict]:
    """The case's problems; for a version-1 task, the one problem its context describes."""
    if task.get("problems"):
        return task["problems"]
    context = task.get("context") or {}
    details = {key.removeprefix("alert."): value for key, value in context.items() if key.startswith("alert.")}
    for key in ("session_id", "page", "cart_lost_products"):
        if key in context:
            details[key] = context[key]
    return [{"alert_id": task["alert_id"], "rule": task["rule"], "status": context.get("alert_status", "open"),
             "severity": context.get("alert_severity"), "title": context.get("alert_title"),
             "summary": context.get("alert_summary"), "action": task["action"], "queue": task["queue"],
             "priority": task["priority"], "due_by": task["due_by"], "order_id": context.get("order_id"),
             "ticket_id": context.get("ticket_id"), "sku": context.get("sku"),
             "resolution": context.get("alert_resolution"), "added_at": task["created_at"],
             "updated_at": task["updated_at"], "details": details}]


def _structured_problem(problem: dict) -> dict:
    details = dict(problem.get("details") or {})
    out = {field: problem.get(field) for field in _PROBLEM_FIELDS}
    for entry, name in _JSON_ENTRIES.items():
        if entry in details:
            value = _parsed(details.pop(entry))
            if value is not None:
                out[name] = value
    out["evidence"] = details
    return out


def structured(task: dict) -> dict:
    """The case with its customer and problems as nested data, every JSON-in-a-string parsed."""
    context = task.get("context") or {}
    customer = {field: context[f"customer_{field}"] for field in _CUSTOMER if f"customer_{field}" in context}
    out = {k: v for k, v in task.items() if k not in ("context", "problems")}
    out.setdefault("case_number", 1)
    out.update(customer=customer, problems=[_structured_problem(p) for p in _problems_of(task)])
    return out


def _customer_lines(view: dict) -> list[str]:
    customer = view["customer"]
    name = customer.get("name") or view["customer_id"]
    facts = [f"{customer['tier']} tier" if customer.get("tier") and customer["tier"] != "unknown" else None,
             f"lifetime value {customer['lifetime_value']}" if customer.get("lifetime_value") else None,
             f"speaks {customer['language']}" if customer.get("language") else None,
             f"prefers {customer['preferred_channel']}" if customer.get("preferred_channel") else None]
    return ["Customer",
            f"  {name} ({view['customer_id']})" + "".join(f", {fact}" for fact in facts if fact),
            f"  phone {customer.get('phone') or 'not known'}; e-mail {customer.get('email') or 'not known'}"]


def _problem_lines(number: int, total: int, problem: dict) -> list[str]:
    state = problem["status"] + (f", {problem['resolution'].replace('_', ' ')}" if problem.get("resolution") else "")
    lines = [f"Problem {number} of {total}: {problem['rule']} ({problem.get('severity') or '-'}, {state}; "
             f"{problem.get('priority') or '-'} {problem.get('queue') or '-'}, due {_iso(problem.get('due_by'))})"]
    for text in (problem.get("title"), problem.get("summary")):
        if text:
            lines.append(f"  {text}")
    lines.append(f"  Do: {problem['action']}")
    evidence = problem["evidence"]
    order_lines = problem.get("order_lines") or []
    if order_lines:
        lines.append(f"  Order {problem.get('order_id') or ''}".rstrip() + ": the short lines")
        for line in order_lines:
            lines.append(f"    {line.get('name', line.get('sku'))} ({line.get('sku')}): {line.get('short')} of "
                         f"{counted(int(line.get('ordered', 0)), 'unit')} short, {line.get('available', 0)} in stock")
            for alt in line.get("alternatives") or []:
                lines.append(f"        offer {alt['name']} ({alt['sku']}), {alt['price_cents'] / 100:.2f}, "
                             f"{alt['available']} in stock")
    tickets = problem.get("earlier_tickets") or []
    if tickets:
        lines.append("  Tickets, oldest first")
        for ticket in tickets:
            about = f", order {ticket['order_id']}" if ticket.get("order_id") else ""
            state = "resolved" if ticket.get("resolved") else "open"
            lines.append(f"    {ticket['ticket_id']} ({ticket.get('channel')}, {ticket.get('opened_at')}{about}, "
                         f"{state}): {ticket.get('text') or ticket.get('category') or '(no text)'}")
    lost = problem.get("cart_lost_items") or {}
    if lost:
        pages = evidence.get("last_pages") or evidence.get("last_page") or "a page"
        lines.append(f"  Cart lost after {pages}")
        named = evidence.get("cart_lost_products")
        for item in named.split(", ") if named else [f"{sku} x{qty}" for sku, qty in sorted(lost.items())]:
            lines.append(f"    {item}")
    shown = {"last_page", "last_pages", "cart_lost_products", "lost_skus", "resolution"}
    rest = {k: v for k, v in evidence.items() if k not in shown and not k.startswith("short.")}
    for field in ("order_id", "ticket_id", "sku"):
        if problem.get(field) and not (field == "order_id" and order_lines):
            rest.setdefault(field, problem[field])
    if rest:
        lines.append("  Evidence")
        for key, value in sorted(rest.items()):
            lines.append(f"    {key}: {value}")
    return lines


def render(task: dict, now_ms: int) -> str:
    view = structured(task)
    problems = view["problems"]
    holder = f" by {view['assignee']}" if view.get("assignee") else ""
    overdue = view["status"] in ("open", "claimed") and view["due_by"] < now_ms
    still = sum(p["status"] == "open" for p in problems)
    lines = [f"{view['task_id']}  case {view['case_number']}  {view['priority']} {view['queue']}  "
             f"{view['status']}{holder}  due {_iso(view['due_by'])}{'  OVERDUE' if overdue else ''}",
             f"  {view['action']}"]
    if problems and not still and view["status"] in ("open", "claimed"):
        said = ", ".join(dict.fromkeys((p.get("resolution") or "resolved").replace("_", " ") for p in problems))
        lines.append(f"  The problem has gone away ({said}): confirm with the customer that all is well, "
                     f"then mark the task done.")
    lines.append(f"  {counted(len(problems), 'problem')}, {still} open; opened {_iso(view.get('created_at'))}")
    lines.append("")
    lines.extend(_customer_lines(view))
    for number, problem in enumerate(problems, 1):
        lines.append("")
        lines.extend(_problem_lines(number, len(problems), problem))
    return "\n".join(lines)
