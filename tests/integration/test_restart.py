"""Restarting `forewarn up` mid-story loses nothing: the embedded default keeps everything on disk.

One story is played twice, each time by its own `forewarn up` on its own data
directory: once straight through, once with the stack stopped (SIGTERM) in the
middle and started again. In the middle the story has an order waiting for
stock with its task claimed by a rep, and a chat ticket waiting for its reply
whose reply target passes while the stack is down. Both runs must end with the
same alerts and task states; the breach that fell during the restart must be
raised by the restarted stack with no new event to move its clock; and
`forewarn tasks` must agree with ClickHouse's `outreach_tasks_latest`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.integration.helpers import free_web_addr, run_forewarn, wait_for, write_jsonl

pytestmark = pytest.mark.integration

# Chat reply target for this story; the ticket is opened so that its risk point has already passed
# when it is read and its breach falls BREACH_AFTER_S later.
CHAT_TARGET_S = 120
BREACH_AFTER_S = 25


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_ms() -> int:
    return int(time.time() * 1000)


class Up:
    """`forewarn up` on one data directory, and the commands run beside it."""

    def __init__(self, data_dir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
        self.env["FOREWARN_WEB_ADDR"] = free_web_addr()
        self.env.update(FOREWARN_DATA_DIR=str(data_dir), FOREWARN_SLA_CHAT_S=str(CHAT_TARGET_S))
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / f"{data_dir.name}-up.log"

    def start(self) -> None:
        endpoints = self.data_dir / "endpoints.json"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "streams", "up"], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or endpoints.exists(), 180, "forewarn up to start")
        assert self.proc.poll() is None, self.log.read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=120) == 0, self.log.read_text()[-3000:]
        self.proc = None

    def run(self, *args: str) -> subprocess.CompletedProcess:
        result = run_forewarn(list(args), self.env)
        assert result.returncode == 0, f"forewarn {' '.join(args)}: {result.stderr}"
        return result

    def produce(self, tmp: Path, items: list[dict]) -> None:
        self.run("produce", str(write_jsonl(tmp / f"events-{time.time_ns()}.jsonl", items)))

    def alerts(self) -> list[dict]:
        return [json.loads(line) for line in self.run("alerts", "--json").stdout.splitlines()]

    def tasks(self) -> dict[str, dict]:
        """The latest version of every task, by task id."""
        return {t["task_id"]: t for t in map(json.loads, self.run("tasks", "--json", "--all").stdout.splitlines())}

    def stored_tasks(self) -> dict[str, str]:
        out = self.run("sql", "SELECT task_id, status FROM outreach_tasks_latest", "--format", "json").stdout
        return {row["task_id"]: row["status"] for row in map(json.loads, out.splitlines())}


def lifecycles(alerts: list[dict]) -> dict[str, list[str]]:
    """dedup key -> its statuses in order, repeats of one message dropped (processing is at least once)."""
    out: dict[str, list[str]] = {}
    seen = set()
    for alert in alerts:
        repeat = (alert["alert_id"], alert["status"], alert["event_ts"])
        if repeat not in seen:
            seen.add(repeat)
            out.setdefault(alert["dedup_key"], []).append(alert["status"])
    return out


def statuses_of(up: Up, key: str) -> list[str]:
    return lifecycles(up.alerts()).get(key, [])


def play(up: Up, tmp: Path, restart: bool) -> dict:
    """The story; with `restart`, the stack is stopped after its first half and started again."""
    up.start()
    t0 = now_ms()
    up.produce(tmp, [
        {"topic": "inventory", "value": {"event_id": "s1", "ts": iso(t0 - 2_000), "event_type": "stock_level",
                                         "sku": "BEANS", "available": 1}},
        {"topic": "orders", "value": {"event_id": "o1", "ts": iso(t0 - 1_000), "event_type": "placed",
                                      "order_id": "O1", "customer_id": "C1",
                                      "lines": [{"sku": "BEANS", "qty": 3, "unit_price_cents": 1990}]}},
    ])
    wait_for(lambda: statuses_of(up, "out_of_stock_open_order:O1") == ["open"], 180, "the out-of-stock alert")
    short = wait_for(lambda: [t for t in up.tasks().values() if t["rule"] == "out_of_stock_open_order"], 60,
                     "the out-of-stock task")
    (task,) = short
    up.run("task", "claim", task["task_id"], "--as", "asha")
    wait_for(lambda: [t["status"] for t in up.tasks().values() if t["rule"] == "out_of_stock_open_order"]
             == ["claimed"], 60, "the claim")
    # A chat ticket whose risk point has passed when it is read and whose reply target passes
    # BREACH_AFTER_S later.
    opened = now_ms() - (CHAT_TARGET_S - BREACH_AFTER_S) * 1000
    breach_at = opened + CHAT_TARGET_S * 1000
    up.produce(tmp, [
        {"topic": "support", "value": {"event_id": "t1", "ts": iso(opened), "event_type": "ticket_opened",
                                       "ticket_id": "T1", "customer_id": "C2", "channel": "chat",
                                       "text": "Where is my order?"}},
    ])
    wait_for(lambda: statuses_of(up, "support_sla_risk:T1") == ["open"], 60, "the reply-target risk alert")
    assert now_ms() < breach_at - 5_000, "the ticket took too long: the breach would fall before the restart"
    restarted_at = None
    if restart:
        up.stop()
        # The reply target passes while nothing runs.
        wait_for(lambda: now_ms() > breach_at + 2_000, BREACH_AFTER_S + 10, "the reply target to pass")
        restarted_at = now_ms()
        up.start()
        # The claim made before the restart held through it.
        assert [(t["status"], t["assignee"]) for t in up.tasks().values()
                if t["rule"] == "out_of_stock_open_order"] == [("claimed", "asha")]
    # With no new event, the (restarted) stack raises the breach.
    wait_for(lambda: statuses_of(up, "support_sla_breach:T1") == ["open"], 120, "the breach of the reply target")
    breach = next(a for a in up.alerts() if a["dedup_key"] == "support_sla_breach:T1")
    # The second half: stock comes back, the ticket is answered.
    t1 = now_ms()
    up.produce(tmp, [
        {"topic": "inventory", "value": {"event_id": "s2", "ts": iso(t1), "event_type": "stock_level",
                                         "sku": "BEANS", "available": 10}},
        {"topic": "support", "value": {"event_id": "t2", "ts": iso(t1 + 1), "event_type": "agent_replied",
                                       "ticket_id": "T1", "customer_id": "C2", "channel": "chat",
                                       "agent_id": "bo"}},
    ])
    wait_for(lambda: statuses_of(up, "out_of_stock_open_order:O1")[-1:] == ["resolved"], 120, "the restock")
    wait_for(lambda: statuses_of(up, "support_sla_breach:T1")[-1:] == ["resolved"], 120, "the reply")
    tasks = up.tasks()
    # ClickHouse and the topics agree on every task's state.
    wait_for(lambda: up.stored_tasks() == {tid: t["status"] for tid, t in tasks.items()}, 120,
             "outreach_tasks_latest to agree with `forewarn tasks`")
    open_listed = {json.loads(line)["task_id"] for line in up.run("tasks", "--json").stdout.splitlines()}
    open_stored = {tid for tid, status in up.stored_tasks().items() if status in ("open", "claimed")}
    assert open_listed == open_stored
    result = {
        "alerts": lifecycles(up.alerts()),
        "tasks": sorted((t["rule"], t["status"], t["assignee"]) for t in tasks.values()),
        "breach": breach,
        "restarted_at": restarted_at,
        "breach_at": breach_at,
    }
    up.stop()
    return result


def test_a_restart_mid_story_loses_nothing(tmp_path):
    straight = Up(tmp_path / "straight")
    try:
        expected = play(straight, tmp_path, restart=False)
    finally:
        straight.stop()
    restarted = Up(tmp_path / "restarted")
    try:
        got = play(restarted, tmp_path, restart=True)
    finally:
        restarted.stop()
    assert got["alerts"] == expected["alerts"]
    assert got["tasks"] == expected["tasks"]
    assert any(rule == "out_of_stock_open_order" and assignee == "asha" for rule, _, assignee in got["tasks"])
    # The breach fell while the stack was down and was raised by the restarted one, on time for it.
    detected = int(datetime.fromisoformat(got["breach"]["detected_at"].replace("Z", "+00:00")).timestamp() * 1000)
    assert detected >= got["restarted_at"] > got["breach_at"]
