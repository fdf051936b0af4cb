"""Creating Forewarn's topics before any worker starts, and deleting them in tests.

Topics are created up front, with the partition count and configuration that
``streams/topics.py`` declares, rather than left to broker auto-creation or to
each worker's own declaration: every co-partitioned topic must have the same
partition count, and the first process to touch a topic should not decide it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka_security import kafka_client_config
from streams.settings import Settings
from streams.topics import ALL_TOPICS, TopicSpec
from streams.words import counted

__all__ = ["ensure_topics", "delete_topics", "TopicAdminError"]

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT_S = 30.0


class TopicAdminError(RuntimeError):
    """A topic could not be created or deleted; the message names it."""


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient(kafka_client_config(bootstrap))


def ensure_topics(
    settings: Settings,
    bootstrap: str,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
) -> list[str]:
    """Create every topic in ``specs`` that does not exist yet; return the names created.

    Names carry ``settings.topic_prefix``. A topic that already exists is left
    as it is (a warning is logged if its partition count differs from
    ``settings.partitions``); any other failure raises ``TopicAdminError``
    naming the topic. Returns only once the created topics appear in metadata,
    so a worker started next finds them.
    """
    specs = list(specs)
    if not specs:
        return []
    admin = _admin(bootstrap)
    wanted = {
        settings.topic(spec.name): NewTopic(
            settings.topic(spec.name),
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config=spec.config(),
        )
        for spec in specs
    }
    futures = admin.create_topics(
        list(wanted.values()),
        operation_timeout=_REQUEST_TIMEOUT_S,
        request_timeout=_REQUEST_TIMEOUT_S,
    )
    created: list[str] = []
    existing: list[str] = []
    failures: list[str] = []
    for name, future in futures.items():
        error = _error_of(future)
        if error is None:
            created.append(name)
        elif error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            existing.append(name)
        else:
            failures.append(f"{name}: {_describe(error)}")
    if failures:
        raise TopicAdminError(
            f"could not create {counted(len(failures), 'topic')} on {bootstrap} "
            f"(partitions={settings.partitions}, replication_factor={settings.replication_factor}; "
            f"see FOREWARN_PARTITIONS / FOREWARN_REPLICATION_FACTOR):\n  " + "\n  ".join(failures)
        )
    # Keep the declaration order, which is the order people read in topics.py.
    created.sort(key=list(wanted).index)
    _wait_until_visible(admin, created, deadline=time.monotonic() + _REQUEST_TIMEOUT_S)
    _warn_on_partition_mismatch(admin, existing, settings.partitions)
    return created


def delete_topics(bootstrap: str, names: Iterable[str]) -> list[str]:
    """Delete the named topics; return the ones deleted. Missing topics are ignored."""
    names = list(names)
    if not names:
        return []
    # Hold the client while waiting: its futures fail with _DESTROY if it is
    # garbage-collected first.
    admin = _admin(bootstrap)
    futures = admin.delete_topics(
        names, operation_timeout=_REQUEST_TIMEOUT_S, request_timeout=_REQUEST_TIMEOUT_S
    )
    deleted: list[str] = []
    failures: list[str] = []
    for name, future in futures.items():
        error = _error_of(future)
        if error is None:
            deleted.append(name)
        elif error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            failures.append(f"{name}: {_describe(error)}")
    if failures:
        raise TopicAdminError(f"could not delete {counted(len(failures), 'topic')} on {bootstrap}:\n  "
                              + "\n  ".join(failures))
    return deleted


def _error_of(future) -> KafkaError | None:
    # exception() rather than result() in a try block: a raised exception
    # stays in the future with a traceback whose frames hold the caller and its
    # AdminClient, keeping the client's connections open until the next
    # garbage collection.
    exc = future.exception()
    if exc is None:
        return None
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return error
    return KafkaError(KafkaError._FAIL, str(exc))


def _describe(error: KafkaError) -> str:
    if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return (f"{error.name()}: the Kafka user may not create or change it; grant it the ACL, or create the "
                f"topics as a user who may (see deploy/kafka/README.md)")
    return f"{error.name()}: {error.str()}"


def _wait_until_visible(admin: AdminClient, names: list[str], deadline: float) -> None:
    # CreateTopics can return before every broker's metadata lists the topic;
    # a consumer that subscribes in that gap sees no partitions for it.
    missing = set(names)
    while missing:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TopicAdminError(
                f"created topics not visible in metadata after {_REQUEST_TIMEOUT_S:.0f}s: "
                + ", ".join(sorted(missing))
            )
        try:
            metadata = admin.list_topics(timeout=min(5.0, remaining))
        except KafkaException:
            continue
        missing = {
            name for name in missing
            if name not in metadata.topics
            or metadata.topics[name].error is not None
            or not metadata.topics[name].partitions
        }
        if missing:
            time.sleep(0.05)


def _warn_on_partition_mismatch(admin: AdminClient, names: list[str], partitions: int) -> None:
    # Co-partitioned joins need equal partition counts; an old topic with a
    # different count keeps working but routes keys elsewhere, so say so.
    if not names:
        return
    try:
        metadata = admin.list_topics(timeout=10.0)
    except KafkaException as exc:
        log.warning("could not read metadata to check existing topics: %s", exc)
        return
    for name in names:
        topic = metadata.topics.get(name)
        if topic is not None and topic.partitions and len(topic.partitions) != partitions:
            log.warning(
                "topic %s already exists with %s, not %d (FOREWARN_PARTITIONS); "
                "keys will not be co-partitioned with the other topics",
                name, counted(len(topic.partitions), "partition"), partitions,
            )


def describe_topics(settings: Settings, bootstrap: str, timeout: float = 10.0) -> list[dict]:
    """Every topic Forewarn declares, as the broker has it: exists, partitions, replication factor.

    One row per declared topic, in declaration order: ``name``, ``spec`` (the
    TopicSpec), ``exists``, ``partitions`` and ``replication`` (None when the
    topic does not exist). Raises KafkaException when the broker does not answer.
    """
    metadata = _admin(bootstrap).list_topics(timeout=timeout)
    rows = []
    for spec in ALL_TOPICS:
        name = settings.topic(spec.name)
        meta = metadata.topics.get(name)
        exists = meta is not None and meta.error is None
        partitions = len(meta.partitions) if exists else None
        replication = min((len(p.replicas) for p in meta.partitions.values()), default=0) if exists else None
        rows.append({"name": name, "spec": spec, "exists": exists, "partitions": partitions,
                     "replication": replication})
    return rows
