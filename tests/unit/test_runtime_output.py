"""The runtime's output: nothing counts as written until the broker acknowledged it."""

import asyncio
import time

import pytest

from streams.runtime.output import Output, OutputFailed


def unreachable_output() -> Output:
    # Nothing listens on port 1: records stay queued, never acknowledged.
    return Output("127.0.0.1:1")


def test_settled_returns_at_once_when_nothing_was_sent():
    output = unreachable_output()
    try:
        asyncio.run(output.settled(timeout_s=1))
    finally:
        output.producer.purge()
        output.bulk_producer.purge()
        output.close(timeout_s=0)


def test_records_not_acknowledged_make_settled_fail_so_their_offsets_are_not_committed():
    output = unreachable_output()
    try:
        output.send("t", b"k", b"v")
        with pytest.raises(OutputFailed, match="1 record not acknowledged"):
            asyncio.run(output.settled(timeout_s=0.5))
        assert output.sent == 1 and output.delivered == 0
    finally:
        output.producer.purge()
        output.bulk_producer.purge()
        output.close(timeout_s=0)


def test_a_changelog_record_not_acknowledged_holds_the_commit_as_any_other():
    # Changelog records travel on a producer of their own; settled() waits for both.
    output = unreachable_output()
    try:
        output.send("changelog", b"k", b"v", bulk=True)
        with pytest.raises(OutputFailed, match="1 record not acknowledged"):
            asyncio.run(output.settled(timeout_s=0.5))
        # Which producer holds it: purged, a record is reported failed at once by the producer it is on
        # (on the other it would wait out its delivery timeout, minutes). The length of a producer's
        # queue is not asked: it counts the client's own requests too.
        output.bulk_producer.purge()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not output.failures:
            time.sleep(0.02)
        assert len(output.failures) == 1 and output.failures[0].startswith("changelog[")
    finally:
        output.producer.purge()
        output.bulk_producer.purge()
        output.close(timeout_s=0)


@pytest.mark.parametrize("bulk", [False, True])
def test_each_producer_queues_at_most_its_bound_of_unacknowledged_bytes(bulk):
    """A worker reading faster than the broker takes its writes must be held back, not queue without end.

    librdkafka's default bound is 1 GB per producer, which a million-order replay filled
    with hundreds of megabytes the worker's memory then kept.
    """
    from streams.runtime.output import QUEUE_MAX_KBYTES

    output = unreachable_output()
    producer = output.bulk_producer if bulk else output.producer
    value = b"x" * 1024
    queued = 0
    try:
        with pytest.raises(BufferError):
            # Ends on the bound; the range's end is far past it, so reaching it fails the test.
            for _ in range(4 * QUEUE_MAX_KBYTES):
                producer.produce("t", value, b"k")
                queued += len(value)
        assert QUEUE_MAX_KBYTES * 1024 // 2 < queued <= QUEUE_MAX_KBYTES * 1024
    finally:
        output.producer.purge()
        output.bulk_producer.purge()
        output.close(timeout_s=0)
