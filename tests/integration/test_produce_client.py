"""`forewarn produce` with a broker that takes the messages: what lands, under which key, and nothing dropped.

The producer is the one the command uses (streams.produce.producer_for), on
the session's real broker; every test reads back what landed.
"""

from __future__ import annotations

import json

from schemas.codec import Codec
from streams import topics
from streams.admin import ensure_topics
from streams.produce import produce_lines, producer_for, quiet_client_logger
from streams.settings import Settings
from tests.integration.helpers import read_raw
from tests.unit.test_produce_lines import stock_line


def produce(bootstrap: str, prefix: str, lines: list[bytes], topic: str | None = None, **client_config):
    settings = Settings(topic_prefix=prefix)
    ensure_topics(settings, bootstrap, (topics.BY_NAME[topic or "inventory"],))
    rejected: list = []
    producer = producer_for(bootstrap, logger=quiet_client_logger(), **client_config)
    report = produce_lines(lines, settings, bootstrap, topic=topic, producer=producer, on_reject=rejected.append,
                           flush_timeout=30)
    return report, rejected


def event_ids(messages) -> list[str]:
    return sorted(Codec().decode(m.value())[1]["event_id"] for m in messages)


def test_anonymous_feedback_is_sent_without_a_key(kafka_bootstrap, fresh_prefix):
    feedback = {"event_id": "f1", "ts": "2026-03-02T09:15:00Z", "event_type": "review", "score": 2,
                "text": "slow delivery"}
    lines = [json.dumps(feedback).encode(), json.dumps(dict(feedback, event_id="f2", customer_id="C7")).encode()]
    report, rejected = produce(kafka_bootstrap, fresh_prefix, lines, topic="feedback")
    assert rejected == [] and report.sent == 2 and report.per_topic == {"feedback": 2}
    messages = read_raw(kafka_bootstrap, f"{fresh_prefix}feedback", expected=2)
    keys = {Codec().decode(m.value())[1]["event_id"]: m.key() for m in messages}
    assert keys == {"f1": None, "f2": b"C7"}


def test_a_line_that_is_not_utf8_is_rejected_and_the_lines_around_it_are_sent(kafka_bootstrap, fresh_prefix):
    lines = [b"\xef\xbb\xbf" + stock_line(), stock_line(event_id="s2")[:-3] + b"\xff\"}}", stock_line(event_id="s3"),
             b"\xef\xbb\xbf" + stock_line(event_id="s4")]
    report, rejected = produce(kafka_bootstrap, fresh_prefix, lines)
    assert [str(e) for e in rejected[:1]] == [
        f"line 2: not valid UTF-8 at byte {len(lines[1]) - 3} of the line (0xff: invalid start byte); "
        f"save the file as UTF-8"]
    # A byte-order mark is allowed on line 1 only; anywhere else the line is not JSON.
    assert [e.line for e in rejected] == [2, 4] and "not valid JSON" in rejected[1].message
    assert report.sent == 2
    assert event_ids(read_raw(kafka_bootstrap, f"{fresh_prefix}inventory", expected=2)) == ["s1", "s3"]


def test_a_full_queue_waits_for_acknowledgements_instead_of_dropping_lines(kafka_bootstrap, fresh_prefix):
    # Room for one message at a time in the client: every next line must wait for the broker's answer.
    lines = [stock_line(event_id=f"s{n:02d}") for n in range(30)]
    report, rejected = produce(kafka_bootstrap, fresh_prefix, lines, **{"queue.buffering.max.messages": 1})
    assert rejected == [] and report.sent == 30 and report.unacknowledged == 0
    assert event_ids(read_raw(kafka_bootstrap, f"{fresh_prefix}inventory", expected=30)) == [
        f"s{n:02d}" for n in range(30)]
