"""The line the sink prints on start says where it writes, and never the password to get in."""

from pathlib import Path

from sinks.clickhouse.sink import start_line
from streams.settings import Settings


def test_a_clickhouse_password_is_never_shown():
    settings = Settings.from_env({"FOREWARN_CLICKHOUSE": "https://analyst:secret@ch.example:8443/forewarn"})
    line = start_line(settings, "127.0.0.1:9092", "http://127.0.0.1:8124")
    assert "secret" not in line
    assert "writing to https://ch.example:8443;" in line
    assert line.endswith("queries at http://127.0.0.1:8124")


def test_without_clickhouse_it_names_the_chdb_directory(tmp_path):
    line = start_line(Settings(data_dir=tmp_path), "127.0.0.1:9092")
    assert line.endswith(f"writing to chDB in {Path(tmp_path) / 'clickhouse'}")
