"""Plain numbers become Prometheus metrics at scrape time (streams.metrics), served on /metrics."""

from __future__ import annotations

from types import SimpleNamespace
from urllib import request

from prometheus_client import generate_latest

from sinks.clickhouse.sink import SinkStats, describe_metrics as sink_metrics
from streams.metrics import Buckets, new_registry, serve_metrics


def test_plain_numbers_are_published_in_the_text_format_with_prometheus_names():
    latency = Buckets((0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 3.0):
        latency.observe(value)
    counts = {("out_of_stock_open_order", "open"): 3}

    def describe(out) -> None:
        out.counter("forewarn_alerts_total", "Alert messages.", counts, ("rule", "status"))
        out.gauge("forewarn_worker_clock_behind_seconds", "Behind.", 2.5)
        out.gauge("forewarn_unknown_yet", "Declared, no sample.", None)
        out.histogram("forewarn_event_to_alert_seconds", "Latency.", latency)

    text = generate_latest(new_registry(describe)).decode()
    assert 'forewarn_alerts_total{rule="out_of_stock_open_order",status="open"} 3.0' in text
    assert "# TYPE forewarn_alerts_total counter" in text
    assert "forewarn_worker_clock_behind_seconds 2.5" in text
    assert 'forewarn_event_to_alert_seconds_bucket{le="0.1"} 1.0' in text
    assert 'forewarn_event_to_alert_seconds_bucket{le="1.0"} 3.0' in text
    assert 'forewarn_event_to_alert_seconds_bucket{le="+Inf"} 4.0' in text
    assert "forewarn_event_to_alert_seconds_count 4.0" in text
    assert "forewarn_event_to_alert_seconds_sum 4.05" in text
    counts[("out_of_stock_open_order", "open")] += 1  # read again at the next scrape
    assert 'status="open"} 4.0' in generate_latest(new_registry(describe)).decode()


def test_a_process_serves_its_metrics_on_a_port_of_its_own():
    sink = SimpleNamespace(stats=SinkStats(per_table={"alerts": 7}), buffered=2)
    url = serve_metrics(new_registry(lambda out: sink_metrics(out, [sink])), ("127.0.0.1", 0))
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    with request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    assert 'forewarn_sink_rows_total{table="alerts"} 7.0' in text and "process_cpu_seconds_total" in text
    assert "forewarn_sink_buffered_messages 2.0" in text
    assert serve_metrics(new_registry(), None) is None


def test_a_taken_metrics_address_is_refused_naming_the_setting():
    import socket

    import pytest

    from streams.settings import SettingsError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=f"FOREWARN_METRICS_ADDR=127.0.0.1:{port}: cannot listen there"):
            serve_metrics(new_registry(), ("127.0.0.1", port))
