"""How long `forewarn up` takes to be ready on the embedded default, and the memory the stack takes.

    python bench/startup_bench.py [--memory] [--settle SECONDS]

Starts `forewarn up` in a fresh data directory (the broker's jars must already
be cached: run `python -m streams.kafka_dist fetch` once), waits until the
detection worker has its partitions and the sink has opened the store and been
given its partitions ("ready"), lets the idle stack settle for --settle seconds
(default 10), and prints the time to ready and the resident memory (VmRSS) of
every process of the stack: the supervisor, the broker, the worker and the
sink. Then it stops the stack (SIGTERM), starts it again on the same data
directory and prints the same figures for the restart. --memory measures the
in-memory broker (FOREWARN_EMBEDDED=memory) instead. Run by hand; figures go in
the README with the command that produced them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.workload import memory_of  # noqa: E402
from sinks.clickhouse.sink import read_status as sink_status, status_path  # noqa: E402
from streams.app import worker_datadir, worker_is_ready  # noqa: E402
from streams.settings import Settings  # noqa: E402

READY_TIMEOUT_S = 300


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def name_of(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    if "kafka.Kafka" in text or "java" in argv[0].decode(errors="replace"):
        return "broker (Apache Kafka)"
    if "broker" in text and "streams" not in text:
        return "broker (in memory)"
    if text.endswith("sink"):
        return "sink"
    if " worker" in text:
        return "worker"
    return text[:40]


def start_and_measure(env: dict[str, str], settings: Settings, settle_s: float) -> tuple[float, dict[str, int]]:
    worker = settings.with_(worker_id="worker-0")
    # What the last run left would pass for ready at once (forewarn up removes them itself, later).
    (worker_datadir(worker) / "ready").unlink(missing_ok=True)
    status_path(settings).unlink(missing_ok=True)
    started = time.monotonic()
    up = subprocess.Popen([sys.executable, "-m", "streams", "up"], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        while not (worker_is_ready(worker) and (sink_status(settings) or {}).get("assigned_partitions")):
            if up.poll() is not None:
                raise SystemExit(f"forewarn up exited with status {up.returncode}; see {settings.data_dir}/logs")
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise SystemExit(f"the stack was not ready within {READY_TIMEOUT_S}s")
            time.sleep(0.05)
        ready_s = time.monotonic() - started
        settle_until = time.monotonic() + settle_s
        while time.monotonic() < settle_until:
            time.sleep(0.5)
        memory = {"supervisor (forewarn up)": memory_of(up.pid).get("VmRSS", 0)}
        for child in children_of(up.pid):
            memory[name_of(child)] = memory_of(child).get("VmRSS", 0)
        return ready_s, memory
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=120)


def report(what: str, ready_s: float, memory: dict[str, int]) -> None:
    print(f"{what}: ready in {ready_s:.1f}s; resident memory {sum(memory.values()) / 1024:,.0f} MiB in all")
    for name, kb in memory.items():
        print(f"    {name:26} {kb / 1024:7,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true", help="the in-memory broker instead of Apache Kafka")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds idle before memory is read")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
        env["FOREWARN_DATA_DIR"] = tmp
        if args.memory:
            env["FOREWARN_EMBEDDED"] = "memory"
        settings = Settings.from_env(env)
        report("first start (empty data directory)", *start_and_measure(env, settings, args.settle))
        report("restart (same data directory)", *start_and_measure(env, settings, args.settle))


if __name__ == "__main__":
    main()
