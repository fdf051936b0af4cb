"""Fixtures for tests that need a real Kafka-protocol broker.

By default one embedded broker is started for the whole session. Set
FOREWARN_TEST_KAFKA to a bootstrap address to run the same tests against an
existing cluster instead; every test gets its own topic and group prefix, so
runs never see each other's data.
"""

from __future__ import annotations

import os
import uuid

import pytest

from streams.embedded import EmbeddedBroker


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    configured = os.environ.get("FOREWARN_TEST_KAFKA", "").strip()
    if configured and configured != "embedded":
        yield configured
        return
    broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka") / "broker.log")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def fresh_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}-"
