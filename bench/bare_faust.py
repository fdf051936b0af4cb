"""A bare Faust agent that only counts events: the framework's floor, for bench/worker_bench.py.

    python bench/bare_faust.py --bootstrap HOST:PORT --group GROUP --topics T1,T2,... --expect N \
        --result FILE --datadir DIR

One app (its id is the consumer group), one agent over all the given topics,
raw bytes in, nothing decoded, no tables, nothing sent. Once it has counted
N events it writes one JSON line to FILE: the count, the seconds from its
first event to its N-th, and the CPU seconds the process used meanwhile. It then idles until it is terminated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faust  # noqa: E402

from streams.brokers import session_timeout_s  # noqa: E402
from streams.settings import Settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated topic names")
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--datadir", type=Path, required=True)
    args = parser.parse_args()

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=str(args.datadir),
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        autodiscover=False,
        # The same session timeout the worker gets on this broker, so both join alike.
        broker_session_timeout=session_timeout_s(Settings(), args.bootstrap),
    )
    channel = app.topic(*args.topics.split(","), key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "first": 0.0, "cpu": 0.0}

    @app.agent(channel)
    async def count(stream):
        async for _value in stream:
            seen["n"] += 1
            if seen["n"] == 1:
                seen["first"], seen["cpu"] = time.monotonic(), time.process_time()
            if seen["n"] == args.expect:
                elapsed = time.monotonic() - seen["first"]
                cpu = time.process_time() - seen["cpu"]
                args.result.write_text(json.dumps({"events": seen["n"], "seconds": elapsed, "cpu_seconds": cpu})
                                       + "\n")

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
