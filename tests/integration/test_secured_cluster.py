"""On the secured cluster (FOREWARN_TEST_KAFKA=secure): what a refused login, an untrusted certificate and a
missing ACL look like, that nothing is lost once the setting is fixed, and that no password is written anywhere.

Every test here skips, saying why, unless the session runs on `kafka.sh --secure`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams import topics
from streams.embedded import die_with_parent_hook
from streams.follow import group_lag
from tests.integration.helpers import Workers, forewarn_env, read_alerts, run_forewarn, wait_for, write_jsonl
from tests.integration.test_stock_pipeline import by_order, placed, reference_data

pytestmark = pytest.mark.integration

# A refused start must say so within this (the clients' own retries would go on for minutes).
FAIL_FAST_S = 15.0


def short_on_arrival() -> list[dict]:
    """Reference data and one order for a SKU with no stock: the worker alerts on O7 once it reads them."""
    return reference_data() + [placed(7, "O7", "C3", ("PER", 1))]


def refused(args: list[str], env: dict[str, str], password: str) -> str:
    """Run a forewarn command that must stop at once; its one line of explanation."""
    started = time.monotonic()
    done = run_forewarn(args, env, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    assert elapsed < FAIL_FAST_S, f"`forewarn {' '.join(args)}` took {elapsed:.1f}s to give up"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forewarn: "), done.stderr
    assert password not in done.stdout + done.stderr
    return lines[0]


def processed(bootstrap: str, prefix: str) -> bool:
    return group_lag(bootstrap, f"{prefix}forewarn", [f"{prefix}{spec.name}" for spec in topics.GROUP_INPUTS]) == 0


def test_a_wrong_password_stops_the_worker_at_once_and_the_events_are_read_once_it_is_fixed(
        secure_kafka, kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    assert run_forewarn(["produce", str(write_jsonl(tmp_path / "in.jsonl", short_on_arrival()))], env).returncode == 0

    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    line = refused(["worker"], dict(env, FOREWARN_KAFKA_PASSWORD_FILE=str(wrong)), secure_kafka.password("forewarn"))
    assert line == ('forewarn: Kafka refused the login of user "forewarn" (SASL SCRAM-SHA-512 authentication '
                    'failed): check FOREWARN_KAFKA_USERNAME and FOREWARN_KAFKA_PASSWORD_FILE')
    # The same for a command that only reads.
    assert "Kafka refused the login" in refused(["alerts"], dict(env, FOREWARN_KAFKA_PASSWORD_FILE=str(wrong)),
                                                secure_kafka.password("forewarn"))

    with Workers(env, count=1, log_dir=tmp_path) as workers:
        alerts = wait_for(lambda: workers.assert_running() or by_order(read_alerts(kafka_bootstrap, fresh_prefix)),
                          timeout=180, what="the alert for O7 once the worker logs in")
        assert list(alerts) == ["O7"]
        wait_for(lambda: processed(kafka_bootstrap, fresh_prefix), timeout=120, what="every event read")


def test_a_client_without_the_ca_is_told_to_set_it_and_produces_once_it_is_set(
        secure_kafka, kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    events = write_jsonl(tmp_path / "in.jsonl", short_on_arrival())
    without_ca = {k: v for k, v in env.items() if k != "FOREWARN_KAFKA_CA"}
    line = refused(["produce", str(events)], without_ca, secure_kafka.password("forewarn"))
    assert "the broker's TLS certificate is not trusted" in line
    assert line.endswith("set FOREWARN_KAFKA_CA to the CA that signed the broker's certificate")
    # A CA that did not sign the broker's certificate is no better.
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k"),
                    "-out", str(other_ca), "-days", "1", "-subj", "/CN=someone-else"], check=True,
                   capture_output=True)
    line = refused(["worker"], dict(env, FOREWARN_KAFKA_CA=str(other_ca)), secure_kafka.password("forewarn"))
    assert "not trusted" in line and "FOREWARN_KAFKA_CA" in line

    assert run_forewarn(["produce", str(events)], env).returncode == 0
    with Workers(env, count=1, log_dir=tmp_path):
        wait_for(lambda: by_order(read_alerts(kafka_bootstrap, fresh_prefix)), timeout=180,
                 what="the alert for O7 from the events produced once the CA was set")


def test_a_user_without_the_acl_to_write_alerts_stops_and_nothing_is_lost(
        secure_kafka, kafka_bootstrap, fresh_prefix, tmp_path):
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                       ResourcePatternType, ResourceType)

    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    assert run_forewarn(["topics", "create"], env).returncode == 0
    assert run_forewarn(["produce", str(write_jsonl(tmp_path / "in.jsonl", short_on_arrival()))], env).returncode == 0
    alerts_topic = f"{fresh_prefix}alerts"
    admin = AdminClient(secure_kafka.admin_config())
    group = f"{fresh_prefix}forewarn"

    def denied(kind, name, operation):
        return (kind, name, ResourcePatternType.LITERAL, "User:forewarn-noalerts", "*", operation,
                AclPermissionType.DENY)

    no_write = denied(ResourceType.TOPIC, alerts_topic, AclOperation.WRITE)
    no_group = denied(ResourceType.GROUP, group, AclOperation.READ)
    for future in admin.create_acls([AclBinding(*no_write)], request_timeout=30).values():
        future.result()
    try:
        noalerts = dict(env, **secure_kafka.login_env("forewarn-noalerts"))
        line = refused(["worker"], noalerts, secure_kafka.password("forewarn-noalerts"))
        assert line == (f'forewarn: user "forewarn-noalerts" is not authorized to write topic {alerts_topic}: grant '
                        f'it the ACL (see deploy/kafka/README.md), or check FOREWARN_KAFKA_USERNAME')
        # It may still do what it is allowed: read the (empty) alerts.
        assert run_forewarn(["alerts"], noalerts).returncode == 0
        assert read_alerts(kafka_bootstrap, fresh_prefix) == []
        # Allowed to write everything but not to join the workers' consumer group: refused as well.
        for future in admin.delete_acls([AclBindingFilter(*no_write)], request_timeout=30).values():
            future.result()
        for future in admin.create_acls([AclBinding(*no_group)], request_timeout=30).values():
            future.result()
        line = refused(["worker"], noalerts, secure_kafka.password("forewarn-noalerts"))
        assert line == (f'forewarn: user "forewarn-noalerts" is not authorized to use consumer group {group}: grant '
                        f'it READ on the group (see deploy/kafka/README.md), or check FOREWARN_KAFKA_USERNAME')
    finally:
        for future in admin.delete_acls([AclBindingFilter(*no_write), AclBindingFilter(*no_group)],
                                        request_timeout=30).values():
            future.result()

    # The refused worker committed nothing: a worker allowed to write alerts reads every event.
    with Workers(env, count=1, log_dir=tmp_path) as workers:
        alerts = wait_for(lambda: workers.assert_running() or by_order(read_alerts(kafka_bootstrap, fresh_prefix)),
                          timeout=180, what="the alert for O7 from the worker allowed to write it")
        assert list(alerts) == ["O7"]


def _files_under(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def test_a_secured_run_writes_its_password_nowhere(secure_kafka, kafka_bootstrap, fresh_prefix, tmp_path):
    """`forewarn up` on the secured cluster (workers, sink, page), the commands beside it, then every file it
    wrote, every log and every output is searched for the password."""
    password = secure_kafka.password("forewarn")
    data_dir = tmp_path / "data"
    env = forewarn_env(kafka_bootstrap, fresh_prefix, data_dir)
    outputs: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess:
        done = run_forewarn(list(args), env)
        outputs.extend([done.stdout, done.stderr])
        return done

    assert run("topics", "create").returncode == 0
    run("--help")
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "streams", "up"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              preexec_fn=die_with_parent_hook())
    try:
        assert run("produce", str(write_jsonl(tmp_path / "in.jsonl", short_on_arrival()))).returncode == 0

        def alerted():
            assert up.poll() is None, log_path.read_text(errors="replace")[-3000:]
            return by_order(read_alerts(kafka_bootstrap, fresh_prefix))

        wait_for(alerted, timeout=240, what="the alert for O7 from `forewarn up` on the secured cluster")
        wait_for(lambda: run("status").returncode == 0, timeout=120, what="`forewarn status` to report healthy")
        run("status", "--json")
        run("alerts")
        run("tasks", "--all")
        run("topics", "list")
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()

    written = [log_path, *(p for p in _files_under(tmp_path) if p != log_path)]
    assert any(p.name == "up.log" for p in written)
    found = [str(p) for p in written if password.encode() in p.read_bytes()]
    assert found == [], f"the password is written in {found}"
    assert all(password not in text for text in outputs)


def test_a_client_speaking_the_wrong_protocol_is_told_which_setting_to_change(
        secure_kafka, kafka_bootstrap, fresh_prefix, tmp_path):
    env = forewarn_env(kafka_bootstrap, fresh_prefix, tmp_path)
    password = secure_kafka.password("forewarn")
    plaintext = {k: v for k, v in env.items() if not k.startswith("FOREWARN_KAFKA_")}
    plaintext["FOREWARN_KAFKA"] = kafka_bootstrap
    line = refused(["topics", "list"], plaintext, password)
    assert line == (f"forewarn: Kafka at {kafka_bootstrap} closed every PLAINTEXT connection before answering: if "
                    f"its listener wants TLS or a login, set FOREWARN_KAFKA_SECURITY_PROTOCOL (SSL or SASL_SSL) and "
                    f"the settings that go with it")
    tls_only = dict(plaintext, FOREWARN_KAFKA_SECURITY_PROTOCOL="SSL", FOREWARN_KAFKA_CA=str(secure_kafka.ca))
    line = refused(["topics", "list"], tls_only, password)
    assert line.endswith("closed every SSL connection before answering: if its listener wants a SASL login, set "
                         "FOREWARN_KAFKA_SECURITY_PROTOCOL=SASL_SSL, FOREWARN_KAFKA_SASL_MECHANISM, "
                         "FOREWARN_KAFKA_USERNAME and FOREWARN_KAFKA_PASSWORD")
