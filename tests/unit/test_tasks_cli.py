"""What `forewarn tasks` shows a rep and how `forewarn task` reads the worker's answer: streams.tasks_cli."""

from __future__ import annotations

import os

import pytest

from schemas.codec import Codec, schema_for
from streams import cli, produce
from streams.settings import Settings
from streams.tasks_cli import (
    ACTIONS,
    ArgumentError,
    answer_to,
    applied_line,
    check_queue,
    check_task_arguments,
    count_line,
    latest_per_task,
    rejected_line,
    send_update,
    task_table,
    task_update,
    tasks_to_show,
    unanswered_line,
)

T0 = 1_772_442_900_000  # 2026-03-02T09:15:00Z
HOUR = 3_600_000


def task(task_id: str, **fields) -> dict:
    return {
        "task_id": task_id, "alert_id": f"a-{task_id}", "rule": "out_of_stock_open_order", "customer_id": "c-1",
        "priority": "P2", "queue": "customer-success", "action": "Call the customer and offer an alternative.",
        "due_by": T0 + HOUR, "status": "open", "assignee": None, "context": {}, "created_at": T0,
        "updated_at": T0, **fields,
    }


# -- the latest version of each task


def test_the_version_with_the_greatest_updated_at_wins_whatever_the_order_read():
    claimed = task("T-1", status="claimed", assignee="asha", updated_at=T0 + 60_000)
    versions = [task("T-1"), claimed, task("T-1", status="open", updated_at=T0 + 30_000), task("T-2")]
    latest = latest_per_task(versions)
    assert latest == {"T-1": claimed, "T-2": task("T-2")}


def test_of_versions_with_equal_updated_at_the_later_message_wins():
    first = task("T-1", status="claimed", assignee="asha", updated_at=T0 + 5)
    second = task("T-1", status="cancelled", updated_at=T0 + 5)
    assert latest_per_task([first, second])["T-1"] is second
    assert latest_per_task([second, first])["T-1"] is first


# -- which tasks, in what order


def test_only_open_and_claimed_tasks_are_shown_unless_all_is_asked_for():
    tasks = [task("T-1"), task("T-2", status="claimed", assignee="asha"), task("T-3", status="done"),
             task("T-4", status="cancelled")]
    assert [t["task_id"] for t in tasks_to_show(tasks)] == ["T-1", "T-2"]
    assert [t["task_id"] for t in tasks_to_show(tasks, include_all=True)] == ["T-1", "T-2", "T-3", "T-4"]


def test_a_queue_shows_only_its_own_tasks():
    tasks = [task("T-1", queue="billing"), task("T-2"), task("T-3", queue="billing", status="done")]
    assert [t["task_id"] for t in tasks_to_show(tasks, queue="billing")] == ["T-1"]
    assert [t["task_id"] for t in tasks_to_show(tasks, queue="billing", include_all=True)] == ["T-1", "T-3"]
    assert tasks_to_show(tasks, queue="it") == []


def test_tasks_are_ordered_by_priority_then_due_by_then_task_id():
    tasks = [
        task("T-5", priority="P4", due_by=T0),
        task("T-4", priority="P2", due_by=T0 + 2 * HOUR),
        task("T-3", priority="P2", due_by=T0 + HOUR),
        task("T-2", priority="P2", due_by=T0 + HOUR),
        task("T-1", priority="P1", due_by=T0 + 9 * HOUR),
    ]
    assert [t["task_id"] for t in tasks_to_show(tasks)] == ["T-1", "T-2", "T-3", "T-4", "T-5"]


# -- how they read


def test_the_table_has_the_id_first_every_field_and_the_customers_name_on_one_line_and_the_action_below():
    shown = [task("T-10", priority="P1", queue="fulfillment", due_by=T0, rule="order_short", customer_id="c-9",
                  context={"customer_name": "Priya Nair"}),
             task("T-2", status="claimed", assignee="asha")]
    lines = task_table(shown)
    assert len(lines) == 4
    assert lines[0].split() == ["T-10", "P1", "fulfillment", "open", "2026-03-02", "09:15", "order_short", "Priya",
                                "Nair", "(c-9)"]
    assert lines[1] == "    Call the customer and offer an alternative."
    assert lines[2].split() == ["T-2", "P2", "customer-success", "claimed", "by", "asha", "2026-03-02", "10:15",
                                "out_of_stock_open_order", "c-1"]
    # Columns line up: each field starts at the same place on every task's line.
    assert lines[0].index("2026-03-02") == lines[2].index("2026-03-02")
    assert lines[0].index("P1") == lines[2].index("P2")
    assert task_table([]) == []


def test_the_count_line_counts_each_status_and_the_queues():
    shown = [task("T-1"), task("T-2", queue="billing"), task("T-3", status="claimed", assignee="asha")]
    assert count_line(shown) == "3 open cases (2 open, 1 claimed) in 2 queues"
    assert count_line(shown[:1]) == "1 open case (1 open, 0 claimed) in 1 queue"
    assert count_line(shown[:1], queue="customer-success") == \
        "1 open case (1 open, 0 claimed) in queue customer-success"
    assert count_line([]) == "0 open cases"
    assert count_line([], queue="it") == "0 open cases in queue it"
    everything = shown + [task("T-4", status="done")]
    assert count_line(everything, include_all=True) == \
        "4 cases (2 open, 1 claimed, 1 done, 0 cancelled) in 2 queues"


# -- arguments


def test_an_unknown_queue_is_refused_naming_the_valid_ones():
    check_queue(None)
    check_queue("swarm")
    with pytest.raises(ArgumentError) as refused:
        check_queue("sales")
    assert str(refused.value) == ("--queue 'sales' is not a queue; expected one of fulfillment, support-leads, "
                                  "swarm, customer-success, billing, it")


@pytest.mark.parametrize(("task_id", "name", "timeout", "named"), [
    ("", "asha", 30.0, "TASK_ID"),
    ("  ", "asha", 30.0, "TASK_ID"),
    ("T-1", "", 30.0, "--as"),
    ("T-1", " ", 30.0, "--as"),
    ("T-1", "asha", 0.0, "--timeout"),
    ("T-1", "asha", -1.0, "--timeout"),
    ("T-1", "asha", float("nan"), "--timeout"),
])
def test_task_arguments_that_cannot_be_used_are_refused_naming_the_argument(task_id, name, timeout, named):
    with pytest.raises(ArgumentError) as refused:
        check_task_arguments(task_id, name, timeout)
    assert str(refused.value).startswith(named)


@pytest.fixture
def no_kafka(monkeypatch, tmp_path):
    """No FOREWARN_KAFKA and no `forewarn up`: anything that tried to reach Kafka would fail with a SettingsError."""
    for name in list(os.environ):
        if name.startswith("FOREWARN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FOREWARN_DATA_DIR", str(tmp_path / "data"))


@pytest.mark.parametrize(("argv", "message"), [
    (["tasks", "--queue", "sales"], "forewarn: --queue 'sales' is not a queue; expected one of fulfillment, "),
    (["task", "claim", "", "--as", "asha"], "forewarn: TASK_ID is empty"),
    (["task", "claim", "T-1", "--as", ""], "forewarn: --as is empty"),
    (["task", "done", "T-1", "--as", "asha", "--timeout", "0"], "forewarn: --timeout 0: expected"),
])
def test_the_command_refuses_bad_arguments_with_exit_2_before_looking_for_kafka(no_kafka, capfd, argv, message):
    assert cli.main(argv) == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert err.startswith(message)
    assert "Kafka" not in err


def test_an_action_the_command_does_not_know_is_refused_by_the_parser(no_kafka, capfd):
    assert cli.main(["task", "reopen", "T-1", "--as", "asha"]) == 2
    assert capfd.readouterr().err == "forewarn: 'reopen' is not a task action; expected one of show, claim, done, release\n"


def test_the_actions_are_the_task_update_schema_s():
    (action,) = [f for f in schema_for("forewarn.TaskUpdate")["fields"] if f["name"] == "action"]
    assert tuple(action["type"]["symbols"]) == ACTIONS


# -- an action and the worker's answer


def test_a_task_update_is_a_task_update_record_with_a_fresh_event_id():
    first = task_update("T-1", "claim", "asha", now_ms=T0)
    second = task_update("T-1", "claim", "asha", now_ms=T0)
    assert {k: v for k, v in first.items() if k != "event_id"} == \
        {"ts": T0, "task_id": "T-1", "action": "claim", "assignee": "asha"}
    assert first["event_id"] != second["event_id"] and len(first["event_id"]) == 36


CLAIM = {"event_id": "e-1", "ts": T0, "task_id": "T-1", "action": "claim", "assignee": "asha"}


def test_a_task_version_answers_a_claim_once_it_is_claimed_by_the_rep_no_earlier_than_the_claim():
    claimed = task("T-1", status="claimed", assignee="asha", updated_at=T0)
    assert answer_to(CLAIM, "forewarn.OutreachTask", claimed).applied
    assert answer_to(CLAIM, "forewarn.OutreachTask", dict(claimed, updated_at=T0 - 1)) is None
    assert answer_to(CLAIM, "forewarn.OutreachTask", dict(claimed, assignee="bo")) is None
    assert answer_to(CLAIM, "forewarn.OutreachTask", dict(claimed, status="open", assignee=None)) is None
    assert answer_to(CLAIM, "forewarn.OutreachTask", dict(claimed, task_id="T-2")) is None


def test_done_and_release_are_answered_by_the_status_they_lead_to():
    done = dict(CLAIM, action="done")
    release = dict(CLAIM, action="release")
    assert answer_to(done, "forewarn.OutreachTask", task("T-1", status="done", assignee="asha", updated_at=T0))
    assert answer_to(done, "forewarn.OutreachTask", task("T-1", status="claimed", updated_at=T0)) is None
    assert answer_to(release, "forewarn.OutreachTask", task("T-1", status="open", updated_at=T0 + 1))
    assert answer_to(release, "forewarn.OutreachTask", task("T-1", status="claimed", updated_at=T0 + 1)) is None


def test_a_rejection_answers_the_update_with_its_event_id_only():
    rejection = {"event_id": "e-1", "ts": T0, "task_id": "T-1", "action": "claim", "assignee": "asha",
                 "reason": "unknown_task", "message": "there is no task T-1", "task_status": None,
                 "rejected_at": T0 + 3}
    answer = answer_to(CLAIM, "forewarn.TaskUpdateRejected", rejection)
    assert answer is not None and not answer.applied
    assert answer_to(CLAIM, "forewarn.TaskUpdateRejected", dict(rejection, event_id="e-2")) is None
    assert rejected_line(CLAIM, rejection) == \
        "forewarn task: claim T-1 rejected: unknown_task: there is no task T-1"


def test_what_the_rep_reads_after_acting():
    claimed = task("T-123", status="claimed", assignee="asha")
    assert applied_line(dict(CLAIM, task_id="T-123"), claimed) == \
        "task T-123 claimed by asha (P2, customer-success): Call the customer and offer an alternative."
    assert applied_line(dict(CLAIM, action="release"), task("T-1")).startswith("task T-1 released by asha (P2, ")
    line = unanswered_line(CLAIM, 30.0)
    assert "nothing answered within 30 seconds" in line and "`forewarn up`" in line


# The real Kafka client, at a port where nothing listens (a broker that takes the update is in
# tests/integration/test_tasks_cli.py).


def no_broker(monkeypatch, **client_config) -> str:
    from tests.unit.test_produce_lines import closed_port

    monkeypatch.setenv("FOREWARN_SINGLE_RECORD_BATCHES", "0")  # no broker to ask what kind it is
    real = produce.producer_for
    monkeypatch.setattr(produce, "producer_for", lambda bootstrap, **kw: real(bootstrap, **kw, **client_config))
    return f"127.0.0.1:{closed_port()}"


def test_an_update_nobody_acknowledges_may_or_may_not_have_been_written(monkeypatch):
    bootstrap = no_broker(monkeypatch)
    problem = send_update(Settings(topic_prefix="p-"), bootstrap, Codec(), task_update("T-1", "claim", "asha", now_ms=T0),
                          timeout=0.5)
    assert problem.startswith(f"Kafka at {bootstrap} did not acknowledge it within 0.5s, so it may or may not have "
                              "been written")


def test_an_update_kafka_does_not_take_says_why(monkeypatch):
    # The client gives up after 300 ms: the delivery report is a failure, with its reason.
    bootstrap = no_broker(monkeypatch, **{"message.timeout.ms": 300})
    problem = send_update(Settings(topic_prefix="p-"), bootstrap, Codec(), task_update("T-1", "claim", "asha", now_ms=T0),
                          timeout=10)
    assert problem == f"Kafka at {bootstrap} refused it: Local: Message timed out"
