"""A whole `forewarn up` watched and paged as operations would: a real Prometheus scrapes every process,
a rule's alert reaches a real Alertmanager and a webhook and resolves there; deploy/prometheus passes promtool.

The 2-second figure of the issue is measured and printed (`-s` shows it), not asserted: a shared CI
machine's timing is no verdict on the code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.helpers import forewarn_env, read_raw, run_forewarn, wait_for, write_jsonl
from tests.integration.monitoring import (PROMTOOL, Receiver, binary, get_json, prometheus_value, start_alertmanager,
                                          start_prometheus)

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.mark.parametrize("args", [["check", "config", "prometheus.yml"], ["check", "rules", "forewarn-rules.yml"],
                                  ["test", "rules", "tests/health_test.yml"]], ids=" ".join)
def test_promtool_accepts_the_scrape_configuration_and_the_health_rules(args):
    done = subprocess.run([binary(PROMTOOL), *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def ev(topic: str, minute: int, **value) -> dict:
    value.setdefault("event_id", f"{topic}-{minute}-{value.get('order_id') or value.get('sku') or value.get('customer_id')}")
    return {"topic": topic, "value": {"ts": f"2026-03-02T09:{minute:02d}:00Z", **value}}


REFERENCE = [
    ev("catalog", 0, sku="PER", name="Peru 1kg", category="beans", price_cents=2390, active=True),
    ev("catalog", 0, sku="KEN", name="Kenya 1kg", category="beans", price_cents=2450, active=True),
    ev("customers", 0, customer_id="C1", name="Ravi Kumar", tier="gold", lifetime_value_cents=90000),
    ev("inventory", 1, event_type="stock_level", sku="PER", available=0),
    ev("inventory", 1, event_type="stock_level", sku="KEN", available=10),
]
SHORT_ORDER = [ev("orders", 2, event_type="placed", order_id="O7", customer_id="C1",
                  lines=[{"sku": "PER", "qty": 1, "unit_price_cents": 2390}])]
RESTOCK = [ev("inventory", 3, event_type="stock_level", sku="PER", available=20)]


def am_alerts(url: str) -> list[dict]:
    return [a for a in get_json(f"{url}/api/v2/alerts") if a["labels"].get("order_id") == "O7"]


def webhook_statuses(receiver: Receiver) -> list[str]:
    return [json.loads(r["body"])["status"] for r in receiver.delivered()
            if json.loads(r["body"]).get("order_id") == "O7"]


def test_a_rules_alert_pages_alertmanager_and_a_webhook_and_prometheus_scrapes_every_process(
        kafka_bootstrap, fresh_prefix, tmp_path):
    data_dir = tmp_path / "data"
    alertmanager = start_alertmanager(tmp_path / "alertmanager")
    prometheus = None
    up = None
    try:
        with Receiver() as receiver:
            env = forewarn_env(kafka_bootstrap, fresh_prefix, data_dir, FOREWARN_ALERTMANAGER_URL=alertmanager.url,
                               FOREWARN_WEBHOOK_URL=receiver.url)
            assert run_forewarn(["topics", "create"], env).returncode == 0
            assert run_forewarn(["produce", str(write_jsonl(tmp_path / "reference.jsonl", REFERENCE))],
                                env).returncode == 0
            log = tmp_path / "up.log"
            with open(log, "ab") as out:
                up = subprocess.Popen([sys.executable, "-m", "streams", "up", "--workers", "2"], env=env,
                                      stdout=out, stderr=subprocess.STDOUT)

            def up_output() -> str:
                return log.read_text(errors="replace")

            def ready():
                assert up.poll() is None, f"forewarn up exited with {up.returncode}:\n{up_output()}"
                return "forewarn up: ready" in up_output()

            wait_for(ready, 240, "forewarn up to be ready")
            metrics = json.loads((data_dir / "endpoints.json").read_text())["metrics"]
            assert set(metrics) == {"worker-0", "worker-1", "sink", "notify", "web"}
            assert len({url for url in metrics.values()}) == 5  # every process on its own port
            printed = next(line for line in up_output().splitlines() if line.startswith("forewarn up: metrics at"))
            for name, url in metrics.items():
                assert f"{name} {url}" in printed
            assert json.loads((data_dir / "metrics-targets.json").read_text())  # file_sd for deploy/prometheus

            prometheus = start_prometheus(tmp_path / "prometheus", metrics)

            def targets_up():
                active = get_json(f"{prometheus.url}/api/v1/targets")["data"]["activeTargets"]
                health = {t["labels"]["process"]: t["health"] for t in active}
                return health if health == dict.fromkeys(metrics, "up") else None

            wait_for(targets_up, 60, "Prometheus to scrape every Forewarn process", interval=0.5)
            # The reference data went in before up: its events have been counted once Prometheus sees them.
            wait_for(lambda: (prometheus_value(prometheus, "sum(forewarn_events_processed_total)") or 0)
                     >= len(REFERENCE), 60, "the reference events counted", interval=0.5)
            before = prometheus_value(prometheus, "sum(forewarn_events_processed_total)")

            produced_at = time.time()
            assert run_forewarn(["produce", str(write_jsonl(tmp_path / "order.jsonl", SHORT_ORDER))],
                                env).returncode == 0
            wait_for(lambda: "open" in webhook_statuses(receiver), 60, "the open alert at the webhook", interval=0.05)
            at_webhook = min(r["at"] for r in receiver.delivered()) - produced_at
            (active,) = wait_for(lambda: am_alerts(alertmanager.url), 60, "the open alert in Alertmanager",
                                 interval=0.05)
            in_alertmanager = time.time() - produced_at
            (order,) = read_raw(kafka_bootstrap, f"{fresh_prefix}orders", 1)
            written = order.timestamp()[1] / 1000
            print(f"\nthe order's alert reached the webhook {at_webhook:.2f}s and Alertmanager (polled) "
                  f"{in_alertmanager:.2f}s after `forewarn produce` started; the webhook "
                  f"{min(r['at'] for r in receiver.delivered()) - written:.2f}s after the order was written to Kafka")
            assert active["status"]["state"] == "active"
            assert active["labels"]["alertname"] == "out_of_stock_open_order"
            assert active["labels"]["audience"] == "cs" and active["labels"]["customer_id"] == "C1"
            # The link leads to the alert on this stack's live page.
            assert active["generatorURL"].startswith(env["FOREWARN_WEB_ADDR"].join(("http://", "/alerts?")))

            assert run_forewarn(["produce", str(write_jsonl(tmp_path / "restock.jsonl", RESTOCK))],
                                env).returncode == 0
            wait_for(lambda: "resolved" in webhook_statuses(receiver), 60, "the resolved alert at the webhook")
            wait_for(lambda: not am_alerts(alertmanager.url), 60, "the alert resolved in Alertmanager")
            assert webhook_statuses(receiver)[0] == "open" and webhook_statuses(receiver)[-1] == "resolved"

            # Prometheus sees the counters move: events, alerts, deliveries, sink rows.
            def moved():
                values = {q: prometheus_value(prometheus, q) for q in (
                    "sum(forewarn_events_processed_total)",
                    'sum(forewarn_alerts_total{rule="out_of_stock_open_order",status="resolved"})',
                    'sum(forewarn_notify_deliveries_total{destination="webhook"})',
                    'sum(forewarn_notify_deliveries_total{destination="alertmanager"})',
                    'sum(forewarn_sink_rows_total{table="alerts"})',
                    'sum(forewarn_web_open_alerts) or vector(0)',
                    'count(forewarn_event_to_alert_seconds_count)')}
                ok = (values["sum(forewarn_events_processed_total)"] or 0) >= before + 2 and all(
                    (v or 0) >= 1 for q, v in values.items() if "events_processed" not in q and "web_open" not in q)
                return values if ok else None

            values = wait_for(moved, 60, "Prometheus to see the counters move", interval=0.5)
            print(f"scraped: {values}")
    finally:
        if up is not None and up.poll() is None:
            up.terminate()
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        if prometheus is not None:
            prometheus.stop()
        alertmanager.stop()
