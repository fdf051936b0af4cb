"""Real Prometheus and Alertmanager for the tests, from Debian's packages, each on a free loopback port.

Each server gets a temporary configuration and storage directory of its own and
is waited for on ``/-/ready`` with a deadline. A test on a machine without the
binary is skipped, naming it (`.ci/run` installs the packages when missing).
A plain HTTP receiver, the only server the tests write themselves, stands in
for a webhook destination.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib import error, request

import pytest

from streams.embedded import die_with_parent_hook
from tests.integration.helpers import stop_process, wait_for

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"
PROMTOOL = "promtool"


def binary(name: str) -> str:
    """The path of a Debian monitoring binary, or a skip naming the package to install."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        package = {PROMTOOL: PROMETHEUS}.get(name, name)
        pytest.skip(f"{name} is not installed (Debian package {package}; .ci/run installs it)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, timeout: float = 5.0):
    with request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def _ready(url: str) -> bool:
    try:
        with request.urlopen(url + "/-/ready", timeout=2) as answer:
            return answer.status == 200
    except (error.URLError, OSError):
        return False


class Server:
    """One monitoring server process; stopped (and its log shown on failure) by the fixture that made it."""

    def __init__(self, name: str, args: list[str], port: int, home: Path) -> None:
        self.name, self.port, self.home = name, port, home
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = home / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=home,
                                     preexec_fn=die_with_parent_hook())

    def wait_ready(self, timeout: float = 60.0) -> "Server":
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return _ready(self.url)

        wait_for(ready, timeout, f"{self.name} to be ready on {self.url}", interval=0.2)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)
        self._log.close()


def start_alertmanager(home: Path) -> Server:
    """Alertmanager with one receiver that sends nowhere: the tests read its alerts back through its API."""
    path = binary(ALERTMANAGER)
    home.mkdir(parents=True, exist_ok=True)
    (home / "alertmanager.yml").write_text(
        "route:\n  receiver: nowhere\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: nowhere\n")
    port = free_port()
    return Server(ALERTMANAGER, [path, f"--config.file={home / 'alertmanager.yml'}",
                                 f"--storage.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--cluster.listen-address="], port, home).wait_ready()


def start_prometheus(home: Path, targets: dict[str, str], interval_s: float = 1.0) -> Server:
    """Prometheus scraping every URL of ``targets`` (name -> http://host:port/metrics) each ``interval_s``."""
    path = binary(PROMETHEUS)
    home.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name, url in targets.items():
        rest = url.split("://", 1)[1]
        address, _, metrics_path = rest.partition("/")
        jobs.append({"job_name": f"forewarn-{name}", "metrics_path": "/" + metrics_path,
                     "static_configs": [{"targets": [address], "labels": {"process": name}}]})
    config = {"global": {"scrape_interval": f"{interval_s:g}s", "scrape_timeout": f"{interval_s:g}s"},
              "scrape_configs": jobs}
    (home / "prometheus.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
    port = free_port()
    return Server(PROMETHEUS, [path, f"--config.file={home / 'prometheus.yml'}",
                               f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                  port, home).wait_ready()


def prometheus_value(server: Server, query: str) -> float | None:
    """The query's single value (summed when it has several series); None when it has none."""
    answer = get_json(f"{server.url}/api/v1/query?query={request.quote(query)}")
    result = answer["data"]["result"]
    if not result:
        return None
    return sum(float(series["value"][1]) for series in result)


class Receiver:
    """A webhook destination: a plain HTTP server recording every POST and answering what ``answer`` says."""

    def __init__(self, answer: Callable[[dict], int] = lambda _: 200) -> None:
        self.answer = answer
        self.requests: list[dict] = []  # every POST: path, headers, body, status answered, when
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body, "at": time.time()}
                status = receiver.answer(seen)
                seen["status"] = status
                with receiver.lock:
                    receiver.requests.append(seen)
                answer = b"no such channel" if status == 400 else b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def delivered(self) -> list[dict]:
        """The POSTs answered 2xx, in the order they arrived."""
        with self.lock:
            return [r for r in self.requests if 200 <= r["status"] < 300]

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
