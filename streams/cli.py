"""The `forewarn` command: run the stack, create topics, produce events, read alerts, list outreach tasks and
claim, finish or release them, run the demo."""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from typing import Callable, NoReturn, Sequence

from streams.settings import Settings, SettingsError, settings_beside_up

# How long a command waits for Kafka to answer before saying it cannot reach it.
REACH_TIMEOUT_S = 10.0

ENVIRONMENT_HELP = """\
configuration (environment):
  FOREWARN_KAFKA            bootstrap address of an existing Kafka; unset: the embedded broker
                            (`forewarn up` records its address in the data directory)
  FOREWARN_EMBEDDED         the embedded broker: kafka (default; one Apache Kafka node keeping every
                            topic under the data directory) or memory (throwaway: nothing is kept)
  FOREWARN_KAFKA_HEAP       maximum heap of the embedded Apache Kafka node (default 256m)
  FOREWARN_KAFKA_DIST       an Apache Kafka distribution on disk (the directory holding libs/) to run
                            instead of the jars fetched once from Maven Central
  FOREWARN_KAFKA_CACHE      where those jars are cached (default ~/.cache/forewarn/kafka)
  JAVA_HOME                 a Java runtime (17 or newer) for the embedded node; unset: the bundled one
  FOREWARN_CLICKHOUSE       http(s):// URL of a ClickHouse server; unset: chDB in the data directory
  FOREWARN_KAFKA_SECURITY_PROTOCOL  PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL, for FOREWARN_KAFKA
  FOREWARN_KAFKA_SASL_MECHANISM     PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*)
  FOREWARN_KAFKA_USERNAME, FOREWARN_KAFKA_PASSWORD or FOREWARN_KAFKA_PASSWORD_FILE  the SASL login
  FOREWARN_KAFKA_CA         PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL)
  FOREWARN_KAFKA_CERT, FOREWARN_KAFKA_KEY  client certificate and key, PEM (mutual TLS)
  FOREWARN_SCHEMA_REGISTRY  schema registry URL; unset: Avro single-object encoding
  FOREWARN_SCHEMA_REGISTRY_USERNAME, FOREWARN_SCHEMA_REGISTRY_PASSWORD (or _PASSWORD_FILE),
  FOREWARN_SCHEMA_REGISTRY_CA  the registry's basic-auth login and CA
  FOREWARN_CLICKHOUSE_PASSWORD_FILE, FOREWARN_CLICKHOUSE_CA  ClickHouse's password from a file, and the CA
                            of an https:// server
  FOREWARN_DATA_DIR         data directory (default ./.forewarn); one `up` or `demo` at a time uses it
  FOREWARN_TOPIC_PREFIX     prefix for every topic and consumer group (default none; beside a running
                            `forewarn up`, the prefix it recorded)
  FOREWARN_PARTITIONS       partitions of every topic created (default 4)
  FOREWARN_MAX_CLOCK_SKEW_MS  how far ahead of wall time an event's ts may be (default 300000 = 5 min);
                            one stamped later is refused by `produce` and `replay`, dead-lettered by the worker
  FOREWARN_REPLICATION_FACTOR, FOREWARN_ALLOWED_LATENESS_MS, FOREWARN_STOCKOUT_ROLLUP_ORDERS,
  FOREWARN_MAX_ALTERNATIVES, FOREWARN_REORDER_HORIZON_MS, FOREWARN_SESSION_TIMEOUT_MS,
  FOREWARN_SINGLE_RECORD_BATCHES, FOREWARN_WEB_PORT, FOREWARN_WORKER_ID
  FOREWARN_NOTIFY_CONFIG    a YAML or TOML file of alert destinations and routes (`forewarn notify`)
  FOREWARN_ALERTMANAGER_URL, FOREWARN_WEBHOOK_URL  one Alertmanager, one webhook, each getting every alert
  FOREWARN_WEBHOOK_SECRET, FOREWARN_WEBHOOK_FORMAT (json or slack), FOREWARN_WEB_URL (links in alerts)
  FOREWARN_METRICS_ADDR     host:port where this process serves Prometheus /metrics (port 0: a free one)
  every rule's thresholds: `forewarn rules` lists them with their variables and current values
every variable is checked at start: a bad value stops the command, naming it and what it may be
"""


class BadArgument(Exception):
    """A command-line argument is unusable; the message names it and what it may be (exit status 2).

    Not a ValueError: argparse would catch that and put its own words in its place.
    """


class _Parser(argparse.ArgumentParser):
    """argparse, with its complaints as one `forewarn: ` line instead of the usage and the complaint."""

    def error(self, message: str) -> NoReturn:
        # A command or an ACTION of `topics` that is not one: said as the other arguments say it.
        choice = re.fullmatch(r"argument (\w+): invalid choice: ('.*?') \(choose from (.*)\)", message)
        if choice is not None:
            name, value, choices = choice.group(1).lower(), choice.group(2), choice.group(3).replace("'", "")
            message = f"{value} is not {'an' if name[0] in 'aeiou' else 'a'} {name}; expected one of {choices}"
        self.exit(2, f"forewarn: {message} (see `{self.prog} --help`)\n")


def _one_of(option: str, kind: str, choices: Sequence[str]) -> Callable[[str], str]:
    """An argparse type: ``raw`` when it is one of ``choices``, else a BadArgument listing them."""
    def check(raw: str) -> str:
        if raw not in choices:
            given = f"{option} {raw!r}" if option else repr(raw)
            raise BadArgument(f"{given} is not {kind}; expected one of {', '.join(choices)}")
        return raw
    return check


def _whole(option: str, low: int) -> Callable[[str], int]:
    """An argparse type: a whole number, ``low`` or more."""
    def check(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < low:
            raise BadArgument(f"{option} {raw}: expected a whole number, {low} or more")
        return value
    return check


def _above_zero(option: str, what: str = "a number") -> Callable[[str], float]:
    """An argparse type: a finite number above 0."""
    def check(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = None
        if value is None or not (value > 0 and math.isfinite(value)):
            raise BadArgument(f"{option} {raw}: expected {what} above 0")
        return value
    return check


def _parser() -> argparse.ArgumentParser:
    from streams import topics
    from streams.rulebook import RULES
    from streams.tasks_cli import ACTIONS, DEFAULT_TIMEOUT_S, QUEUES

    formats = ("table", "csv", "json")
    loglevels = ("debug", "info", "warning", "error")
    parser = _Parser(
        prog="forewarn",
        description="Catch customer-facing problems in Kafka event streams before the customer complains.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="run the stack in the foreground (embedded broker unless FOREWARN_KAFKA)")
    up.add_argument("--workers", type=_whole("--workers", 1), default=1, help="detection workers to run (default 1)")
    up.add_argument("--no-sink", action="store_true", help="do not run the ClickHouse sink beside the workers")
    up.add_argument("--no-web", action="store_true", help="do not serve the live page (`forewarn web`) beside them")
    up.add_argument("--reset", action="store_true",
                    help="start empty: delete the embedded broker's topics, the workers' state and the ClickHouse "
                         "store in the data directory first (asks for confirmation)")
    up.add_argument("--yes", action="store_true", help="with --reset: do not ask")

    worker = commands.add_parser("worker", help="run one detection worker against FOREWARN_KAFKA")
    worker.add_argument("--loglevel", default="warning", type=_one_of("--loglevel", "a log level", loglevels),
                        metavar="{" + ",".join(loglevels) + "}")

    topics_cmd = commands.add_parser("topics", help="manage topics")
    topics_sub = topics_cmd.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    topics_sub.add_parser("create", help="create every topic with its partitions, retention and compaction")
    topics_sub.add_parser("list", help="every topic Forewarn declares, as the broker has it (exists, partitions, "
                                       "replication), with key, schema and retention")

    status = commands.add_parser("status", help="how the stack is doing: worker clocks, lag, the sink; exit 1 when "
                                                "unhealthy")
    status.add_argument("--json", action="store_true", help="the same as one JSON object")

    produce = commands.add_parser("produce", help="validate JSON lines and produce them as Avro")
    producible = sorted(topics.PRODUCIBLE)
    produce.add_argument("--topic", type=_one_of("--topic", "an input topic", producible), metavar="T",
                         help=f"topic of every line ({', '.join(producible)}); without it each line is "
                              f"{{\"topic\": T, \"value\": {{...}}}}")
    produce.add_argument("file", metavar="FILE", help="JSON lines file, or - for standard input")

    replay = commands.add_parser("replay", help="play a recorded timeline into the topics in event-time order")
    replay.add_argument("file", metavar="FILE", help="JSON lines as `forewarn produce` takes them without --topic, "
                                                     "or - for standard input")
    replay.add_argument("--speed", type=_above_zero("--speed"), metavar="X",
                        help="X times real time (2 = twice as fast); default: as fast as possible")

    alerts = commands.add_parser("alerts", help="print the alerts topic from the beginning")
    alerts.add_argument("--follow", action="store_true", help="keep following new alerts")
    alerts.add_argument("--json", action="store_true", help="one alert record per line as JSON")
    rules = [rule.name for rule in RULES]
    alerts.add_argument("--rule", type=_one_of("--rule", "a rule", rules), metavar="NAME",
                        help="only alerts of this rule (`forewarn rules` lists them)")

    tasks = commands.add_parser("tasks", help="print the open and claimed outreach cases, most urgent first",
                                description="Print each customer's current outreach case (one per customer, "
                                            "with all their problems): open and claimed "
                                            "ones unless --all, by priority, then due time. The tasks go to "
                                            "standard output, a count line to standard error.")
    tasks.add_argument("--queue", metavar="Q", type=_one_of("--queue", "a queue", QUEUES),
                       help=f"only this queue: {', '.join(QUEUES)}")
    tasks.add_argument("--json", action="store_true", help="one task record per line as JSON")
    tasks.add_argument("--all", action="store_true", help="also done and cancelled tasks")

    task = commands.add_parser("task", help="show, claim, finish or release an outreach case",
                               description="`show` prints everything needed to act on a task. The others send a "
                                           "rep's action on a task to the worker and wait for its answer: exit 0 "
                                           "once applied, 1 if rejected or unanswered.")
    task_actions = ("show", *ACTIONS)
    task.add_argument("action", type=_one_of("", "a task action", task_actions),
                      metavar="{" + ",".join(task_actions) + "}",
                      help="show a task, claim an open one, mark a claimed one done, or release it")
    task.add_argument("task_id", metavar="TASK_ID", help="the task, as `forewarn tasks` shows it")
    task.add_argument("--as", dest="name", metavar="NAME", help="your name, the task's assignee (claim, done, release)")
    task.add_argument("--json", action="store_true", help="with show: the task as one JSON object")
    task.add_argument("--timeout", type=_above_zero("--timeout", "a number of seconds"), default=DEFAULT_TIMEOUT_S,
                      metavar="S",
                      help=f"seconds to wait for the worker's answer (default {DEFAULT_TIMEOUT_S:g})")

    sink = commands.add_parser("sink", help="write every topic into ClickHouse (chDB unless FOREWARN_CLICKHOUSE)")
    sink.add_argument("--migrate", action="store_true", help="only create or update the tables and views, then exit")
    sink.add_argument("--batch-rows", type=_whole("--batch-rows", 1), default=50_000,
                      help="flush after this many messages (default 50000)")
    sink.add_argument("--batch-seconds", type=_above_zero("--batch-seconds", "a number of seconds"), default=1.0,
                      help="flush when the oldest buffered message has waited this long (default 1)")

    sql = commands.add_parser("sql", help="run a SQL query against the ClickHouse store and print the result")
    sql.add_argument("query", metavar="QUERY", help="the SQL query; - reads it from standard input")
    sql.add_argument("--format", default="table", type=_one_of("--format", "a format", formats),
                     metavar="{" + ",".join(formats) + "}",
                     help="table (default), csv, or json (one object per row)")
    sql.add_argument("--write", action="store_true", help="allow statements that change the store")

    commands.add_parser("rules", help="list every rule with its audience, task queue and current thresholds")

    commands.add_parser("notify", help="deliver every alert to Alertmanager and webhooks (FOREWARN_NOTIFY_CONFIG, "
                                       "FOREWARN_ALERTMANAGER_URL, FOREWARN_WEBHOOK_URL)",
                        description="Read the alerts topic in group <prefix>forewarn-notify and deliver every alert "
                                    "message, by audience, rule and severity, to the destinations of "
                                    "FOREWARN_NOTIFY_CONFIG (a YAML or TOML file), FOREWARN_ALERTMANAGER_URL and "
                                    "FOREWARN_WEBHOOK_URL. At least once: an offset is committed only once every "
                                    "destination has delivered the message; a destination refusing it for good "
                                    "sends it to forewarn.dlq. README: Paging and metrics.")

    web = commands.add_parser("web", help="serve the live page: the reps' queue, the alert stream, the overview "
                                          "(FOREWARN_WEB_ADDR, default 127.0.0.1:8787)")
    web.add_argument("--hash-password", metavar="NAME",
                     help="read a password from standard input and print NAME's line for FOREWARN_WEB_ACCOUNTS")

    demo = commands.add_parser("demo", help="the embedded stack with a simulated coffee shop and its story")
    demo.add_argument("--keep", action="store_true",
                      help="after the summary, keep the stack and the live page running until Ctrl-C")
    demo.add_argument("--duration", type=_above_zero("--duration", "a number of seconds"), default=60.0,
                      help="seconds of simulated traffic (default 60)")
    return parser


# The long-running commands: librdkafka's own warnings go to their log (streams.kafka_security.client_logger).
_SERVICES = frozenset({"up", "worker", "sink", "notify", "web"})


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except BadArgument as exc:
        print(f"forewarn: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command not in _SERVICES:
        from streams.produce import quiet_client_logger

        quiet_client_logger()  # a command reports a broker problem once, in words, not in librdkafka's lines
    settings: Settings | None = None
    try:
        settings = Settings.from_env()
        from streams.kafka_security import use_security

        # Every Kafka client this process builds from here on logs in this way (streams.kafka_security).
        use_security(settings.kafka_security)
        return _dispatch(args, settings)
    except SettingsError as exc:
        print(f"forewarn: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - only the failures _failure_message knows are reported
        message = _failure_message(exc, settings)
        if message is None:
            raise
        print(f"forewarn: {message}", file=sys.stderr)
        return 2


def _failure_message(exc: Exception, settings: Settings | None) -> str | None:
    """A one-line account of a failure a user can fix, or None for a bug (which keeps its traceback)."""
    from confluent_kafka import KafkaError, KafkaException

    from schemas.codec import RegistryError
    from sinks.clickhouse.migrate import MigrationError
    from streams.admin import TopicAdminError
    from streams.embedded import BrokerStartError
    from streams.kafka_dist import KafkaDistError
    from streams.kafka_security import KafkaAccessError

    if isinstance(exc, KafkaAccessError):
        return str(exc)
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else None
        reason = error.str() if isinstance(error, KafkaError) else str(exc)
        return f"Kafka: {reason} (check FOREWARN_KAFKA, or that `forewarn up` is running)"
    if isinstance(exc, TopicAdminError):
        return f"{exc}\n(check FOREWARN_KAFKA, or that `forewarn up` is running)"
    if isinstance(exc, KafkaDistError):
        return str(exc)
    if isinstance(exc, BrokerStartError):
        return (f"could not start the embedded broker: {exc}\n"
                f"(set FOREWARN_KAFKA to use an existing Kafka instead)")
    if isinstance(exc, MigrationError):
        return f"the ClickHouse store's schema: {exc}"
    if isinstance(exc, RegistryError):
        return f"{exc} (check FOREWARN_SCHEMA_REGISTRY, or unset it for Avro single-object encoding)"
    if isinstance(exc, OSError):
        message = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        if settings is not None and exc.filename and _inside(exc.filename, settings.data_dir):
            message += " (in the data directory; set FOREWARN_DATA_DIR to use another)"
        return message
    return None


def _inside(filename, directory) -> bool:
    from pathlib import Path

    try:
        return Path(filename).resolve().is_relative_to(Path(directory).resolve())
    except (OSError, ValueError, TypeError):
        return False


def _reachable(bootstrap: str, settings: Settings) -> None:
    """Fail with one line naming the setting to change unless Kafka at `bootstrap` answers and lets us in.

    A refused login or an untrusted certificate stops the command within seconds
    (streams.kafka_security.check_access), before it reads or writes anything.
    """
    _checked(bootstrap, settings)


def _permitted(bootstrap: str, settings: Settings, reads=(), writes=(), groups=()) -> None:
    """On a secured cluster, fail with one line unless its ACLs let us READ ``reads`` and WRITE ``writes``
    (topic specs) and READ ``groups`` (consumer-group names); all unprefixed, prefixed here.

    An open (PLAINTEXT) cluster is not asked: ACLs are a secured cluster's, and the
    open one would cost every command a request.
    """
    if settings.kafka_security.protocol != "PLAINTEXT" and (reads or writes or groups):
        _checked(bootstrap, settings, reads=[settings.topic(spec.name) for spec in reads],
                 writes=[settings.topic(spec.name) for spec in writes],
                 groups=[settings.topic(group) for group in groups])


def _checked(bootstrap: str, settings: Settings, reads=(), writes=(), groups=()) -> None:
    from confluent_kafka import KafkaError, KafkaException

    from streams.kafka_security import check_access

    try:
        check_access(bootstrap, timeout_s=REACH_TIMEOUT_S, reads=reads, writes=writes, groups=groups)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        reason = error.str() if isinstance(error, KafkaError) else str(exc)
        if settings.kafka:
            fix = "check that Kafka is running there, or set FOREWARN_KAFKA to the address of one that is"
        else:
            fix = (f"the `forewarn up` recorded in {settings.endpoint_file} is not answering; "
                   f"restart it, or set FOREWARN_KAFKA")
        raise SettingsError(f"cannot reach Kafka at {bootstrap} within {REACH_TIMEOUT_S:.0f}s ({reason}); {fix}") \
            from None


def _store_answers(settings: Settings, wait_if_unreachable: bool = False) -> None:
    """Fail with one line naming FOREWARN_CLICKHOUSE unless the ClickHouse server set there lets us in.

    chDB (FOREWARN_CLICKHOUSE unset) is opened by whoever uses it: nothing to check here.
    """
    if not settings.clickhouse:
        return
    from sinks.clickhouse.store import StoreUnreachable, open_reachable_store

    try:
        open_reachable_store(settings).close()
    except StoreUnreachable:
        if not wait_if_unreachable:
            raise


def _count(n: int, noun: str) -> str:
    """`1 topic`, `2 topics`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _kafka_beside_up(settings: Settings, reads=(), writes=(), groups=()) -> tuple[str, Settings]:
    bootstrap, settings = settings_beside_up(settings)
    _reachable(bootstrap, settings)
    _permitted(bootstrap, settings, reads=reads, writes=writes, groups=groups)
    return bootstrap, settings


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "up":
        from streams.runner import run_up

        if args.yes and not args.reset:
            raise SettingsError("`forewarn up --yes` only confirms --reset; add --reset, or drop --yes")
        if settings.kafka:
            _reachable(settings.kafka, settings)
        if not args.no_sink:
            _store_answers(settings)
        if args.reset:
            from streams.runner import reset_data_dir

            if not reset_data_dir(settings, confirmed=args.yes):
                return 1
        if not args.no_web:
            from streams.web import load_accounts

            load_accounts(settings.web_accounts)  # a bad accounts file stops here, naming the line
        if settings.notifies:
            from streams.notify import config_from_settings

            config_from_settings(settings)  # a bad notification file stops here, naming the line
        return run_up(settings, workers=args.workers, sink=not args.no_sink, reset=args.reset, web=not args.no_web)
    if args.command == "worker":
        from streams.runner import run_worker

        from streams import topics

        if not settings.kafka:
            raise SettingsError("`forewarn worker` needs FOREWARN_KAFKA (use `forewarn up` for the embedded broker)")
        _reachable(settings.kafka, settings)
        _permitted(settings.kafka, settings, reads=topics.GROUP_INPUTS,
                   writes=topics.OUTPUT_TOPICS + topics.INTERNAL_TOPICS, groups=("forewarn",))
        return run_worker(settings, settings.kafka, loglevel=args.loglevel)
    if args.command == "topics":
        return _topics(args, settings)
    if args.command == "produce":
        return _produce(args, settings)
    if args.command == "replay":
        return _produce(args, settings, replay=True)
    if args.command == "alerts":
        return _alerts(args, settings)
    if args.command in ("tasks", "task"):
        return _tasks(args, settings)
    if args.command == "web":
        return _web(args, settings)
    if args.command == "status":
        from streams.status import as_json, gather, render

        bootstrap, settings = _kafka_beside_up(settings)
        report = gather(settings, bootstrap)
        print(as_json(report) if args.json else render(report, settings))
        return 0 if report.healthy else 1
    if args.command == "sink":
        return _sink(args, settings)
    if args.command == "notify":
        from streams.notify import config_from_settings, serve

        config = config_from_settings(settings)
        if config is None:
            raise SettingsError("`forewarn notify` has nowhere to deliver: set FOREWARN_NOTIFY_CONFIG, "
                                "FOREWARN_ALERTMANAGER_URL or FOREWARN_WEBHOOK_URL")
        from streams import topics
        from streams.notify import GROUP

        bootstrap, settings = _kafka_beside_up(settings, reads=(topics.ALERTS,), writes=(topics.DEAD_LETTERS,),
                                               groups=(GROUP,))
        return serve(settings, bootstrap, config)
    if args.command == "sql":
        return _sql(args, settings)
    if args.command == "rules":
        from streams.rulebook import describe

        print(describe(settings.thresholds, {"max_alternatives": str(settings.max_alternatives),
                                             "stockout_rollup_orders": str(settings.stockout_rollup_orders)}))
        return 0
    if args.command == "demo":
        from streams.demo import run_demo

        if settings.kafka:
            _reachable(settings.kafka, settings)
        _store_answers(settings)
        return run_demo(settings, duration=args.duration, keep=args.keep)
    raise AssertionError(args.command)


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams import topics

    bootstrap, settings = _kafka_beside_up(settings)
    if args.topics_command == "list":
        from streams.admin import describe_topics

        rows = describe_topics(settings, bootstrap)
        for row in rows:
            spec = row["spec"]
            layout = "compacted" if spec.compacted else f"retention {spec.retention_ms // topics.DAY_MS}d"
            where = (f"{row['partitions']} partitions, replication {row['replication']}" if row["exists"]
                     else "MISSING")
            print(f"{row['name']:32} {where:30} {spec.kind:9} key={spec.key_field or '-':12} "
                  f"{spec.schema or '(raw bytes)':34} {layout}")
        missing = sum(not row["exists"] for row in rows)
        print(f"{len(rows) - missing} of {len(rows)} topics exist at {bootstrap}"
              + (f"; `forewarn topics create` creates the {missing} missing" if missing else ""), file=sys.stderr)
        return 0
    from streams.admin import ensure_topics

    created = ensure_topics(settings, bootstrap)
    total = len(topics.ALL_TOPICS)
    print(f"created {len(created)} of {_count(total, 'topic')} at {bootstrap} ({total - len(created)} already existed)")
    for name in created:
        print(f"  {name}")
    return 0


def _produce(args: argparse.Namespace, settings: Settings, replay: bool = False) -> int:
    """`forewarn produce`, and `forewarn replay` (all lines first, then in event-time order)."""
    from streams.produce import FLUSH_TIMEOUT_S, produce_lines, read_lines

    command = "replay" if replay else "produce"
    topic = None if replay else args.topic
    name = "<stdin>" if args.file == "-" else args.file
    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as exc:
        print(f"forewarn: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    with source:
        from streams import topics

        written = (topics.PRODUCIBLE[topic],) if topic in topics.PRODUCIBLE else ()
        bootstrap, settings = _kafka_beside_up(settings, writes=written)

        def print_rejection(error) -> None:
            print(f"{name}: {error}", file=sys.stderr, flush=True)

        try:
            report = produce_lines(read_lines(source), settings, bootstrap, topic=topic,
                                   on_reject=print_rejection, in_time_order=replay,
                                   speed=args.speed if replay else None, flush_timeout=FLUSH_TIMEOUT_S)
        except OSError as exc:
            # Reading failed partway (the lines before were still flushed to Kafka).
            print(f"forewarn {command}: reading {name} failed: {exc.strerror or exc}", file=sys.stderr)
            return 2
    per_topic = ", ".join(f"{t} {n}" for t, n in sorted(report.per_topic.items())) or "nothing"
    span = ""
    if replay and report.first_ts is not None:
        from schemas.codec import format_timestamp_ms

        span = f" in event-time order, {format_timestamp_ms(report.first_ts)} to {format_timestamp_ms(report.last_ts)}"
    print(f"produced {_count(report.sent, 'record')} ({per_topic}){span}; "
          f"rejected {_count(len(report.errors), 'line')}", file=sys.stderr)
    if report.not_acknowledged:
        parts = []
        if report.refused:
            parts.append(f"{report.refused} refused (see the lines above)")
        if report.unacknowledged:
            first = "" if report.unacknowledged == 1 else ", the first"
            they = "it" if report.unacknowledged == 1 else "they"
            parts.append(f"{report.unacknowledged} still unanswered after {FLUSH_TIMEOUT_S:g}s{first} from line "
                         f"{report.first_unacknowledged_line}; {they} may or may not have been written")
        were = "was" if report.not_acknowledged == 1 else "were"
        print(f"forewarn {command}: {_count(report.not_acknowledged, 'message')} {were} not acknowledged by Kafka "
              f"at {bootstrap}: "
              f"{'; '.join(parts)} (check that the broker is running and reachable: FOREWARN_KAFKA, "
              f"or `forewarn up`)", file=sys.stderr)
    return 1 if report.errors or report.unacknowledged else 0


def _alerts(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.codec import Codec, DecodeError, record_to_json
    from streams import topics
    from streams.follow import TopicNotFound, format_alert, read_topic

    bootstrap, settings = _kafka_beside_up(settings, reads=(topics.ALERTS,))
    codec = Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
    try:
        for item in read_topic(bootstrap, settings.topic(topics.ALERTS.name), codec, follow=args.follow):
            if isinstance(item, DecodeError):
                print(f"forewarn alerts: skipped an undecodable message: {item}", file=sys.stderr)
                continue
            _, alert = item
            if args.rule and alert["rule"] != args.rule:
                continue
            if args.json:
                print(json.dumps(record_to_json(topics.ALERTS.schema, alert), ensure_ascii=False), flush=True)
            else:
                print(format_alert(alert), flush=True)
    except TopicNotFound as exc:
        _no_such_topic("alerts", exc, bootstrap, settings)
        return 2
    except BrokenPipeError:
        return 0
    return 0


def _no_such_topic(command: str, exc, bootstrap: str, settings: Settings) -> None:
    prefix = f"FOREWARN_TOPIC_PREFIX={settings.topic_prefix!r}" if settings.topic_prefix else "no topic prefix"
    print(f"forewarn {command}: there is no topic {exc.topic} at {bootstrap} ({prefix}); create the topics "
          f"with `forewarn topics create` or start `forewarn up`, or set FOREWARN_TOPIC_PREFIX to the "
          f"prefix the workers use", file=sys.stderr)


def _web(args: argparse.Namespace, settings: Settings) -> int:
    """`forewarn web`: see streams/web.py; `--hash-password NAME` makes an accounts file line."""
    from streams import web

    if args.hash_password is not None:
        name = args.hash_password.strip()
        if not name or ":" in name or any(c.isspace() for c in name):
            raise SettingsError(f"--hash-password {args.hash_password!r}: a name without spaces or colons")
        import getpass

        password = getpass.getpass(f"password for {name}: ") if sys.stdin.isatty() else sys.stdin.readline()
        password = password.rstrip("\n")
        if not password:
            raise SettingsError("--hash-password: the password is empty")
        print(f"{name}:{web.hash_password(password)}")
        return 0
    web.load_accounts(settings.web_accounts)  # a bad line stops here, naming it
    web.check_address_free(settings)
    from streams import topics

    bootstrap, settings = _kafka_beside_up(
        settings, reads=(topics.ALERTS, topics.OUTREACH_TASKS, topics.TASK_UPDATES_REJECTED),
        writes=(topics.TASK_UPDATES,) if settings.web_accounts else ())
    return web.serve(settings, bootstrap)


def _tasks(args: argparse.Namespace, settings: Settings) -> int:
    """`forewarn tasks` and `forewarn task`: see streams/tasks_cli.py."""
    from streams.follow import TopicNotFound
    from streams.tasks_cli import (ArgumentError, act_on_task, check_queue, check_task_arguments, list_tasks,
                                   show_task)

    try:
        # Arguments first: a typo should not wait for Kafka.
        if args.command == "tasks":
            check_queue(args.queue)
        elif args.action == "show":
            check_task_arguments(args.task_id, args.name or "-", args.timeout)
        else:
            if args.name is None:
                raise ArgumentError(f"`forewarn task {args.action}` needs --as NAME: your name, which becomes the "
                                    f"task's assignee")
            check_task_arguments(args.task_id, args.name, args.timeout)
    except ArgumentError as exc:
        print(f"forewarn: {exc}", file=sys.stderr)
        return 2
    from streams import topics

    acting = args.command == "task" and args.action != "show"
    bootstrap, settings = _kafka_beside_up(settings, reads=(topics.OUTREACH_TASKS,),
                                           writes=(topics.TASK_UPDATES,) if acting else ())
    try:
        if args.command == "tasks":
            return list_tasks(settings, bootstrap, queue=args.queue, as_json=args.json, include_all=args.all)
        if args.action == "show":
            return show_task(settings, bootstrap, args.task_id, as_json=args.json)
        return act_on_task(settings, bootstrap, args.action, args.task_id, args.name, timeout=args.timeout)
    except TopicNotFound as exc:
        _no_such_topic(args.command, exc, bootstrap, settings)
        return 2
    except BrokenPipeError:
        return 0


def _sink(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.clickhouse.migrate import MigrationError, apply_migrations
    from sinks.clickhouse.sink import SinkLimits, serve
    from sinks.clickhouse.store import open_reachable_store

    if args.migrate:
        try:
            applied = apply_migrations(open_reachable_store(settings))
        except MigrationError as exc:
            print(f"forewarn sink --migrate: {exc}", file=sys.stderr)
            return 2
        print(f"forewarn sink --migrate: applied {_count(len(applied), 'DDL file')}"
              + (f": {', '.join(applied)}" if applied else "; the store was up to date"))
        return 0
    # A server that is down may come up: the sink waits for it. One that refuses us will not.
    _store_answers(settings, wait_if_unreachable=True)
    from sinks.clickhouse.sink import GROUP, SINK_TOPICS
    from streams import topics

    bootstrap, settings = _kafka_beside_up(settings, reads=SINK_TOPICS, writes=(topics.DEAD_LETTERS,),
                                           groups=(GROUP,))
    return serve(settings, bootstrap, SinkLimits(max_rows=args.batch_rows, max_wait_s=args.batch_seconds))


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.clickhouse.query import FORMATS, QueryError, QueryRefused, QuerySyntaxError, run_query

    query = sys.stdin.read() if args.query == "-" else args.query
    if not query.strip():
        print("forewarn: the query is empty", file=sys.stderr)
        return 2
    try:
        result = run_query(settings, query, write=args.write)
    except (QuerySyntaxError, QueryRefused) as exc:
        # Nothing ran: the query itself is what to change.
        print(f"forewarn: {exc}", file=sys.stderr)
        return 2
    except QueryError as exc:
        print(f"forewarn sql: {exc}", file=sys.stderr)
        return 1
    text = FORMATS[args.format](result)
    try:
        if text:
            print(text, flush=True)
    except BrokenPipeError:
        pass
    return 0
