"""`forewarn task show`: a case made by the task stage, printed as a rep reads it and as structured JSON."""

from __future__ import annotations

import json

from streams.detectors import tasks
from streams.task_view import render, structured

T0 = 1_772_442_900_000  # 2026-03-02T09:15:00Z
PRIYA = {"customer_id": "C-7", "name": "Priya Nair", "tier": "gold", "lifetime_value_cents": 412_000,
         "phone": "+91 98200 12345", "email": "priya@example.com", "preferred_channel": "phone", "language": "hi"}


def out_of_stock_alert(status: str = "open", **details) -> dict:
    lines = [{"sku": "ETH-1KG", "name": "Ethiopia 1kg", "ordered": 2, "short": 2, "available": 0,
              "alternatives": [{"sku": "COL-1KG", "name": "Colombia 1kg", "price_cents": 2100, "available": 52}]}]
    return {"alert_id": "a-1", "rule": "out_of_stock_open_order", "severity": "warning", "status": status,
            "customer_id": "C-7", "order_id": "O-1", "event_ts": T0, "title": "Order O-1: 1 item out of stock",
            "summary": "Priya Nair has an open order O-1 that cannot ship complete.",
            "details": {"lines_json": json.dumps(lines), "short_skus": "ETH-1KG", **details}}


def opened(alert: dict, catalog: dict | None = None) -> dict:
    return tasks.apply_alert(None, alert, PRIYA, catalog)[1]


def test_the_printed_task_has_the_action_the_customer_the_short_lines_and_the_alternatives():
    task = opened(out_of_stock_alert())
    text = render(task, now_ms=T0)
    first, action = text.splitlines()[:2]
    assert first.startswith(f"{task['task_id']}  case 1  ") and " open " in first and "OVERDUE" not in first
    assert action.strip() == task["action"]
    assert "  Priya Nair (C-7), gold tier, lifetime value 4120.00, speaks hi, prefers phone" in text
    assert "  phone +91 98200 12345; e-mail priya@example.com" in text
    assert "Problem 1 of 1: out_of_stock_open_order (warning, open; " in text
    assert "    Ethiopia 1kg (ETH-1KG): 2 of 2 units short, 0 in stock" in text
    assert "        offer Colombia 1kg (COL-1KG), 21.00, 52 in stock" in text
    assert "OVERDUE" in render(task, now_ms=task["due_by"] + 1)


def test_every_problem_of_the_case_is_printed_with_its_own_action_and_evidence():
    state, _ = tasks.apply_alert(None, out_of_stock_alert(), PRIYA)
    history = [{"ticket_id": "TK-1", "opened_at": "2026-03-02T09:00:00Z", "channel": "chat", "category": "delivery",
                "order_id": "O-1", "text": "Where is my grinder?", "resolved": True}]
    repeat = dict(out_of_stock_alert(), alert_id="a-2", rule="repeat_contact", ticket_id="TK-2", event_ts=T0 + 60_000,
                  title="Priya Nair contacted us 2 times", summary="Second contact in a day.",
                  details={"history_json": json.dumps(history), "tickets": "2"})
    state, case = tasks.apply_alert(state, repeat, PRIYA)
    text = render(case, now_ms=T0)
    assert "  2 problems, 2 open" in text
    assert "Problem 1 of 2: out_of_stock_open_order" in text and "Problem 2 of 2: repeat_contact" in text
    for problem in case["problems"]:
        assert f"  Do: {problem['action']}" in text
    assert "    TK-1 (chat, 2026-03-02T09:00:00Z, order O-1, resolved): Where is my grinder?" in text
    assert "    ticket_id: TK-2" in text
    view = structured(case)
    assert [p["rule"] for p in view["problems"]] == ["out_of_stock_open_order", "repeat_contact"]
    assert view["problems"][1]["earlier_tickets"] == history
    assert view["problems"][0]["order_lines"][0]["alternatives"][0]["sku"] == "COL-1KG"


def test_a_task_written_before_cases_reads_as_a_case_of_one_problem():
    case = opened(out_of_stock_alert())
    old = {key: value for key, value in case.items() if key not in ("case_number", "problems")}
    view = structured(old)
    assert view["case_number"] == 1 and len(view["problems"]) == 1
    assert view["problems"][0]["order_lines"] == structured(case)["problems"][0]["order_lines"]
    assert "Problem 1 of 1: out_of_stock_open_order" in render(old, now_ms=T0)


def test_a_claimed_task_whose_problem_went_away_tells_the_rep_to_confirm_not_to_report_it():
    state, task = tasks.apply_alert(None, out_of_stock_alert(), PRIYA)
    state, _, _ = tasks.apply_update(state, {"event_id": "u1", "ts": T0 + 1, "task_id": task["task_id"],
                                             "action": "claim", "assignee": "asha"}, now_ms=T0 + 1)
    state, task = tasks.apply_alert(state, dict(out_of_stock_alert("resolved", resolution="restocked"),
                                                event_ts=T0 + 2), PRIYA)
    text = render(task, now_ms=T0 + 3)
    assert "claimed by asha" in text
    assert "The problem has gone away (restocked): confirm with the customer" in text
    assert "Problem 1 of 1: out_of_stock_open_order (warning, resolved, restocked; " in text
    assert task["action"] == "The problem went away (restocked): confirm with Priya Nair that all is well, " \
                             "then mark the task done."


def test_the_json_form_holds_structured_fields_not_json_in_strings():
    history = [{"ticket_id": "TK-1", "opened_at": "2026-03-02T09:00:00Z", "channel": "email", "category": None,
                "order_id": "O-1", "text": "मेरा ऑर्डर कहाँ है?", "resolved": False}]
    alert = dict(out_of_stock_alert(), rule="repeat_contact", ticket_id="TK-2",
                 details={"history_json": json.dumps(history, ensure_ascii=False), "tickets": "2"})
    view = structured(opened(alert))
    [problem] = view["problems"]
    assert problem["earlier_tickets"] == history
    assert view["customer"]["phone"] == "+91 98200 12345"
    assert problem["status"] == "open" and problem["rule"] == "repeat_contact"
    assert "context" not in view and not any(k.endswith("_json") for k in problem["evidence"])
    assert json.loads(json.dumps(view)) == view  # plain JSON all the way down
    text = render(opened(alert), now_ms=T0)
    assert "    TK-1 (email, 2026-03-02T09:00:00Z, order O-1, open): मेरा ऑर्डर कहाँ है?" in text


def test_a_lost_cart_shows_the_products_by_name():
    alert = dict(out_of_stock_alert(), rule="cart_lost", order_id=None,
                 details={"lost_skus": "ETH-1KG", "lost_items_json": '{"ETH-1KG": 2}', "last_page": "/shop/filters",
                          "last_pages": "/shop > /shop/grinders > /shop/filters"})
    text = render(opened(alert, {"ETH-1KG": {"name": "Ethiopia 1kg"}}), now_ms=T0)
    assert "  Cart lost after /shop > /shop/grinders > /shop/filters\n    Ethiopia 1kg (ETH-1KG) x2" in text
