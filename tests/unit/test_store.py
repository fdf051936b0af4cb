"""The default ClickHouse store is chDB persisted under the data directory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sinks.clickhouse.store import open_store
from streams.settings import Settings, SettingsError

WRITE = """
from pathlib import Path
from sinks.clickhouse.store import open_store
from streams.settings import Settings
client = open_store(Settings(data_dir=Path({data_dir!r})))
client.command("CREATE TABLE IF NOT EXISTS probe (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
client.insert("probe", [[1, "beans"], [2, "filters"]], column_names=["id", "name"])
"""

READ = """
from pathlib import Path
from sinks.clickhouse.store import open_store
from streams.settings import Settings
client = open_store(Settings(data_dir=Path({data_dir!r})))
print(client.query("SELECT count(), groupArray(name) FROM (SELECT name FROM probe ORDER BY id)").result_rows)
"""


def test_chdb_store_persists_under_the_data_directory_across_processes(tmp_path):
    # Separate processes: chDB lets one process open a directory at a time, and this
    # is what a restart looks like.
    subprocess.run([sys.executable, "-c", WRITE.format(data_dir=str(tmp_path))], check=True, timeout=120)
    assert (tmp_path / "clickhouse").is_dir()
    out = subprocess.run([sys.executable, "-c", READ.format(data_dir=str(tmp_path))], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[(2, ['beans', 'filters'])]"


@pytest.mark.parametrize("url", ["clickhouse.example:8123", "ftp://ch.example", "http://"])
def test_a_clickhouse_url_that_is_not_http_is_refused_naming_the_setting(url):
    with pytest.raises(SettingsError, match="FOREWARN_CLICKHOUSE"):
        open_store(Settings(clickhouse=url))
