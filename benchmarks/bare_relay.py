"""The floor for any Python MQTT proxy: a uvloop TLS-terminating byte relay.

It parses nothing and decides nothing: each chunk read from one side is written to the
other, with TCP_NODELAY and just enough flow control (pause the reader while the other
side's write buffer is full) to keep memory bounded. Whatever mqttgate costs above this
relay is the price of MQTT parsing, authentication and permission checks.

    python -m benchmarks.bare_relay --listen 127.0.0.1:8883 --upstream 127.0.0.1:1883 \
        --cert server.crt --key server.key
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import ssl
from typing import cast


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Upstream(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        _nodelay(transport)

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()


class _Client(asyncio.Protocol):
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream_addr = upstream
        self.upstream: _Upstream | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        _nodelay(transport)
        self.transport.pause_reading()  # nothing to write to until upstream is open
        asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Upstream(self), *self.upstream_addr), 5
            )
        except (OSError, TimeoutError):
            self.transport.close()
            return
        if self.closed:
            assert proto.transport is not None
            proto.transport.close()
            return
        self.upstream = proto
        assert proto.transport is not None
        for chunk in self.pending:
            proto.transport.write(chunk)
        self.pending.clear()
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None or self.upstream.transport is None:
            self.pending.append(data)  # bounded: reading is paused until upstream opens
            return
        self.upstream.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _finish(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        stop.set_result(None)


async def serve(listen: tuple[str, int], upstream: tuple[str, int], ctx: ssl.SSLContext) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Client(upstream), *listen, ssl=ctx, backlog=4096, reuse_address=True
    )
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _finish, stop)
    async with server:
        await stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, type=_hostport)
    parser.add_argument("--upstream", required=True, type=_hostport)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(args.listen, args.upstream, ctx))
    else:
        uvloop.run(serve(args.listen, args.upstream, ctx))


if __name__ == "__main__":
    main()
