"""Protection against password guessing and connection hogging, on the real proxy.

The backoff is per remote address; on loopback a second address (127.0.0.2) stands for
another client. The delay the proxy will apply is read from the running server's
``backoff`` (the mechanism), and the answer times confirm it is applied.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from mqttgate.codec import Connack, Connect, FrameReader, decode_packet

from tests.integration.clients import RawClient
from tests.integration.conftest import Broker, Certs, ProxyHandle

pytestmark = pytest.mark.integration

ATTACKER, OTHER = "127.0.0.1", "127.0.0.2"


def answer(proxy: ProxyHandle, certs: Certs, source: str, password: bytes) -> tuple[int, float]:
    """(CONNACK code, seconds from CONNECT to CONNACK) for alice from ``source``."""
    raw = socket.create_connection(
        ("127.0.0.1", proxy.port), timeout=10, source_address=(source, 0)
    )
    with certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        tls.settimeout(10)
        started = time.monotonic()
        tls.sendall(Connect(client_id="guess", username="alice", password=password).encode(4))
        reader = FrameReader()
        while not (frames := reader.feed(tls.recv(64))):
            pass
        elapsed = time.monotonic() - started
        first, _start, body, end = frames[0]
        connack = decode_packet(first, reader.buffer[body:end], 4)
        assert isinstance(connack, Connack)
        return connack.reason_code, elapsed


def test_guessing_slows_down_per_address_and_spares_other_clients(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    proxy = running_proxy(upstream=mosquitto.address)
    backoff = proxy.server.backoff

    def delay(address: str) -> float:
        return float(proxy.call(backoff.delay_for, address))

    threshold, base = backoff.threshold, backoff.base_delay
    quick = []
    for failures in range(1, threshold + 1):  # below the threshold: answered at once
        code, elapsed = answer(proxy, certs, ATTACKER, b"guess")
        assert code == 4
        quick.append(elapsed)
        assert delay(ATTACKER) == (base if failures == threshold else 0.0)
    code, elapsed = answer(proxy, certs, ATTACKER, b"guess")  # waits `base` first
    assert code == 4
    assert elapsed >= base and elapsed - min(quick) >= 0.8 * base
    assert delay(ATTACKER) == 2 * base  # and doubles

    # another address that mistypes once and then logs in is not slowed down
    assert answer(proxy, certs, OTHER, b"typo")[0] == 4
    assert delay(OTHER) == 0.0
    code, elapsed = answer(proxy, certs, OTHER, b"alice-pw")
    assert code == 0 and elapsed < 2 * base
    assert delay(ATTACKER) == 2 * base  # its success did not clear the attacker's record

    # the right password from the slowed address still works and clears its record (it is
    # answered from the verification cache now, so without a hash and without the wait)
    assert answer(proxy, certs, ATTACKER, b"alice-pw")[0] == 0
    assert delay(ATTACKER) == 0.0


@pytest.mark.parametrize(("level", "refused"), [(4, 5), (5, 0x97)])
def test_max_connections_per_user_refuses_the_extra_one(
    running_proxy: Callable[..., ProxyHandle],
    mosquitto: Broker,
    certs: Certs,
    level: int,
    refused: int,
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, limits={"max_connections_per_user": 2})
    held: list[RawClient] = []

    def login(user: str) -> int:
        client = RawClient(proxy.port, certs.client_context(), level=level)
        held.append(client)
        password = f"{user}-pw".encode()
        client.send(
            Connect(
                protocol_level=level,
                client_id=f"{user}{len(held)}",
                username=user,
                password=password,
            ).encode(level)
        )
        connack = client.read_packet()
        assert isinstance(connack, Connack)
        return connack.reason_code

    try:
        assert [login("alice"), login("alice"), login("alice"), login("bob")] == [0, 0, refused, 0]
        assert held[2].read_until_closed() == []
    finally:
        for client in held:
            client.close()
    assert proxy.metric("mqttgate_auth_total", {"method": "password", "result": "success"}) == 3
    assert (
        proxy.metric("mqttgate_auth_total", {"method": "password", "result": "not_authorized"}) == 1
    )


def test_backoff_follows_limits_auth_backoff(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    proxy = running_proxy(
        upstream=mosquitto.address,
        limits={"auth_backoff": {"threshold": 2, "base_delay": 0.2, "max_delay": 0.3}},
    )
    backoff = proxy.server.backoff
    assert (backoff.threshold, backoff.base_delay, backoff.max_delay) == (2, 0.2, 0.3)
    for _ in range(4):
        assert answer(proxy, certs, ATTACKER, b"guess")[0] == 4
    assert proxy.call(backoff.delay_for, ATTACKER) == 0.3  # doubled, then capped
