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

Every query is first parsed by ClickHouse (``formatQuery``), which runs
nothing: a query that is not valid SQL is reported as such, in the parser's
words, and a write without ``--write`` is named as a write.
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
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib import error as urlerror
from urllib import request as urlrequest

from streams.settings import Settings, SettingsError


class QueryError(Exception):
    """ClickHouse refused the query; the message is ClickHouse's."""

    kind = "query"


class QuerySyntaxError(QueryError):
    """The query is not valid SQL, so nothing ran; the message is ClickHouse's parser's."""

    kind = "syntax"


class QueryRefused(QueryError):
    """The query is not read-only and --write was not given (or it is several statements); nothing ran."""

    kind = "refused"


# By `kind`, for the sink's endpoint to send and `forewarn sql` to raise again.
QUERY_ERRORS = {error.kind: error for error in (QueryError, QuerySyntaxError, QueryRefused)}


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
# ClickHouse's error codes: SYNTAX_ERROR, UNKNOWN_SETTING, and READONLY (a server refusing a write under
# readonly=2).
SYNTAX_ERROR = 62
UNKNOWN_SETTING = 115
READONLY = 164
# chDB turns implicit_select on: `SELEC rule FROM alerts` would parse as `SELECT SELEC AS rule FROM alerts`
# and fail later on clauses the client appends. Parsed as a server parses it by default, a misspelt
# keyword is the syntax error it looks like.
STRICT_PARSING = {"implicit_select": 0}


def read_only_refusal(sql: str, kind: str | None = None) -> str | None:
    """Why ``sql`` is not a read-only statement, or None if it is one (see the module doc).

    ``kind`` is the statement's first keyword as ClickHouse parsed it, when known (``statement_kind``):
    it decides, since the text may start otherwise (a parenthesis, a comment, ``FROM t SELECT``).
    """
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL).strip().rstrip(";").strip()
    if ";" in re.sub(r"'(?:[^'\\]|\\.)*'", "''", text):
        return "one statement at a time"
    if kind is None:
        first = re.match(r"[(\s]*([A-Za-z]+)", text)
        kind = first.group(1).upper() if first else None
    if kind not in _READING:
        return write_refusal(kind)
    if re.search(r"\bINTO\s+OUTFILE\b", text, flags=re.IGNORECASE):
        return "INTO OUTFILE writes a file; add --write to run it"
    return None


def write_refusal(kind: str | None) -> str:
    return (f"{kind or 'the query'} is a write; add --write to run it (without it only "
            f"{', '.join(_READING[:-1])} and {_READING[-1]} queries run)")


def _is_chdb(client) -> bool:
    return type(client).__name__.lower().startswith("chdb")


def _on_client(client, lock: threading.Lock | None, use):
    """``use(client)``, under ``lock`` when there is one; ``client`` may be a function returning the client."""
    if lock is None:
        return use(client() if callable(client) else client)
    with lock:
        return use(client() if callable(client) else client)


def statement_kind(client, sql: str, lock: threading.Lock | None = None) -> str | None:
    """The first keyword of ``sql`` as ClickHouse parses it (SELECT, INSERT, ALTER, ...).

    Raises QuerySyntaxError when ClickHouse's parser refuses ``sql``, and
    QueryRefused for several statements. ``formatQuery`` parses without
    running anything, and its message points into the query as written,
    where running it would point into the clauses the client appends. None
    when the server cannot say (a ClickHouse older than 23.10 has no
    formatQuery): the query itself then fails if it is not valid.
    """
    def parse(c, settings: dict):
        return c.query("SELECT formatQuery(%(sql)s)", parameters={"sql": sql}, settings=settings).result_rows

    try:
        try:
            rows = _on_client(client, lock, lambda c: parse(c, STRICT_PARSING))
        except Exception as exc:  # noqa: BLE001 - a server from before implicit_select parses strictly anyway
            if getattr(exc, "code", None) != UNKNOWN_SETTING:
                raise
            rows = _on_client(client, lock, lambda c: parse(c, {}))
    except Exception as exc:  # noqa: BLE001 - only a syntax error is an answer here
        if getattr(exc, "code", None) != SYNTAX_ERROR:
            return None
        text = clickhouse_text(exc)
        if "Multi-statements are not allowed" in text:
            raise QueryRefused("refused: one statement at a time") from None
        raise QuerySyntaxError(f"not valid SQL: {parser_text(text)}") from None
    first = re.match(r"\s*([A-Za-z]+)", rows[0][0]) if rows and rows[0] else None
    return first.group(1).upper() if first else None


def clickhouse_text(exc: BaseException) -> str:
    """ClickHouse's message in ``exc`` on one line, without what the client adds to the query or the message."""
    text = str(exc)
    # What clickhouse-connect appends to every query, and the limits the sink's endpoint sets.
    text = text.replace("\n FORMAT Native", "")
    text = re.sub(r"\s*SETTINGS (?:(?:%s) = '?[^,'\s]*'?(?:, )?)+" % "|".join([*ENDPOINT_LIMITS, *STRICT_PARSING,
                                                                             "readonly"]),
                  "", text)
    text = re.sub(r"^(?:Received ClickHouse exception, code: \d+|HTTP driver received HTTP status \d+), "
                  r"server response: ", "", text)
    text = re.sub(r"\s*\(for url [^)]*\)\s*$", "", text)
    text = re.sub(r"\s*\(version [^()]*(?:\([^()]*\))?[^()]*\)\s*$", "", text)
    return " ".join(text.split())


# How much of the parser's list of what it expected is shown: at the start of a query it lists every
# kind of statement, a few thousand characters.
EXPECTED_SHOWN = 160


def parser_text(text: str) -> str:
    """The parser's own words in a SYNTAX_ERROR message: no error code, no echo of the formatQuery call,
    and its list of what it expected cut short when it is long."""
    text = text.split("DB::Exception: ", 1)[-1]
    scope = text.rfind(": In scope SELECT formatQuery(")
    if scope >= 0:
        text = text[:scope]
    text = re.sub(r"\s*\(SYNTAX_ERROR\)\s*$", "", text).rstrip(" .:")
    head, found, expected = text.partition("Expected one of: ")
    if found and len(expected) > EXPECTED_SHOWN:
        expected = expected[:expected.rfind(", ", 0, EXPECTED_SHOWN)] + ", ..."
    return head + found + expected


def run_on_client(client, sql: str, write: bool = False, lock: threading.Lock | None = None,
                  limits: dict | None = None) -> QueryResult:
    """Run ``sql``; ``client`` is a client or a function returning one (resolved under ``lock``).

    Raises QuerySyntaxError for a query that is not valid SQL and QueryRefused
    for a write without ``write``, in both cases before anything runs, and
    QueryError for anything else ClickHouse refuses.
    """
    settings = dict(limits or {})
    kind = statement_kind(client, sql, lock)
    if not write:
        if _on_client(client, lock, _is_chdb):
            refusal = read_only_refusal(sql, kind)
            if refusal is not None:
                raise QueryRefused(f"refused: {refusal}")
        else:
            settings["readonly"] = 2
    try:
        result = _on_client(client, lock, lambda c: c.query(sql, settings=settings))
    except Exception as exc:  # noqa: BLE001 - ClickHouse's own message is the useful part
        code = getattr(exc, "code", None)
        if code == SYNTAX_ERROR:
            raise QuerySyntaxError(f"not valid SQL: {parser_text(clickhouse_text(exc))}") from exc
        if code == READONLY and not write:
            raise QueryRefused(f"refused: {write_refusal(kind)}") from exc
        raise QueryError(clickhouse_text(exc)) from exc
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
                    self._reply(400, {"error": str(exc), "kind": exc.kind})
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


# How long `forewarn sql` waits for the sink of a starting `forewarn up` to serve queries.
SINK_START_WAIT_S = 90.0


def _stack_sink_starting(settings: Settings, wait_s: float = SINK_START_WAIT_S) -> bool:
    """True once the sink of a `forewarn up` running on this data directory serves queries.

    Such a sink is about to own the chDB store: opening the store here would race
    it (and fail on the store's lock, or keep the sink out). So wait for its
    query endpoint; False when no such stack runs (the store is free to open).
    """
    from streams.settings import _process_alive

    try:
        stack = json.loads(settings.endpoint_file.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(stack, dict) or not isinstance(stack.get("pid"), int) or not stack.get("sink", True):
        return False
    deadline = time.monotonic() + wait_s
    while _process_alive(stack["pid"]):
        if _running_endpoint(settings) is not None:
            return True
        if time.monotonic() > deadline:
            raise SettingsError(f"`forewarn up` (process {stack['pid']}) runs a sink that will own the chDB store "
                                f"in {settings.data_dir}, but it has not served queries within {wait_s:.0f}s; see "
                                f"{settings.data_dir / 'logs' / 'sink.log'}")
        time.sleep(0.2)
    return False


def run_query(settings: Settings, sql: str, write: bool = False, timeout: float = 300.0,
              open_chdb: bool = True) -> QueryResult:
    """Run ``sql`` where the configured store is (see the module doc).

    With ``open_chdb`` False the chDB store is only ever asked through its
    sink's endpoint: a SettingsError says so when no sink serves it (a process
    that must not take the store from the sink, such as the web page).
    """
    from sinks.clickhouse.store import open_reachable_store, open_store

    if settings.clickhouse:
        return run_on_client(open_reachable_store(settings), sql, write)
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
                answer = json.loads(exc.read())
                message, kind = answer.get("error", str(exc)), answer.get("kind")
            except (ValueError, AttributeError):
                message, kind = str(exc), None
            if exc.code == 400:
                raise QUERY_ERRORS.get(kind, QueryError)(message) from None
            raise SettingsError(f"the sink (process {endpoint['pid']}) could not run the query: {message}") from None
        except (urlerror.URLError, OSError) as exc:
            if not _refused(exc):
                raise SettingsError(
                    f"the sink (process {endpoint['pid']}) holds the chDB store in {settings.data_dir} but its "
                    f"query endpoint {endpoint['url']} does not answer ({exc}); try again, or stop it"
                ) from None
            # Nothing listens there: the file is a killed sink's, and its process id was reused.
    if not open_chdb:
        raise SettingsError(f"the chDB store in {settings.data_dir} is read through its sink, which is not serving "
                            f"queries (`forewarn up`), or set FOREWARN_CLICKHOUSE")
    if endpoint is None and _stack_sink_starting(settings):
        return run_query(settings, sql, write, timeout)
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
