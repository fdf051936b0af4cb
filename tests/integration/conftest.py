"""Fixtures for tests that need a real Kafka-protocol broker.

By default one Apache Kafka node, the embedded default (streams.kafka_node), is
started for the whole session. FOREWARN_TEST_KAFKA=memory runs the in-memory
broker instead (streams.embedded), FOREWARN_TEST_KAFKA=apache one node started
by deploy/kafka/kafka.sh, FOREWARN_TEST_KAFKA=secure one node started by
`kafka.sh --secure` (SASL_SSL with SCRAM-SHA-512, its own CA, ACLs for
Forewarn's users only), and a bootstrap address runs the same tests against
an existing cluster; every test gets its own topic and group prefix, so runs
never see each other's data.

On the secured node every Kafka client logs in as user forewarn: the tests'
own clients through streams.kafka_security (set for this process here), and
every forewarn process a test starts through the FOREWARN_KAFKA_* settings
``helpers.forewarn_env`` adds.
"""

from __future__ import annotations

import os
import uuid

import pytest

from streams.embedded import EmbeddedBroker
from streams.kafka_node import KafkaNode


# The --secure cluster of this session (FOREWARN_TEST_KAFKA=secure), for tests that log in otherwise.
SECURE_CLUSTER: list = []


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    configured = os.environ.get("FOREWARN_TEST_KAFKA", "").strip()
    if configured == "secure":
        from streams.kafka_security import KafkaSecurity, use_security
        from streams.settings import Settings
        from tests.integration import helpers
        from tests.integration.apache_kafka import start_apache_kafka

        cluster = start_apache_kafka(tmp_path_factory.mktemp("secure-kafka"), brokers=1, secure=True)
        login = cluster.login_env("forewarn")
        helpers.KAFKA_LOGIN_ENV.update(login)
        use_security(Settings.from_env({"FOREWARN_KAFKA": cluster.bootstrap, **login}).kafka_security)
        SECURE_CLUSTER.append(cluster)
        try:
            yield cluster.bootstrap
        finally:
            use_security(KafkaSecurity())
            helpers.KAFKA_LOGIN_ENV.clear()
            SECURE_CLUSTER.clear()
            cluster.stop()
        return
    if configured == "apache":
        # Apache Kafka itself: one KRaft node resolved from Maven Central (deploy/kafka).
        from tests.integration.apache_kafka import start_apache_kafka

        cluster = start_apache_kafka(tmp_path_factory.mktemp("apache-kafka"), brokers=1)
        try:
            yield cluster.bootstrap
        finally:
            cluster.stop()
        return
    if configured == "memory":
        broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka") / "broker.log")
    elif configured and configured != "embedded":
        yield configured
        return
    else:
        broker = KafkaNode(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def secure_kafka(kafka_bootstrap):
    """The session's `kafka.sh --secure` cluster (an ApacheKafka); skips unless FOREWARN_TEST_KAFKA=secure."""
    if not SECURE_CLUSTER:
        pytest.skip("needs the secured cluster: FOREWARN_TEST_KAFKA=secure")
    return SECURE_CLUSTER[0]


@pytest.fixture
def fresh_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}-"


def pytest_collection_modifyitems(config, items):
    """With FOREWARN_TEST_KAFKA set, run only the tests that take their broker from it.

    The others (forewarn up, demo, the embedded broker itself) test the embedded
    default on purpose and already ran in the default run.
    """
    configured = os.environ.get("FOREWARN_TEST_KAFKA", "").strip()
    if not configured or configured == "embedded":
        return
    skip = pytest.mark.skip(reason="tests the embedded default; FOREWARN_TEST_KAFKA selects another broker")
    for item in items:
        if "tests/integration/" in str(item.fspath) and "kafka_bootstrap" not in getattr(item, "fixturenames", ()):
            item.add_marker(skip)
