"""``/metrics`` of a real mqttgate process, scraped over HTTP: every event type moves its
counters by exactly its count, and nothing else moves.

Each test takes a settled scrape (no connection open, so every per-connection count has
been flushed) before and after the event and compares *all* ``mqttgate_`` samples, so a
double count anywhere fails the test, not only in the series the test is about.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mqttgate.codec import (
    Connack,
    Connect,
    Disconnect,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)

from tests.integration.clients import Paho, RawClient
from tests.integration.conftest import Broker, Certs, free_port

from .gate import Gate, counter_deltas, key, wait_until

pytestmark = pytest.mark.integration

#: Timing-dependent samples: compared separately (or not at all).
TIMING = (
    "mqttgate_bytes_total",
    "mqttgate_connect_duration_seconds_bucket",
    "mqttgate_connect_duration_seconds_sum",
)

CONNECTION = {
    key("mqttgate_connections_total", listener="mqtts"): 1,
}


def auth(method: str, result: str) -> dict:
    return {key("mqttgate_auth_total", method=method, result=result): 1}


DURATION = {key("mqttgate_connect_duration_seconds_count"): 1}


def connack_of(gate: Gate, certs: Certs, connect: Connect, cert: tuple | None = None) -> int:
    """Send one CONNECT; its CONNACK's reason code. A refused client is closed by the proxy,
    an accepted one says DISCONNECT and closes."""
    level = connect.protocol_level
    client = RawClient(gate.port, certs.client_context(cert), level=level)
    try:
        client.send(connect.encode(level))
        connack = client.read_packet()
        assert isinstance(connack, Connack), connack
        if connack.reason_code == 0:
            client.send(Disconnect().encode(level))
        client.read_until_closed()
        return connack.reason_code
    finally:
        client.close()


def handshake_refused(gate: Gate, certs: Certs, cert: tuple) -> bool:
    """The proxy refuses the client certificate: the handshake fails (TLS 1.2) or, as TLS
    1.3 clients finish first, the connection ends before any MQTT answer."""
    try:
        client = RawClient(gate.port, certs.client_context(cert), level=4)
    except OSError:
        return True
    try:
        client.send(Connect(protocol_level=4, client_id="refused").encode(4))
        return client.read_packet() is None
    except OSError:
        return True
    finally:
        client.close()


def password_connect(user: str, password: bytes, level: int = 4, **kw: object) -> Connect:
    name = "MQIsdp" if level == 3 else "MQTT"
    return Connect(
        protocol_name=name,
        protocol_level=level,
        client_id=f"ops-{user}",
        username=user,
        password=password,
        **kw,  # type: ignore[arg-type]
    )


CASES = {
    "success": (
        password_connect("alice", b"alice-pw"),
        0,
        {**auth("password", "success"), **DURATION},
    ),
    "bad_credentials": (
        password_connect("alice", b"wrong"),
        4,
        auth("password", "bad_credentials"),
    ),
    "unknown_user": (
        password_connect("mallory", b"alice-pw"),
        4,
        auth("password", "bad_credentials"),
    ),
    "not_authorized": (
        password_connect("press-17", b"anything"),
        5,
        auth("password", "not_authorized"),
    ),
    "bad_auth_method": (
        password_connect("alice", b"alice-pw", 5, properties=[(0x15, "SCRAM-SHA-256")]),
        0x8C,
        auth("password", "bad_auth_method"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_auth_result_counts_exactly_once(
    gate: Callable[..., Gate], mosquitto: Broker, certs: Certs, case: str
) -> None:
    connect, code, expected = CASES[case]
    g = gate(upstream=mosquitto.address)
    before = g.settled()
    assert connack_of(g, certs, connect) == code
    after = g.settled()
    assert counter_deltas(before, after, ignore=TIMING) == {**CONNECTION, **expected}


def test_upstream_unavailable_counts_once(gate: Callable[..., Gate], certs: Certs) -> None:
    g = gate(upstream=f"127.0.0.1:{free_port()}")  # nothing listens there
    before = g.settled()
    assert connack_of(g, certs, password_connect("alice", b"alice-pw")) == 3
    after = g.settled()
    assert counter_deltas(before, after, ignore=TIMING) == {
        **CONNECTION,
        **auth("password", "upstream_unavailable"),
        key("mqttgate_upstream_connect_failures_total"): 1,
    }


def test_certificate_login_and_wrong_ca_handshake(
    gate: Callable[..., Gate], mosquitto: Broker, certs: Certs
) -> None:
    g = gate(upstream=mosquitto.address, mutual_tls=True)
    before = g.settled()
    connect = Connect(protocol_level=4, client_id="press")
    assert connack_of(g, certs, connect, certs.client("press-17")) == 0
    assert handshake_refused(g, certs, certs.foreign_client("press-17"))
    after = wait_until(
        lambda: (
            (s := g.settled()).value("mqttgate_tls_handshake_failures_total", reason="unknown_ca")
            and s
        ),
        what="the handshake failure to be counted",
    )
    assert counter_deltas(before, after, ignore=TIMING) == {
        key("mqttgate_connections_total", listener="mqtts"): 2,
        key("mqttgate_tls_handshake_failures_total", reason="unknown_ca"): 1,
        **auth("certificate", "success"),
        **DURATION,
    }


def test_publish_subscribe_and_bytes_count_exactly(
    gate: Callable[..., Gate], mosquitto: Broker, certs: Certs
) -> None:
    """bob may use factory/line2/# and shared/#, not factory/line1/#."""
    g = gate(upstream=mosquitto.address)
    before = g.settled()
    client = RawClient(g.port, certs.client_context(), level=4)
    sent: list[bytes] = []
    received: list[Any] = []

    def send(packet: object) -> None:
        data = packet.encode(4)  # type: ignore[attr-defined]
        sent.append(data)
        client.send(data)

    def read() -> object:
        packet = client.read_packet()
        assert packet is not None, "closed early"
        received.append(packet)
        return packet

    try:
        send(password_connect("bob", b"bob-pw"))
        assert read() == Connack(session_present=False, reason_code=0)
        filters = ["factory/line2/#", "factory/line1/#", "shared/#"]
        send(Subscribe(1, [Subscription(f, 0) for f in filters]))
        assert read() == Suback(1, [0, 0x80, 0])
        for pid in (2, 3, 4):  # allowed: acked by the broker and delivered back (QoS 0)
            send(Publish("factory/line2/a", b"m%d" % pid, qos=1, packet_id=pid))
        send(Publish("factory/line1/x", b"denied", qos=1, packet_id=5))  # acked by the proxy
        got = [read() for _ in range(7)]
        assert sorted(p.packet_id for p in got if isinstance(p, Puback)) == [2, 3, 4, 5]
        assert sorted(p.payload for p in got if isinstance(p, Publish)) == [b"m2", b"m3", b"m4"]
        send(Disconnect())
        assert client.read_until_closed() == []
    finally:
        client.close()
    after = g.settled()
    assert counter_deltas(before, after, ignore=TIMING) == {
        **CONNECTION,
        **auth("password", "success"),
        **DURATION,
        key("mqttgate_subscribe_filters_total", decision="allowed"): 2,
        key("mqttgate_subscribe_filters_total", decision="denied"): 1,
        key("mqttgate_publish_total", direction="in", decision="allowed"): 3,
        key("mqttgate_publish_total", direction="in", decision="denied"): 1,
        key("mqttgate_publish_total", direction="out", decision="allowed"): 3,
    }
    # bytes: everything the client sent; everything the broker sent, which is what the
    # client got minus the proxy's own PUBACK and minus the denied filter's SUBACK code
    from_proxy = len(Puback(5).encode(4)) + 1
    bytes_in = sum(len(b) for b in sent)
    bytes_out = sum(len(p.encode(4)) for p in received) - from_proxy
    moved = {
        d: after.value("mqttgate_bytes_total", direction=d)
        - before.value("mqttgate_bytes_total", direction=d)
        for d in ("in", "out")
    }
    assert moved == {"in": bytes_in, "out": bytes_out}


def test_connections_active_follows_open_connections(
    gate: Callable[..., Gate], mosquitto: Broker, certs: Certs
) -> None:
    g = gate(upstream=mosquitto.address)
    before = g.settled()
    clients = [
        Paho(g.port, certs.client_context(), username="alice", password="alice-pw")
        for _ in range(3)
    ]
    try:
        for c in clients:
            assert c.connect() == 0
        open_now = wait_until(
            lambda: (s := g.scrape()).value("mqttgate_connections_active") == 3 and s,
            what="3 active connections",
        )
        assert open_now.value("mqttgate_connections_total", listener="mqtts") == 3 + before.value(
            "mqttgate_connections_total", listener="mqtts"
        )
    finally:
        for c in clients:
            c.close()
    after = g.settled()  # back to 0
    assert counter_deltas(before, after, ignore=TIMING) == {
        key("mqttgate_connections_total", listener="mqtts"): 3,
        key("mqttgate_auth_total", method="password", result="success"): 3,
        key("mqttgate_connect_duration_seconds_count"): 3,
    }
    assert after.value("mqttgate_connect_duration_seconds_sum") > before.value(
        "mqttgate_connect_duration_seconds_sum"
    )


@pytest.mark.parametrize("per_user", [False, True])
def test_usernames_in_labels_only_with_per_user_and_never_a_failed_logins_name(
    gate: Callable[..., Gate], mosquitto: Broker, certs: Certs, per_user: bool
) -> None:
    g = gate(upstream=mosquitto.address, metrics={"per_user": per_user})
    assert connack_of(g, certs, password_connect("alice", b"alice-pw")) == 0
    assert connack_of(g, certs, password_connect("zz-made-up-name", b"x")) == 4
    g.settled()
    status, text = g.get("/metrics")
    assert status == 200
    assert "zz-made-up-name" not in text  # a client-chosen name never becomes a label
    assert ("ops-alice" in text, "factory" in text) == (False, False)  # no client ids, topics
    series = g.scrape()
    if per_user:
        labels = {"method": "password", "result": "success", "user": "alice"}
        assert series.value("mqttgate_auth_total", **labels) == 1
    else:
        assert 'user="' not in text and "alice" not in text
        assert series.value("mqttgate_auth_total", method="password", result="success") == 1
