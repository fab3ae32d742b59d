"""Graceful shutdown: stop accepting, let connections say goodbye, then cut the rest.

Kubernetes sends SIGTERM and waits ``terminationGracePeriodSeconds``; a proxy that just dies
drops in-flight QoS 1/2 messages and makes every client reconnect at once to the same
address. Telling 5.0 clients "server shutting down" (DISCONNECT 0x8B) and flushing what is
already on its way upstream lets them fail over cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, MutableSet
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["GracefulConnection", "ShutdownCoordinator", "ShutdownResult"]

log = logging.getLogger("mqttgate.proxy.shutdown")


class GracefulConnection(Protocol):
    """What a live connection offers the coordinator.

    ``begin_shutdown``: send DISCONNECT 0x8B to a 5.0 client, stop reading client packets,
    close once in-flight upstream data is flushed, then call ``unregister``.
    ``abort``: close both sides now (and ``unregister``).
    """

    def begin_shutdown(self) -> None: ...

    def abort(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ShutdownResult:
    graceful: int  # connections that closed by themselves within the grace period
    aborted: int  # connections cut by abort()


class _Closable(Protocol):
    def close(self) -> None: ...


class ShutdownCoordinator:
    """Tracks live connections so one call can drain them all.

    Connections register when accepted and unregister when closed. A connection registering
    after shutdown began (accepted just before the listener closed) is told to shut down
    immediately.
    """

    def __init__(self, connections: MutableSet[Any] | None = None) -> None:
        """``connections``: a live set its owner already keeps (the server adds a connection
        at accept and drops it at close); the owner then sets :attr:`drained` when it
        empties, or calls :meth:`unregister`. Without it the coordinator keeps its own set.
        """
        self._connections: MutableSet[Any] = connections if connections is not None else set()
        #: Set whenever no connection is left.
        self.drained = asyncio.Event()
        if not self._connections:
            self.drained.set()
        self.shutting_down = False

    def __len__(self) -> int:
        return len(self._connections)

    def register(self, conn: GracefulConnection) -> None:
        self._connections.add(conn)
        self.drained.clear()
        if self.shutting_down:
            self._begin(conn)

    def unregister(self, conn: GracefulConnection) -> None:
        self._connections.discard(conn)
        if not self._connections:
            self.drained.set()

    @staticmethod
    def _begin(conn: GracefulConnection) -> None:
        try:
            conn.begin_shutdown()
        except Exception:
            log.exception("begin_shutdown failed; aborting the connection")
            conn.abort()

    async def shutdown(self, servers: Iterable[_Closable], grace: float) -> ShutdownResult:
        """Close ``servers``, ask every connection to finish, abort what is left after
        ``grace`` seconds. Safe to call twice (the second call just waits again)."""
        self.shutting_down = True
        for server in servers:
            server.close()
        if self._connections:  # an owner-kept set may have changed behind our back
            self.drained.clear()
        else:
            self.drained.set()
        before = len(self._connections)
        for conn in list(self._connections):
            self._begin(conn)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.drained.wait(), grace)
        stragglers = list(self._connections)
        for conn in stragglers:
            try:
                conn.abort()
            except Exception:
                log.exception("abort failed")
            self.unregister(conn)  # an abort that forgets to unregister must not hang us
        if stragglers:
            log.warning("shutdown: aborted %d connections after %.1fs", len(stragglers), grace)
        return ShutdownResult(graceful=max(0, before - len(stragglers)), aborted=len(stragglers))
