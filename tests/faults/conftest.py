"""Fault tests: a three-broker Apache Kafka cluster, brokers and workers killed mid-stream.

They need a JDK and Maven Central (Apache Kafka is resolved with Maven on first
use) and take many minutes, so they run only when FOREWARN_TEST_FAULTS=1, as
`.ci/run` sets it. With it set nothing here is skipped: a cluster that cannot
start is an error, never a silent pass.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FOREWARN_TEST_FAULTS") == "1":
        return
    skip = pytest.mark.skip(reason="fault tests run with FOREWARN_TEST_FAULTS=1 (they start a 3-broker cluster)")
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    from tests.integration.apache_kafka import start_apache_kafka

    handle = start_apache_kafka(tmp_path_factory.mktemp("kafka3"), brokers=3)
    try:
        yield handle
    finally:
        handle.stop()
