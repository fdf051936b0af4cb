"""What `forewarn` says when it cannot do what was asked: one line naming the cause and the setting, no traceback.

Everything here runs without a broker: the addresses point at closed ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams import cli
from streams.admin import TopicAdminError
from streams.embedded import BrokerStartError
from streams.runner import StopOnSignal, Stopped, claim_data_dir, claim_worker_id, release_lock
from streams.settings import Settings, SettingsError, settings_beside_up

STOCK = {"event_id": "s1", "ts": "2026-03-02T09:15:00Z", "event_type": "stock_level", "sku": "A", "available": 3}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean FOREWARN_* environment with its own data directory; returns a setter."""
    for name in list(os.environ):
        if name.startswith("FOREWARN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FOREWARN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli, "REACH_TIMEOUT_S", 1.0)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def run(argv, capfd) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capfd.readouterr()
    assert "Traceback" not in err
    return code, out, err


# -- produce: the input file


def test_produce_of_a_missing_file_names_the_path_and_the_os_error(env, capfd, tmp_path):
    env(FOREWARN_KAFKA=f"127.0.0.1:{closed_port()}")
    missing = tmp_path / "missing.jsonl"
    code, _, err = run(["produce", str(missing)], capfd)
    assert code == 2
    assert err.strip() == f"forewarn: cannot read {missing}: No such file or directory"


def test_produce_of_a_directory_names_the_path_and_the_os_error(env, capfd, tmp_path):
    env(FOREWARN_KAFKA=f"127.0.0.1:{closed_port()}")
    code, _, err = run(["produce", str(tmp_path)], capfd)
    assert code == 2
    assert err.strip() == f"forewarn: cannot read {tmp_path}: Is a directory"


# -- commands that need Kafka, when there is none


@pytest.mark.parametrize("argv", [["produce", "-"], ["topics", "create"], ["alerts"], ["worker"]])
def test_an_unreachable_broker_is_named_with_the_setting_to_change(env, capfd, argv):
    bootstrap = f"127.0.0.1:{closed_port()}"
    env(FOREWARN_KAFKA=bootstrap)
    code, out, err = run(argv, capfd)
    assert code == 2 and out == ""
    assert err.startswith(f"forewarn: cannot reach Kafka at {bootstrap} within 1s (")
    assert "set FOREWARN_KAFKA" in err
    assert len(err.strip().splitlines()) == 1  # and none of the client's own connection chatter


def test_a_broker_that_stops_answering_during_produce_ends_with_one_line_saying_how_many_were_lost(
        env, capfd, monkeypatch, tmp_path):
    # The broker answered the first check, then went away: the real client finds nothing listening,
    # so nothing is acknowledged within the (shortened) wait.
    env(FOREWARN_KAFKA="127.0.0.1:9", FOREWARN_SINGLE_RECORD_BATCHES="0")
    monkeypatch.setattr(cli, "_reachable", lambda bootstrap, settings: None)
    monkeypatch.setattr("streams.produce.FLUSH_TIMEOUT_S", 1.0)
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([json.dumps(STOCK), "{oops", json.dumps(dict(STOCK, event_id="s3"))]) + "\n")
    code, _, err = run(["produce", "--topic", "inventory", str(path)], capfd)
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}: line 2: not valid JSON")
    assert lines[1] == "produced 0 records (nothing); rejected 1 line"
    assert lines[2].startswith("forewarn produce: 2 messages were not acknowledged by Kafka at 127.0.0.1:9: "
                               "2 still unanswered after 1s, the first from line 1")
    assert "FOREWARN_KAFKA" in lines[2]
    assert len(lines) == 3


@pytest.mark.parametrize("command", ["produce", "replay"])
def test_a_line_stamped_in_the_future_is_reported_by_line_and_field_and_the_rest_still_goes(
        env, capfd, monkeypatch, tmp_path, command):
    from schemas.codec import format_timestamp_ms

    env(FOREWARN_KAFKA="127.0.0.1:9", FOREWARN_SINGLE_RECORD_BATCHES="0", FOREWARN_MAX_CLOCK_SKEW_MS="60000")
    monkeypatch.setattr(cli, "_reachable", lambda bootstrap, settings: None)
    monkeypatch.setattr("streams.produce.FLUSH_TIMEOUT_S", 0.5)
    year_ahead = format_timestamp_ms(int(time.time() * 1000) + 365 * 86_400_000)
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps({"topic": "inventory", "value": value}) for value in [
        STOCK, dict(STOCK, event_id="s2", ts=year_ahead), dict(STOCK, event_id="s3", ts="2026-03-02T09:16:00Z"),
    ]) + "\n")
    code, _, err = run([command, str(path)], capfd)
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}: line 2: value.ts: refused (future-timestamp): event time {year_ahead} is "
                               f"36")  # 365 days, or 364 once a millisecond has passed
    assert lines[0].endswith(" (FOREWARN_MAX_CLOCK_SKEW_MS=60000)")
    span = " in event-time order, 2026-03-02T09:15:00Z to 2026-03-02T09:16:00Z" if command == "replay" else ""
    assert lines[1] == f"produced 0 records (nothing){span}; rejected 1 line"
    # The two other lines were handed to the client (no broker here answers them).
    assert "2 still unanswered" in lines[2]


# -- failures from deeper down become one message


@pytest.mark.parametrize("failure, words", [
    (KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure")),
     ["Kafka: Failed to get metadata: Local: Broker transport failure", "FOREWARN_KAFKA"]),
    (TopicAdminError("could not create 1 topic on 127.0.0.1:9"), ["could not create 1 topic", "FOREWARN_KAFKA"]),
    (BrokerStartError("the embedded broker exited with status 1 while starting"),
     ["could not start the embedded broker", "FOREWARN_KAFKA"]),
    (PermissionError(13, "Permission denied", "/nope/endpoints.json"), ["/nope/endpoints.json: Permission denied"]),
])
def test_known_failures_are_reported_without_a_traceback(env, capfd, monkeypatch, failure, words):
    def fail(*_args):
        raise failure

    monkeypatch.setattr(cli, "_topics", fail)
    code, _, err = run(["topics", "create"], capfd)
    assert code == 2 and err.startswith("forewarn: ")
    for word in words:
        assert word in err


def test_a_bug_keeps_its_traceback(env, monkeypatch):
    def fail(*_args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_topics", fail)
    with pytest.raises(ZeroDivisionError):
        cli.main(["topics", "create"])


# -- commands beside `forewarn up`


def record_up(data_dir, prefix: str, pid: int | None = None, kafka: str = "127.0.0.1:9") -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "endpoints.json").write_text(json.dumps(
        {"kafka": kafka, "pid": os.getpid() if pid is None else pid, "topic_prefix": prefix}))


def test_beside_up_a_command_takes_ups_broker_and_topic_prefix(tmp_path):
    record_up(tmp_path, "up-1-")
    bootstrap, settings = settings_beside_up(Settings.from_env({"FOREWARN_DATA_DIR": str(tmp_path)}))
    assert bootstrap == "127.0.0.1:9"
    assert settings.topic("alerts") == "up-1-alerts"


def test_beside_up_the_same_prefix_given_again_is_fine(tmp_path):
    record_up(tmp_path, "up-1-")
    env = {"FOREWARN_DATA_DIR": str(tmp_path), "FOREWARN_TOPIC_PREFIX": "up-1-"}
    assert settings_beside_up(Settings.from_env(env))[1].topic_prefix == "up-1-"


@pytest.mark.parametrize("given", ["other-", ""])
def test_beside_up_a_different_prefix_is_refused_naming_both(tmp_path, given):
    record_up(tmp_path, "up-1-")
    env = {"FOREWARN_DATA_DIR": str(tmp_path), "FOREWARN_TOPIC_PREFIX": given}
    with pytest.raises(SettingsError) as caught:
        settings_beside_up(Settings.from_env(env))
    message = str(caught.value)
    assert f"FOREWARN_TOPIC_PREFIX={given!r}" in message and "'up-1-'" in message
    assert "unset FOREWARN_TOPIC_PREFIX" in message


def test_with_forewarn_kafka_set_the_recorded_up_is_not_consulted(tmp_path):
    record_up(tmp_path, "up-1-")
    env = {"FOREWARN_DATA_DIR": str(tmp_path), "FOREWARN_KAFKA": "kafka:9092", "FOREWARN_TOPIC_PREFIX": "mine-"}
    bootstrap, settings = settings_beside_up(Settings.from_env(env))
    assert (bootstrap, settings.topic_prefix) == ("kafka:9092", "mine-")


def test_an_up_that_is_no_longer_running_is_not_used(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record_up(tmp_path, "up-1-", pid=dead.pid)
    with pytest.raises(SettingsError, match=f"process {dead.pid}, which is no longer running"):
        settings_beside_up(Settings.from_env({"FOREWARN_DATA_DIR": str(tmp_path)}))


def test_no_up_and_no_forewarn_kafka_says_what_to_do(tmp_path):
    with pytest.raises(SettingsError, match="start `forewarn up`, or set FOREWARN_KAFKA"):
        settings_beside_up(Settings.from_env({"FOREWARN_DATA_DIR": str(tmp_path)}))


def test_the_cli_refuses_a_prefix_that_differs_from_ups(env, capfd, tmp_path):
    env(FOREWARN_TOPIC_PREFIX="mine-")
    record_up(tmp_path / "data", "up-1-")
    code, out, err = run(["alerts"], capfd)
    assert code == 2 and out == ""
    assert err.startswith("forewarn: FOREWARN_TOPIC_PREFIX='mine-', but the running `forewarn up`")


# -- one stack per data directory


def test_a_second_stack_on_the_same_data_directory_is_refused_until_the_first_lets_go(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first = claim_data_dir(settings)
    try:
        with pytest.raises(SettingsError) as caught:
            claim_data_dir(settings)
        message = str(caught.value)
        assert f"process {os.getpid()}" in message and "FOREWARN_DATA_DIR" in message
        assert str(settings.data_dir) in message
    finally:
        release_lock(first)
    release_lock(claim_data_dir(settings))


def test_a_stale_endpoints_file_does_not_block_a_new_stack(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record_up(tmp_path / "data", "", pid=dead.pid)
    release_lock(claim_data_dir(Settings(data_dir=tmp_path / "data")))


def test_a_second_worker_with_the_same_id_on_the_same_data_directory_is_refused(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", worker_id="w0")
    first = claim_worker_id(settings)
    try:
        with pytest.raises(SettingsError) as caught:
            claim_worker_id(settings)
        message = str(caught.value)
        assert "FOREWARN_WORKER_ID=w0" in message and f"process {os.getpid()}" in message
        assert str(settings.data_dir) in message
        # Another id, or the same id on another data directory, is another worker.
        release_lock(claim_worker_id(settings.with_(worker_id="w1")))
        release_lock(claim_worker_id(settings.with_(data_dir=tmp_path / "other")))
    finally:
        release_lock(first)
    release_lock(claim_worker_id(settings))


# -- signals while a stack stops


def test_the_first_signal_stops_and_later_ones_are_ignored_until_the_stack_has_stopped():
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignal() as signals:
        with pytest.raises(Stopped) as caught:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as soon as os.kill returns
        assert caught.value.signum == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while stopping: ignored
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.stopping
    assert signal.getsignal(signal.SIGTERM) is before
