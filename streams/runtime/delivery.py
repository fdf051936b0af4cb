"""Direct delivery: the stages' input messages go from Faust's fetch loop straight to the runtime.

Faust hands each fetched message to an agent through a chain built for
asynchronous agents: the fetch loop awaits the conductor's callback for it
(racing a task against the flow-control event), the conductor decodes it
into an ``Event`` and queues it on the topic's channel, and the agent's
``Stream`` takes it from that queue in another task, tracks it, calls the
sensors, yields it and acknowledges it. A stage applies an event
synchronously (``streams.runtime.worker``), so none of that waiting buys
anything, and measured in the worker it cost more than the detection itself.

``install`` replaces ``Consumer._drain_messages`` (the fetch loop) with one
that, for a message of a topic given to ``deliver_directly``, does what the
agent's stream would have done, in the same order, without leaving the
loop: it skips a message fetched in an older consumer generation or while
flow is suspended for a rebalance (not tracked, not acknowledged, not
counted as read: it is read again after the rebalance's seek), tracks it as
in flight, calls the handler, and acknowledges it once the handler
returns. A handler that raises leaves its message unacknowledged, so its
offset is never committed, and stops the worker as a crashed agent would.
Faust's ``getmany`` (the fetch, the round robin over partitions, the
checks that flow is on and the generation unchanged) is inline in the loop,
with the same checks: one pass over a fetch's records rather than an
asynchronous generator step per message, and each partition's highwater
read once per fetch (``batch_highwaters``), not per message.
Everything else the loop does (gaps, messages of other topics through the
conductor) is Faust's own, but for one thing: it never stops to commit
after ``broker_commit_every`` messages. Such a commit waits until the broker
has acknowledged everything the worker sent, and the loop read nothing
meanwhile (measured: the worker benchmark's events processed stood still at
10,000, 20,000, ...). Commits are made by Faust's commit timer
(``broker_commit_interval``) in a task of their own, while the loop goes
on, and by the loop itself once it has caught up: when a fetch finds
nothing for ``IDLE_AFTER_S`` after messages were handled, it starts a commit
in a task (at most one every ``IDLE_COMMIT_GAP_S``). A burst of events is
then committed a fraction of a second after its last event, not up to a
commit interval later: the group's lag reaches zero as soon as the work is
done, and a worker that crashes then has less to read again. Under a steady
load a fetch rarely comes back empty, and the timer commits as before. The
loop lets other tasks run (timers, commits) every ``YIELD_EVERY`` messages.

Written against faust-streaming ``faust_fixes.FAUST_VERSION``, whose
version check it shares.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from streams.runtime import faust_fixes

# Messages handled between two yields to the event loop.
YIELD_EVERY = 100
# A fetch that waits this long for messages and gets none finds the worker caught up.
IDLE_AFTER_S = 0.05
# Commits started by the loop on catching up are at least this far apart.
IDLE_COMMIT_GAP_S = 0.2

Handler = Callable[[object], None]


def deliver_directly(app, topic: str, handler: Handler) -> None:
    """Hand every message of `topic` (its full name) to `handler`, synchronously, in the fetch loop."""
    handlers = app.__dict__.setdefault("_forewarn_direct", {})
    handlers[topic] = handler


async def drain_messages(self, fetcher) -> None:
    """``Consumer._drain_messages`` with direct delivery (see the module's docstring)."""
    handlers: dict[str, Handler] = self.app.__dict__.get("_forewarn_direct") or {}
    if not handlers:
        return await faust_fixes.original("Consumer._drain_messages")(self, fetcher)
    from faust.transport.consumer import CONSUMER_FETCHING

    app = self.app
    flow = app.flow_control
    callback = self.callback
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offsets = self._read_offset
    unacked = self._unacked_messages
    ack = self.ack
    to_message = self._to_message
    commit_every = self._commit_every
    acks_enabled_for = app.topics.acks_enabled_for
    track_end_offset = app.monitor.track_tp_end_offset
    highwaters = batch_highwaters(app)
    since_yield = 0
    handled = 0  # messages handled since the loop last started a commit
    last_idle_commit = float("-inf")
    loop = asyncio.get_running_loop()
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            self.diag.set_flag(CONSUMER_FETCHING)
            # Faust's ``getmany``, inline: one pass over the fetched records instead of an
            # asynchronous generator step per message, and each partition's highwater read
            # once per fetch instead of once per message.
            records, active_partitions = await self._wait_next_records(IDLE_AFTER_S)
            generation_id = app.consumer_generation_id
            await self.sleep(0)
            if self.should_stop:
                continue
            fetched = False
            if records is not None:
                if not self.flow_active:
                    # As Faust's getmany: flow stopped between the fetch and here.
                    try:
                        await self.perform_seek()
                    except Exception as exc:  # noqa: BLE001 - logged as Faust does
                        self.log.warning(f"exception performing seek when flow not active {exc}")
                    records = {}
                highwaters.clear()
                buffered = self._buffered_partitions
                for tp, record in self.scheduler.iterate(records):
                    if not self.flow_active or app.consumer_generation_id != generation_id:
                        break
                    if not (active_partitions is None or tp in active_partitions or tp in buffered):
                        continue
                    if tp not in highwaters:
                        highwaters[tp] = self.highwater(tp)
                        track_end_offset(tp, highwaters[tp])
                    message = to_message(tp, record)
                    fetched = True
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    read = read_offsets[tp]
                    if read is not None and offset < read:
                        continue  # read already in this assignment (Faust drops these the same way)
                    gap = offset - (read or 0)
                    if gap > 1 and read and acks_enabled_for(message.topic):
                        await self._add_gap(tp, read + 1, offset)
                    handler = handlers.get(message.topic)
                    if handler is None:
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        if not flow.is_active() or message.generation_id != app.consumer_generation_id:
                            continue
                        message.tracked = True
                        unacked.add(message)
                        handler(message)
                        ack(message)
                        handled += 1
                    read_offsets[tp] = offset
            if (not fetched and handled and self._commit_fut is None
                    and loop.time() - last_idle_commit >= IDLE_COMMIT_GAP_S):
                handled, last_idle_commit = 0, loop.time()
                _start_commit(self)
            self.diag.unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)


def batch_highwaters(app) -> dict:
    """{tp: highwater} of the partitions of the fetch being handled, read as the fetch loop started on it.

    The next offset the broker had for the partition then: a handler's message
    with ``offset + 1`` below it has more waiting behind it. The same dict for
    the app's whole life, refilled at each fetch.
    """
    return app.__dict__.setdefault("_forewarn_highwaters", {})


def _start_commit(consumer) -> None:
    """Commit in a task of its own, as Faust's commit timer does; a commit that raises crashes the consumer as there."""

    async def commit() -> None:
        try:
            await consumer.commit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the service, which stops the worker
            await consumer.crash(exc)

    task = asyncio.ensure_future(commit())
    # Kept until done: the event loop holds tasks only weakly.
    pending = consumer.__dict__.setdefault("_forewarn_idle_commits", set())
    pending.add(task)
    task.add_done_callback(pending.discard)


def last_handled(consumer, tp) -> int | None:
    """The offset of the last message of `tp` handled in this assignment (None: none yet).

    Faust's read offset, which the direct fetch loop sets once a message is
    handled and the rebalance's seek sets to one before the start.
    """
    return consumer._read_offset.get(tp)


async def positions_and_highwaters(consumer, tps) -> dict:
    """{tp: (position, highwater)} of the partitions of `tps` still assigned, read in one call.

    Faust asks its client thread for one position per call; asked for every
    partition of a worker in turn, each answer waited for that thread to get
    the interpreter, and the fetch loop's own calls to it queued behind them.
    Here they are read together, in that thread.
    """
    thread = consumer._thread
    client = thread._ensure_consumer()

    async def read() -> dict:
        assigned = client.assignment()
        out = {}
        for tp in tps:
            if tp in assigned:  # a rebalance may have revoked it: the client refuses to answer for it
                out[tp] = (await client.position(tp), client.highwater(tp))
        return out

    return await thread.call_thread(read)


def install() -> None:
    """Replace Faust's fetch loop (once); topics without a direct handler keep Faust's delivery."""
    faust_fixes.check_faust_version()
    from faust.transport.consumer import Consumer

    if "Consumer._drain_messages" not in faust_fixes.ORIGINALS:
        faust_fixes.ORIGINALS["Consumer._drain_messages"] = Consumer.__dict__["_drain_messages"]
        Consumer._drain_messages = drain_messages
