"""The runtime's output: nothing counts as written until the broker acknowledged it."""

import asyncio

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
        assert len(output.bulk_producer) == 1 and len(output.producer) == 0
    finally:
        output.producer.purge()
        output.bulk_producer.purge()
        output.close(timeout_s=0)
