"""Throughput of the detection worker against Faust's own floor, on the same pre-produced events.

    python bench/worker_bench.py --mix shop|orders-stock [--events N] [--kafka HOST:PORT | --apache | --memory]
        [--skus S] [--timeout SECONDS] [--seed N]

Pre-produces N input events of one mix (bench/workload.py; event times spread
over the last hour):

* ``shop`` (default N 28,800): about 60 % web, 20 % orders, 8 % stock,
  8 % support, 2 % returns, 2 % feedback;
* ``orders-stock`` (default N 10,200): orders and stock alone, in the same
  proportion to each other (about 70 % orders).

Every SKU's opening stock level comes first and counts among the N events;
catalog and customer reference data are produced beside them and not counted
(the worker reads them outside its consumer group). Then three consumers read
the same events, one after the other, in one run:

a. a plain confluent-kafka consumer assigned every input partition;
b. a bare Faust agent that only counts (bench/bare_faust.py, raw bytes, fresh group);
c. the worker with every rule (`python -m streams worker`, its own group),
   from the moment its group is stable (asked of the broker every 0.1 s; the
   worker's ``ready`` marker, written by a timer that can run late, only where
   the broker cannot say) until its group's lag over every topic in
   ``topics.GROUP_INPUTS``, internal ones included, is zero; and again from
   its first processed event (its ``forewarn_events_processed_total``,
   polled every 20 ms on its /metrics) to zero lag, which leaves out its
   start-up (table recovery, the first fetch) as b's timing does. Lag moves
   only when the worker commits (every second, and as soon as it has caught
   up), and is asked every LAG_POLL_S (50 ms), so runs of a few thousand
   events carry an error of a few tenths of a second; the worker's time
   includes the commit of its last events, b's does not.

a and b are timed from their first event to their last (a also prints how
long its first fetch took; with a few thousand events a's figure means
little, as the client fetches ahead in the background). Prints one line per
figure (events/s) and the ratios worker/bare Faust, from joining and from
the first event. Uses the embedded default
unless --kafka or --apache is given. Exits with status 1 and a message if a
consumer does not finish within --timeout seconds. Run by hand; figures go in
the README with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition  # noqa: E402

from bench.workload import (  # noqa: E402
    DEFAULT_EVENTS,
    MIXES,
    REPO,
    BenchError,
    Sender,
    Shop,
    WorkerProcess,
    add_broker_arguments,
    broker_for,
    cpu_seconds,
    describe_counts,
    log_tail,
    mix_events,
    run_main,
    say,
    uncommitted,
    wait_for_zero_lag,
)
from streams import topics  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.kafka_security import kafka_client_config
from streams.settings import Settings  # noqa: E402
from tests.integration.helpers import stop_process  # noqa: E402


# How often the worker's group lag is asked for (three requests to the broker each time): the
# worker's time is known to within this. At 250 ms, a tenth of an orders-and-stock run.
LAG_POLL_S = 0.05


def measured_topics(settings: Settings) -> list[str]:
    """The input topics of the workers' group: what a and b read (internal topics are empty before c)."""
    return [settings.topic(spec.name) for spec in topics.GROUP_INPUTS if spec.kind == "input"]


def raw_consume(bootstrap: str, names: list[str], expect: int, timeout: float) -> tuple[float, float]:
    """A confluent-kafka consumer reading `expect` messages: seconds from its first message to the last,
    and seconds from the first fetch to the first message (connection and offset look-ups)."""
    consumer = Consumer(kafka_client_config(bootstrap, {
        "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False, "enable.partition.eof": False,
    }))
    try:
        metadata = consumer.list_topics(timeout=10)
        assignment = [TopicPartition(name, p, OFFSET_BEGINNING)
                      for name in names for p in metadata.topics[name].partitions]
        consumer.assign(assignment)
        seen, first = 0, None
        fetching = time.monotonic()
        deadline = fetching + timeout
        while seen < expect:
            if time.monotonic() > deadline:
                raise BenchError(f"the plain consumer read {seen:,} of {expect:,} events in {timeout:.0f}s")
            # Batches of 1,000 (a partial one ends at the timeout): the clock starts at the first message.
            for message in consumer.consume(num_messages=min(1_000, expect - seen), timeout=0.5):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                if error is None:
                    if first is None:
                        first = time.monotonic()
                    seen += 1
        return time.monotonic() - first, first - fetching
    finally:
        consumer.close()


def bare_faust(bootstrap: str, settings: Settings, names: list[str], expect: int, scratch: Path,
               timeout: float) -> tuple[float, float]:
    """Seconds a bare counting Faust agent takes from its first event to the `expect`-th, and its CPU seconds."""
    result = scratch / "bare-faust.json"
    log_path = scratch / "bare-faust.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "bare_faust.py"), "--bootstrap", bootstrap,
             "--group", settings.topic(f"bench-bare-faust-{uuid.uuid4().hex[:6]}"), "--topics", ",".join(names),
             "--expect", str(expect), "--result", str(result), "--datadir", str(scratch / "bare-faust")],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not result.exists():
            if proc.poll() is not None:
                raise BenchError(f"the bare Faust agent exited with status {proc.returncode}; its log ends:\n"
                                 f"{log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise BenchError(f"the bare Faust agent did not count {expect:,} events within {timeout:.0f}s; "
                                 f"its log: {log_path}")
            time.sleep(0.1)
        time.sleep(0.05)  # the line is written in one call; let it land whole
        counted_ = json.loads(result.read_text())
        return counted_["seconds"], counted_["cpu_seconds"]
    finally:
        stop_process(proc, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", choices=sorted(MIXES), required=True)
    parser.add_argument("--events", type=int, help="input events to pre-produce (default: 28,800 shop, "
                                                   "10,200 orders-stock)")
    parser.add_argument("--skus", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds each consumer may take before the run fails (default 3600)")
    add_broker_arguments(parser)
    args = parser.parse_args()
    events = args.events or DEFAULT_EVENTS[args.mix]
    scratch = Path(tempfile.mkdtemp(prefix="forewarn-worker-bench-"))
    say(f"scratch directory {scratch}")
    with broker_for(args, scratch) as bootstrap:
        settings = Settings(kafka=bootstrap, data_dir=scratch, topic_prefix=f"bench-{uuid.uuid4().hex[:6]}-")
        ensure_topics(settings, bootstrap)
        shop = Shop(seed=args.seed, skus=args.skus)
        now = int(time.time() * 1000)
        start_ms, end_ms = now - 55 * 60_000, now - 5_000
        sender = Sender(settings, bootstrap)
        sender.send_all(shop.reference(start_ms))
        reference = sender.counts.copy()
        sender.counts.clear()
        say(f"producing {events:,} {args.mix} events")
        began = time.monotonic()
        sent = sender.send_all(mix_events(shop, args.mix, events, start_ms, end_ms))
        sender.close()
        say(f"produced {sent:,} events in {time.monotonic() - began:.1f}s ({describe_counts(sender.counts)}; "
            f"reference data beside them: {describe_counts(reference)})")
        names = measured_topics(settings)

        say("a: plain confluent-kafka consumer")
        raw_s, raw_start_s = raw_consume(bootstrap, names, sent, args.timeout)
        say("b: bare Faust agent")
        bare_s, bare_cpu = bare_faust(bootstrap, settings, names, sent, scratch, args.timeout)
        say("c: the worker with every rule")
        worker = WorkerProcess(settings, bootstrap, "bench0", scratch / "worker.log")
        try:
            joined, how = worker.wait_joined(bootstrap, timeout=300)
            cpu_at_join = cpu_seconds(worker.pid)
            # The marker is written by a timer once partitions are assigned: the worker may have
            # committed some events already, which would flatter the figure.
            at_join = uncommitted(bootstrap, settings, names)
            say(f"worker joined ({how}) {joined - worker.started:.1f}s after start; {at_join} input events then "
                f"uncommitted")
            first = worker.wait_first_event(timeout=300)
            say(f"worker processed its first event {first - joined:.1f}s after joining")
            done = wait_for_zero_lag(bootstrap, settings, worker, args.timeout, poll_s=LAG_POLL_S)
            worker_cpu = cpu_seconds(worker.pid) - cpu_at_join
        finally:
            worker.stop()
        worker_s, worker_first_s = done - joined, done - first

    raw_rate, bare_rate, worker_rate = sent / max(raw_s, 1e-6), sent / bare_s, sent / worker_s
    worker_first_rate = sent / worker_first_s
    print(f"mix {args.mix}: {sent:,} input events ({describe_counts(sender.counts)})")
    print(f"a. confluent-kafka consumer:   {raw_rate:>12,.0f} events/s ({raw_s:.3f}s first to last event; "
          f"first event {raw_start_s:.2f}s after the first fetch)")
    print(f"b. bare Faust agent (count):   {bare_rate:>12,.0f} events/s ({bare_s:.2f}s first to last event)")
    print(f"c. worker, every rule:         {worker_rate:>12,.0f} events/s ({worker_s:.1f}s from joining to "
          f"zero group lag; {done - worker.started:.1f}s from process start)")
    if at_join is not None and at_join < sent:
        print(f"   (caveat: the worker had committed {sent - at_join:,} events before it was seen to join)")
    print(f"   from its first event, as b is timed: {worker_first_rate:>9,.0f} events/s ({worker_first_s:.1f}s from its "
          f"first event to zero group lag)")
    print(f"worker / bare Faust: {worker_rate / bare_rate:.3f} from joining, {worker_first_rate / bare_rate:.3f} "
          f"from the first event")
    # CPU per event depends far less than wall time on what else the machine is doing.
    print(f"CPU per 1,000 events: bare Faust {1000 * bare_cpu / sent:.3f}s, worker {1000 * worker_cpu / sent:.3f}s "
          f"(every thread of each process); ratio bare/worker {bare_cpu / worker_cpu:.3f}")


if __name__ == "__main__":
    run_main(main)
