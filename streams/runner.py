"""Running the processes of the stack: one detection worker, and `forewarn up`'s supervisor.

A worker runs in the foreground of its own process (Faust owns that process's
event loop and signal handling). `forewarn up` and `forewarn demo` supervise
child processes instead: the embedded broker and one or more workers, started
in order, stopped in reverse order on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

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
from streams.settings import Settings, SettingsError

log = logging.getLogger(__name__)

# Topic pairs one agent joins: they must have the same partition count as the tables.
COPARTITIONED = (topics.ORDERS, topics.ORDER_SHORTAGES, topics.INVENTORY, topics.ORDER_LINES)


def check_partitions(settings: Settings, bootstrap: str) -> None:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
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


def run_worker(settings: Settings, bootstrap: str, loglevel: str = "warning") -> int:
    """Run one detection worker in this process until SIGINT/SIGTERM; returns the exit status."""
    import faust  # imported here so the CLI's other commands start fast

    from streams.app import build_worker

    ensure_topics(settings, bootstrap)
    check_partitions(settings, bootstrap)
    worker = build_worker(settings, bootstrap)
    worker.reference.start()
    try:
        runner = faust.Worker(worker.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
        try:
            runner.execute_from_commandline()
        except SystemExit as exit_:
            return int(exit_.code or 0)
        return 0
    finally:
        worker.reference.stop()


def write_endpoints(settings: Settings, bootstrap: str) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.endpoint_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"kafka": bootstrap, "pid": os.getpid(), "topic_prefix": settings.topic_prefix}))
    os.replace(tmp, settings.endpoint_file)


def remove_endpoints(settings: Settings) -> None:
    try:
        recorded = json.loads(settings.endpoint_file.read_text())
    except (OSError, ValueError):
        return
    if recorded.get("pid") == os.getpid():
        settings.endpoint_file.unlink(missing_ok=True)


class Stack:
    """The broker (unless FOREWARN_KAFKA is set) and worker processes, as one foreground unit."""

    def __init__(self, settings: Settings, workers: int = 1, worker_log: Path | None = None,
                 worker_loglevel: str = "warning") -> None:
        self.settings = settings
        self.worker_loglevel = worker_loglevel
        self.workers = workers
        self.worker_log = worker_log
        self.broker = None
        self.bootstrap: str | None = settings.kafka
        self.children: list[subprocess.Popen] = []

    def start(self) -> str:
        from streams.embedded import EmbeddedBroker

        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if self.bootstrap is None:
            self.broker = EmbeddedBroker(self.settings.data_dir / "broker.log").start()
            self.bootstrap = self.broker.bootstrap
        ensure_topics(self.settings, self.bootstrap)
        write_endpoints(self.settings, self.bootstrap)
        for n in range(self.workers):
            self.children.append(self._spawn_worker(n))
        return self.bootstrap

    def _spawn_worker(self, n: int) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(
            FOREWARN_KAFKA=self.bootstrap,
            FOREWARN_DATA_DIR=str(self.settings.data_dir),
            FOREWARN_TOPIC_PREFIX=self.settings.topic_prefix,
            FOREWARN_PARTITIONS=str(self.settings.partitions),
            FOREWARN_WORKER_ID=f"worker-{n}",
        )
        output = None
        if self.worker_log is not None:
            self.worker_log.parent.mkdir(parents=True, exist_ok=True)
            output = open(self.worker_log, "ab")
        return subprocess.Popen([sys.executable, "-m", "streams", "worker", "--loglevel", self.worker_loglevel], env=env,
                                stdout=output, stderr=subprocess.STDOUT if output else None)

    def workers_ready(self) -> bool:
        from streams.app import worker_is_ready

        return all(worker_is_ready(self.settings.with_(worker_id=f"worker-{n}")) for n in range(self.workers))

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
        remove_endpoints(self.settings)
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Stop(Exception):
    pass


def run_up(settings: Settings, workers: int = 1) -> int:
    """`forewarn up`: start the stack, say where it listens, wait for Ctrl-C or SIGTERM."""

    def on_signal(signum, _frame):
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(settings, workers=workers)
    try:
        bootstrap = stack.start()
        where = "embedded broker" if stack.broker is not None else "FOREWARN_KAFKA"
        print(f"forewarn up: Kafka at {bootstrap} ({where}); {workers} detection worker(s); "
              f"topic prefix {settings.topic_prefix or '(none)'}", flush=True)
        print(f"forewarn up: recorded in {settings.endpoint_file}; commands run beside it find it. "
              f"Ctrl-C stops everything.", flush=True)
        while True:
            failed = stack.failed_child()
            if failed is not None:
                print(f"forewarn up: a worker exited with status {failed.returncode}; stopping", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except _Stop:
        print("forewarn up: stopping", flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stack.stop()
