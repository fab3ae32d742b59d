"""ShutdownCoordinator against real asyncio servers and small protocol-level connections."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from mqttgate.proxy.shutdown import ShutdownCoordinator

from tests.ops.support import RunLoop

DISCONNECT_SERVER_SHUTTING_DOWN = b"\xe0\x01\x8b"  # MQTT 5.0 DISCONNECT, reason 0x8B


class FakeConnection(asyncio.Protocol):
    """Behaves like a proxy session as far as shutdown is concerned.

    ``flush_delay``: how long its "in-flight upstream data" takes to drain after
    begin_shutdown; None means it never drains (a stuck upstream) and must be aborted.
    """

    def __init__(self, coordinator: ShutdownCoordinator, flush_delay: float | None) -> None:
        self.coordinator = coordinator
        self.flush_delay = flush_delay
        self.transport: asyncio.Transport | None = None
        self.received_after_shutdown = b""
        self.stopping = False
        self.aborted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave like one
        self.transport = cast(asyncio.Transport, transport)
        self.coordinator.register(self)

    def data_received(self, data: bytes) -> None:
        if self.stopping:
            self.received_after_shutdown += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.coordinator.unregister(self)

    def begin_shutdown(self) -> None:
        assert self.transport is not None
        self.stopping = True
        self.transport.write(DISCONNECT_SERVER_SHUTTING_DOWN)
        self.transport.pause_reading()
        if self.flush_delay is not None:
            asyncio.get_running_loop().call_later(self.flush_delay, self.transport.close)

    def abort(self) -> None:
        self.aborted = True
        assert self.transport is not None
        self.transport.abort()


async def start(coordinator: ShutdownCoordinator, delays: list[float | None]) -> tuple[Any, list]:
    conns: list[FakeConnection] = []
    pending = list(delays)

    def factory() -> FakeConnection:
        conn = FakeConnection(coordinator, pending.pop(0))
        conns.append(conn)
        return conn

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, conns


async def read_all(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b"<reset>"


def test_connections_get_disconnect_and_close_within_grace(run: RunLoop) -> None:
    async def main() -> None:
        coordinator = ShutdownCoordinator()
        server, conns = await start(coordinator, [0.05, 0.1])
        port = server.sockets[0].getsockname()[1]
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        while len(coordinator) < 2:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        result = await coordinator.shutdown([server], grace=5.0)
        assert time.monotonic() - started < 1.0  # did not sit out the grace period
        assert (result.graceful, result.aborted) == (2, 0)
        for reader, writer in clients:
            assert await read_all(reader) == DISCONNECT_SERVER_SHUTTING_DOWN  # then EOF
            writer.close()
        assert not any(c.aborted for c in conns)
        # the listener is closed: new clients are refused
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            pass
        else:
            w.close()
            raise AssertionError("listener still accepting after shutdown")

    run(main())


def test_stuck_connection_is_aborted_after_grace(run: RunLoop) -> None:
    async def main() -> None:
        coordinator = ShutdownCoordinator()
        server, conns = await start(coordinator, [None, 0.0])
        port = server.sockets[0].getsockname()[1]
        stuck_reader, stuck_writer = await asyncio.open_connection("127.0.0.1", port)
        while len(coordinator) < 1:
            await asyncio.sleep(0.01)
        ok_reader, ok_writer = await asyncio.open_connection("127.0.0.1", port)
        while len(coordinator) < 2:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        result = await coordinator.shutdown([server], grace=0.3)
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 2.0
        assert (result.graceful, result.aborted) == (1, 1)
        assert conns[0].aborted and not conns[1].aborted
        assert len(coordinator) == 0
        assert await read_all(ok_reader) == DISCONNECT_SERVER_SHUTTING_DOWN
        stuck = await read_all(stuck_reader)
        assert stuck in (DISCONNECT_SERVER_SHUTTING_DOWN, b"<reset>")
        stuck_writer.close()
        ok_writer.close()

    run(main())


def test_client_packets_are_not_read_after_shutdown_began(run: RunLoop) -> None:
    async def main() -> None:
        coordinator = ShutdownCoordinator()
        server, conns = await start(coordinator, [0.2])
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while len(coordinator) < 1:
            await asyncio.sleep(0.01)
        task = asyncio.ensure_future(coordinator.shutdown([server], grace=2.0))
        await asyncio.sleep(0.05)
        writer.write(b"\x30\x03\x00\x01a")  # a PUBLISH sent after the goodbye
        await writer.drain()
        await task
        assert conns[0].received_after_shutdown == b""
        writer.close()

    run(main())


def test_late_registration_is_shut_down_at_once_and_empty_shutdown_returns(run: RunLoop) -> None:
    class Dummy:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def begin_shutdown(self) -> None:
            self.calls.append("begin")
            coordinator.unregister(self)

        def abort(self) -> None:
            self.calls.append("abort")

    coordinator = ShutdownCoordinator()

    async def main() -> None:
        result = await coordinator.shutdown([], grace=5.0)
        assert (result.graceful, result.aborted) == (0, 0)
        late = Dummy()
        coordinator.register(late)
        assert late.calls == ["begin"]
        assert len(coordinator) == 0

    run(main())


def test_failing_begin_shutdown_falls_back_to_abort(run: RunLoop) -> None:
    coordinator = ShutdownCoordinator()

    class Broken:
        aborted = False

        def begin_shutdown(self) -> None:
            raise RuntimeError("boom")

        def abort(self) -> None:
            self.aborted = True
            coordinator.unregister(self)

    async def main() -> None:
        broken = Broken()
        coordinator.register(broken)
        result = await coordinator.shutdown([], grace=5.0)
        assert broken.aborted
        assert result.aborted == 0 and len(coordinator) == 0

    run(main())


def test_owner_kept_set_is_drained_and_stragglers_removed(run: RunLoop) -> None:
    """The server keeps its live connections itself and sets ``drained`` when they are gone."""
    live: set[Any] = set()
    coordinator = ShutdownCoordinator(live)

    class Owned:
        def __init__(self, closes: bool) -> None:
            self.closes = closes
            self.calls: list[str] = []

        def begin_shutdown(self) -> None:
            self.calls.append("begin")
            if self.closes:  # closes later, the way a flushed transport does
                asyncio.get_running_loop().call_later(0.05, self.closed)

        def closed(self) -> None:
            live.discard(self)
            if not live:
                coordinator.drained.set()

        def abort(self) -> None:
            self.calls.append("abort")
            live.discard(self)

    async def main() -> None:
        polite, stuck = Owned(True), Owned(False)
        live.update((polite, stuck))  # added behind the coordinator's back
        started = time.monotonic()
        result = await coordinator.shutdown([], grace=0.3)
        assert 0.25 <= time.monotonic() - started < 2.0
        assert (result.graceful, result.aborted) == (1, 1)
        assert (polite.calls, stuck.calls) == (["begin"], ["begin", "abort"])
        assert not live and coordinator.drained.is_set()
        # all gone in time: no waiting for the grace period
        quick = Owned(True)
        live.add(quick)
        started = time.monotonic()
        result = await coordinator.shutdown([], grace=5.0)
        assert time.monotonic() - started < 1.0
        assert (result.graceful, result.aborted) == (1, 0)

    run(main())
