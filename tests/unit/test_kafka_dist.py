"""Fetching the Kafka broker's jars: verified, resumed, retried, atomic, and explained when it cannot be done.

Every test fetches a few small made-up jars from a real HTTP server on loopback into a temporary
cache; nothing here reaches Maven Central or touches the real cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import random
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streams import kafka_dist
from streams.kafka_dist import KAFKA_VERSION, Jar, KafkaDistError, broker_libs, cache_dir, fetch, main


def _content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


FILES = {
    "org/example/big/1.0/big-1.0.jar": _content(1, 300_000),
    "org/example/mid/2.0/mid-2.0.jar": _content(2, 50_000),
    "org/example/small/3.0/small-3.0.jar": _content(3, 1_000),
}
JARS = tuple(Jar(path, len(data), hashlib.sha256(data).hexdigest()) for path, data in sorted(FILES.items()))
BIG = "org/example/big/1.0/big-1.0.jar"


class Repository:
    """A Maven-style repository over HTTP, serving FILES; `script` makes a path misbehave on its next requests."""

    def __init__(self) -> None:
        self.script: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        repository = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.removeprefix("/maven2/")
                wanted = self.headers.get("Range")
                repository.requests.append((path, wanted))
                actions = repository.script.get(path)
                action = actions.pop(0) if actions else "serve"
                data = FILES.get(path)
                if data is None:
                    self.send_error(404)
                elif action == "500":
                    self.send_error(500)
                elif action == "break":  # the whole length announced, half of it sent, then closed
                    self._send(200, data, len(data) // 2)
                elif action == "corrupt":
                    self._send(200, bytes([data[0] ^ 0xFF]) + data[1:])
                elif wanted and action != "ignore-range":
                    first = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
                    span = f"bytes {first}-{len(data) - 1}/{len(data)}"
                    self._send(206, data[first:], headers={"Content-Range": span})
                else:
                    self._send(200, data)

            def _send(self, status: int, body: bytes, cut: int | None = None, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body[:cut])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/maven2/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def requests_for(self, path: str) -> list[str | None]:
        return [wanted for requested, wanted in self.requests if requested == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def served():
    repository = Repository()
    yield repository
    repository.close()


@pytest.fixture
def repo(served):
    served.script.clear()
    served.requests.clear()
    return served


@pytest.fixture(autouse=True)
def hermetic(monkeypatch):
    """Retries without waits, and no proxy from the environment between the tests and their server."""
    monkeypatch.setattr(kafka_dist, "RETRY_DELAYS", (0.0, 0.0, 0.0, 0.0))
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def pinned_test_jars(monkeypatch):
    monkeypatch.setattr(kafka_dist, "PINNED_JARS", JARS)


def assert_holds_every_jar(libs: Path) -> None:
    for jar in JARS:
        assert (libs / jar.name).read_bytes() == FILES[jar.path]


# Bound but never listening: a connection is refused at once, and no other process can take the port.
_HELD_PORTS: list[socket.socket] = []


def refused_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}/maven2/"


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- the fetch


def test_a_first_fetch_puts_every_file_in_place_and_reports_progress(repo, tmp_path):
    dest = tmp_path / "cache" / "1.0" / "libs"
    out = io.StringIO()
    assert fetch(JARS, repo.url, dest, what="test jars", progress=out) == dest
    assert_holds_every_jar(dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(jar.name for jar in JARS)
    assert not (dest.parent / "libs.partial").exists()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"fetching test jars: 3 files, 351 kB, from {repo.url} into {dest} (once)"
    assert any(line.endswith("(100%)") for line in lines[1:-1])
    assert len(lines) <= 13  # a line every 10% at most, not one per chunk
    assert re.fullmatch(r"fetched 3 files \(351 kB\) in \d+\.\d s", lines[-1])


def test_progress_on_a_terminal_is_redrawn_in_place(repo, tmp_path):
    out = Terminal()
    fetch(JARS, repo.url, tmp_path / "libs", progress=out)
    text = out.getvalue()
    assert "\r  351 / 351 kB (100%)" in text
    assert text.count("\n") == 3  # the first line, the end of the redrawn one, the last line
    assert text.splitlines()[-1].startswith("fetched 3 files")


def test_a_failure_on_a_terminal_ends_the_progress_line_first(repo, tmp_path):
    repo.script[BIG] = ["break"]
    out = Terminal()
    with pytest.raises(KafkaDistError):
        fetch(JARS, repo.url, tmp_path / "libs", progress=out, retry_delays=())
    assert out.getvalue().endswith("%)   \n")


def test_a_second_fetch_asks_the_server_nothing_and_says_nothing(repo, tmp_path):
    dest = tmp_path / "libs"
    fetch(JARS, repo.url, dest, progress=None)
    asked = len(repo.requests)
    out = io.StringIO()
    assert fetch(JARS, repo.url, dest, progress=out) == dest
    assert len(repo.requests) == asked == 3
    assert out.getvalue() == ""


def test_a_connection_broken_mid_file_is_resumed_with_a_range_request(repo, tmp_path):
    repo.script[BIG] = ["break"]
    out = io.StringIO()
    dest = tmp_path / "libs"
    fetch(JARS, repo.url, dest, progress=out)
    assert repo.requests_for(BIG) == [None, "bytes=150000-"]
    assert_holds_every_jar(dest)
    assert "big-1.0.jar: connection closed after 150000 of 300000 bytes; trying again" in out.getvalue()


def test_a_later_run_resumes_the_part_an_earlier_one_left(repo, tmp_path):
    repo.script[BIG] = ["break"]
    dest = tmp_path / "libs"
    with pytest.raises(KafkaDistError, match="connection closed after 150000 of 300000 bytes; 1 attempt\\)"):
        fetch(JARS, repo.url, dest, progress=None, retry_delays=())
    assert not dest.exists()
    out = io.StringIO()
    fetch(JARS, repo.url, dest, progress=out)
    assert repo.requests_for(BIG) == [None, "bytes=150000-"]
    assert "resuming after 150 kB" in out.getvalue().splitlines()[0]
    assert_holds_every_jar(dest)


def test_a_server_that_ignores_the_range_restarts_that_file(repo, tmp_path):
    repo.script[BIG] = ["break", "ignore-range"]
    dest = tmp_path / "libs"
    fetch(JARS, repo.url, dest, progress=None)
    assert repo.requests_for(BIG) == [None, "bytes=150000-"]
    assert_holds_every_jar(dest)


def test_server_errors_are_retried_until_the_file_comes(repo, tmp_path):
    repo.script[BIG] = ["500", "500"]
    dest = tmp_path / "libs"
    fetch(JARS, repo.url, dest, progress=None)
    assert repo.requests_for(BIG) == [None, None, None]
    assert_holds_every_jar(dest)


def test_server_errors_past_the_last_attempt_fail_naming_the_status(repo, tmp_path):
    repo.script[BIG] = ["500"] * 5
    with pytest.raises(KafkaDistError, match=r"big-1\.0\.jar: HTTP 500 .*; 5 attempts\)"):
        fetch(JARS, repo.url, tmp_path / "libs", progress=None)
    assert len(repo.requests_for(BIG)) == 5


def test_a_missing_file_is_not_retried_and_the_error_names_its_url(repo, tmp_path):
    missing = Jar("org/example/gone/1.0/gone-1.0.jar", 10, "0" * 64)
    with pytest.raises(KafkaDistError) as caught:
        fetch(JARS + (missing,), repo.url, tmp_path / "libs", what="test jars", progress=None)
    assert f"(HTTP 404 Not Found for {repo.url}{missing.path})" in str(caught.value)
    assert len(repo.requests_for(missing.path)) == 1
    assert not (tmp_path / "libs").exists()


def test_a_file_that_fails_its_checksum_once_is_fetched_again(repo, tmp_path):
    repo.script[BIG] = ["corrupt"]
    out = io.StringIO()
    dest = tmp_path / "libs"
    fetch(JARS, repo.url, dest, progress=out)
    assert len(repo.requests_for(BIG)) == 2
    assert_holds_every_jar(dest)
    assert "big-1.0.jar does not match the pinned list" in out.getvalue()


def test_a_file_that_fails_its_checksum_twice_fails_naming_the_file_and_both_hashes(repo, tmp_path):
    repo.script[BIG] = ["corrupt", "corrupt"]
    corrupt = bytes([FILES[BIG][0] ^ 0xFF]) + FILES[BIG][1:]
    dest = tmp_path / "libs"
    with pytest.raises(KafkaDistError) as caught:
        fetch(JARS, repo.url, dest, progress=None)
    message = str(caught.value)
    expected = next(jar for jar in JARS if jar.path == BIG).sha256
    assert f"big-1.0.jar from {repo.url}{BIG} does not match the pinned list, twice" in message
    assert f"expected SHA-256 {expected}" in message
    assert f"got {hashlib.sha256(corrupt).hexdigest()}" in message
    assert not dest.exists()  # a cache missing a file is never taken for a complete one


def test_an_incomplete_libs_directory_is_replaced_whole(repo, tmp_path):
    dest = tmp_path / "libs"
    dest.mkdir()
    (dest / JARS[0].name).write_bytes(b"truncated")
    fetch(JARS, repo.url, dest, progress=None)
    assert_holds_every_jar(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".resolve.lock", "libs"]


# -- broker_libs: the pinned list, the cache and the settings


def test_broker_libs_fetches_into_the_versioned_cache_under_its_lock(repo, tmp_path, pinned_test_jars):
    env = {"FOREWARN_KAFKA_CACHE": str(tmp_path / "cache"), "FOREWARN_MAVEN_URL": repo.url.rstrip("/")}
    libs = broker_libs(env, progress=None)
    assert libs == tmp_path / "cache" / KAFKA_VERSION / "libs"
    assert_holds_every_jar(libs)
    assert (tmp_path / "cache" / KAFKA_VERSION / ".resolve.lock").is_file()


def test_a_second_process_waits_for_the_lock_then_takes_what_the_first_fetched(repo, tmp_path, pinned_test_jars):
    env = {"FOREWARN_KAFKA_CACHE": str(tmp_path), "FOREWARN_MAVEN_URL": repo.url}
    version_dir = tmp_path / KAFKA_VERSION
    version_dir.mkdir()
    out = io.StringIO()
    result: dict = {}

    def second() -> None:
        try:
            result["libs"] = broker_libs(env, progress=out)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result["error"] = exc

    with open(version_dir / ".resolve.lock", "a") as held:  # the lock kafka.sh takes too
        fcntl.flock(held, fcntl.LOCK_EX)
        thread = threading.Thread(target=second)
        thread.start()
        wait_for(lambda: "waiting for another process" in out.getvalue())
        (version_dir / "libs").mkdir()  # what the first process puts in place before letting go
        for jar in JARS:
            (version_dir / "libs" / jar.name).write_bytes(FILES[jar.path])
    thread.join(timeout=5)
    assert result == {"libs": version_dir / "libs"}
    assert repo.requests == []


def test_with_no_network_and_no_cache_one_line_says_what_to_do(tmp_path, pinned_test_jars):
    url = refused_url()
    env = {"FOREWARN_KAFKA_CACHE": str(tmp_path), "FOREWARN_MAVEN_URL": url}
    with pytest.raises(KafkaDistError) as caught:
        broker_libs(env, progress=None)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"cannot fetch Apache Kafka {KAFKA_VERSION} from {url} ({JARS[0].name}: Connection refused; 5 attempts), "
        f"and {tmp_path / KAFKA_VERSION / 'libs'} does not hold it yet; connect once, or set FOREWARN_KAFKA_DIST "
        f"to an Apache Kafka distribution on disk (the directory holding libs/)")
    assert not (tmp_path / KAFKA_VERSION / "libs").exists()


def test_an_unwritable_cache_names_the_setting_to_change(tmp_path, pinned_test_jars):
    (tmp_path / "a-file").write_text("")
    env = {"FOREWARN_KAFKA_CACHE": str(tmp_path / "a-file" / "cache"), "FOREWARN_MAVEN_URL": refused_url()}
    with pytest.raises(KafkaDistError, match=r"cannot write the Kafka jars cache at .*a-file.*; "
                                             r"set FOREWARN_KAFKA_CACHE to a writable directory"):
        broker_libs(env, progress=None)


def test_a_maven_mirror_may_be_a_local_directory(tmp_path, pinned_test_jars):
    mirror = tmp_path / "m2"
    for path, data in FILES.items():
        (mirror / path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / path).write_bytes(data)
    env = {"FOREWARN_KAFKA_CACHE": str(tmp_path / "cache"), "FOREWARN_MAVEN_URL": mirror.as_uri()}
    assert_holds_every_jar(broker_libs(env, progress=None))


def test_a_maven_url_that_is_not_one_names_the_setting(tmp_path):
    with pytest.raises(KafkaDistError, match="FOREWARN_MAVEN_URL='repo1.maven.org': expected"):
        broker_libs({"FOREWARN_KAFKA_CACHE": str(tmp_path), "FOREWARN_MAVEN_URL": "repo1.maven.org"})


@pytest.mark.parametrize("layout", ["libs/kafka_2.13-9.9.9.jar", "kafka-server-9.9.9.jar"])
def test_a_kafka_distribution_on_disk_is_used_as_it_is(tmp_path, layout):
    jar = tmp_path / "kafka" / layout
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"")
    env = {"FOREWARN_KAFKA_DIST": str(tmp_path / "kafka"), "FOREWARN_KAFKA_CACHE": str(tmp_path / "cache"),
           "FOREWARN_MAVEN_URL": refused_url()}
    assert broker_libs(env, progress=None) == jar.parent
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("what, error", [
    ("empty", r"neither .*/kafka/libs nor .*/kafka holds kafka_2\.13-\[0-9\]\*\.jar or kafka-server-\[0-9\]\*\.jar"),
    ("absent", "no such directory"),
])
def test_a_kafka_distribution_without_the_broker_is_refused_naming_the_setting(tmp_path, what, error):
    if what == "empty":
        (tmp_path / "kafka" / "libs").mkdir(parents=True)
        (tmp_path / "kafka" / "libs" / "kafka-server-common-9.9.9.jar").write_bytes(b"")
    env = {"FOREWARN_KAFKA_DIST": str(tmp_path / "kafka"), "FOREWARN_KAFKA_CACHE": str(tmp_path / "cache")}
    with pytest.raises(KafkaDistError, match=f"^FOREWARN_KAFKA_DIST={tmp_path / 'kafka'}: {error}"):
        broker_libs(env, progress=None)


def test_the_cache_is_the_setting_then_the_xdg_cache_then_the_home_directory():
    everything = {"FOREWARN_KAFKA_CACHE": "/c/kafka", "XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"}
    assert cache_dir(everything) == Path("/c/kafka")
    assert cache_dir(dict(everything, FOREWARN_KAFKA_CACHE="")) == Path("/xdg/forewarn/kafka")
    assert cache_dir({"XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"}) == Path("/xdg/forewarn/kafka")
    assert cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/forewarn/kafka")
    assert cache_dir({"XDG_CACHE_HOME": "relative", "HOME": "/home/u"}) == Path("/home/u/.cache/forewarn/kafka")


# -- the command


def test_the_fetch_command_prints_the_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "kafka" / "libs").mkdir(parents=True)
    (tmp_path / "kafka" / "libs" / "kafka_2.13-9.9.9.jar").write_bytes(b"")
    monkeypatch.setenv("FOREWARN_KAFKA_DIST", str(tmp_path / "kafka"))
    assert main(["fetch"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'kafka' / 'libs'}\n"


def test_the_fetch_command_fails_with_one_line(tmp_path, monkeypatch, capsys, pinned_test_jars):
    monkeypatch.delenv("FOREWARN_KAFKA_DIST", raising=False)
    monkeypatch.setenv("FOREWARN_KAFKA_CACHE", str(tmp_path))
    monkeypatch.setenv("FOREWARN_MAVEN_URL", refused_url())
    assert main(["fetch"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    error = captured.err.splitlines()[-1]  # after the progress
    assert error.startswith(f"kafka_dist: error: cannot fetch Apache Kafka {KAFKA_VERSION} from ")
    assert error.endswith("or set FOREWARN_KAFKA_DIST to an Apache Kafka distribution on disk "
                          "(the directory holding libs/)")


def test_the_command_explains_itself(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "fetch" in out and "FOREWARN_KAFKA_DIST" in out and "FOREWARN_MAVEN_URL" in out


# -- the pinned list


def test_the_pinned_list_names_each_jar_once_with_its_maven_path_size_and_digest():
    jars = kafka_dist.PINNED_JARS
    assert list(jars) == sorted(jars)
    assert len({jar.name for jar in jars}) == len({jar.path for jar in jars}) == len(jars)
    for jar in jars:
        assert re.fullmatch(r"[0-9a-f]{64}", jar.sha256), jar
        assert jar.size > 0, jar
        *group, artifact, version, name = jar.path.split("/")
        assert group and name == f"{artifact}-{version}.jar", jar  # Maven's layout
    paths = {jar.path for jar in jars}
    assert f"org/apache/kafka/kafka_2.13/{KAFKA_VERSION}/kafka_2.13-{KAFKA_VERSION}.jar" in paths
    assert f"org/apache/kafka/kafka-server/{KAFKA_VERSION}/kafka-server-{KAFKA_VERSION}.jar" in paths
    assert any(jar.name.startswith("log4j-slf4j-impl-") for jar in jars)
