"""Limits and deployment options end to end: backpressure, per-user connection caps,
disconnect-on-denied-publish, PROXY protocol, the embedded broker."""

from __future__ import annotations

import itertools
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mqttgate.codec import Connack, Connect, Disconnect, Publish, Subscribe, Subscription

from .clients import V5, V311, Paho, RawClient
from .conftest import PASSWORDS, Broker, Certs, ProxyHandle

pytestmark = pytest.mark.integration

_ids = itertools.count()


class AuditCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "mqttgate_audit", None)
        if fields is not None:
            self.events.append(fields)


@pytest.fixture
def audit() -> Iterator[AuditCatcher]:
    catcher = AuditCatcher()
    logger = logging.getLogger("mqttgate.audit")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(catcher)
    yield catcher
    logger.removeHandler(catcher)
    logger.setLevel(old_level)


def raw_login(
    proxy: ProxyHandle, certs: Certs, user: str, level: int = 4, **kw: Any
) -> tuple[RawClient, Connack]:
    client = RawClient(proxy.port, certs.client_context(), level=level, **kw)
    client.send(
        Connect(
            protocol_level=level,
            client_id=f"{user}-raw-{next(_ids)}",
            username=user,
            password=PASSWORDS[user].encode(),
        ).encode(level)
    )
    connack = client.read_packet()
    assert isinstance(connack, Connack)
    return client, connack


def test_slow_subscriber_cannot_make_the_proxy_buffer_without_bound(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    proxy = running_proxy(upstream=mosquitto.address)
    slow, connack = raw_login(proxy, certs, "root")
    assert connack.reason_code == 0
    slow.send(Subscribe(packet_id=1, subscriptions=[Subscription("flood/#", 0)]).encode(4))
    assert slow.read_packet() is not None  # SUBACK; from now on it never reads again
    publisher = Paho(proxy.port, certs.client_context(), username="root", password="root-pw")
    try:
        assert publisher.connect() == 0
        payload = b"x" * 16384
        for _ in range(2000):  # 32 MiB, far more than socket buffers hold
            publisher.client.publish("flood/data", payload, qos=0)
        publisher.publish("flood/end", b"", qos=1)  # all of it went through the proxy

        def buffered() -> tuple[int, bool]:
            sizes = [
                c.transport.get_write_buffer_size()
                for c in proxy.server.connections
                if c.transport is not None
                and c.session is not None
                and c.session.identity == "root"
            ]
            paused = any(c._upstream_paused for c in proxy.server.connections)
            return max(sizes), paused

        deadline = time.monotonic() + 10
        while True:
            size, paused = proxy.call(buffered)
            if paused or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert paused, "the slow subscriber's upstream leg was never paused"
        assert size <= 2 * 1024 * 1024, f"{size} bytes buffered for one slow client"
        # the publisher's own connection is unaffected
        assert publisher.subscribe("flood/ok") == [1]
    finally:
        publisher.close()
        slow.close()


def test_max_connections_per_user(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs, audit: AuditCatcher
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, limits={"max_connections_per_user": 2})
    first, c1 = raw_login(proxy, certs, "alice")
    second, c2 = raw_login(proxy, certs, "alice", level=5)
    third, c3 = raw_login(proxy, certs, "alice", level=5)
    other, c4 = raw_login(proxy, certs, "bob")
    try:
        assert (c1.reason_code, c2.reason_code, c3.reason_code, c4.reason_code) == (0, 0, 0x97, 0)
        assert third.read_until_closed() == []
        first.close()
        deadline = time.monotonic() + 3
        while True:  # the slot comes back when a connection closes
            again, c5 = raw_login(proxy, certs, "alice")
            again.close()
            if c5.reason_code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert c5.reason_code == 0
    finally:
        for c in (first, second, third, other):
            c.close()
    assert any(e["event"] == "auth" and e["result"] == "not_authorized" for e in audit.events)


@pytest.mark.parametrize(("level", "expected"), [(4, []), (5, [(Disconnect, 0x87)])])
def test_denied_publish_disconnect_mode(
    running_proxy: Callable[..., ProxyHandle],
    mosquitto: Broker,
    certs: Certs,
    level: int,
    expected: list[Any],
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, enforcement={"denied_publish": "disconnect"})
    client, connack = raw_login(proxy, certs, "bob", level=level)
    assert connack.reason_code == 0
    client.send(Publish(topic="factory/line1/x", payload=b"x", qos=1, packet_id=1).encode(level))
    assert [(type(p), p.reason_code) for p in client.read_until_closed()] == expected


def proxy_v2(src: str, sport: int) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 8883)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


@pytest.mark.parametrize(
    ("prefix", "remote"),
    [
        (b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 8883\r\n", "192.0.2.7:5555"),
        (proxy_v2("198.51.100.4", 6000), "198.51.100.4:6000"),
    ],
)
def test_proxy_protocol_header_gives_the_real_client_address(
    running_proxy: Callable[..., ProxyHandle],
    mosquitto: Broker,
    certs: Certs,
    audit: AuditCatcher,
    prefix: bytes,
    remote: str,
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, proxy_protocol=True)
    client, connack = raw_login(proxy, certs, "alice", prefix=prefix)
    client.close()
    assert connack.reason_code == 0
    (auth,) = [e for e in audit.events if e["event"] == "auth"]
    assert auth["remote"] == remote and auth["identity"] == "alice"


def test_proxy_protocol_listener_refuses_clients_without_header(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, proxy_protocol=True)
    with pytest.raises((OSError, ConnectionError)):
        client = RawClient(proxy.port, certs.client_context())
        client.send(Connect(protocol_level=4, client_id="x").encode(4))
        assert client.read_until_closed() == []
        raise ConnectionError("closed as expected")


@pytest.mark.parametrize("version", [V311])
def test_embedded_broker_relays(
    running_proxy: Callable[..., ProxyHandle], certs: Certs, version: int
) -> None:
    proxy = running_proxy(upstream="embedded")
    assert proxy.call(proxy.server.readiness) == {
        "policy": True,
        "listeners": True,
        "upstream": True,
    }
    sub = Paho(
        proxy.port, certs.client_context(), username="alice", password="alice-pw", version=version
    )
    pub = Paho(
        proxy.port, certs.client_context(), username="bob", password="bob-pw", version=version
    )
    try:
        assert sub.connect() == 0 and pub.connect() == 0
        assert sub.subscribe("shared/#", "factory/line2/#") == [1, 0x80]
        pub.publish("shared/x", b"via-embedded")
        pub.publish("factory/line2/x", b"not-for-alice")
        assert sub.expect().payload == b"via-embedded"
        sub.expect_none(0.3)
    finally:
        sub.close()
        pub.close()


def test_v5_client_max_packet_size_is_honoured(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    proxy = running_proxy(upstream=mosquitto.address)
    small = RawClient(proxy.port, certs.client_context(), level=V5)
    small.send(
        Connect(
            protocol_level=5,
            client_id="small",
            username="alice",
            password=b"alice-pw",
            properties=[(0x27, 200)],
        ).encode(5)
    )
    assert small.read_packet().reason_code == 0
    small.send(Subscribe(packet_id=1, subscriptions=[Subscription("shared/#", 0)]).encode(5))
    assert small.read_packet().reason_codes == [0]
    pub = Paho(proxy.port, certs.client_context(), username="bob", password="bob-pw")
    try:
        assert pub.connect() == 0
        pub.publish("shared/big", b"x" * 500)
        pub.publish("shared/small", b"y")
        packet = small.read_packet()
        assert isinstance(packet, Publish) and packet.topic == "shared/small"
    finally:
        pub.close()
        small.close()


def test_repeated_denials_are_audited_without_flooding(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs, audit: AuditCatcher
) -> None:
    proxy = running_proxy(upstream=mosquitto.address)
    client, connack = raw_login(proxy, certs, "bob")
    assert connack.reason_code == 0
    for i in range(20):
        client.send(
            Publish(topic="factory/line1/x", payload=b"x", qos=1, packet_id=i + 1).encode(4)
        )
        assert client.read_packet() is not None  # PUBACK from the proxy
    client.close()
    deadline = time.monotonic() + 3
    while (
        not any(e["event"] == "denied_suppressed" for e in audit.events)
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    denied = [e for e in audit.events if e["event"] == "denied"]
    suppressed = [e for e in audit.events if e["event"] == "denied_suppressed"]
    assert 1 <= len(denied) <= 5
    assert all(
        (e["identity"], e["action"], e["topic"]) == ("bob", "publish", "factory/line1/x")
        for e in denied
    )
    assert sum(e["suppressed"] for e in suppressed) == 20 - len(denied)
    assert proxy.metric("mqttgate_publish_total", {"direction": "in", "decision": "denied"}) == 20


def test_proxy_header_split_across_segments(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs, audit: AuditCatcher
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, proxy_protocol=True)
    header = b"PROXY TCP4 203.0.113.9 127.0.0.1 4444 8883\r\n"
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    raw.sendall(header[:9])
    time.sleep(0.05)
    raw.sendall(header[9:])
    tls = certs.client_context().wrap_socket(raw, server_hostname="localhost")
    try:
        tls.sendall(
            Connect(protocol_level=4, client_id="split", username="bob", password=b"bob-pw").encode(
                4
            )
        )
        assert tls.recv(4) == b"\x20\x02\x00\x00"
    finally:
        tls.close()
    (auth,) = [e for e in audit.events if e["event"] == "auth"]
    assert auth["remote"] == "203.0.113.9:4444"
