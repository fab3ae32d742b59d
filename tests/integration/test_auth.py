"""Authentication end to end: CONNACK codes on the wire, mutual TLS, handshake failures."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

import pytest
from mqttgate.codec import Connack, Connect

from .clients import V5, V311, Paho, RawClient
from .conftest import Broker, Certs, ProxyHandle

pytestmark = pytest.mark.integration


def wait_metric(
    proxy: ProxyHandle, name: str, labels: dict[str, str], value: float, timeout: float = 5
) -> None:
    deadline = time.monotonic() + timeout
    while proxy.metric(name, labels) != value:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} = {proxy.metric(name, labels)}, expected {value}")
        time.sleep(0.02)


def raw_connack(
    proxy: ProxyHandle, certs: Certs, connect: Connect, cert: tuple | None = None
) -> tuple[int, list]:
    """Send one CONNECT; (CONNACK reason code, packets after it until the close)."""
    level = connect.protocol_level
    client = RawClient(proxy.port, certs.client_context(cert), level=level)
    try:
        client.send(connect.encode(level))
        connack = client.read_packet()
        assert isinstance(connack, Connack), connack
        rest = [] if connack.reason_code == 0 else client.read_until_closed()
        return connack.reason_code, rest
    finally:
        client.close()


@pytest.fixture
def proxy(running_proxy: Callable[..., ProxyHandle], mosquitto: Broker) -> ProxyHandle:
    return running_proxy(upstream=mosquitto.address)


@pytest.mark.parametrize(
    ("level", "name", "expected"),
    [(3, "MQIsdp", 4), (4, "MQTT", 4), (5, "MQTT", 0x86)],
)
@pytest.mark.parametrize(("user", "password"), [("alice", b"nope"), ("mallory", b"alice-pw")])
def test_bad_credentials_code_per_version(
    proxy: ProxyHandle,
    certs: Certs,
    level: int,
    name: str,
    expected: int,
    user: str,
    password: bytes,
) -> None:
    connect = Connect(
        protocol_name=name, protocol_level=level, client_id="x", username=user, password=password
    )
    code, rest = raw_connack(proxy, certs, connect)
    assert code == expected and rest == []  # and then the connection is closed
    assert (
        proxy.metric("mqttgate_auth_total", {"method": "password", "result": "bad_credentials"})
        == 1
    )


@pytest.mark.parametrize(("level", "expected"), [(4, 5), (5, 0x87)])
def test_certificate_user_with_password_is_not_authorized(
    proxy: ProxyHandle, certs: Certs, level: int, expected: int
) -> None:
    connect = Connect(
        protocol_level=level, client_id="x", username="press-17", password=b"whatever"
    )
    assert raw_connack(proxy, certs, connect)[0] == expected


def test_authentication_method_gets_0x8c(proxy: ProxyHandle, certs: Certs) -> None:
    connect = Connect(
        protocol_level=5,
        client_id="x",
        username="alice",
        password=b"alice-pw",
        properties=[(0x15, "SCRAM-SHA-256")],
    )
    assert raw_connack(proxy, certs, connect)[0] == 0x8C
    assert (
        proxy.metric("mqttgate_auth_total", {"method": "password", "result": "bad_auth_method"})
        == 1
    )


@pytest.mark.parametrize(("level", "expected"), [(4, 3), (5, 0x88)])
def test_upstream_down_is_server_unavailable(
    running_proxy: Callable[..., ProxyHandle], certs: Certs, level: int, expected: int
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = running_proxy(upstream=f"127.0.0.1:{port}")
    connect = Connect(protocol_level=level, client_id="x", username="alice", password=b"alice-pw")
    assert raw_connack(proxy, certs, connect)[0] == expected
    assert proxy.metric("mqttgate_upstream_connect_failures_total") == 1
    assert (
        proxy.metric(
            "mqttgate_auth_total", {"method": "password", "result": "upstream_unavailable"}
        )
        == 1
    )
    assert proxy.call(proxy.server.readiness)["upstream"] is False


# ----------------------------------------------------------------------------- mutual TLS


@pytest.mark.parametrize("version", [V311, V5])
def test_mutual_tls_certificate_is_the_identity(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs, version: int
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, mutual_tls=True)
    cert = certs.client("press-17")
    c = Paho(proxy.port, certs.client_context(cert), version=version, client_id="m")
    try:
        assert c.connect() == 0
        assert c.subscribe("machines/press-17/#", "machines/press-18/#") == [
            1,
            0x87 if version == V5 else 0x80,
        ]
        c.publish("machines/press-17/state", b"on")
        assert c.expect().payload == b"on"
    finally:
        c.close()
    assert proxy.metric("mqttgate_auth_total", {"method": "certificate", "result": "success"}) == 1


def test_env_turns_mutual_tls_on(
    running_proxy: Callable[..., ProxyHandle],
    mosquitto: Broker,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MQTTGATE_USE_MUTUAL_TLS", "yes")
    proxy = running_proxy(upstream=mosquitto.address, mutual_tls=False)
    assert proxy.config.listeners[0].tls.mutual_tls
    c = Paho(proxy.port, certs.client_context(certs.client("press-17")), client_id="m")
    try:
        assert c.connect() == 0
    finally:
        c.close()


def test_env_turns_mutual_tls_off(
    running_proxy: Callable[..., ProxyHandle],
    mosquitto: Broker,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MQTTGATE_USE_MUTUAL_TLS", "no")
    proxy = running_proxy(upstream=mosquitto.address, mutual_tls=True)
    c = Paho(proxy.port, certs.client_context(), username="alice", password="alice-pw")
    try:
        assert c.connect() == 0
    finally:
        c.close()


@pytest.mark.parametrize(("level", "expected"), [(4, 5), (5, 0x87)])
def test_mutual_tls_username_must_match_cn(
    running_proxy: Callable[..., ProxyHandle],
    mosquitto: Broker,
    certs: Certs,
    level: int,
    expected: int,
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, mutual_tls=True)
    connect = Connect(protocol_level=level, client_id="x", username="alice", password=b"alice-pw")
    assert raw_connack(proxy, certs, connect, cert=certs.client("press-17"))[0] == expected
    # a password user presenting a certificate with its name is not authorized either
    connect = Connect(protocol_level=level, client_id="x")
    assert raw_connack(proxy, certs, connect, cert=certs.client("alice"))[0] == expected


def handshake_refused(proxy: ProxyHandle, ctx: ssl.SSLContext) -> None:
    """The proxy must refuse this client: no CONNACK, connection closed."""
    try:
        client = RawClient(proxy.port, ctx)
    except (ssl.SSLError, ConnectionError, OSError):
        return  # refused during the handshake (TLS 1.2, or alert seen early)
    try:
        client.send(Connect(protocol_level=4, client_id="x").encode(4))
        assert client.read_until_closed() == []
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["expired", "unknown_ca", "no_certificate"])
def test_bad_client_certificates_are_refused_and_counted(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs, kind: str
) -> None:
    proxy = running_proxy(upstream=mosquitto.address, mutual_tls=True)
    cert = {
        "expired": certs.expired_client("press-17"),
        "unknown_ca": certs.foreign_client("press-17"),
        "no_certificate": None,
    }[kind]
    handshake_refused(proxy, certs.client_context(cert))
    wait_metric(proxy, "mqttgate_tls_handshake_failures_total", {"reason": kind}, 1)
    assert proxy.metric("mqttgate_auth_total", {"method": "certificate", "result": "success"}) == 0
    # and the proxy keeps serving good clients
    good = Paho(proxy.port, certs.client_context(certs.client("press-17")), client_id="ok")
    try:
        assert good.connect() == 0
    finally:
        good.close()


def test_silent_broker_is_server_unavailable_within_the_connect_timeout(
    running_proxy: Callable[..., ProxyHandle], certs: Certs
) -> None:
    with socket.socket() as silent:  # accepts TCP (backlog) but never answers CONNECT
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        proxy = running_proxy(
            upstream=f"127.0.0.1:{silent.getsockname()[1]}", limits={"connect_timeout": 1}
        )
        started = time.monotonic()
        connect = Connect(protocol_level=5, client_id="x", username="alice", password=b"alice-pw")
        assert raw_connack(proxy, certs, connect)[0] == 0x88
        assert time.monotonic() - started < 3
        assert proxy.metric("mqttgate_upstream_connect_failures_total") == 1
        assert (
            proxy.metric(
                "mqttgate_auth_total", {"method": "password", "result": "upstream_unavailable"}
            )
            == 1
        )


def test_repeated_failures_from_one_address_are_slowed_down(
    proxy: ProxyHandle, certs: Certs
) -> None:
    connect = Connect(protocol_level=4, client_id="x", username="alice", password=b"guess")
    times = []
    for _ in range(6):
        started = time.monotonic()
        assert raw_connack(proxy, certs, connect)[0] == 4
        times.append(time.monotonic() - started)
    assert times[5] - min(times[:5]) >= 0.4  # from the 6th failure on: 0.5 s, then doubling
    # the right password still works (after its own wait) and clears the record
    good = Connect(protocol_level=4, client_id="x", username="alice", password=b"alice-pw")
    assert raw_connack(proxy, certs, good)[0] == 0
    started = time.monotonic()
    assert raw_connack(proxy, certs, connect)[0] == 4
    assert time.monotonic() - started < times[5]
