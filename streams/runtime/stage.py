"""What a stage is to the runtime, and what the runtime offers a stage while it runs.

A stage owns one kind of entity (a session, an order, a SKU, ...): its state
in one table, every co-partitioned topic about it, and its deadlines. The
runtime (``streams.runtime.worker``) calls ``apply`` for each input event and
``fire`` for each entity whose deadline the worker clock has passed, always
with a ``StageContext`` bound to the partition at hand. Stages import
nothing from Faust and nothing from the application that wires them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from streams import topics
from streams.detectors.lifecycle import Result

if TYPE_CHECKING:
    from streams.detectors.stock import Reference
    from streams.runtime.state import StageTable


class Stage:
    name: str
    # Co-partitioned topics the stage reads.
    inputs: tuple[topics.TopicSpec, ...]
    # Schema each input may carry -> the field its message key must equal (None: unkeyed).
    keys: dict[str, str | None]
    # Further tables the stage owns beside its main one (named after the stage).
    extra_tables: tuple[str, ...] = ()
    # Deadlines are judged on the clock as it read this long ago (wall time): for stages fed by
    # other stages' signals, so that a fact already sent (a ticket answered, on its way to the
    # channel stage) is read first. While a replay runs, event time moves far in that moment.
    settle_ms: int = 0

    def apply(self, ctx: "StageContext", schema: str, record: dict) -> None:
        raise NotImplementedError

    def next_due(self, state: Any) -> int | None:
        """When the entity next needs looking at without an event; None: never (the default)."""
        return None

    @property
    def has_deadlines(self) -> bool:
        return type(self).next_due is not Stage.next_due

    def fire(self, ctx: "StageContext", key: str, state: Any, clock: int) -> None:
        raise NotImplementedError

    def tick(self, ctx: "StageContext") -> None:
        """Called for each of the stage's partitions on every runtime tick (a few times a second)."""

    def on_ready(self, partitions: frozenset[int]) -> None:
        """The stage's partitions this worker now reads, recovered (after every rebalance)."""

    def on_revoked(self) -> None:
        """Every partition is being taken away (the start of each rebalance): forget what was known of them."""


class StageContext:
    """The runtime's services for one stage, bound to the partition being processed."""

    def __init__(self, stage: Stage, tables: dict[str, "StageTable"], publish: Callable[[topics.TopicSpec, dict], None],
                 send_to_partition: Callable[[topics.TopicSpec, str, dict, int], None],
                 reference: Callable[[], "Reference"], read_up_to: Callable[[str, int], int | None],
                 watermark_of: Callable[[str, int], int | None], schedule: Callable[[int, str, Any], None]) -> None:
        self.stage = stage
        self.table = tables[stage.name]
        self.tables = tables
        self.partition = 0
        self.src: str | None = None  # topic:partition:offset of the event being applied
        self.wall_ms = 0  # when it is being applied: the alerts' detected_at
        self._publish = publish
        self._send_to_partition = send_to_partition
        self._reference = reference
        self._read_up_to = read_up_to
        self._watermark_of = watermark_of
        self._schedule = schedule

    # ------------------------------------------------------------------ state
    def get(self, key: str) -> Any:
        return self.table.get(key)

    def store(self, key: str, state: Any, finished: Callable[[Any], bool] | None = None) -> None:
        """Keep the entity's new state (or forget it when `finished`) and its next deadline."""
        if state is None or (finished is not None and finished(state)):
            self.table.delete(self.partition, key)
            self._schedule(self.partition, key, None)
        else:
            self.table.put(self.partition, key, state)
            self._schedule(self.partition, key, state)

    # ------------------------------------------------------------------ outputs
    def publish(self, spec: topics.TopicSpec, record: dict) -> None:
        self._publish(spec, record)

    def send_to_partition(self, spec: topics.TopicSpec, schema: str, record: dict, partition: int) -> None:
        """An unkeyed record of `schema` to one partition of `spec` (progress markers)."""
        self._send_to_partition(spec, schema, record, partition)

    def publish_alert(self, alert: dict) -> None:
        """An alert, and for alerts a rep should act on, the request that makes or updates its task."""
        from streams.detectors import tasks

        self._publish(topics.ALERTS, alert)
        if tasks.needs_task(alert):
            self._publish(topics.TASK_REQUESTS, tasks.request_record(alert))

    def emit(self, result: Result) -> None:
        """Everything a detector's Result asks to publish."""
        for alert in result.alerts:
            self.publish_alert(alert)
        for topic, record in result.signals:
            if record["key"] is None or record["key"] == "":
                continue  # a fact about no entity (e.g. a ticket without a customer) has no stage to go to
            self._publish(topics.BY_NAME[topic], record)
        for task in result.tasks:
            self._publish(topics.OUTREACH_TASKS, task)
        for rejection in result.rejections:
            self._publish(topics.TASK_UPDATES_REJECTED, rejection)

    # ------------------------------------------------------------------ lookups
    def reference(self) -> "Reference":
        return self._reference()

    def read_up_to(self, spec: topics.TopicSpec) -> int | None:
        """How far in event time this partition of `spec` has been read (streams.clock)."""
        return self._read_up_to(spec.name, self.partition)

    def watermark_of(self, spec: topics.TopicSpec) -> int | None:
        return self._watermark_of(spec.name, self.partition)


class EntityStage(Stage):
    """A stage whose rules are a pure detector: ``on_record`` returns (entity key, Result) or None."""

    def __init__(self, name: str, inputs: tuple[topics.TopicSpec, ...], keys: dict[str, str | None],
                 on_record: Callable[[StageContext, str, dict], tuple[str, Result] | None], *,
                 next_due: Callable[[Any], int | None] | None = None,
                 due: Callable[[StageContext, Any, int], Result] | None = None,
                 finished: Callable[[Any], bool] | None = None, settle_ms: int = 0) -> None:
        self.name, self.inputs, self.keys = name, inputs, keys
        self._on_record, self._next_due, self._due, self._finished = on_record, next_due, due, finished
        self.settle_ms = settle_ms

    @property
    def has_deadlines(self) -> bool:
        return self._next_due is not None

    def next_due(self, state: Any) -> int | None:
        return self._next_due(state) if self._next_due is not None else None

    def apply(self, ctx: StageContext, schema: str, record: dict) -> None:
        outcome = self._on_record(ctx, schema, record)
        if outcome is None:
            return
        key, result = outcome
        # Where each signal comes from, so receivers recognise repeats (lifecycle.already_applied).
        for _, sig in result.signals:
            sig["data"]["src"] = ctx.src
        if result.state is not None:
            ctx.store(key, result.state, self._finished)
        ctx.emit(result)

    def fire(self, ctx: StageContext, key: str, state: Any, clock: int) -> None:
        result = self._due(ctx, state, clock)
        ctx.store(key, result.state, self._finished)
        ctx.emit(result)
