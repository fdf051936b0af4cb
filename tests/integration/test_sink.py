"""The ClickHouse sink through a real broker into chDB: exactly once, dead letters, outages, crashes.

Every test produces with fresh topic names, runs `forewarn sink` as a separate
process the way `forewarn up` does, and reads the store back the way users
do: through the sink's query endpoint while it runs, or by opening the chDB
directory once it has stopped.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from schemas.codec import Codec
from sinks import dlq
import json
from sinks.clickhouse.sink import read_status
from streams import topics
from streams.brokers import confluent_producer_overrides
from streams.embedded import die_with_parent_hook
from streams.follow import group_lag
from streams.kafka_security import kafka_client_config
from streams.settings import Settings
from tests.integration.sink_workload import mixed_events
from tests.integration.helpers import forewarn_env, read_raw, run_forewarn, wait_for

pytestmark = pytest.mark.integration

def produce(bootstrap: str, prefix: str, events: list[tuple[str, dict]], raw: list[tuple[str, bytes]] = ()) -> None:
    """Produce records (encoded as Forewarn does) and raw byte messages; wait for every acknowledgement."""
    codec = Codec()
    producer = Producer(kafka_client_config(bootstrap, {
        "partitioner": "murmur2_random", **confluent_producer_overrides(bootstrap),
    }))
    failures = []

    def delivered(err, _msg) -> None:
        if err is not None:
            failures.append(err)

    for topic, record in events:
        spec = topics.BY_NAME[topic]
        key = record[spec.key_field]
        producer.produce(f"{prefix}{topic}", key=None if key is None else key.encode(),
                         value=codec.encode(spec.schema, record), on_delivery=delivered)
        producer.poll(0)
    for topic, value in raw:
        producer.produce(f"{prefix}{topic}", key=b"O-raw", value=value, on_delivery=delivered)
    assert producer.flush(60) == 0 and not failures, failures


class SinkProcess:
    """`forewarn sink` as its own process."""

    def __init__(self, env: dict[str, str], log_path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self, *args: str, serving: bool = True, **extra: str) -> "SinkProcess":
        """Start it; with `serving`, wait until it serves queries (a sink set to kill itself may be gone first)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "streams", "sink", *args], env=dict(self.env, **extra),
                                         stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent_hook())
        if serving and "FOREWARN_CLICKHOUSE" not in extra:
            # Queries go through the sink once it owns the chDB store.
            wait_for(lambda: self.alive() and "queries at" in self.log(), timeout=60,
                     what="the sink to open the store and serve queries")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the sink exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return True

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait() if self.proc is not None else 0


@pytest.fixture
def stack_env(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path / "data")
    created = run_forewarn(["topics", "create"], env)
    assert created.returncode == 0, created.stderr
    return env


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


class _Rows:
    def __init__(self, rows: list[list]) -> None:
        self.rows = rows


def run_query(settings: Settings, sql: str) -> _Rows:
    """Rows of `forewarn sql --format json`, run as its own process the way users run it.

    (Opening the chDB store from the test process would keep it open, and a
    sink started afterwards could not open it.)
    """
    env = forewarn_env(settings.kafka, settings.topic_prefix, settings.data_dir)
    done = run_forewarn(["sql", sql, "--format", "json"], env)
    assert done.returncode == 0, done.stderr
    return _Rows([list(json.loads(line).values()) for line in done.stdout.splitlines() if line.strip()])


def counts(settings: Settings, table: str) -> tuple[int, int]:
    rows = run_query(settings, f"SELECT count(), uniqExact(event_id) FROM {table}").rows
    return int(rows[0][0]), int(rows[0][1])


def total_rows(settings: Settings) -> int:
    from sinks.clickhouse.tables import TABLE_FOR_TOPIC

    sql = " + ".join(f"(SELECT count() FROM {t})" for t in sorted(set(TABLE_FOR_TOPIC.values())))
    return int(run_query(settings, f"SELECT {sql}").rows[0][0])


def expected_per_table(events) -> dict[str, int]:
    from sinks.clickhouse.tables import TABLE_FOR_TOPIC

    per: dict[str, int] = {}
    for topic, _ in events:
        per[TABLE_FOR_TOPIC[topic]] = per.get(TABLE_FOR_TOPIC[topic], 0) + 1
    return per


def rows_per_table(settings: Settings) -> dict[str, int]:
    from sinks.clickhouse.tables import TABLE_FOR_TOPIC

    tables = sorted(set(TABLE_FOR_TOPIC.values()))
    sql = " UNION ALL ".join(f"SELECT '{t}', count() FROM {t}" for t in tables)
    return {t: int(n) for t, n in run_query(settings, sql).rows if int(n)}


def sink_topic_names(settings: Settings) -> list[str]:
    from sinks.clickhouse.tables import SINK_TOPICS

    return [settings.topic(spec.name) for spec in SINK_TOPICS]


def test_every_event_is_queryable_exactly_once(stack_env, kafka_bootstrap, tmp_path):
    events = mixed_events(1_100)
    produce(kafka_bootstrap, stack_env["FOREWARN_TOPIC_PREFIX"], events)
    settings = settings_of(stack_env)
    sink = SinkProcess(stack_env, tmp_path / "sink.log").start()
    try:
        wait_for(lambda: sink.alive() and total_rows(settings) >= len(events), timeout=120,
                 what="every event in ClickHouse")
        assert rows_per_table(settings) == expected_per_table(events)
        for table in ("order_events", "stock_levels", "web_events", "support_events", "returns", "feedback",
                      "task_updates", "catalog_items", "customers"):
            count, unique = counts(settings, table)
            assert count == unique == expected_per_table(events)[table], table
        # Offsets are committed once the rows are in: the sink's group catches up.
        wait_for(lambda: group_lag(kafka_bootstrap, settings.topic("forewarn-sink"), sink_topic_names(settings)) == 0,
                 timeout=60, what="the sink's group to commit everything")
        # Fields arrive typed and whole: nested lines, nulls, maps, timestamps, text in Bengali.
        order = run_query(settings, "SELECT ts, lines.sku, lines.qty, channel, promised_ship_by FROM order_events "
                                    "WHERE event_id IN ('o-33', 'o-22') ORDER BY ts").rows
        assert order == [["2026-03-02 09:15:22", ["S-1", "S-2"], [2, 2], None, "2026-03-03 09:15:22"],
                         ["2026-03-02 09:15:33", ["S-5", "S-6"], [1, 2], "web", None]]
        assert run_query(settings, "SELECT sum(qty) FROM order_lines WHERE order_id = 'O-33'").rows == [[3]]
        ticket = run_query(settings, "SELECT text, category, channel FROM support_events WHERE event_id='s-5'").rows
        assert ticket == [["আমার অর্ডার কোথায়?", None, "chat"]]
        alert = run_query(settings, "SELECT details['short.S-2'], evidence, "
                                    "toUnixTimestamp64Milli(detected_at) - toUnixTimestamp64Milli(event_ts) "
                                    "FROM alerts WHERE alert_id = 'A-9'").rows
        assert alert == [["2", ["o-9"], 250]]
        assert run_query(settings, "SELECT status, queue FROM outreach_tasks_latest WHERE task_id = 'K-10'").rows \
            == [["open", "customer-success"]]
        # A case's problems arrive as Nested columns, a map in each; a task without them is case 1.
        case = run_query(settings, "SELECT case_number, problems.alert_id, problems.status, problems.resolution, "
                                   "problems.details FROM outreach_tasks WHERE task_id IN ('K-10', 'K-21') "
                                   "ORDER BY task_id").rows
        assert case == [[2, ["A-9", "P-10"], ["open", "resolved"], [None, "payment_retried"],
                         [{"lines_json": '[{"sku": "S-1"}]'}, {}]],
                        [1, [], [], [], []]]
        assert run_query(settings, "SELECT rule, status, resolution FROM case_problems WHERE task_id = 'K-10' "
                                   "ORDER BY alert_id").rows == [["out_of_stock_open_order", "open", None],
                                                                 ["payment_failed", "resolved", "payment_retried"]]
        assert run_query(settings, "SELECT problem_count, open_problems FROM outreach_cases_latest "
                                   "WHERE task_id IN ('K-10', 'K-21') ORDER BY task_id").rows == [[2, 1], [1, 1]]
        # Queries from outside are read-only unless asked otherwise.
        refused = run_forewarn(["sql", "DROP TABLE order_events"], stack_env)
        assert refused.returncode == 2 and "forewarn: refused: DROP is a write; add --write to run it" in refused.stderr
        # ... and a refused query leaves the sink writing.
        produce(kafka_bootstrap, stack_env["FOREWARN_TOPIC_PREFIX"], [("orders", dict(events[0][1], event_id="late"))])
        wait_for(lambda: counts(settings, "order_events")[0] == expected_per_table(events)["order_events"] + 1,
                 timeout=60, what="an order produced after the refused query to be stored")
    finally:
        assert sink.stop() == 0, sink.log()[-3000:]
    # With the sink stopped, `forewarn sql` opens the store itself.
    shown = run_forewarn(["sql", "SELECT count() AS orders FROM order_events", "--format", "csv"], stack_env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["orders", str(expected_per_table(events)["order_events"] + 1)]


def test_killed_between_insert_and_commit_stores_nothing_twice(stack_env, kafka_bootstrap, tmp_path):
    events = mixed_events(660, seed=9)
    produce(kafka_bootstrap, stack_env["FOREWARN_TOPIC_PREFIX"], events)
    settings = settings_of(stack_env)
    group = settings.topic("forewarn-sink")
    # The first sink writes batches of 200 and kills itself with SIGKILL right after its first one,
    # before committing: part of the events are in ClickHouse, none is committed.
    first = SinkProcess(stack_env, tmp_path / "sink-1.log").start("--batch-rows", "200", serving=False,
                                                                   FOREWARN_SINK_KILL_AFTER_FLUSHES="1")
    assert first.proc.wait(timeout=120) == -signal.SIGKILL, first.log()[-3000:]
    assert group_lag(kafka_bootstrap, group, sink_topic_names(settings)) == len(events), \
        "the killed sink must not have committed anything"
    stored_by_the_first = total_rows(settings)  # the store is free again: opened directly
    assert 0 < stored_by_the_first < len(events)
    second = SinkProcess(stack_env, tmp_path / "sink-2.log").start()
    try:
        wait_for(lambda: second.alive() and group_lag(kafka_bootstrap, group, sink_topic_names(settings)) == 0,
                 timeout=120, what="the restarted sink to commit everything")
        assert rows_per_table(settings) == expected_per_table(events)
        for table in ("order_events", "support_events", "web_events", "task_updates"):
            count, unique = counts(settings, table)
            assert count == unique, f"{table}: {count} rows for {unique} events"
        # The restarted sink read the batch again and skipped every row the first one had stored.
        wait_for(lambda: (read_status(settings) or {}).get("skipped_already_stored") == stored_by_the_first,
                 timeout=10, what=f"the sink's status to report {stored_by_the_first} rows skipped as stored")
    finally:
        assert second.stop() == 0


def test_poison_messages_go_to_the_dead_letter_topic_and_their_neighbours_land(stack_env, kafka_bootstrap, tmp_path):
    prefix = stack_env["FOREWARN_TOPIC_PREFIX"]
    codec = Codec()
    good = [e for e in mixed_events(220, seed=3) if e[0] == "orders"]
    valid = codec.encode("forewarn.OrderEvent", good[0][1])
    poison = [
        ("orders", b"not avro at all"),  # framing Python rejects
        ("orders", valid[:-3]),  # a known schema, a cut-off body: only ClickHouse or a full decode notices
    ]
    produce(kafka_bootstrap, prefix, good[:10], raw=poison)
    produce(kafka_bootstrap, prefix, good[10:])
    settings = settings_of(stack_env)
    sink = SinkProcess(stack_env, tmp_path / "sink.log").start()
    try:
        wait_for(lambda: sink.alive() and counts(settings, "order_events")[0] >= len(good), timeout=120,
                 what="the valid orders in ClickHouse")
        dead = read_raw(kafka_bootstrap, f"{prefix}{topics.DEAD_LETTERS.name}", expected=2, timeout=60)
        assert sorted(m.value() for m in dead) == sorted(v for _, v in poison)
        for message in dead:
            headers = dlq.headers_dict(message.headers())
            assert headers[dlq.SOURCE_TOPIC] == f"{prefix}orders"
            assert headers[dlq.ERROR_CLASS] == "DecodeError"
            assert headers[dlq.PROCESSOR] == "forewarn-sink"
            assert headers[dlq.REASON] in ("unknown-framing", "body")
            assert headers[dlq.MESSAGE]
            assert int(headers[dlq.SOURCE_OFFSET]) >= 0 and headers[dlq.SOURCE_PARTITION].isdigit()
        assert counts(settings, "order_events") == (len(good), len(good))
        wait_for(lambda: group_lag(kafka_bootstrap, settings.topic("forewarn-sink"), sink_topic_names(settings)) == 0,
                 timeout=60, what="the poisoned partition to be committed past the poison")
    finally:
        assert sink.stop() == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_clickhouse_holds_offsets_and_the_sink_catches_up(stack_env, kafka_bootstrap, tmp_path):
    events = mixed_events(330, seed=4)
    produce(kafka_bootstrap, stack_env["FOREWARN_TOPIC_PREFIX"], events)
    settings = settings_of(stack_env)
    group = settings.topic("forewarn-sink")
    down = SinkProcess(stack_env, tmp_path / "sink-down.log").start(
        FOREWARN_CLICKHOUSE=f"http://127.0.0.1:{_closed_port()}")
    try:
        # It reads events, cannot write them, holds them and retries. Its first write may come
        # before it has read all 330 (a batch waits at most a second), and while a write fails it
        # reads no more: how many it holds depends on timing, that it commits none does not.
        wait_for(lambda: down.alive() and (read_status(settings) or {}).get("buffered", 0) > 0
                 and (read_status(settings) or {}).get("store_error"), timeout=120,
                 what="the sink to hold events while ClickHouse is unreachable")
        assert "cannot write (ClickHouse" in down.log()
        assert group_lag(kafka_bootstrap, group, sink_topic_names(settings)) == len(events)
    finally:
        assert down.stop() == 0
    assert group_lag(kafka_bootstrap, group, sink_topic_names(settings)) == len(events), "nothing committed"
    back = SinkProcess(stack_env, tmp_path / "sink-back.log").start()
    try:
        wait_for(lambda: back.alive() and group_lag(kafka_bootstrap, group, sink_topic_names(settings)) == 0,
                 timeout=120, what="the sink to catch up once ClickHouse is back")
        assert rows_per_table(settings) == expected_per_table(events)
    finally:
        assert back.stop() == 0
