"""`forewarn tasks` and `forewarn task` against a real broker, with no worker: the tests write the worker's side."""

from __future__ import annotations

import json
import threading
import time
from typing import Callable

import pytest

from schemas.codec import Codec, DecodeError
from streams import topics
from streams.admin import ensure_topics
from streams.follow import read_topic
from streams.produce import message_key, producer_for
from streams.settings import Settings
from tests.integration.helpers import forewarn_env, read_raw, run_forewarn

pytestmark = pytest.mark.integration

T0 = 1_772_442_900_000  # 2026-03-02T09:15:00Z
HOUR = 3_600_000
TASK_TOPICS = (topics.OUTREACH_TASKS, topics.TASK_UPDATES, topics.TASK_UPDATES_REJECTED)


def task(task_id: str, **fields) -> dict:
    return {
        "task_id": task_id, "alert_id": f"a-{task_id}", "rule": "out_of_stock_open_order", "customer_id": "c-1",
        "priority": "P2", "queue": "customer-success", "action": f"Call the customer about {task_id}.",
        "due_by": T0 + HOUR, "status": "open", "assignee": None, "context": {}, "created_at": T0,
        "updated_at": T0, **fields,
    }


def produce(bootstrap: str, prefix: str, spec: topics.TopicSpec, records: list[dict]) -> None:
    codec = Codec()
    producer = producer_for(bootstrap)
    for record in records:
        producer.produce(f"{prefix}{spec.name}", key=message_key(spec, record),
                         value=codec.encode(spec.schema, record))
    assert producer.flush(30) == 0, f"{spec.name}: not every message was acknowledged within 30s"


@pytest.fixture
def task_topics(kafka_bootstrap, fresh_prefix) -> str:
    ensure_topics(Settings(topic_prefix=fresh_prefix), kafka_bootstrap, TASK_TOPICS)
    return fresh_prefix


# -- forewarn tasks


@pytest.fixture
def some_tasks(kafka_bootstrap, task_topics) -> str:
    produce(kafka_bootstrap, task_topics, topics.OUTREACH_TASKS, [
        task("T-1", due_by=T0 + 2 * HOUR),
        task("T-2", priority="P1", queue="fulfillment", rule="order_short", customer_id="c-2", due_by=T0 + 9 * HOUR),
        task("T-1", status="claimed", assignee="asha", due_by=T0 + 2 * HOUR, updated_at=T0 + 60_000),
        task("T-3", status="done", assignee="bo", updated_at=T0 + 5),
        task("T-4", queue="billing", customer_id="c-4", due_by=T0 + HOUR),
        # Equal updated_at: the later message is the task's state.
        task("T-5", queue="billing", updated_at=T0 + 7),
        task("T-5", queue="billing", status="cancelled", updated_at=T0 + 7),
    ])
    return task_topics


def test_tasks_prints_the_latest_open_and_claimed_tasks_most_urgent_first(kafka_bootstrap, some_tasks, tmp_path):
    result = run_forewarn(["tasks"], forewarn_env(kafka_bootstrap, some_tasks, tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[::2]] == ["T-2", "T-4", "T-1"]
    assert lines[0].split() == ["T-2", "P1", "fulfillment", "open", "2026-03-02", "18:15", "order_short", "c-2"]
    assert lines[1] == "    Call the customer about T-2."
    assert lines[4].split() == ["T-1", "P2", "customer-success", "claimed", "by", "asha", "2026-03-02", "11:15",
                                "out_of_stock_open_order", "c-1"]
    assert result.stderr.strip() == "3 open cases (2 open, 1 claimed) in 3 queues"


def test_tasks_of_one_queue_and_all_tasks(kafka_bootstrap, some_tasks, tmp_path):
    env = forewarn_env(kafka_bootstrap, some_tasks, tmp_path)
    billing = run_forewarn(["tasks", "--queue", "billing"], env)
    assert billing.returncode == 0, billing.stderr
    assert [line.split()[0] for line in billing.stdout.splitlines()[::2]] == ["T-4"]
    assert billing.stderr.strip() == "1 open case (1 open, 0 claimed) in queue billing"

    everything = run_forewarn(["tasks", "--all", "--queue", "billing"], env)
    assert everything.returncode == 0, everything.stderr
    assert [line.split()[:4] for line in everything.stdout.splitlines()[::2]] == [
        ["T-4", "P2", "billing", "open"], ["T-5", "P2", "billing", "cancelled"]]


def test_task_show_prints_the_latest_version_and_json_has_structured_fields(kafka_bootstrap, some_tasks, tmp_path):
    env = forewarn_env(kafka_bootstrap, some_tasks, tmp_path)
    shown = run_forewarn(["task", "show", "T-1"], env)
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    assert first.startswith("T-1  case 1  P2 customer-success  claimed by asha  due 2026-03-02 11:15 UTC")
    assert "    Call the customer about T-1." not in shown.stdout and "  Call the customer about T-1." in shown.stdout
    as_json = run_forewarn(["task", "show", "T-1", "--json"], env)
    assert as_json.returncode == 0, as_json.stderr
    record = json.loads(as_json.stdout)
    assert record["task_id"] == "T-1" and record["status"] == "claimed" and "context" not in record
    assert record["customer"] == {} and record["due_by"] == "2026-03-02T11:15:00Z"
    missing = run_forewarn(["task", "show", "T-404"], env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("forewarn: no task T-404 on ")


def test_tasks_as_json_lines(kafka_bootstrap, some_tasks, tmp_path):
    result = run_forewarn(["tasks", "--json"], forewarn_env(kafka_bootstrap, some_tasks, tmp_path))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["task_id"] for r in records] == ["T-2", "T-4", "T-1"]
    # A record without the fields cases added (as version 1 wrote it): case 1, no problems listed.
    assert records[2] == dict(task("T-1", status="claimed", assignee="asha"), due_by="2026-03-02T11:15:00Z",
                              created_at="2026-03-02T09:15:00Z", updated_at="2026-03-02T09:16:00Z",
                              case_number=1, problems=[])
    assert result.stderr.strip() == "3 open cases (2 open, 1 claimed) in 3 queues"


def test_tasks_refuses_an_unknown_queue_and_names_a_missing_topic(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    unknown = run_forewarn(["tasks", "--queue", "sales"], env)
    assert unknown.returncode == 2
    assert "--queue 'sales' is not a queue; expected one of fulfillment, support-leads, swarm" in unknown.stderr
    missing = run_forewarn(["tasks"], env)
    assert missing.returncode == 2
    assert f"forewarn tasks: there is no topic {fresh_prefix}outreach-tasks at {kafka_bootstrap}" in missing.stderr


# -- forewarn task: the tests stand in for the worker


class StandInWorker:
    """Answers every update on task-updates with ``answer(update)``: (topic spec, record) to produce."""

    def __init__(self, bootstrap: str, prefix: str, answer: Callable[[dict], tuple[topics.TopicSpec, dict]]):
        self.bootstrap, self.prefix, self.answer = bootstrap, prefix, answer
        self.updates: list[dict] = []
        self.failure: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stand-in-worker", daemon=True)

    def _run(self) -> None:
        try:
            for item in read_topic(self.bootstrap, f"{self.prefix}{topics.TASK_UPDATES.name}", Codec(),
                                   follow=True, stop=self.stop):
                assert not isinstance(item, DecodeError), item
                self.updates.append(item[1])
                spec, record = self.answer(item[1])
                produce(self.bootstrap, self.prefix, spec, [record])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.failure = exc

    def __enter__(self) -> "StandInWorker":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the stand-in worker did not stop"
        if self.failure is not None:
            raise self.failure


def reject_as_unknown(update: dict) -> tuple[topics.TopicSpec, dict]:
    return topics.TASK_UPDATES_REJECTED, {
        "event_id": update["event_id"], "ts": update["ts"], "task_id": update["task_id"],
        "action": update["action"], "assignee": update["assignee"], "reason": "unknown_task",
        "message": f"there is no task {update['task_id']}", "task_status": None,
        "rejected_at": int(time.time() * 1000),
    }


def test_a_rejected_claim_prints_the_reason_and_exits_1(kafka_bootstrap, task_topics, tmp_path):
    # An old version that would look like the answer if the command read history: it must not.
    produce(kafka_bootstrap, task_topics, topics.OUTREACH_TASKS,
            [task("T-404", status="claimed", assignee="asha", updated_at=T0 + 1000 * 365 * 24 * HOUR)])
    env = forewarn_env(kafka_bootstrap, task_topics, tmp_path)
    with StandInWorker(kafka_bootstrap, task_topics, reject_as_unknown) as worker:
        result = run_forewarn(["task", "claim", "T-404", "--as", "asha", "--timeout", "60"], env)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == "forewarn task: claim T-404 rejected: unknown_task: there is no task T-404"
    (update,) = worker.updates
    assert {k: update[k] for k in ("task_id", "action", "assignee")} == \
        {"task_id": "T-404", "action": "claim", "assignee": "asha"}
    assert abs(update["ts"] - time.time() * 1000) < 120_000


def test_an_applied_claim_prints_the_task_and_exits_0(kafka_bootstrap, task_topics, tmp_path):
    def claim(update: dict) -> tuple[topics.TopicSpec, dict]:
        return topics.OUTREACH_TASKS, task(update["task_id"], status="claimed", assignee=update["assignee"],
                                           updated_at=update["ts"])

    env = forewarn_env(kafka_bootstrap, task_topics, tmp_path)
    with StandInWorker(kafka_bootstrap, task_topics, claim) as worker:
        result = run_forewarn(["task", "claim", "T-123", "--as", "asha"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "task T-123 claimed by asha (P2, customer-success): Call the customer about T-123."
    (update,) = worker.updates
    messages = list(read_topic(kafka_bootstrap, f"{task_topics}{topics.TASK_UPDATES.name}", Codec()))
    assert [record for _, record in messages] == [update]


def test_an_unanswered_action_times_out_naming_the_worker(kafka_bootstrap, task_topics, tmp_path):
    env = forewarn_env(kafka_bootstrap, task_topics, tmp_path)
    result = run_forewarn(["task", "done", "T-1", "--as", "asha", "--timeout", "2"], env)
    assert result.returncode == 1
    assert result.stderr.strip() == ("forewarn task: done T-1: nothing answered within 2 seconds; the update was "
                                     "sent, but the worker (`forewarn up`) must be running to apply it")
    (update,) = [record for _, record in
                 read_topic(kafka_bootstrap, f"{task_topics}{topics.TASK_UPDATES.name}", Codec())]
    assert (update["task_id"], update["action"], update["assignee"]) == ("T-1", "done", "asha")


def test_an_update_the_broker_takes_is_a_task_update_keyed_by_its_task(kafka_bootstrap, fresh_prefix):
    from streams.tasks_cli import send_update, task_update

    settings = Settings(topic_prefix=fresh_prefix)
    ensure_topics(settings, kafka_bootstrap, TASK_TOPICS)
    update = task_update("T-1", "claim", "asha", now_ms=T0)
    assert send_update(settings, kafka_bootstrap, Codec(), update) is None
    (message,) = read_raw(kafka_bootstrap, f"{fresh_prefix}task-updates", expected=1)
    assert message.key() == b"T-1"
    assert Codec().decode(message.value()) == ("forewarn.TaskUpdate", update)
