"""Persistent sessions, retained messages, reloads, client ids, wills and topic aliases,
end to end through Mosquitto."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator

import pytest
from mqttgate.codec import Connack, Connect, Publish, Will

from .clients import V5, V311, Paho, RawClient
from .conftest import PASSWORDS, Broker, Certs, ProxyHandle, UsersFile

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(running_proxy: Callable[..., ProxyHandle], mosquitto: Broker) -> ProxyHandle:
    return running_proxy(upstream=mosquitto.address)


@pytest.fixture
def client(proxy: ProxyHandle, certs: Certs) -> Iterator[Callable[..., Paho]]:
    made: list[Paho] = []

    def make(user: str, version: int = V311, **kw: object) -> Paho:
        c = Paho(
            proxy.port,
            certs.client_context(),
            username=user,
            password=PASSWORDS[user],
            version=version,
            **kw,
        )  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def revoke_line1(users_file: UsersFile) -> None:
    data = copy.deepcopy(users_file.data)
    data["users"]["alice"]["permissions"] = [
        {"topic": "users/${username}/#", "access": "readWrite"}
    ]
    data["users"]["alice"]["roles"] = []
    users_file.write(data)


@pytest.mark.parametrize("version", [V311, V5])
def test_queued_message_is_checked_against_the_current_policy(
    client: Callable[..., Paho], proxy: ProxyHandle, users_file: UsersFile, version: int
) -> None:
    kw = {"session_expiry": 300} if version == V5 else {}
    alice = client("alice", version, client_id="persist", clean=False, **kw)
    assert alice.connect() == 0
    assert alice.subscribe("factory/line1/#", qos=1) == [1]
    alice.close()
    root = client("root", version)
    assert root.connect() == 0
    root.publish("factory/line1/queued", b"while-allowed", qos=1)  # queued by the broker
    revoke_line1(users_file)
    assert proxy.reload_policy()
    root.publish("factory/line1/queued", b"after-revoke", qos=1, retain=True)
    again = client("alice", version, client_id="persist", clean=False, **kw)
    assert again.connect() == 0
    assert again.session_present  # the broker kept the session and its queue ...
    again.expect_none(0.7)  # ... but nothing of it may reach alice now
    assert proxy.metric("mqttgate_publish_total", {"direction": "out", "decision": "denied"}) >= 2
    # the proxy completed QoS 1 with the broker: the queue is empty afterwards
    again.close()
    third = client("alice", version, client_id="persist", clean=False, **kw)
    assert third.connect() == 0
    third.expect_none(0.3)


@pytest.mark.parametrize("version", [V311, V5])
def test_retained_message_after_revocation_is_not_delivered(
    client: Callable[..., Paho], proxy: ProxyHandle, users_file: UsersFile, version: int
) -> None:
    alice = client("alice", version)
    assert alice.connect() == 0
    assert alice.subscribe("factory/line1/#", qos=1) == [1]
    root = client("root", version)
    assert root.connect() == 0
    root.publish("factory/line1/r", b"first", qos=1, retain=True)
    assert alice.expect().payload == b"first"
    revoke_line1(users_file)
    assert proxy.reload_policy()
    root.publish("factory/line1/r", b"second", qos=2, retain=True)
    alice.expect_none(0.5)
    # a new subscription to it is refused too; root still gets the retained message
    assert alice.subscribe("factory/line1/#") == [0x87 if version == V5 else 0x80]
    watcher = client("root", version)
    assert watcher.connect() == 0
    watcher.subscribe("factory/line1/r")
    msg = watcher.expect()
    assert (msg.payload, msg.retain) == (b"second", True)


def test_removed_user_is_disconnected_on_reload(
    client: Callable[..., Paho], proxy: ProxyHandle, users_file: UsersFile
) -> None:
    bob = client("bob", V5)
    assert bob.connect() == 0
    data = copy.deepcopy(users_file.data)
    del data["users"]["bob"]
    users_file.write(data)
    assert proxy.reload_policy()
    assert bob.disconnected.wait(3)
    assert int(bob.disconnect_reason.value) == 0x87
    assert proxy.metric("mqttgate_policy_reloads_total", {"result": "success"}) == 1


def test_broken_users_file_keeps_the_old_policy(
    client: Callable[..., Paho], proxy: ProxyHandle, users_file: UsersFile
) -> None:
    users_file.path.write_text("users: [not, a, mapping\n")
    assert not proxy.reload_policy()
    assert proxy.metric("mqttgate_policy_reloads_total", {"result": "error"}) == 1
    alice = client("alice")
    assert alice.connect() == 0
    assert alice.subscribe("factory/line1/#") == [1]


def test_one_user_cannot_take_over_anothers_client_id(client: Callable[..., Paho]) -> None:
    alice = client("alice", client_id="plc-1", clean=False)
    assert alice.connect() == 0
    assert alice.subscribe("shared/#") == [1]
    bob = client("bob", client_id="plc-1", clean=False)
    assert bob.connect() == 0
    assert bob.session_present is False  # bob did not get alice's session
    bob.publish("shared/news", b"hi")
    assert alice.expect().payload == b"hi"  # and alice was not kicked off
    assert not alice.disconnected.is_set()


@pytest.mark.parametrize(("version", "code"), [(V311, 0x87), (V5, 0x87)])
def test_will_on_forbidden_topic_is_refused(
    client: Callable[..., Paho], version: int, code: int
) -> None:
    bob = client("bob", version, will=("factory/line1/will", b"x"))
    assert bob.connect() == code


def test_allowed_will_is_published_when_the_client_vanishes(
    client: Callable[..., Paho], proxy: ProxyHandle, certs: Certs
) -> None:
    root = client("root")
    assert root.connect() == 0
    root.subscribe("factory/line2/will")
    raw = RawClient(proxy.port, certs.client_context())
    raw.send(
        Connect(
            protocol_level=4,
            client_id="w",
            username="bob",
            password=b"bob-pw",
            will=Will(topic="factory/line2/will", payload=b"gone", qos=1),
        ).encode(4)
    )
    assert isinstance(raw.read_packet(), Connack)
    raw.sock.close()  # no DISCONNECT: the broker must send the will
    assert root.expect().payload == b"gone"


def test_topic_alias_bypass_attempts(
    client: Callable[..., Paho], proxy: ProxyHandle, certs: Certs
) -> None:
    root = client("root", V5)
    assert root.connect() == 0
    root.subscribe("factory/#")
    raw = RawClient(proxy.port, certs.client_context(), level=5)
    raw.send(
        Connect(protocol_level=5, client_id="alias", username="alice", password=b"alice-pw").encode(
            5
        )
    )
    connack = raw.read_packet()
    assert isinstance(connack, Connack) and connack.reason_code == 0
    alias = 0x23

    def pub(topic: str, payload: bytes, n: int) -> None:
        raw.send(Publish(topic=topic, payload=payload, properties=[(alias, n)]).encode(5))

    pub("factory/line1/a", b"1", 1)  # allowed, sets alias 1
    pub("", b"2", 1)  # alias-only: allowed (real topic factory/line1/a)
    pub("factory/line2/x", b"3", 2)  # denied, sets alias 2 (the broker never sees it)
    pub("", b"4", 2)  # alias-only on the denied topic: denied
    pub("factory/line2/y", b"5", 1)  # re-point allowed alias 1 to a denied topic: denied
    pub("", b"6", 1)  # ... and its alias-only use: denied, not delivered as factory/line1/a
    got = [(m.topic, m.payload) for m in (root.expect(), root.expect())]
    assert got == [("factory/line1/a", b"1"), ("factory/line1/a", b"2")]
    root.expect_none(0.5)
    raw.send(Publish(topic="", payload=b"7", properties=[(alias, 9)]).encode(5))  # unknown alias
    packets = raw.read_until_closed(timeout=3)
    assert [p.reason_code for p in packets] == [0x82]
    raw.close()
    assert proxy.metric("mqttgate_publish_total", {"direction": "in", "decision": "denied"}) == 4


def test_connections_and_bytes_are_counted(client: Callable[..., Paho], proxy: ProxyHandle) -> None:
    alice = client("alice")
    assert alice.connect() == 0
    alice.subscribe("factory/line1/#")
    alice.publish("factory/line1/x", b"y" * 100)
    alice.expect()
    assert proxy.metric("mqttgate_connections_total", {"listener": "mqtts"}) == 1
    assert proxy.metric("mqttgate_connections_active") == 1
    assert proxy.metric("mqttgate_bytes_total", {"direction": "in"}) > 100
    assert proxy.metric("mqttgate_bytes_total", {"direction": "out"}) > 100
    assert proxy.metric("mqttgate_publish_total", {"direction": "in", "decision": "allowed"}) == 1
    assert proxy.metric("mqttgate_publish_total", {"direction": "out", "decision": "allowed"}) == 1
    assert proxy.metric("mqttgate_connect_duration_seconds_count") == 1
    alice.close()
    deadline = time.monotonic() + 3
    while proxy.metric("mqttgate_connections_active") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.metric("mqttgate_connections_active") == 0
