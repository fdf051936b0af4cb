"""Running the processes of the stack: one detection worker, and `forewarn up`'s supervisor.

A worker runs in the foreground of its own process (Faust owns that process's
event loop and signal handling). `forewarn up` and `forewarn demo` supervise
child processes instead: the embedded broker and one or more workers, started
in order, stopped in reverse order on Ctrl-C or SIGTERM. One such stack at a
time owns a data directory, and its children die with it even if it is killed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from streams import topics
from streams.admin import ensure_topics
from streams.kafka_security import kafka_client_config
from streams.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# Every topic an agent reads: the stages join them by partition number, so all must have the
# same partition count as the tables.
COPARTITIONED = topics.GROUP_INPUTS


def check_partitions(settings: Settings, bootstrap: str) -> None:
    metadata = AdminClient(kafka_client_config(bootstrap)).list_topics(timeout=15)
    wrong = []
    for spec in COPARTITIONED:
        name = settings.topic(spec.name)
        meta = metadata.topics.get(name)
        count = len(meta.partitions) if meta is not None and meta.error is None else 0
        if count != settings.partitions:
            wrong.append(f"{name} has {count}")
    if wrong:
        raise SettingsError(
            f"co-partitioned topics must all have FOREWARN_PARTITIONS={settings.partitions} partitions, "
            f"but {', '.join(wrong)}; set FOREWARN_PARTITIONS to the topics' partition count"
        )


def use_uvloop() -> bool:
    """Make every event loop this process creates a uvloop one, where uvloop is installed.

    Measured with bench/worker_bench.py --mix shop (one run each): the
    worker's CPU per 1,000 events fell from 0.174 s to 0.154 s. Faust runs
    its Kafka consumer on a loop of its own thread, which this covers too.
    """
    try:
        import uvloop
    except ImportError:  # not built for this platform: asyncio's own loop
        return False
    fix_aiokafka_send_on_closed_connection()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def fix_aiokafka_send_on_closed_connection() -> None:
    """Fix for aiokafka 0.14's ``AIOKafkaConnection.send`` under uvloop (aiokafka issue 1038).

    When a broker goes away, its connection's transport is closed before
    aiokafka hears of it. A request sent in that moment is written to the
    closed transport: asyncio's own loop drops such a write, uvloop raises
    ``RuntimeError`` ("the handler is closed"), and ``send`` turns only
    ``OSError`` into the ``KafkaConnectionError`` its callers retry on. The
    ``RuntimeError`` then went up through an offset commit and crashed a
    worker when a broker was killed (the fault tests). Here a send on a
    connection whose transport is closing closes the connection and raises
    ``KafkaConnectionError``, as a broken socket does. Once only
    (``tests/unit/test_aiokafka_fix.py`` reproduces it on the installed versions).
    """
    from aiokafka import errors
    from aiokafka.conn import AIOKafkaConnection, CloseReason

    original = AIOKafkaConnection.send
    if getattr(original, "forewarn_fix", False):
        return

    def send(self, request, expect_response=True):
        writer = self._writer
        if writer is not None and writer.transport.is_closing():
            self.close(reason=CloseReason.CONNECTION_BROKEN)
            raise errors.KafkaConnectionError(f"Connection at {self._host}:{self._port} closed")
        return original(self, request, expect_response)

    send.forewarn_fix = True
    AIOKafkaConnection.send = send


# Container objects allocated, net, between two collections of the youngest generation (Python's
# default 700); the older generations keep Python's ratios (10 and 10).
GC_YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """Make the cyclic garbage collector cost the worker less (call once, when it is built).

    The worker allocates a few short-lived dicts and lists per event, so with
    Python's threshold of 700 the collector ran every few events; and each
    full collection walked every object the process made to start (Faust's,
    the clients', the imported modules'), which live as long as it does.
    Those are frozen (never walked again) and the youngest generation is
    collected every 10,000 allocations. Measured with bench/worker_bench.py
    in alternate runs: shop mix 0.520-0.558 -> 0.580-0.617 of the bare Faust
    agent, CPU per 1,000 events 0.117-0.126 s -> 0.108-0.117 s; orders and
    stock the same within the spread. A threshold of 50,000 (older
    generations 20 and 100) made the first event after start-up wait
    70-190 ms for a collection (bench/latency_bench.py, idle); 10,000 did not.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


def run_worker(settings: Settings, bootstrap: str, loglevel: str = "warning") -> int:
    """Run one detection worker in this process until SIGINT/SIGTERM; returns the exit status."""
    import faust  # imported here so the CLI's other commands start fast

    use_uvloop()

    from streams.app import build_worker

    lock = claim_worker_id(settings)
    try:
        ensure_topics(settings, bootstrap)
        check_partitions(settings, bootstrap)
        worker = build_worker(settings, bootstrap)
        from streams.metrics import new_registry, serve_metrics

        metrics_url = serve_metrics(new_registry(worker.runtime.describe_metrics), settings.metrics_addr)
        if metrics_url and settings.metrics_addr[1] == 0:
            print(f"forewarn worker: metrics at {metrics_url}", file=sys.stderr, flush=True)
        worker.runtime.metrics_url = metrics_url
        worker.reference.start()
        tune_collector()
        try:
            runner = faust.Worker(worker.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
            try:
                runner.execute_from_commandline()
            except SystemExit as exit_:
                return int(exit_.code or 0)
            return 0
        finally:
            worker.reference.stop()
    finally:
        release_lock(lock)


def write_endpoints(settings: Settings, bootstrap: str, sink: bool = True,
                    metrics: dict[str, str] | None = None) -> None:
    """Record the stack for commands run beside it: the broker, this process, the topic prefix,
    whether a sink owns the chDB store (`forewarn sql` then waits for its query endpoint), and the
    /metrics URL of every process (for a Prometheus scrape configuration)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.endpoint_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"kafka": bootstrap, "pid": os.getpid(), "topic_prefix": settings.topic_prefix,
                               "sink": sink, "metrics": metrics or {}}))
    os.replace(tmp, settings.endpoint_file)


def scrape_targets_path(settings: Settings) -> Path:
    return settings.data_dir / "metrics-targets.json"


def write_scrape_targets(settings: Settings, urls: dict[str, str]) -> None:
    """The stack's /metrics addresses in Prometheus's file_sd format, one target per process, labelled
    with the process's name (deploy/prometheus/prometheus.yml reads such files)."""
    from urllib.parse import urlsplit

    targets = [{"targets": [urlsplit(url).netloc], "labels": {"process": name}} for name, url in urls.items()]
    path = scrape_targets_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(targets, indent=1) + "\n")
    os.replace(tmp, path)


def take_lock(path: Path) -> tuple[int | None, str]:
    """Take an exclusive flock on `path` and write this process's id into it.

    Returns (descriptor, "") or, when another process holds it, (None, who):
    "process N" or "another process". The flock goes with the process however
    that ends (even SIGKILL), so nothing stale is ever left to clean up.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            return None, f"process {holder}" if holder.isdigit() else "another process"
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd, ""
    except BaseException:
        os.close(fd)  # and with it the lock, if it was taken
        raise


def claim_data_dir(settings: Settings) -> int:
    """Take the data directory for one `forewarn up` or `forewarn demo`; return the lock's descriptor.

    Two stacks on one data directory would overwrite each other's endpoints
    file and wipe each other's worker scratch directories, so the second is
    refused. A stale endpoints file left by a killed stack does not block a new one.
    """
    fd, who = take_lock(settings.data_dir / "stack.lock")
    if fd is None:
        raise SettingsError(
            f"the data directory {settings.data_dir} is in use by a running `forewarn up` or "
            f"`forewarn demo` ({who}); run commands beside it, stop it first, or set "
            f"FOREWARN_DATA_DIR to another directory"
        )
    return fd


def claim_worker_id(settings: Settings) -> int:
    """Take this worker's id on its data directory for the life of the process; return the lock's descriptor.

    A worker starts by wiping its scratch directory (its tables come back from
    the changelogs), so a second worker with the same id, data directory and
    topic prefix (the same scratch directory) would wipe the first one's and
    both would write one status file. The second is refused, naming the first.
    """
    from streams.app import worker_datadir

    scratch = worker_datadir(settings)
    fd, who = take_lock(scratch.parent / f"{scratch.name}.lock")
    if fd is None:
        raise SettingsError(
            f"a worker with FOREWARN_WORKER_ID={settings.worker_id or 'worker'} is already running on the "
            f"data directory {settings.data_dir} with topic prefix {settings.topic_prefix!r} ({who}); give "
            f"each worker its own FOREWARN_WORKER_ID or FOREWARN_DATA_DIR"
        )
    return fd


def release_lock(fd: int) -> None:
    """Let go of a lock taken by claim_data_dir or claim_worker_id."""
    os.close(fd)  # closing the only descriptor releases the flock


def remove_endpoints(settings: Settings) -> None:
    try:
        recorded = json.loads(settings.endpoint_file.read_text())
    except (OSError, ValueError):
        return
    if recorded.get("pid") == os.getpid():
        settings.endpoint_file.unlink(missing_ok=True)


def embedded_broker(settings: Settings):
    """The broker a stack starts without FOREWARN_KAFKA (not started yet).

    By default one Apache Kafka node keeping everything under the data
    directory (streams.kafka_node); with FOREWARN_EMBEDDED=memory the in-memory
    broker (streams.embedded), whose topics are gone when it stops.
    """
    if settings.embedded == "memory":
        from streams.embedded import EmbeddedBroker

        return EmbeddedBroker(settings.data_dir / "broker.log")
    from streams.kafka_node import KafkaNode

    return KafkaNode(settings.data_dir / "kafka", heap=settings.kafka_heap, progress=sys.stderr)


# What `forewarn up --reset` deletes from the data directory: the broker's topics and offsets, the
# workers' scratch directories, the ClickHouse store and the sink's status. The demo's own
# directory and the logs stay.
RESET_ENTRIES = ("kafka", "faust", "clickhouse", "sink", "broker.log")


def reset_data_dir(settings: Settings, confirmed: bool) -> bool:
    """Ask (unless `confirmed`) whether `forewarn up --reset` may start empty; False when the user declines.

    Only the embedded stack's own data is deleted, so the topics and ClickHouse
    never disagree afterwards: with FOREWARN_KAFKA or FOREWARN_CLICKHOUSE set,
    that data lives elsewhere and --reset is refused. The deletion itself
    happens in Stack.start, once the data directory's lock is held.
    """
    for name, value in (("FOREWARN_KAFKA", settings.kafka), ("FOREWARN_CLICKHOUSE", settings.clickhouse)):
        if value:
            raise SettingsError(f"`forewarn up --reset` only empties the embedded stack's data directory, but "
                                f"{name}={value} is set: delete that data there, or unset {name}")
    present = [settings.data_dir / entry for entry in RESET_ENTRIES if (settings.data_dir / entry).exists()]
    if not present:
        return True
    if confirmed:
        return True
    what = ", ".join(str(path) for path in present)
    if not sys.stdin.isatty():
        raise SettingsError(f"`forewarn up --reset` would delete {what}; add --yes to confirm without a terminal")
    answer = input(f"forewarn up --reset deletes every topic, consumer offset, the workers' state and the "
                   f"ClickHouse store ({what}). Type yes to go on: ")
    if answer.strip().lower() != "yes":
        print("forewarn up: not reset; nothing was deleted", file=sys.stderr)
        return False
    return True


def _delete_reset_entries(settings: Settings) -> None:
    import shutil

    for entry in RESET_ENTRIES:
        path = settings.data_dir / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def describe_broker(broker) -> str:
    """How `up` and `demo` name the broker they started."""
    if broker is None:
        return "FOREWARN_KAFKA"
    from streams.kafka_node import KafkaNode

    if isinstance(broker, KafkaNode):
        return f"embedded Apache Kafka, data in {broker.home}"
    return "in-memory broker: nothing is kept when it stops"


class Stack:
    """The broker (unless FOREWARN_KAFKA is set), worker processes and the ClickHouse sink, as one unit."""

    def __init__(self, settings: Settings, workers: int = 1, worker_log: Path | None = None,
                 worker_loglevel: str = "warning", sink: bool = True, reset: bool = False, web: bool = False) -> None:
        self.settings = settings
        # Whether to serve the live page (`forewarn web`) beside the workers and the sink.
        self.web = web
        self.web_log = settings.data_dir / "logs" / "web.log"
        # Start empty: delete RESET_ENTRIES once the data directory is ours (`up --reset`).
        self.reset = reset
        self.worker_loglevel = worker_loglevel
        self.workers = workers
        self.worker_log = worker_log
        self.sink = sink
        self.sink_log = settings.data_dir / "logs" / "sink.log"
        # The notifier runs whenever a destination for alerts is configured.
        self.notify = settings.notifies
        self.notify_log = settings.data_dir / "logs" / "notify.log"
        # Each process's /metrics address, by process name (worker-0, ..., sink, notify); see metrics_plan.
        self.metrics_addrs: dict[str, tuple[str, int]] = {}
        self.broker = None
        self.bootstrap: str | None = settings.kafka
        self.children: list[subprocess.Popen] = []
        self._lock: int | None = None

    def start(self) -> str:
        from streams.app import worker_datadir

        self._lock = claim_data_dir(self.settings)
        if self.web:
            from streams.web import check_address_free

            try:
                check_address_free(self.settings)  # before anything starts, once the data directory is ours
            except SettingsError:
                release_lock(self._lock)
                self._lock = None
                raise
        throwaway = self.bootstrap is None and self.settings.embedded == "memory"
        if throwaway and (self.settings.data_dir / "kafka").exists() and not self.reset:
            release_lock(self._lock)
            self._lock = None
            raise SettingsError(
                f"FOREWARN_EMBEDDED=memory starts empty, but {self.settings.data_dir} holds the embedded Apache "
                f"Kafka node's topics; set FOREWARN_DATA_DIR to another directory for throwaway runs")
        if self.reset or throwaway:
            # A throwaway broker keeps nothing, so neither does the rest: the store and the
            # topics never disagree.
            _delete_reset_entries(self.settings)
        if self.bootstrap is None:
            self.broker = embedded_broker(self.settings)
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
        ensure_topics(self.settings, self.bootstrap)
        self.metrics_addrs = self.metrics_plan()
        write_endpoints(self.settings, self.bootstrap, sink=self.sink, metrics=self.metrics_urls)
        write_scrape_targets(self.settings, self.metrics_urls)
        for n in range(self.workers):
            # A marker left by a worker of an earlier run that was killed would make this
            # one look ready before it has started.
            (worker_datadir(self._worker_settings(n)) / "ready").unlink(missing_ok=True)
            self.children.append(self._spawn_worker(n))
        if self.sink:
            from sinks.clickhouse.sink import status_path

            status_path(self.settings).unlink(missing_ok=True)
            self.children.append(self._spawn_sink())
        if self.web:
            self.children.append(self._spawn_web())
        if self.notify:
            from streams.notify import status_path as notify_status_path

            notify_status_path(self.settings).unlink(missing_ok=True)
            self.children.append(self._spawn_notify())
        return self.bootstrap

    def metrics_plan(self) -> dict[str, tuple[str, int]]:
        """Where each process serves /metrics: with FOREWARN_METRICS_ADDR host:port, consecutive ports
        from that one (worker-0, worker-1, ..., sink, notify); unset or port 0, a free loopback port
        each. The web process answers /metrics on its own address."""
        names = [f"worker-{n}" for n in range(self.workers)] + (["sink"] if self.sink else []) \
            + (["notify"] if self.notify else [])
        from streams.metrics import free_port

        host, base = self.settings.metrics_addr or ("127.0.0.1", 0)
        if base:
            if base + len(names) - 1 > 65_535:
                raise SettingsError(f"FOREWARN_METRICS_ADDR={host}:{base}: `forewarn up` needs {len(names)} "
                                    f"consecutive ports from there; choose a lower one")
            return {name: (host, base + i) for i, name in enumerate(names)}
        return {name: (host, free_port(host)) for name in names}

    @property
    def metrics_urls(self) -> dict[str, str]:
        """The /metrics URL of every process of the stack, by process name."""
        urls = {}
        for name, (host, port) in self.metrics_addrs.items():
            shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
            urls[name] = f"http://{shown}:{port}/metrics"
        if self.web:
            urls["web"] = self.web_url + "metrics"
        return urls

    def _child_env(self, metrics: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("FOREWARN_METRICS_ADDR", None)
        env.update(
            FOREWARN_KAFKA=self.bootstrap,
            FOREWARN_DATA_DIR=str(self.settings.data_dir),
            FOREWARN_TOPIC_PREFIX=self.settings.topic_prefix,
            FOREWARN_PARTITIONS=str(self.settings.partitions),
        )
        if metrics in self.metrics_addrs:
            host, port = self.metrics_addrs[metrics]
            env["FOREWARN_METRICS_ADDR"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return env

    def _spawn_notify(self) -> subprocess.Popen:
        from streams.embedded import die_with_parent_hook

        env = self._child_env("notify")
        if not self.settings.web_url and self.web:
            env["FOREWARN_WEB_URL"] = self.web_url  # the links in delivered alerts lead to this stack's page
        self.notify_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.notify_log, "ab") as output:
            return subprocess.Popen([sys.executable, "-m", "streams", "notify"], env=env,
                                    stdout=output, stderr=subprocess.STDOUT, preexec_fn=die_with_parent_hook())

    def notify_ready(self) -> bool:
        """True once the notifier has been given the alerts topic's partitions."""
        from streams.notify import read_status

        status = read_status(self.settings)
        return bool(status and status.get("assigned_partitions"))

    def _spawn_sink(self) -> subprocess.Popen:
        from streams.embedded import die_with_parent_hook

        self.sink_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.sink_log, "ab") as output:
            return subprocess.Popen([sys.executable, "-m", "streams", "sink"], env=self._child_env("sink"),
                                    stdout=output, stderr=subprocess.STDOUT, preexec_fn=die_with_parent_hook())

    def _spawn_web(self) -> subprocess.Popen:
        from streams.embedded import die_with_parent_hook

        self.web_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.web_log, "ab") as output:
            return subprocess.Popen([sys.executable, "-m", "streams", "web"], env=self._child_env(),
                                    stdout=output, stderr=subprocess.STDOUT, preexec_fn=die_with_parent_hook())

    @property
    def web_url(self) -> str:
        from streams.web import url_of

        return url_of(self.settings)

    def web_ready(self) -> bool:
        """True once the page answers /readyz (it has read the tasks and alerts topics)."""
        from urllib import error, request

        try:
            with request.urlopen(self.web_url + "readyz", timeout=2) as answer:
                return answer.status == 200
        except (error.URLError, OSError):
            return False

    def describe_child(self, child: subprocess.Popen) -> str:
        """What a child process of the stack is, for a message: the sink, the web page or a worker."""
        return {"sink": "the sink", "web": "the web page", "notify": "the notifier"}.get(child.args[-1], "a worker")

    def sink_ready(self) -> bool:
        """True once the sink has opened the store and been given its partitions."""
        from sinks.clickhouse.sink import read_status

        status = read_status(self.settings)
        return bool(status and status.get("assigned_partitions"))

    def _worker_settings(self, n: int) -> Settings:
        return self.settings.with_(worker_id=f"worker-{n}")

    def _spawn_worker(self, n: int) -> subprocess.Popen:
        from streams.embedded import die_with_parent_hook

        env = self._child_env(f"worker-{n}")
        env["FOREWARN_WORKER_ID"] = f"worker-{n}"
        output = None
        if self.worker_log is not None:
            self.worker_log.parent.mkdir(parents=True, exist_ok=True)
            output = open(self.worker_log, "ab")
        try:
            # A supervisor killed without a chance to stop its children must not leave a
            # worker behind; the hook needs start() to run on a thread that lives as long.
            return subprocess.Popen(
                [sys.executable, "-m", "streams", "worker", "--loglevel", self.worker_loglevel], env=env,
                stdout=output, stderr=subprocess.STDOUT if output else None, preexec_fn=die_with_parent_hook())
        finally:
            if output is not None:
                output.close()  # the child has its own copy

    def workers_ready(self) -> bool:
        from streams.app import worker_is_ready

        return all(worker_is_ready(self._worker_settings(n)) for n in range(self.workers))

    def failed_child(self) -> subprocess.Popen | None:
        for child in self.children:
            if child.poll() is not None:
                return child
        return None

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()
        remove_endpoints(self.settings)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self._lock is not None:
            release_lock(self._lock)
            self._lock = None

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class Stopped(Exception):
    """SIGINT or SIGTERM arrived; the supervisor should stop its stack and exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopOnSignal:
    """SIGINT/SIGTERM raise ``Stopped`` once; later ones are ignored until the block ends.

    A second Ctrl-C while the stack stops must not interrupt stopping it (that
    would leave the broker or a worker running), so the handlers stay
    installed, ignoring, until the ``with`` block has finished stopping; only
    then are the previous handlers restored.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._previous: dict = {}
        self.stopping = False

    def _on_signal(self, signum, _frame) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise Stopped(signum)

    def ignore_further(self) -> None:
        self.stopping = True

    def __enter__(self) -> "StopOnSignal":
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_up(settings: Settings, workers: int = 1, sink: bool = True, reset: bool = False, web: bool = True) -> int:
    """`forewarn up`: start the stack, say where it listens, wait for Ctrl-C or SIGTERM."""
    with StopOnSignal() as signals:
        stack = Stack(settings, workers=workers, sink=sink, reset=reset, web=web)
        started = time.monotonic()
        ready = False
        try:
            bootstrap = stack.start()
            where = describe_broker(stack.broker)
            from streams.settings import clickhouse_address

            store = (clickhouse_address(settings.clickhouse).shown if settings.clickhouse
                     else f"chDB in {settings.data_dir / 'clickhouse'}")
            print(f"forewarn up: Kafka at {bootstrap} ({where}); "
                  f"{workers} detection {'worker' if workers == 1 else 'workers'}; "
                  f"topic prefix {settings.topic_prefix or '(none)'}; "
                  + (f"sink into {store} (log {stack.sink_log})" if sink else "no sink"), flush=True)
            if stack.notify:
                from streams.notify import config_from_settings

                shown = "; ".join(d.shown for d in config_from_settings(settings).destinations.values())
                print(f"forewarn up: delivering alerts to {shown} (log {stack.notify_log})", flush=True)
            print("forewarn up: metrics at " + ", ".join(f"{name} {url}" for name, url in stack.metrics_urls.items()),
                  flush=True)
            print(f"forewarn up: recorded in {settings.endpoint_file}; commands run beside it find it. "
                  f"Ctrl-C stops everything.", flush=True)
            while True:
                failed = stack.failed_child()
                if failed is not None:
                    what = stack.describe_child(failed)
                    log_file = {"the sink": stack.sink_log, "the web page": stack.web_log,
                                "the notifier": stack.notify_log}.get(what)
                    print(f"forewarn up: {what} exited with status {failed.returncode}; stopping"
                          + (f" (see {log_file})" if log_file else ""), file=sys.stderr)
                    return 1
                if not ready and stack.workers_ready() and (not sink or stack.sink_ready()) \
                        and (not web or stack.web_ready()) and (not stack.notify or stack.notify_ready()):
                    ready = True
                    print(f"forewarn up: ready in {time.monotonic() - started:.1f}s: Kafka at {bootstrap}"
                          + (f"; ClickHouse: {store}" if sink else "")
                          + (f"; the live page at {stack.web_url}" if web else "")
                          + "; `forewarn status` shows how the stack is doing", flush=True)
                time.sleep(0.2 if not ready else 0.5)
        except Stopped:
            print("forewarn up: stopping", flush=True)
            return 0
        finally:
            signals.ignore_further()
            stack.stop()
