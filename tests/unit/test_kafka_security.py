"""The secured-cluster settings: each bad one named at start, one mapping per client library, no password shown."""

from __future__ import annotations

import ssl
import subprocess
import sys

import pytest

from streams.kafka_security import KafkaSecurity, access_failure, client_logger, kafka_client_config
from streams.settings import Settings, SettingsError

SECRET = "s3cret-Pa55-do-not-show"


@pytest.fixture
def pem(tmp_path):
    """A throwaway CA certificate and key, made with the openssl command line."""
    key, cert = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=test-ca"], check=True, capture_output=True)
    return cert, key


def secured(**extra: str) -> dict[str, str]:
    env = {"FOREWARN_KAFKA": "kafka.example:9093", "FOREWARN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "FOREWARN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "FOREWARN_KAFKA_USERNAME": "forewarn",
           "FOREWARN_KAFKA_PASSWORD": SECRET}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


@pytest.mark.parametrize("env, named", [
    (secured(FOREWARN_KAFKA_SECURITY_PROTOCOL="TLS"), "FOREWARN_KAFKA_SECURITY_PROTOCOL='TLS': expected one of"),
    (secured(FOREWARN_KAFKA_SASL_MECHANISM="GSSAPI"), "FOREWARN_KAFKA_SASL_MECHANISM='GSSAPI': expected one of"),
    (secured(FOREWARN_KAFKA_SASL_MECHANISM=None), "set FOREWARN_KAFKA_SASL_MECHANISM"),
    (secured(FOREWARN_KAFKA_USERNAME=None), "set FOREWARN_KAFKA_USERNAME"),
    (secured(FOREWARN_KAFKA_PASSWORD=None), "set FOREWARN_KAFKA_PASSWORD (or FOREWARN_KAFKA_PASSWORD_FILE)"),
    (secured(FOREWARN_KAFKA_CA="/nonexistent/ca.pem"), "FOREWARN_KAFKA_CA='/nonexistent/ca.pem'"),
    (secured(FOREWARN_KAFKA_PASSWORD_FILE="/nonexistent/pw"), "FOREWARN_KAFKA_PASSWORD_FILE='/nonexistent/pw'"),
    (secured(FOREWARN_KAFKA=None), "FOREWARN_KAFKA_SECURITY_PROTOCOL is set but FOREWARN_KAFKA is not"),
    ({"FOREWARN_KAFKA": "k:9092", "FOREWARN_KAFKA_USERNAME": "x"},
     "FOREWARN_KAFKA_USERNAME is set but FOREWARN_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
])
def test_a_bad_security_setting_is_named(env, named):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert named in str(caught.value)
    assert SECRET not in str(caught.value)


def test_password_and_password_file_are_exclusive(tmp_path):
    (tmp_path / "pw").write_text(SECRET + "\n")
    with pytest.raises(SettingsError, match="FOREWARN_KAFKA_PASSWORD and FOREWARN_KAFKA_PASSWORD_FILE are both set"):
        Settings.from_env(secured(FOREWARN_KAFKA_PASSWORD_FILE=str(tmp_path / "pw")))


def test_password_file_is_read_without_its_line_break(tmp_path):
    (tmp_path / "pw").write_text(SECRET + "\n")
    settings = Settings.from_env(secured(FOREWARN_KAFKA_PASSWORD=None,
                                         FOREWARN_KAFKA_PASSWORD_FILE=str(tmp_path / "pw")))
    assert settings.kafka_security.password == SECRET
    assert settings.kafka_security.password_setting == "FOREWARN_KAFKA_PASSWORD_FILE"
    (tmp_path / "empty").write_text("")
    with pytest.raises(SettingsError, match="FOREWARN_KAFKA_PASSWORD_FILE=.*empty"):
        Settings.from_env(secured(FOREWARN_KAFKA_PASSWORD=None, FOREWARN_KAFKA_PASSWORD_FILE=str(tmp_path / "empty")))


def test_cert_needs_key_and_tls(pem):
    cert, key = pem
    with pytest.raises(SettingsError, match="FOREWARN_KAFKA_CERT is set but FOREWARN_KAFKA_KEY is not"):
        Settings.from_env(secured(FOREWARN_KAFKA_CERT=str(cert)))
    with pytest.raises(SettingsError, match="FOREWARN_KAFKA_CA is set but FOREWARN_KAFKA_SECURITY_PROTOCOL="
                                            "SASL_PLAINTEXT does not use TLS"):
        Settings.from_env(secured(FOREWARN_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", FOREWARN_KAFKA_CA=str(cert)))


def test_one_mapping_for_librdkafka(pem):
    cert, key = pem
    settings = Settings.from_env(secured(FOREWARN_KAFKA_CA=str(cert), FOREWARN_KAFKA_CERT=str(cert),
                                         FOREWARN_KAFKA_KEY=str(key)))
    config = kafka_client_config("kafka.example:9093", {"group.id": "g"}, security=settings.kafka_security)
    assert config == {
        "bootstrap.servers": "kafka.example:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "forewarn", "sasl.password": SECRET,
        "ssl.endpoint.identification.algorithm": "https", "ssl.ca.location": str(cert),
        "ssl.certificate.location": str(cert), "ssl.key.location": str(key), "group.id": "g",
        "logger": client_logger(),
    }
    # The client library accepts every name.
    from confluent_kafka.admin import AdminClient
    AdminClient(config)
    assert kafka_client_config("k:9092", security=KafkaSecurity()) == {"bootstrap.servers": "k:9092",
                                                                       "logger": client_logger()}


def test_librdkafka_lines_reach_the_logger_not_the_terminal(capfd):
    """librdkafka's own lines (``%3|...|FAIL|...``) go through ``forewarn.librdkafka``, never raw to stderr."""
    import logging
    import socket
    import time

    from confluent_kafka import Consumer

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    with socket.socket() as closed:  # a port nobody listens on: every connection attempt fails and is logged
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    keep = Keep()
    client_logger().addHandler(keep)
    consumer = Consumer(kafka_client_config(f"127.0.0.1:{port}", {"group.id": "g", "reconnect.backoff.ms": 10},
                                            security=KafkaSecurity()))
    try:
        deadline = time.monotonic() + 30
        while not records and time.monotonic() < deadline:
            consumer.poll(0.1)
    finally:
        consumer.close()
        client_logger().removeHandler(keep)
    assert records, "librdkafka logged nothing about a refused connection within 30 s"
    assert "Connection refused" in " ".join(record.getMessage() for record in records)
    assert "%3|" not in capfd.readouterr().err


def test_one_mapping_for_faust(pem):
    cert, key = pem
    security = Settings.from_env(secured(FOREWARN_KAFKA_CA=str(cert), FOREWARN_KAFKA_CERT=str(cert),
                                         FOREWARN_KAFKA_KEY=str(key))).kafka_security
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(security.faust_credentials())
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("forewarn", SECRET)
    context = auth["ssl_context"]
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    ssl_only = KafkaSecurity(protocol="SSL", ca=cert)
    assert credentials_to_aiokafka_auth(ssl_only.faust_credentials())["security_protocol"] == "SSL"
    assert KafkaSecurity().faust_credentials() is None


def test_no_password_in_repr_or_describe(tmp_path):
    (tmp_path / "pw").write_text(SECRET)
    env = secured(FOREWARN_SCHEMA_REGISTRY="http://registry:8081", FOREWARN_SCHEMA_REGISTRY_USERNAME="reg",
                  FOREWARN_SCHEMA_REGISTRY_PASSWORD=SECRET,
                  FOREWARN_CLICKHOUSE=f"https://ch:{SECRET}@clickhouse.example:8443/db")
    settings = Settings.from_env(env)
    assert settings.registry_config()["basic.auth.user.info"] == f"reg:{SECRET}"
    for text in (repr(settings), str(settings), repr(settings.kafka_security), str(settings.describe())):
        assert SECRET not in text
    assert "forewarn" in repr(settings.kafka_security)
    file_env = secured(FOREWARN_CLICKHOUSE="https://ch@clickhouse.example/db",
                       FOREWARN_CLICKHOUSE_PASSWORD_FILE=str(tmp_path / "pw"))
    assert Settings.from_env(file_env).clickhouse_password == SECRET


def test_registry_and_clickhouse_logins_are_checked(tmp_path):
    with pytest.raises(SettingsError, match="FOREWARN_SCHEMA_REGISTRY_USERNAME is set but FOREWARN_SCHEMA_REGISTRY"):
        Settings.from_env({"FOREWARN_SCHEMA_REGISTRY_USERNAME": "x"})
    with pytest.raises(SettingsError, match="set FOREWARN_SCHEMA_REGISTRY_PASSWORD"):
        Settings.from_env({"FOREWARN_SCHEMA_REGISTRY": "http://r:8081", "FOREWARN_SCHEMA_REGISTRY_USERNAME": "x"})
    with pytest.raises(SettingsError, match="FOREWARN_CLICKHOUSE_CA is set but FOREWARN_CLICKHOUSE is an http://"):
        (tmp_path / "ca.pem").write_text("x")
        Settings.from_env({"FOREWARN_CLICKHOUSE": "http://ch:8123", "FOREWARN_CLICKHOUSE_CA": str(tmp_path / "ca.pem")})


def test_help_and_errors_never_show_the_password():
    env = dict(secured(FOREWARN_KAFKA="127.0.0.1:9", FOREWARN_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT"))
    import os
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}, **env}
    shown = subprocess.run([sys.executable, "-m", "streams", "--help"], env=env, capture_output=True, text=True)
    assert "FOREWARN_KAFKA_SECURITY_PROTOCOL" in shown.stdout and SECRET not in shown.stdout + shown.stderr
    failed = subprocess.run([sys.executable, "-m", "streams", "topics", "list"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert failed.returncode != 0 and SECRET not in failed.stdout + failed.stderr


@pytest.mark.parametrize("name, text, expected", [
    ("_AUTHENTICATION", "SASL authentication error: Authentication failed during authentication due to invalid "
                        "credentials with SASL mechanism SCRAM-SHA-512",
     'Kafka refused the login of user "forewarn" (SASL SCRAM-SHA-512 authentication failed): check '
     'FOREWARN_KAFKA_USERNAME and FOREWARN_KAFKA_PASSWORD'),
    ("_SSL", "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify "
             "failed: broker certificate could not be verified",
     "set FOREWARN_KAFKA_CA to the CA that signed the broker's certificate"),
])
def test_failures_name_the_setting(name, text, expected):
    security = KafkaSecurity(protocol="SASL_SSL", mechanism="SCRAM-SHA-512", username="forewarn", password=SECRET)
    message = access_failure(name, text, security)
    assert expected in message and SECRET not in message
    assert access_failure("_TRANSPORT", "Connection refused", security) is None


def test_clickhouse_over_https_checks_the_certificate_against_the_ca_and_takes_the_password_file(
        tmp_path, monkeypatch):
    import clickhouse_connect

    from sinks.clickhouse.store import open_store

    (tmp_path / "pw").write_text(SECRET + "\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env({"FOREWARN_CLICKHOUSE": "https://forewarn@ch.example:8443/shop",
                                  "FOREWARN_CLICKHOUSE_PASSWORD_FILE": str(tmp_path / "pw"),
                                  "FOREWARN_CLICKHOUSE_CA": str(tmp_path / "ca.pem")})
    seen = {}
    monkeypatch.setattr(clickhouse_connect, "get_client", lambda **kwargs: seen.update(kwargs))
    open_store(settings)
    assert seen["secure"] is True and seen["verify"] is True and seen["ca_cert"] == str(tmp_path / "ca.pem")
    assert (seen["username"], seen["password"], seen["database"]) == ("forewarn", SECRET, "shop")
    with pytest.raises(SettingsError, match="give the password one way only"):
        Settings.from_env({"FOREWARN_CLICKHOUSE": f"https://forewarn:{SECRET}@ch.example/shop",
                           "FOREWARN_CLICKHOUSE_PASSWORD_FILE": str(tmp_path / "pw")})


def test_the_schema_registry_client_takes_the_login_and_the_ca(tmp_path, pem):
    from schemas.codec import Codec

    ca, _key = pem
    (tmp_path / "pw").write_text(SECRET)
    settings = Settings.from_env({"FOREWARN_SCHEMA_REGISTRY": "https://registry.example",
                                  "FOREWARN_SCHEMA_REGISTRY_USERNAME": "reader",
                                  "FOREWARN_SCHEMA_REGISTRY_PASSWORD_FILE": str(tmp_path / "pw"),
                                  "FOREWARN_SCHEMA_REGISTRY_CA": str(ca)})
    assert settings.registry_config() == {"basic.auth.user.info": f"reader:{SECRET}",
                                          "ssl.ca.location": str(ca)}
    from confluent_kafka.schema_registry import SchemaRegistryClient

    # The registry client accepts these names (it connects only when asked something).
    SchemaRegistryClient({"url": settings.schema_registry, **settings.registry_config()})
    Codec(registry_url=settings.schema_registry, registry_config=settings.registry_config())
