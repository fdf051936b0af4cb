"""Every bad setting or argument gets one line on standard error, starting `forewarn: `, and exit status 2.

Each case runs the real command in a process of its own, with no FOREWARN_* variable but the ones
it sets and a data directory of its own. Nothing here needs a broker: settings and arguments are
checked before anything connects, and the addresses that must not answer are ports held bound and
not listening for the test's duration.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from sinks.clickhouse.store import StoreUnreachable, store_failure
from streams.rulebook import RULES
from streams.settings import SettingsError, clickhouse_address

ROOT = Path(__file__).resolve().parents[2]
RULE_NAMES = ", ".join(rule.name for rule in RULES)
READ_ONLY = "(without it only SELECT, WITH, SHOW, DESCRIBE, DESC, EXPLAIN and EXISTS queries run)"
UNREACHABLE_HINT = ("check that it runs there, or set FOREWARN_CLICKHOUSE to one that does (unset, the store is "
                    "chDB in the data directory)")


def forewarn(argv: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("FOREWARN_")}
    clean.update(FOREWARN_DATA_DIR=str(data_dir), **env)
    return subprocess.run([sys.executable, "-m", "streams", *argv], cwd=ROOT, env=clean, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def refused_with(result: subprocess.CompletedProcess) -> str:
    """The one line a refused command printed, after checking that it is one line and nothing else happened."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr.rstrip("\n")


# (the environment, the command, the line it must print)
SETTINGS = [
    ({"FOREWARN_WEB_ADDR": "localhost"}, ["web"],
     "FOREWARN_WEB_ADDR='localhost': expected host:port, such as 127.0.0.1:8787 (ports from 1 to 65535)"),
    ({"FOREWARN_WEB_ACCOUNTS": "/no/such/file"}, ["up"],
     "FOREWARN_WEB_ACCOUNTS='/no/such/file': expected a file of `name:password hash` lines; there is no such file"),
    ({"FOREWARN_WEB_SESSION_MINUTES": "never"}, ["web"],
     "FOREWARN_WEB_SESSION_MINUTES='never': expected a whole number of minutes from 1 to 10080"),
    ({"FOREWARN_WEB_PORT": "99999"}, ["worker"],
     "FOREWARN_WEB_PORT='99999': expected a port from 1 to 65535, or 0 for no web server"),
    ({"FOREWARN_WEB_PORT": "http"}, ["rules"],
     "FOREWARN_WEB_PORT='http': expected a port from 1 to 65535, or 0 for no web server"),
    ({"FOREWARN_SINGLE_RECORD_BATCHES": "yes"}, ["rules"],
     "FOREWARN_SINGLE_RECORD_BATCHES='yes': expected 1 or 0 (1: one record per producer batch, 0: normal "
     "batching; unset: detected from the broker)"),
    ({"FOREWARN_SLA_RISK_PERCENT": "150"}, ["rules"],
     "FOREWARN_SLA_RISK_PERCENT='150': expected a whole percentage from 1 to 99"),
    ({"FOREWARN_RETURN_SPIKE_PERCENT": "0"}, ["rules"],
     "FOREWARN_RETURN_SPIKE_PERCENT='0': expected a whole percentage from 1 to 100"),
    ({"FOREWARN_WEB_ERROR_STATUS": "200"}, ["rules"],
     "FOREWARN_WEB_ERROR_STATUS='200': expected a whole number from 400 to 599"),
    ({"FOREWARN_NPS_NEGATIVE_MAX": "10"}, ["rules"],
     "FOREWARN_NPS_NEGATIVE_MAX='10': expected a whole number from 0 to 9"),
    ({"FOREWARN_COMPLAINT_SPIKE_HISTORY": "5000"}, ["rules"],
     "FOREWARN_COMPLAINT_SPIKE_HISTORY='5000': expected a whole number from 1 to 1000"),
    ({"FOREWARN_BACKLOG_TICKETS": "0"}, ["rules"],
     "FOREWARN_BACKLOG_TICKETS='0': expected a whole number, 1 or more"),
    ({"FOREWARN_SLA_CHAT_S": "nan"}, ["rules"],
     "FOREWARN_SLA_CHAT_S='nan': expected a number of seconds from 0.001 to 31536000 (365 days)"),
    ({"FOREWARN_SLA_CHAT_S": "0.0001"}, ["rules"],
     "FOREWARN_SLA_CHAT_S='0.0001': expected a number of seconds from 0.001 to 31536000 (365 days)"),
    ({"FOREWARN_ALERT_COOLDOWN_S": "-1"}, ["rules"],
     "FOREWARN_ALERT_COOLDOWN_S='-1': expected a number of seconds from 0 to 31536000 (365 days)"),
    ({"FOREWARN_CLICKHOUSE": "notaurl"}, ["up"],
     "FOREWARN_CLICKHOUSE='notaurl': expected http(s)://[user[:password]@]host[:port][/database] "
     "(ports from 1 to 65535)"),
    ({"FOREWARN_CLICKHOUSE": "http://ops:s3cret@ch.example:99999/shop"}, ["sql", "SELECT 1"],
     "FOREWARN_CLICKHOUSE='http://ops:***@ch.example:99999/shop': expected "
     "http(s)://[user[:password]@]host[:port][/database] (ports from 1 to 65535)"),
    ({"FOREWARN_CLICKHOUSE": "http://ch.example:8123/shop/extra"}, ["sink"],
     "FOREWARN_CLICKHOUSE='http://ch.example:8123/shop/extra': expected "
     "http(s)://[user[:password]@]host[:port][/database] (ports from 1 to 65535)"),
    ({"FOREWARN_SCHEMA_REGISTRY": "registry:8081"}, ["rules"],
     "FOREWARN_SCHEMA_REGISTRY='registry:8081': expected http(s)://host[:port][/path] (ports from 1 to 65535)"),
    ({"FOREWARN_KAFKA": "broker:99999"}, ["topics", "create"],
     "FOREWARN_KAFKA='broker:99999': expected host:port, or several separated by commas (ports from 1 to 65535)"),
    ({"FOREWARN_PARTITIONS": "0"}, ["topics", "create"],
     "FOREWARN_PARTITIONS='0': expected a whole number from 1 to 10000"),
    ({"FOREWARN_REPLICATION_FACTOR": "0"}, ["topics", "create"],
     "FOREWARN_REPLICATION_FACTOR='0': expected a whole number from 1 to 32767"),
    ({"FOREWARN_SESSION_TIMEOUT_MS": "100"}, ["worker"],
     "FOREWARN_SESSION_TIMEOUT_MS='100': expected a whole number of milliseconds from 6000 to 1800000, or 0 to "
     "choose one for the broker"),
    ({"FOREWARN_ALLOWED_LATENESS_MS": "-1"}, ["rules"],
     "FOREWARN_ALLOWED_LATENESS_MS='-1': expected a whole number of milliseconds from 0 to 31536000000 (365 days)"),
    ({"FOREWARN_REORDER_HORIZON_MS": "1d"}, ["rules"],
     "FOREWARN_REORDER_HORIZON_MS='1d': expected a whole number of milliseconds from 0 to 31536000000 (365 days)"),
    ({"FOREWARN_MAX_CLOCK_SKEW_MS": "1.5"}, ["produce", "-"],
     "FOREWARN_MAX_CLOCK_SKEW_MS='1.5': expected a whole number of milliseconds from 0 to 31536000000 (365 days)"),
    ({"FOREWARN_STOCKOUT_ROLLUP_ORDERS": "0"}, ["rules"],
     "FOREWARN_STOCKOUT_ROLLUP_ORDERS='0': expected a whole number, 1 or more"),
    ({"FOREWARN_MAX_ALTERNATIVES": "-1"}, ["rules"],
     "FOREWARN_MAX_ALTERNATIVES='-1': expected a whole number, 0 or more"),
    ({"FOREWARN_TOPIC_PREFIX": "my prefix"}, ["topics", "list"],
     "FOREWARN_TOPIC_PREFIX='my prefix': expected up to 100 letters, digits, '.', '_' or '-' (it starts every "
     "topic name)"),
    ({"FOREWARN_WORKER_ID": "../w1"}, ["worker"],
     "FOREWARN_WORKER_ID='../w1': expected up to 100 letters, digits, '.', '_' or '-' (it names the worker's "
     "scratch directory)"),
    ({"FOREWARN_EMBEDDED": "disk"}, ["up"], "FOREWARN_EMBEDDED='disk': expected one of kafka, memory"),
    ({"FOREWARN_KAFKA_HEAP": "lots"}, ["up"],
     "FOREWARN_KAFKA_HEAP='lots': expected a heap size such as 256m or 1g"),
    ({"FOREWARN_MAVEN_URL": "ftp://mirror"}, ["rules"],
     "FOREWARN_MAVEN_URL='ftp://mirror': expected the http(s):// URL of a Maven repository such as "
     "https://repo1.maven.org/maven2/"),
]


@pytest.mark.parametrize("env, argv, line", SETTINGS, ids=[f"{next(iter(env))}={next(iter(env.values()))}"
                                                           for env, _, _ in SETTINGS])
def test_a_bad_setting_stops_any_command_at_start_naming_the_variable_and_what_it_takes(tmp_path, env, argv, line):
    assert refused_with(forewarn(argv, tmp_path / "data", **env)) == f"forewarn: {line}"
    assert not (tmp_path / "data").exists()  # refused before anything was started or written


def test_a_data_directory_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "data").write_text("")
    assert refused_with(forewarn(["rules"], tmp_path / "data")) == (
        f"forewarn: FOREWARN_DATA_DIR='{tmp_path / 'data'}': expected a directory (or where to make one); "
        f"that is a file")


ARGUMENTS = [
    (["alerts", "--rule", "out_of_stock"],
     f"--rule 'out_of_stock' is not a rule; expected one of {RULE_NAMES}"),
    (["tasks", "--queue", "sales"],
     "--queue 'sales' is not a queue; expected one of fulfillment, support-leads, swarm, customer-success, billing, "
     "it"),
    (["sql", "SELECT 1", "--format", "xml"], "--format 'xml' is not a format; expected one of table, csv, json"),
    (["task", "reopen", "T-1", "--as", "asha"], "'reopen' is not a task action; expected one of show, claim, done, release"),
    (["task", "claim", "T-1"], "`forewarn task claim` needs --as NAME: your name, which becomes the task's assignee"),
    (["task", "claim", "T-1", "--as", "asha", "--timeout", "0"], "--timeout 0: expected a number of seconds above 0"),
    (["task", "claim", " ", "--as", "asha"],
     "TASK_ID is empty; give the id of the task, as `forewarn tasks` shows it"),
    (["produce", "--topic", "alerts", "-"],
     "--topic 'alerts' is not an input topic; expected one of catalog, customers, feedback, inventory, orders, "
     "returns, support, task-updates, web"),
    (["replay", "--speed", "0", "timeline.jsonl"], "--speed 0: expected a number above 0"),
    (["up", "--workers", "0"], "--workers 0: expected a whole number, 1 or more"),
    (["up", "--yes"], "`forewarn up --yes` only confirms --reset; add --reset, or drop --yes"),
    (["worker", "--loglevel", "loud"], "--loglevel 'loud' is not a log level; expected one of debug, info, warning, "
                                       "error"),
    (["sink", "--batch-rows", "0"], "--batch-rows 0: expected a whole number, 1 or more"),
    (["sink", "--batch-seconds", "inf"], "--batch-seconds inf: expected a number of seconds above 0"),
    (["demo", "--duration", "-5"], "--duration -5: expected a number of seconds above 0"),
    (["sql", "  "], "the query is empty"),
    (["web", "--hash-password", "a b"], "--hash-password 'a b': a name without spaces or colons"),
    (["reset"], "'reset' is not a command; expected one of "
                + ", ".join(["up", "worker", "topics", "status", "produce", "replay", "alerts", "tasks", "task", "sink", "sql",]
                            + ["rules", "notify", "web", "demo"]) + " (see `forewarn --help`)"),
    (["topics", "delete"], "'delete' is not an action; expected one of create, list (see `forewarn topics --help`)"),
    (["sql"], "the following arguments are required: QUERY (see `forewarn sql --help`)"),
]


@pytest.mark.parametrize("argv, line", ARGUMENTS, ids=[" ".join(argv) for argv, _ in ARGUMENTS])
def test_a_bad_argument_is_refused_in_one_line_listing_what_it_may_be(tmp_path, argv, line):
    assert refused_with(forewarn(argv, tmp_path / "data")) == f"forewarn: {line}"


# -- forewarn sql: a query that is not SQL, and a write without --write, on the chDB store


SQL = [
    ("SELEC rule FROM alerts", "not valid SQL: Syntax error: failed at position 1 (SELEC): SELEC rule FROM alerts. "
                               "Maybe you meant: SELECT. Expected one of: Query, Query with output, EXPLAIN, SELECT "
                               "query, possibly with UNION, list of union elements, SELECT query, subquery, "
                               "possibly with UNION, ..."),
    ("SELECT 'beans", "not valid SQL: Single quoted string is not closed: Syntax error: failed at position 8 "
                      "('beans): 'beans"),
    ("INSERT INTO alerts_latest VALUES (1)", f"refused: INSERT is a write; add --write to run it {READ_ONLY}"),
    ("-- tidy up\nDROP TABLE alerts", f"refused: DROP is a write; add --write to run it {READ_ONLY}"),
    ("SELECT 1; DROP TABLE alerts", "refused: one statement at a time"),
]


@pytest.mark.parametrize("query, line", SQL, ids=[query.splitlines()[-1] for query, _ in SQL])
def test_sql_tells_a_syntax_error_from_a_write(tmp_path, query, line):
    assert refused_with(forewarn(["sql", query], tmp_path / "data")) == f"forewarn: {line}"


@pytest.mark.parametrize("query", ["SELECT rule FROM alerts WHERE", "SELECT count( FROM alerts"])
def test_a_syntax_error_is_the_parsers_message_without_what_the_client_adds(tmp_path, query):
    line = refused_with(forewarn(["sql", query], tmp_path / "data"))
    assert line.startswith("forewarn: not valid SQL: Syntax error: failed at position ")
    for internal in ("FORMAT Native", "SETTINGS", "implicit_select", "formatQuery", "DB::Exception", "SYNTAX_ERROR"):
        assert internal not in line


# -- ClickHouse that does not answer, or refuses us


@pytest.fixture
def silent_port():
    """A port bound and not listening for the test's duration: a connection is refused, and nothing else takes it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("argv", [["sql", "SELECT 1"], ["up"], ["sink", "--migrate"]])
def test_an_unreachable_clickhouse_is_one_line_naming_the_address_and_the_setting(tmp_path, silent_port, argv):
    address = f"http://ops:s3cret@127.0.0.1:{silent_port}"
    line = refused_with(forewarn(argv, tmp_path / "data", FOREWARN_CLICKHOUSE=address))
    assert line == f"forewarn: cannot reach ClickHouse at http://127.0.0.1:{silent_port} (connection refused); " \
                   f"{UNREACHABLE_HINT}"


def _network_failure(inner: BaseException) -> OperationalError:
    """An error as clickhouse-connect raises it when the connection fails: the OS error is in its cause chain."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise OperationalError("Error executing HTTP request attempt 1 (http://ch.example:8123)") from exc
    except OperationalError as outer:
        return outer


ADDRESS = clickhouse_address("https://ops:s3cret@ch.example/shop")


@pytest.mark.parametrize("failure, kind, line", [
    (DatabaseError("Received ClickHouse exception, code: 516, server response: ...", code=516), SettingsError,
     "ClickHouse at https://ch.example:8443 refused to log in user 'ops' (wrong user or password); set them in "
     "FOREWARN_CLICKHOUSE as http(s)://user:password@host:port/database"),
    (DatabaseError("Code: 193. DB::Exception: Wrong password for user ops. (WRONG_PASSWORD)", code=193), SettingsError,
     "ClickHouse at https://ch.example:8443 refused to log in user 'ops' (wrong user or password); set them in "
     "FOREWARN_CLICKHOUSE as http(s)://user:password@host:port/database"),
    (DatabaseError("Code: 81. DB::Exception: Database shop does not exist. (UNKNOWN_DATABASE)", code=81), SettingsError,
     "ClickHouse at https://ch.example:8443 has no database 'shop'; create it, or name another at the end of "
     "FOREWARN_CLICKHOUSE"),
    (DatabaseError("Code: 497. DB::Exception: ops: Not enough privileges. (ACCESS_DENIED)", code=497), SettingsError,
     "ClickHouse at https://ch.example:8443 denies user 'ops' access to database 'shop'; grant it, or set another "
     "user in FOREWARN_CLICKHOUSE"),
    (DatabaseError("HTTP driver received HTTP status 404, server response: not found"), SettingsError,
     "https://ch.example:8443 answered HTTP status 404, not as a ClickHouse server does; check the host and port "
     "in FOREWARN_CLICKHOUSE (ClickHouse's HTTP port is 8123, or 8443 with https)"),
    (_network_failure(ConnectionRefusedError(111, "Connection refused")), StoreUnreachable,
     f"cannot reach ClickHouse at https://ch.example:8443 (connection refused); {UNREACHABLE_HINT}"),
    (_network_failure(socket.gaierror(-2, "Name or service not known")), StoreUnreachable,
     f"cannot reach ClickHouse at https://ch.example:8443 (unknown host); {UNREACHABLE_HINT}"),
    (_network_failure(TimeoutError("timed out")), StoreUnreachable,
     f"cannot reach ClickHouse at https://ch.example:8443 (no answer in time); {UNREACHABLE_HINT}"),
])
def test_a_clickhouse_failure_maps_to_one_line_naming_the_address_and_the_setting(failure, kind, line):
    said = store_failure(failure, ADDRESS)
    assert type(said) is kind and str(said) == line
    assert "s3cret" not in str(said)


def test_a_failure_that_is_not_about_reaching_clickhouse_is_left_alone():
    assert store_failure(DatabaseError("Code: 60. DB::Exception: Unknown table (UNKNOWN_TABLE)", code=60),
                         ADDRESS) is None
    assert store_failure(ValueError("a bug"), ADDRESS) is None
