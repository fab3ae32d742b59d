"""An in-process amqtt broker on a free loopback port (quickstart and tests).

Never meant for production: it exists so that ``mqttgate serve`` works on a fresh machine
with nothing else installed.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

log = logging.getLogger("mqttgate.embedded")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """Start/stop an amqtt broker listening on ``127.0.0.1:<free port>``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker

        # amqtt logs every packet, and readiness probes as errors; keep it out of our log.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        last_exc: Exception | None = None
        for _attempt in range(5):  # the free port may be taken between probe and bind
            port = free_port(self.host)
            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                },
            }
            broker = Broker(config)
            try:
                await broker.start()
            except Exception as exc:
                last_exc = exc
                continue
            self._broker = broker
            self.port = port
            log.info("embedded broker listening on %s:%d", self.host, port)
            return
        raise RuntimeError(f"embedded broker could not start: {last_exc}")

    async def stop(self) -> None:
        broker = self._broker
        self._broker = None
        if broker is not None:
            try:
                await broker.shutdown()
            except Exception:  # a failing shutdown of a throw-away broker is not our problem
                log.debug("embedded broker shutdown failed", exc_info=True)
