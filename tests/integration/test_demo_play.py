"""The demo's traffic on a real broker: it counts the events the broker took, and stops with the worker."""

from __future__ import annotations

from schemas.codec import Codec
from streams import demo, topics
from streams.admin import ensure_topics
from streams.settings import Settings
from streams.follow import read_topic
from tests.unit.test_demo_play import WorkerDiesAfter, timeline


def landed(bootstrap: str, settings: Settings) -> int:
    """Messages on every input topic, each read to its end."""
    return sum(1 for spec in topics.INPUT_TOPICS for _ in read_topic(bootstrap, settings.topic(spec.name), Codec()))


def played(bootstrap: str, prefix: str, events: int, worker_dies_after: int) -> tuple[int, Settings]:
    settings = Settings(topic_prefix=prefix)
    ensure_topics(settings, bootstrap, topics.INPUT_TOPICS)
    return demo._play(timeline(events), settings, bootstrap, Codec(), WorkerDiesAfter(worker_dies_after), [0]), settings


def test_play_counts_every_event_when_nothing_goes_wrong(kafka_bootstrap, fresh_prefix):
    count, settings = played(kafka_bootstrap, fresh_prefix, 12, worker_dies_after=99)
    assert count == 12 == landed(kafka_bootstrap, settings)


def test_play_stops_with_the_worker_and_counts_only_what_it_produced(kafka_bootstrap, fresh_prefix):
    count, settings = played(kafka_bootstrap, fresh_prefix, 12, worker_dies_after=5)
    assert count == 5 == landed(kafka_bootstrap, settings)
