"""How Forewarn's Kafka clients log in to a secured cluster: one set of settings, mapped once per library.

``KafkaSecurity`` holds FOREWARN_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM,
_USERNAME, _PASSWORD (or _PASSWORD_FILE), _CA, _CERT and _KEY, checked by
``streams.settings`` when it reads them. Two mappings turn it into what each
client library wants, and nothing else in Forewarn spells a security option:

- ``kafka_client_config(bootstrap, extra)``: the configuration of every
  confluent-kafka (librdkafka) Producer, Consumer and AdminClient, so a new
  client is built as ``Producer(kafka_client_config(bootstrap, {...}))``;
- ``faust_credentials()``: Faust's ``broker_credentials`` (aiokafka), for the
  workers' own consumers, producers and admin calls.

A process's security is one fixed thing decided at start: the command sets it
once from its settings (``use_security``), and every client built afterwards
takes it. That is why the clients take only a bootstrap address, as they did
before: the address and the login travel separately, and a client cannot
forget the login. The embedded broker's own loopback calls (streams.kafka_node,
streams.embedded) stay plaintext; security applies to FOREWARN_KAFKA.

``check_access`` is the start-up check every command makes: a login refused,
a certificate not trusted or a missing ACL stops the command within seconds
with one line naming the cause and the setting to change, instead of a client
retrying forever.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["KafkaSecurity", "KafkaAccessError", "PROTOCOLS", "MECHANISMS", "use_security", "current_security",
           "kafka_client_config", "client_logger", "faust_credentials", "check_access", "access_failure", "not_authorized"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

ACL_DOC = "deploy/kafka/README.md"


class KafkaAccessError(RuntimeError):
    """The cluster refused Forewarn (login, certificate or ACL); the message names the setting to change."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How to log in to FOREWARN_KAFKA. The default is an open (PLAINTEXT) cluster.

    ``password`` is the secret itself, read from FOREWARN_KAFKA_PASSWORD or from
    the file FOREWARN_KAFKA_PASSWORD_FILE names (``password_setting`` says
    which); it never appears in ``repr`` or ``str``.
    """

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    password_setting: str = "FOREWARN_KAFKA_PASSWORD"
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def __repr__(self) -> str:
        parts = [f"protocol={self.protocol}"]
        if self.sasl:
            parts += [f"mechanism={self.mechanism}", f"username={self.username!r}",
                      f"password=*** (from {self.password_setting})"]
        for name in ("ca", "cert", "key"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={str(getattr(self, name))!r}")
        return f"KafkaSecurity({', '.join(parts)})"

    __str__ = __repr__

    def confluent_config(self) -> dict[str, Any]:
        """The librdkafka names of these settings (empty for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security.protocol": self.protocol}
        if self.sasl:
            config.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                           "sasl.password": self.password})
        if self.tls:
            # librdkafka checks the broker's name against its certificate only when asked to.
            config["ssl.endpoint.identification.algorithm"] = "https"
            if self.ca is not None:
                config["ssl.ca.location"] = str(self.ca)
            if self.cert is not None:
                config["ssl.certificate.location"] = str(self.cert)
                config["ssl.key.location"] = str(self.key)
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context for aiokafka: the CA (else the system's), the client certificate, host names checked."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def faust_credentials(self):
        """Faust's ``broker_credentials`` for these settings; None for PLAINTEXT."""
        import faust

        if self.sasl:
            return faust.SASLCredentials(username=self.username, password=self.password,
                                         mechanism=self.mechanism, ssl_context=self.ssl_context())
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    # ------------------------------------------------------------ messages
    def login_fix(self) -> str:
        """What to check when the cluster refuses the login."""
        if self.sasl:
            return f"check FOREWARN_KAFKA_USERNAME and {self.password_setting}"
        if self.cert is not None:
            return "check FOREWARN_KAFKA_CERT and FOREWARN_KAFKA_KEY"
        return "check FOREWARN_KAFKA_SECURITY_PROTOCOL and the login settings (FOREWARN_KAFKA_USERNAME, ...)"

    def principal(self) -> str:
        if self.sasl:
            return f'user "{self.username}"'
        if self.cert is not None:
            return f"the client certificate {self.cert}"
        return "this client (no login)"


_lock = threading.Lock()
_current = KafkaSecurity()


def use_security(security: KafkaSecurity) -> None:
    """Make ``security`` the login of every Kafka client this process builds from now on."""
    global _current
    with _lock:
        _current = security


def current_security() -> KafkaSecurity:
    return _current


def kafka_client_config(bootstrap: str, extra: Mapping[str, Any] | None = None,
                        *, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """THE mapping for confluent-kafka clients: bootstrap address, security settings, then ``extra``.

    Every Producer, Consumer and AdminClient Forewarn builds takes its
    configuration from here, so all of them log in the same way. ``security``
    defaults to the process's (``use_security``); pass
    ``KafkaSecurity()`` for a client that must stay plaintext.
    """
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": client_logger()}
    config.update((security or _current).confluent_config())
    if extra:
        config.update(extra)
    return config


def client_logger() -> logging.Logger:
    """Where librdkafka's own log lines go: the logger ``forewarn.librdkafka``.

    Without a logger librdkafka writes raw lines (``%3|...|FAIL|...``) straight
    to stderr. Through this one a service (worker, sink, notifier, web page)
    logs them like any other warning, and a one-shot command, which reports a
    broker problem once in words, silences them (``streams.produce.quiet_client_logger``).
    """
    return logging.getLogger("forewarn.librdkafka")


def faust_credentials(security: KafkaSecurity | None = None):
    """THE mapping for Faust (aiokafka): its ``broker_credentials`` for the process's security."""
    return (security or _current).faust_credentials()


# ---------------------------------------------------------------- failures

_LOGIN_CODES = ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "ILLEGAL_SASL_STATE",
                "UNSUPPORTED_SASL_MECHANISM")
_CERT_WORDS = ("certificate verify failed", "unable to get local issuer", "self-signed certificate",
               "self signed certificate", "unknown ca", "certificate_verify_failed")


def access_failure(error_name: str, text: str, security: KafkaSecurity | None = None) -> str | None:
    """One line for a client error that no retry will mend (login, certificate, TLS), or None.

    ``error_name`` is librdkafka's error name (``_AUTHENTICATION``, ``_SSL``,
    ``_TRANSPORT``, ...) and ``text`` its message.
    """
    security = security or _current
    lower = text.lower()
    if any(word in lower for word in _CERT_WORDS):
        if "sslv3 alert" in lower or "tlsv1 alert unknown ca" in lower or "alert unknown ca" in lower:
            return (f"Kafka did not trust Forewarn's client certificate ({_short(text)}): check "
                    f"FOREWARN_KAFKA_CERT and FOREWARN_KAFKA_KEY")
        ca = f"FOREWARN_KAFKA_CA={security.ca}" if security.ca else "FOREWARN_KAFKA_CA is unset"
        return (f"the broker's TLS certificate is not trusted ({_short(text)}; {ca}): set FOREWARN_KAFKA_CA "
                f"to the CA that signed the broker's certificate")
    if "hostname mismatch" in lower or "does not match" in lower and "certificate" in lower:
        return (f"the broker's TLS certificate does not name the host Forewarn connects to ({_short(text)}): "
                f"FOREWARN_KAFKA must use a name the certificate holds")
    if error_name in _LOGIN_CODES or "authentication failed" in lower or "sasl authentication" in lower:
        mechanism = f"SASL {security.mechanism}" if security.sasl else "TLS client"
        return (f"Kafka refused the login of {security.principal()} ({mechanism} authentication failed): "
                f"{security.login_fix()}")
    if error_name == "_SSL" or "ssl handshake failed" in lower:
        return (f"the TLS handshake with Kafka failed ({_short(text)}): check FOREWARN_KAFKA_SECURITY_PROTOCOL "
                f"(the broker's listener must speak {security.protocol}) and FOREWARN_KAFKA_CA")
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def not_authorized(operation: str, topic: str, security: KafkaSecurity | None = None) -> str:
    security = security or _current
    return (f"{security.principal()} is not authorized to {operation} topic {topic}: grant it the ACL "
            f"(see {ACL_DOC}), or check FOREWARN_KAFKA_USERNAME")


# A listener that speaks another protocol drops the client's first request; librdkafka says so only
# in its log: (what the client spoke, what its log line says) -> what to tell the user.
_WRONG_PROTOCOL = (
    ("PLAINTEXT", "in state APIVERSION_QUERY",
     "if its listener wants TLS or a login, set FOREWARN_KAFKA_SECURITY_PROTOCOL (SSL or SASL_SSL) and the "
     "settings that go with it"),
    ("SSL", "SSL connection closed by peer",
     "if its listener wants a SASL login, set FOREWARN_KAFKA_SECURITY_PROTOCOL=SASL_SSL, "
     "FOREWARN_KAFKA_SASL_MECHANISM, FOREWARN_KAFKA_USERNAME and FOREWARN_KAFKA_PASSWORD"),
)
# Connections dropped that way before the command stops (one could be a broker restarting).
_WRONG_PROTOCOL_TRIES = 3


class _ErrorWatch(logging.Handler):
    """The client's error_cb and log handler: keeps the first failure no retry will mend."""

    def __init__(self, security: KafkaSecurity, bootstrap: str) -> None:
        super().__init__()
        self.security, self.bootstrap = security, bootstrap
        self.failure: str | None = None
        self.dropped = 0
        self.logger = logging.getLogger(f"forewarn.librdkafka.check.{id(self)}")
        self.logger.addHandler(self)
        self.logger.propagate = False
        # librdkafka logs a dropped connection below WARNING; every line must reach emit(), none is printed.
        self.logger.setLevel(logging.DEBUG)

    def __call__(self, error) -> None:
        if self.failure is None:
            self.failure = access_failure(error.name(), error.str(), self.security)

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        for protocol, sign, fix in _WRONG_PROTOCOL:
            if self.failure is None and self.security.protocol == protocol and sign in text:
                self.dropped += 1
                if self.dropped >= _WRONG_PROTOCOL_TRIES:
                    self.failure = (f"Kafka at {self.bootstrap} closed every {protocol} connection before "
                                    f"answering: {fix}")

    def close(self) -> None:
        self.logger.removeHandler(self)
        super().close()


def check_access(bootstrap: str, *, timeout_s: float = 10.0, reads: Iterable[str] = (),
                 writes: Iterable[str] = (), groups: Iterable[str] = (),
                 security: KafkaSecurity | None = None) -> None:
    """Raise KafkaAccessError unless Kafka at ``bootstrap`` lets this process in and do its work.

    A metadata request proves the login and the certificate; then the
    operations the broker says this principal is allowed (KIP-430) must include
    READ on the topics ``reads`` and the consumer groups ``groups``, and WRITE
    on the topics ``writes``. A topic that does not exist yet is not checked.
    Any other failure to answer is raised as the client's KafkaException.
    """
    security = security or _current
    watch = _ErrorWatch(security, bootstrap)
    try:
        _check_access(bootstrap, timeout_s, reads, writes, groups, security, watch)
    finally:
        watch.close()


def _check_access(bootstrap, timeout_s, reads, writes, groups, security, watch) -> None:
    import time

    from confluent_kafka import KafkaError, KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_client_config(bootstrap, {"logger": watch.logger, "error_cb": watch},
                                            security=security))
    deadline = time.monotonic() + timeout_s
    metadata = None
    error: Exception | None = None
    # Short polls, so a refused login stops the command at once rather than after the whole timeout.
    while time.monotonic() < deadline and watch.failure is None:
        try:
            metadata = admin.list_topics(timeout=min(1.0, max(deadline - time.monotonic(), 0.1)))
            break
        except KafkaException as exc:
            error = exc
            admin.poll(0)
    admin.poll(0)
    if watch.failure is not None:
        raise KafkaAccessError(watch.failure)
    if metadata is None:
        raise error if error is not None else KafkaException(KafkaError(KafkaError._TIMED_OUT))
    _check_groups(admin, list(groups), timeout_s, security)
    wanted = {name: "read" for name in reads}
    wanted.update({name: "write" for name in writes})
    if not wanted:
        return
    # Every topic, seen in the metadata or not: a principal without DESCRIBE does not see it there.
    futures = admin.describe_topics(TopicCollection(list(wanted)), request_timeout=timeout_s,
                                    include_authorized_operations=True)
    _check_allowed(futures, wanted, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                   lambda name: not_authorized(wanted[name], name, security),
                   # A topic not created yet: whoever creates it finds out.
                   pass_over=lambda code: code == KafkaError.UNKNOWN_TOPIC_OR_PART)


def _check_groups(admin, groups: list[str], timeout_s: float, security: KafkaSecurity) -> None:
    """KafkaAccessError unless the principal may READ (join and commit in) each consumer group."""
    from confluent_kafka import KafkaError

    if not groups:
        return
    futures = admin.describe_consumer_groups(groups, request_timeout=min(timeout_s, 5.0),
                                             include_authorized_operations=True)
    _check_allowed(futures, dict.fromkeys(groups, "read"), KafkaError.GROUP_AUTHORIZATION_FAILED,
                   lambda group: group_not_authorized(group, security),
                   # No answer yet (a new cluster's group coordinator still loading, say): the
                   # consumer finds out for itself; the start is not held up for it.
                   pass_over=lambda code: True)


def _check_allowed(futures: Mapping[str, Any], wanted: Mapping[str, str], denied: int,
                   refusal: Callable[[str], str], pass_over: Callable[[int | None], bool]) -> None:
    """KafkaAccessError unless the principal may do on each described topic or group what ``wanted`` names for it.

    A description failing with the error code ``denied`` is refused; one failing otherwise is
    skipped where ``pass_over(code)`` says so, else raised. A broker that names no allowed
    operations (no authorizer) is not checked.
    """
    from confluent_kafka import KafkaError, KafkaException

    for name, future in futures.items():
        try:
            description = future.result()
        except KafkaException as exc:
            kafka_error = exc.args[0] if exc.args else None
            code = kafka_error.code() if isinstance(kafka_error, KafkaError) else None
            if code == denied:
                raise KafkaAccessError(refusal(name)) from None
            if pass_over(code):
                continue
            raise
        allowed = {getattr(op, "name", str(op)) for op in (description.authorized_operations or ())}
        if allowed and wanted[name].upper() not in allowed and "ALL" not in allowed:
            raise KafkaAccessError(refusal(name))


def group_not_authorized(group: str, security: KafkaSecurity | None = None) -> str:
    security = security or _current
    return (f"{security.principal()} is not authorized to use consumer group {group}: grant it READ on the group "
            f"(see {ACL_DOC}), or check FOREWARN_KAFKA_USERNAME")
