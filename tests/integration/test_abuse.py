"""Bad input over real TLS: every case is closed cleanly and the proxy keeps serving."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from mqttgate.codec import Connack, Connect, Disconnect, Publish

from .clients import Paho, RawClient
from .conftest import Broker, Certs, ProxyHandle

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(running_proxy: Callable[..., ProxyHandle], mosquitto: Broker) -> ProxyHandle:
    return running_proxy(
        upstream=mosquitto.address, limits={"connect_timeout": 1, "max_packet_size": 65536}
    )


def still_serving(proxy: ProxyHandle, certs: Certs) -> None:
    c = Paho(proxy.port, certs.client_context(), username="alice", password="alice-pw")
    try:
        assert c.connect() == 0
        assert c.subscribe("factory/line1/x") == [1]
    finally:
        c.close()


def connected(proxy: ProxyHandle, certs: Certs, level: int) -> RawClient:
    client = RawClient(proxy.port, certs.client_context(), level=level)
    client.send(
        Connect(
            protocol_level=level, client_id="raw", username="alice", password=b"alice-pw"
        ).encode(level)
    )
    connack = client.read_packet()
    assert isinstance(connack, Connack) and connack.reason_code == 0
    return client


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x00" * 16, id="zeros"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http"),
        pytest.param(b"\x30\xff\xff\xff\x7f", id="256MiB-publish-first"),
        pytest.param(b"\x10\xff\xff\xff\xff\x01", id="5-byte-varint"),
    ],
)
def test_garbage_before_connect_is_closed(proxy: ProxyHandle, certs: Certs, payload: bytes) -> None:
    client = RawClient(proxy.port, certs.client_context())
    try:
        client.send(payload)
        assert client.read_until_closed(timeout=3) == []
    finally:
        client.close()
    still_serving(proxy, certs)


@pytest.mark.parametrize(
    ("level", "payload", "reason"),
    [
        (5, b"\x30\xff\xff\xff\x7f", 0x95),  # declares 256 MiB
        (5, b"\xf0\x00", 0x82),  # AUTH after the proxy refused authentication methods
        (5, b"\x20\x02\x00\x00", 0x82),  # CONNACK from a client
        (5, b"\x00\x00", 0x81),  # reserved packet type
        (4, b"\x30\xff\xff\xff\x7f", None),
        (4, b"\x00\x00", None),
    ],
)
def test_protocol_errors_after_connect(
    proxy: ProxyHandle, certs: Certs, level: int, payload: bytes, reason: int | None
) -> None:
    client = connected(proxy, certs, level)
    try:
        client.send(payload)
        packets = client.read_until_closed(timeout=3)
    finally:
        client.close()
    if reason is None:
        assert packets == []  # 3.x: just closed
    else:
        assert [(type(p), p.reason_code) for p in packets] == [(Disconnect, reason)]
    still_serving(proxy, certs)


@pytest.mark.parametrize(("level", "reason"), [(4, None), (5, 0x82)])
def test_second_connect(proxy: ProxyHandle, certs: Certs, level: int, reason: int | None) -> None:
    client = connected(proxy, certs, level)
    try:
        client.send(
            Connect(
                protocol_level=level, client_id="again", username="bob", password=b"bob-pw"
            ).encode(level)
        )
        packets = client.read_until_closed(timeout=3)
    finally:
        client.close()
    assert [(type(p), p.reason_code) for p in packets] == (
        [] if reason is None else [(Disconnect, reason)]
    )


@pytest.mark.parametrize("level", [4, 5])
def test_wildcard_in_publish_topic(proxy: ProxyHandle, certs: Certs, level: int) -> None:
    client = connected(proxy, certs, level)
    topic = b"factory/line1/#"
    body = len(topic).to_bytes(2, "big") + topic + (b"\x00" if level == 5 else b"") + b"x"
    try:
        client.send(bytes([0x30, len(body)]) + body)
        packets = client.read_until_closed(timeout=3)
    finally:
        client.close()
    if level == 5:
        assert (
            len(packets) == 1
            and isinstance(packets[0], Disconnect)
            and packets[0].reason_code >= 0x80
        )
    else:
        assert packets == []
    still_serving(proxy, certs)


def test_silent_tls_client_hits_the_connect_timeout(proxy: ProxyHandle, certs: Certs) -> None:
    started = time.monotonic()
    client = RawClient(proxy.port, certs.client_context())
    try:
        assert client.read_until_closed(timeout=4) == []
    finally:
        client.close()
    assert time.monotonic() - started < 3
    still_serving(proxy, certs)


def test_silent_tcp_client_is_closed_and_counted(proxy: ProxyHandle, certs: Certs) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=4) as raw:
        assert raw.recv(10) == b""  # closed by the proxy after connect_timeout
    assert proxy.metric("mqttgate_tls_handshake_failures_total", {"reason": "timeout"}) == 1
    still_serving(proxy, certs)


def test_max_connections_refuses_cleanly(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, limits={"max_connections": 1})
    first = connected(proxy, certs, 4)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as raw:
            assert raw.recv(10) == b""
        first.send(Publish(topic="factory/line1/a", payload=b"x").encode(4))
    finally:
        first.close()
    deadline = time.monotonic() + 3
    while proxy.active_connections() and time.monotonic() < deadline:
        time.sleep(0.02)
    still_serving(proxy, certs)
    deadline = time.monotonic() + 3
    while proxy.metric("mqttgate_connections_active") and time.monotonic() < deadline:
        time.sleep(0.02)  # the last client's close reaches the proxy a moment later
    assert proxy.metric("mqttgate_connections_active") == 0
