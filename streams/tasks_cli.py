"""`forewarn tasks` and `forewarn task`: outreach tasks as a rep sees them, and a rep's actions on them.

The outreach-tasks topic holds every version of every task; a task's state is
its latest version. What a rep is shown (the latest version per task, which
tasks, in what order, in what words) and how an answer to an action is
recognised are plain functions of records here, so tests need no broker.
The Kafka parts at the end read and write the topics for the command line.

Kafka and Avro are imported inside the functions that use them, as in
streams/cli.py: the parser imports this module for its names (queues,
actions), and `forewarn --help` should not pay for a Kafka client.
"""

from __future__ import annotations

import json
import math
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable, Iterator, TextIO

from streams import topics
# The queues a task can be routed to (the OutreachTask schema's `queue` is a plain string).
from streams.detectors.tasks import QUEUES
from streams.kafka_security import kafka_client_config

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

    from schemas.codec import Codec
    from streams.settings import Settings

# forewarn.TaskUpdate's TaskAction symbols, here so the parser needs no schema; a unit test holds them equal.
ACTIONS = ("claim", "done", "release")
# What a rep works on; `forewarn tasks` without --all shows only these.
ACTIVE_STATUSES = ("open", "claimed")
DONE_WORDS = {"claim": "claimed", "done": "done", "release": "released"}
# The status a task has once the worker has applied each action.
STATUS_AFTER = {"claim": "claimed", "done": "done", "release": "open"}
DEFAULT_TIMEOUT_S = 30.0
# How long `forewarn task` waits for Kafka to acknowledge the update it sends.
DELIVERY_TIMEOUT_S = 15.0

TASK_SCHEMA = topics.OUTREACH_TASKS.schema
REJECTION_SCHEMA = topics.TASK_UPDATES_REJECTED.schema


class ArgumentError(ValueError):
    """A command-line argument is unusable; the message names the argument and what was expected."""


# ---------------------------------------------------------------- checking the arguments


def check_queue(queue: str | None) -> None:
    if queue is not None and queue not in QUEUES:
        raise ArgumentError(f"--queue {queue!r} is not a queue; expected one of {', '.join(QUEUES)}")


def check_task_arguments(task_id: str, name: str, timeout: float) -> None:
    if not task_id.strip():
        raise ArgumentError("TASK_ID is empty; give the id of the task, as `forewarn tasks` shows it")
    if not name.strip():
        raise ArgumentError("--as is empty; give your name, which becomes the task's assignee")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ArgumentError(f"--timeout {timeout:g}: expected a number of seconds above 0")


# ---------------------------------------------------------------- the task list


def latest_per_task(versions: Iterable[dict]) -> dict[str, dict]:
    """The latest version of each task by task_id: the greatest updated_at; of equal ones, the later message.

    ``versions`` are in the order they were read; a task's versions share a
    key, hence a partition, so that order is the order they were written.
    """
    latest: dict[str, dict] = {}
    for task in versions:
        known = latest.get(task["task_id"])
        if known is None or task["updated_at"] >= known["updated_at"]:
            latest[task["task_id"]] = task
    return latest


def tasks_to_show(tasks: Iterable[dict], queue: str | None = None, include_all: bool = False) -> list[dict]:
    """The tasks a rep asked for, most urgent first (see ``display_order``).

    Without ``include_all`` only open and claimed tasks; with ``queue`` only that queue's.
    """
    chosen = [task for task in tasks
              if (include_all or task["status"] in ACTIVE_STATUSES) and (queue is None or task["queue"] == queue)]
    return sorted(chosen, key=display_order)


def display_order(task: dict) -> tuple:
    """Priority (P1 first), then the soonest due_by, then task_id so equal tasks keep one order."""
    priorities = _symbols(TASK_SCHEMA, "priority")
    rank = priorities.index(task["priority"]) if task["priority"] in priorities else len(priorities)
    return rank, task["due_by"], task["task_id"]


def utc_minute(ms: int) -> str:
    """Epoch milliseconds as `YYYY-MM-DD HH:MM` in UTC."""
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def status_text(task: dict) -> str:
    """The status, with who holds or finished the task: `open`, `claimed by asha`, `done by asha`."""
    if task.get("assignee") and task["status"] != "open":
        return f"{task['status']} by {task['assignee']}"
    return task["status"]


def customer_text(task: dict) -> str:
    """`Priya Nair (C-7)` when the task knows the customer's name, else the customer id."""
    name = (task.get("context") or {}).get("customer_name")
    return f"{name} ({task['customer_id']})" if name and name != task["customer_id"] else task["customer_id"]


def problems_text(task: dict) -> str:
    """The most urgent problem's rule, and how many more open ones the case has: `payment_failed +2`."""
    still = [p for p in task.get("problems") or [] if p["status"] == "open"]
    return task["rule"] + (f" +{len(still) - 1}" if len(still) > 1 else "")


def task_table(tasks: list[dict]) -> list[str]:
    """Two lines per case: its fields in aligned columns (the id first), then its action, indented."""
    rows = [[task["task_id"], task["priority"], task["queue"], status_text(task), utc_minute(task["due_by"]),
             problems_text(task), customer_text(task)] for task in tasks]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))] if rows else []
    lines = []
    for task, row in zip(tasks, rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        lines.append(f"    {task['action']}")
    return lines


def count_line(tasks: list[dict], queue: str | None = None, include_all: bool = False) -> str:
    """`3 open cases (2 open, 1 claimed) in 2 queues`; with --all every status; with --queue that queue."""
    statuses = _symbols(TASK_SCHEMA, "status") if include_all else ACTIVE_STATUSES
    noun = "case" if len(tasks) == 1 else "cases"
    head = f"{len(tasks)} {noun}" if include_all else f"{len(tasks)} open {noun}"
    if not tasks:
        return head + (f" in queue {queue}" if queue else "")
    per_status = ", ".join(f"{sum(task['status'] == status for task in tasks)} {status}" for status in statuses)
    if queue:
        return f"{head} ({per_status}) in queue {queue}"
    queues = len({task["queue"] for task in tasks})
    return f"{head} ({per_status}) in {queues} {'queue' if queues == 1 else 'queues'}"


@lru_cache(maxsize=None)
def _symbols(schema_name: str, field: str) -> tuple[str, ...]:
    """The symbols of an enum field, in the order the schema file declares them."""
    from schemas.codec import schema_for

    for entry in schema_for(schema_name)["fields"]:
        if entry["name"] == field:
            return tuple(entry["type"]["symbols"])
    raise KeyError(f"{schema_name} has no field {field}")


# ---------------------------------------------------------------- a rep's action and its answer


def task_update(task_id: str, action: str, name: str, now_ms: int, event_id: str | None = None) -> dict:
    """A forewarn.TaskUpdate record for the task-updates topic."""
    if action not in ACTIONS:
        raise ArgumentError(f"action {action!r}: expected one of {', '.join(ACTIONS)}")
    return {"event_id": event_id or str(uuid.uuid4()), "ts": now_ms, "task_id": task_id, "action": action,
            "assignee": name}


@dataclass(frozen=True)
class Answer:
    """The worker's answer to one update: the task version that applied it, or the rejection."""

    applied: bool
    record: dict


def answer_to(update: dict, schema_name: str, record: dict) -> Answer | None:
    """Whether ``record`` (of ``schema_name``) answers ``update``; None if it is about something else.

    A task version answers when it is the same task, written no earlier than
    the update, with the status (and, for a claim, the assignee) the action
    leads to. A rejection answers when it carries the update's event_id.
    """
    if schema_name == TASK_SCHEMA:
        if record["task_id"] != update["task_id"] or record["updated_at"] < update["ts"]:
            return None
        if record["status"] != STATUS_AFTER[update["action"]]:
            return None
        if update["action"] == "claim" and record.get("assignee") != update["assignee"]:
            return None
        return Answer(applied=True, record=record)
    if schema_name == REJECTION_SCHEMA and record["event_id"] == update["event_id"]:
        return Answer(applied=False, record=record)
    return None


def applied_line(update: dict, task: dict) -> str:
    """`task T-123 claimed by asha (P2, customer-success): Call the customer ...`"""
    return (f"task {update['task_id']} {DONE_WORDS[update['action']]} by {update['assignee']} "
            f"({task['priority']}, {task['queue']}): {task['action']}")


def rejected_line(update: dict, rejection: dict) -> str:
    """`forewarn task: claim T-123 rejected: unknown_task: <message>`"""
    return (f"forewarn task: {update['action']} {update['task_id']} rejected: "
            f"{rejection['reason']}: {rejection['message']}")


def unanswered_line(update: dict, timeout: float) -> str:
    seconds = "second" if timeout == 1 else "seconds"
    return (f"forewarn task: {update['action']} {update['task_id']}: nothing answered within {timeout:g} {seconds}; "
            f"the update was sent, but the worker (`forewarn up`) must be running to apply it")


# ---------------------------------------------------------------- Kafka


class FromNow:
    """One consumer of every partition of some topics, from the end offsets they had when it was made.

    Make it before producing a request, then read the answer: the offsets are
    taken explicitly (not "latest", which the client resolves only when it
    first fetches) so an answer written right after the request is never
    missed, and nothing older is read.
    """

    def __init__(self, bootstrap: str, topic_names: Iterable[str], metadata_timeout: float = 10.0) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from streams.produce import quiet_client_logger

        self.consumer: Consumer = Consumer(kafka_client_config(bootstrap, {
            "group.id": f"forewarn-task-{uuid.uuid4()}",  # assigned, never subscribed or committed
            "enable.auto.commit": False,
            "logger": quiet_client_logger(),
        }))
        try:
            assignment = []
            for topic in topic_names:
                for partition in partitions_of(self.consumer, topic, bootstrap, metadata_timeout):
                    _, end = self.consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                                 timeout=metadata_timeout)
                    assignment.append(TopicPartition(topic, partition, end))
            self.consumer.assign(assignment)
        except BaseException:
            self.consumer.close()
            raise

    def messages(self, deadline: float) -> Iterator[Message]:
        """Messages as they arrive, until the monotonic ``deadline``."""
        from confluent_kafka import KafkaError, KafkaException

        while (left := deadline - time.monotonic()) > 0:
            for message in self.consumer.consume(num_messages=100, timeout=min(left, 0.5)):
                error = message.error()
                if error is None:
                    yield message
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> "FromNow":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def partitions_of(consumer: Consumer, topic: str, bootstrap: str, timeout: float = 10.0) -> list[int]:
    """The partition ids of ``topic``; TopicNotFound if the broker does not have it."""
    from streams.follow import TopicNotFound

    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise TopicNotFound(topic, bootstrap)
    return sorted(meta.partitions)


def list_tasks(settings: Settings, bootstrap: str, queue: str | None = None, as_json: bool = False,
               include_all: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`forewarn tasks`: read outreach-tasks to its current end and print the tasks asked for.

    Tasks go to ``out`` (a table, or JSON lines), the count line to ``err``
    (standard output and standard error by default).
    Raises TopicNotFound when the topic does not exist.
    """
    from schemas.codec import Codec, DecodeError, record_to_json
    from streams.follow import read_topic

    out, err = out or sys.stdout, err or sys.stderr
    check_queue(queue)
    codec = Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
    versions = []
    for item in read_topic(bootstrap, settings.topic(topics.OUTREACH_TASKS.name), codec):
        if isinstance(item, DecodeError):
            print(f"forewarn tasks: skipped an undecodable message: {item}", file=err)
        elif item[0] != TASK_SCHEMA:
            print(f"forewarn tasks: skipped a {item[0]} message (expected {TASK_SCHEMA})", file=err)
        else:
            versions.append(item[1])
    shown = tasks_to_show(latest_per_task(versions).values(), queue=queue, include_all=include_all)
    if as_json:
        for task in shown:
            print(json.dumps(record_to_json(TASK_SCHEMA, task), ensure_ascii=False), file=out)
    else:
        for line in task_table(shown):
            print(line, file=out)
    out.flush()
    print(count_line(shown, queue=queue, include_all=include_all), file=err)
    return 0


def show_task(settings: Settings, bootstrap: str, task_id: str, as_json: bool = False,
              out: TextIO | None = None, err: TextIO | None = None, now_ms: int | None = None) -> int:
    """`forewarn task show TASK_ID`: the task's latest version as a rep reads it (streams.task_view).

    Exit status 1 when no task has that id. Raises TopicNotFound when the topic does not exist.
    """
    from schemas.codec import Codec, DecodeError, record_to_json
    from streams.follow import read_topic
    from streams.task_view import render, structured

    out, err = out or sys.stdout, err or sys.stderr
    codec = Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
    versions = [item[1] for item in read_topic(bootstrap, settings.topic(topics.OUTREACH_TASKS.name), codec)
                if not isinstance(item, DecodeError) and item[0] == TASK_SCHEMA]
    task = latest_per_task(versions).get(task_id)
    if task is None:
        print(f"forewarn: no task {task_id} on {settings.topic(topics.OUTREACH_TASKS.name)}; `forewarn tasks "
              f"--all` lists them", file=err)
        return 1
    if as_json:
        record = record_to_json(TASK_SCHEMA, task)
        print(json.dumps(dict(structured(record), due_by=record["due_by"], created_at=record["created_at"],
                              updated_at=record["updated_at"]), ensure_ascii=False), file=out)
    else:
        print(render(task, now_ms=int(time.time() * 1000) if now_ms is None else now_ms), file=out)
    return 0


def act_on_task(settings: Settings, bootstrap: str, action: str, task_id: str, name: str,
                timeout: float = DEFAULT_TIMEOUT_S, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`forewarn task ACTION TASK_ID --as NAME`: send the update, then wait for the worker's answer.

    0 once a task version shows the action applied; 1 if the worker rejected
    it, if Kafka did not take the update, or if nothing answered within
    ``timeout`` seconds. Raises TopicNotFound when a topic does not exist.
    Whether the task exists is the worker's to say (a rejection, unknown_task).
    """
    from schemas.codec import Codec, DecodeError

    out, err = out or sys.stdout, err or sys.stderr
    check_task_arguments(task_id, name, timeout)
    codec = Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
    update = task_update(task_id, action, name, now_ms=int(time.time() * 1000))
    answers = [settings.topic(spec.name) for spec in (topics.OUTREACH_TASKS, topics.TASK_UPDATES_REJECTED)]
    with FromNow(bootstrap, answers) as watch:
        partitions_of(watch.consumer, settings.topic(topics.TASK_UPDATES.name), bootstrap)
        problem = send_update(settings, bootstrap, codec, update)
        if problem is not None:
            print(f"forewarn task: {action} {task_id}: the update was not delivered: {problem}", file=err)
            return 1
        for message in watch.messages(deadline=time.monotonic() + timeout):
            try:
                schema_name, record = codec.decode(message.value())
            except DecodeError as exc:
                print(f"forewarn task: skipped an undecodable message on {message.topic()}: {exc}", file=err)
                continue
            answer = answer_to(update, schema_name, record)
            if answer is None:
                continue
            if answer.applied:
                print(applied_line(update, answer.record), file=out)
                return 0
            print(rejected_line(update, answer.record), file=err)
            return 1
    print(unanswered_line(update, timeout), file=err)
    return 1


def send_update(settings: Settings, bootstrap: str, codec: Codec, update: dict,
                timeout: float = DELIVERY_TIMEOUT_S) -> str | None:
    """Produce ``update`` to task-updates keyed by task_id; None once Kafka acknowledged it, else why not."""
    from confluent_kafka import KafkaError, KafkaException

    from streams.produce import message_key, producer_for, quiet_client_logger

    spec = topics.TASK_UPDATES
    topic = settings.topic(spec.name)
    value = codec.encode(spec.schema, update, topic=topic)
    outcome: list = []
    producer = producer_for(bootstrap, logger=quiet_client_logger())
    try:
        producer.produce(topic, key=message_key(spec, update), value=value,
                         on_delivery=lambda error, _message: outcome.append(error))
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        return f"the Kafka client refused it: {error.str() if isinstance(error, KafkaError) else exc}"
    producer.flush(timeout)
    if not outcome:
        return (f"Kafka at {bootstrap} did not acknowledge it within {timeout:g}s, so it may or may not have "
                f"been written (check that the broker is running: FOREWARN_KAFKA, or `forewarn up`)")
    if outcome[0] is not None:
        return f"Kafka at {bootstrap} refused it: {outcome[0].str()}"
    return None
