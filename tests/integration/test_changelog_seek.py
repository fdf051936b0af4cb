"""Table recovery reads a changelog partition with no usable offset from its beginning."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer
from faust.tables.recovery import Recovery

from streams.admin import delete_topics, ensure_topics
from streams.kafka_security import kafka_client_config
from streams.runtime.faust_fixes import guard_changelog_seeks
from streams.settings import Settings
from streams.topics import TopicSpec

pytestmark = pytest.mark.integration


class SeekWaiting:
    """The one consumer call recovery's seek makes (`seek_wait`), on a real aiokafka consumer."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def seek_wait(self, offsets) -> None:
        for tp, offset in offsets.items():
            self.consumer.seek(tp, offset)
        await asyncio.gather(*(self.consumer.position(tp) for tp in offsets))


def test_a_changelog_partition_assigned_mid_recovery_is_read_from_its_beginning(kafka_bootstrap, fresh_prefix):
    settings = Settings(topic_prefix=fresh_prefix, partitions=2)
    (topic,) = ensure_topics(settings, kafka_bootstrap, [TopicSpec("sku-changelog", "sku", "", "internal")])
    try:
        producer = Producer(kafka_client_config(kafka_bootstrap))
        for n in range(3):
            producer.produce(topic, key=b"sku-1", value=f"state {n}".encode(), partition=0)
        assert producer.flush(10) == 0, "the changelog records were not delivered within 10s"
        guard_changelog_seeks()
        guard_changelog_seeks()  # installing twice wraps once
        assert asyncio.run(_recover_one_partition(kafka_bootstrap, topic)) == (-1, 0, [b"state 0", b"state 1", b"state 2"])
    finally:
        delete_topics(kafka_bootstrap, [topic])


async def _recover_one_partition(bootstrap: str, topic: str):
    tp = TopicPartition(topic, 0)
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.kafka_security import faust_credentials

    # The same login as the workers' aiokafka clients (the secured test cluster's, or none).
    login = credentials_to_aiokafka_auth(faust_credentials())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **login)
    await consumer.start()
    try:
        consumer.assign([tp])
        # What recovery holds for a standby partition added after its offsets were built.
        offsets = Counter({tp: None})
        await Recovery._seek_offsets(None, SeekWaiting(consumer), {tp}, offsets, "standby")
        position = await consumer.position(tp)
        values = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(values) < 3:
            assert asyncio.get_running_loop().time() < deadline, f"only {values} read from the changelog in 30s"
            batch = await consumer.getmany(tp, timeout_ms=1000)
            values += [record.value for record in batch.get(tp, [])]
        return offsets[tp], position, values
    finally:
        await consumer.stop()
