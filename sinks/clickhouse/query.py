"""`forewarn sql`: run a query against the store and print the result as a table, CSV or JSON.

Where the query runs:

* FOREWARN_CLICKHOUSE set: on that ClickHouse server.
* otherwise chDB under the data directory, which only one process may open.
  While a sink owns it (under `forewarn up`), the sink serves queries on a
  loopback HTTP endpoint and records its address and a secret token in
  ``<data dir>/sink/query-endpoint.json`` (readable by the owner only);
  `forewarn sql` sends the query there. With no sink running it opens the
  directory itself.

Queries are read-only unless ``--write`` is given. On a ClickHouse server that
is ClickHouse's own ``readonly=2`` for the query. chDB keeps settings in the
process's session, and a query refused under ``readonly`` leaves the session
read-only (it cannot set ``readonly`` back), which would stop the sink's own
writes; so against chDB a query is read-only when it is one statement of a
kind that cannot write (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS) and
writes no file (``INTO OUTFILE``).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import ipaddress
import json
import os
import re
import secrets
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib import error as urlerror
from urllib import request as urlrequest

from streams.settings import Settings, SettingsError


class QueryError(Exception):
    """ClickHouse refused the query; the message is ClickHouse's."""


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list]  # values as JSON-friendly Python: str, int, float, bool, None, list, dict

    def to_json(self) -> dict:
        return {"columns": self.columns, "types": self.types, "rows": self.rows}

    @classmethod
    def from_json(cls, obj: dict) -> "QueryResult":
        return cls(list(obj["columns"]), list(obj["types"]), [list(r) for r in obj["rows"]])


def plain(value):
    """A query value as JSON-friendly Python, the same whichever way the query ran."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        text = value.isoformat(sep=" ", timespec="milliseconds" if value.microsecond else "seconds")
        return text
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return str(value)


# Limits on queries the sink serves for others: the sink's own writes wait while one runs, and a
# consumer that does not poll for max.poll.interval.ms (5 minutes) is put out of its group.
ENDPOINT_LIMITS = {"max_execution_time": 120, "max_result_rows": 1_000_000, "max_result_bytes": 1_000_000_000}


_READING = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")


def read_only_refusal(sql: str) -> str | None:
    """Why ``sql`` is not a read-only statement, or None if it is one (see the module doc)."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL).strip().rstrip(";").strip()
    if ";" in re.sub(r"'(?:[^'\\]|\\.)*'", "''", text):
        return "one statement at a time"
    first = re.match(r"[(\s]*([A-Za-z]+)", text)
    if first is None or first.group(1).upper() not in _READING:
        return f"read-only queries only ({', '.join(_READING)}); --write allows others"
    if re.search(r"\bINTO\s+OUTFILE\b", text, flags=re.IGNORECASE):
        return "INTO OUTFILE writes a file; --write allows it"
    return None


def _is_chdb(client) -> bool:
    return type(client).__name__.lower().startswith("chdb")


def run_on_client(client, sql: str, write: bool = False, lock: threading.Lock | None = None,
                  limits: dict | None = None) -> QueryResult:
    """Run ``sql``; ``client`` is a client or a function returning one (resolved under ``lock``)."""
    settings = dict(limits or {})
    if not write:
        resolved = client() if callable(client) else client
        if _is_chdb(resolved):
            refusal = read_only_refusal(sql)
            if refusal is not None:
                raise QueryError(f"refused: {refusal}")
        else:
            settings["readonly"] = 2
    try:
        if lock is not None:
            with lock:
                result = (client() if callable(client) else client).query(sql, settings=settings)
        else:
            result = (client() if callable(client) else client).query(sql, settings=settings)
    except Exception as exc:  # noqa: BLE001 - ClickHouse's own message is the useful part
        raise QueryError(" ".join(str(exc).split())) from exc
    types = [getattr(t, "name", str(t)) for t in result.column_types]
    return QueryResult(list(result.column_names), types, [[plain(v) for v in row] for row in result.result_rows])


# ---------------------------------------------------------------- the sink's endpoint


def endpoint_path(settings: Settings) -> Path:
    return settings.data_dir / "sink" / "query-endpoint.json"


class QueryEndpoint:
    """Loopback HTTP endpoint of the process that owns the chDB directory: POST / with JSON {sql, write}."""

    def __init__(self, settings: Settings, client_of, lock: threading.Lock) -> None:
        self.settings = settings
        self.token = secrets.token_urlsafe(24)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                if self.headers.get("Authorization") != f"Bearer {endpoint.token}":
                    self._reply(403, {"error": "wrong or missing token"})
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                    sql, write = str(body["sql"]), bool(body.get("write", False))
                except (ValueError, KeyError, TypeError) as exc:
                    self._reply(400, {"error": f"bad request: {exc}"})
                    return
                try:
                    self._reply(200, run_on_client(client_of, sql, write, lock, ENDPOINT_LIMITS).to_json())
                except QueryError as exc:
                    self._reply(400, {"error": str(exc)})
                except Exception as exc:  # noqa: BLE001 - the store is not open (yet)
                    self._reply(503, {"error": f"the store is not available: {' '.join(str(exc).split())}"})

            def _reply(self, status: int, obj: dict) -> None:
                data = json.dumps(obj, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="query-endpoint", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "QueryEndpoint":
        self._thread.start()
        path = endpoint_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": self.url, "token": self.token, "pid": os.getpid()}, f)
        os.replace(tmp, path)
        return self

    def stop(self) -> None:
        path = endpoint_path(self.settings)
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
        self.server.shutdown()
        self.server.server_close()


def _refused(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, ConnectionRefusedError)


def _running_endpoint(settings: Settings) -> dict | None:
    from streams.settings import _process_alive

    try:
        recorded = json.loads(endpoint_path(settings).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("pid"), int):
        return None
    return recorded if _process_alive(recorded["pid"]) else None


def run_query(settings: Settings, sql: str, write: bool = False, timeout: float = 300.0) -> QueryResult:
    """Run ``sql`` where the configured store is (see the module doc)."""
    from sinks.clickhouse.store import open_store

    if settings.clickhouse:
        return run_on_client(open_store(settings), sql, write)
    endpoint = _running_endpoint(settings)
    if endpoint is not None:
        req = urlrequest.Request(endpoint["url"], data=json.dumps({"sql": sql, "write": write}).encode(),
                                 headers={"Authorization": f"Bearer {endpoint['token']}",
                                          "Content-Type": "application/json"})
        try:
            with urlrequest.urlopen(req, timeout=timeout) as response:
                return QueryResult.from_json(json.loads(response.read()))
        except urlerror.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", str(exc))
            except ValueError:
                message = str(exc)
            if exc.code == 400:
                raise QueryError(message) from None
            raise SettingsError(f"the sink (process {endpoint['pid']}) could not run the query: {message}") from None
        except (urlerror.URLError, OSError) as exc:
            if not _refused(exc):
                raise SettingsError(
                    f"the sink (process {endpoint['pid']}) holds the chDB store in {settings.data_dir} but its "
                    f"query endpoint {endpoint['url']} does not answer ({exc}); try again, or stop it"
                ) from None
            # Nothing listens there: the file is a killed sink's, and its process id was reused.
    from sinks.clickhouse.migrate import apply_migrations

    client = open_store(settings)
    apply_migrations(client)  # a store nothing has written to yet still answers with empty tables
    return run_on_client(client, sql, write)


# ---------------------------------------------------------------- printing


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _unwrapped(type_name: str) -> str:
    for wrapper in ("LowCardinality(", "Nullable("):
        if type_name.startswith(wrapper):
            type_name = type_name[len(wrapper):]
    return type_name


def format_table(result: QueryResult, max_width: int = 60) -> str:
    cells = [[_cell(v) for v in row] for row in result.rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in row] for row in cells]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(result.columns)]
    numeric = [_unwrapped(t).startswith(("UInt", "Int", "Float", "Decimal")) for t in result.types]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(result.columns), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    out.append(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    return "\n".join(out)


def format_csv(result: QueryResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if v is None else (json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict))
                                              else v) for v in row])
    return buffer.getvalue().rstrip("\n")


def format_json(result: QueryResult) -> str:
    """One JSON object per row (JSON lines), keys in column order."""
    return "\n".join(json.dumps(dict(zip(result.columns, row)), ensure_ascii=False) for row in result.rows)


FORMATS = {"table": format_table, "csv": format_csv, "json": format_json}
