"""`forewarn status`: what an operator needs to know about a running stack, and whether it is healthy.

For the stack it finds (the broker a running `forewarn up` recorded in the data
directory, or FOREWARN_KAFKA) it shows:

* each detection worker that reports into the data directory: its clock
  against wall time, its partitions (assigned, behind), its dead letters and
  how long ago it last reported (workers rewrite their status file every
  second; ``streams.runtime.worker.Runtime.write_status``);
* the workers' consumer group: lag per input topic, and how many members it has;
* the sink: its group's lag, rows stored, the last write to ClickHouse and any
  store error (from its status file, when it runs from this data directory);
* the notifier (`forewarn notify`), when it runs or ran: its group's lag on
  ``alerts`` and its deliveries per destination.

The stack is unhealthy when a worker, the sink or the notifier has stopped reporting
(``STALE_S``), the sink cannot write, or events wait in a group nobody reads.
``gather`` collects, ``render`` prints; both are pure apart from the reading.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime

from streams import topics
from streams.settings import Settings

__all__ = ["StackStatus", "STALE_S", "gather", "render"]

# A worker or sink whose status file is older than this has stopped (both write it every second).
STALE_S = 10.0


@dataclass
class WorkerReport:
    name: str
    clock_ms: int | None
    assigned: int
    behind: int
    dead_lettered: int
    age_s: float


@dataclass
class GroupLag:
    group: str
    # topic -> messages not yet read by the group; None when the broker did not tell.
    per_topic: dict[str, int] | None
    members: int | None
    # The broker's word for the group: "stable", "empty" (it ran and stopped), "dead" (never ran), ...
    state: str | None = None


@dataclass
class StackStatus:
    bootstrap: str
    wall_ms: int
    workers: list[WorkerReport] = field(default_factory=list)
    worker_group: GroupLag | None = None
    sink_group: GroupLag | None = None
    sink: dict | None = None
    sink_age_s: float | None = None
    notify_group: GroupLag | None = None
    notifier: dict | None = None
    notifier_age_s: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


def _worker_reports(settings: Settings, now: float) -> list[WorkerReport]:
    reports = []
    base = settings.data_dir / "faust"
    for path in sorted(base.glob(f"{settings.topic('forewarn')}-*/status.json")):
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        name = path.parent.name[len(settings.topic("forewarn")) + 1:]
        written = _parse_iso(status.get("updated_at"))
        reports.append(WorkerReport(
            name=name, clock_ms=status.get("clock_ms"), assigned=int(status.get("partitions_assigned") or 0),
            behind=int(status.get("partitions_behind") or 0), dead_lettered=int(status.get("dead_lettered") or 0),
            age_s=max(0.0, now - written) if written is not None else float("inf")))
    return reports


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _group_lag(probe, admin, group: str, names: list[str]) -> GroupLag:
    behind = probe.by_partition(group, names)
    per_topic = None
    if behind is not None:
        per_topic = {name: 0 for name in names}
        for (topic, _partition), lag in behind.items():
            per_topic[topic] += lag
    members = state = None
    try:
        described = admin.describe_consumer_groups([group])[group].result(timeout=probe.timeout)
        members = len(described.members)
        state = getattr(described.state, "name", str(described.state)).lower()
    except Exception:  # noqa: BLE001 - an unknown group or a slow broker: members unknown
        members = None
    return GroupLag(group, per_topic, members, state)


def gather(settings: Settings, bootstrap: str, *, now: float | None = None) -> StackStatus:
    """Read the status files and ask the broker; the problems found decide health."""
    from sinks.clickhouse.sink import read_status as sink_status
    from sinks.clickhouse.tables import SINK_TOPICS
    from streams.follow import LagProbe
    from streams.notify import GROUP as NOTIFY_GROUP, read_status as notify_status

    now = time.time() if now is None else now
    status = StackStatus(bootstrap=bootstrap, wall_ms=int(now * 1000))
    status.workers = _worker_reports(settings, now)
    with LagProbe(bootstrap) as probe:
        inputs = [settings.topic(spec.name) for spec in topics.GROUP_INPUTS]
        status.worker_group = _group_lag(probe, probe.admin, settings.topic("forewarn"), inputs)
        sink_inputs = [settings.topic(spec.name) for spec in SINK_TOPICS]
        status.sink_group = _group_lag(probe, probe.admin, settings.topic("forewarn-sink"), sink_inputs)
        status.notify_group = _group_lag(probe, probe.admin, settings.topic(NOTIFY_GROUP),
                                         [settings.topic(topics.ALERTS.name)])
    status.notifier = notify_status(settings)
    if status.notifier is not None and status.notifier.get("updated_at"):
        status.notifier_age_s = max(0.0, now - float(status.notifier["updated_at"]))
    status.sink = sink_status(settings)
    if status.sink is not None and status.sink.get("written_at"):
        status.sink_age_s = max(0.0, now - float(status.sink["written_at"]))

    problems = status.problems
    for worker in status.workers:
        if worker.age_s > STALE_S:
            problems.append(f"worker {worker.name} has not reported for {_age(worker.age_s)} (stalled or stopped)")
    if status.sink is not None:
        if status.sink_age_s is not None and status.sink_age_s > STALE_S:
            problems.append(f"the sink has not reported for {_age(status.sink_age_s)} (stalled or stopped)")
        elif status.sink.get("store_error"):
            problems.append(f"the sink cannot write to ClickHouse: {status.sink['store_error']}")
    if status.notifier_age_s is not None and status.notifier_age_s > STALE_S:
        problems.append(f"the notifier has not reported for {_age(status.notifier_age_s)} (stalled or stopped)")
    for lag in (status.worker_group, status.sink_group, status.notify_group):
        if lag is None or lag.per_topic is None:
            continue
        waiting = sum(lag.per_topic.values())
        # A group that ran and has no member left ("empty"); one that never ran ("dead": a stack
        # without a sink, say) is not a fault.
        if waiting and lag.members == 0 and lag.state == "empty":
            problems.append(f"{waiting:,} {_plural(waiting, 'message')} wait in group {lag.group}, which has no "
                            f"running member")
    return status


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _age(seconds: float) -> str:
    if seconds == float("inf"):
        return "ever"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _clock_line(worker: WorkerReport, wall_ms: int) -> str:
    if worker.clock_ms is None:
        return "clock not started (no event read yet)"
    from schemas.codec import format_timestamp_ms

    behind = (wall_ms - worker.clock_ms) / 1000
    where = f"{behind:.1f} s behind wall time" if behind >= 0 else f"{-behind:.1f} s ahead of wall time"
    return f"clock {format_timestamp_ms(worker.clock_ms)} ({where})"


def render(status: StackStatus, settings: Settings) -> str:
    lines = [f"Kafka at {status.bootstrap}; topic prefix {settings.topic_prefix or '(none)'}"]
    lines.append("workers:")
    if not status.workers:
        lines.append(f"  none report into {settings.data_dir / 'faust'} (workers run elsewhere, or not at all)")
    for worker in status.workers:
        state = "STALLED" if worker.age_s > STALE_S else "ok"
        lines.append(f"  {worker.name:10} {state:8} {_clock_line(worker, status.wall_ms)}; "
                     f"{worker.assigned} {_plural(worker.assigned, 'partition')} assigned, {worker.behind} behind; "
                     f"{worker.dead_lettered} dead {_plural(worker.dead_lettered, 'letter')}; "
                     f"reported {_age(worker.age_s)} ago")
    notifier_ran = status.notifier is not None or (status.notify_group is not None
                                                   and status.notify_group.state not in (None, "dead"))
    for title, lag in (("input lag of the workers", status.worker_group), ("lag of the sink", status.sink_group),
                       ("lag of the notifier", status.notify_group if notifier_ran else None)):
        if lag is None:
            continue
        if lag.state == "dead":
            lines.append(f"{title} (group {lag.group}): not running")
            continue
        members = "members unknown" if lag.members is None else f"{lag.members} {_plural(lag.members, 'member')}"
        if lag.per_topic is None:
            lines.append(f"{title} (group {lag.group}, {members}): unknown (topics missing, or the broker did not "
                         f"answer)")
            continue
        total = sum(lag.per_topic.values())
        lines.append(f"{title} (group {lag.group}, {members}): {total:,} {_plural(total, 'message')}")
        waiting = [f"{topic[len(settings.topic_prefix):]} {n:,}" for topic, n in lag.per_topic.items() if n]
        if waiting:
            lines.append("  " + ", ".join(waiting))
    if status.sink is None:
        lines.append(f"sink: no status in {settings.data_dir / 'sink'} (it runs elsewhere, or not at all)")
    else:
        sink = status.sink
        last = sink.get("last_flush_at")
        flushed = f"last write {_age(max(0.0, status.wall_ms / 1000 - float(last)))} ago" if last else "no write yet"
        lines.append(f"sink: {int(sink.get('stored_rows') or 0):,} rows stored, {flushed}; "
                     f"{int(sink.get('dead_letters') or 0)} dead {_plural(int(sink.get('dead_letters') or 0), 'letter')}; "
                     f"reported {_age(status.sink_age_s or 0.0)} ago")
    if status.notifier is not None:
        delivered = status.notifier.get("delivered") or {}
        shown = ", ".join(f"{name} {n:,}" for name, n in sorted(delivered.items())) or "nothing yet"
        lines.append(f"notifier: {int(status.notifier.get('read') or 0):,} alert "
                     f"{_plural(int(status.notifier.get('read') or 0), 'message')} read; delivered: {shown}; "
                     f"reported {_age(status.notifier_age_s or 0.0)} ago")
    if status.healthy:
        lines.append("healthy")
    else:
        lines.append("UNHEALTHY:")
        lines.extend(f"  {problem}" for problem in status.problems)
    return "\n".join(lines)


def as_json(status: StackStatus) -> str:
    return json.dumps({
        "bootstrap": status.bootstrap, "healthy": status.healthy, "problems": status.problems,
        "workers": [w.__dict__ | {"age_s": None if w.age_s == float("inf") else round(w.age_s, 1)}
                    for w in status.workers],
        "worker_lag": status.worker_group.__dict__ if status.worker_group else None,
        "sink_lag": status.sink_group.__dict__ if status.sink_group else None,
        "sink": status.sink,
        "notify_lag": status.notify_group.__dict__ if status.notify_group else None,
        "notifier": status.notifier,
    })
