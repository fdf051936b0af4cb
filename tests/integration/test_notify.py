"""`forewarn notify` against real receivers: a webhook receiver written here, and Debian's Alertmanager.

Alert messages are produced onto a fresh ``alerts`` topic as the workers write
them (the project's codec, keyed by dedup key), so each test decides exactly
which messages exist; the end-to-end test in test_monitoring.py has a rule
raise and resolve one through a whole `forewarn up`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.codec import Codec
from sinks import dlq
from streams import topics
from streams.embedded import die_with_parent_hook
from streams.kafka_security import kafka_client_config
from streams.notify import DLQ_ANSWER, DLQ_DESTINATION, DLQ_STATUS, GROUP
from tests.integration.helpers import forewarn_env, read_raw, run_forewarn, stop_process, wait_for
from tests.integration.monitoring import Receiver, get_json, start_alertmanager

pytestmark = pytest.mark.integration

SECRET = "a shared secret"


def alert(n: int, status: str = "open", key: str | None = None, severity: str = "warning", **extra) -> dict:
    now = int(time.time() * 1000)
    key = key or f"k{n}"
    record = {"alert_id": f"a-{key}", "rule": "out_of_stock_open_order", "status": status, "severity": severity,
              "audience": "cs", "dedup_key": key, "title": f"Order O{n} is short", "summary": f"summary {n}",
              "customer_id": "C1", "order_id": f"O{n}", "sku": None, "ticket_id": None, "session_id": None,
              "page": None, "category": None, "details": {"n": str(n)}, "evidence": [f"e{n}"],
              "event_ts": now - 1000, "detected_at": now - 500}
    record.update(extra)
    return record


def produce_alerts(bootstrap: str, prefix: str, records: list[dict]) -> list[tuple[int, int]]:
    """Produce alert records as a worker does; their (partition, offset), in order."""
    codec = Codec()
    name = f"{prefix}{topics.ALERTS.name}"
    producer = Producer(kafka_client_config(bootstrap))
    where: list = [None] * len(records)

    def delivered(i):
        def callback(err, msg) -> None:
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())
        return callback

    for i, record in enumerate(records):
        producer.produce(name, key=record["dedup_key"].encode(), value=codec.encode("forewarn.Alert", record, topic=name),
                         on_delivery=delivered(i))
        producer.flush(30)  # one at a time: the offsets come in the order given
    assert None not in where
    return where


def committed(bootstrap: str, prefix: str, partition: int) -> int:
    """The notifier group's committed offset of one alerts partition, as the broker has it (-1001: none)."""
    consumer = Consumer(kafka_client_config(bootstrap, {"group.id": f"{prefix}{GROUP}", "enable.auto.commit": False}))
    try:
        (tp,) = consumer.committed([TopicPartition(f"{prefix}{topics.ALERTS.name}", partition)], timeout=10)
        return tp.offset
    finally:
        consumer.close()


class Notifier:
    """`forewarn notify` as a process of its own, as production runs it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log

    def __enter__(self) -> "Notifier":
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams", "notify"], env=self.env, stdout=self._out,
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent_hook())
        data_dir, prefix = Path(self.env["FOREWARN_DATA_DIR"]), self.env["FOREWARN_TOPIC_PREFIX"]

        def assigned():
            self.assert_running()
            try:
                return json.loads((data_dir / "notify" / f"{prefix}status.json").read_text())["assigned_partitions"]
            except (OSError, ValueError, KeyError):
                return 0

        wait_for(assigned, 60, "the notifier to be given the alerts partitions", interval=0.2)
        return self

    def assert_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"forewarn notify exited with {self.proc.returncode}:\n"
                                 f"{self.log.read_text(errors='replace')[-3000:]}")

    def __exit__(self, *exc) -> None:
        stop_process(self.proc, timeout=20)
        self._out.close()


@pytest.fixture
def env(kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path / "data")
    created = run_forewarn(["topics", "create"], env)
    assert created.returncode == 0, created.stderr
    return env


def test_a_webhook_gets_each_alert_message_once_signed_with_the_shared_secret(kafka_bootstrap, fresh_prefix, env,
                                                                              tmp_path):
    records = [alert(1), alert(2), alert(1, "updated"), alert(3, severity="critical"), alert(1, "resolved")]
    with Receiver() as receiver, Notifier(dict(env, FOREWARN_WEBHOOK_URL=receiver.url,
                                               FOREWARN_WEBHOOK_SECRET=SECRET,
                                               FOREWARN_WEB_URL="http://forewarn.example/"),
                                          tmp_path / "notify.log") as notifier:
        started = time.time()
        where = produce_alerts(kafka_bootstrap, fresh_prefix, records)
        wait_for(lambda: notifier.assert_running() or len(receiver.delivered()) >= len(records), 60,
                 "the receiver to get every alert message")
        print(f"\n{len(records)} alert messages at the webhook {max(r['at'] for r in receiver.delivered()) - started:.2f}s "
              f"after producing the first")
        # Nothing more arrives afterwards: each message was delivered once.
        wait_for(lambda: all(committed(kafka_bootstrap, fresh_prefix, p) >= o + 1 for p, o in where), 30,
                 "the notifier to commit every delivered message")
        seen = receiver.delivered()
        assert len(seen) == len(records)
        messages = [r["headers"]["x-forewarn-message"] for r in seen]
        assert sorted(messages) == sorted(f"{fresh_prefix}alerts/{p}/{o}" for p, o in where)
        for r in seen:
            expected = hmac.new(SECRET.encode(), r["body"], hashlib.sha256).hexdigest()
            assert r["headers"]["x-forewarn-signature"] == f"sha256={expected}"
            stamp = int(r["headers"]["x-forewarn-timestamp"])
            assert abs(stamp - time.time()) < 120
            assert json.loads(r["body"])["sent_at"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(stamp)))
            assert r["headers"]["content-type"] == "application/json"
        bodies = [json.loads(r["body"]) for r in seen]
        # In order per dedup key.
        assert [b["status"] for b in bodies if b["dedup_key"] == "k1"] == ["open", "updated", "resolved"]
        first = next(b for b in bodies if b["dedup_key"] == "k3")
        assert first["severity"] == "critical" and first["title"] == "Order O3 is short"
        assert first["link"] == "http://forewarn.example/alerts?rule=out_of_stock_open_order#alert-a-k3"
        assert first["event_ts"].endswith("Z")

        # `forewarn status` shows the notifier and its group, caught up.
        def status_report():
            report = json.loads(run_forewarn(["status", "--json"], env).stdout)
            return report if report["notifier"] and report["notifier"]["delivered"] else None

        report = wait_for(status_report, 30, "the notifier's status")  # it reports every 2 s
        assert report["notifier"]["delivered"] == {"webhook": len(records)}
        assert report["notify_lag"]["per_topic"] == {f"{fresh_prefix}alerts": 0}
        text = run_forewarn(["status"], env).stdout
        assert f"lag of the notifier (group {fresh_prefix}forewarn-notify, 1 member): 0 messages" in text
        assert "notifier: 5 alert messages read; delivered: webhook 5" in text


def test_a_receiver_that_fails_for_a_while_gets_every_alert_and_nothing_is_committed_before(
        kafka_bootstrap, fresh_prefix, env, tmp_path):
    state = {"failing": True}
    records = [alert(1), alert(1, "updated"), alert(1, "resolved")]
    with Receiver(lambda _: 503 if state["failing"] else 200) as receiver, \
            Notifier(dict(env, FOREWARN_WEBHOOK_URL=receiver.url), tmp_path / "notify.log") as notifier:
        where = produce_alerts(kafka_bootstrap, fresh_prefix, records)
        (partition,) = {p for p, _ in where}
        first = where[0][1]
        # Several refused attempts: the notifier is retrying the first message.
        wait_for(lambda: notifier.assert_running() or len(receiver.requests) >= 3, 60,
                 "the notifier to retry against the failing receiver")
        assert receiver.delivered() == []
        assert all(r["status"] == 503 for r in receiver.requests)
        # The first attempts all carried the first message: nothing overtook it.
        assert {r["headers"]["x-forewarn-message"] for r in receiver.requests} == {
            f"{fresh_prefix}alerts/{partition}/{first}"}
        position = committed(kafka_bootstrap, fresh_prefix, partition)
        assert position <= first, f"committed {position} past the undelivered message at {first}"

        state["failing"] = False
        wait_for(lambda: len(receiver.delivered()) >= 3, 60, "every alert once the receiver recovers")
        wait_for(lambda: committed(kafka_bootstrap, fresh_prefix, partition) == where[-1][1] + 1, 30,
                 "the commit to move past every delivered message")
        bodies = [json.loads(r["body"]) for r in receiver.delivered()]
        assert [b["status"] for b in bodies] == ["open", "updated", "resolved"]


def test_a_receiver_answering_400_sends_the_alert_to_the_dead_letter_topic(kafka_bootstrap, fresh_prefix, env,
                                                                           tmp_path):
    with Receiver(lambda seen: 400 if b'"k2"' in seen["body"] else 200) as receiver, \
            Notifier(dict(env, FOREWARN_WEBHOOK_URL=receiver.url), tmp_path / "notify.log"):
        where = produce_alerts(kafka_bootstrap, fresh_prefix, [alert(1), alert(2), alert(3)])
        (dead,) = read_raw(kafka_bootstrap, f"{fresh_prefix}{topics.DEAD_LETTERS.name}", 1, timeout=60)
        headers = dlq.headers_dict(dead.headers())
        assert headers[DLQ_DESTINATION] == "webhook"
        assert headers[DLQ_STATUS] == "400"
        assert headers[DLQ_ANSWER] == "no such channel"
        assert headers[dlq.SOURCE_TOPIC] == f"{fresh_prefix}alerts"
        assert (int(headers[dlq.SOURCE_PARTITION]), int(headers[dlq.SOURCE_OFFSET])) == where[1]
        assert headers[dlq.REASON] == "notify-refused"
        assert dead.key() == b"k2"
        assert Codec().decode(dead.value())[1]["dedup_key"] == "k2"
        # The others were delivered, and the refused one does not hold the commit back.
        wait_for(lambda: len(receiver.delivered()) == 2, 30, "the two other alerts")
        wait_for(lambda: all(committed(kafka_bootstrap, fresh_prefix, p) >= o + 1 for p, o in where), 30,
                 "the commit past every message, the dead-lettered one included")

        # A message that is no alert at all goes to the dead-letter topic too, whole.
        producer = Producer(kafka_client_config(kafka_bootstrap))
        producer.produce(f"{fresh_prefix}alerts", key=b"junk", value=b"not an alert")
        producer.flush(30)
        junk = [m for m in read_raw(kafka_bootstrap, f"{fresh_prefix}{topics.DEAD_LETTERS.name}", 2, timeout=60)
                if m.key() != b"k2"]
        assert [(m.key(), m.value()) for m in junk] == [(b"junk", b"not an alert")]
        assert dlq.headers_dict(junk[0].headers())[dlq.PROCESSOR] == "notify"
        assert len(receiver.delivered()) == 2


def am_alerts(url: str, key: str) -> list[dict]:
    return [a for a in get_json(f"{url}/api/v2/alerts") if a["labels"].get("dedup_key") == key]


def test_alertmanager_receives_open_updated_and_resolved_alerts(kafka_bootstrap, fresh_prefix, env, tmp_path):
    server = start_alertmanager(tmp_path / "alertmanager")
    try:
        with Notifier(dict(env, FOREWARN_ALERTMANAGER_URL=server.url, FOREWARN_WEB_URL="http://forewarn.example/"),
                      tmp_path / "notify.log") as notifier:
            started = time.time()
            produce_alerts(kafka_bootstrap, fresh_prefix, [alert(7)])
            (active,) = wait_for(lambda: notifier.assert_running() or am_alerts(server.url, "k7"), 30,
                                 "the open alert in Alertmanager", interval=0.1)
            print(f"\nopen alert active in Alertmanager {time.time() - started:.2f}s after producing it")
            assert active["status"]["state"] == "active"
            assert active["labels"] == {"alertname": "out_of_stock_open_order", "rule": "out_of_stock_open_order",
                                        "audience": "cs", "severity": "warning", "dedup_key": "k7",
                                        "customer_id": "C1", "order_id": "O7"}
            assert active["annotations"]["title"] == "Order O7 is short"
            assert active["annotations"]["summary"] == "summary 7"
            link = "http://forewarn.example/alerts?rule=out_of_stock_open_order#alert-a-k7"
            assert active["annotations"]["link"] == link and active["generatorURL"] == link

            # An update that raises the severity: the alert is active under its new labels, and the copy
            # under the old ones is resolved.
            produce_alerts(kafka_bootstrap, fresh_prefix, [alert(7, "updated", severity="critical",
                                                                 summary="worse now")])

            def updated():
                found = am_alerts(server.url, "k7")
                active_now = [a for a in found if a["status"]["state"] == "active"]
                return len(active_now) == 1 and active_now[0]["labels"]["severity"] == "critical" \
                    and active_now[0]["annotations"]["summary"] == "worse now" and len(found) == 1 and found

            wait_for(updated, 30, "the updated alert in Alertmanager, alone", interval=0.2)

            produce_alerts(kafka_bootstrap, fresh_prefix, [alert(7, "resolved", severity="critical")])
            # Alertmanager's API lists only alerts that have not ended: a resolved alert leaves the list.
            wait_for(lambda: not am_alerts(server.url, "k7"), 30, "the alert resolved in Alertmanager", interval=0.2)
    finally:
        server.stop()


def test_an_open_alert_is_posted_again_before_it_ends_and_after_a_restart_routed_by_the_file(
        kafka_bootstrap, fresh_prefix, env, tmp_path):
    server = start_alertmanager(tmp_path / "alertmanager")
    config = tmp_path / "notify.yaml"
    config.write_text(
        "destinations:\n"
        "  - name: pager\n"
        "    type: alertmanager\n"
        f"    url: {server.url}\n"
        "    resend_seconds: 1\n"
        "    ends_after_seconds: 4\n"
        "    labels: {team: shop}\n"
        "routes:\n"
        "  - audience: cs\n"
        "    severity: [warning, critical]\n"
        "    to: pager\n")
    notify_env = dict(env, FOREWARN_NOTIFY_CONFIG=str(config))
    try:
        with Notifier(notify_env, tmp_path / "notify.log") as notifier:
            where = produce_alerts(kafka_bootstrap, fresh_prefix, [alert(8), alert(9, audience="ops"),
                                                                   alert(10, severity="info")])
            (first,) = wait_for(lambda: notifier.assert_running() or am_alerts(server.url, "k8"), 30,
                                "the open alert in Alertmanager", interval=0.1)
            assert first["labels"]["team"] == "shop"

            def posted_again(after: str):
                found = am_alerts(server.url, "k8")
                return found if found and found[0]["endsAt"] > after else None

            # Posted again before its end, so it stays active past its first endsAt.
            (again,) = wait_for(lambda: posted_again(first["endsAt"]), 30, "the open alert posted again")
            assert again["status"]["state"] == "active"
            # Everything is committed: the restarted notifier reads no message about k8 again.
            wait_for(lambda: all(committed(kafka_bootstrap, fresh_prefix, p) >= o + 1 for p, o in where), 30,
                     "the notifier to commit every message")
        # Not routed: another audience, a severity the route leaves out.
        assert am_alerts(server.url, "k9") == [] and am_alerts(server.url, "k10") == []
        # A restarted notifier has nothing new to deliver, and still keeps the open alert alive.
        with Notifier(notify_env, tmp_path / "notify-2.log"):
            (later,) = wait_for(lambda: posted_again(again["endsAt"]), 30,
                                "the open alert posted again by the restarted notifier")
            assert later["status"]["state"] == "active"
    finally:
        server.stop()
