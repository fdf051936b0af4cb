"""Reading a group's committed offsets from a broker that is still starting must not kill the process.

The admin client's ListConsumerGroupOffsets dereferences a consumer-group
handle it does not have when the broker answers NOT_COORDINATOR (librdkafka
issue #5040), which a broker does while its group coordinator is loading: the
process died with SIGSEGV in about one start in three (one such crash ended a
whole test run). streams.follow.LagProbe reads committed offsets with a
consumer carrying the group's id instead. This test starts fresh nodes and
asks for committed offsets at once, from a child process, so a crash fails the
test instead of ending the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.kafka_node import KafkaNode

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Imports first, then the address on stdin: the asking starts the moment the node is ready.
ASK_AT_ONCE = """
import sys, uuid
from confluent_kafka import TopicPartition
from streams.follow import LagProbe

bootstrap = sys.stdin.readline().strip()
answered = failed = 0
with LagProbe(bootstrap, timeout=10.0) as probe:
    for _ in range(40):
        group = "probe-" + uuid.uuid4().hex[:8]
        try:
            offsets = probe.committed(group, [TopicPartition("never-written", 0)])
        except Exception as exc:  # NOT_COORDINATOR while the coordinator loads: an error, not a crash
            failed += 1
            continue
        assert [tp.offset for tp in offsets] == [-1001], offsets  # a new group has committed nothing
        answered += 1
print(f"answered {answered} failed {failed}")
"""


@pytest.mark.parametrize("start", range(3))
def test_committed_offsets_are_read_safely_while_the_broker_starts(tmp_path, start):
    child = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", ASK_AT_ONCE], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    node = KafkaNode(tmp_path / "kafka")
    try:
        node.start()
        out, err = child.communicate(node.bootstrap + "\n", timeout=600)
    finally:
        child.kill()
        node.stop()
    assert child.returncode == 0, f"exit {child.returncode}: {out}{err}"
    answered = int(out.split()[1])
    assert answered > 0, out
