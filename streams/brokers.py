"""What a producer must know about the broker it talks to.

The in-memory broker (Tansu, FOREWARN_EMBEDDED=memory) advances a partition's high
watermark by one per record *batch* rather than per record: after one batch
of ten records a consumer is told the partition ends at offset 1. Consumers
that stop at the high watermark (table recovery from changelogs, `forewarn
alerts`, lag checks) would then miss data. Producers talking to it therefore
send one record per batch, which keeps the watermark exact; against Apache
Kafka they batch normally.

Workers let a fetch wait at most 100 ms for data, on every broker
(``WORKER_FETCH_MAX_WAIT_MS``).

The same broker completes a consumer group's first join only after half the
session timeout, so a worker with Faust's default (60 s) waits 30 s before it
reads anything. Workers use a 10 s session timeout there and 15 s elsewhere:
the session timeout is also how long a crashed worker's partitions wait before
another worker takes them over, and proactive alerts should not stall for the
45 s of Kafka's own default. FOREWARN_SESSION_TIMEOUT_MS overrides both.
"""

from __future__ import annotations

import functools
import os

from streams.kafka_security import kafka_client_config
from streams.settings import Settings

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

# Cluster ids that identify a Tansu broker: ours (streams.embedded) and Tansu's default.
_TANSU_CLUSTER_IDS = ("forewarn-", "tansu_cluster")


@functools.lru_cache(maxsize=16)
def single_record_batches(bootstrap: str) -> bool:
    """True when producers to `bootstrap` must send one record per batch (see the module doc).

    FOREWARN_SINGLE_RECORD_BATCHES=1 or 0 overrides the detection.
    """
    forced = os.environ.get("FOREWARN_SINGLE_RECORD_BATCHES", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        cluster_id = AdminClient(kafka_client_config(bootstrap)).list_topics(timeout=10).cluster_id or ""
    except KafkaException:
        return False
    return cluster_id.startswith(_TANSU_CLUSTER_IDS)


def confluent_producer_overrides(bootstrap: str) -> dict[str, object]:
    return {"batch.num.messages": 1} if single_record_batches(bootstrap) else {}


def faust_producer_overrides(bootstrap: str) -> dict[str, object]:
    # aiokafka closes a batch once it exceeds this many bytes; the first record always fits.
    return {"producer_max_batch_size": 1} if single_record_batches(bootstrap) else {}


# How long a worker's fetch may wait for data, on any broker (Faust's own: 1,500 ms).
#
# The client has at most one fetch in flight per broker, and a fetch asks only for the partitions
# that had nothing waiting to be processed when it was sent. A partition whose records arrive while
# that fetch waits on the others (a stage's output, read by the next stage on the same worker) is
# asked for only once it returns: up to the fetch's maximum wait later. With Faust's 1,500 ms, that
# stalled the worker benchmark's last hops for 1.3 s on Apache Kafka (`forewarn-task-requests`
# written, not read). The in-memory broker, besides, answers a fetch over many partitions only when
# its maximum wait is up, even when a record arrived at once (measured: about 485 ms per hop with
# 1,500 ms over 60 partitions, 14 ms with 100 ms). An idle worker then asks each broker ten times a
# second.
WORKER_FETCH_MAX_WAIT_MS = 100


def session_timeout_s(settings: Settings, bootstrap: str) -> float:
    if settings.session_timeout_ms:
        return settings.session_timeout_ms / 1000
    return 10.0 if single_record_batches(bootstrap) else 15.0
