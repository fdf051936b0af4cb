"""Direct delivery (streams.runtime.delivery): what the fetch loop does with each message it hands over.

A real ``faust.App`` (memory store, no broker connection) whose consumer's
fetch loop is run over one batch; only the broker calls are replaced (the
fetch, ``_wait_next_records``, and the highwater read, ``highwater``), as the
Faust fix tests replace them.
"""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types.tuples import TP, ConsumerMessage

from streams.runtime import delivery
from streams.runtime import faust_fixes as fixes
from tests.unit.test_faust_fixes import seek_to

fixes.install()
delivery.install()

DIRECT, OTHER = "orders", "elsewhere"


def make_app(name: str) -> faust.App:
    app = faust.App(name, broker="kafka://localhost:1", store="memory://", autodiscover=False, web_enabled=False)
    app.topics._acking_topics.update({DIRECT, OTHER})
    app.flow_control.resume()
    return app


def message(app: faust.App, offset: int, topic: str = DIRECT, generation: int | None = None) -> ConsumerMessage:
    return ConsumerMessage(topic, 0, offset, None, 0, [], b"k", b"v%d" % offset, None, tp=TP(topic, 0),
                           generation_id=app.consumer_generation_id if generation is None else generation)


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


def drain(app: faust.App, batch: list[ConsumerMessage], start: int = 0) -> None:
    """The rebalance's seek (every partition of `batch` read from `start`), then the fetch loop over `batch`."""
    drain_fetches(app, [batch], start)


def drain_fetches(app: faust.App, fetches: list[list[ConsumerMessage]], start: int = 0,
                  highwater: int = 1_000) -> list:
    """As `drain`, with one fetch per list of `fetches` (an empty list: a fetch that found nothing).

    Every partition's highwater reads `highwater`; returns the partitions whose highwater was read, in order.
    """
    consumer = app.consumer
    tps = {msg.tp: start for batch in fetches for msg in batch}
    seek_to(consumer, tps, earliest=tps)
    fetcher = _Fetcher()
    left = list(fetches)
    highwaters_read = []

    async def wait_next_records(timeout: float):
        records: dict = {}
        for msg in left.pop(0):
            records.setdefault(msg.tp, []).append(msg)
        if not left:
            fetcher._stopped.set()
        return records, None

    def read_highwater(tp):
        highwaters_read.append(tp)
        return highwater

    consumer._wait_next_records = wait_next_records
    consumer._to_message = lambda tp, record: record  # the fetched records are messages already
    consumer.highwater = read_highwater

    async def run() -> None:
        await consumer.perform_seek()
        await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=10)
        # Let the commits the loop started run.
        await asyncio.gather(*consumer.__dict__.get("_forewarn_idle_commits", ()))

    asyncio.run(run())
    return highwaters_read


def test_each_message_is_handled_in_order_tracked_while_it_runs_and_acknowledged_after():
    app = make_app("direct-order")
    seen = []

    def handler(msg):
        seen.append((msg.offset, msg.value, msg in app.consumer._unacked_messages, msg.acked))

    delivery.deliver_directly(app, DIRECT, handler)
    drain(app, [message(app, 0), message(app, 1), message(app, 2)])
    assert seen == [(0, b"v0", True, False), (1, b"v1", True, False), (2, b"v2", True, False)]
    assert not app.consumer._unacked_messages
    assert app.consumer._new_offset(TP(DIRECT, 0)) == 3


@pytest.mark.parametrize("why", ["older generation", "flow suspended"])
def test_a_message_skipped_for_a_rebalance_is_neither_handled_nor_acknowledged(why):
    app = make_app("direct-skip-" + why.replace(" ", "-"))
    seen = []
    delivery.deliver_directly(app, DIRECT, lambda msg: seen.append(msg.offset))
    if why == "older generation":
        batch = [message(app, 0), message(app, 1, generation=app.consumer_generation_id - 1), message(app, 2)]
    else:
        batch = [message(app, 0)]
    drain(app, batch)
    if why == "older generation":
        # Offset 1 is read again after the seek: nothing past it may be committed.
        assert seen == [0, 2]
        assert app.consumer._new_offset(TP(DIRECT, 0)) == 1
    else:
        app2 = make_app("direct-suspended")
        delivery.deliver_directly(app2, DIRECT, lambda msg: seen.append(("suspended", msg.offset)))
        app2.flow_control.suspend()
        drain(app2, [message(app2, 0), message(app2, 1)])
        assert ("suspended", 0) not in seen and ("suspended", 1) not in seen
        assert app2.consumer._new_offset(TP(DIRECT, 0)) is None


def test_a_handler_that_raises_leaves_its_message_unacknowledged_and_stops_the_loop():
    app = make_app("direct-raise")
    seen = []

    def handler(msg):
        if msg.offset == 1:
            raise RuntimeError("records were not written")
        seen.append(msg.offset)

    delivery.deliver_directly(app, DIRECT, handler)
    with pytest.raises(RuntimeError, match="records were not written"):
        drain(app, [message(app, 0), message(app, 1), message(app, 2)])
    assert seen == [0]
    assert app.consumer._new_offset(TP(DIRECT, 0)) == 1


def test_topics_without_a_direct_handler_keep_fausts_delivery():
    app = make_app("direct-other")
    direct, through_faust = [], []
    delivery.deliver_directly(app, DIRECT, lambda msg: direct.append(msg.offset))

    async def callback(msg):
        through_faust.append((msg.topic, msg.offset))

    app.consumer.callback = callback

    async def wait_first(delivered, suspended):
        # Faust races the callback against a flow-control event of its running services, which a
        # consumer that was never started cannot await: run the callback alone.
        suspended.close()
        await delivered

    app.consumer.wait_first = wait_first
    drain(app, [message(app, 0), message(app, 0, topic=OTHER), message(app, 1)])
    assert direct == [0, 1]
    assert through_faust == [(OTHER, 0)]


def record_commits(app: faust.App) -> list[int]:
    """Deliver `DIRECT` to a handler that does nothing, and record each commit's offset for its partition 0.

    What is acknowledged when a commit starts is what it may commit.
    """
    delivery.deliver_directly(app, DIRECT, lambda msg: None)
    commits = []

    async def commit(*args, **kwargs):
        commits.append(app.consumer._new_offset(TP(DIRECT, 0)))
        return True

    app.consumer.commit = commit
    return commits


def test_a_fetch_that_finds_nothing_after_handled_messages_starts_a_commit(monkeypatch):
    """Caught up: the loop commits at once rather than leave the work uncommitted until the commit timer."""
    monkeypatch.setattr(delivery, "IDLE_COMMIT_GAP_S", 0.0)
    app = make_app("direct-idle-commit")
    commits = record_commits(app)
    drain_fetches(app, [
        [message(app, 0), message(app, 1)],
        [message(app, 2)],  # still fetching messages: no commit yet
        [],  # caught up: a commit
        [],  # nothing handled since: no other
        [message(app, 3)],
        [],  # a commit of offset 3
    ])
    assert commits == [3, 4]


def test_commits_started_on_catching_up_are_spaced_out(monkeypatch):
    monkeypatch.setattr(delivery, "IDLE_COMMIT_GAP_S", 3600.0)
    app = make_app("direct-idle-gap")
    commits = record_commits(app)
    drain_fetches(app, [[message(app, 0)], [], [message(app, 1)], []])
    # The second is left to the commit timer.
    assert commits == [1]


def test_each_partitions_highwater_is_read_once_per_fetch_and_handed_to_the_handlers():
    app = make_app("direct-highwater")
    seen = []
    delivery.deliver_directly(app, DIRECT, lambda msg: seen.append(dict(delivery.batch_highwaters(app))))
    other = ConsumerMessage(DIRECT, 1, 0, None, 0, [], b"k", b"v", None, tp=TP(DIRECT, 1),
                            generation_id=app.consumer_generation_id)
    read = drain_fetches(app, [[message(app, 0), message(app, 1), other], [message(app, 2)]], highwater=7)
    assert read == [TP(DIRECT, 0), TP(DIRECT, 1), TP(DIRECT, 0)]
    assert seen[0] == {TP(DIRECT, 0): 7}  # partition 1 not yet reached in the first fetch
    assert seen[2] == {TP(DIRECT, 0): 7, TP(DIRECT, 1): 7}
    assert seen[3] == {TP(DIRECT, 0): 7}  # the second fetch: its own partitions only
