"""The embedded broker starts, carries messages, takes Forewarn's topics and stops cleanly."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from streams.admin import delete_topics, ensure_topics
from streams.embedded import BrokerStartError, EmbeddedBroker
from streams.kafka_security import kafka_client_config
from streams.runner import RESET_ENTRIES, Stack
from streams.settings import Settings, SettingsError
from streams.topics import ALL_TOPICS, TopicSpec
from tests.unit.test_embedded_default import data_dir_with_everything

pytestmark = pytest.mark.integration


def _children_of_this_process() -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == os.getpid():
                children.append(int(entry.name))
    return children


def _port_open(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_produced_message_can_be_consumed(kafka_bootstrap, fresh_prefix):
    settings = Settings(topic_prefix=fresh_prefix, partitions=2)
    spec = TopicSpec("round-trip", "id", "", "internal")
    (topic,) = ensure_topics(settings, kafka_bootstrap, [spec])
    try:
        producer = Producer(kafka_client_config(kafka_bootstrap))
        producer.produce(topic, key=b"order-1", value=b"placed")
        assert producer.flush(10) == 0, "the message was not delivered within 10s"

        consumer = Consumer(kafka_client_config(kafka_bootstrap, {
            "group.id": settings.topic("round-trip-reader"),
            "auto.offset.reset": "earliest",
            # The embedded broker completes a group join only after about half
            # the session timeout; 6 s is the lowest Apache Kafka accepts.
            "session.timeout.ms": 6000,
        }))
        consumer.subscribe([topic])
        received = []
        deadline = time.monotonic() + 30
        try:
            while not received and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    received.append((message.key(), message.value()))
        finally:
            consumer.close()
        assert received == [(b"order-1", b"placed")]
    finally:
        delete_topics(kafka_bootstrap, [topic])


def test_ensure_topics_creates_every_topic_once_with_the_configured_partitions(
    kafka_bootstrap, fresh_prefix
):
    # Not the default of 4, so a topic created with broker defaults would show.
    settings = Settings(topic_prefix=fresh_prefix, partitions=3)
    expected = [fresh_prefix + spec.name for spec in ALL_TOPICS]
    try:
        created = ensure_topics(settings, kafka_bootstrap)
        assert created == expected

        metadata = AdminClient(kafka_client_config(kafka_bootstrap)).list_topics(timeout=10)
        partitions = {name: len(metadata.topics[name].partitions)
                      for name in expected if name in metadata.topics}
        assert partitions == {name: 3 for name in expected}

        assert ensure_topics(settings, kafka_bootstrap) == []
    finally:
        delete_topics(kafka_bootstrap, expected)


def test_stopping_the_broker_leaves_no_process_and_frees_the_port(tmp_path):
    before = set(_children_of_this_process())
    broker = EmbeddedBroker(tmp_path / "broker.log")
    with broker:
        bootstrap = broker.bootstrap
        pid = broker.pid
        assert pid in _children_of_this_process()
        assert _port_open(bootstrap)
    assert not broker.running
    assert set(_children_of_this_process()) <= before
    assert not Path(f"/proc/{pid}").exists()
    assert not _port_open(bootstrap)
    assert "listening on: tcp://" + bootstrap in (tmp_path / "broker.log").read_text()


def test_a_broker_that_exits_at_start_is_reported_with_its_log(tmp_path):
    fake = tmp_path / "fake-broker"
    fake.write_text("#!/bin/sh\necho 'cannot open storage: permission denied'\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    broker = EmbeddedBroker(tmp_path / "broker.log", binary=str(fake), start_timeout=10)
    with pytest.raises(BrokerStartError) as raised:
        broker.start()
    message = str(raised.value)
    assert "status 3" in message
    assert "cannot open storage: permission denied" in message
    assert not broker.running


def test_a_reset_stack_deletes_the_stack_data_but_not_the_demo_or_the_logs(tmp_path):
    settings = data_dir_with_everything(tmp_path).with_(embedded="memory")
    # A memory stack refuses a directory holding the Apache Kafka node's data unless told to reset it.
    with pytest.raises(SettingsError, match="FOREWARN_EMBEDDED=memory starts empty"):
        Stack(settings, workers=0, sink=False).start()
    assert (settings.data_dir / "kafka").exists()
    stack = Stack(settings, workers=0, sink=False, reset=True)
    try:
        stack.start()
        assert not any((settings.data_dir / entry).exists() for entry in RESET_ENTRIES if entry != "broker.log")
        assert (settings.data_dir / "demo" / "kafka").exists() and (settings.data_dir / "logs").exists()
    finally:
        stack.stop()

