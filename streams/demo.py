"""`forewarn demo`: the embedded stack, a simulated coffee shop, and its alerts as they appear."""

from __future__ import annotations

import collections
import threading
import time

from schemas.codec import Codec, DecodeError
from streams import topics
from streams.follow import LagProbe, format_alert, read_topic
from streams.words import counted
from streams.produce import message_key, producer_for
from streams.runner import Stack, StopOnSignal, Stopped, describe_broker
from streams.settings import Settings, SettingsError, clickhouse_address
from streams.simulator import store_timeline

# After the traffic stops, wait for the worker to read everything, then for QUIET_S without a new
# alert, counted from the later of the last alert and the end of the traffic: a deadline already
# due reaches its stage through a tick carrying the clock of TICK_DELAY_MS ago, sent at most once a
# second, so the last alerts can follow the last event by about three seconds.
QUIET_S = 6.0
DRAIN_LIMIT_S = 90.0


def demo_settings(settings: Settings) -> Settings:
    """The demo's settings: a data directory of its own inside up's, so the two never mix."""
    return settings.with_(data_dir=settings.data_dir / "demo")


def run_demo(settings: Settings, duration: float = 60.0, keep: bool = False) -> int:
    """Play the shop's story on a stack of its own, started empty in `demo_settings(settings).data_dir`.

    The live page (`forewarn web`) runs beside it when its address is free; with
    `keep` the stack and the page stay up after the summary until Ctrl-C.
    """
    from streams.web import check_address_free

    settings = demo_settings(settings)
    try:
        check_address_free(settings)
        web = True
    except SettingsError as exc:
        print(f"forewarn demo: no live page: {exc}")
        web = False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    codec = Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
    timeline = store_timeline(duration)
    print(f"Forewarn demo: a small coffee shop for {duration:.0f}s ({_events(len(timeline))}), "
          f"with the coffee-bean customer's story among ordinary traffic.")
    counts: collections.Counter = collections.Counter()
    produced = [0]
    with StopOnSignal() as signals:
        stack = Stack(settings, workers=1, worker_log=settings.data_dir / "logs" / "demo-worker.log",
                      worker_loglevel="info", reset=True, web=web)
        kept = False
        stop = threading.Event()
        printer: threading.Thread | None = None
        try:
            stack.start()
            print(f"  Kafka: {stack.bootstrap} ({describe_broker(stack.broker)}); "
                  f"worker log: {stack.worker_log}")
            print(f"  the live page: {stack.web_url} (cases, alerts, overview)\n" if web else "")
            last_alert = [time.monotonic()]

            def print_alerts() -> None:
                for item in read_topic(stack.bootstrap, settings.topic(topics.ALERTS.name), codec, follow=True,
                                       stop=stop):
                    if isinstance(item, DecodeError):
                        continue
                    alert = item[1]
                    counts[(alert["rule"], alert["status"])] += 1
                    last_alert[0] = time.monotonic()
                    print(format_alert(alert), flush=True)

            printer = threading.Thread(target=print_alerts, name="alerts", daemon=True)
            printer.start()
            started = time.monotonic()
            while not stack.workers_ready():
                if stack.failed_child() is not None or time.monotonic() - started > 120:
                    print("the detection worker did not start; see its log")
                    return 1
                time.sleep(0.5)
            print(f"  detection worker ready after {time.monotonic() - started:.0f}s; the shop opens.\n", flush=True)
            _play(timeline, settings, stack.bootstrap, codec, stack, produced, duration)
            traffic_done = time.monotonic()
            print("\n(traffic done; waiting for the worker to read every event)", flush=True)
            group = settings.topic("forewarn")
            watched = [settings.topic(spec.name) for spec in topics.GROUP_INPUTS]
            deadline = time.monotonic() + DRAIN_LIMIT_S
            with LagProbe(stack.bootstrap) as probe:
                while time.monotonic() < deadline:
                    if stack.failed_child() is not None:
                        print("the detection worker stopped unexpectedly; see its log")
                        break
                    quiet_since = max(last_alert[0], traffic_done)
                    if probe.total(group, watched) == 0 and time.monotonic() - quiet_since > QUIET_S:
                        break
                    time.sleep(0.5)
                else:
                    print(f"the worker had not read every event after {DRAIN_LIMIT_S:.0f}s; the summary may be short")
            open_tasks = _open_tasks(stack.bootstrap, settings, codec)
            stored = _wait_for_the_store(stack, settings)
            if keep:
                _report(counts, produced[0], settings, open_tasks, stored)
                kept = True
                print(f"\nforewarn demo: the stack keeps running"
                      + (f", and the live page at {stack.web_url}" if web else "")
                      + "; Ctrl-C stops it.", flush=True)
                while (failed := stack.failed_child()) is None:
                    time.sleep(0.5)
                print(f"forewarn demo: {stack.describe_child(failed)} exited with status {failed.returncode}")
                return 1
        except Stopped as stopped:
            if kept:
                print("\nforewarn demo: stopping", flush=True)
                return 0
            print(f"\nforewarn demo: stopping after {_events(produced[0])}", flush=True)
            return 128 + stopped.signum
        finally:
            signals.ignore_further()
            stop.set()
            if printer is not None:
                printer.join(timeout=5)
            stack.stop()
    _report(counts, produced[0], settings, open_tasks, stored)
    return 0


def _report(counts, produced: int, settings: Settings, open_tasks: list[dict], stored) -> None:
    _summary(counts, produced, settings)
    _tasks_summary(open_tasks)
    _store_summary(stored, settings)
    _next_steps(settings)


def _next_steps(settings: Settings) -> None:
    print(
        "\nWhat to try next:\n"
        "  forewarn up                          # the stack and the live page; then, in another terminal:\n"
        "  forewarn produce --topic orders my-orders.jsonl   # your own events (JSON lines)\n"
        "  forewarn alerts --follow --rule out_of_stock_open_order\n"
        "  forewarn tasks --queue swarm                         # the hardest, most valuable cases first\n"
        "  forewarn task claim TASK_ID --as YOUR_NAME            # then: forewarn task done TASK_ID --as YOUR_NAME\n"
        "  forewarn demo --keep                 # the demo, then its stack and live page until Ctrl-C\n"
        "  forewarn alerts --json | head        # alert records as JSON\n"
        "  FOREWARN_KAFKA=host:9092 forewarn worker           # against your own Kafka\n"
        f"  (data directory: {settings.data_dir})"
    )


def _open_tasks(bootstrap: str, settings: Settings, codec: Codec) -> list[dict]:
    """The latest version of every outreach case that is open or claimed."""
    from streams.tasks_cli import ACTIVE_STATUSES, latest_per_task

    versions = [item[1] for item in read_topic(bootstrap, settings.topic(topics.OUTREACH_TASKS.name), codec)
                if not isinstance(item, DecodeError)]
    return [task for task in latest_per_task(versions).values() if task["status"] in ACTIVE_STATUSES]


def _tasks_summary(open_tasks: list[dict]) -> None:
    from streams.detectors.tasks import QUEUES

    problems = sum(len(t.get("problems") or [None]) for t in open_tasks)
    print(f"\nOutreach cases open per queue ({counted(len(open_tasks), 'case')}, one per customer, with "
          f"{counted(problems, 'problem')}; `forewarn tasks` lists them; queue and rule of each case's most "
          f"urgent problem):")
    for queue in QUEUES:
        mine = [t for t in open_tasks if t["queue"] == queue]
        if not mine:
            continue
        rules = collections.Counter(t["rule"] for t in mine)
        print(f"  {queue:18} {len(mine):3}   " + ", ".join(f"{rule} {n}" for rule, n in sorted(rules.items())))


def _wait_for_the_store(stack: Stack, settings: Settings) -> dict[str, int] | None:
    """Wait until the sink has written every message to ClickHouse; the rows per table, or None."""
    from sinks.clickhouse.query import QueryError, run_query
    from sinks.clickhouse.tables import SINK_TOPICS, TABLE_FOR_TOPIC

    print("(waiting for the sink to write everything to ClickHouse)", flush=True)
    group = settings.topic("forewarn-sink")
    watched = [settings.topic(spec.name) for spec in SINK_TOPICS]
    deadline = time.monotonic() + DRAIN_LIMIT_S
    with LagProbe(stack.bootstrap) as probe:
        while probe.total(group, watched) != 0:
            if stack.failed_child() is not None or time.monotonic() > deadline:
                print(f"the sink did not write everything within {DRAIN_LIMIT_S:.0f}s; see {stack.sink_log}")
                return None
            time.sleep(0.5)
    tables = sorted(set(TABLE_FOR_TOPIC.values()))
    sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count() AS n FROM {t}" for t in tables)
    try:
        return {t: int(n) for t, n in run_query(settings, sql).rows}
    except QueryError as exc:
        print(f"the store did not answer: {exc}")
        return None


def _store_summary(stored: dict[str, int] | None, settings: Settings) -> None:
    if not stored:
        return
    rows = ", ".join(f"{table} {n}" for table, n in sorted(stored.items()) if n)
    where = clickhouse_address(settings.clickhouse).shown if settings.clickhouse else settings.data_dir / "clickhouse"
    print(f"\nIn ClickHouse ({where}): {rows}.")
    where = "" if settings.clickhouse else f"FOREWARN_DATA_DIR={settings.data_dir} "
    print(f"  {where}forewarn sql \"SELECT rule, count() FROM alerts_latest GROUP BY rule\"   # ask the demo's "
          "store anything; see the README's queries for analysts")


def _play(timeline, settings: Settings, bootstrap: str, codec: Codec, stack: Stack, produced: list[int],
          duration: float | None = None) -> int:
    """Produce the timeline in real time; count in ``produced[0]`` the events the broker acknowledged.

    The schedule's `duration` seconds of wall time play the last full clock
    hour of the shop's event time (streams.simulator.shop_time): the reply
    targets, payment grace periods and complaint windows of the stories all
    fall inside it. Stops early if the worker dies. The count is kept in the
    caller's list so that it is known even when a signal interrupts the
    traffic.
    """

    def delivered(err, _msg) -> None:
        if err is None:
            produced[0] += 1

    producer = producer_for(bootstrap)
    start = time.monotonic()
    duration = duration or max((item.at for item in timeline), default=1.0) or 1.0
    hour = 3_600_000
    shop_start = int(time.time() * 1000) // hour * hour - hour
    for item in timeline:
        delay = item.at - (time.monotonic() - start)
        if delay > 0:
            producer.poll(0)
            time.sleep(delay)
        if stack.failed_child() is not None:
            break
        spec = topics.BY_NAME[item.topic]
        record = item.stamped(duration, shop_start)
        value = codec.encode(spec.schema, record, topic=settings.topic(spec.name))
        while True:
            try:
                producer.produce(settings.topic(spec.name), key=message_key(spec, record), value=value,
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: wait for acknowledgements
    # Interrupted by a signal, the demo does not wait for these: it is stopping anyway.
    producer.flush(30)
    return produced[0]


def _summary(counts: collections.Counter, produced: int, settings: Settings) -> None:
    print(f"\nSummary: {_events(produced)} produced; alerts per rule:")
    rules = sorted({rule for rule, _ in counts})
    if not rules:
        print("  none (see the worker log)")
    for rule in rules:
        statuses = ", ".join(f"{status} {counts[(rule, status)]}" for status in ("open", "updated", "resolved")
                             if counts[(rule, status)])
        print(f"  {rule:28} {statuses}")


def _events(n: int) -> str:
    return f"{n} event" if n == 1 else f"{n} events"
