"""The demo's traffic: the count it reports is the events the broker took, not the length of the script.

Here the real Kafka client talks to a port where nothing listens; with a
broker, see tests/integration/test_demo_play.py.
"""

from __future__ import annotations

import dataclasses

from schemas.codec import Codec
from streams import demo
from streams.produce import producer_for, quiet_client_logger
from streams.settings import Settings
from streams.simulator import store_timeline
from tests.unit.test_produce_lines import closed_port


class WorkerDiesAfter:
    """A stand-in for the demo's Stack whose worker exits after `n` events were handed to the producer.

    `_play` asks the stack once before each event.
    """

    def __init__(self, n: int) -> None:
        self.n, self.asked = n, 0

    def failed_child(self):
        self.asked += 1
        return object() if self.asked > self.n else None


def timeline(count: int):
    # The real script's records, all due now, so nothing sleeps.
    return [dataclasses.replace(item, at=0.0) for item in store_timeline(20)[:count]]


def test_play_counts_no_event_that_no_broker_acknowledged(monkeypatch):
    monkeypatch.setenv("FOREWARN_SINGLE_RECORD_BATCHES", "0")  # no broker to ask what kind it is
    # The client gives up on each message after 300 ms: none is acknowledged, none is counted.
    monkeypatch.setattr(demo, "producer_for", lambda bootstrap: producer_for(
        bootstrap, logger=quiet_client_logger(), **{"message.timeout.ms": 300, "enable.idempotence": False}))
    produced = [0]
    count = demo._play(timeline(6), Settings(), f"127.0.0.1:{closed_port()}", Codec(), WorkerDiesAfter(99), produced)
    assert count == produced[0] == 0
