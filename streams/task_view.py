"""An outreach task as a rep reads it (`forewarn task show`), and as structured JSON.

A task's context is a flat map of strings on the topic (``forewarn.OutreachTask``):
the customer's details, the alert's title, summary and status, and the alert's
details under ``alert.<name>``, some of which are JSON held in a string (the
order's short lines with their alternatives, every earlier ticket, the items a
cart lost). ``structured`` turns that into nested data a program can use
without parsing strings twice; ``render`` prints it for a person: the action
first, then the customer, the problem, the lines and alternatives, the earlier
tickets, the cart, and the rest of the evidence.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

__all__ = ["render", "structured"]

# Context entries that hold JSON in a string, and the name their parsed form gets.
_JSON_ENTRIES = {"alert.lines_json": "order_lines", "alert.history_json": "earlier_tickets",
                 "alert.lost_items_json": "cart_lost_items"}
_CUSTOMER = ("name", "tier", "lifetime_value", "phone", "email", "preferred_channel", "language")


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _parsed(text: str):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def structured(task: dict) -> dict:
    """The task with its context as nested data: customer, alert, evidence, and the parsed lists."""
    context = dict(task.get("context") or {})
    customer = {field: context.pop(f"customer_{field}") for field in _CUSTOMER if f"customer_{field}" in context}
    alert = {field: context.pop(f"alert_{field}") for field in ("title", "summary", "severity", "status", "resolution")
             if f"alert_{field}" in context}
    lists = {}
    for entry, name in _JSON_ENTRIES.items():
        if entry in context:
            value = _parsed(context.pop(entry))
            if value is not None:
                lists[name] = value
    evidence = {key.removeprefix("alert."): value for key, value in context.items()}
    out = {k: v for k, v in task.items() if k != "context"}
    out.update(customer=customer, alert=alert, evidence=evidence, **lists)
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render(task: dict, now_ms: int) -> str:
    view = structured(task)
    lines = []
    holder = f" by {view['assignee']}" if view.get("assignee") else ""
    overdue = view["status"] in ("open", "claimed") and view["due_by"] < now_ms
    lines.append(f"{view['task_id']}  {view['priority']} {view['queue']}  {view['status']}{holder}  "
                 f"due {_iso(view['due_by'])}{'  OVERDUE' if overdue else ''}")
    lines.append(f"  {view['action']}")
    alert = view["alert"]
    if alert.get("status") == "resolved":
        lines.append(f"  The problem has gone away ({alert.get('resolution', 'resolved').replace('_', ' ')}): "
                     f"confirm with the customer that all is well, then mark the task done.")

    customer = view["customer"]
    lines.append("")
    lines.append("Customer")
    name = customer.get("name") or view["customer_id"]
    facts = [f"{customer['tier']} tier" if customer.get("tier") else None,
             f"lifetime value {customer['lifetime_value']}" if customer.get("lifetime_value") else None,
             f"speaks {customer['language']}" if customer.get("language") else None,
             f"prefers {customer['preferred_channel']}" if customer.get("preferred_channel") else None]
    lines.append(f"  {name} ({view['customer_id']})" + "".join(f", {f}" for f in facts if f))
    lines.append(f"  phone {customer.get('phone') or 'not known'}; e-mail {customer.get('email') or 'not known'}")

    lines.append("")
    lines.append(f"Problem: {view['rule']}" + (f" ({alert['severity']}, {alert['status']})" if alert else ""))
    if alert.get("title"):
        lines.append(f"  {alert['title']}")
    if alert.get("summary"):
        lines.append(f"  {alert['summary']}")

    order_lines = view.get("order_lines") or []
    if order_lines:
        lines.append("")
        lines.append(f"Order {view['evidence'].get('order_id', '')}".rstrip() + ": the short lines")
        for line in order_lines:
            lines.append(f"  {line.get('name', line.get('sku'))} ({line.get('sku')}): {line.get('short')} of "
                         f"{_plural(int(line.get('ordered', 0)), 'unit')} short, "
                         f"{line.get('available', 0)} in stock")
            for alt in line.get("alternatives") or []:
                lines.append(f"      offer {alt['name']} ({alt['sku']}), {alt['price_cents'] / 100:.2f}, "
                             f"{alt['available']} in stock")
    tickets = view.get("earlier_tickets") or []
    if tickets:
        lines.append("")
        lines.append("Tickets, oldest first")
        for ticket in tickets:
            about = f", order {ticket['order_id']}" if ticket.get("order_id") else ""
            state = "resolved" if ticket.get("resolved") else "open"
            lines.append(f"  {ticket['ticket_id']} ({ticket.get('channel')}, {ticket.get('opened_at')}{about}, "
                         f"{state}): {ticket.get('text') or ticket.get('category') or '(no text)'}")
    lost = view.get("cart_lost_items") or {}
    if lost:
        lines.append("")
        lines.append(f"Cart lost after {view['evidence'].get('last_page', 'a page')}")
        named = view["evidence"].get("cart_lost_products")
        for item in named.split(", ") if named else [f"{sku} x{qty}" for sku, qty in sorted(lost.items())]:
            lines.append(f"  {item}")
    shown = {"order_id", "last_page", "customer_name", "customer_tier", "cart_lost_products", "lost_skus"}
    evidence = {k: v for k, v in view["evidence"].items() if k not in shown and not k.startswith("short.")}
    if evidence:
        lines.append("")
        lines.append("Evidence")
        for key, value in sorted(evidence.items()):
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
