"""`forewarn produce` and `forewarn alerts` against a real broker when the input or the topics are not as expected."""

from __future__ import annotations

import json

import pytest

from schemas.codec import Codec, DecodeError
from streams.app import worker_is_ready
from streams.follow import read_topic
from streams.settings import Settings
from tests.integration.helpers import Workers, forewarn_env, run_forewarn, wait_for

pytestmark = pytest.mark.integration

STOCK = {"event_id": "s1", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A", "available": 3}


def event_ids(bootstrap: str, topic: str) -> list[str]:
    """Every event id on `topic`, read to its end."""
    return sorted(item[1]["event_id"] for item in read_topic(bootstrap, topic, Codec())
                  if not isinstance(item, DecodeError))


def test_a_line_too_large_for_kafka_is_reported_and_the_lines_around_it_are_sent(
        kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    path = tmp_path / "stock.jsonl"
    huge = dict(STOCK, event_id="x" * 1_200_000)  # valid, but over the 1 MB a message may have
    path.write_text("".join(json.dumps(record) + "\n" for record in
                            (STOCK, huge, dict(STOCK, event_id="s3", sku="B"))))
    result = run_forewarn(["produce", "--topic", "inventory", str(path)], env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    # Refused by produce itself, naming the field that holds the bytes, before the Kafka client sees it.
    assert lines[0].startswith(f"{path}: line 2: event_id: too large: the message would be 1,2")
    assert "over the 1,000,000 bytes a Kafka message may hold by default" in lines[0]
    assert lines[1] == "produced 2 records (inventory 2); rejected 1 line"
    assert event_ids(kafka_bootstrap, f"{fresh_prefix}inventory") == ["s1", "s3"]


def test_a_file_with_a_bad_byte_sends_every_other_line(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    path = tmp_path / "stock.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(STOCK).encode() + b"\n"
                     + json.dumps(dict(STOCK, event_id="s2")).encode().replace(b"s2", b"s\xe92") + b"\n"
                     + json.dumps(dict(STOCK, event_id="s3")).encode() + b"\n")
    result = run_forewarn(["produce", "--topic", "inventory", str(path)], env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"{path}: line 2: not valid UTF-8 at byte 16 of the line (0xe9: invalid continuation byte); "
        f"save the file as UTF-8")
    assert event_ids(kafka_bootstrap, f"{fresh_prefix}inventory") == ["s1", "s3"]


def test_alerts_before_the_topics_exist_says_how_to_create_them(kafka_bootstrap, fresh_prefix, tmp_path):
    result = run_forewarn(["alerts"], forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"forewarn alerts: there is no topic {fresh_prefix}alerts at {kafka_bootstrap} "
        f"(FOREWARN_TOPIC_PREFIX={fresh_prefix!r}); create the topics with `forewarn topics create` or start "
        f"`forewarn up`, or set FOREWARN_TOPIC_PREFIX to the prefix the workers use")


def test_alerts_of_an_empty_topic_prints_nothing_and_succeeds(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    for args in (["alerts"], ["alerts", "--json"], ["alerts", "--rule", "out_of_stock_open_order"]):
        result = run_forewarn(args, env)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), args


def test_a_second_worker_with_a_running_workers_id_is_refused_and_the_first_runs_on(
        kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    with Workers(env, 1, tmp_path) as workers:
        first = Settings(data_dir=tmp_path, topic_prefix=fresh_prefix, worker_id="w0")
        wait_for(lambda: workers.assert_running() or worker_is_ready(first), 120, "the first worker to be assigned")
        second = run_forewarn(["worker"], dict(env, FOREWARN_WORKER_ID="w0"))
        assert second.returncode == 2, second.stderr
        assert "FOREWARN_WORKER_ID=w0 is already running" in second.stderr and "Traceback" not in second.stderr
        assert worker_is_ready(first)  # its scratch directory was left alone
        workers.assert_running()
