"""Shared by the integration tests: run `forewarn` as users do, and wait for conditions with deadlines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.codec import Codec
from streams.embedded import die_with_parent_hook
from streams import topics
from streams.follow import read_topic
from schemas.codec import DecodeError
from streams.kafka_security import kafka_client_config


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.5):
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """Terminate `proc` if it still runs, and kill it if it has not exited within `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_web_addr() -> str:
    """A loopback address for `forewarn web` (which `forewarn up` runs) that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


# The FOREWARN_KAFKA_* login settings of the session's cluster (FOREWARN_TEST_KAFKA=secure sets them),
# given to every forewarn process a test starts against it.
KAFKA_LOGIN_ENV: dict[str, str] = {}


def forewarn_env(bootstrap: str, prefix: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
    env.update(FOREWARN_KAFKA=bootstrap, FOREWARN_TOPIC_PREFIX=prefix, FOREWARN_DATA_DIR=str(data_dir),
               FOREWARN_WEB_ADDR=free_web_addr(), **KAFKA_LOGIN_ENV)
    env.update(extra)
    return env


def run_forewarn(args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "streams", *args], env=env, input=stdin, text=True,
                          capture_output=True, timeout=timeout)


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def first_error(log_text: str, context: int = 4000) -> str:
    """Where a worker's log says why it crashed, with what follows (the shutdown after a crash buries it).

    The service crash report if there is one, else the first traceback, else the first error line.
    """
    for marker in ("Crashed reason=", "Traceback", "[ERROR]"):
        found = log_text.find(marker)
        if found >= 0:
            start = log_text.rfind("\n", 0, found) + 1
            return log_text[start:start + context]
    return "(no error logged)"


class Workers:
    """Detection workers as separate processes, the way production runs them."""

    def __init__(self, env: dict[str, str], count: int, log_dir: Path) -> None:
        self.env, self.count, self.log_dir = env, count, log_dir
        self.procs: list[subprocess.Popen] = []
        self.killed: set[int] = set()

    def start(self) -> "Workers":
        if self.procs:
            raise RuntimeError("these workers were started already (`with Workers(...)` starts them)")
        for n in range(self.count):
            self.procs.append(self._spawn(n))
        return self

    def _spawn(self, n: int) -> subprocess.Popen:
        env = dict(self.env, FOREWARN_WORKER_ID=f"w{n}")
        log = open(self.log_dir / f"worker-{n}.log", "ab")
        # Workers die with the test process, even when it crashes.
        return subprocess.Popen([sys.executable, "-m", "streams", "worker", "--loglevel", "info"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent_hook())

    def restart(self, n: int) -> None:
        """Start worker `n` again after it was killed; its tables come back from the changelogs."""
        self.procs[n] = self._spawn(n)
        self.killed.discard(n)

    def kill(self, n: int) -> None:
        """SIGKILL worker `n`: no goodbye to the group, no final commit."""
        self.procs[n].kill()
        self.procs[n].wait()
        self.killed.add(n)

    def assert_running(self) -> None:
        for n, proc in enumerate(self.procs):
            if n not in self.killed and proc.poll() is not None:
                text = (self.log_dir / f"worker-{n}.log").read_text(errors="replace")
                raise AssertionError(f"worker {n} exited with {proc.returncode}:\n{first_error(text)}"
                                     f"\n... last lines of its log:\n{text[-3000:]}")

    def stop(self) -> list[int]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes

    def __enter__(self) -> "Workers":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def read_alerts(bootstrap: str, prefix: str) -> list[dict]:
    codec = Codec()
    return [item[1] for item in read_topic(bootstrap, f"{prefix}{topics.ALERTS.name}", codec)
            if not isinstance(item, DecodeError)]


def read_raw(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    """Every message of `topic` (key, value, headers) from the beginning, once `expected` of them are there."""
    consumer = Consumer(kafka_client_config(bootstrap, {
        "group.id": f"raw-{time.time_ns()}", "enable.auto.commit": False,
    }))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list = []
        deadline = time.monotonic() + timeout
        while len(messages) < expected and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        return messages
    finally:
        consumer.close()
