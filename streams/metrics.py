"""Prometheus metrics of every Forewarn process: one registry per process, served on ``/metrics``.

The hot paths (the worker's per-event loop, the sink's per-message loop) only
bump plain Python numbers: a dict entry or an attribute. Nothing there calls
``prometheus_client``. A ``Collector`` turns those numbers into metric families
when Prometheus scrapes, so a scrape costs work and an event costs none.

Metric names follow Prometheus's conventions: ``forewarn_`` first, a unit
suffix (``_seconds``, ``_messages``), ``_total`` on counters. README's
"Paging and metrics" lists them all.

Where each process serves its metrics: ``FOREWARN_METRICS_ADDR`` (``host:port``;
port 0 picks a free one). ``forewarn up`` gives every process it runs its own
port; the web process also answers ``/metrics`` on its own address.
"""

from __future__ import annotations

import bisect
import socket
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

# Latencies from a millisecond to a few minutes: alerts, deliveries and flushes all fall in there.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Deadline lateness on the worker clock: from on time to well past it.
LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Buckets:
    """A histogram kept as plain numbers: ``observe`` is a bisect and three additions."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or below it) pairs, ending with +Inf, as Prometheus wants them."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


class Families:
    """What a collector hands back at scrape time; helpers that build metric families from plain numbers."""

    def __init__(self) -> None:
        self.items: list = []

    def counter(self, name: str, doc: str, values: dict | float, labels: tuple[str, ...] = ()) -> None:
        family = CounterMetricFamily(name, doc, labels=list(labels))
        self._fill(family, values, labels)

    def gauge(self, name: str, doc: str, values: dict | float | None, labels: tuple[str, ...] = ()) -> None:
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        if values is None:
            self.items.append(family)  # declared, no sample: the value is unknown now
            return
        self._fill(family, values, labels)

    def histogram(self, name: str, doc: str, values: dict | Buckets, labels: tuple[str, ...] = ()) -> None:
        family = HistogramMetricFamily(name, doc, labels=list(labels))
        items = values.items() if isinstance(values, dict) else [((), values)]
        for key, buckets in items:
            key = key if isinstance(key, tuple) else (key,)
            family.add_metric([str(k) for k in key], buckets.cumulative(), buckets.total)
        self.items.append(family)

    def _fill(self, family, values, labels) -> None:
        if not labels:
            family.add_metric([], float(values))
        else:
            for key, value in values.items():
                key = key if isinstance(key, tuple) else (key,)
                family.add_metric([str(k) for k in key], float(value))
        self.items.append(family)


class _Collector:
    def __init__(self, describe: Callable[[Families], None]) -> None:
        self._describe = describe

    def collect(self) -> Iterable:
        families = Families()
        self._describe(families)
        return families.items


def new_registry(describe: Callable[[Families], None] | None = None) -> CollectorRegistry:
    """A registry of this process's own: process CPU and memory, and what ``describe`` adds at each scrape."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    if describe is not None:
        add_collector(registry, describe)
    return registry


def add_collector(registry: CollectorRegistry, describe: Callable[[Families], None]) -> None:
    registry.register(_Collector(describe))


def serve_metrics(registry: CollectorRegistry, addr: tuple[str, int] | None) -> str | None:
    """Serve ``registry`` at ``http://addr/metrics`` on a daemon thread; the URL, or None when ``addr`` is None.

    Port 0 picks a free port; the URL names the one taken. An address that cannot be listened on is a
    SettingsError naming FOREWARN_METRICS_ADDR.
    """
    if addr is None:
        return None
    host, port = addr
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        from streams.settings import SettingsError

        raise SettingsError(f"FOREWARN_METRICS_ADDR={host}:{port}: cannot listen there "
                            f"({exc.strerror or exc}); choose another address") from None
    taken = server.server_address[1]
    shown = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("", "0.0.0.0") else host)
    return f"http://{shown}:{taken}/metrics"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for `forewarn up` to hand one to each process it starts)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
