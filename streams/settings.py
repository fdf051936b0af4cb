"""One settings object for every Forewarn process, read from FOREWARN_* environment variables.

Nothing here connects anywhere: the settings only say where things are. Every
other module receives a ``Settings`` instead of reading the environment itself,
so a test or a replay can build its own without touching global state.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from streams.thresholds import ThresholdError, Thresholds


class SettingsError(ValueError):
    """A FOREWARN_* variable holds something unusable; the message names it."""


def _int_env(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def _choice_env(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


# FOREWARN_KAFKA_HEAP: a JVM heap size such as 256m or 1g.
HEAP_PATTERN = re.compile(r"^[1-9][0-9]*[mMgG]$")


def _heap_env(env: dict[str, str]) -> str:
    raw = env.get("FOREWARN_KAFKA_HEAP", "").strip()
    if not raw:
        return "256m"
    if not HEAP_PATTERN.match(raw):
        raise SettingsError(f"FOREWARN_KAFKA_HEAP={raw!r}: expected a heap size such as 256m or 1g")
    return raw


@dataclass(frozen=True)
class Settings:
    # Where Kafka is: a bootstrap address, or None for the embedded broker.
    kafka: str | None = None
    # Without FOREWARN_KAFKA: "kafka", one Apache Kafka node keeping its data under data_dir
    # (streams.kafka_node), or "memory", the in-memory broker for throwaway runs (streams.embedded).
    embedded: str = "kafka"
    # Maximum heap of the embedded Apache Kafka node.
    kafka_heap: str = "256m"
    # Where ClickHouse is: an http(s):// URL, or None for chDB under data_dir.
    clickhouse: str | None = None
    # Confluent-compatible schema registry; None means Avro single-object encoding.
    schema_registry: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(".forewarn"))
    # Prefix for every topic and consumer-group name, so environments share a cluster.
    topic_prefix: str = ""
    # Whether FOREWARN_TOPIC_PREFIX was given at all: a command run beside `forewarn up`
    # takes up's prefix when it was not, and refuses a different one when it was.
    topic_prefix_given: bool = False
    partitions: int = 4
    replication_factor: int = 1
    # How long (ms) closed windows are kept for events that arrive behind the clock.
    allowed_lateness_ms: int = 10 * 60 * 1000
    # How far back in event time the SKU stage keeps history to apply events read late at their own time.
    reorder_horizon_ms: int = 24 * 60 * 60 * 1000
    # How far ahead of wall time an event may be stamped before it is refused (streams.skew).
    max_clock_skew_ms: int = 5 * 60 * 1000
    # Open orders one SKU's shortage must touch before operations get a roll-up alert.
    stockout_rollup_orders: int = 20
    # Alternatives offered per short line.
    max_alternatives: int = 3
    # Faust web server port for the worker; 0 turns the web server off.
    web_port: int = 0
    worker_id: str = ""
    # Consumer-group session timeout of the workers; 0 picks one for the broker (streams.brokers).
    session_timeout_ms: int = 0
    # Every rule's thresholds (streams.thresholds), each from its own FOREWARN_* variable.
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        return cls(
            kafka=env.get("FOREWARN_KAFKA") or None,
            embedded=_choice_env(env, "FOREWARN_EMBEDDED", "kafka", ("kafka", "memory")),
            kafka_heap=_heap_env(env),
            clickhouse=env.get("FOREWARN_CLICKHOUSE") or None,
            schema_registry=env.get("FOREWARN_SCHEMA_REGISTRY") or None,
            data_dir=Path(env.get("FOREWARN_DATA_DIR") or ".forewarn"),
            topic_prefix=env.get("FOREWARN_TOPIC_PREFIX", ""),
            topic_prefix_given="FOREWARN_TOPIC_PREFIX" in env,
            partitions=_int_env(env, "FOREWARN_PARTITIONS", 4, minimum=1),
            replication_factor=_int_env(env, "FOREWARN_REPLICATION_FACTOR", 1, minimum=1),
            allowed_lateness_ms=_int_env(env, "FOREWARN_ALLOWED_LATENESS_MS", 10 * 60 * 1000),
            reorder_horizon_ms=_int_env(env, "FOREWARN_REORDER_HORIZON_MS", 24 * 60 * 60 * 1000),
            max_clock_skew_ms=_int_env(env, "FOREWARN_MAX_CLOCK_SKEW_MS", 5 * 60 * 1000),
            stockout_rollup_orders=_int_env(env, "FOREWARN_STOCKOUT_ROLLUP_ORDERS", 20, minimum=1),
            max_alternatives=_int_env(env, "FOREWARN_MAX_ALTERNATIVES", 3),
            web_port=_int_env(env, "FOREWARN_WEB_PORT", 0),
            worker_id=env.get("FOREWARN_WORKER_ID", ""),
            session_timeout_ms=_int_env(env, "FOREWARN_SESSION_TIMEOUT_MS", 0),
            thresholds=_thresholds(env),
        )

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    def topic(self, name: str) -> str:
        """The full name of a topic or consumer group, with the environment's prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def endpoint_file(self) -> Path:
        """Where `forewarn up` records the broker it started, for commands run beside it."""
        return self.data_dir / "endpoints.json"

    def describe(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


def _thresholds(env: dict[str, str]) -> Thresholds:
    try:
        return Thresholds.from_env(env)
    except ThresholdError as exc:
        raise SettingsError(str(exc)) from None


def settings_beside_up(settings: Settings) -> tuple[str, Settings]:
    """The bootstrap address and the settings for a command that talks to Kafka.

    With FOREWARN_KAFKA set, that broker and the settings as they are. Without
    it, the broker a running `forewarn up` recorded in the data directory, and
    up's topic prefix unless FOREWARN_TOPIC_PREFIX was given: a command run
    beside `forewarn up` must read and write the topics up's workers use. A
    FOREWARN_TOPIC_PREFIX that differs from up's is refused rather than
    silently producing to topics nothing reads.
    """
    if settings.kafka:
        return settings.kafka, settings
    path = settings.endpoint_file
    try:
        recorded = json.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(
            f"no Kafka to talk to: FOREWARN_KAFKA is unset and no running `forewarn up` "
            f"recorded a broker in {path} (start `forewarn up`, or set FOREWARN_KAFKA)"
        ) from None
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path}: unreadable ({exc}); remove it or set FOREWARN_KAFKA") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("kafka"), str):
        raise SettingsError(f"{path}: does not name a broker; remove it or set FOREWARN_KAFKA")
    pid = recorded.get("pid")
    if isinstance(pid, int) and not _process_alive(pid):
        raise SettingsError(
            f"{path} names a broker started by process {pid}, which is no longer running "
            f"(start `forewarn up`, or set FOREWARN_KAFKA)"
        )
    recorded_prefix = recorded.get("topic_prefix") or ""
    if not isinstance(recorded_prefix, str):
        raise SettingsError(f"{path}: topic_prefix is not a string; remove it or set FOREWARN_KAFKA")
    if settings.topic_prefix_given and settings.topic_prefix != recorded_prefix:
        raise SettingsError(
            f"FOREWARN_TOPIC_PREFIX={settings.topic_prefix!r}, but the running `forewarn up` "
            f"(process {pid}, recorded in {path}) uses topic prefix {recorded_prefix!r}; "
            f"unset FOREWARN_TOPIC_PREFIX to use up's topics, or set it to {recorded_prefix!r}"
        )
    return recorded["kafka"], settings.with_(topic_prefix=recorded_prefix, topic_prefix_given=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
