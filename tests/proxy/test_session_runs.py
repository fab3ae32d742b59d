"""The 3.x relay's run path: packets recognised by their cached fixed header + topic are
forwarded in one write, and everything it does not recognise still meets the full rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqttgate.codec import Connack, Connect, FrameReader, Puback, Publish, Pubrec, decode_packet
from mqttgate.policy import Authenticator, PolicyStore, hash_password
from mqttgate.proxy.session import (
    Close,
    Denial,
    OpenUpstream,
    Session,
    SessionSettings,
    State,
    VerifyPassword,
)

AUTH = Authenticator()
SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
PERMISSIONS = [
    {"topic": "a/#", "access": "readWrite"},
    {"topic": "w/only", "access": "write"},
    {"topic": "r/only", "access": "read"},
]


def write_users(path: Path, permissions: list[dict[str, str]]) -> None:
    user = {"grant_type": "password", "password": HASH, "permissions": permissions}
    path.write_text(yaml.safe_dump({"users": {"alice": user}}))


HASH = hash_password("pw")


@pytest.fixture
def users_path(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    write_users(path, PERMISSIONS)
    return path


@pytest.fixture
def store(users_path: Path) -> PolicyStore:
    return PolicyStore(users_path)


class Relay:
    """A 3.1.1 session in RELAY with both outputs captured."""

    def __init__(self, store: PolicyStore, max_packet_size: int = 65536) -> None:
        self.to_client: list[bytes] = []
        self.to_upstream: list[bytes] = []
        self.events: list[Any] = []
        self.session = Session(
            store=store,
            authenticator=AUTH,
            settings=SessionSettings(max_packet_size=max_packet_size),
            send_client=self.to_client.append,
            send_upstream=self.to_upstream.append,
        )
        pending = list(
            self.session.client_data(
                Connect(protocol_level=4, client_id="c", username="alice", password=b"pw").encode(4)
            )
        )
        while pending:
            event = pending.pop(0)
            if isinstance(event, VerifyPassword):
                result = AUTH.authenticate_password(event.snapshot, event.username, event.password)
                pending.extend(self.session.password_checked(result))
            elif isinstance(event, OpenUpstream):
                pending.extend(self.session.upstream_connected())
        self.session.upstream_data(Connack().encode(4))
        assert self.session.state is State.RELAY
        self.to_client.clear()
        self.to_upstream.clear()

    def client(self, data: bytes) -> None:
        self.events.extend(self.session.client_data(data))

    def broker(self, data: bytes) -> None:
        self.events.extend(self.session.upstream_data(data))


def pub(topic: str, qos: int = 0, pid: int = 1, payload: bytes = b"x" * 64) -> bytes:
    return Publish(topic=topic, payload=payload, qos=qos, packet_id=pid if qos else None).encode(4)


def decoded(chunks: list[bytes]) -> list[Any]:
    reader = FrameReader(protocol_level=4)
    out = [
        decode_packet(fb, reader.buffer[bs:end], 4)
        for chunk in chunks
        for fb, _s, bs, end in reader.feed(chunk)
    ]
    assert reader.pending == 0
    return out


def test_a_run_of_allowed_publishes_goes_out_in_one_write(store: PolicyStore) -> None:
    r = Relay(store)
    r.client(pub("a/b"))  # the first one is judged by the general path
    run = b"".join(pub("a/b", qos=1, pid=i) for i in range(1, 301))
    r.client(run)
    assert r.to_upstream[-1] is run  # the very bytes object: no copy, one write
    assert r.session.stats.pub_in_allowed == 301
    r.broker(run)
    assert r.to_client == [run]
    assert r.session.stats.pub_out_allowed == 300


def test_a_denied_publish_inside_a_run_is_still_denied(store: PolicyStore) -> None:
    r = Relay(store)
    r.client(pub("a/b"))
    r.to_upstream.clear()
    # Same size, same fixed header, same topic length: only the topic bytes differ.
    stream = [pub("a/b", 1, i) for i in range(1, 50)] + [pub("x/b", 1, 50)]
    stream += [pub("a/b", 1, i) for i in range(51, 100)]
    r.client(b"".join(stream))
    sent = decoded(r.to_upstream)
    assert [p.packet_id for p in sent] == [i for i in range(1, 100) if i != 50]
    assert all(p.topic == "a/b" for p in sent)
    assert decoded(r.to_client) == [Puback(packet_id=50)]
    assert [e.topic for e in r.events if isinstance(e, Denial)] == ["x/b"]


def test_broker_side_run_drops_what_the_user_may_not_read(store: PolicyStore) -> None:
    r = Relay(store)
    r.broker(pub("a/b", 1, 1))
    r.to_client.clear()
    stream = [pub("a/b", 1, i) for i in range(2, 40)] + [pub("z/b", 1, 40)]
    stream += [pub("a/b", 1, i) for i in range(41, 60)]
    r.broker(b"".join(stream))
    assert [p.packet_id for p in decoded(r.to_client)] == [i for i in range(2, 60) if i != 40]
    assert decoded(r.to_upstream) == [Puback(packet_id=40)]  # the proxy completes the flow


def test_acks_and_publishes_of_other_sizes_interleave(store: PolicyStore) -> None:
    r = Relay(store)
    stream = []
    for i in range(1, 60):
        stream.append(pub("a/b", 1, i, payload=b"p" * (i % 3)))
        stream.append(Puback(packet_id=i).encode(4))
        stream.append(Pubrec(packet_id=i).encode(4))
    data = b"".join(stream)
    r.client(data)
    assert b"".join(r.to_upstream) == data
    r.broker(data)
    assert b"".join(r.to_client) == data


def test_reload_that_revokes_the_topic_stops_the_run(users_path: Path, store: PolicyStore) -> None:
    r = Relay(store)
    run = b"".join(pub("a/b", 1, i) for i in range(1, 20))
    r.client(run)
    r.broker(run)
    assert r.to_upstream == [run] and r.to_client == [run]
    write_users(users_path, [{"topic": "other/#", "access": "readWrite"}])
    assert store.reload()
    r.to_upstream.clear()
    r.to_client.clear()
    r.client(run)
    r.broker(run)
    # No PUBLISH passes either way; the proxy acknowledges the denied ones itself.
    assert decoded(r.to_upstream) == [Puback(packet_id=i) for i in range(1, 20)]
    assert decoded(r.to_client) == [Puback(packet_id=i) for i in range(1, 20)]
    assert r.session.stats.pub_in_denied == 19 and r.session.stats.pub_out_denied == 19


def test_a_packet_over_the_size_limit_is_refused_even_with_a_known_topic(
    store: PolicyStore,
) -> None:
    r = Relay(store, max_packet_size=100)
    r.client(pub("a/b", payload=b"x" * 60))
    assert len(r.to_upstream) == 1
    r.client(pub("a/b", payload=b"x" * 200))
    assert len(r.to_upstream) == 1
    assert r.session.state is State.CLOSED
    assert any(isinstance(e, Close) for e in r.events)


topics = st.sampled_from(["a/b", "a/c", "x/y", "w/only", "r/only"])


@st.composite
def stream_of(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Runs of repeated packets (the shape the run path looks for) in random order."""
    whole: list[bytes] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["pub", "puback", "pubrec"]))
        count = draw(st.integers(1, 30))
        if kind == "pub":
            topic = draw(topics)
            qos = draw(st.integers(0, 1))
            size = draw(st.integers(0, 3))
            whole += [pub(topic, qos, i + 1, b"p" * size) for i in range(count)]
        elif kind == "puback":
            whole += [Puback(packet_id=i + 1).encode(4) for i in range(count)]
        else:
            whole += [Pubrec(packet_id=i + 1).encode(4) for i in range(count)]
    return b"".join(whole), whole


def expected(packets: list[bytes], may: set[str]) -> list[Any]:
    out = []
    for raw in packets:
        (packet,) = decoded([raw])
        if isinstance(packet, Publish) and packet.topic not in may:
            continue
        out.append(packet)
    return out


@SETTINGS
@given(data=st.data())
def test_any_chunking_of_runs_relays_exactly_the_allowed_packets(
    store: PolicyStore, data: st.DataObject
) -> None:
    stream, packets = data.draw(stream_of())
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    up, down = Relay(store), Relay(store)
    for chunk in chunks:
        up.client(chunk)
        down.broker(chunk)
    assert up.session.state is State.RELAY and down.session.state is State.RELAY
    assert decoded(up.to_upstream) == expected(packets, {"a/b", "a/c", "w/only"})
    assert decoded(down.to_client) == expected(packets, {"a/b", "a/c", "r/only"})
