"""The session rules of docs/design.md, sans-IO: bytes in, bytes and events out, no sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mqttgate.codec import (
    Connack,
    Connect,
    Disconnect,
    FrameReader,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Will,
    decode_packet,
)
from mqttgate.policy import Authenticator, PolicyStore, hash_password
from mqttgate.proxy.session import (
    AuthOutcome,
    Close,
    Denial,
    OpenUpstream,
    Ready,
    Session,
    SessionSettings,
    State,
    VerifyPassword,
    namespace_identity,
)

P_ASSIGNED_CLIENT_ID = 0x12
P_AUTH_METHOD = 0x15
P_TOPIC_ALIAS_MAXIMUM = 0x22
P_TOPIC_ALIAS = 0x23
P_MAXIMUM_PACKET_SIZE = 0x27


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {"alice": hash_password("alice-pw"), "bob": hash_password("bob-pw")}


def users_doc(
    hashes: dict[str, str], *, bob: bool = True, alice_extra: list[Any] | None = None
) -> dict[str, Any]:
    users: dict[str, Any] = {
        "alice": {
            "grant_type": "password",
            "password": hashes["alice"],
            "permissions": [
                {"topic": "factory/line1/#", "access": "readWrite"},
                {"topic": "in/only", "access": "write"},
                *(alice_extra or []),
            ],
        },
        "a/b%c": {
            "grant_type": "password",
            "password": hashes["alice"],
            "permissions": [{"topic": "x/#", "access": "readWrite"}],
        },
        "press-17": {
            "grant_type": "certificate",
            "permissions": [{"topic": "machines/press-17/#", "access": "readWrite"}],
        },
    }
    if bob:
        users["bob"] = {
            "grant_type": "password",
            "password": hashes["bob"],
            "permissions": [{"topic": "factory/line2/#", "access": "readWrite"}],
        }
    return {"users": users}


@pytest.fixture
def users_path(tmp_path: Path, hashes: dict[str, str]) -> Path:
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump(users_doc(hashes)))
    return path


@pytest.fixture
def store(users_path: Path) -> PolicyStore:
    return PolicyStore(users_path)


AUTH = Authenticator()


def packets(chunks: list[bytes], level: int) -> list[Any]:
    reader = FrameReader(protocol_level=level)
    out = []
    for chunk in chunks:
        for fb, _s, bs, end in reader.feed(chunk):
            out.append(decode_packet(fb, reader.buffer[bs:end], level))
    chunks.clear()
    return out


class Harness:
    """A session with its two outputs captured; drives the I/O layer's side by hand."""

    def __init__(self, store: PolicyStore, *, peer_cn: str | None = None, **settings: Any) -> None:
        self.to_client: list[bytes] = []
        self.to_upstream: list[bytes] = []
        self.events: list[Any] = []
        self.session = Session(
            store=store,
            authenticator=AUTH,
            settings=SessionSettings(**settings),
            send_client=self.to_client.append,
            send_upstream=self.to_upstream.append,
            peer_cn=peer_cn,
        )
        self.level = 4

    def _run(self, events: Any) -> list[Any]:
        """Play the I/O layer: verify passwords, 'open' the upstream."""
        out = list(events)
        self.events.extend(out)
        for event in out:
            if isinstance(event, VerifyPassword):
                result = AUTH.authenticate_password(event.snapshot, event.username, event.password)
                out.extend(self._run(self.session.password_checked(result)))
            elif isinstance(event, OpenUpstream):
                out.extend(self._run(self.session.upstream_connected()))
        return out

    def client(self, *items: Any) -> list[Any]:
        data = b"".join(i if isinstance(i, bytes) else i.encode(self.level) for i in items)
        return self._run(self.session.client_data(data))

    def broker(self, *items: Any) -> list[Any]:
        data = b"".join(i if isinstance(i, bytes) else i.encode(self.level) for i in items)
        return self._run(self.session.upstream_data(data))

    def client_got(self) -> list[Any]:
        return packets(self.to_client, self.level)

    def upstream_got(self) -> list[Any]:
        return packets(self.to_upstream, self.level)

    def connect(
        self,
        username: str | None = "alice",
        password: bytes | None = b"alice-pw",
        *,
        level: int = 4,
        client_id: str = "dev1",
        connack: Connack | None = None,
        **fields: Any,
    ) -> Connect:
        """CONNECT through to RELAY; returns the CONNECT the broker saw."""
        self.level = level
        name = "MQIsdp" if level == 3 else "MQTT"
        pkt = Connect(
            protocol_name=name,
            protocol_level=level,
            client_id=client_id,
            username=username,
            password=password,
            **fields,
        )
        self.client(pkt)
        assert self.session.state is State.AWAIT_CONNACK, self.events
        (upstream_connect,) = self.upstream_got()
        self.broker(connack or Connack())
        assert self.session.state is State.RELAY
        return upstream_connect

    def refused(
        self, username: str | None, password: bytes | None, level: int, **fields: Any
    ) -> Any:
        self.level = level
        fields.setdefault("client_id", "c")
        pkt = Connect(
            protocol_name="MQTT",
            protocol_level=level,
            username=username,
            password=password,
            **fields,
        )
        events = self.client(pkt)
        assert any(isinstance(e, Close) for e in events), events
        assert self.session.state is State.CLOSED
        assert self.to_upstream == []
        (connack,) = self.client_got()
        assert isinstance(connack, Connack)
        return connack.reason_code


def outcome(h: Harness) -> tuple[str, str]:
    (o,) = [e for e in h.events if isinstance(e, AuthOutcome)]
    return o.method, o.result


# ------------------------------------------------------------------------- CONNECT


def test_connect_is_rewritten_for_the_broker(store: PolicyStore) -> None:
    h = Harness(store)
    up = h.connect(
        level=5,
        client_id="dev1",
        properties=[(0x26, ("k", "v")), (P_MAXIMUM_PACKET_SIZE, 2048)],
    )
    assert up.username == "alice" and up.password is None
    assert up.client_id == "alice/dev1"
    props = dict(up.properties)
    assert props[0x26] == ("k", "v") and props[P_MAXIMUM_PACKET_SIZE] == 2048
    assert outcome(h) == ("password", "success")
    assert any(isinstance(e, Ready) for e in h.events)
    assert isinstance(h.client_got()[0], Connack)


def test_identity_is_percent_encoded_in_the_client_id(store: PolicyStore) -> None:
    assert namespace_identity("a/b%c") == "a%2Fb%25c"
    up = Harness(store).connect("a/b%c", b"alice-pw", client_id="x")
    assert up.client_id == "a%2Fb%25c/x"


def test_namespace_can_be_turned_off(store: PolicyStore) -> None:
    up = Harness(store, client_id_namespace=False).connect(client_id="dev1")
    assert up.client_id == "dev1"


def test_empty_client_id_is_generated_and_assigned_to_5_clients(store: PolicyStore) -> None:
    h = Harness(store)
    up = h.connect(level=5, client_id="")
    prefix, _, generated = up.client_id.partition("/")
    assert prefix == "alice" and generated
    (connack,) = h.client_got()
    assert dict(connack.properties)[P_ASSIGNED_CLIENT_ID] == generated
    # a second client gets another one
    up2 = Harness(store).connect(level=5, client_id="")
    assert up2.client_id != up.client_id


def test_empty_client_id_with_persistent_session_is_rejected_in_311(store: PolicyStore) -> None:
    h = Harness(store)
    assert h.refused("alice", b"alice-pw", 4, client_id="", clean_start=False) == 2


@pytest.mark.parametrize(("level", "code"), [(3, 4), (4, 4), (5, 0x86)])
@pytest.mark.parametrize(
    ("user", "password"), [("alice", b"wrong"), ("nobody", b"x"), (None, None)]
)
def test_bad_credentials_and_unknown_user_look_alike(
    store: PolicyStore, level: int, code: int, user: str | None, password: bytes | None
) -> None:
    h = Harness(store)
    h.level = level
    pkt = Connect(
        protocol_name="MQIsdp" if level == 3 else "MQTT",
        protocol_level=level,
        client_id="c",
        username=user,
        password=password,
    )
    h.client(pkt)
    (connack,) = h.client_got()
    assert connack.reason_code == code
    assert h.session.state is State.CLOSED and h.to_upstream == []
    assert outcome(h) == ("password", "bad_credentials")


@pytest.mark.parametrize(("level", "code"), [(4, 5), (5, 0x87)])
def test_certificate_user_without_certificate_is_not_authorized(
    store: PolicyStore, level: int, code: int
) -> None:
    h = Harness(store)
    assert h.refused("press-17", b"anything", level) == code
    assert outcome(h) == ("password", "not_authorized")


@pytest.mark.parametrize(("level", "code"), [(4, 5), (5, 0x87)])
def test_will_on_a_forbidden_topic_is_not_authorized(
    store: PolicyStore, level: int, code: int
) -> None:
    h = Harness(store)
    will = Will(topic="factory/line2/dead", payload=b"x", qos=1)
    assert h.refused("alice", b"alice-pw", level, will=will) == code
    assert any(isinstance(e, Denial) and e.action == "will" for e in h.events)


def test_will_on_an_allowed_topic_is_kept(store: PolicyStore) -> None:
    up = Harness(store).connect(will=Will(topic="factory/line1/dead", payload=b"bye", qos=1))
    assert up.will is not None and up.will.topic == "factory/line1/dead"


def test_authentication_method_is_refused(store: PolicyStore) -> None:
    h = Harness(store)
    assert h.refused("alice", b"alice-pw", 5, properties=[(P_AUTH_METHOD, "SCRAM-SHA-1")]) == 0x8C
    assert outcome(h) == ("password", "bad_auth_method")


@pytest.mark.parametrize(("level", "code"), [(4, 3), (5, 0x88)])
def test_upstream_unavailable(store: PolicyStore, level: int, code: int) -> None:
    h = Harness(store)
    h.level = level
    events = h.session.client_data(
        Connect(protocol_level=level, client_id="c", username="alice", password=b"alice-pw").encode(
            level
        )
    )
    # play password verification but not the upstream connection
    for e in events:
        if isinstance(e, VerifyPassword):
            events = h.session.password_checked(
                AUTH.authenticate_password(e.snapshot, e.username, e.password)
            )
    assert any(isinstance(e, OpenUpstream) for e in events)
    events = h.session.upstream_failed()
    assert any(isinstance(e, Close) for e in events)
    assert [e.result for e in events if isinstance(e, AuthOutcome)] == ["upstream_unavailable"]
    (connack,) = h.client_got()
    assert connack.reason_code == code


def test_mutual_tls_identity_is_the_certificate_cn(store: PolicyStore) -> None:
    h = Harness(store, mutual_tls=True, peer_cn="press-17")
    up = h.connect(None, None, client_id="m1")
    assert up.username == "press-17" and up.client_id == "press-17/m1"
    assert outcome(h) == ("certificate", "success")


@pytest.mark.parametrize(
    ("cn", "username", "code"),
    [("press-17", "alice", 5), ("alice", None, 5), ("nobody", None, 4)],
)
def test_mutual_tls_refusals(store: PolicyStore, cn: str, username: str | None, code: int) -> None:
    h = Harness(store, mutual_tls=True, peer_cn=cn)
    assert h.refused(username, None, 4) == code


def test_first_packet_must_be_connect(store: PolicyStore) -> None:
    h = Harness(store)
    events = h.client(Publish(topic="factory/line1/x", payload=b"x"))
    assert any(isinstance(e, Close) for e in events)
    assert h.to_client == [] and h.to_upstream == []


@pytest.mark.parametrize(
    "garbage", [b"\x00\x00", b"\x10\xff\xff\xff\xff\x7f", b"GET / HTTP/1.1\r\n\r\n"]
)
def test_garbage_first_packet_closes(store: PolicyStore, garbage: bytes) -> None:
    h = Harness(store)
    assert any(isinstance(e, Close) for e in h.client(garbage))
    assert h.session.state is State.CLOSED


def test_huge_declared_length_is_refused_at_the_header(store: PolicyStore) -> None:
    h = Harness(store, max_packet_size=1024)
    h.connect(level=5)
    h.client_got()
    # PUBLISH declaring 256 MiB: refused as soon as the fixed header is complete.
    events = h.client(b"\x30\xff\xff\xff\x7f")
    assert any(isinstance(e, Close) for e in events)
    (disconnect,) = h.client_got()
    assert isinstance(disconnect, Disconnect) and disconnect.reason_code == 0x95


@pytest.mark.parametrize("level", [4, 5])
def test_second_connect_is_a_protocol_error(store: PolicyStore, level: int) -> None:
    h = Harness(store)
    h.connect(level=level)
    h.client_got()
    events = h.client(
        Connect(protocol_level=level, client_id="again", username="alice", password=b"alice-pw")
    )
    assert any(isinstance(e, Close) for e in events)
    got = h.client_got()
    if level == 5:
        assert [(type(p), p.reason_code) for p in got] == [(Disconnect, 0x82)]
    else:
        assert got == []
    assert h.to_upstream == []


def test_packets_pipelined_behind_connect_wait_for_the_connack(store: PolicyStore) -> None:
    h = Harness(store)
    connect = Connect(protocol_level=4, client_id="p", username="alice", password=b"alice-pw")
    pub = Publish(topic="factory/line1/a", payload=b"1")
    h.client(connect.encode(4) + pub.encode(4))
    assert h.session.state is State.AWAIT_CONNACK
    # nothing but CONNECT reaches the broker before its CONNACK
    assert [type(p) for p in h.upstream_got()] == [Connect]
    h.broker(Connack())
    assert [p.topic for p in h.upstream_got()] == ["factory/line1/a"]


# ------------------------------------------------------------------------- PUBLISH client -> broker


def test_allowed_chunk_is_forwarded_as_the_same_bytes(store: PolicyStore) -> None:
    h = Harness(store)
    h.connect()
    h.to_upstream.clear()
    chunk = b"".join(
        Publish(topic="factory/line1/t", payload=bytes([i]), qos=1, packet_id=i + 1).encode(4)
        for i in range(5)
    )
    h.session.client_data(chunk)
    assert len(h.to_upstream) == 1 and h.to_upstream[0] is chunk
    assert h.session.stats.pub_in_allowed == 5


def test_runs_around_a_denied_publish_keep_original_bytes(store: PolicyStore) -> None:
    h = Harness(store)
    h.connect()
    h.client_got()
    h.to_upstream.clear()
    a = Publish(topic="factory/line1/a", payload=b"a").encode(4)
    d = Publish(topic="factory/line2/d", payload=b"d", qos=1, packet_id=9).encode(4)
    b = Publish(topic="factory/line1/b", payload=b"b").encode(4)
    events = h.session.client_data(a + d + b)
    assert h.to_upstream == [a, b]
    assert [(type(p), p.packet_id, p.reason_code) for p in h.client_got()] == [(Puback, 9, 0)]
    assert [(e.action, e.topic) for e in events if isinstance(e, Denial)] == [
        ("publish", "factory/line2/d")
    ]
    assert (h.session.stats.pub_in_allowed, h.session.stats.pub_in_denied) == (2, 1)


@pytest.mark.parametrize(("level", "code"), [(4, 0), (5, 0x87)])
def test_denied_qos2_publish_is_completed_by_the_proxy(
    store: PolicyStore, level: int, code: int
) -> None:
    h = Harness(store)
    h.connect(level=level)
    h.client_got()
    h.to_upstream.clear()
    h.client(Publish(topic="factory/line2/x", payload=b"x", qos=2, packet_id=7))
    h.client(Publish(topic="factory/line2/x", payload=b"x", qos=0))
    assert [(type(p), p.packet_id, p.reason_code) for p in h.client_got()] == [(Pubrec, 7, code)]
    h.client(Pubrel(packet_id=7))
    assert [(type(p), p.packet_id) for p in h.client_got()] == [(Pubcomp, 7)]
    assert h.to_upstream == []
    # a PUBREL for an id the broker knows is relayed
    h.client(Pubrel(packet_id=8))
    assert [(type(p), p.packet_id) for p in h.upstream_got()] == [(Pubrel, 8)]


@pytest.mark.parametrize("level", [4, 5])
def test_denied_publish_can_disconnect(store: PolicyStore, level: int) -> None:
    h = Harness(store, disconnect_on_denied_publish=True)
    h.connect(level=level)
    h.client_got()
    events = h.client(Publish(topic="factory/line2/x", payload=b"x", qos=1, packet_id=1))
    assert any(isinstance(e, Close) for e in events)
    got = h.client_got()
    assert [(type(p), p.reason_code) for p in got] == ([(Disconnect, 0x87)] if level == 5 else [])


@pytest.mark.parametrize("topic", [b"factory/line1/#", b"factory/+/x", b""])
def test_invalid_publish_topics_are_protocol_errors(store: PolicyStore, topic: bytes) -> None:
    h = Harness(store)
    h.connect(level=5)
    h.client_got()
    body = len(topic).to_bytes(2, "big") + topic + b"\x00" + b"payload"
    events = h.client(bytes([0x30, len(body)]) + body)
    assert any(isinstance(e, Close) for e in events)
    (disc,) = h.client_got()
    assert isinstance(disc, Disconnect) and disc.reason_code >= 0x80
    assert h.to_upstream == []


# ------------------------------------------------------------------------- topic aliases


def alias_session(store: PolicyStore) -> Harness:
    h = Harness(store)
    h.connect(level=5, connack=Connack(properties=[(P_TOPIC_ALIAS_MAXIMUM, 10)]))
    h.client_got()
    h.to_upstream.clear()
    return h


def test_alias_only_publish_is_judged_by_its_real_topic(store: PolicyStore) -> None:
    h = alias_session(store)
    h.client(Publish(topic="factory/line1/a", payload=b"1", properties=[(P_TOPIC_ALIAS, 1)]))
    h.client(Publish(topic="", payload=b"2", properties=[(P_TOPIC_ALIAS, 1)]))
    assert [p.payload for p in h.upstream_got()] == [b"1", b"2"]
    # an alias set on a denied topic stays denied when used alone
    h.client(Publish(topic="factory/line2/x", payload=b"3", properties=[(P_TOPIC_ALIAS, 2)]))
    h.client(Publish(topic="", payload=b"4", properties=[(P_TOPIC_ALIAS, 2)]))
    assert h.upstream_got() == []
    # re-pointing an allowed alias to a denied topic: its later use is denied too
    h.client(Publish(topic="factory/line2/y", payload=b"5", properties=[(P_TOPIC_ALIAS, 1)]))
    h.client(Publish(topic="", payload=b"6", properties=[(P_TOPIC_ALIAS, 1)]))
    assert h.upstream_got() == []
    assert h.session.stats.pub_in_denied == 4


def test_unknown_alias_is_a_protocol_error(store: PolicyStore) -> None:
    h = alias_session(store)
    events = h.client(Publish(topic="", payload=b"x", properties=[(P_TOPIC_ALIAS, 3)]))
    assert any(isinstance(e, Close) for e in events)
    (disc,) = h.client_got()
    assert disc.reason_code == 0x82


def test_alias_above_the_broker_maximum_is_refused(store: PolicyStore) -> None:
    h = alias_session(store)
    h.client(Publish(topic="factory/line1/a", payload=b"x", properties=[(P_TOPIC_ALIAS, 11)]))
    (disc,) = h.client_got()
    assert disc.reason_code == 0x94 and h.to_upstream == []


def test_alias_the_broker_never_saw_is_sent_with_its_topic(
    store: PolicyStore, users_path: Path, hashes: dict[str, str]
) -> None:
    h = alias_session(store)
    h.client(Publish(topic="factory/line2/x", payload=b"1", properties=[(P_TOPIC_ALIAS, 4)]))
    assert h.upstream_got() == []
    users_path.write_text(
        yaml.safe_dump(
            users_doc(hashes, alice_extra=[{"topic": "factory/line2/#", "access": "write"}])
        )
    )
    assert store.reload()
    h.client(Publish(topic="", payload=b"2", properties=[(P_TOPIC_ALIAS, 4)]))
    (pub,) = h.upstream_got()
    assert pub.topic == "factory/line2/x" and pub.payload == b"2"


# ------------------------------------------------------------------------- SUBSCRIBE / SUBACK


@pytest.mark.parametrize(("level", "fail"), [(4, 0x80), (5, 0x87)])
def test_suback_is_merged_at_original_positions(store: PolicyStore, level: int, fail: int) -> None:
    h = Harness(store)
    h.connect(level=level)
    h.client_got()
    h.to_upstream.clear()
    sub = Subscribe(
        packet_id=5,
        subscriptions=[
            Subscription("factory/line2/#", 1),
            Subscription("factory/line1/#", 1),
            Subscription("#", 0),
            Subscription("factory/line1/a", 2),
        ],
    )
    events = h.client(sub)
    (up,) = h.upstream_got()
    assert [s.topic_filter for s in up.subscriptions] == ["factory/line1/#", "factory/line1/a"]
    assert len([e for e in events if isinstance(e, Denial)]) == 2
    h.broker(Suback(packet_id=5, reason_codes=[1, 2]))
    (suback,) = h.client_got()
    assert suback.reason_codes == [fail, 1, fail, 2]
    # an unrelated SUBACK passes untouched
    raw = Suback(packet_id=6, reason_codes=[0]).encode(level)
    h.session.upstream_data(raw)
    assert h.to_client == [raw]


def test_subscribe_with_nothing_allowed_is_answered_locally(store: PolicyStore) -> None:
    h = Harness(store)
    h.connect(level=5)
    h.client_got()
    h.to_upstream.clear()
    h.client(
        Subscribe(packet_id=3, subscriptions=[Subscription("$SYS/#", 0), Subscription("#", 0)])
    )
    assert h.to_upstream == []
    (suback,) = h.client_got()
    assert (suback.packet_id, suback.reason_codes) == (3, [0x87, 0x87])


def test_fully_allowed_subscribe_is_forwarded_unchanged(store: PolicyStore) -> None:
    h = Harness(store)
    h.connect()
    h.to_upstream.clear()
    raw = Subscribe(packet_id=1, subscriptions=[Subscription("factory/line1/+", 1)]).encode(4)
    h.session.client_data(raw)
    assert h.to_upstream == [raw]


# ------------------------------------------------------------------------- broker -> client


@pytest.mark.parametrize("level", [4, 5])
def test_denied_delivery_is_completed_with_the_broker(store: PolicyStore, level: int) -> None:
    h = Harness(store)
    h.connect(level=level)
    h.client_got()
    h.to_upstream.clear()
    ok = Publish(topic="factory/line1/a", payload=b"ok", qos=1, packet_id=1).encode(level)
    bad1 = Publish(topic="factory/line2/a", payload=b"no", qos=1, packet_id=2).encode(level)
    bad2 = Publish(topic="in/only", payload=b"no", qos=2, packet_id=3).encode(level)
    events = h.session.upstream_data(ok + bad1 + bad2)
    assert h.to_client == [ok]
    h.to_client.clear()
    assert [(type(p), p.packet_id) for p in h.upstream_got()] == [(Puback, 2), (Pubrec, 3)]
    assert [e.topic for e in events if isinstance(e, Denial)] == ["factory/line2/a", "in/only"]
    h.broker(Pubrel(packet_id=3))
    assert [(type(p), p.packet_id) for p in h.upstream_got()] == [(Pubcomp, 3)]
    assert h.to_client == []
    assert (h.session.stats.pub_out_allowed, h.session.stats.pub_out_denied) == (1, 2)


def test_delivery_bigger_than_the_client_maximum_is_dropped(store: PolicyStore) -> None:
    h = Harness(store)
    h.connect(level=5, properties=[(P_MAXIMUM_PACKET_SIZE, 64)])
    h.client_got()
    h.to_upstream.clear()
    h.broker(Publish(topic="factory/line1/a", payload=b"x" * 100, qos=1, packet_id=4))
    assert h.to_client == []
    assert [(type(p), p.packet_id) for p in h.upstream_got()] == [(Puback, 4)]


def test_connack_and_retained_in_one_chunk(store: PolicyStore) -> None:
    h = Harness(store)
    h.level = 4
    h.client(Connect(protocol_level=4, client_id="r", username="alice", password=b"alice-pw"))
    assert h.session.state is State.AWAIT_CONNACK
    h.to_upstream.clear()
    chunk = (
        Connack().encode(4)
        + Publish(topic="factory/line2/secret", payload=b"no", retain=True).encode(4)
        + Publish(topic="factory/line1/ok", payload=b"yes", retain=True).encode(4)
    )
    h.session.upstream_data(chunk)
    got = h.client_got()
    assert [type(p) for p in got] == [Connack, Publish] and got[1].payload == b"yes"


# ------------------------------------------------------------------------- policy reload


def test_reload_applies_from_the_next_packet(
    store: PolicyStore, users_path: Path, hashes: dict[str, str]
) -> None:
    h = Harness(store)
    h.connect()
    h.to_upstream.clear()
    h.client(Publish(topic="factory/line2/x", payload=b"1"))
    assert h.to_upstream == []
    users_path.write_text(
        yaml.safe_dump(
            users_doc(hashes, alice_extra=[{"topic": "factory/line2/#", "access": "readWrite"}])
        )
    )
    assert store.reload()
    h.client(Publish(topic="factory/line2/x", payload=b"2"))
    assert [p.payload for p in h.upstream_got()] == [b"2"]


@pytest.mark.parametrize("level", [4, 5])
def test_removed_user_is_disconnected(
    store: PolicyStore, users_path: Path, hashes: dict[str, str], level: int
) -> None:
    h = Harness(store)
    h.connect("bob", b"bob-pw", level=level)
    h.client_got()
    users_path.write_text(yaml.safe_dump(users_doc(hashes, bob=False)))
    assert store.reload()
    events = h.session.check_policy()
    assert any(isinstance(e, Close) for e in events)
    got = h.client_got()
    assert [(type(p), p.reason_code) for p in got] == ([(Disconnect, 0x87)] if level == 5 else [])


def test_close_paths_are_idempotent(store: PolicyStore) -> None:
    h = Harness(store)
    h.connect()
    assert any(isinstance(e, Close) for e in h.session.client_closed())
    assert h.session.client_closed() in ((), [])
    assert h.session.client_data(b"\x30\x00") in ((), [])


@pytest.mark.parametrize(("level", "expected"), [(4, []), (5, [(Disconnect, 0x8B)])])
def test_server_shutdown_says_goodbye_to_5_clients(
    store: PolicyStore, level: int, expected: list[Any]
) -> None:
    h = Harness(store)
    h.connect(level=level)
    h.client_got()
    assert any(isinstance(e, Close) for e in h.session.server_shutdown())
    assert [(type(p), p.reason_code) for p in h.client_got()] == expected


@pytest.mark.parametrize("claimed", [2, 6, 9])
def test_unsupported_protocol_level_gets_connack_1(store: PolicyStore, claimed: int) -> None:
    h = Harness(store)
    body = b"\x00\x04MQTT" + bytes([claimed]) + b"\x02\x00\x3c\x00\x01x"
    events = h.client(bytes([0x10, len(body)]) + body)
    assert any(isinstance(e, Close) for e in events)
    got = h.client_got()
    assert [(type(p), p.reason_code) for p in got] == [(Connack, 1)]
    assert h.to_upstream == []


def test_reused_packet_id_after_a_denied_qos2_belongs_to_the_broker(store: PolicyStore) -> None:
    h = Harness(store)
    h.connect(level=5)
    h.client_got()
    h.client(Publish(topic="factory/line2/x", payload=b"x", qos=2, packet_id=7))
    assert [(type(p), p.reason_code) for p in h.client_got()] == [(Pubrec, 0x87)]
    # 5.0: the flow is over; the client reuses id 7 for an allowed message
    h.client(Publish(topic="factory/line1/x", payload=b"y", qos=2, packet_id=7))
    h.client(Pubrel(packet_id=7))
    assert [(type(p), p.packet_id) for p in h.upstream_got()] == [(Publish, 7), (Pubrel, 7)]
    assert h.client_got() == []


def test_5_clients_learn_the_packet_size_limit_from_the_connack(store: PolicyStore) -> None:
    h = Harness(store, max_packet_size=4096)
    h.connect(level=5)
    (connack,) = h.client_got()
    assert dict(connack.properties)[P_MAXIMUM_PACKET_SIZE] == 4096
    # a smaller broker limit is passed on unchanged
    h2 = Harness(store, max_packet_size=4096)
    h2.connect(level=5, connack=Connack(properties=[(P_MAXIMUM_PACKET_SIZE, 1000)]))
    (connack,) = h2.client_got()
    assert dict(connack.properties)[P_MAXIMUM_PACKET_SIZE] == 1000


def test_too_much_pipelined_data_before_the_connack_closes(store: PolicyStore) -> None:
    h = Harness(store, max_packet_size=128)
    connect = Connect(
        protocol_level=4, client_id="p", username="alice", password=b"alice-pw"
    ).encode(4)
    flood = Publish(topic="factory/line1/a", payload=b"x" * 100).encode(4) * 700  # ~83 KiB
    events = h.session.client_data(connect + flood)
    assert [type(e) for e in events] == [Close]
    assert h.to_upstream == [] and h.session.state is State.CLOSED
