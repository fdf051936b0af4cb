"""`forewarn up` and `forewarn demo` as supervisors: one per data directory, and no child left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.helpers import free_web_addr, read_alerts, run_forewarn, wait_for, write_jsonl

pytestmark = pytest.mark.integration

TIMELINE = [
    {"topic": "inventory", "value": {"event_id": "s1", "ts": "2026-03-02T09:00:00Z", "event_type": "stock_level",
                                     "sku": "A", "available": 1}},
    {"topic": "orders", "value": {"event_id": "o1", "ts": "2026-03-02T09:01:00Z", "event_type": "placed",
                                  "order_id": "O1", "customer_id": "C1",
                                  "lines": [{"sku": "A", "qty": 3, "unit_price_cents": 100}]}},
]


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
    env["FOREWARN_WEB_ADDR"] = free_web_addr()
    env.update(FOREWARN_DATA_DIR=str(data_dir), **extra)
    return env


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except FileNotFoundError:
            pass
    return found


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_leftovers(pids: set[int]) -> None:
    """A failed test must not leave the children it is about behind."""
    for pid in pids:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # Output goes to a file, not a pipe: a child left behind would hold a pipe open
    # and hang the test instead of failing it.
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def output(proc: subprocess.Popen) -> str:
    return proc.log.read_text(errors="replace")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> str:
    """Signal `proc` unless it has exited, wait for it; return its output."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{proc.args} did not stop within {timeout:.0f}s:\n{output(proc)}") from None
    return output(proc)


def recorded_pid(data_dir: Path) -> int | None:
    try:
        return json.loads((data_dir / "endpoints.json").read_text())["pid"]
    except (OSError, ValueError):
        return None


def wait_until_up(up: subprocess.Popen, data_dir: Path, prefix: str = "") -> None:
    """Until this `up` has recorded itself and its worker has partitions."""
    ready = data_dir / "faust" / f"{prefix}forewarn-worker-0" / "ready"
    wait_for(lambda: up.poll() is not None or (recorded_pid(data_dir) == up.pid and ready.exists()),
             timeout=120, what="forewarn up's worker to be ready")
    assert up.poll() is None, output(up)


def test_a_second_up_on_the_same_data_directory_is_refused_and_the_first_keeps_working(tmp_path):
    data_dir = tmp_path / "data"
    prefix = f"up-{time.time_ns()}-"
    env = clean_env(data_dir, FOREWARN_TOPIC_PREFIX=prefix)
    first = start(["up"], env, tmp_path / "first-up.log")
    try:
        wait_until_up(first, data_dir, prefix)
        recorded = (data_dir / "endpoints.json").read_text()

        second = start(["up"], env, tmp_path / "second-up.log")
        try:
            second.wait(timeout=60)
        finally:
            out = stop(second)
        assert second.returncode == 2, out
        assert out.strip() == (f"forewarn: the data directory {data_dir} is in use by a running `forewarn up` or "
                               f"`forewarn demo` (process {first.pid}); run commands beside it, stop it first, "
                               f"or set FOREWARN_DATA_DIR to another directory")

        # The first still runs, still recorded, its worker untouched, and commands beside it still work.
        assert first.poll() is None
        assert (data_dir / "endpoints.json").read_text() == recorded
        assert (data_dir / "faust" / f"{prefix}forewarn-worker-0" / "ready").exists()
        produced = run_forewarn(["produce", str(write_jsonl(tmp_path / "t.jsonl", TIMELINE))], clean_env(data_dir))
        assert produced.returncode == 0, produced.stderr
        bootstrap = json.loads(recorded)["kafka"]
        alerts = wait_for(lambda: read_alerts(bootstrap, prefix), timeout=120, what="the alert for O1")
        assert [(a["order_id"], a["status"]) for a in alerts] == [("O1", "open")]
    finally:
        out = stop(first)
    assert first.returncode == 0, out


def test_a_killed_up_takes_its_broker_worker_and_sink_with_it_and_the_next_up_replaces_its_record(tmp_path):
    data_dir = tmp_path / "data"
    env = clean_env(data_dir)
    up = start(["up"], env, tmp_path / "up.log")
    children: set[int] = set()
    try:
        wait_until_up(up, data_dir)
        children = children_of(up.pid)
        assert len(children) == 4, children  # the embedded broker, one worker, the sink and the web page
        up.kill()  # no chance to stop anything
        up.wait(timeout=30)
        wait_for(lambda: not any(running(pid) for pid in children), timeout=30,
                 what=f"the broker, worker, sink and web page {sorted(children)} to die with forewarn up")
    finally:
        stop(up)
        kill_leftovers(children)
    stale = json.loads((data_dir / "endpoints.json").read_text())
    assert stale["pid"] == up.pid  # left behind by the kill

    again = start(["up"], env, tmp_path / "again-up.log")
    try:
        wait_until_up(again, data_dir)
        # The broker died with SIGKILL too; its topics are all still there.
        listed = run_forewarn(["topics", "create"], env)
        assert listed.returncode == 0 and listed.stdout.startswith("created 0 of "), listed.stdout + listed.stderr
    finally:
        out = stop(again)
    assert again.returncode == 0, out


def test_sigterm_stops_the_demo_and_its_worker_sink_and_broker(tmp_path):
    data_dir = tmp_path / "demo"
    demo = start(["demo", "--duration", "30"], clean_env(data_dir), tmp_path / "demo.log")
    children: set[int] = set()
    try:
        # The demo runs in a data directory of its own inside the one it was given.
        ready = data_dir / "demo" / "faust" / "forewarn-worker-0" / "ready"
        wait_for(lambda: demo.poll() is not None or ready.exists(), timeout=120, what="the demo's worker")
        assert demo.poll() is None, output(demo)
        children = children_of(demo.pid)
        assert len(children) == 4, children  # the embedded broker, the worker, the sink and the web page
        started = time.monotonic()
        out = stop(demo, signal.SIGTERM, timeout=60)
        assert time.monotonic() - started < 45
        assert demo.returncode == 128 + signal.SIGTERM, out
        assert "forewarn demo: stopping" in out and "Traceback" not in out
        wait_for(lambda: not any(running(pid) for pid in children), timeout=10,
                 what=f"the demo's children {sorted(children)} to be gone")
        assert not (data_dir / "demo" / "endpoints.json").exists()
    finally:
        stop(demo)
        kill_leftovers(children)
