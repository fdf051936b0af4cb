"""The live page in a real browser, through the real stack: a rep's day and an operator's watch.

One `forewarn up` against the test broker (workers, the sink into chDB, the
page) and a second `forewarn web` process on the same topics and data
directory. Headless Chromium (tests/integration/browser/conftest.py) opens the
pages; events are produced as a shop would, and the tests wait, with
deadlines, for what the page must show without a reload.

With FOREWARN_TEST_SCREENSHOTS=DIR the pages' screenshots are written there
(the README's come from such a run); otherwise into the test's temporary
directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib import request

import pytest

from tests.integration.browser.conftest import new_browser
from tests.integration.helpers import forewarn_env, run_forewarn, wait_for, write_jsonl

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
HINDI = "मेरा ऑर्डर कहाँ है? दो हफ्ते हो गए।"
BENGALI = "আমার অর্ডার কোথায়? আবার লিখছি।"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def now_iso(offset_s: float = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def get_json(url: str, cookie: str | None = None):
    req = request.Request(url, headers={"Cookie": cookie} if cookie else {})
    with request.urlopen(req, timeout=10) as answer:
        return json.loads(answer.read())


def post(url: str, headers: dict) -> tuple[int, dict]:
    req = request.Request(url, data=b"", headers=headers, method="POST")
    try:
        with request.urlopen(req, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except request.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Stack:
    """`forewarn up` (workers, sink, page) and a second page process, on fresh topics."""

    def __init__(self, bootstrap: str, prefix: str, tmp: Path) -> None:
        self.tmp = tmp
        accounts = tmp / "accounts"
        lines = []
        for name in ("asha", "bilal"):
            made = run_forewarn(["web", "--hash-password", name], forewarn_env(bootstrap, prefix, tmp / "data"),
                                stdin=f"{name}-secret\n")
            assert made.returncode == 0, made.stderr
            lines.append(made.stdout.strip())
        accounts.write_text("# the reps of the test\n" + "\n".join(lines) + "\n")
        self.port, self.second_port = free_port(), free_port()
        # Two short orders for one SKU make its roll-up (20 by default).
        self.env = forewarn_env(bootstrap, prefix, tmp / "data", FOREWARN_WEB_ACCOUNTS=str(accounts),
                                FOREWARN_WEB_ADDR=f"127.0.0.1:{self.port}", FOREWARN_STOCKOUT_ROLLUP_ORDERS="2")
        assert run_forewarn(["topics", "create"], self.env).returncode == 0
        self.up = subprocess.Popen([sys.executable, "-m", "streams", "up"], env=self.env, cwd=ROOT,
                                   stdout=open(tmp / "up.log", "wb"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.up.poll() is not None or "the live page at" in (tmp / "up.log").read_text(), 180,
                 "forewarn up to be ready")
        assert self.up.poll() is None, (tmp / "up.log").read_text()
        self.second = subprocess.Popen([sys.executable, "-m", "streams", "web"], cwd=ROOT,
                                       env=dict(self.env, FOREWARN_WEB_ADDR=f"127.0.0.1:{self.second_port}"),
                                       stdout=open(tmp / "web2.log", "wb"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.second.poll() is not None or self.ready(self.second_port), 60, "the second page")
        assert self.second.poll() is None, (tmp / "web2.log").read_text()

    @staticmethod
    def ready(port: int) -> bool:
        try:
            with request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def url(self, path: str = "/", second: bool = False) -> str:
        return f"http://127.0.0.1:{self.second_port if second else self.port}{path}"

    def produce(self, name: str, items: list[dict]) -> None:
        produced = run_forewarn(["produce", str(write_jsonl(self.tmp / f"{name}.jsonl", items))], self.env)
        assert produced.returncode == 0, produced.stderr

    def sql(self, query: str) -> list[dict]:
        answer = run_forewarn(["sql", query, "--format", "json"], self.env)
        assert answer.returncode == 0, answer.stderr
        return [json.loads(line) for line in answer.stdout.splitlines()]

    def stop(self) -> None:
        for process in (self.second, self.up):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.second, self.up):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def event(topic: str, **value) -> dict:
    value.setdefault("ts", now_iso())
    return {"topic": topic, "value": value}


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, tmp_path_factory):
    prefix = f"t-web-{int(time.time() * 1000) % 10**8}-"
    running = Stack(kafka_bootstrap, prefix, tmp_path_factory.mktemp("web"))
    try:
        # Reference data first, so the cases name the customers and the products.
        running.produce("reference", [
            event("customers", event_id="c7", customer_id="C-7", name="Priya Nair", tier="gold",
                  lifetime_value_cents=412_000, email="priya@example.com", preferred_channel="phone", language="hi",
                  phone="+91 98200 12345"),
            event("customers", event_id="c8", customer_id="C-8", name="Arnab Das", tier="standard",
                  lifetime_value_cents=9_000, email=None, preferred_channel="chat", language="bn", phone=None),
            event("catalog", event_id="k1", sku="ETH-1KG", name="Ethiopia Yirgacheffe 1kg", category="beans",
                  price_cents=1990, active=True),
            event("catalog", event_id="k2", sku="COL-1KG", name="Colombia Huila 1kg", category="beans",
                  price_cents=2100, active=True),
            event("catalog", event_id="k3", sku="KEN-1KG", name="Kenya AA 1kg", category="beans", price_cents=2400,
                  active=True),
            event("inventory", event_id="s1", event_type="stock_level", sku="ETH-1KG", available=0),
            event("inventory", event_id="s2", event_type="stock_level", sku="COL-1KG", available=52),
            event("inventory", event_id="s3", event_type="stock_level", sku="KEN-1KG", available=0),
        ])
        # The sink stores what the workers' reference readers read beside it: once it is in the store,
        # the workers have had it too (they read the same topics, and need no flush).
        stored = "SELECT (SELECT count() FROM customers) + (SELECT count() FROM catalog_items) + " \
                 "(SELECT count() FROM stock_levels) AS n"
        wait_for(lambda: int(running.sql(stored)[0]["n"]) == 8, 120, "the reference data to be stored")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    chosen = os.environ.get("FOREWARN_TEST_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def sign_in(browser, stack: Stack, name: str, second: bool = False) -> None:
    browser.get(stack.url("/login", second))
    browser.find_element("id", "name").send_keys(name)
    browser.find_element("id", "password").send_keys(f"{name}-secret")
    browser.find_element("id", "sign-in").click()
    wait_for(lambda: browser.find_elements("id", "signed-in-as"), 20, f"{name} to be signed in", interval=0.1)


def case_row(browser, task_id: str):
    rows = browser.find_elements("css selector", f'tr.case-row[data-task="{task_id}"]')
    return rows[0] if rows else None


def row_text(browser, task_id: str) -> str | None:
    """The case's row as text, read in one script (the page redraws its rows as updates arrive)."""
    return browser.execute_script(
        "const row = document.querySelector(`tr.case-row[data-task='${arguments[0]}']`);"
        "return row ? row.innerText : null;", task_id)


def press(browser, element_id: str) -> None:
    """Click a button by id in one script (a redraw between finding it and clicking it cannot go stale)."""
    assert browser.execute_script(
        "const b = document.getElementById(arguments[0]); if (!b || b.disabled) return false; b.click(); return true;",
        element_id), f"{element_id} is not there to press"


def answer_text(browser) -> str:
    """The answer line's text, read in one script (the page redraws it as the worker's answer arrives)."""
    return browser.execute_script("const a = document.getElementById('answer'); return a ? a.innerText : '';")


def test_a_rep_works_a_case_from_the_page(stack, browser, shots):
    browser.get(stack.url("/tasks"))
    wait_for(lambda: "case" in browser.find_element("id", "status-line").text, 20, "the tasks page to load")
    browser.execute_script("window.loadedOnce = true;")
    stack.produce("order", [event("orders", event_id="o1", event_type="placed", order_id="O-1", customer_id="C-7",
                                  lines=[{"sku": "ETH-1KG", "qty": 2, "unit_price_cents": 1990}])])
    produced = time.monotonic()
    task_id = wait_for(lambda: next((t["task_id"] for t in get_json(stack.url("/api/tasks"))
                                     if t["customer_id"] == "C-7"), None), 60, "the case of C-7 in the API")
    wait_for(lambda: case_row(browser, task_id), 30, "the case on the open page", interval=0.1)
    print(f"\nthe case was on the open page {time.monotonic() - produced:.2f}s after its order was produced")
    assert browser.execute_script("return window.loadedOnce === true"), "the page reloaded"

    # Two tickets about the order, in Hindi and Bengali: a repeat contact joins the case.
    stack.produce("tickets", [
        event("support", event_id="t1", event_type="ticket_opened", ticket_id="TK-1", customer_id="C-7",
              channel="email", text=HINDI, order_id="O-1", language="hi"),
        event("support", event_id="t2", event_type="ticket_opened", ticket_id="TK-2", customer_id="C-7",
              channel="chat", text=BENGALI, order_id="O-1", language="bn", ts=now_iso(1))])
    browser.execute_script(f"document.querySelector(\"tr.case-row[data-task='{task_id}']\").click()")
    wait_for(lambda: HINDI in browser.find_element("id", "panel").text and
             BENGALI in browser.find_element("id", "panel").text, 60, "the tickets' texts in the panel")
    panel = browser.find_element("id", "panel").text
    assert "Priya Nair (C-7), gold tier" in panel and "+91 98200 12345" in panel
    assert "Ethiopia Yirgacheffe 1kg (ETH-1KG)" in panel and "Colombia Huila 1kg (COL-1KG), 21.00, 52 in stock" in panel
    assert "Problem 1 of 2: out_of_stock_open_order" in panel and "Problem 2 of 2: repeat_contact" in panel

    # Not signed in: nothing to press, and the API refuses too.
    assert not browser.find_element("id", "act-claim").is_enabled()
    assert "Sign in to claim" in browser.find_element("id", "sign-in-hint").text
    status, body = post(stack.url(f"/api/tasks/{task_id}/claim"), {"X-Forewarn": "1"})
    assert status == 401 and body["error"] == "sign in to claim, release or finish a case"

    sign_in(browser, stack, "asha")
    browser.get(stack.url(f"/tasks?task={task_id}"))
    wait_for(lambda: browser.find_elements("id", "act-claim") and
             browser.find_element("id", "act-claim").is_enabled(), 20, "the claim button")
    press(browser, "act-claim")
    wait_for(lambda: f"{task_id} claimed by asha." in answer_text(browser), 30, "the worker's answer to the claim")
    assert "claimed by asha" in row_text(browser, task_id)
    # Released, the case is open for anyone again; asha takes it back.
    press(browser, "act-release")
    wait_for(lambda: f"{task_id} released by asha." in answer_text(browser), 30, "the worker's answer to release")
    wait_for(lambda: (row_text(browser, task_id) or "").split()[2:3] == ["open"], 10, "the case open again",
             interval=0.1)
    press(browser, "act-claim")
    wait_for(lambda: f"{task_id} claimed by asha." in answer_text(browser), 30, "the second claim's answer")
    browser.save_screenshot(str(shots / "tasks.png"))

    # bilal, signed in on the other web process, sees the same state and cannot finish asha's case.
    other = new_browser()
    try:
        sign_in(other, stack, "bilal", second=True)
        other.get(stack.url(f"/tasks?task={task_id}", second=True))
        wait_for(lambda: "claimed by asha" in (row_text(other, task_id) or ""), 30,
                 "the claimed case on the second process")
        press(other, "act-done")
        wait_for(lambda: "Rejected: not_assignee" in answer_text(other), 30, "the rejection's reason")
        assert f"{task_id} is claimed by asha, not bilal" in answer_text(other)
    finally:
        other.quit()

    press(browser, "act-done")
    wait_for(lambda: f"{task_id} done by asha." in answer_text(browser), 30, "the worker's answer to done")
    wait_for(lambda: row_text(browser, task_id) is None, 10, "the finished case to leave the queue", interval=0.1)
    browser.refresh()
    wait_for(lambda: "case" in browser.find_element("id", "status-line").text, 20, "the reloaded page")
    assert row_text(browser, task_id) is None
    assert task_id not in {t["task_id"] for t in get_json(stack.url("/api/tasks", second=True))}


def test_alerts_arrive_live_and_resolve_in_place(stack, browser, shots):
    browser.get(stack.url("/alerts"))
    wait_for(lambda: "alert" in browser.find_element("id", "status-line").text, 20, "the alerts page to load")
    browser.execute_script("window.loadedOnce = true;")
    stack.produce("short", [event("orders", event_id="o2", event_type="placed", order_id="O-2", customer_id="C-8",
                                  lines=[{"sku": "KEN-1KG", "qty": 1, "unit_price_cents": 2400}])])

    def row():
        found = [a for a in get_json(stack.url("/api/alerts?rule=out_of_stock_open_order"))
                 if a["order_id"] == "O-2"]
        if not found:
            return None
        rows = browser.find_elements("css selector", f'tr[data-alert="{found[0]["alert_id"]}"]')
        return rows[0] if rows else None

    opened = wait_for(row, 60, "the alert of O-2 on the open page", interval=0.1)
    alert_id = opened.get_attribute("data-alert")
    assert opened.get_attribute("data-status") == "open"
    stack.produce("restock", [event("inventory", event_id="s4", event_type="stock_level", sku="KEN-1KG",
                                    available=10)])
    wait_for(lambda: browser.find_element("css selector", f'tr[data-alert="{alert_id}"]')
             .get_attribute("data-status") == "resolved", 60, "the resolution in place")
    assert len(browser.find_elements("css selector", f'tr[data-alert="{alert_id}"]')) == 1
    assert browser.execute_script("return window.loadedOnce === true"), "the page reloaded"
    # Filters: resolved only shows it, open only does not.
    browser.get(stack.url("/alerts?status=open"))
    wait_for(lambda: "alert" in browser.find_element("id", "status-line").text, 20, "the filtered page")
    assert not browser.find_elements("css selector", f'tr[data-alert="{alert_id}"]')
    browser.get(stack.url("/alerts"))
    wait_for(lambda: browser.find_elements("css selector", f'tr[data-alert="{alert_id}"]'), 20, "the unfiltered page")
    browser.save_screenshot(str(shots / "alerts.png"))


def test_the_overview_agrees_with_the_store(stack, browser, shots):
    # One more open case (Arnab's order for the beans still out of stock), so the queues are not empty.
    stack.produce("open", [event("orders", event_id="o3", event_type="placed", order_id="O-3", customer_id="C-8",
                                 lines=[{"sku": "ETH-1KG", "qty": 1, "unit_price_cents": 1990}])])
    wait_for(lambda: any(t["customer_id"] == "C-8" for t in get_json(stack.url("/api/tasks"))), 60,
             "Arnab's case")

    # Wait until the sink has stored what the page shows live, then compare the page's numbers with SQL.
    def settled():
        live = get_json(stack.url("/api/overview"))
        cases = stack.sql("SELECT queue, countIf(status = 'open') AS open, countIf(status = 'claimed') AS claimed "
                          "FROM outreach_tasks_latest WHERE status IN ('open', 'claimed') GROUP BY queue")
        alerts = stack.sql("SELECT rule, count() AS n FROM alerts_latest WHERE status IN ('open', 'updated') "
                           "GROUP BY rule")
        stored_cases = {r["queue"]: {"open": int(r["open"]), "claimed": int(r["claimed"])} for r in cases}
        shown_cases = {q: {"open": n["open"], "claimed": n["claimed"]} for q, n in live["cases_per_queue"].items()}
        stored_alerts = {r["rule"]: int(r["n"]) for r in alerts}
        return (live, stored_alerts) if shown_cases == stored_cases and live["open_alerts_per_rule"] == stored_alerts \
            else None

    live, stored_alerts = wait_for(settled, 90, "the overview and the store to agree")
    assert stored_alerts, "no open alert to compare"
    browser.get(stack.url("/"))
    wait_for(lambda: browser.find_elements("css selector", "#rules tbody tr"), 30, "the overview's tables")
    # Read in one script: the page redraws its tables every few seconds.
    shown = dict(browser.execute_script(
        "return [...document.querySelectorAll('#rules tbody tr')].map(r => [r.dataset.rule, +r.cells[1].textContent])"))
    assert shown == stored_alerts
    queues = dict(browser.execute_script(
        "return [...document.querySelectorAll('#queues tbody tr')].map(r => [r.dataset.queue, +r.cells[1].textContent"
        " + +r.cells[2].textContent])"))
    assert queues == {q: n["open"] + n["claimed"] for q, n in live["cases_per_queue"].items()} and queues
    # The charts come from the analysts' views: the same query through `forewarn sql` gives the same rows.
    # (The page's charts are at most a few seconds old: compare once both have caught up.)
    def charts_agree():
        chart = get_json(stack.url("/api/overview"))["charts"]["proactive_share"]
        rows = [list(r.values()) for r in stack.sql(chart["sql"])]
        return rows if rows and rows == chart["rows"] else None

    share = wait_for(charts_agree, 60, "the proactive-share chart to equal its query")
    assert {row[0] for row in share} >= {"out_of_stock_open_order"}
    wait_for(lambda: browser.find_elements("css selector", "[data-chart] svg"), 30, "the charts")
    browser.save_screenshot(str(shots / "overview.png"))


def test_a_roll_up_expands_to_the_alerts_it_sums_up(stack, browser):
    # O-1 and O-3 are both short of ETH-1KG: operations get one sku_stockout_impact roll-up for the SKU.
    def rollup():
        found = [a for a in get_json(stack.url("/api/alerts?rule=sku_stockout_impact")) if a["sku"] == "ETH-1KG"]
        return found[0] if found and len(found[0]["members"]) == 2 else None

    summed = wait_for(rollup, 60, "the roll-up of ETH-1KG with its two orders' alerts")
    browser.get(stack.url("/alerts?rule=sku_stockout_impact"))
    wait_for(lambda: browser.find_elements("css selector", f'[data-expand="{summed["alert_id"]}"]'), 30,
             "the roll-up's expand button")
    assert "show 2 alerts it sums up" in browser.find_element("css selector", f'[data-expand="{summed["alert_id"]}"]').text
    press_selector = f"document.querySelector('[data-expand=\"{summed['alert_id']}\"]').click()"
    browser.execute_script(press_selector)
    wait_for(lambda: {row.get_attribute("data-alert") for row in browser.find_elements("css selector", "tr.members")}
             == set(summed["members"]), 10, "the member alerts under the roll-up", interval=0.1)
