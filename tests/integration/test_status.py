"""`forewarn status` on a real broker: a working worker is healthy, a stalled one is reported as unhealthy."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.integration.helpers import Workers, forewarn_env, run_forewarn, wait_for, write_jsonl

pytestmark = pytest.mark.integration


def iso(ms: int) -> str:
    from schemas.codec import format_timestamp_ms

    return format_timestamp_ms(ms)


def test_status_reports_a_running_worker_healthy_and_a_stalled_one_unhealthy(kafka_bootstrap, fresh_prefix,
                                                                              tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    now = int(time.time() * 1000)
    events = [{"topic": "inventory", "value": {"event_id": "s1", "ts": iso(now - 1_000), "event_type": "stock_level",
                                               "sku": "A", "available": 1}}]
    with Workers(env, 1, tmp_path) as workers:
        assert run_forewarn(["produce", str(write_jsonl(tmp_path / "e.jsonl", events))], env).returncode == 0

        def healthy():
            done = run_forewarn(["status", "--json"], env)
            report = json.loads(done.stdout) if done.stdout.strip() else {}
            worker = (report.get("workers") or [{}])[0]
            return done.returncode == 0 and worker.get("clock_ms") and report
        report = wait_for(healthy, 120, "a healthy status with the worker's clock")
        assert report["healthy"] and report["problems"] == []
        assert report["workers"][0]["name"] == "w0" and report["workers"][0]["assigned"] > 0
        assert report["worker_lag"]["per_topic"][f"{fresh_prefix}inventory"] == 0
        text = run_forewarn(["status"], env)
        assert text.returncode == 0 and text.stdout.rstrip().endswith("healthy"), text.stdout
        assert "w0" in text.stdout and "behind wall time" in text.stdout

        # The worker stops answering (SIGSTOP): its status file goes stale and the stack is unhealthy.
        workers.procs[0].send_signal(signal.SIGSTOP)
        try:
            def unhealthy():
                done = run_forewarn(["status"], env)
                return done.returncode == 1 and done
            stalled = wait_for(unhealthy, 60, "status to report the stalled worker")
            assert "UNHEALTHY" in stalled.stdout
            assert "worker w0 has not reported for" in stalled.stdout
        finally:
            workers.procs[0].send_signal(signal.SIGCONT)


def test_status_without_a_stack_to_talk_to_is_one_line(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
    env["FOREWARN_DATA_DIR"] = str(tmp_path)
    done = run_forewarn(["status"], env)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "no Kafka to talk to" in done.stderr


def test_topics_list_asks_the_broker_which_topics_exist_and_how(kafka_bootstrap, fresh_prefix, tmp_path):
    from streams import topics

    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    total = len(topics.ALL_TOPICS)
    before = run_forewarn(["topics", "list"], env)
    assert before.returncode == 0, before.stderr
    assert before.stderr.strip() == (f"0 of {total} topics exist at {kafka_bootstrap}; `forewarn topics create` "
                                     f"creates the {total} missing")
    orders = next(line for line in before.stdout.splitlines() if line.startswith(f"{fresh_prefix}orders "))
    assert "MISSING" in orders and "key=order_id" in orders
    assert run_forewarn(["topics", "create"], env).returncode == 0
    after = run_forewarn(["topics", "list"], env)
    assert after.stderr.strip() == f"{total} of {total} topics exist at {kafka_bootstrap}"
    orders = next(line for line in after.stdout.splitlines() if line.startswith(f"{fresh_prefix}orders "))
    assert "4 partitions, replication 1" in orders and "retention" in orders
