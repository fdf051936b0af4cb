"""A consumer group's lag per partition, printed as one JSON line a second until the process is killed.

Run by the fault tests as a child process (see ``LagWatch`` in
test_faults.py): ``python -m tests.faults.lag_watch BOOTSTRAP GROUP TOPIC...``.
Each line is a list of ``[topic, partition, messages behind]``, or ``null``
when the lag cannot be known at the moment (a broker restarting, say).
"""

from __future__ import annotations

import json
import sys
import time

from streams.follow import LagProbe


def main(argv: list[str]) -> int:
    bootstrap, group, *topic_names = argv
    with LagProbe(bootstrap) as probe:
        while True:
            behind = probe.by_partition(group, topic_names)
            rows = None if behind is None else [[t, p, n] for (t, p), n in sorted(behind.items())]
            print(json.dumps(rows), flush=True)
            time.sleep(1.0)  # the pace of the readings, not a wait for anything


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
