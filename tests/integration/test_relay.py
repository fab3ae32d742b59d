"""End to end: paho over real TLS, through the real proxy, to a real Mosquitto."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .clients import V5, V31, V311, Paho
from .conftest import PASSWORDS, Broker, Certs, ProxyHandle

pytestmark = pytest.mark.integration

VERSIONS = [pytest.param(V311, id="3.1.1"), pytest.param(V5, id="5.0")]


@pytest.fixture
def proxy(running_proxy: Callable[..., ProxyHandle], mosquitto: Broker) -> ProxyHandle:
    return running_proxy(upstream=mosquitto.address)


@pytest.fixture
def client(proxy: ProxyHandle, certs: Certs) -> Iterator[Callable[..., Paho]]:
    made: list[Paho] = []

    def make(
        user: str | None, version: int = V311, *, password: str | None = None, **kw: object
    ) -> Paho:
        pw = password if password is not None else PASSWORDS.get(user or "", None)
        c = Paho(
            proxy.port, certs.client_context(), username=user, password=pw, version=version, **kw
        )  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.mark.parametrize("version", [*VERSIONS, pytest.param(V31, id="3.1")])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_allowed_publish_is_delivered(client: Callable[..., Paho], version: int, qos: int) -> None:
    sub = client("alice", version, client_id="sub")
    assert sub.connect() == 0
    assert sub.subscribe("factory/line1/#", qos=qos) == [qos]
    pub = client("alice", version, client_id="pub")
    assert pub.connect() == 0
    pub.publish("factory/line1/temp", b"21.5", qos=qos)
    msg = sub.expect()
    assert (msg.topic, msg.payload, msg.qos) == ("factory/line1/temp", b"21.5", qos)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_denied_publish_is_not_forwarded_and_acked(
    client: Callable[..., Paho], proxy: ProxyHandle, version: int, qos: int
) -> None:
    watcher = client("root", version)
    assert watcher.connect() == 0
    watcher.subscribe("#", qos=1)
    bob = client("bob", version)
    assert bob.connect() == 0
    bob.publish("factory/line1/temp", b"forged", qos=qos)  # completes: the proxy acks it
    bob.publish("factory/line2/temp", b"mine", qos=qos)
    msg = watcher.expect()
    assert (msg.topic, msg.payload) == ("factory/line2/temp", b"mine")
    watcher.expect_none(0.3)
    assert proxy.metric("mqttgate_publish_total", {"direction": "in", "decision": "denied"}) == 1
    assert bob.client.is_connected()


@pytest.mark.parametrize("version", VERSIONS)
def test_partial_suback_keeps_positions(
    client: Callable[..., Paho], proxy: ProxyHandle, version: int
) -> None:
    alice = client("alice", version)
    assert alice.connect() == 0
    codes = alice.subscribe(
        "factory/line2/#", "factory/line1/#", "secret/#", "factory/+/status", qos=1
    )
    fail = 0x87 if version == V5 else 0x80
    assert codes == [fail, 1, fail, 1]
    # the allowed filters really are subscribed upstream
    bob = client("bob", version)
    assert bob.connect() == 0
    bob.publish("factory/line2/status", b"up", qos=1)
    assert alice.expect().topic == "factory/line2/status"
    assert proxy.metric("mqttgate_subscribe_filters_total", {"decision": "denied"}) == 2
    assert proxy.metric("mqttgate_subscribe_filters_total", {"decision": "allowed"}) == 2 + 0


@pytest.mark.parametrize("version", VERSIONS)
def test_all_filters_denied_answered_locally(client: Callable[..., Paho], version: int) -> None:
    bob = client("bob", version)
    assert bob.connect() == 0
    fail = 0x87 if version == V5 else 0x80
    assert bob.subscribe("factory/line1/#", "#", qos=0) == [fail, fail]
    assert bob.subscribe("factory/line2/x", qos=0) == [0]  # still connected and working


@pytest.mark.parametrize("version", VERSIONS)
def test_wildcards_and_sys_topics(client: Callable[..., Paho], version: int) -> None:
    root = client("root", version)
    assert root.connect() == 0
    fail = 0x87 if version == V5 else 0x80
    # "#" is allowed for root, but never reaches $SYS (leading wildcard); $SYS/# needs $SYS.
    assert root.subscribe("#", "$SYS/#", qos=0) == [0, fail]
    sysu = client("sys", version)
    assert sysu.connect() == 0
    assert sysu.subscribe("$SYS/#", "#", qos=0) == [0, fail]
    msg = sysu.expect(timeout=15)  # mosquitto publishes $SYS topics periodically
    assert msg.topic.startswith("$SYS/")
    # root's "#" never matched a $SYS topic, though the broker published them meanwhile
    while not root.messages.empty():
        assert not root.messages.get().topic.startswith("$")


@pytest.mark.parametrize("version", VERSIONS)
def test_read_permission_checked_on_delivery(client: Callable[..., Paho], version: int) -> None:
    # carol may write factory/line1/status but not read it; alice may read it (role).
    alice = client("alice", version)
    assert alice.connect() == 0
    assert alice.subscribe("factory/+/status", qos=1) == [1]
    carol = client("carol", version)
    assert carol.connect() == 0
    carol.publish("factory/line1/status", b"ok", qos=1)
    assert alice.expect().payload == b"ok"


@pytest.mark.parametrize("version", VERSIONS)
def test_shared_subscriptions_are_judged_without_the_share_prefix(
    client: Callable[..., Paho], version: int
) -> None:
    alice = client("alice", version)
    assert alice.connect() == 0
    fail = 0x87 if version == V5 else 0x80
    assert alice.subscribe("$share/g1/factory/line1/#", "$share/g1/factory/line2/#", qos=1) == [
        1,
        fail,
    ]
    bob = client("root", version)
    assert bob.connect() == 0
    bob.publish("factory/line1/s", b"shared")
    assert alice.expect().payload == b"shared"


@pytest.mark.parametrize("level", [4, 5])
def test_ping_and_unsubscribe_are_relayed(proxy: ProxyHandle, certs: Certs, level: int) -> None:
    from mqttgate.codec import Connack, Connect, Pingreq, Pingresp, Unsuback, Unsubscribe

    from .clients import RawClient

    raw = RawClient(proxy.port, certs.client_context(), level=level)
    try:
        raw.send(
            Connect(protocol_level=level, client_id="p", username="bob", password=b"bob-pw").encode(
                level
            )
        )
        assert isinstance(raw.read_packet(), Connack)
        raw.send(Pingreq().encode(level))
        assert isinstance(raw.read_packet(), Pingresp)
        raw.send(Unsubscribe(packet_id=3, topic_filters=["factory/line2/#"]).encode(level))
        unsuback = raw.read_packet()
        assert isinstance(unsuback, Unsuback) and unsuback.packet_id == 3
    finally:
        raw.close()
