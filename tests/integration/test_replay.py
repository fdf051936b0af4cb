"""`forewarn replay`: a recorded timeline into the topics in event-time order, paced or at full speed."""

from __future__ import annotations

import pytest

from schemas.codec import Codec
from tests.integration.helpers import forewarn_env, read_raw, run_forewarn, write_jsonl

pytestmark = pytest.mark.integration


def order(event_id: str, ts: str, event_type: str) -> dict:
    return {"topic": "orders", "value": {"event_id": event_id, "ts": ts, "event_type": event_type,
                                         "order_id": "O-1", "customer_id": "C-1",
                                         "lines": [{"sku": "A", "qty": 1, "unit_price_cents": 100}]}}


def test_replay_produces_in_event_time_order_and_reports_bad_lines(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    timeline = [
        order("e3", "2026-03-02T11:00:00Z", "delivered"),
        order("e1", "2026-03-02T09:00:00Z", "placed"),
        {"topic": "orders", "value": {"event_id": "bad", "ts": "yesterday"}},
        order("e2", "2026-03-02T10:00:00Z", "shipped"),
        order("e2b", "2026-03-02T10:00:00Z", "payment_succeeded"),  # same time: file order kept
    ]
    done = run_forewarn(["replay", str(write_jsonl(tmp_path / "t.jsonl", timeline))], env)
    assert done.returncode == 1  # one line rejected
    assert "t.jsonl: line 3: value.ts:" in done.stderr
    assert "produced 4 records (orders 4) in event-time order, 2026-03-02T09:00:00Z to 2026-03-02T11:00:00Z; " \
           "rejected 1 line" in done.stderr
    messages = read_raw(kafka_bootstrap, f"{fresh_prefix}orders", expected=4)
    codec = Codec()
    assert [codec.decode(m.value())[1]["event_id"] for m in messages] == ["e1", "e2", "e2b", "e3"]


def test_replay_at_a_speed_keeps_the_gaps_between_events_scaled(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    # Two hours of event time at 7,200 times real time: at least a second apart.
    timeline = [order("e2", "2026-03-02T11:00:00Z", "shipped"), order("e1", "2026-03-02T09:00:00Z", "placed")]
    done = run_forewarn(["replay", "--speed", "7200", str(write_jsonl(tmp_path / "t.jsonl", timeline))], env)
    assert done.returncode == 0, done.stderr
    first, second = read_raw(kafka_bootstrap, f"{fresh_prefix}orders", expected=2)
    gap_ms = second.timestamp()[1] - first.timestamp()[1]
    assert gap_ms >= 900, f"produced {gap_ms} ms apart, expected about 1000"

    refused = run_forewarn(["replay", "--speed", "0", str(tmp_path / "t.jsonl")], env)
    assert refused.returncode == 2 and "--speed 0: expected a number above 0" in refused.stderr
