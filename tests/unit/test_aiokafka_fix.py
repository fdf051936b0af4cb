"""aiokafka issue 1038 under uvloop, on the installed versions: a request sent on a connection whose transport is closed.

A real ``AIOKafkaConnection`` on a real loopback socket, on a uvloop event
loop; only the connection's broker handshake is skipped (its reader and
writer are set to the socket's). The transport is then closed, as when a
broker goes away, and a request is sent before aiokafka has heard of it.
"""

from __future__ import annotations

import asyncio

import pytest

uvloop = pytest.importorskip("uvloop")

from aiokafka import errors  # noqa: E402
from aiokafka.conn import AIOKafkaConnection  # noqa: E402
from aiokafka.protocol.admin import ApiVersionRequest  # noqa: E402

from streams import runner  # noqa: E402


def send_on_closed_transport() -> tuple[BaseException | None, bool]:
    """(what `send` raised, whether the connection says it is connected afterwards)."""

    async def run():
        server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            conn = AIOKafkaConnection("127.0.0.1", port)
            conn._reader, conn._writer = reader, writer
            # A connected connection reads responses in a task of its own, which closing it cancels.
            reading = conn._read_task = asyncio.ensure_future(asyncio.sleep(3600))
            writer.transport.close()
            await asyncio.sleep(0.05)  # the loop closes the socket's handle
            raised = None
            try:
                pending = conn.send(ApiVersionRequest())
                if asyncio.iscoroutine(pending):
                    pending.close()
            except BaseException as exc:  # noqa: BLE001 - what it raises is what is checked
                raised = exc
            connected = conn.connected()
            reading.cancel()
            return raised, connected
        finally:
            server.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as loop_runner:
        return loop_runner.run(run())


def original_send():
    send = AIOKafkaConnection.send
    if getattr(send, "forewarn_fix", False):
        pytest.skip("the fix is installed in this process already")
    return send


def test_the_defect_a_send_on_a_closed_transport_raises_runtime_error_under_uvloop(monkeypatch):
    monkeypatch.setattr(AIOKafkaConnection, "send", original_send())
    raised, _ = send_on_closed_transport()
    # What aiokafka's callers do not retry on: it crashed a worker's offset commit.
    assert isinstance(raised, RuntimeError) and "closed" in str(raised)


def test_with_the_fix_it_is_the_connection_error_callers_retry_on(monkeypatch):
    monkeypatch.setattr(AIOKafkaConnection, "send", original_send())
    runner.fix_aiokafka_send_on_closed_connection()
    runner.fix_aiokafka_send_on_closed_connection()  # once only
    assert AIOKafkaConnection.send.forewarn_fix
    raised, connected = send_on_closed_transport()
    assert isinstance(raised, errors.KafkaConnectionError) and raised.retriable
    assert not connected
