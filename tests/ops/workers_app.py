"""A tiny multi-worker server for tests/ops/test_workers.py, run as its own process.

Usage: python workers_app.py ECHO_PORT METRICS_PORT {serve|crash}

Each worker answers a TCP connection with "<index> <pid> <sighups seen>\\n", echoes one line
and counts the connection in a multiprocess prometheus counter; the supervisor serves the
summed metrics with mqttgate.proxy.http and prints one JSON line once it is up.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from mqttgate.proxy.http import start_http_server
from mqttgate.proxy.workers import (
    Supervisor,
    prepare_multiprocess_dir,
    reuseport_socket,
    run_workers,
)


def main() -> int:
    echo_port, metrics_port, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    # "serve" prepares the directory itself, before any metric exists, and defines an
    # unlabelled metric in the parent (like a metrics module imported by the CLI);
    # "crash" lets run_workers make the directory.
    mp_dir = prepare_multiprocess_dir() if mode == "serve" else None
    from prometheus_client import Counter

    early = Counter("mqttgate_test_early", "defined in the supervisor before forking")

    def worker_main(index: int) -> int:
        if mode == "crash":
            return 3

        async def serve() -> int:
            from prometheus_client import Counter

            connections = Counter("mqttgate_test_echo_connections", "echo connections")
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            hups = 0

            def on_hup() -> None:
                nonlocal hups
                hups += 1

            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGHUP, on_hup)

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                connections.inc()
                early.inc()
                writer.write(f"{index} {os.getpid()} {hups}\n".encode())
                line = await asyncio.wait_for(reader.readline(), 5)
                writer.write(line)
                await writer.drain()
                writer.close()

            server = await asyncio.start_server(
                handle, sock=reuseport_socket("127.0.0.1", echo_port)
            )
            async with server:
                await stop.wait()
            return 0

        if index % 2:  # odd workers on uvloop: forking from the supervisor must suit both
            import uvloop

            return uvloop.run(serve())
        return asyncio.run(serve())

    async def parent_main(supervisor: Supervisor) -> None:
        server = await start_http_server(
            f"127.0.0.1:{metrics_port}",
            registry=None,
            readiness=lambda: {"workers": supervisor.alive() == supervisor.n},
            multiprocess_dir=supervisor.multiprocess_dir,
        )
        print(
            json.dumps({"pid": os.getpid(), "multiprocess_dir": supervisor.multiprocess_dir}),
            flush=True,
        )
        async with server:
            await asyncio.Event().wait()

    return run_workers(
        2,
        worker_main,
        parent_main=parent_main,
        max_restarts=3,
        restart_window=60.0,
        restart_delay=0.1,
        stop_timeout=5.0,
        multiprocess_dir=mp_dir,
    )


if __name__ == "__main__":
    sys.exit(main())
