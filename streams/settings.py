"""One settings object for every Forewarn process, read from FOREWARN_* environment variables.

Nothing here connects anywhere: the settings only say where things are. Every
other module receives a ``Settings`` instead of reading the environment itself,
so a test or a replay can build its own without touching global state.

``Settings.from_env`` checks every variable as it reads it (numbers against
their range, switches, URLs, ports, names): a command stops at start with one
line naming the variable and what it may be, before it starts or reaches
anything.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from streams.kafka_security import MECHANISMS, PROTOCOLS, KafkaSecurity
from streams.thresholds import ThresholdError, Thresholds


class SettingsError(ValueError):
    """A FOREWARN_* variable holds something unusable; the message names it."""


DAY_MS = 24 * 60 * 60 * 1000
# The longest time span a millisecond setting takes: a year is beyond anything the worker keeps.
LONGEST_MS = 365 * DAY_MS


def _whole_env(env: dict[str, str], name: str, default: int, low: int, high: int | None = None,
               what: str = "a whole number", zero: str | None = None, span: str = "") -> int:
    """A whole-number setting from ``low`` to ``high`` (None: no upper bound).

    ``zero``, when given, allows 0 besides the range and says what it means;
    ``span`` says ``high`` in words, such as "(365 days)".
    """
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    in_range = value is not None and value >= low and (high is None or value <= high)
    if not in_range and not (zero and value == 0):
        allowed = f"{what} from {low} to {high}{span}" if high is not None else f"{what}, {low} or more"
        if zero:
            allowed += f", or 0 {zero}"
        raise SettingsError(f"{name}={raw!r}: expected {allowed}")
    return value


def _ms_env(env: dict[str, str], name: str, default: int) -> int:
    return _whole_env(env, name, default, 0, LONGEST_MS, what="a whole number of milliseconds", span=" (365 days)")


def _choice_env(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


# FOREWARN_KAFKA_HEAP: a JVM heap size such as 256m or 1g.
HEAP_PATTERN = re.compile(r"^[1-9][0-9]*[mMgG]$")


def _heap_env(env: dict[str, str]) -> str:
    raw = env.get("FOREWARN_KAFKA_HEAP", "").strip()
    if not raw:
        return "256m"
    if not HEAP_PATTERN.match(raw):
        raise SettingsError(f"FOREWARN_KAFKA_HEAP={raw!r}: expected a heap size such as 256m or 1g")
    return raw


def _switch_env(env: dict[str, str], name: str, meaning: str) -> bool | None:
    """A 0/1 setting that is otherwise detected; None when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if raw not in ("0", "1"):
        raise SettingsError(f"{name}={raw!r}: expected 1 or 0 ({meaning}; unset: detected from the broker)")
    return raw == "1"


# Kafka's topic-name characters: the prefix starts every topic name.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]*$")
MAX_PREFIX = 100


def _prefix_env(env: dict[str, str]) -> str:
    raw = env.get("FOREWARN_TOPIC_PREFIX", "")
    if not NAME_PATTERN.match(raw) or len(raw) > MAX_PREFIX:
        raise SettingsError(f"FOREWARN_TOPIC_PREFIX={raw!r}: expected up to {MAX_PREFIX} letters, digits, '.', "
                            f"'_' or '-' (it starts every topic name)")
    return raw


def _worker_id_env(env: dict[str, str]) -> str:
    raw = env.get("FOREWARN_WORKER_ID", "")
    if raw and (not NAME_PATTERN.match(raw) or len(raw) > MAX_PREFIX or raw in (".", "..")):
        raise SettingsError(f"FOREWARN_WORKER_ID={raw!r}: expected up to {MAX_PREFIX} letters, digits, '.', "
                            f"'_' or '-' (it names the worker's scratch directory)")
    return raw


# One address of FOREWARN_KAFKA: host, host:port or [IPv6]:port.
BROKER_PATTERN = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([0-9]+))?$")


def _kafka_env(env: dict[str, str]) -> str | None:
    raw = env.get("FOREWARN_KAFKA", "")
    if not raw.strip():
        return None
    for address in raw.split(","):
        match = BROKER_PATTERN.match(address.strip())
        if match is None or (match.group(1) is not None and not 1 <= int(match.group(1)) <= 65535):
            raise SettingsError(f"FOREWARN_KAFKA={raw!r}: expected host:port, or several separated by commas "
                                f"(ports from 1 to 65535)")
    return raw.strip()


@dataclass(frozen=True)
class ClickHouseAddress:
    """FOREWARN_CLICKHOUSE taken apart: where the server is and whom to log in as."""

    secure: bool
    host: str
    port: int
    username: str
    password: str
    database: str

    @property
    def shown(self) -> str:
        """The address for messages: scheme, host and port, never the password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}"


CLICKHOUSE_FORM = "http(s)://[user[:password]@]host[:port][/database]"


def clickhouse_address(raw: str) -> ClickHouseAddress:
    """FOREWARN_CLICKHOUSE as a ClickHouseAddress; a SettingsError naming the variable if it is not one."""
    try:
        url = urlsplit(raw.strip())
        port = url.port
    except ValueError:
        url, port = None, None
    database = url.path.strip("/") if url is not None else ""
    if (url is None or url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment
            or "/" in database or port == 0 or any(c.isspace() for c in raw.strip())):
        raise SettingsError(f"FOREWARN_CLICKHOUSE={_without_password(raw)!r}: expected {CLICKHOUSE_FORM} "
                            f"(ports from 1 to 65535)")
    return ClickHouseAddress(
        secure=url.scheme == "https",
        host=url.hostname,
        port=port or (8443 if url.scheme == "https" else 8123),
        username=unquote(url.username) if url.username else "default",
        password=unquote(url.password) if url.password else "",
        database=unquote(database) or "default",
    )


def _without_password(raw: str) -> str:
    """A URL as it may be shown: any password in it replaced by ***."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", raw.strip())


def _url_env(env: dict[str, str], name: str, form: str) -> str | None:
    """An http(s) URL setting with a host (several, for a registry, separated by commas); None when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    for item in raw.split(","):
        try:
            url = urlsplit(item.strip())
            port = url.port
        except ValueError:
            url, port = None, None
        if url is None or url.scheme not in ("http", "https") or not url.hostname or port == 0 \
                or any(c.isspace() for c in item.strip()):
            raise SettingsError(f"{name}={_without_password(raw)!r}: expected {form} (ports from 1 to 65535)")
    return raw


def _data_dir_env(env: dict[str, str]) -> Path:
    raw = env.get("FOREWARN_DATA_DIR") or ".forewarn"
    path = Path(raw)
    if path.exists() and not path.is_dir():
        raise SettingsError(f"FOREWARN_DATA_DIR={raw!r}: expected a directory (or where to make one); "
                            f"that is a file")
    return path


def _web_addr_env(env: dict[str, str]) -> tuple[str, int]:
    """FOREWARN_WEB_ADDR: host:port where `forewarn web` listens (127.0.0.1:8787 by default)."""
    raw = env.get("FOREWARN_WEB_ADDR", "").strip() or "127.0.0.1:8787"
    host, _, port = raw.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65_535 or any(c.isspace() for c in raw):
        raise SettingsError(f"FOREWARN_WEB_ADDR={raw!r}: expected host:port, such as 127.0.0.1:8787 "
                            f"(ports from 1 to 65535)")
    return host, int(port)


def _metrics_addr_env(env: dict[str, str]) -> tuple[str, int] | None:
    """FOREWARN_METRICS_ADDR: host:port where this process serves /metrics (port 0: a free one); None when unset."""
    raw = env.get("FOREWARN_METRICS_ADDR", "").strip()
    if not raw:
        return None
    host, _, port = raw.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65_535 or any(c.isspace() for c in raw):
        raise SettingsError(f"FOREWARN_METRICS_ADDR={raw!r}: expected host:port, such as 127.0.0.1:9464 "
                            f"(ports from 1 to 65535, or 0 for a free one)")
    return host, int(port)


def _one_url_env(env: dict[str, str], name: str) -> str | None:
    """One http(s) URL that may hold a secret (a webhook's path often is one): a bad one is not echoed."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        url = urlsplit(raw)
        port = url.port
    except ValueError:
        url, port = None, None
    if url is None or url.scheme not in ("http", "https") or not url.hostname or port == 0 \
            or any(c.isspace() for c in raw):
        raise SettingsError(f"{name}: expected one http(s)://host[:port][/path] URL (ports from 1 to 65535); "
                            f"the value is not shown, as it may hold a secret")
    return raw


def _file_env(env: dict[str, str], name: str, what: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(f"{name}={raw!r}: expected {what}; there is no such file")
    return path


def _readable_env(env: dict[str, str], name: str, what: str) -> Path | None:
    """A file setting that must name a file this process can read; None when unset."""
    path = _file_env(env, name, what)
    if path is not None and not os.access(path, os.R_OK):
        raise SettingsError(f"{name}={str(path)!r}: expected {what}; this process may not read it")
    return path


def _secret_env(env: dict[str, str], name: str) -> tuple[str | None, str]:
    """A password from ``name`` or from the file ``name``_FILE names (never both): (password, its setting).

    The file holds the password alone; one trailing line break is not part of it.
    The value itself never appears in a message.
    """
    file_name = f"{name}_FILE"
    given = env.get(name, "")
    path = _readable_env(env, file_name, "a file holding the password")
    if given and path is not None:
        raise SettingsError(f"{name} and {file_name} are both set: give the password one way only")
    if path is None:
        return (given or None), name
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{file_name}={str(path)!r}: cannot read the password ({type(exc).__name__})") from None
    text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not text:
        raise SettingsError(f"{file_name}={str(path)!r}: the file is empty; expected the password")
    return text, file_name


KAFKA_SECURITY_VARIABLES = ("FOREWARN_KAFKA_SECURITY_PROTOCOL", "FOREWARN_KAFKA_SASL_MECHANISM",
                            "FOREWARN_KAFKA_USERNAME", "FOREWARN_KAFKA_PASSWORD", "FOREWARN_KAFKA_PASSWORD_FILE",
                            "FOREWARN_KAFKA_CA", "FOREWARN_KAFKA_CERT", "FOREWARN_KAFKA_KEY")


def _kafka_security_env(env: dict[str, str], kafka: str | None) -> KafkaSecurity:
    """FOREWARN_KAFKA_SECURITY_PROTOCOL and the settings that go with it, checked together."""
    given = [name for name in KAFKA_SECURITY_VARIABLES if env.get(name, "").strip()]
    if given and kafka is None:
        raise SettingsError(f"{given[0]} is set but FOREWARN_KAFKA is not: the embedded broker is plaintext on "
                            f"loopback; set FOREWARN_KAFKA to the secured cluster, or unset {given[0]}")
    protocol = _choice_env(env, "FOREWARN_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", PROTOCOLS)
    sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
    mechanism = _choice_env(env, "FOREWARN_KAFKA_SASL_MECHANISM", "", MECHANISMS) or None
    username = env.get("FOREWARN_KAFKA_USERNAME", "").strip() or None
    password, password_setting = _secret_env(env, "FOREWARN_KAFKA_PASSWORD")
    if sasl:
        for name, value in (("FOREWARN_KAFKA_SASL_MECHANISM", mechanism), ("FOREWARN_KAFKA_USERNAME", username),
                            ("FOREWARN_KAFKA_PASSWORD", password)):
            if value is None:
                also = " (or FOREWARN_KAFKA_PASSWORD_FILE)" if name == "FOREWARN_KAFKA_PASSWORD" else ""
                expected = f": one of {', '.join(MECHANISMS)}" if name.endswith("MECHANISM") else ""
                raise SettingsError(f"FOREWARN_KAFKA_SECURITY_PROTOCOL={protocol} logs in with SASL: set "
                                    f"{name}{also}{expected}")
    else:
        for name in ("FOREWARN_KAFKA_SASL_MECHANISM", "FOREWARN_KAFKA_USERNAME", "FOREWARN_KAFKA_PASSWORD",
                     "FOREWARN_KAFKA_PASSWORD_FILE"):
            if env.get(name, "").strip():
                raise SettingsError(f"{name} is set but FOREWARN_KAFKA_SECURITY_PROTOCOL={protocol} does not log "
                                    f"in with SASL; set FOREWARN_KAFKA_SECURITY_PROTOCOL to SASL_SSL (or "
                                    f"SASL_PLAINTEXT), or unset {name}")
    ca = _readable_env(env, "FOREWARN_KAFKA_CA", "a PEM file of the CA certificates that signed the broker's")
    cert = _readable_env(env, "FOREWARN_KAFKA_CERT", "a PEM file of the client certificate")
    key = _readable_env(env, "FOREWARN_KAFKA_KEY", "a PEM file of the client certificate's private key")
    if not tls:
        for name, value in (("FOREWARN_KAFKA_CA", ca), ("FOREWARN_KAFKA_CERT", cert), ("FOREWARN_KAFKA_KEY", key)):
            if value is not None:
                raise SettingsError(f"{name} is set but FOREWARN_KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                                    f"TLS; set FOREWARN_KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL, or unset {name}")
    if (cert is None) != (key is None):
        present, missing = (("FOREWARN_KAFKA_CERT", "FOREWARN_KAFKA_KEY") if key is None
                            else ("FOREWARN_KAFKA_KEY", "FOREWARN_KAFKA_CERT"))
        raise SettingsError(f"{present} is set but {missing} is not: a client certificate needs both")
    return KafkaSecurity(protocol=protocol, mechanism=mechanism if sasl else None, username=username if sasl else None,
                         password=password if sasl else None, password_setting=password_setting, ca=ca, cert=cert,
                         key=key)


def _maven_env(env: dict[str, str]) -> None:
    """FOREWARN_MAVEN_URL is read where the jars are fetched; checked here so a bad one stops any command."""
    from streams.kafka_dist import KafkaDistError, maven_url

    try:
        maven_url(env)
    except KafkaDistError as exc:
        raise SettingsError(str(exc)) from None


@dataclass(frozen=True)
class Settings:
    # Where Kafka is: a bootstrap address, or None for the embedded broker.
    kafka: str | None = None
    # Without FOREWARN_KAFKA: "kafka", one Apache Kafka node keeping its data under data_dir
    # (streams.kafka_node), or "memory", the in-memory broker for throwaway runs (streams.embedded).
    embedded: str = "kafka"
    # Maximum heap of the embedded Apache Kafka node.
    kafka_heap: str = "256m"
    # Where ClickHouse is: an http(s):// URL, or None for chDB under data_dir. Out of repr: it may hold
    # a password (describe() shows it without).
    clickhouse: str | None = field(default=None, repr=False)
    # Confluent-compatible schema registry; None means Avro single-object encoding.
    schema_registry: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(".forewarn"))
    # Prefix for every topic and consumer-group name, so environments share a cluster.
    topic_prefix: str = ""
    # Whether FOREWARN_TOPIC_PREFIX was given at all: a command run beside `forewarn up`
    # takes up's prefix when it was not, and refuses a different one when it was.
    topic_prefix_given: bool = False
    partitions: int = 4
    replication_factor: int = 1
    # How long (ms) closed windows are kept for events that arrive behind the clock.
    allowed_lateness_ms: int = 10 * 60 * 1000
    # How far back in event time the SKU stage keeps history to apply events read late at their own time.
    reorder_horizon_ms: int = 24 * 60 * 60 * 1000
    # How far ahead of wall time an event may be stamped before it is refused (streams.skew).
    max_clock_skew_ms: int = 5 * 60 * 1000
    # Open orders one SKU's shortage must touch before operations get a roll-up alert.
    stockout_rollup_orders: int = 20
    # Alternatives offered per short line.
    max_alternatives: int = 3
    # Faust web server port for the worker; 0 turns the web server off.
    web_port: int = 0
    # Where `forewarn web` listens (FOREWARN_WEB_ADDR).
    web_addr: tuple[str, int] = ("127.0.0.1", 8787)
    # The reps who may act on the web page: one `name:password hash` line each (FOREWARN_WEB_ACCOUNTS;
    # `forewarn web --hash-password NAME` makes a line). None: the page is read-only.
    web_accounts: Path | None = None
    # How long a web sign-in lasts (FOREWARN_WEB_SESSION_MINUTES).
    web_session_minutes: int = 8 * 60
    worker_id: str = ""
    # Consumer-group session timeout of the workers; 0 picks one for the broker (streams.brokers).
    session_timeout_ms: int = 0
    # FOREWARN_SINGLE_RECORD_BATCHES: True or False forces one record per producer batch or normal
    # batching; None detects it from the broker. Checked here at start; streams.brokers reads the
    # variable itself, where its callers have a bootstrap address and no settings.
    single_record_batches: bool | None = None
    # Every rule's thresholds (streams.thresholds), each from its own FOREWARN_* variable.
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Where alerts are delivered (streams.notify): a file of destinations and routes, and/or one
    # Alertmanager and one webhook that get every alert.
    notify_config: Path | None = None
    alertmanager_url: str | None = field(default=None, repr=False)
    webhook_url: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_format: str = "json"
    # The live page's address as people reach it, for the links in delivered alerts; unset: the
    # page `forewarn up` runs, if it runs one.
    web_url: str | None = None
    # Where this process serves its Prometheus metrics (FOREWARN_METRICS_ADDR); None: nowhere.
    metrics_addr: tuple[str, int] | None = None
    # How Kafka clients log in to FOREWARN_KAFKA (streams.kafka_security); plaintext by default.
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    # Schema registry login (FOREWARN_SCHEMA_REGISTRY_USERNAME, _PASSWORD or _PASSWORD_FILE) and CA
    # (FOREWARN_SCHEMA_REGISTRY_CA).
    schema_registry_username: str | None = None
    schema_registry_password: str | None = field(default=None, repr=False)
    schema_registry_ca: Path | None = None
    # ClickHouse: a password from FOREWARN_CLICKHOUSE_PASSWORD_FILE (instead of one in the URL), and the CA
    # that signed an https server's certificate (FOREWARN_CLICKHOUSE_CA; unset: the system's CAs).
    clickhouse_password: str | None = field(default=None, repr=False)
    clickhouse_ca: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """The settings from FOREWARN_* variables, every one checked: a SettingsError names the first bad one."""
        env = dict(os.environ if env is None else env)
        clickhouse = env.get("FOREWARN_CLICKHOUSE", "").strip() or None
        if clickhouse is not None:
            clickhouse_address(clickhouse)
        _maven_env(env)
        kafka = _kafka_env(env)
        schema_registry = _url_env(env, "FOREWARN_SCHEMA_REGISTRY", "http(s)://host[:port][/path]")
        return cls(
            kafka=kafka,
            kafka_security=_kafka_security_env(env, kafka),
            **_registry_login_env(env, schema_registry),
            **_clickhouse_login_env(env, clickhouse),
            embedded=_choice_env(env, "FOREWARN_EMBEDDED", "kafka", ("kafka", "memory")),
            kafka_heap=_heap_env(env),
            clickhouse=clickhouse,
            schema_registry=schema_registry,
            data_dir=_data_dir_env(env),
            topic_prefix=_prefix_env(env),
            topic_prefix_given="FOREWARN_TOPIC_PREFIX" in env,
            partitions=_whole_env(env, "FOREWARN_PARTITIONS", 4, 1, 10_000),
            # Kafka's own limit: the replication factor is a 16-bit number.
            replication_factor=_whole_env(env, "FOREWARN_REPLICATION_FACTOR", 1, 1, 32_767),
            allowed_lateness_ms=_ms_env(env, "FOREWARN_ALLOWED_LATENESS_MS", 10 * 60 * 1000),
            reorder_horizon_ms=_ms_env(env, "FOREWARN_REORDER_HORIZON_MS", DAY_MS),
            max_clock_skew_ms=_ms_env(env, "FOREWARN_MAX_CLOCK_SKEW_MS", 5 * 60 * 1000),
            stockout_rollup_orders=_whole_env(env, "FOREWARN_STOCKOUT_ROLLUP_ORDERS", 20, 1),
            max_alternatives=_whole_env(env, "FOREWARN_MAX_ALTERNATIVES", 3, 0),
            web_port=_whole_env(env, "FOREWARN_WEB_PORT", 0, 1, 65_535, what="a port",
                                zero="for no web server"),
            web_addr=_web_addr_env(env),
            web_accounts=_file_env(env, "FOREWARN_WEB_ACCOUNTS", "a file of `name:password hash` lines"),
            web_session_minutes=_whole_env(env, "FOREWARN_WEB_SESSION_MINUTES", 8 * 60, 1, 7 * 24 * 60,
                                           what="a whole number of minutes"),
            worker_id=_worker_id_env(env),
            # What Apache Kafka brokers accept by default (group.min/max.session.timeout.ms).
            session_timeout_ms=_whole_env(env, "FOREWARN_SESSION_TIMEOUT_MS", 0, 6_000, 1_800_000,
                                          what="a whole number of milliseconds",
                                          zero="to choose one for the broker"),
            single_record_batches=_switch_env(env, "FOREWARN_SINGLE_RECORD_BATCHES",
                                              "1: one record per producer batch, 0: normal batching"),
            thresholds=_thresholds(env),
            notify_config=_file_env(env, "FOREWARN_NOTIFY_CONFIG", "a YAML or TOML file of destinations and "
                                                                   "routes (see README: Paging and metrics)"),
            alertmanager_url=_one_url_env(env, "FOREWARN_ALERTMANAGER_URL"),
            webhook_url=_one_url_env(env, "FOREWARN_WEBHOOK_URL"),
            webhook_secret=_secret_env(env, "FOREWARN_WEBHOOK_SECRET")[0],
            webhook_format=_choice_env(env, "FOREWARN_WEBHOOK_FORMAT", "json", ("json", "slack")),
            web_url=_url_env(env, "FOREWARN_WEB_URL", "http(s)://host[:port][/path]"),
            metrics_addr=_metrics_addr_env(env),
        )

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    def topic(self, name: str) -> str:
        """The full name of a topic or consumer group, with the environment's prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def endpoint_file(self) -> Path:
        """Where `forewarn up` records the broker it started, for commands run beside it."""
        return self.data_dir / "endpoints.json"

    def describe(self) -> dict[str, str]:
        """Every setting as text, for people: no password or webhook address (fields kept out of repr are left
        out)."""
        shown = {f.name: str(getattr(self, f.name)) for f in fields(self) if f.repr}
        if self.clickhouse:
            shown["clickhouse"] = _without_password(self.clickhouse)
        return shown

    @property
    def notifies(self) -> bool:
        """Whether any destination for alerts is configured (`forewarn up` then runs the notifier)."""
        return bool(self.notify_config or self.alertmanager_url or self.webhook_url)

    def registry_config(self) -> dict[str, str]:
        """The schema registry client's login and CA settings (confluent-kafka's names); empty when none."""
        config: dict[str, str] = {}
        if self.schema_registry_username is not None:
            config["basic.auth.user.info"] = f"{self.schema_registry_username}:{self.schema_registry_password}"
        if self.schema_registry_ca is not None:
            config["ssl.ca.location"] = str(self.schema_registry_ca)
        return config


def _registry_login_env(env: dict[str, str], registry: str | None) -> dict:
    username = env.get("FOREWARN_SCHEMA_REGISTRY_USERNAME", "").strip() or None
    password, password_setting = _secret_env(env, "FOREWARN_SCHEMA_REGISTRY_PASSWORD")
    ca = _readable_env(env, "FOREWARN_SCHEMA_REGISTRY_CA", "a PEM file of the CA certificates that signed the "
                                                           "registry's")
    for name, value in (("FOREWARN_SCHEMA_REGISTRY_USERNAME", username), (password_setting, password),
                        ("FOREWARN_SCHEMA_REGISTRY_CA", ca)):
        if value is not None and registry is None:
            raise SettingsError(f"{name} is set but FOREWARN_SCHEMA_REGISTRY is not; set both, or unset {name}")
    if (username is None) != (password is None):
        missing = "FOREWARN_SCHEMA_REGISTRY_PASSWORD (or _PASSWORD_FILE)" if password is None \
            else "FOREWARN_SCHEMA_REGISTRY_USERNAME"
        raise SettingsError(f"the schema registry login needs a user name and a password: set {missing}")
    return {"schema_registry_username": username, "schema_registry_password": password, "schema_registry_ca": ca}


def _clickhouse_login_env(env: dict[str, str], clickhouse: str | None) -> dict:
    password, _setting = _secret_env({"FOREWARN_CLICKHOUSE_PASSWORD_FILE": env.get(
        "FOREWARN_CLICKHOUSE_PASSWORD_FILE", "")}, "FOREWARN_CLICKHOUSE_PASSWORD")
    ca = _readable_env(env, "FOREWARN_CLICKHOUSE_CA", "a PEM file of the CA certificates that signed the "
                                                      "ClickHouse server's")
    for name, value in (("FOREWARN_CLICKHOUSE_PASSWORD_FILE", password), ("FOREWARN_CLICKHOUSE_CA", ca)):
        if value is not None and clickhouse is None:
            raise SettingsError(f"{name} is set but FOREWARN_CLICKHOUSE is not (chDB needs no login); set "
                                f"FOREWARN_CLICKHOUSE, or unset {name}")
    if password is not None and clickhouse_address(clickhouse).password:
        raise SettingsError("FOREWARN_CLICKHOUSE holds a password and FOREWARN_CLICKHOUSE_PASSWORD_FILE is set: "
                            "give the password one way only")
    if ca is not None and not clickhouse_address(clickhouse).secure:
        raise SettingsError("FOREWARN_CLICKHOUSE_CA is set but FOREWARN_CLICKHOUSE is an http:// URL; use https://")
    return {"clickhouse_password": password, "clickhouse_ca": ca}


def _thresholds(env: dict[str, str]) -> Thresholds:
    try:
        return Thresholds.from_env(env)
    except ThresholdError as exc:
        raise SettingsError(str(exc)) from None


def settings_beside_up(settings: Settings) -> tuple[str, Settings]:
    """The bootstrap address and the settings for a command that talks to Kafka.

    With FOREWARN_KAFKA set, that broker and the settings as they are. Without
    it, the broker a running `forewarn up` recorded in the data directory, and
    up's topic prefix unless FOREWARN_TOPIC_PREFIX was given: a command run
    beside `forewarn up` must read and write the topics up's workers use. A
    FOREWARN_TOPIC_PREFIX that differs from up's is refused rather than
    silently producing to topics nothing reads.
    """
    if settings.kafka:
        return settings.kafka, settings
    path = settings.endpoint_file
    try:
        recorded = json.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(
            f"no Kafka to talk to: FOREWARN_KAFKA is unset and no running `forewarn up` "
            f"recorded a broker in {path} (start `forewarn up`, or set FOREWARN_KAFKA)"
        ) from None
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path}: unreadable ({exc}); remove it or set FOREWARN_KAFKA") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("kafka"), str):
        raise SettingsError(f"{path}: does not name a broker; remove it or set FOREWARN_KAFKA")
    pid = recorded.get("pid")
    if isinstance(pid, int) and not _process_alive(pid):
        raise SettingsError(
            f"{path} names a broker started by process {pid}, which is no longer running "
            f"(start `forewarn up`, or set FOREWARN_KAFKA)"
        )
    recorded_prefix = recorded.get("topic_prefix") or ""
    if not isinstance(recorded_prefix, str):
        raise SettingsError(f"{path}: topic_prefix is not a string; remove it or set FOREWARN_KAFKA")
    if settings.topic_prefix_given and settings.topic_prefix != recorded_prefix:
        raise SettingsError(
            f"FOREWARN_TOPIC_PREFIX={settings.topic_prefix!r}, but the running `forewarn up` "
            f"(process {pid}, recorded in {path}) uses topic prefix {recorded_prefix!r}; "
            f"unset FOREWARN_TOPIC_PREFIX to use up's topics, or set it to {recorded_prefix!r}"
        )
    return recorded["kafka"], settings.with_(topic_prefix=recorded_prefix, topic_prefix_given=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
