"""`forewarn notify`: every alert message delivered to where people already look (Alertmanager, webhooks).

Configuration. One file (``FOREWARN_NOTIFY_CONFIG``, YAML or TOML by its
extension) names the destinations and the routes that pick, by audience, rule
and severity, which destinations get an alert. ``FOREWARN_ALERTMANAGER_URL``
and ``FOREWARN_WEBHOOK_URL`` each add one destination that gets every alert,
without a file. The file is checked whole at start; a problem is reported with
its line (``load_config``).

Delivery. One consumer in its own group (``<prefix>forewarn-notify``) reads
``alerts``. Each destination has its own queue and its own task, working
through its queue in offset order, so messages about one problem (one dedup
key, one partition) reach a destination in the order they were written, and a
slow or dead destination holds back nobody else. A failed delivery (no
connection, a timeout, a 5xx, a 429) is retried with exponential backoff
without end: the notifier never drops an alert message. A destination that
refuses one for good (another 4xx, or a redirect) has it dead-lettered to ``forewarn.dlq``,
with headers naming the destination, its status and its answer.

At least once. An offset is committed only when every destination routed a
message has delivered it (or dead-lettered it), and every earlier message of
the partition too (``OffsetTracker``). A crash re-delivers what was not yet
committed: receivers may see a message twice after a crash (the
``X-Forewarn-Message`` header names it, so they can tell), never not at all.

Alertmanager. An open or updated alert is posted to ``/api/v2/alerts`` with
``endsAt`` some minutes ahead and posted again before that while it stays
open; a resolved one is posted with ``endsAt`` now. When an update changes the
alert's labels (its severity), the old label set is resolved in the same post,
so Alertmanager is never left holding a stale copy.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from streams.settings import Settings, SettingsError

log = logging.getLogger(__name__)

GROUP = "forewarn-notify"
SIGNATURE_HEADER = "X-Forewarn-Signature"
TIMESTAMP_HEADER = "X-Forewarn-Timestamp"
MESSAGE_HEADER = "X-Forewarn-Message"
# Dead-letter headers besides sinks.dlq's: which destination refused, and how.
DLQ_DESTINATION = "forewarn.notify.destination"
DLQ_STATUS = "forewarn.notify.status"
DLQ_ANSWER = "forewarn.notify.answer"
# How much of a refusing destination's answer is kept in the dead letter's headers.
ANSWER_LIMIT = 1000
# Messages queued for delivery before reading pauses (a dead destination's backlog waits in Kafka beyond this).
MAX_QUEUED = 50_000

KINDS = ("alertmanager", "webhook")
FORMATS = ("json", "slack")
AUDIENCES = ("cs", "ops", "it", "product")
SEVERITIES = ("info", "warning", "critical")
# The alert's fields that name what it is about: each one set becomes an Alertmanager label.
ENTITY_FIELDS = ("customer_id", "order_id", "sku", "ticket_id", "session_id", "page", "category")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
LABEL_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NotifyConfigError(SettingsError):
    """The notification configuration is unusable; the message names the file, the line and the field."""


# ---------------------------------------------------------------------------------------------- the configuration
@dataclass(frozen=True)
class Destination:
    name: str
    kind: str
    url: str = field(repr=False)
    format: str = "json"
    secret: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    labels: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 10.0
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    resend_s: float = 60.0
    ends_after_s: float = 300.0

    @property
    def shown(self) -> str:
        """The destination for messages and logs: its kind and host, never a path, query or credentials
        (a Slack webhook's path is its secret)."""
        url = urlsplit(self.url)
        host = f"[{url.hostname}]" if ":" in (url.hostname or "") else url.hostname
        port = f":{url.port}" if url.port else ""
        return f"{self.name} ({self.kind}, {url.scheme}://{host}{port})"


@dataclass(frozen=True)
class Route:
    to: tuple[str, ...]
    audiences: frozenset[str] | None = None
    rules: frozenset[str] | None = None
    severities: frozenset[str] | None = None

    def matches(self, alert: dict) -> bool:
        return ((self.audiences is None or alert["audience"] in self.audiences)
                and (self.rules is None or alert["rule"] in self.rules)
                and (self.severities is None or alert["severity"] in self.severities))


@dataclass(frozen=True)
class NotifyConfig:
    destinations: dict[str, Destination]
    routes: tuple[Route, ...]
    web_url: str | None = None

    def destinations_for(self, alert: dict) -> list[str]:
        """Every destination of every route the alert matches, each once, in the order first named."""
        chosen: dict[str, None] = {}
        for route in self.routes:
            if route.matches(alert):
                chosen.update(dict.fromkeys(route.to))
        return list(chosen)


class _LineDict(dict):
    """A mapping read from the file, knowing the line of each of its keys."""

    line = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}


class _LineList(list):
    line = 0

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.lines: dict[int, int] = {}


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        loader.flatten_mapping(node)
        result = _LineDict()
        result.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise NotifyConfigError(f"line {key_node.start_mark.line + 1}: keys are names, not {key!r}")
            if key in result:
                raise NotifyConfigError(f"line {key_node.start_mark.line + 1}: {key} is given twice "
                                        f"(first on line {result.lines[key]})")
            result[key] = loader.construct_object(value_node, deep=True)
            result.lines[key] = key_node.start_mark.line + 1
        return result

    def sequence(loader, node):
        result = _LineList()
        result.line = node.start_mark.line + 1
        for i, item in enumerate(node.value):
            result.append(loader.construct_object(item, deep=True))
            result.lines[i] = item.start_mark.line + 1
        return result

    Loader.add_constructor("tag:yaml.org,2002:map", mapping)
    Loader.add_constructor("tag:yaml.org,2002:seq", sequence)
    return Loader


def _read_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise NotifyConfigError(f"{line}not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise NotifyConfigError(f"not valid YAML: {exc}") from None


def _read_toml(text: str) -> Any:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says where: "... (at line 3, column 7)"
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise NotifyConfigError(f"{'line ' + found.group(1) + ': ' if found else ''}not valid TOML: {reason}") \
            from None
    return _toml_with_lines(data, text.splitlines())


def _toml_with_lines(data: dict, lines: list[str]) -> _LineDict:
    """tomllib keeps no positions: find each key's line in the text, by the table it sits in.

    Good for the shapes this file takes (top-level keys, ``[[destinations]]``,
    ``[[routes]]`` and their sub-tables); anything else falls back to the line
    of the nearest table found.
    """
    header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
    assignment = re.compile(r"^\s*\"?([A-Za-z0-9_-]+)\"?\s*=")
    # (table path as text, array index or None) -> {key: line}, plus the header line of each table
    tables: dict[tuple[str, int | None], dict[str, int]] = {("", None): {}}
    starts: dict[tuple[str, int | None], int] = {("", None): 1}
    counts: dict[str, int] = collections.Counter()
    current: tuple[str, int | None] = ("", None)
    for number, text in enumerate(lines, 1):
        found = header.match(text)
        if found:
            name = found.group(2).replace('"', "").strip()
            if found.group(1) == "[[":
                current = (name, counts[name])
                counts[name] += 1
            else:
                # a sub-table of the latest element of an array of tables, or a plain table
                parent = name.rsplit(".", 1)[0] if "." in name else None
                index = counts[parent] - 1 if parent in counts else None
                current = (name, index)
            tables.setdefault(current, {})
            starts[current] = number
            continue
        found = assignment.match(text)
        if found:
            tables.setdefault(current, {}).setdefault(found.group(1), number)

    def convert(value: Any, table: str, index: int | None, fallback: int) -> Any:
        if isinstance(value, dict):
            keyed = tables.get((table, index), {})
            result = _LineDict()
            result.line = starts.get((table, index), fallback)
            for key, item in value.items():
                line = keyed.get(key, starts.get((f"{table}.{key}".lstrip("."), index), result.line))
                sub = f"{table}.{key}".lstrip(".")
                result[key] = convert(item, sub, index, line)
                result.lines[key] = line
            return result
        if isinstance(value, list):
            result = _LineList()
            result.line = fallback
            for i, item in enumerate(value):
                line = starts.get((table, i), fallback) if isinstance(item, dict) else fallback
                result.append(convert(item, table, i if (table, i) in starts else index, line))
                result.lines[i] = line
            return result
        return value

    return convert(data, "", None, 1)


class _Reader:
    """Checks one mapping of the file: each field's type and range, each problem with its line and path."""

    def __init__(self, data: Any, path: str, line: int) -> None:
        if not isinstance(data, dict):
            raise NotifyConfigError(f"line {line}: {path or 'the file'}: expected a mapping of fields, "
                                    f"got {_kind_of(data)}")
        self.data, self.path, self.line = data, path, getattr(data, "line", line) or line
        self.used: set[str] = set()

    def line_of(self, key: str) -> int:
        return getattr(self.data, "lines", {}).get(key, self.line)

    def fail(self, key: str, expected: str, got: Any = None, show: bool = True) -> NotifyConfigError:
        where = f"{self.path}.{key}" if self.path else key
        told = f", got {_shown(got)}" if show and got is not None else ""
        return NotifyConfigError(f"line {self.line_of(key)}: {where}: expected {expected}{told}")

    def take(self, key: str, default: Any = None, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                where = f"{self.path}: " if self.path else ""
                raise NotifyConfigError(f"line {self.line}: {where}{key} is missing")
            return default
        return self.data[key]

    def text(self, key: str, default: str | None = None, required: bool = False, secret: bool = False) -> str | None:
        value = self.take(key, default, required)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail(key, "a non-empty string", value, show=not secret)
        return value

    def number(self, key: str, default: float, low: float = 0.0, high: float = 86_400.0) -> float:
        value = self.take(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
            raise self.fail(key, f"a number of seconds above {low:g}, up to {high:g}", value)
        return float(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.take(key, default)
        if value not in choices:
            raise self.fail(key, f"one of {', '.join(choices)}", value)
        return value

    def url(self, key: str, required: bool = False) -> str | None:
        value = self.text(key, required=required, secret=True)
        if value is None:
            return None
        if not _is_http_url(value):
            raise self.fail(key, "an http(s)://host[:port][/path] URL", value, show=False)
        return value

    def strings(self, key: str, choices: tuple[str, ...] | None = None, what: str = "a string") -> list[str] | None:
        """One string or a list of strings (each one of ``choices`` when given); None when absent."""
        value = self.take(key)
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        expected = f"{what} or a list of them" + (f" (one of {', '.join(choices)})" if choices else "")
        if not isinstance(items, list) or not items:
            raise self.fail(key, expected, value)
        for item in items:
            if not isinstance(item, str) or (choices is not None and item not in choices):
                raise self.fail(key, expected, item)
        return list(items)

    def string_map(self, key: str, key_pattern: re.Pattern | None = None, what: str = "names") -> dict[str, str]:
        value = self.take(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"a mapping of {what} to strings", value)
        for name, item in value.items():
            if key_pattern is not None and not key_pattern.match(str(name)):
                raise NotifyConfigError(f"line {getattr(value, 'lines', {}).get(name, self.line_of(key))}: "
                                        f"{self.path}.{key}.{name}: not a valid {what[:-1]}")
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise NotifyConfigError(f"line {getattr(value, 'lines', {}).get(name, self.line_of(key))}: "
                                        f"{self.path}.{key}.{name}: expected a string")
        return {str(k): str(v) for k, v in value.items()}

    def finish(self, allowed: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in self.used:
                where = f"{self.path}: " if self.path else ""
                raise NotifyConfigError(f"line {self.line_of(key)}: {where}unknown field {key!r}; expected one of "
                                        f"{', '.join(allowed)}")


DESTINATION_FIELDS = ("name", "type", "url", "format", "secret", "secret_env", "headers", "labels",
                      "timeout_seconds", "retry_min_seconds", "retry_max_seconds", "resend_seconds",
                      "ends_after_seconds")
MATCH_FIELDS = ("audience", "rule", "severity")
ROUTE_FIELDS = ("audience", "rule", "severity", "match", "to")
TOP_FIELDS = ("web_url", "destinations", "routes")


def _destination(data: Any, path: str, line: int, env: dict[str, str]) -> Destination:
    r = _Reader(data, path, line)
    name = r.text("name", required=True)
    if not NAME_PATTERN.match(name):
        raise r.fail("name", "up to 100 letters, digits, '.', '_' or '-'", name)
    kind = r.choice("type", None, KINDS) if "type" in r.data else None
    if kind is None:
        raise NotifyConfigError(f"line {r.line}: {path}: type is missing (one of {', '.join(KINDS)})")
    url = r.url("url", required=True)
    secret = r.text("secret", secret=True)
    secret_env = r.text("secret_env")
    if secret_env is not None:
        if secret is not None:
            raise r.fail("secret_env", "either secret or secret_env, not both", show=False)
        if not ENV_NAME_PATTERN.match(secret_env):
            raise r.fail("secret_env", "the name of an environment variable", secret_env)
        secret = env.get(secret_env)
        if not secret:
            raise r.fail("secret_env", f"a variable that is set, but {secret_env} is unset or empty", show=False)
    fmt = r.choice("format", "json", FORMATS)
    headers = r.string_map("headers", re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"), "header names")
    labels = r.string_map("labels", LABEL_PATTERN, "label names")
    timeout_s = r.number("timeout_seconds", 10.0, high=600.0)
    retry_min = r.number("retry_min_seconds", 0.5, high=3600.0)
    retry_max = r.number("retry_max_seconds", 30.0, high=3600.0)
    if retry_max < retry_min:
        raise r.fail("retry_max_seconds", f"at least retry_min_seconds ({retry_min:g})", retry_max)
    resend = r.number("resend_seconds", 60.0)
    ends_after = r.number("ends_after_seconds", 300.0)
    if ends_after <= resend:
        raise r.fail("ends_after_seconds", f"more than resend_seconds ({resend:g}), or an open alert would end "
                                           f"in Alertmanager before it is posted again", ends_after)
    if kind == "alertmanager":
        for key in ("format", "secret", "secret_env"):
            if key in r.data:
                raise r.fail(key, "no such field on an alertmanager destination (webhooks only)", show=False)
    else:
        for key in ("labels", "resend_seconds", "ends_after_seconds"):
            if key in r.data:
                raise r.fail(key, "no such field on a webhook destination (alertmanager only)", show=False)
    r.finish(DESTINATION_FIELDS)
    return Destination(name=name, kind=kind, url=url, format=fmt, secret=secret, headers=tuple(headers.items()),
                       labels=tuple(labels.items()), timeout_s=timeout_s, retry_min_s=retry_min,
                       retry_max_s=retry_max, resend_s=resend, ends_after_s=ends_after)


def _route(data: Any, path: str, line: int, names: dict[str, Destination], rules: tuple[str, ...]) -> Route:
    r = _Reader(data, path, line)
    # The conditions stand in the route itself, or grouped under `match:` as Alertmanager's routes have them.
    m = r
    if "match" in r.data:
        m = _Reader(r.take("match"), f"{path}.match", r.line_of("match"))
        for key in MATCH_FIELDS:
            if key in r.data:
                raise r.fail(key, f"it under match, or match without it, not both", show=False)
    audiences = m.strings("audience", AUDIENCES, "an audience")
    chosen_rules = m.strings("rule", rules, "a rule")
    severities = m.strings("severity", SEVERITIES, "a severity")
    if m is not r:
        m.finish(MATCH_FIELDS)
    to = r.strings("to", what="a destination name")
    if to is None:
        raise NotifyConfigError(f"line {r.line}: {path}: to is missing (the destinations to send to)")
    for name in to:
        if name not in names:
            raise r.fail("to", f"destination names given under destinations ({', '.join(names) or 'none'})", name)
    r.finish(ROUTE_FIELDS)
    as_set = lambda items: frozenset(items) if items is not None else None  # noqa: E731
    return Route(to=tuple(dict.fromkeys(to)), audiences=as_set(audiences), rules=as_set(chosen_rules),
                 severities=as_set(severities))


def parse_config(text: str, kind: str, env: dict[str, str] | None = None) -> NotifyConfig:
    """The configuration in ``text`` (``kind`` "yaml" or "toml"); NotifyConfigError naming the line otherwise."""
    from streams.rulebook import RULES

    env = dict(os.environ if env is None else env)
    data = _read_yaml(text) if kind == "yaml" else _read_toml(text)
    if data is None:
        data = _LineDict()
    top = _Reader(data, "", 1)
    web_url = top.url("web_url")
    raw_destinations = top.take("destinations", required=True)
    if not isinstance(raw_destinations, list) or not raw_destinations:
        raise top.fail("destinations", "a list of destinations", raw_destinations)
    destinations: dict[str, Destination] = {}
    for i, item in enumerate(raw_destinations):
        line = getattr(raw_destinations, "lines", {}).get(i, top.line_of("destinations"))
        destination = _destination(item, f"destinations[{i}]", line, env)
        if destination.name in destinations:
            raise NotifyConfigError(f"line {line}: destinations[{i}].name: {destination.name!r} is used twice")
        destinations[destination.name] = destination
    raw_routes = top.take("routes")
    rules = tuple(rule.name for rule in RULES)
    if raw_routes is None:
        routes = (Route(to=tuple(destinations)),)  # no routes: every destination gets every alert
    else:
        if not isinstance(raw_routes, list) or not raw_routes:
            raise top.fail("routes", "a list of routes", raw_routes)
        routes = tuple(_route(item, f"routes[{i}]", getattr(raw_routes, "lines", {}).get(i, top.line_of("routes")),
                              destinations, rules) for i, item in enumerate(raw_routes))
    top.finish(TOP_FIELDS)
    return NotifyConfig(destinations=destinations, routes=routes, web_url=web_url)


def load_config(path: Path, env: dict[str, str] | None = None) -> NotifyConfig:
    """The file ``FOREWARN_NOTIFY_CONFIG`` names: YAML (.yaml, .yml) or TOML (.toml)."""
    suffix = path.suffix.lower()
    kind = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}.get(suffix)
    where = f"FOREWARN_NOTIFY_CONFIG={str(path)!r}"
    if kind is None:
        raise NotifyConfigError(f"{where}: expected a .yaml, .yml or .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotifyConfigError(f"{where}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return parse_config(text, kind, env)
    except NotifyConfigError as exc:
        raise NotifyConfigError(f"{where}: {exc}") from None


def config_from_settings(settings: Settings, env: dict[str, str] | None = None) -> NotifyConfig | None:
    """Every destination the settings configure (the file, then the two simple URLs); None when there is none."""
    config = load_config(settings.notify_config, env) if settings.notify_config else None
    destinations = dict(config.destinations) if config else {}
    routes = list(config.routes) if config else []
    simple = []
    if settings.alertmanager_url:
        simple.append(Destination(name="alertmanager", kind="alertmanager", url=settings.alertmanager_url))
    if settings.webhook_url:
        simple.append(Destination(name="webhook", kind="webhook", url=settings.webhook_url,
                                  format=settings.webhook_format, secret=settings.webhook_secret))
    for destination in simple:
        if destination.name in destinations:
            variable = f"FOREWARN_{destination.name.upper()}_URL"
            raise SettingsError(f"{variable} adds a destination named {destination.name!r}, but "
                                f"FOREWARN_NOTIFY_CONFIG names one so too; rename that one or unset {variable}")
        destinations[destination.name] = destination
        routes.append(Route(to=(destination.name,)))
    if not destinations:
        return None
    web_url = (config.web_url if config and config.web_url else None) or settings.web_url
    return NotifyConfig(destinations=destinations, routes=tuple(routes), web_url=web_url)


def _is_http_url(value: str) -> bool:
    try:
        url = urlsplit(value.strip())
        port = url.port
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname) and port != 0 \
        and not any(c.isspace() for c in value.strip())


def _kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string"}.get(
        dict if isinstance(value, dict) else list if isinstance(value, list) else type(value), type(value).__name__)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


# ---------------------------------------------------------------------------------------------- what is sent
def iso_ms(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def alert_link(web_url: str | None, alert: dict) -> str | None:
    """The alert on the live page: its rule's filter on /alerts, its row as the fragment."""
    if not web_url:
        return None
    base = web_url if web_url.endswith("/") else web_url + "/"
    return f"{base}alerts?rule={quote(alert['rule'])}#alert-{quote(alert['alert_id'])}"


def alertmanager_labels(alert: dict, destination: Destination) -> dict[str, str]:
    labels = dict(destination.labels)
    labels.update(alertname=alert["rule"], rule=alert["rule"], audience=alert["audience"],
                  severity=alert["severity"], dedup_key=alert["dedup_key"])
    for name in ENTITY_FIELDS:
        if alert.get(name):
            labels[name] = str(alert[name])
    return labels


def alertmanager_alert(alert: dict, destination: Destination, link: str | None, now_ms: int,
                       labels: dict[str, str] | None = None) -> dict:
    """One alert as Alertmanager's v2 API takes it: open until ends_after_seconds from now, or resolved now."""
    resolved = alert["status"] == "resolved"
    annotations = {"title": alert["title"], "summary": alert["summary"], "alert_id": alert["alert_id"],
                   "status": alert["status"]}
    if link:
        annotations["link"] = link
    started = min(alert.get("event_ts") or now_ms, now_ms)
    body = {
        "labels": labels or alertmanager_labels(alert, destination),
        "annotations": annotations,
        "startsAt": iso_ms(started),
        "endsAt": iso_ms(now_ms if resolved else now_ms + destination.ends_after_s * 1000),
    }
    if link:
        body["generatorURL"] = link
    return body


def alert_json(alert: dict, link: str | None, sent_at_ms: int | None = None) -> dict:
    """The webhook's JSON body: the alert record as `forewarn alerts --json` prints it, its link, and when
    this request was sent."""
    from schemas.codec import record_to_json
    from streams import topics

    body = record_to_json(topics.ALERTS.schema, alert)
    body["link"] = link
    if sent_at_ms is not None:
        body["sent_at"] = iso_ms(sent_at_ms)
    return body


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


SLACK_MARK = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}


def slack_body(alert: dict, link: str | None) -> dict:
    """A body Slack's incoming webhooks take (and Mattermost's, which read the same fields)."""
    state = {"open": "opened", "updated": "updated", "resolved": "resolved"}[alert["status"]]
    mark = ":white_check_mark:" if alert["status"] == "resolved" else SLACK_MARK[alert["severity"]]
    title = _slack_escape(alert["title"])
    headline = f"{mark} *{title}* ({alert['severity']}, {state})"
    text = f"{headline}\n{_slack_escape(alert['summary'])}"
    context = f"rule `{alert['rule']}` · audience `{alert['audience']}` · alert `{alert['alert_id']}`"
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                          {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}]
    if link:
        blocks[0]["text"]["text"] += f"\n<{link}|Open in Forewarn>"
    return {"text": f"[{alert['severity']}] {alert['title']} ({state})", "blocks": blocks}


def webhook_body(alert: dict, destination: Destination, link: str | None, sent_at_ms: int | None = None) -> bytes:
    body = slack_body(alert, link) if destination.format == "slack" else alert_json(alert, link, sent_at_ms)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of the raw body, keyed by the shared secret (as GitHub signs its
    webhooks). The JSON body carries ``sent_at`` under the signature, so a receiver can refuse a replay."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


# ---------------------------------------------------------------------------------------------- delivery
class _Message:
    """One message of the alerts topic on its way: the destinations still to finish it."""

    __slots__ = ("partition", "offset", "waiting", "revoked", "read_at")

    def __init__(self, partition: int, offset: int, waiting: set[str]) -> None:
        self.partition, self.offset, self.waiting = partition, offset, waiting
        self.revoked = False
        self.read_at = time.monotonic()


class OffsetTracker:
    """Which messages every destination has finished; per partition, the offset that may be committed.

    The committable offset is the first message some destination has not
    finished, or the one after the last read when all are: never past a message
    still to deliver, whatever came after it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[int, collections.deque] = {}
        self._next: dict[int, int] = {}

    def read(self, partition: int, offset: int, destinations: list[str]) -> _Message:
        message = _Message(partition, offset, set(destinations))
        with self._lock:
            if destinations:
                self._in_flight.setdefault(partition, collections.deque()).append(message)
            self._next[partition] = offset + 1
        return message

    def finish(self, message: _Message, destination: str) -> None:
        with self._lock:
            message.waiting.discard(destination)

    def committable(self) -> dict[int, int]:
        with self._lock:
            out = {}
            for partition, after_last in self._next.items():
                queue = self._in_flight.get(partition)
                while queue and not queue[0].waiting:
                    queue.popleft()
                out[partition] = queue[0].offset if queue else after_last
            return out

    def drop(self, partitions: set[int]) -> None:
        """Partitions taken away: what is still queued of them is left to their next owner."""
        with self._lock:
            for partition in partitions:
                for message in self._in_flight.pop(partition, ()):
                    message.revoked = True
                self._next.pop(partition, None)


class Refused(Exception):
    """The destination refused the alert for good (a 4xx other than 429, or a redirect, which is not followed)."""

    def __init__(self, status: int, answer: str) -> None:
        super().__init__(f"answered {status}")
        self.status, self.answer = status, answer


class Retry(Exception):
    """The delivery failed in a way worth retrying: no connection, a timeout, a 5xx or a 429."""

    def __init__(self, reason: str, text: str, wait_s: float | None = None) -> None:
        super().__init__(text)
        self.reason, self.wait_s = reason, wait_s


@dataclass
class NotifyStats:
    """Plain numbers the metrics collector reads at scrape time."""

    deliveries: collections.Counter = field(default_factory=collections.Counter)
    failures: collections.Counter = field(default_factory=collections.Counter)  # (destination, reason)
    dead_letters: collections.Counter = field(default_factory=collections.Counter)  # source
    read: int = 0
    lag: dict[str, int] = field(default_factory=dict)
    delivery_seconds: dict[str, Any] = field(default_factory=dict)


class Courier:
    """One destination's queue and the task that works through it, in order, one delivery at a time."""

    def __init__(self, destination: Destination, notifier: "Notifier") -> None:
        from streams.metrics import Buckets

        self.destination = destination
        self.notifier = notifier
        self.queue: asyncio.Queue = asyncio.Queue()
        self.session = None
        # Alertmanager: each open alert's last post, by dedup key, to post again before it ends.
        self.open: dict[str, dict] = {}
        self.buckets = notifier.stats.delivery_seconds.setdefault(destination.name, Buckets())

    async def run(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.destination.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as self.session:
            while True:
                message, alert = await self.queue.get()
                if message is not None and message.revoked:
                    continue
                if message is None:
                    # A re-post: the alert as it stands now, unless it was resolved (or refused) since.
                    entry = self.open.get(alert)
                    if entry is None:
                        continue
                    alert = entry["alert"]
                await self._deliver_until_done(message, alert)
                if message is not None:
                    self.buckets.observe(time.monotonic() - message.read_at)
                    self.notifier.tracker.finish(message, self.destination.name)

    async def resend_open(self) -> None:
        """Alertmanager forgets an alert at its endsAt: post every open one again well before that."""
        period = min(self.destination.resend_s, 5.0)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for key, entry in self.open.items():
                if now - entry["posted"] >= self.destination.resend_s and not entry["queued"]:
                    entry["queued"] = True
                    self.queue.put_nowait((None, key))

    async def _deliver_until_done(self, message: _Message | None, alert: dict) -> None:
        name = self.destination.name
        backoff = self.destination.retry_min_s
        first_failure = None
        while True:
            try:
                await self._deliver(alert, message)
                self.notifier.stats.deliveries[name] += 1
                if first_failure is not None:
                    log.warning("notify: %s delivers again", self.destination.shown)
                return
            except Refused as exc:
                self.notifier.stats.failures[(name, "refused")] += 1
                log.warning("notify: %s refused alert %s (%s): %s; dead-lettered", self.destination.shown,
                            alert["alert_id"], exc.status, exc.answer[:200])
                if message is not None:
                    await self.notifier.dead_letter_refused(message, self.destination, exc)
                self.open.pop(alert["dedup_key"], None)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a defect here must not stop this queue for good
                if not isinstance(exc, Retry):
                    log.exception("notify: delivering alert %s to %s failed unexpectedly; retrying",
                                  alert.get("alert_id"), self.destination.shown)
                    exc = Retry("error", type(exc).__name__)
                self.notifier.stats.failures[(name, exc.reason)] += 1
                now = time.monotonic()
                if first_failure is None or now - first_failure > 30:
                    log.warning("notify: %s failed (%s); retrying in %.1fs, holding its queue of %d",
                                self.destination.shown, exc, backoff, self.queue.qsize() + 1)
                    first_failure = now
                await asyncio.sleep(max(backoff, min(exc.wait_s or 0, self.destination.retry_max_s)))
                backoff = min(backoff * 2, self.destination.retry_max_s)

    async def _deliver(self, alert: dict, message: _Message | None) -> None:
        link = alert_link(self.notifier.config.web_url, alert)
        headers = dict(self.destination.headers)
        if message is not None:
            headers[MESSAGE_HEADER] = f"{self.notifier.topic}/{message.partition}/{message.offset}"
        if self.destination.kind == "alertmanager":
            now_ms = int(time.time() * 1000)
            entry = alertmanager_alert(alert, self.destination, link, now_ms)
            posts = [entry]
            known = self.open.get(alert["dedup_key"])
            if known is not None and known["labels"] != entry["labels"]:
                # The update changed the labels (its severity): end the copy under the old ones.
                posts.append(dict(alertmanager_alert(dict(known["alert"], status="resolved"), self.destination,
                                                     link, now_ms, labels=known["labels"])))
            body = json.dumps(posts).encode()
            await self._post(self.destination.url.rstrip("/") + "/api/v2/alerts", body,
                             {"Content-Type": "application/json", **headers})
            if alert["status"] == "resolved":
                self.open.pop(alert["dedup_key"], None)
            else:
                self.open[alert["dedup_key"]] = {"alert": alert, "labels": entry["labels"],
                                                 "posted": time.monotonic(), "queued": False}
            return
        sent_at_ms = int(time.time() * 1000)
        body = webhook_body(alert, self.destination, link, sent_at_ms)
        headers["Content-Type"] = "application/json"
        if self.destination.secret:
            headers[TIMESTAMP_HEADER] = str(sent_at_ms // 1000)
            headers[SIGNATURE_HEADER] = signature(self.destination.secret, body)
        await self._post(self.destination.url, body, headers)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        import aiohttp

        try:
            async with self.session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
                text = (await answer.content.read(ANSWER_LIMIT)).decode("utf-8", errors="replace")
                status = answer.status
                retry_after = answer.headers.get("Retry-After", "")
        except asyncio.TimeoutError:
            raise Retry("timeout", f"no answer within {self.destination.timeout_s:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Retry("connection", type(exc).__name__ + (f": {exc.strerror}" if getattr(exc, "strerror", None)
                                                            else "")) from None
        if 200 <= status < 300:
            return
        if status == 429:
            wait = float(retry_after) if retry_after.strip().isdigit() else None
            raise Retry("throttled", "answered 429 (too many requests)", wait)
        if status >= 500:
            raise Retry("server_error", f"answered {status}")
        raise Refused(status, text)


class Notifier:
    """The consumer of ``alerts``, the couriers, and the commits that wait for them."""

    def __init__(self, settings: Settings, bootstrap: str, config: NotifyConfig) -> None:
        from schemas.codec import Codec
        from streams import topics

        self.settings, self.bootstrap, self.config = settings, bootstrap, config
        self.topic = settings.topic(topics.ALERTS.name)
        self.dlq_topic = settings.topic(topics.DEAD_LETTERS.name)
        self.group = settings.topic(GROUP)
        self.codec = Codec(registry_url=settings.schema_registry)
        self.tracker = OffsetTracker()
        self.stats = NotifyStats()
        self.couriers: dict[str, Courier] = {}
        self.assigned: set[int] = set()
        self.consumer = None
        self.producer = None

    # -- metrics
    def describe_metrics(self, out) -> None:
        out.counter("forewarn_notify_deliveries_total", "Alert messages (and Alertmanager re-posts) delivered, "
                    "per destination.", {n: self.stats.deliveries.get(n, 0) for n in self.config.destinations},
                    ("destination",))
        out.counter("forewarn_notify_failures_total", "Failed delivery attempts per destination and reason "
                    "(connection, timeout, server_error, throttled, error: retried; refused: dead-lettered).",
                    dict(self.stats.failures), ("destination", "reason"))
        out.gauge("forewarn_notify_queued_messages", "Alert messages waiting for a destination.",
                  {n: c.queue.qsize() for n, c in self.couriers.items()}, ("destination",))
        out.histogram("forewarn_notify_delivery_seconds", "From reading an alert message to its delivery, "
                      "per destination.", dict(self.stats.delivery_seconds), ("destination",))
        out.counter("forewarn_notify_messages_read_total", "Alert messages read from the alerts topic.",
                    self.stats.read)
        out.counter("forewarn_dead_letters_total", "Messages sent to the dead-letter topic, per source.",
                    dict(self.stats.dead_letters), ("source",))
        out.gauge("forewarn_consumer_lag_messages", "Messages of each topic not yet read by this process's group.",
                  dict(self.stats.lag), ("topic",))

    # -- dead letters
    async def dead_letter_refused(self, message: _Message, destination: Destination, refusal: Refused) -> None:
        from sinks.dlq import dead_letter_headers

        text = refusal.answer[:ANSWER_LIMIT]
        headers = dead_letter_headers(
            reason="notify-refused", message=f"{destination.name} answered {refusal.status}: {text}",
            topic=self.topic, partition=message.partition, offset=message.offset,
            processor=f"notify:{destination.name}", now_ms=int(time.time() * 1000), error_class="DeliveryRefused")
        headers += [(DLQ_DESTINATION, destination.name.encode()), (DLQ_STATUS, str(refusal.status).encode()),
                    (DLQ_ANSWER, text.encode())]
        await self._dead_letter(message.partition, message.offset, headers, source=self.topic)

    async def _dead_letter(self, partition: int, offset: int, headers: list, source: str,
                           key: bytes | None = None, value: bytes | None = None) -> None:
        if value is None:
            key, value = await self._original(partition, offset)
        loop = asyncio.get_running_loop()
        failed: list = []

        def delivered(err, _msg) -> None:
            if err is not None:
                failed.append(err)

        while True:
            failed.clear()
            self.producer.produce(self.dlq_topic, key=key, value=value, headers=headers, on_delivery=delivered)
            left = await loop.run_in_executor(None, self.producer.flush, 30)
            if not left and not failed:
                break
            log.warning("notify: the dead-letter topic did not take a message (%s); retrying",
                        failed[0] if failed else "no answer")
            await asyncio.sleep(1)
        self.stats.dead_letters[source] += 1

    async def _original(self, partition: int, offset: int) -> tuple[bytes | None, bytes | None]:
        """The key and value of a message still in flight, as read, to dead-letter it whole."""
        return self._raw.get((partition, offset), (None, None))

    # -- the loop
    async def run(self, stop: asyncio.Event, status=None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from confluent_kafka import Consumer, Producer

        from streams.brokers import confluent_producer_overrides, session_timeout_s
        from streams.kafka_security import kafka_client_config
        from streams.produce import quiet_client_logger

        loop = asyncio.get_running_loop()
        kafka = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify-kafka")  # one thread owns the consumer
        self.producer = Producer(kafka_client_config(self.bootstrap, {
            "linger.ms": 5, "logger": quiet_client_logger(), **confluent_producer_overrides(self.bootstrap)}))
        self.consumer = Consumer(kafka_client_config(self.bootstrap, {
            "group.id": self.group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "logger": quiet_client_logger(),
            "session.timeout.ms": int(session_timeout_s(self.settings, self.bootstrap) * 1000),
        }))
        # The raw bytes of each message in flight, for a dead letter that must carry it whole.
        self._raw: dict[tuple[int, int], tuple] = {}
        for name, destination in self.config.destinations.items():
            courier = self.couriers[name] = Courier(destination, self)
            tasks = [asyncio.ensure_future(courier.run())]
            if destination.kind == "alertmanager":
                tasks.append(asyncio.ensure_future(courier.resend_open()))
            courier.tasks = tasks

        def on_assign(consumer, partitions) -> None:
            self.assigned |= {tp.partition for tp in partitions}

        def on_revoke(consumer, partitions) -> None:
            gone = {tp.partition for tp in partitions}
            self._commit_now(gone)
            self.tracker.drop(gone)
            self.assigned -= gone

        if any(d.kind == "alertmanager" for d in self.config.destinations.values()):
            open_now = await loop.run_in_executor(None, self._open_alerts)
            self.seed_open(open_now)
        self.consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
        committed: dict[int, int] = {}
        paused = False
        last_lag = 0.0
        try:
            while not stop.is_set():
                messages = await loop.run_in_executor(kafka, self._consume)
                for m in messages:
                    await self._take(m)
                queued = sum(c.queue.qsize() for c in self.couriers.values())
                if not paused and queued > MAX_QUEUED:
                    await loop.run_in_executor(kafka, lambda: self.consumer.pause(self.consumer.assignment()))
                    paused = True
                elif paused and queued < MAX_QUEUED // 2:
                    await loop.run_in_executor(kafka, lambda: self.consumer.resume(self.consumer.assignment()))
                    paused = False
                committed = await loop.run_in_executor(kafka, self._commit_changed, committed)
                self._forget_raw(committed)
                if time.monotonic() - last_lag > 2:
                    last_lag = time.monotonic()
                    await loop.run_in_executor(kafka, self._measure_lag)
                    if status is not None:
                        status(self)
        finally:
            for courier in self.couriers.values():
                for task in courier.tasks:
                    task.cancel()
            await asyncio.gather(*(t for c in self.couriers.values() for t in c.tasks), return_exceptions=True)
            await loop.run_in_executor(kafka, self._commit_changed, committed)
            await loop.run_in_executor(kafka, self.consumer.close)
            kafka.shutdown(wait=True)
            self.producer.flush(10)

    def _open_alerts(self) -> list[dict]:
        """Every alert whose latest message on the topic leaves it open, read from the beginning."""
        from schemas.codec import DecodeError
        from streams.follow import TopicNotFound, read_topic

        latest: dict[str, dict] = {}
        try:
            for item in read_topic(self.bootstrap, self.topic, self.codec):
                if not isinstance(item, DecodeError):
                    latest[item[1]["dedup_key"]] = item[1]
        except TopicNotFound:
            return []
        return [alert for alert in latest.values() if alert["status"] != "resolved"]

    def seed_open(self, alerts: list[dict]) -> None:
        """Alertmanager ends an alert nobody posts again: after a restart, the alerts still open are
        posted again at the first re-post round, not only when a new message about them comes."""
        for alert in alerts:
            for name in self.config.destinations_for(alert):
                courier = self.couriers[name]
                if courier.destination.kind == "alertmanager":
                    courier.open[alert["dedup_key"]] = {
                        "alert": alert, "labels": alertmanager_labels(alert, courier.destination),
                        "posted": float("-inf"), "queued": False}

    def _consume(self) -> list:
        from confluent_kafka import KafkaError, KafkaException

        out = []
        for m in self.consumer.consume(num_messages=500, timeout=0.1):
            error = m.error()
            if error is None:
                out.append(m)
            elif error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                if error.fatal():
                    raise KafkaException(error)
                log.warning("notify consumer: %s", error)
        return out

    async def _take(self, m) -> None:
        from schemas.codec import DecodeError
        from sinks.dlq import dead_letter_headers

        self.stats.read += 1
        try:
            _schema, alert = self.codec.decode(m.value(), expected="forewarn.Alert")
            if _schema != "forewarn.Alert":
                raise DecodeError("unexpected-schema", f"{_schema} is not expected on {m.topic()}")
        except DecodeError as exc:
            headers = dead_letter_headers(reason=exc.reason, message=str(exc), topic=m.topic(),
                                          partition=m.partition(), offset=m.offset(), processor="notify",
                                          now_ms=int(time.time() * 1000), error_class="DecodeError")
            log.warning("notify: dead-lettered %s[%s]@%s: %s", m.topic(), m.partition(), m.offset(), exc)
            await self._dead_letter(m.partition(), m.offset(), headers, source=m.topic(), key=m.key(),
                                    value=m.value())
            self.tracker.read(m.partition(), m.offset(), [])
            return
        names = self.config.destinations_for(alert)
        message = self.tracker.read(m.partition(), m.offset(), names)
        if names:
            self._raw[(m.partition(), m.offset())] = (m.key(), m.value())
        for name in names:
            self.couriers[name].queue.put_nowait((message, alert))

    def _forget_raw(self, committed: dict[int, int]) -> None:
        if self._raw:
            for key in [k for k in self._raw if k[1] < committed.get(k[0], -1)]:
                del self._raw[key]

    def _commit_changed(self, committed: dict[int, int]) -> dict[int, int]:
        """Commit every partition whose committable offset moved; the offsets committed so far."""
        from confluent_kafka import KafkaException, TopicPartition

        now = self.tracker.committable()
        moved = [TopicPartition(self.topic, p, o) for p, o in now.items()
                 if p in self.assigned and committed.get(p) != o]
        if not moved:
            return committed
        try:
            self.consumer.commit(offsets=moved, asynchronous=False)
        except KafkaException as exc:
            log.warning("notify: commit failed (%s); it is tried again", exc)
            return committed
        return {**committed, **{tp.partition: tp.offset for tp in moved}}

    def _commit_now(self, partitions: set[int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(self.topic, p, o) for p, o in self.tracker.committable().items() if p in partitions]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("notify: commit before giving partitions away failed (%s)", exc)

    def _measure_lag(self) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        total = 0
        try:
            for p in sorted(self.assigned):
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=1)
                position = self.consumer.position([TopicPartition(self.topic, p)])[0].offset
                total += max(0, high - position) if position >= 0 else high
        except KafkaException:
            return
        self.stats.lag[self.topic] = total


# ---------------------------------------------------------------------------------------------- the process
def status_path(settings: Settings) -> Path:
    return settings.data_dir / "notify" / f"{settings.topic('status')}.json"


def write_status(settings: Settings, notifier: Notifier) -> None:
    path = status_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"assigned_partitions": len(notifier.assigned), "read": notifier.stats.read,
                               "delivered": dict(notifier.stats.deliveries), "updated_at": time.time()}))
    tmp.replace(path)


def read_status(settings: Settings) -> dict | None:
    try:
        return json.loads(status_path(settings).read_text())
    except (OSError, ValueError):
        return None


def serve(settings: Settings, bootstrap: str, config: NotifyConfig) -> int:
    """`forewarn notify`: deliver alerts until SIGINT or SIGTERM; the exit status."""
    from streams.metrics import new_registry, serve_metrics

    notifier = Notifier(settings, bootstrap, config)
    status_path(settings).unlink(missing_ok=True)
    metrics_url = serve_metrics(new_registry(notifier.describe_metrics), settings.metrics_addr)
    where = "; ".join(d.shown for d in config.destinations.values())
    print(f"forewarn notify: Kafka at {bootstrap}, {notifier.topic} in group {notifier.group}; delivering to "
          f"{where}" + (f"; metrics at {metrics_url}" if metrics_url else ""), flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await notifier.run(stop, status=lambda n: write_status(settings, n))

    asyncio.run(main())
    return 0
