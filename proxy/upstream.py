"""The upstream leg: one plain TCP connection to the broker per client session."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable


def set_nodelay(sock: socket.socket | None) -> None:
    """MQTT packets are small and latency matters: never wait for Nagle."""
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def open_upstream(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    timeout: float,
    protocol_factory: Callable[[], asyncio.Protocol],
) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """Connect to the broker within ``timeout`` seconds; raises OSError/TimeoutError.

    The protocol's ``connection_made`` runs before this returns (one loop iteration
    earlier than the caller resumes): that is where the proxy sets TCP_NODELAY and writes
    the CONNECT, so the broker sees it without waiting for the task to be scheduled again.
    """
    async with asyncio.timeout(timeout):
        transport, protocol = await loop.create_connection(protocol_factory, host, port)
    return transport, protocol  # type: ignore[return-value]


async def probe(host: str, port: int, timeout: float) -> bool:
    """Whether the broker accepts TCP connections now (for readiness)."""
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        pass
    return True
