"""Property checks of the session: chunk boundaries never change what is relayed, and no
byte sequence from a client makes the session raise."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqttgate.codec import (
    Connack,
    Connect,
    Pingreq,
    Publish,
    Pubrel,
    Subscribe,
    Subscription,
    Unsubscribe,
)
from mqttgate.policy import Authenticator, PolicyStore, hash_password
from mqttgate.proxy.session import OpenUpstream, Session, SessionSettings, State, VerifyPassword

AUTH = Authenticator()
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> PolicyStore:
    path = tmp_path_factory.mktemp("users") / "users.yaml"
    doc = {
        "users": {
            "alice": {
                "grant_type": "password",
                "password": hash_password("pw"),
                "permissions": [
                    {"topic": "a/#", "access": "readWrite"},
                    {"topic": "w/only", "access": "write"},
                ],
            }
        }
    }
    path.write_text(yaml.safe_dump(doc))
    return PolicyStore(path)


def relaying(store: PolicyStore, level: int) -> tuple[Session, list[bytes], list[bytes]]:
    to_client: list[bytes] = []
    to_upstream: list[bytes] = []
    session = Session(
        store=store,
        authenticator=AUTH,
        settings=SessionSettings(max_packet_size=4096),
        send_client=to_client.append,
        send_upstream=to_upstream.append,
    )
    pending = list(
        session.client_data(
            Connect(protocol_level=level, client_id="c", username="alice", password=b"pw").encode(
                level
            )
        )
    )
    while pending:
        event = pending.pop(0)
        if isinstance(event, VerifyPassword):
            pending.extend(
                session.password_checked(
                    AUTH.authenticate_password(event.snapshot, event.username, event.password)
                )
            )
        elif isinstance(event, OpenUpstream):
            pending.extend(session.upstream_connected())
    session.upstream_data(Connack().encode(level))
    assert session.state is State.RELAY
    to_client.clear()
    to_upstream.clear()
    return session, to_client, to_upstream


topics = st.sampled_from(["a/b", "a/c/d", "x/y", "w/only", "a"])
filters = st.sampled_from(["a/#", "a/+", "#", "x/y", "$SYS/#", "w/only"])


@st.composite
def client_packets(draw: st.DrawFn, level: int) -> bytes:
    kind = draw(st.sampled_from(["pub0", "pub1", "pub2", "sub", "unsub", "ping", "pubrel"]))
    pid = draw(st.integers(1, 65535))
    if kind.startswith("pub") and kind != "pubrel":
        qos = int(kind[-1])
        return Publish(
            topic=draw(topics),
            payload=draw(st.binary(max_size=40)),
            qos=qos,
            packet_id=pid if qos else None,
        ).encode(level)
    if kind == "sub":
        subs = [
            Subscription(f, draw(st.integers(0, 2)))
            for f in draw(st.lists(filters, min_size=1, max_size=4))
        ]
        return Subscribe(packet_id=pid, subscriptions=subs).encode(level)
    if kind == "unsub":
        return Unsubscribe(packet_id=pid, topic_filters=[draw(filters)]).encode(level)
    if kind == "pubrel":
        return Pubrel(packet_id=pid).encode(level)
    return Pingreq().encode(level)


@pytest.mark.parametrize("level", [4, 5])
@SETTINGS
@given(data=st.data())
def test_chunk_boundaries_do_not_change_the_relayed_bytes(
    store: PolicyStore, level: int, data: st.DataObject
) -> None:
    stream = b"".join(data.draw(st.lists(client_packets(level), min_size=1, max_size=12)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    whole, whole_client, whole_up = relaying(store, level)
    whole.client_data(stream)
    split, split_client, split_up = relaying(store, level)
    last = 0
    for cut in [*cuts, len(stream)]:
        split.client_data(stream[last:cut])
        last = cut
    assert b"".join(split_up) == b"".join(whole_up)
    assert b"".join(split_client) == b"".join(whole_client)
    assert split.state is whole.state


@pytest.mark.parametrize("level", [4, 5])
@SETTINGS
@given(garbage=st.lists(st.binary(max_size=64), min_size=1, max_size=6))
def test_no_client_bytes_make_the_session_raise(
    store: PolicyStore, level: int, garbage: list[bytes]
) -> None:
    session, to_client, _ = relaying(store, level)
    for chunk in garbage:
        session.client_data(chunk)  # must not raise
    assert session.state in (State.RELAY, State.CLOSED)
    if session.state is State.CLOSED and level == 4:
        assert all(not chunk.startswith(b"\xe0") for chunk in to_client)  # 3.x: no DISCONNECT


def test_no_broker_bytes_make_the_session_raise_either(store: PolicyStore) -> None:
    session, _, _ = relaying(store, 5)
    for chunk in (
        b"\x30\x05\x00\x09ab",
        b"\x90\x03\x00\x01",
        b"\xf0\xff\xff\xff\xff\xff",
        b"\x20\x00",
    ):
        session.upstream_data(chunk)
    assert session.state is State.CLOSED
