"""The `forewarn` command as users run it, against a real broker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from confluent_kafka import Producer

from schemas.codec import Codec, parse_timestamp_ms
from streams.app import read_status
from streams.settings import Settings
from sinks import dlq
from streams.produce import producer_for
from tests.integration.helpers import (
    read_raw,
    Workers,
    forewarn_env,
    free_web_addr,
    read_alerts,
    run_forewarn,
    wait_for,
    write_jsonl,
)

pytestmark = pytest.mark.integration


def test_produce_sends_every_valid_line_and_reports_each_bad_one(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    good = {"event_id": "e1", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A", "available": 3}
    lines = [
        json.dumps({"topic": "inventory", "value": good}),
        "{oops",
        json.dumps({"topic": "inventory", "value": dict(good, event_id="e2", available="lots")}),
        json.dumps({"topic": "catalog", "value": {"event_id": "e3", "ts": "2026-03-02T09:15:00Z", "sku": "A",
                                                  "name": "Beans", "category": "beans", "price_cents": 100,
                                                  "active": True}}),
        json.dumps({"topic": "orders", "value": {"event_id": "e4", "ts": "2026-03-02T09:16:00Z",
                                                 "event_type": "exploded", "order_id": "O1",
                                                 "customer_id": "C1"}}),
        json.dumps({"topic": "inventory", "value": dict(good, event_id="e5", sku="B")}),
    ]
    result = run_forewarn(["produce", "-"], env, stdin="\n".join(lines) + "\n")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("<stdin>: line")]
    assert errors[0].startswith("<stdin>: line 2: ") and "not valid JSON" in errors[0]
    assert errors[1].startswith("<stdin>: line 3: value.available: ")
    assert errors[2].startswith("<stdin>: line 5: value.event_type: ") and "exploded" in errors[2]
    assert len(errors) == 3
    assert "produced 3 records" in result.stderr

    codec = Codec()
    inventory = read_raw(kafka_bootstrap, f"{fresh_prefix}inventory", expected=2)
    assert sorted(codec.decode(m.value())[1]["event_id"] for m in inventory) == ["e1", "e5"]
    assert {m.key() for m in inventory} == {b"A", b"B"}
    assert len(read_raw(kafka_bootstrap, f"{fresh_prefix}catalog", expected=1)) == 1


def test_anonymous_feedback_is_produced_without_a_key_and_reads_back(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    anonymous = {"event_id": "f1", "ts": "2026-03-02T09:15:00Z", "event_type": "review", "score": 1,
                 "text": "never arrived"}
    lines = [json.dumps(anonymous), json.dumps(dict(anonymous, event_id="f2", customer_id="C1"))]
    result = run_forewarn(["produce", "--topic", "feedback", "-"], env, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert "produced 2 records (feedback 2); rejected 0 lines" in result.stderr
    messages = read_raw(kafka_bootstrap, f"{fresh_prefix}feedback", expected=2)
    by_id = {Codec().decode(m.value())[1]["event_id"]: m for m in messages}
    assert by_id["f1"].key() is None and Codec().decode(by_id["f1"].value())[1]["customer_id"] is None
    assert by_id["f2"].key() == b"C1"


def test_undecodable_and_miskeyed_messages_go_to_dead_letters_and_valid_ones_still_alert(
        kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    codec = Codec()
    producer = producer_for(kafka_bootstrap)
    producer.produce(f"{fresh_prefix}orders", key=b"O-BAD", value=b"this is not avro")
    wrong_key = codec.encode("forewarn.StockLevel", {"event_id": "s0", "ts": 0, "event_type": "stock_level",
                                                     "sku": "A", "available": 5})
    producer.produce(f"{fresh_prefix}inventory", key=b"NOT-A", value=wrong_key)
    producer.flush(30)
    timeline = [
        {"topic": "inventory", "value": {"event_id": "s1", "ts": "2026-03-02T09:00:00Z", "event_type": "stock_level",
                                         "sku": "A", "available": 0}},
        {"topic": "orders", "value": {"event_id": "o1", "ts": "2026-03-02T09:01:00Z", "event_type": "placed",
                                      "order_id": "O1", "customer_id": "C1",
                                      "lines": [{"sku": "A", "qty": 1, "unit_price_cents": 100}]}},
    ]
    assert run_forewarn(["produce", str(write_jsonl(tmp_path / "t.jsonl", timeline))], env).returncode == 0
    with Workers(env, count=1, log_dir=tmp_path) as workers:
        alerts = wait_for(lambda: workers.assert_running() or read_alerts(kafka_bootstrap, fresh_prefix),
                          timeout=120, what="the alert for O1")
        assert [(a["order_id"], a["status"]) for a in alerts] == [("O1", "open")]
        # Replayed history: the worker clock follows the events' time, not today's date.
        worker_settings = Settings(data_dir=tmp_path, topic_prefix=fresh_prefix, worker_id="w0")

        def settled():
            # Caught up counts a message once an agent has taken it, so the count of dead letters
            # is waited for too; a third one would never match and fails the wait.
            status = read_status(worker_settings) or {}
            return status if status.get("partitions_behind") == 0 and status.get("dead_lettered") == 2 else None

        status = wait_for(settled, timeout=60, what="the worker to be caught up, with both bad messages dead-lettered")
        order_ts = parse_timestamp_ms("2026-03-02T09:01:00Z")
        assert order_ts <= status["clock_ms"] < order_ts + 10 * 60 * 1000, status
        dead = read_raw(kafka_bootstrap, f"{fresh_prefix}forewarn.dlq", expected=2)
    by_reason = {dlq.headers_dict(m.headers())[dlq.REASON]: m for m in dead}
    assert set(by_reason) == {"unknown-framing", "key-mismatch"}
    garbage = by_reason["unknown-framing"]
    headers = dlq.headers_dict(garbage.headers())
    assert garbage.value() == b"this is not avro" and garbage.key() == b"O-BAD"
    assert headers[dlq.SOURCE_TOPIC] == f"{fresh_prefix}orders"
    assert headers[dlq.SOURCE_OFFSET] == "0"
    assert headers[dlq.PROCESSOR] == "orders"
    assert headers[dlq.ERROR_CLASS] == "DecodeError"
    assert headers[dlq.MESSAGE]
    mismatch = dlq.headers_dict(by_reason["key-mismatch"].headers())
    assert "NOT-A" in mismatch[dlq.MESSAGE] and mismatch[dlq.SOURCE_TOPIC] == f"{fresh_prefix}inventory"
    assert mismatch[dlq.ERROR_CLASS] == "KeyMismatch"


def _ready_line(up: subprocess.Popen) -> str | None:
    """Read up's output until its ready line; None at the end of its output."""
    for line in up.stdout:
        if "forewarn up: ready in" in line:
            return line
    return None


def test_up_runs_the_stack_commands_beside_it_find_it_and_a_restart_keeps_everything(tmp_path):
    # `up` has a topic prefix; the commands beside it are not told it and must take the one up recorded.
    beside = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
    beside.update(FOREWARN_DATA_DIR=str(tmp_path / "data"), FOREWARN_WEB_ADDR=free_web_addr())
    prefix = f"up-{time.time_ns()}-"
    up_env = dict(beside, FOREWARN_TOPIC_PREFIX=prefix)
    endpoints = tmp_path / "data" / "endpoints.json"
    stock = {"topic": "inventory", "value": {"event_id": "s1", "ts": "2026-03-02T09:00:00Z",
                                             "event_type": "stock_level", "sku": "A", "available": 1}}
    order = {"topic": "orders", "value": {"event_id": "o1", "ts": "2026-03-02T09:01:00Z", "event_type": "placed",
                                          "order_id": "O1", "customer_id": "C1",
                                          "lines": [{"sku": "A", "qty": 3, "unit_price_cents": 100}]}}
    restock = {"topic": "inventory", "value": {"event_id": "s2", "ts": "2026-03-02T09:05:00Z",
                                               "event_type": "stock_level", "sku": "A", "available": 10}}

    def alert_lines():
        out = run_forewarn(["alerts", "--json", "--rule", "out_of_stock_open_order"], beside)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    def stored_alerts(expected: int):
        out = run_forewarn(["sql", "SELECT order_id, status, kafka_offset FROM alerts WHERE rule = "
                                   "'out_of_stock_open_order' ORDER BY kafka_offset", "--format", "json"], beside)
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        return rows if len(rows) >= expected else None

    for run in (1, 2, 3):
        reset = ["--reset", "--yes"] if run == 3 else []
        up = subprocess.Popen([sys.executable, "-m", "streams", "up", *reset], env=up_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: up.poll() is not None or endpoints.exists(), timeout=120, what="forewarn up to start")
            assert up.poll() is None, up.stdout.read()
            recorded = json.loads(endpoints.read_text())
            bootstrap = recorded["kafka"]
            assert recorded["topic_prefix"] == prefix
            if run == 1:
                # The live page runs beside the stack, and the ready line gives its address.
                page = f"http://{beside['FOREWARN_WEB_ADDR']}/"
                ready = wait_for(lambda: up.poll() is not None or _ready_line(up), timeout=120, what="up's ready line")
                assert f"the live page at {page}" in ready, ready
                with urllib.request.urlopen(page + "api/tasks", timeout=10) as answer:
                    assert json.loads(answer.read()) == []
                # A prefix other than up's would produce to topics no worker reads: refused.
                other = run_forewarn(["produce", write_jsonl(tmp_path / "t.jsonl", [stock, order])],
                                     dict(beside, FOREWARN_TOPIC_PREFIX="other-"))
                assert other.returncode == 2
                assert other.stderr.startswith("forewarn: FOREWARN_TOPIC_PREFIX='other-', but the running "
                                               "`forewarn up`") and repr(prefix) in other.stderr
                produced = run_forewarn(["produce", str(tmp_path / "t.jsonl")], beside)
                assert produced.returncode == 0, produced.stderr
                (alert,) = wait_for(alert_lines, timeout=120, what="the alert")
                assert alert["order_id"] == "O1" and alert["status"] == "open"
                assert alert["event_ts"] == "2026-03-02T09:01:00Z"
                assert alert["detected_at"].endswith("Z")
                assert json.loads(alert["details"]["lines_json"])[0]["short"] == 2
                # The alert came from up's prefixed topics, which the commands found without being told.
                assert [a["order_id"] for a in read_alerts(bootstrap, prefix)] == ["O1"]
                # up's sink writes it to ClickHouse; `forewarn sql` reaches the store through the sink.
                rows = wait_for(lambda: stored_alerts(1), timeout=60, what="the alert in ClickHouse")
                assert rows == [{"order_id": "O1", "status": "open", "kafka_offset": 0}]
            elif run == 3:
                # `up --reset --yes` started empty on purpose: no alert on the topics, none in the store.
                assert alert_lines() == []
                assert stored_alerts(0) == []
            else:
                # The restarted stack kept the topics, the store and the worker's open order: the
                # alert is still there, stored once, and the restock resolves it.
                assert [(a["order_id"], a["status"]) for a in alert_lines()] == [("O1", "open")]
                assert stored_alerts(1) == [{"order_id": "O1", "status": "open", "kafka_offset": 0}]
                produced = run_forewarn(["produce", str(write_jsonl(tmp_path / "r.jsonl", [restock]))], beside)
                assert produced.returncode == 0, produced.stderr
                statuses = wait_for(lambda: [a["status"] for a in alert_lines()] == ["open", "resolved"]
                                    and alert_lines(), timeout=120, what="the restock's resolution")
                assert [a["order_id"] for a in statuses] == ["O1", "O1"]
                rows = wait_for(lambda: stored_alerts(2), timeout=60, what="both alerts in ClickHouse")
                assert [(r["status"], r["kafka_offset"]) for r in rows] == [("open", 0), ("resolved", 1)]
        finally:
            up.send_signal(signal.SIGTERM)
            out, _ = up.communicate(timeout=90)
        assert up.returncode == 0, out
        assert "stopping" in out
        assert not endpoints.exists()
        with pytest.raises(Exception):
            Producer({"bootstrap.servers": bootstrap, "socket.timeout.ms": 1000}).list_topics(timeout=2)


def test_demo_prints_out_of_stock_alerts_with_short_lines_and_alternatives(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
    env["FOREWARN_DATA_DIR"] = str(tmp_path / "demo")
    result = subprocess.run([sys.executable, "-m", "streams", "demo", "--duration", "20"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # The worker's consumer group read every event before the summary was printed.
    assert "had not read every event" not in out and "the summary may be short" not in out
    head = "OPEN     warning  cs      out_of_stock_open_order  Order O-ARJUN-1: 1 item out of stock (2 units)"
    assert head in out
    # The alert's block: its head line, the summary, then the alternatives per short SKU.
    lines = out.splitlines()
    at = next(n for n, line in enumerate(lines) if line.endswith(head))
    summary, alternatives = lines[at + 1], lines[at + 2]
    # Colombia Supremo (21.00) is the in-stock bean closest in price to the 19.90 sale beans.
    assert "Ethiopia Yirgacheffe 1kg (sale) (ETH-SALE-1KG) short 2 of 2; offer Colombia Supremo 1kg " \
           "(COL-SUP-1KG, 21.00)" in summary
    assert alternatives.startswith("    alternatives for ETH-SALE-1KG: Colombia Supremo 1kg (COL-SUP-1KG, 21.00, ")
    assert "sku_stockout_impact" in out
    assert "RESOLVED" in out
    summary = out[out.index("Summary:"):]
    assert "out_of_stock_open_order" in summary and "What to try next" in summary
    # Every rule fires at least once in a default run, and reps have cases waiting in their queues.
    per_rule = summary[:summary.index("Outreach cases")]
    for rule in ("cart_lost", "cart_loss_spike", "order_not_visible", "support_sla_risk", "support_sla_breach",
                 "support_backlog", "repeat_contact", "complaint_spike", "return_spike", "web_error_spike",
                 "late_shipment", "negative_feedback", "payment_failed", "sku_stockout_impact"):
        assert f"  {rule} " in per_rule, rule
    tasks = summary[summary.index("Outreach cases"):summary.index("In ClickHouse")]
    for queue in ("fulfillment", "customer-success"):
        assert f"  {queue} " in tasks, queue
    # One case per customer: some customers have several problems, so there are more problems than cases.
    cases, problems = map(int, re.search(r"\((\d+) cases?, one per customer, with (\d+) problems?;", tasks).groups())
    assert 0 < cases < problems
    # The sink wrote everything to ClickHouse before the demo stopped; `forewarn sql` then opens the
    # store itself (the demo's, in its own data directory, as the summary says) and answers with the
    # alerts the demo printed.
    assert "In ClickHouse" in summary and "order_events" in summary
    demo_dir = tmp_path / "demo" / "demo"
    assert f"FOREWARN_DATA_DIR={demo_dir} forewarn sql" in summary
    env["FOREWARN_DATA_DIR"] = str(demo_dir)
    opened = out.count("OPEN     warning  cs      out_of_stock_open_order") + \
        out.count("OPEN     critical cs      out_of_stock_open_order")
    stored = subprocess.run([sys.executable, "-m", "streams", "sql", "SELECT count() FROM alerts_latest WHERE rule = "
                             "'out_of_stock_open_order'", "--format", "csv"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.split() == ["count()", str(opened)]
    # Every query of the README's "For analysts" section answers on the demo's data; the stockout
    # and alerts-per-day questions have rows to show.
    from tests.unit.test_analyst_views import README, analyst_queries

    answers = []
    for number, query in enumerate(analyst_queries(README.read_text()), start=1):
        done = subprocess.run([sys.executable, "-m", "streams", "sql", query, "--format", "json"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"query {number}: {done.stderr}"
        answers.append([json.loads(line) for line in done.stdout.splitlines()])
    assert len(answers) == 10
    stockouts = {row["sku"]: row for row in answers[5]}
    assert stockouts["ETH-SALE-1KG"]["affected_orders"] >= 20
    assert {row["rule"] for row in answers[7]} >= {"out_of_stock_open_order", "sku_stockout_impact"}


def test_an_event_stamped_a_year_ahead_is_dead_lettered_and_does_not_move_the_worker_clock(
        kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    codec = Codec()
    producer = producer_for(kafka_bootstrap)
    now = int(time.time() * 1000)
    year_ahead = now + 365 * 24 * 3600 * 1000
    # Sent by hand: `forewarn produce` itself refuses such a line.
    future = codec.encode("forewarn.WebEvent", {"event_id": "w-future", "ts": year_ahead, "event_type": "page_view",
                                                "session_id": "S-CLOCK", "page": "/"})
    producer.produce(f"{fresh_prefix}web", key=b"S-CLOCK", value=future)
    present = codec.encode("forewarn.WebEvent", {"event_id": "w-now", "ts": now - 60_000, "event_type": "page_view",
                                                 "session_id": "S-OK", "page": "/"})
    producer.produce(f"{fresh_prefix}web", key=b"S-OK", value=present)
    producer.flush(30)
    with Workers(env, count=1, log_dir=tmp_path) as workers:
        worker_settings = Settings(data_dir=tmp_path, topic_prefix=fresh_prefix, worker_id="w0")

        def settled():
            workers.assert_running()
            status = read_status(worker_settings) or {}
            return status if status.get("partitions_behind") == 0 and status.get("dead_lettered") == 1 else None

        status = wait_for(settled, timeout=120, what="the worker caught up with the future event dead-lettered")
        assert now - 120_000 <= status["clock_ms"] < now + 10 * 60 * 1000, status
        [dead] = read_raw(kafka_bootstrap, f"{fresh_prefix}forewarn.dlq", expected=1)
    headers = dlq.headers_dict(dead.headers())
    assert headers[dlq.REASON] == "future-timestamp" and headers[dlq.ERROR_CLASS] == "FutureTimestamp"
    assert " days ahead of wall time" in headers[dlq.MESSAGE] and "FOREWARN_MAX_CLOCK_SKEW_MS" in headers[dlq.MESSAGE]
    assert dead.key() == b"S-CLOCK" and dead.value() == future
