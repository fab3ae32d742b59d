"""The operations endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` over minimal HTTP/1.1.

Scrapers and kubelet probes are the only clients, so one request per connection
(``Connection: close``), GET/HEAD only, bounded headers and a read timeout are all we need;
pulling in an HTTP framework for that would add attack surface to a security proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["parse_bind", "start_http_server", "tcp_probe"]

log = logging.getLogger("mqttgate.proxy.http")

MAX_HEADER_BYTES = 8192
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
READINESS_TIMEOUT = 5.0  # kubelet's default probe timeout is 1 s; never hang beyond this
MAX_CONNECTIONS = 64  # concurrent; probes and scrapes are few, anything more is abuse

Readiness = Callable[[], Mapping[str, bool] | Awaitable[Mapping[str, bool]]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_JSON = "application/json"


def parse_bind(bind: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` (as in the config file) to ``(host, port)``."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bind address must be host:port, not {bind!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"IPv6 bind address needs brackets: {bind!r}")
    return host or "0.0.0.0", int(port)


_probe_cache: dict[tuple[str, int], tuple[float, bool]] = {}


async def tcp_probe(host: str, port: int, timeout: float = 2.0, *, cache_for: float = 1.0) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` seconds.

    The answer is cached for ``cache_for`` seconds (per host and port, failures too) so a
    burst of readiness probes costs the broker at most one connection per second.
    """
    key = (host, port)
    now = time.monotonic()
    cached = _probe_cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    ok = False
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError):
        pass
    else:
        ok = True
        writer.close()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
    if len(_probe_cache) > 64:  # only a handful of upstreams exist; never grow unbounded
        _probe_cache.clear()
    _probe_cache[key] = (time.monotonic() + cache_for, ok)
    return ok


def _response(status: int, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    headers = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
    ]
    if status == 405:
        headers.append("Allow: GET, HEAD")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + (b"" if head else body)


def _json(status: int, data: object, *, head: bool = False) -> bytes:
    return _response(status, json.dumps(data).encode() + b"\n", _JSON, head=head)


class _Forward(Collector):
    """Serves another registry's metrics as part of this one."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


def _with_process_metrics(registry: CollectorRegistry) -> CollectorRegistry:
    """``registry`` plus this process's CPU, memory, file descriptors, GC and Python version.

    The proxy keeps its metrics in a registry of its own (tests run several proxies in one
    process); operators still want the ``process_*`` series next to them. The default
    registry has them already, and in multi-worker mode they would describe only the
    supervisor, so those two are served as they are.
    """
    serving = CollectorRegistry()
    serving.register(_Forward(registry))
    ProcessCollector(registry=serving)
    PlatformCollector(registry=serving)
    GCCollector(registry=serving)
    return serving


class _Handler:
    """State shared by every request: where metrics come from and how readiness is judged."""

    def __init__(
        self,
        registry: CollectorRegistry | None,
        readiness: Readiness,
        multiprocess_dir: str | None,
    ) -> None:
        if multiprocess_dir is not None:
            # The collector reads every worker's mmap files on each scrape, so the sum is
            # always current and dead workers' counters are kept.
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        elif registry is not None and registry is not REGISTRY:
            registry = _with_process_metrics(registry)
        self.registry = registry if registry is not None else REGISTRY
        self.readiness = readiness
        self.active = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self.active += 1
        try:
            response = await self._respond(reader)
            writer.write(response)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (TimeoutError, OSError):
            pass
        finally:
            self.active -= 1
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> bytes:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except asyncio.LimitOverrunError:
            return _json(431, {"error": "request headers too large"})
        except asyncio.IncompleteReadError:
            return _json(400, {"error": "incomplete request"})
        except TimeoutError:
            return _json(408, {"error": "request timeout"})
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _json(400, {"error": "malformed request line"})
        method, target, _ = parts
        is_head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "method not allowed"})
        path = target.split("?", 1)[0]
        try:
            if path == "/healthz":
                return _json(200, {"status": "ok"}, head=is_head)
            if path == "/readyz":
                return await self._readyz(is_head)
            if path == "/metrics":
                # On the loop, not in a thread: a few milliseconds every scrape interval, and
                # the worker supervisor forks from this process, which must stay thread-free.
                body = generate_latest(self.registry)
                return _response(200, body, CONTENT_TYPE_LATEST, head=is_head)
        except Exception:
            log.exception("error answering %s", path)
            return _json(500, {"error": "internal error"}, head=is_head)
        return _json(404, {"error": "not found"}, head=is_head)

    async def _readyz(self, is_head: bool) -> bytes:
        result = self.readiness()
        if inspect.isawaitable(result):
            try:
                checks = await asyncio.wait_for(result, READINESS_TIMEOUT)
            except TimeoutError:
                return _json(503, {"ready": False, "missing": ["readiness-timeout"]}, head=is_head)
        else:
            checks = result
        missing = sorted(name for name, ok in checks.items() if not ok)
        if missing:
            return _json(503, {"ready": False, "missing": missing}, head=is_head)
        return _json(200, {"ready": True}, head=is_head)


async def start_http_server(
    bind: str,
    *,
    registry: CollectorRegistry | None,
    readiness: Readiness,
    multiprocess_dir: str | None = None,
) -> asyncio.base_events.Server:
    """Listen on ``bind`` and serve the operations endpoints until the server is closed.

    ``registry=None`` serves prometheus_client's default registry; ``multiprocess_dir`` sums
    the metrics of all worker processes instead. ``readiness`` returns (or resolves to) named
    checks; ``/readyz`` is 503 naming every false one. ``/healthz`` is answered on the event
    loop itself, so a blocked loop fails the liveness probe.
    """
    host, port = parse_bind(bind)
    handler = _Handler(registry, readiness, multiprocess_dir)
    return await asyncio.start_server(handler, host, port, limit=MAX_HEADER_BYTES)
