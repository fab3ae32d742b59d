"""The operations HTTP endpoint, exercised with real requests on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from mqttgate.proxy import http as ops_http
from mqttgate.proxy.http import parse_bind, start_http_server, tcp_probe
from prometheus_client import CollectorRegistry, Counter

from tests.ops.support import RunLoop


async def serve(
    readiness: Callable[[], Any] | None = None,
    registry: CollectorRegistry | None = None,
    multiprocess_dir: str | None = None,
) -> tuple[asyncio.base_events.Server, int]:
    server = await start_http_server(
        "127.0.0.1:0",
        registry=registry if registry is not None or multiprocess_dir else CollectorRegistry(),
        readiness=readiness or (lambda: {"policy": True}),
        multiprocess_dir=multiprocess_dir,
    )
    return server, server.sockets[0].getsockname()[1]


async def raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """A real HTTP client (urllib) in a thread, so the server sees what scrapers send."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_metrics_healthz_readyz_and_404(run: RunLoop) -> None:
    registry = CollectorRegistry()
    Counter("mqttgate_test_things", "things", registry=registry).inc(3)

    async def main() -> None:
        server, port = await serve(registry=registry)
        async with server:
            status, ctype, body = await asyncio.to_thread(get, port, "/metrics")
            assert status == 200
            assert ctype.startswith("text/plain")
            assert b"mqttgate_test_things_total 3.0" in body
            status, ctype, body = await asyncio.to_thread(get, port, "/healthz")
            assert (status, ctype, json.loads(body)) == (200, "application/json", {"status": "ok"})
            status, _, body = await asyncio.to_thread(get, port, "/readyz")
            assert status == 200 and json.loads(body)["ready"] is True
            status, _, _ = await asyncio.to_thread(get, port, "/nope")
            assert status == 404

    run(main())


def test_readyz_names_what_is_missing(run: RunLoop) -> None:
    checks = {"policy": True, "listeners": False, "upstream": False}

    async def main() -> None:
        server, port = await serve(readiness=lambda: checks)
        async with server:
            status, _, body = await asyncio.to_thread(get, port, "/readyz")
            assert status == 503
            assert json.loads(body) == {"ready": False, "missing": ["listeners", "upstream"]}
            checks["listeners"] = checks["upstream"] = True
            status, _, _ = await asyncio.to_thread(get, port, "/readyz")
            assert status == 200

    run(main())


def test_readiness_may_be_async(run: RunLoop) -> None:
    async def readiness() -> Mapping[str, bool]:
        await asyncio.sleep(0)
        return {"upstream": False}

    async def main() -> None:
        server, port = await serve(readiness=readiness)
        async with server:
            status, _, body = await raw(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 503 and json.loads(body)["missing"] == ["upstream"]

    run(main())


def test_hanging_async_readiness_is_503(run: RunLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_http, "READINESS_TIMEOUT", 0.1)

    async def readiness() -> Mapping[str, bool]:
        await asyncio.sleep(30)
        return {}

    async def main() -> None:
        server, port = await serve(readiness=readiness)
        async with server:
            status, _, body = await raw(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 503 and json.loads(body)["missing"] == ["readiness-timeout"]

    run(main())


def test_non_get_is_405_and_head_has_no_body(run: RunLoop) -> None:
    async def main() -> None:
        server, port = await serve()
        async with server:
            status, headers, _ = await raw(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 405 and "GET" in headers["Allow"]
            assert headers["Connection"] == "close"
            status, headers, body = await raw(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0

    run(main())


def test_oversized_headers_and_garbage_are_refused(run: RunLoop) -> None:
    async def main() -> None:
        server, port = await serve()
        async with server:
            big = b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
            status, _, _ = await raw(port, big)
            assert status == 431
            status, _, _ = await raw(port, b"NONSENSE\r\n\r\n")
            assert status == 400

    run(main())


def test_silent_client_is_timed_out(run: RunLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_http, "READ_TIMEOUT", 0.2)

    async def main() -> None:
        server, port = await serve()
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finishes the headers
            data = await asyncio.wait_for(reader.read(), 3)
            writer.close()
            assert data.startswith(b"HTTP/1.1 408")

    run(main())


def test_healthz_fails_while_the_loop_is_blocked(run: RunLoop) -> None:
    def probe(port: int) -> str:
        time.sleep(0.1)  # let the loop get stuck first
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.3)
        except OSError as err:  # URLError / timeout
            return type(err).__name__
        return "answered"

    async def main() -> None:
        server, port = await serve()
        async with server:
            # run_in_executor submits at once, before the loop blocks
            future = asyncio.get_running_loop().run_in_executor(None, probe, port)
            time.sleep(0.8)  # a stuck event loop
            assert await future != "answered"
            assert (await asyncio.to_thread(get, port, "/healthz"))[0] == 200

    run(main())


def test_tcp_probe_sees_open_and_closed_ports_and_caches(run: RunLoop) -> None:
    async def main() -> None:
        ops_http._probe_cache.clear()
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        assert await tcp_probe("127.0.0.1", port, 1.0)
        listener.close()
        assert await tcp_probe("127.0.0.1", port, 1.0)  # cached for about a second
        ops_http._probe_cache.clear()
        assert not await tcp_probe("127.0.0.1", port, 1.0, cache_for=0.0)
        listener = socket.create_server(("127.0.0.1", port))
        try:
            assert await tcp_probe("127.0.0.1", port, 1.0)  # cache_for=0 kept nothing
        finally:
            listener.close()

    run(main())


def test_parse_bind() -> None:
    assert parse_bind("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_bind("[::1]:9100") == ("::1", 9100)
    assert parse_bind(":9100") == ("0.0.0.0", 9100)
    for bad in ("9100", "host:port", "::1:9100", "h:70000"):
        with pytest.raises(ValueError):
            parse_bind(bad)


def test_own_registry_is_served_with_process_metrics(run: RunLoop) -> None:
    registry = CollectorRegistry()
    Counter("mqttgate_test_things", "things", registry=registry).inc(2)

    async def main() -> None:
        server, port = await serve(registry=registry)
        async with server:
            status, _, body = await asyncio.to_thread(get, port, "/metrics")
        assert status == 200
        assert b"mqttgate_test_things_total 2.0" in body
        for name in (b"process_resident_memory_bytes", b"process_open_fds", b"python_info"):
            assert name in body, name
        assert body.count(b"# TYPE mqttgate_test_things_total") <= 1  # served once
        # the proxy's registry itself stays as it was (no process metrics mixed into it)
        assert {m.name for m in registry.collect()} == {"mqttgate_test_things"}

    run(main())
