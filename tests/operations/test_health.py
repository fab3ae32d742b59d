"""``/healthz`` and ``/readyz`` of a real mqttgate process in each state of its upstream."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from tests.integration.conftest import Broker

from .gate import Gate, wait_until

pytestmark = pytest.mark.integration


def test_readyz_follows_the_upstream_and_healthz_stays_up(
    gate: Callable[..., Gate], mosquitto: Broker
) -> None:
    g = gate(upstream=mosquitto.address)
    assert g.get("/healthz") == (200, json.dumps({"status": "ok"}) + "\n")
    status, body = g.get("/readyz")
    assert (status, json.loads(body)) == (200, {"ready": True})
    scrape = g.scrape()  # process metrics come along with the proxy's own
    assert scrape.value("process_resident_memory_bytes") > 0
    assert scrape.value("process_open_fds") > 0

    mosquitto.process.terminate()
    mosquitto.process.wait(5)
    status, body = wait_until(lambda: (r := g.get("/readyz"))[0] == 503 and r, what="503")
    assert json.loads(body) == {"ready": False, "missing": ["upstream"]}
    assert g.get("/healthz")[0] == 200  # the process is alive: no restart wanted

    # anything accepting TCP on the broker's address makes it ready again
    with socket.socket() as back:
        back.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        back.bind((mosquitto.host, mosquitto.port))
        back.listen(8)
        status, body = wait_until(lambda: (r := g.get("/readyz"))[0] == 200 and r, what="200")
        assert json.loads(body) == {"ready": True}


def test_not_ready_when_started_without_its_upstream(gate: Callable[..., Gate]) -> None:
    with socket.socket() as placeholder:  # a port that nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{placeholder.getsockname()[1]}"
        g = gate(upstream=address)
        status, body = g.get("/readyz")
    assert status == 503
    assert json.loads(body) == {"ready": False, "missing": ["upstream"]}
    assert g.get("/healthz")[0] == 200
