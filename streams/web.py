"""`forewarn web`: the reps' queue and the operations room, a live page fed by the stream.

One process serves three pages and the JSON API they use:

* ``/tasks``: every customer's open or claimed case, one queue per team, most
  urgent first; a case opens a panel with everything needed to act, and a
  signed-in rep claims, releases and finishes it through ``task-updates``
  exactly as ``forewarn task`` does, seeing the worker's answer;
* ``/alerts``: the latest state of every alert, live, filterable; a roll-up
  lists the alerts it sums up;
* ``/``: the stack at a glance (lag, worker clocks, open alerts and cases,
  dead letters) and charts from the analysts' views in ClickHouse.

State. ``LiveState`` reads ``outreach-tasks``, ``alerts`` and
``task-updates-rejected`` from their beginning with one consumer outside any
group (every partition assigned), keeps each case's and alert's latest
version, and tells the page's event stream (``/api/events``, server-sent
events) of every change. So every web process shows the whole queue whichever
process serves a page, and a reload shows the same state.

Who may act. Reading is open to whoever reaches the address; acting needs a
rep signed in with a name and password from ``FOREWARN_WEB_ACCOUNTS`` (lines
``name:scrypt$…`` made by ``forewarn web --hash-password NAME``). A sign-in is
a cookie signed with a key kept in ``<data dir>/web/secret`` (0600; processes
on one data directory share it), lasting ``FOREWARN_WEB_SESSION_MINUTES`` and
only while the account exists with the password it signed in with; an
action's assignee is the signed-in name, never one the page sends. Actions
are POSTs that must carry the ``X-Forewarn: 1`` header, which a page of
another site cannot send; sign-in and sign-out must come from this site's
page (Origin); the cookie is ``SameSite=Strict``. Served on loopback, the
page answers only to loopback host names (no DNS rebinding).

ClickHouse. The charts read the analysts' views through a ClickHouse server
(``FOREWARN_CLICKHOUSE``) or through the query endpoint of the sink that owns
the chDB store; the web process never opens the chDB store itself (only one
process can, and that is the sink's).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streams import topics
from streams.kafka_security import kafka_client_config
from streams.settings import Settings, SettingsError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("web_static")
COOKIE = "forewarn_session"
ACTION_TIMEOUT_S = 15.0
OVERVIEW_CACHE_S = 3.0
# Each page's body (web_static/<page>.html) goes into one frame (web_static/frame.html): the head and navigation.
PAGES = {"/": ("overview", "Overview"), "/tasks": ("tasks", "Tasks"), "/alerts": ("alerts", "Alerts"),
         "/login": ("login", "Sign in")}
# Roll-up rules and the alerts they sum up: (member rule, whether an alert belongs to a roll-up).
ROLLUPS: dict[str, tuple[str, Callable[[dict, dict], bool]]] = {
    "sku_stockout_impact": ("out_of_stock_open_order", lambda member, rollup: bool(rollup.get("sku")) and (
        member.get("sku") == rollup["sku"]
        or rollup["sku"] in str((member.get("details") or {}).get("short_skus", "")).split(","))),
    "cart_loss_spike": ("cart_lost", lambda member, rollup: member.get("page") == rollup.get("page")),
}


# ---------------------------------------------------------------- accounts and sign-in


class AccountsError(SettingsError):
    """The accounts file has a line that is not `name:password hash`; the message names the line."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$<salt>$<hash>` for an accounts file line (scrypt, n=2**14, r=8, p=1)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_password(password: str, stored: str) -> bool:
    try:
        kind, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=2 ** 14, r=8, p=1,
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def load_accounts(path: Path | None) -> dict[str, str]:
    """name -> password hash from the accounts file; blank lines and # comments are skipped."""
    if path is None:
        return {}
    accounts = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, stored = text.partition(":")
        if not sep or not name.strip() or not stored.startswith("scrypt$") or stored.count("$") != 2:
            raise AccountsError(f"FOREWARN_WEB_ACCOUNTS={str(path)!r}, line {number}: expected `name:scrypt$…` "
                                f"(make one with `forewarn web --hash-password NAME`)")
        accounts[name.strip()] = stored
    return accounts


def signing_key(settings: Settings) -> bytes:
    """The key that signs sign-in cookies, shared by the web processes of one data directory (0600).

    It is written to a file of its own and linked into place whole, so a process
    starting at the same moment never reads a key half written.
    """
    path = settings.data_dir / "web" / "secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fresh = path.with_name(f"secret.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        try:
            os.link(fresh, path)  # fails if another process linked its key first: that one is used
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
    key = path.read_bytes()
    if len(key) < 32:
        raise SettingsError(f"the web page's signing key {path} is damaged ({len(key)} bytes); delete it and start "
                            f"again (every rep signs in again)")
    return key


def _account_mark(stored: str) -> str:
    """A short fingerprint of an account's password hash: a new password ends the account's sessions."""
    return hashlib.sha256(stored.encode()).hexdigest()[:16]


def session_cookie(key: bytes, name: str, expires_ms: int, stored: str = "") -> str:
    body = base64.urlsafe_b64encode(json.dumps([name, expires_ms, _account_mark(stored)]).encode()).decode()
    signature = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{signature}"


def session_name(key: bytes, cookie: str | None, now_ms: int, accounts: dict[str, str] | None = None) -> str | None:
    """The signed-in name a cookie carries, or None if it is missing, forged, expired or its account is gone.

    With `accounts`, the name must still have an account, with the password it signed in with.
    """
    if not cookie or "." not in cookie:
        return None
    body, signature = cookie.rsplit(".", 1)
    expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return None
    try:
        name, expires_ms, mark = json.loads(base64.urlsafe_b64decode(body.encode()))
    except (ValueError, TypeError):
        return None
    if not isinstance(name, str) or not isinstance(expires_ms, int) or expires_ms <= now_ms:
        return None
    if accounts is not None and (name not in accounts or mark != _account_mark(accounts[name])):
        return None
    return name


# ---------------------------------------------------------------- the state read from the topics


@dataclass
class Waiter:
    """An action waiting for the worker's answer (streams.tasks_cli.answer_to)."""

    update: dict
    resolve: Callable[[object], None]


class LiveState:
    """Each case's and alert's latest version, read from the topics by one consumer thread."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.tasks: dict[str, dict] = {}
        self.alerts: dict[str, dict] = {}
        self.rejections: deque[dict] = deque(maxlen=1000)
        self.ready = threading.Event()
        self.error: str | None = None
        self._listeners: list[Callable[[str, dict], None]] = []
        self._waiters: list[Waiter] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forewarn-web-state", daemon=True)

    def start(self) -> "LiveState":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def listen(self, listener: Callable[[str, dict], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._forget(listener)

    def _forget(self, listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def wait_for_answer(self, update: dict, resolve: Callable[[object], None]) -> Callable[[], None]:
        """Call `resolve(Answer)` when the worker answers `update`; returns a function that stops waiting."""
        waiter = Waiter(update, resolve)
        with self._lock:
            self._waiters.append(waiter)

        def stop() -> None:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return stop

    def snapshot(self) -> tuple[list[dict], list[dict]]:
        with self._lock:
            return list(self.tasks.values()), list(self.alerts.values())

    # -- the consumer thread -------------------------------------------------

    def _run(self) -> None:
        from confluent_kafka import Consumer

        from streams.produce import quiet_client_logger

        names = [self.settings.topic(spec.name)
                 for spec in (topics.OUTREACH_TASKS, topics.ALERTS, topics.TASK_UPDATES_REJECTED)]
        consumer = Consumer(kafka_client_config(self.bootstrap, {
            "group.id": f"forewarn-web-{secrets.token_hex(6)}", "enable.auto.commit": False,
            "enable.partition.eof": True, "logger": quiet_client_logger(),
        }))
        try:
            pending = self._assign(consumer, names)
            if pending is None:
                return
            self._consume(consumer, pending)
        except Exception as exc:  # noqa: BLE001 - shown on /readyz and the pages, logged once
            self.error = f"reading the topics failed: {exc}"
            log.exception("forewarn web: reading the topics failed")
        finally:
            consumer.close()

    def _assign(self, consumer, names: list[str]) -> set | None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        while not self._stop.is_set():
            metadata = consumer.list_topics(timeout=10)
            found = [metadata.topics.get(name) for name in names]
            if all(meta is not None and meta.error is None and meta.partitions for meta in found):
                break
            missing = [name for name, meta in zip(names, found) if meta is None or not meta.partitions]
            self.error = f"waiting for the topics {', '.join(missing)} at {self.bootstrap} (`forewarn topics create`)"
            self._stop.wait(2.0)
        else:
            return None
        self.error = None
        assignment = [TopicPartition(meta.topic, p, OFFSET_BEGINNING) for meta in found for p in meta.partitions]
        consumer.assign(assignment)
        return {(tp.topic, tp.partition) for tp in assignment}

    def _consume(self, consumer, pending: set) -> None:
        from confluent_kafka import KafkaError

        from schemas.codec import Codec, DecodeError

        codec = Codec(registry_url=self.settings.schema_registry, registry_config=self.settings.registry_config())
        while not self._stop.is_set():
            for message in consumer.consume(num_messages=500, timeout=0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard((message.topic(), message.partition()))
                        if not pending:
                            self.ready.set()
                    continue
                try:
                    schema_name, record = codec.decode(message.value())
                except DecodeError:
                    continue  # the worker's dead-letter handling is the place for those, not the page
                try:
                    self._apply(schema_name, record)
                except Exception:  # noqa: BLE001 - one bad record must not stop the page's updates
                    log.exception("forewarn web: could not show a %s record", schema_name)

    def _apply(self, schema_name: str, record: dict) -> None:
        from schemas.codec import record_to_json
        from streams.tasks_cli import answer_to

        kind = None
        with self._lock:
            if schema_name == topics.OUTREACH_TASKS.schema:
                known = self.tasks.get(record["task_id"])
                if known is None or record["updated_at"] >= known["updated_at"]:
                    self.tasks[record["task_id"]] = record
                    kind = "task"
            elif schema_name == topics.ALERTS.schema:
                self.alerts[record["alert_id"]] = record
                kind = "alert"
            elif schema_name == topics.TASK_UPDATES_REJECTED.schema:
                self.rejections.append(record)
            answered = [(w, a) for w in self._waiters if (a := answer_to(w.update, schema_name, record))]
            for waiter, _ in answered:
                self._waiters.remove(waiter)
            listeners = list(self._listeners) if kind and self.ready.is_set() else []
        for waiter, answer in answered:
            waiter.resolve(answer)
        if listeners:
            payload = task_json(record) if kind == "task" else record_to_json(topics.ALERTS.schema, record)
            for listener in listeners:
                try:
                    listener(kind, payload)
                except RuntimeError:  # its event loop has closed (the process is stopping)
                    self._forget(listener)

    @property
    def healthy(self) -> bool:
        """Caught up with the topics, still reading them, and no error."""
        return self.ready.is_set() and self._thread.is_alive() and self.error is None


# ---------------------------------------------------------------- JSON for the pages


def task_json(task: dict) -> dict:
    """A case for the API: the record's fields (timestamps ISO-8601), and `view`, the parsed case."""
    from schemas.codec import record_to_json
    from streams.task_view import structured

    record = record_to_json(topics.OUTREACH_TASKS.schema, task)
    view = structured(record)
    return dict(record, view={"customer": view["customer"], "problems": view["problems"]})


def tasks_json(tasks: list[dict], queue: str | None = None) -> list[dict]:
    from streams.tasks_cli import tasks_to_show

    return [task_json(task) for task in tasks_to_show(tasks, queue=queue)]


def alerts_json(alerts: list[dict], rule: str | None = None, status: str | None = None,
                audience: str | None = None) -> list[dict]:
    """The latest state of every alert, newest first, with each roll-up's member alert ids."""
    from schemas.codec import record_to_json

    chosen = [a for a in alerts if (rule is None or a["rule"] == rule) and (audience is None or a["audience"] == audience)
              and (status is None or a["status"] == status or (status == "open" and a["status"] == "updated"))]
    chosen.sort(key=lambda a: (a["detected_at"], a["alert_id"]), reverse=True)
    by_rule: dict[str, list[dict]] = {}
    if any(a["rule"] in ROLLUPS for a in chosen):
        wanted = {member_rule for member_rule, _ in ROLLUPS.values()}
        for alert in alerts:
            if alert["rule"] in wanted:
                by_rule.setdefault(alert["rule"], []).append(alert)
    out = []
    for alert in chosen:
        record = record_to_json(topics.ALERTS.schema, alert)
        if alert["rule"] in ROLLUPS:
            member_rule, belongs = ROLLUPS[alert["rule"]]
            record["members"] = sorted(m["alert_id"] for m in by_rule.get(member_rule, ()) if belongs(m, alert))
        out.append(record)
    return out


# ---------------------------------------------------------------- the overview


def _input_rates_sql() -> str:
    tables = {"orders": "order_events", "inventory": "stock_levels", "web": "web_events", "support": "support_events",
              "returns": "returns", "feedback": "feedback"}
    parts = [f"SELECT '{topic}' AS topic, toStartOfMinute(ts) AS minute, count() AS events FROM {table} "
             f"WHERE ts > (SELECT max(ts) FROM {table}) - INTERVAL 30 MINUTE GROUP BY minute"
             for topic, table in tables.items()]
    return "SELECT topic, minute, events FROM (" + " UNION ALL ".join(parts) + ") ORDER BY topic, minute"


# The analysts' questions the overview charts, each answered by one query on the views (README, For analysts).
CHARTS = {
    "events_per_minute": _input_rates_sql(),
    "complaints_per_category_hour": (
        "SELECT hour, category, sum(tickets) AS tickets FROM complaints_hourly "
        "WHERE hour > (SELECT max(hour) FROM complaints_hourly) - INTERVAL 24 HOUR "
        "GROUP BY hour, category ORDER BY hour, category"),
    "first_reply_by_channel": (
        "SELECT channel, tickets, answered, p50_wait_s, p90_wait_s FROM first_response_by_channel_daily "
        "WHERE day = (SELECT max(day) FROM first_response_by_channel_daily) ORDER BY channel"),
    "proactive_share": (
        "SELECT rule, sum(problems) AS problems, sum(proactive) AS proactive, "
        "round(proactive / problems, 3) AS proactive_share FROM proactive_share_daily "
        "GROUP BY rule ORDER BY rule"),
}


def store_reachable(settings: Settings) -> str | None:
    """None if the charts can be read; else why not (the web process never opens the chDB store itself)."""
    from sinks.clickhouse.query import _running_endpoint

    if settings.clickhouse or _running_endpoint(settings) is not None:
        return None
    return (f"the chDB store in {settings.data_dir} is read through its sink, which is not running "
            f"(`forewarn up`), or set FOREWARN_CLICKHOUSE")


def charts(settings: Settings) -> dict:
    from sinks.clickhouse.query import QueryError, run_query

    why = store_reachable(settings)
    out = {}
    for name, sql in CHARTS.items():
        chart = {"sql": sql, "columns": [], "rows": [], "error": why}
        if why is None:
            try:
                result = run_query(settings, sql, timeout=30, open_chdb=False)
                chart.update(columns=list(result.columns), rows=[list(map(_plain, row)) for row in result.rows])
            except (QueryError, SettingsError) as exc:
                chart["error"] = str(exc)
        out[name] = chart
    return out


def _plain(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN: no data
        return None
    return value


def live_numbers(tasks: list[dict], alerts: list[dict], now_ms: int) -> dict:
    """Open alerts per rule and open cases per queue (with the oldest's age), from the live state."""
    open_alerts: dict[str, int] = {}
    for alert in alerts:
        if alert["status"] in ("open", "updated"):
            open_alerts[alert["rule"]] = open_alerts.get(alert["rule"], 0) + 1
    queues: dict[str, dict] = {}
    for task in tasks:
        if task["status"] not in ("open", "claimed"):
            continue
        queue = queues.setdefault(task["queue"], {"open": 0, "claimed": 0, "oldest_age_s": 0})
        queue[task["status"]] += 1
        queue["oldest_age_s"] = max(queue["oldest_age_s"], max(0, now_ms - task["created_at"]) // 1000)
    return {"open_alerts_per_rule": dict(sorted(open_alerts.items())), "cases_per_queue": dict(sorted(queues.items()))}


def stack_numbers(settings: Settings, bootstrap: str) -> dict:
    """Lag of the workers and the sink, worker clocks against wall time, dead letters (streams.status)."""
    from streams.status import gather

    status = gather(settings, bootstrap)

    def group(lag) -> dict | None:
        if lag is None:
            return None
        return {"group": lag.group, "lag_per_topic": lag.per_topic, "members": lag.members, "state": lag.state}

    return {
        "healthy": status.healthy, "problems": status.problems,
        "workers": [{"name": w.name, "clock_behind_s": None if w.clock_ms is None else
                     round((status.wall_ms - w.clock_ms) / 1000, 1), "partitions": w.assigned,
                     "partitions_behind": w.behind, "dead_letters": w.dead_lettered, "reported_s_ago": round(w.age_s, 1)}
                    for w in status.workers],
        "worker_group": group(status.worker_group), "sink_group": group(status.sink_group),
        "sink_dead_letters": (status.sink or {}).get("dead_lettered"),
        "dead_letters": sum(w.dead_lettered for w in status.workers) + int((status.sink or {}).get("dead_lettered") or 0),
    }


# ---------------------------------------------------------------- the server


def make_app(settings: Settings, bootstrap: str, state: LiveState):
    from aiohttp import web

    from schemas.codec import Codec
    from streams.tasks_cli import ACTIONS, QUEUES, task_update

    accounts = load_accounts(settings.web_accounts)
    key = signing_key(settings)
    # Checked against when the name has no account, so an unknown name costs what a known one does.
    nobody = hash_password(secrets.token_hex(8))
    overview_lock = asyncio.Lock()
    loopback = settings.web_addr[0] in ("127.0.0.1", "::1", "localhost")
    codec = Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
    overview_cache: dict = {}
    rules = sorted({r for r in _rule_names()})

    def now_ms() -> int:
        return int(time.time() * 1000)

    def signed_in(request) -> str | None:
        return session_name(key, request.cookies.get(COOKIE), now_ms(), accounts)

    def from_this_site(request) -> bool:
        """A form post from this site's own page: its Origin, when the browser sends one, is this host."""
        if request.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
            return False
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"

    def problem(status: int, message: str, **extra):
        return web.json_response({"error": message, **extra}, status=status)

    frame = (STATIC_DIR / "frame.html").read_text()
    pages = {path: frame.replace("{title}", title).replace("{page}", name)
             .replace("{main}", (STATIC_DIR / f"{name}.html").read_text().rstrip("\n"))
             for path, (name, title) in PAGES.items()}

    async def page(request):
        return web.Response(text=pages[request.path], content_type="text/html", headers={"Cache-Control": "no-store"})

    async def me(request):
        return web.json_response({"name": signed_in(request), "accounts": bool(accounts),
                                  "queues": list(QUEUES), "rules": rules})

    async def login(request):
        if not from_this_site(request):
            return problem(403, "sign in from Forewarn's own sign-in page")
        form = await request.post()
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        stored = accounts.get(name)
        # The hash is worked out whether or not the name exists, so timing does not tell names apart.
        ok = await asyncio.get_running_loop().run_in_executor(None, check_password, password, stored or nobody)
        if stored is None or not ok:
            raise web.HTTPFound("/login?failed=1")
        response = web.HTTPFound(_local_path(str(form.get("next") or "")) or "/tasks")
        expires = now_ms() + settings.web_session_minutes * 60_000
        response.set_cookie(COOKIE, session_cookie(key, name, expires, stored), max_age=settings.web_session_minutes * 60,
                            httponly=True, samesite="Strict", path="/")
        raise response

    async def logout(request):
        if not from_this_site(request):
            return problem(403, "sign out from Forewarn's own page")
        response = web.HTTPFound("/")
        response.del_cookie(COOKIE, path="/")
        raise response

    def not_ready():
        return None if state.healthy else problem(503, state.error or "still reading the topics; try again shortly")

    async def api_tasks(request):
        if (unready := not_ready()) is not None:
            return unready
        queue = request.query.get("queue")
        if queue is not None and queue not in QUEUES:
            return problem(400, f"queue {queue!r} is not a queue; expected one of {', '.join(QUEUES)}")
        tasks, _ = state.snapshot()
        return web.json_response(tasks_json(tasks, queue=queue))

    async def api_task(request):
        tasks, _ = state.snapshot()
        task = next((t for t in tasks if t["task_id"] == request.match_info["task_id"]), None)
        if task is None:
            return problem(404, f"no task {request.match_info['task_id']}")
        return web.json_response(task_json(task))

    async def api_alerts(request):
        if (unready := not_ready()) is not None:
            return unready
        query = request.query
        for name, allowed in (("status", ("open", "updated", "resolved")), ("rule", rules)):
            if query.get(name) is not None and query[name] not in allowed:
                return problem(400, f"{name} {query[name]!r} is not one of {', '.join(allowed)}")
        _, alerts = state.snapshot()
        return web.json_response(alerts_json(alerts, rule=query.get("rule"), status=query.get("status"),
                                             audience=query.get("audience")))

    async def api_act(request):
        task_id, action = request.match_info["task_id"], request.match_info["action"]
        if request.headers.get("X-Forewarn") != "1":
            return problem(403, "actions come from Forewarn's own page (the X-Forewarn header is missing)")
        who = signed_in(request)
        if who is None:
            return problem(401, "sign in to claim, release or finish a case")
        if action not in ACTIONS:
            return problem(400, f"action {action!r}: expected one of {', '.join(ACTIONS)}")
        update = task_update(task_id, action, who, now_ms=now_ms())
        loop = asyncio.get_running_loop()
        answered: asyncio.Future = loop.create_future()
        stop = state.wait_for_answer(update, lambda a: loop.call_soon_threadsafe(
            lambda: answered.done() or answered.set_result(a)))
        try:
            from streams.tasks_cli import send_update

            failure = await loop.run_in_executor(None, send_update, settings, bootstrap, codec, update)
            if failure is not None:
                return problem(502, f"the update was not delivered: {failure}")
            answer = await asyncio.wait_for(answered, ACTION_TIMEOUT_S)
        except asyncio.TimeoutError:
            return problem(504, f"nothing answered within {ACTION_TIMEOUT_S:g} seconds; the update was sent, but "
                                f"a worker must be running to apply it")
        finally:
            stop()
        if answer.applied:
            return web.json_response({"applied": True, "task": task_json(answer.record)})
        rejection = answer.record
        return web.json_response({"applied": False, "reason": rejection["reason"], "message": rejection["message"]},
                                 status=409)

    async def api_overview(request):
        async with overview_lock:  # one refresh at a time, however many pages ask
            cached = overview_cache.get("value")
            if cached is None or time.monotonic() - overview_cache["at"] > OVERVIEW_CACHE_S:
                loop = asyncio.get_running_loop()
                stack = await loop.run_in_executor(None, stack_numbers, settings, bootstrap)
                drawn = await loop.run_in_executor(None, charts, settings)
                cached = {"stack": stack, "charts": drawn}
                overview_cache.update(value=cached, at=time.monotonic())
        tasks, alerts = state.snapshot()
        now = now_ms()
        return web.json_response(dict(cached, wall_ms=now, **live_numbers(tasks, alerts, now)))

    async def events(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        overflow = ("overflow", None)

        def put(item) -> None:
            if queue.full():
                queue.get_nowait()
                item = overflow
            queue.put_nowait(item)

        def push(kind: str, payload: dict) -> None:
            loop.call_soon_threadsafe(put, (kind, payload))

        forget = state.listen(push)
        try:
            # A page fetches its state again at every hello, so nothing between its fetch and this
            # stream, or lost while it reconnected, stays missing.
            await response.write(b"event: hello\ndata: {}\n\n")
            while True:
                try:
                    kind, payload = await asyncio.wait_for(queue.get(), 15)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if kind == "overflow":
                    break  # a client too slow for the stream: it reconnects and fetches the state again
                data = json.dumps(payload, ensure_ascii=False)
                await response.write(f"event: {kind}\ndata: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            forget()
        return response

    async def healthz(request):
        return web.Response(text="ok\n")

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from streams.metrics import new_registry

    def describe_metrics(out) -> None:
        tasks, alerts = state.snapshot()
        numbers = live_numbers(tasks, alerts, now_ms())
        out.gauge("forewarn_web_open_alerts", "Alerts open now (opened or updated, not resolved), per rule, as "
                  "this web process has read them.", numbers["open_alerts_per_rule"], ("rule",))
        out.gauge("forewarn_web_open_cases", "Outreach cases open or claimed now, per queue.",
                  {q: n["open"] + n["claimed"] for q, n in numbers["cases_per_queue"].items()}, ("queue",))
        out.gauge("forewarn_web_ready", "1 once this process has read its topics to their end, else 0.",
                  1 if state.healthy else 0)

    registry = new_registry(describe_metrics)

    async def metrics(request):
        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def readyz(request):
        if state.healthy:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=(state.error or "reading the topics") + "\n")

    @web.middleware
    async def this_host_only(request, handler):
        # Served on loopback, the page answers only to loopback names: a page elsewhere whose name
        # resolves to 127.0.0.1 (DNS rebinding) cannot read the customers' data through the browser.
        if loopback and (request.host or "").rsplit(":", 1)[0].strip("[]") not in ("127.0.0.1", "localhost", "::1"):
            return problem(421, f"this page answers to the address it serves, not to {request.host!r}")
        return await handler(request)

    @web.middleware
    async def no_traceback(request, handler):
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:  # noqa: BLE001 - one line for the page, the details in the log
            log.exception("forewarn web: %s %s failed", request.method, request.path)
            return problem(500, "the server failed to answer; its log says why")

    app = web.Application(middlewares=[this_host_only, no_traceback])
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_static("/static/", STATIC_DIR, show_index=False)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/tasks", api_tasks)
    app.router.add_get("/api/tasks/{task_id}", api_task)
    app.router.add_post("/api/tasks/{task_id}/{action}", api_act)
    app.router.add_get("/api/alerts", api_alerts)
    app.router.add_get("/api/overview", api_overview)
    app.router.add_get("/api/events", events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def _local_path(target: str) -> str | None:
    """`target` if it is a path on this site (never another site's address, such as //host or /\\host)."""
    if target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target \
            and not any(c.isspace() or ord(c) < 32 for c in target):
        return target
    return None


def _rule_names() -> list[str]:
    from streams.rulebook import RULES

    return [rule.name for rule in RULES]


def url_of(settings: Settings) -> str:
    host, port = settings.web_addr
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def check_address_free(settings: Settings) -> None:
    """SettingsError naming FOREWARN_WEB_ADDR when something already listens there (checked before starting)."""
    host, port = settings.web_addr
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SettingsError(f"FOREWARN_WEB_ADDR={host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise SettingsError(f"FOREWARN_WEB_ADDR={host}:{port}: cannot listen there ({exc.strerror}); set "
                                f"another address (or `forewarn up --no-web`)") from None


def serve(settings: Settings, bootstrap: str) -> int:
    """Run the web process until interrupted; 2 (one line) if its address is taken or its settings are bad."""
    from aiohttp import web

    state = LiveState(settings, bootstrap).start()
    try:
        app = make_app(settings, bootstrap, state)
        host, port = settings.web_addr

        async def run() -> None:
            # Open event streams end when the process stops; they are not waited for.
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                raise SettingsError(f"FOREWARN_WEB_ADDR={host}:{port}: cannot listen there ({exc.strerror}); "
                                    f"choose another address") from None
            print(f"forewarn web: serving {url_of(settings)} (Kafka at {bootstrap})", flush=True)
            stopped = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stopped.set)
            try:
                await stopped.wait()
            finally:
                await runner.cleanup()

        asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    finally:
        state.stop()
    return 0
