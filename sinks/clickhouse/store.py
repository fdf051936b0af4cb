"""Opening the ClickHouse store from settings: chDB under the data directory, or a server.

With FOREWARN_CLICKHOUSE unset the store is chDB, the ClickHouse engine in
process, through clickhouse-connect's ``chdb://`` backend, persisted under
``<data dir>/clickhouse``. Only one process can open a chDB directory at a
time. With FOREWARN_CLICKHOUSE set to ``http(s)://[user[:password]@]host[:port][/database]``
the store is that server. Nothing connects until ``open_store`` is called.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from streams.settings import Settings, SettingsError


def chdb_path(settings: Settings) -> Path:
    return settings.data_dir / "clickhouse"


def open_store(settings: Settings):
    """A clickhouse-connect client for the configured store."""
    import clickhouse_connect

    if not settings.clickhouse:
        path = chdb_path(settings)
        path.mkdir(parents=True, exist_ok=True)
        try:
            return clickhouse_connect.get_client(dsn=f"chdb://{path.resolve()}")
        except Exception as exc:
            raise SettingsError(
                f"cannot open the chDB store in {path} ({exc}); only one process can open it at a time: "
                f"stop the other, or set FOREWARN_DATA_DIR or FOREWARN_CLICKHOUSE"
            ) from exc
    url = urlparse(settings.clickhouse)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise SettingsError(
            f"FOREWARN_CLICKHOUSE={settings.clickhouse!r}: expected http(s)://[user[:password]@]host[:port][/database]"
        )
    return clickhouse_connect.get_client(
        host=url.hostname,
        port=url.port or (8443 if url.scheme == "https" else 8123),
        username=unquote(url.username) if url.username else "default",
        password=unquote(url.password) if url.password else "",
        database=url.path.strip("/") or "default",
        secure=url.scheme == "https",
        # Well under the sink's max.poll.interval.ms (5 minutes): an insert that hangs fails and is
        # retried before the group gives the sink's partitions to another process.
        send_receive_timeout=120,
    )
