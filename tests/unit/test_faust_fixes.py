"""Each fix in streams.runtime.faust_fixes: the defect shown against the installed Faust, then closed.

Every test builds a real ``faust.App`` (memory store, no broker connection)
and drives its consumer's bookkeeping directly; the unpatched methods come
from ``faust_fixes.original``.
"""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types.tuples import TP, ConsumerMessage

from streams.runtime import faust_fixes as fixes

fixes.install()

TOPIC = "orders"
TP0 = TP(TOPIC, 0)


def make_app(name: str = "fixes") -> faust.App:
    app = faust.App(name, broker="kafka://localhost:1", store="memory://", autodiscover=False,
                    web_enabled=False)
    app.topics._acking_topics.add(TOPIC)
    return app


def message(app: faust.App, offset: int, *, tracked: bool = True, generation: int | None = None) -> ConsumerMessage:
    msg = ConsumerMessage(TOPIC, 0, offset, None, 0, [], b"k", b"v", None, tp=TP0,
                          generation_id=app.consumer_generation_id if generation is None else generation)
    msg.tracked = tracked
    return msg


def deliver(app: faust.App, offset: int) -> ConsumerMessage:
    """A message handed to a stream: tracked and waiting to be acknowledged."""
    msg = message(app, offset)
    app.consumer._unacked_messages.add(msg)
    return msg


def seek_to(consumer, committed: dict, earliest: dict | None = None) -> list:
    """Stub the broker calls of perform_seek; returns the explicit seeks made."""
    seeks = []

    async def seek_to_committed():
        return committed

    async def earliest_offsets(*tps):
        return {tp: (earliest or {})[tp] for tp in tps}

    async def _seek(tp, offset):
        seeks.append((tp, offset))

    consumer.seek_to_committed = seek_to_committed
    consumer.earliest_offsets = earliest_offsets
    consumer._seek = _seek
    return seeks


def test_install_refuses_another_faust_version_and_patches_once():
    with pytest.raises(RuntimeError, match=r"faust-streaming 0\.15\.3.*faust-streaming 0\.16\.0"):
        fixes.check_faust_version("0.16.0")
    fixes.check_faust_version()  # the installed one is the pinned one
    before = dict(fixes.ORIGINALS)
    fixes.install()
    fixes.install(make_app("twice"))
    assert fixes.ORIGINALS == before
    from faust.transport.consumer import Consumer

    assert Consumer._new_offset is fixes.new_offset
    assert fixes.ORIGINALS["Consumer._new_offset"] is not fixes.new_offset


def test_install_refuses_exactly_once():
    app = faust.App("eos", broker="kafka://localhost:1", store="memory://", autodiscover=False,
                    web_enabled=False, processing_guarantee="exactly_once")
    with pytest.raises(RuntimeError, match="processing_guarantee"):
        fixes.install(app)


# ---------------------------------------------------------------- fix 1
def test_a_commit_never_passes_the_message_still_in_an_agent():
    app = make_app()
    consumer = app.consumer
    seek_to(consumer, {TP0: 2585})
    asyncio.run(consumer.perform_seek())
    slow = deliver(app, 2585)  # still in an agent
    for offset in range(2586, 2590):
        assert consumer.ack(deliver(app, offset))

    # Faust's own computation commits past the message still being processed (issue 606).
    acked_copy = list(consumer._acked[TP0])
    assert fixes.original("Consumer._new_offset")(consumer, TP0) == 2590
    consumer._acked[TP0][:] = acked_copy  # the original removed them while computing
    consumer._acked_index[TP0].update(acked_copy)

    assert consumer._new_offset(TP0) is None
    assert consumer.ack(slow)
    assert consumer._new_offset(TP0) == 2590


def test_a_gap_before_a_message_does_not_count_that_message_as_done():
    app = make_app()
    consumer = app.consumer
    seek_to(consumer, {TP0: 11})
    asyncio.run(consumer.perform_seek())
    # 11 and 12 hold no record (compaction, transaction markers); 13 is in an agent, 14 is finished.
    in_agent = deliver(app, 13)
    consumer.ack(deliver(app, 14))

    # Faust's fetch loop keeps the committed offset (11) as the last one read, and so calls (12, 13).
    asyncio.run(fixes.original("Consumer._add_gap")(consumer, TP0, 12, 13))
    assert sorted((iv.begin, iv.end) for iv in consumer._gap[TP0]) == [(12, 14)]  # 13 marked as done
    assert fixes.original("Consumer._new_offset")(consumer, TP0) == 15

    consumer._gap.pop(TP0)
    consumer._acked[TP0][:] = [14]
    consumer._acked_index[TP0].add(14)
    assert consumer._read_offset[TP0] == 10  # after the patched seek: one before the start
    asyncio.run(consumer._add_gap(TP0, 11, 13))
    assert sorted((iv.begin, iv.end) for iv in consumer._gap[TP0]) == [(11, 13)]
    assert consumer._new_offset(TP0) == 13  # up to, not past, the message in the agent
    consumer.ack(in_agent)
    assert consumer._new_offset(TP0) == 15


def test_committable_offset_is_contiguous_from_the_start_and_capped_by_work_in_flight():
    assert fixes.committable_offset(10, [10, 11, 12]) == 13
    assert fixes.committable_offset(10, [11, 12]) is None  # 10 not finished
    assert fixes.committable_offset(10, [12], gaps=[(10, 12)]) == 13
    assert fixes.committable_offset(10, [10, 11, 12], in_flight_floor=11) == 11
    assert fixes.committable_offset(None, [10, 11]) is None
    assert fixes.committable_offset(0, [0, 1]) == 2  # a start of 0 is a known start


# ---------------------------------------------------------------- fix 2
def test_nothing_is_committed_while_the_start_of_a_partition_is_unknown():
    app = make_app()
    consumer = app.consumer
    # After a revocation Faust forgets the committed offset; records fetched from the previous
    # generation's position (50..54) are processed before the new generation's seek to 40.
    for offset in range(50, 55):
        consumer.ack(deliver(app, offset))
    assert consumer._committed_offset[TP0] is None
    acked_copy = list(consumer._acked[TP0])
    assert fixes.original("Consumer._new_offset")(consumer, TP0) == 55  # 40..49 never processed
    consumer._acked[TP0][:] = acked_copy

    assert consumer._new_offset(TP0) is None
    seek_to(consumer, {TP0: 40})
    asyncio.run(consumer.perform_seek())
    assert consumer._new_offset(TP0) is None  # acks from before the seek are dropped
    for offset in range(40, 45):
        consumer.ack(deliver(app, offset))
    assert consumer._new_offset(TP0) == 45


def test_a_partition_never_committed_starts_at_its_earliest_offset_and_is_sought_there():
    app = make_app()
    consumer = app.consumer
    seeks = seek_to(consumer, {TP0: None}, earliest={TP0: 7})
    asyncio.run(consumer.perform_seek())
    assert seeks == [(TP0, 7)]
    consumer.ack(deliver(app, 8))
    assert consumer._new_offset(TP0) is None
    consumer.ack(deliver(app, 7))
    assert consumer._new_offset(TP0) == 9


def test_stream_partitions_are_resumed_only_once_their_start_is_known():
    app = make_app()
    consumer = app.consumer
    consumer.pause_partitions({TP0})
    fixes.original("Consumer.resume_partitions")(consumer, {TP0})
    assert TP0 in consumer._active_partitions  # Faust fetches it before the seek (issue 216)

    consumer.pause_partitions({TP0})
    consumer.resume_partitions({TP0})
    assert TP0 not in consumer._active_partitions
    seek_to(consumer, {TP0: 40})
    asyncio.run(consumer.perform_seek())
    assert TP0 in consumer._active_partitions


# ---------------------------------------------------------------- fix 3
def test_skipped_events_are_not_acknowledged_as_processed():
    app = make_app()
    consumer = app.consumer
    seek_to(consumer, {TP0: 5})
    asyncio.run(consumer.perform_seek())
    app.consumer_generation_id = 3
    old = message(app, 5, generation=2)  # fetched before the rebalance, skipped by the stream
    assert fixes.original("Consumer.ack")(consumer, old)  # Faust records it as done
    assert fixes.original("Consumer._new_offset")(consumer, TP0) == 6

    asyncio.run(consumer.perform_seek())
    assert not consumer.ack(message(app, 5, generation=2))
    app.flow_control.suspend()
    assert not consumer.ack(message(app, 5, tracked=False))  # skipped while flow is suspended
    assert consumer._new_offset(TP0) is None
    app.flow_control.resume()
    assert consumer.ack(message(app, 5, tracked=False))  # e.g. a message that failed to decode
    assert consumer._new_offset(TP0) == 6


def test_every_acknowledgement_goes_through_the_consumer():
    import faust.streams

    assert faust.streams._CStreamIterator is None


# ---------------------------------------------------------------- fix 4
class HeldSend:
    """Records queued in Faust's producer buffer whose hand-over to aiokafka waits for ``release``."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent = 0

    def future(self):
        outer = self

        class Channel:
            async def publish_message(self, fut, wait=False):
                await outer.release.wait()
                outer.sent += 1

        class Message:
            channel = Channel()

        class Fut:
            message = Message()

        return Fut()


def test_the_flush_before_a_commit_waits_for_every_queued_record():
    async def scenario():
        app = make_app()
        buffer = app.producer.buffer
        await buffer.start()
        held = HeldSend()
        try:
            for _ in range(3):
                buffer.put(held.future())
            await fixes.original("ProducerBuffer.flush")(buffer)  # gives up after 0.1 s
            assert held.sent == 0 and buffer.size >= 2

            flushing = asyncio.ensure_future(buffer.flush())
            await asyncio.sleep(0)
            assert not flushing.done()
            held.release.set()
            await asyncio.wait_for(flushing, timeout=10)
            assert held.sent == 3 and buffer.size == 0
        finally:
            held.release.set()
            await buffer.stop()

    asyncio.run(scenario())


def test_a_flush_that_does_not_finish_in_time_stops_the_commit():
    async def scenario():
        app = make_app()
        buffer = app.producer.buffer
        await buffer.start()
        held = HeldSend()
        try:
            buffer.put(held.future())
            with pytest.raises(fixes.BufferFlushTimeout):
                await buffer.flush(timeout=0.2)
            assert not await fixes.flush_producer(app, timeout=0.2)
        finally:
            held.release.set()
            await buffer.stop()

    asyncio.run(scenario())


# ---------------------------------------------------------------- fix 5
def committing_consumer(app):
    consumer = app.consumer
    seek_to(consumer, {TP0: 40})
    asyncio.run(consumer.perform_seek())
    commits = []

    async def _commit(offsets):
        commits.append(("commit", dict(offsets)))
        return True

    consumer._commit = _commit
    consumer.assignment = lambda: {TP0}
    return consumer, commits


def test_hooks_run_between_the_snapshot_and_the_commit_of_that_snapshot():
    app = make_app()
    consumer, calls = committing_consumer(app)
    for offset in range(40, 45):
        consumer.ack(deliver(app, offset))

    async def flush_outputs():
        calls.append(("hook", None))
        consumer.ack(deliver(app, 45))  # acknowledged while the runtime flushes: not in this commit

    fixes.register_before_commit(app, flush_outputs)
    assert asyncio.run(consumer.commit())
    assert calls == [("hook", None), ("commit", {TP0: 45})]
    assert consumer._committed_offset[TP0] == 45
    assert asyncio.run(consumer.commit())
    assert calls[-1] == ("commit", {TP0: 46})


def test_a_failing_hook_stops_the_commit_and_loses_no_acknowledgement():
    app = make_app()
    consumer, calls = committing_consumer(app)
    for offset in range(40, 45):
        consumer.ack(deliver(app, offset))
    failing = True

    async def flush_outputs():
        if failing:
            raise ConnectionError("broker unreachable")

    fixes.register_before_commit(app, flush_outputs)
    assert not asyncio.run(consumer.commit())
    assert calls == []
    failing = False
    assert asyncio.run(consumer.commit())
    assert calls == [("commit", {TP0: 45})]


def test_a_rebalance_during_the_hooks_drops_the_commit():
    app = make_app()
    consumer, calls = committing_consumer(app)
    for offset in range(40, 45):
        consumer.ack(deliver(app, offset))

    async def rebalance():
        app.consumer_generation_id += 1

    fixes.register_before_commit(app, rebalance)
    assert not asyncio.run(consumer.commit())
    assert calls == []


def test_fetch_max_wait_is_set_on_the_consumer_faust_builds_and_only_for_that_app():

    async def build() -> tuple[int, int]:
        tuned = faust.App("t-fetch-wait", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
        fixes.set_fetch_max_wait(tuned, 100)
        plain = faust.App("t-fetch-default", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
        consumers = [app.consumer._thread._create_worker_consumer(app.transport) for app in (tuned, plain)]
        waits = tuple(c._fetch_max_wait_ms for c in consumers)
        for consumer in consumers:
            await consumer.stop()
        return waits

    # Faust's own value is 1,500 ms; only the app it was set on gets 100.
    assert asyncio.run(build()) == (100, 1500)
