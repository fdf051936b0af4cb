"""Opening the ClickHouse store from settings: chDB under the data directory, or a server.

With FOREWARN_CLICKHOUSE unset the store is chDB, the ClickHouse engine in
process, through clickhouse-connect's ``chdb://`` backend, persisted under
``<data dir>/clickhouse``. Only one process can open a chDB directory at a
time. With FOREWARN_CLICKHOUSE set to ``http(s)://[user[:password]@]host[:port][/database]``
the store is that server. Nothing connects until ``open_store`` is called.

``open_store`` raises the client's own errors, so that the sink can tell a
server it should wait for from data the server refused. Commands that want
one line for a person use ``open_reachable_store``: a server that cannot be
reached, or refuses the login or the database, becomes a SettingsError naming
the address and FOREWARN_CLICKHOUSE (``store_failure``), never the password.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
from pathlib import Path

from streams.settings import ClickHouseAddress, Settings, SettingsError, clickhouse_address

class StoreUnreachable(SettingsError):
    """No answer from the ClickHouse server at FOREWARN_CLICKHOUSE; the message names it."""


# ClickHouse's error codes for a login it refuses: AUTHENTICATION_FAILED, and the older
# UNKNOWN_USER, WRONG_PASSWORD and REQUIRED_PASSWORD.
LOGIN_REFUSED = (516, 192, 193, 194)
ACCESS_DENIED = 497
UNKNOWN_DATABASE = 81


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
    address = clickhouse_address(settings.clickhouse)
    return clickhouse_connect.get_client(
        host=address.host,
        port=address.port,
        username=address.username,
        password=settings.clickhouse_password or address.password,
        database=address.database,
        secure=address.secure,
        # https: the server's certificate and host name are checked, against FOREWARN_CLICKHOUSE_CA when set.
        verify=True,
        **({"ca_cert": str(settings.clickhouse_ca)} if settings.clickhouse_ca else {}),
        # Well under the sink's max.poll.interval.ms (5 minutes): an insert that hangs fails and is
        # retried before the group gives the sink's partitions to another process.
        send_receive_timeout=120,
    )


def open_reachable_store(settings: Settings):
    """``open_store``, with a server that cannot be reached or refuses us as one SettingsError line."""
    if not settings.clickhouse:
        return open_store(settings)
    address = clickhouse_address(settings.clickhouse)
    try:
        with _quiet_driver():
            return open_store(settings)
    except Exception as exc:  # noqa: BLE001 - only the failures store_failure knows become a line
        failure = store_failure(exc, address)
        if failure is None:
            raise
        raise failure from exc


def store_failure(exc: BaseException, address: ClickHouseAddress) -> SettingsError | None:
    """What to say instead of ``exc`` when the server at ``address`` cannot be used; None if it is about
    something else. StoreUnreachable when nothing answered, SettingsError when the server refused us."""
    code = getattr(exc, "code", None)
    text = " ".join(str(exc).split())
    if code in LOGIN_REFUSED or "AUTHENTICATION_FAILED" in text:
        return SettingsError(
            f"ClickHouse at {address.shown} refused to log in user {address.username!r} (wrong user or password); "
            f"set them in FOREWARN_CLICKHOUSE as http(s)://user:password@host:port/database")
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return SettingsError(
            f"the TLS certificate of ClickHouse at {address.shown} is not trusted; set FOREWARN_CLICKHOUSE_CA to "
            f"the CA that signed it")
    if code == UNKNOWN_DATABASE or "UNKNOWN_DATABASE" in text:
        return SettingsError(
            f"ClickHouse at {address.shown} has no database {address.database!r}; create it, or name another "
            f"at the end of FOREWARN_CLICKHOUSE")
    if code == ACCESS_DENIED or "ACCESS_DENIED" in text:
        return SettingsError(
            f"ClickHouse at {address.shown} denies user {address.username!r} access to database "
            f"{address.database!r}; grant it, or set another user in FOREWARN_CLICKHOUSE")
    status = re.match(r"HTTP driver received HTTP status (\d+)", text)
    if status is not None:
        return SettingsError(
            f"{address.shown} answered HTTP status {status.group(1)}, not as a ClickHouse server does; check "
            f"the host and port in FOREWARN_CLICKHOUSE (ClickHouse's HTTP port is 8123, or 8443 with https)")
    reason = _transport_reason(exc)
    if reason is None:
        return None
    return StoreUnreachable(
        f"cannot reach ClickHouse at {address.shown} ({reason}); check that it runs there, or set "
        f"FOREWARN_CLICKHOUSE to one that does (unset, the store is chDB in the data directory)")


def _transport_reason(exc: BaseException) -> str | None:
    """Why no answer came, from the innermost network error behind ``exc``; None if none is behind it."""
    from clickhouse_connect.driver.exceptions import OperationalError

    seen = set()
    reason = None
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "unknown host"
        if isinstance(current, ssl.SSLError):
            return f"TLS failed: {current.reason or current}"
        if isinstance(current, TimeoutError) or type(current).__name__ in ("ConnectTimeoutError", "ReadTimeoutError"):
            return "no answer in time"
        if isinstance(current, OSError) and current.strerror:
            reason = current.strerror.lower()
        current = current.__cause__ or current.__context__
    if reason is None and isinstance(exc, OperationalError):
        reason = "the connection failed"
    return reason


@contextlib.contextmanager
def _quiet_driver():
    """The client and urllib3 log a warning for every failed connection attempt; the caller says it in one line."""
    import clickhouse_connect  # noqa: F401 - its import sets urllib3's level, which must come first

    loggers = [logging.getLogger(name) for name in ("clickhouse_connect", "urllib3")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
