"""The demo's traffic: the count it reports is the events the broker took, not the length of the script."""

from __future__ import annotations

import dataclasses

from schemas.codec import Codec
from streams import demo
from streams.settings import Settings
from streams.simulator import store_timeline
from tests.unit.test_produce_lines import FakeProducer


class WorkerDiesAfter:
    """A stand-in for the Stack whose worker exits once `n` events have been produced."""

    def __init__(self, producer: FakeProducer, n: int) -> None:
        self.producer, self.n = producer, n

    def failed_child(self):
        return object() if len(self.producer.sent) >= self.n else None


def timeline(count: int):
    # The real script's records, all due now, so nothing sleeps.
    return [dataclasses.replace(item, at=0.0) for item in store_timeline(20)[:count]]


def test_play_counts_only_what_it_produced_when_the_worker_dies_partway(monkeypatch):
    producer = FakeProducer()
    monkeypatch.setattr(demo, "producer_for", lambda bootstrap: producer)
    produced = [0]
    count = demo._play(timeline(12), Settings(), "kafka:9092", Codec(), WorkerDiesAfter(producer, 5), produced)
    assert count == produced[0] == 5 == len(producer.sent)


def test_play_counts_every_event_when_nothing_goes_wrong(monkeypatch):
    producer = FakeProducer()
    monkeypatch.setattr(demo, "producer_for", lambda bootstrap: producer)
    produced = [0]
    assert demo._play(timeline(12), Settings(), "kafka:9092", Codec(), WorkerDiesAfter(producer, 99), produced) == 12


def test_play_counts_only_acknowledged_events(monkeypatch):
    producer = FakeProducer(refuse={2, 3})
    monkeypatch.setattr(demo, "producer_for", lambda bootstrap: producer)
    assert demo._play(timeline(6), Settings(), "kafka:9092", Codec(), WorkerDiesAfter(producer, 99), [0]) == 4
