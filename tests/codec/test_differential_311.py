"""Differential tests for MQTT 3.1 / 3.1.1 against paho-mqtt (writer) and amqtt (reader).

paho's packet writers are captured at its output queue (no socket is opened); amqtt's
packet classes parse our bytes from an in-memory reader.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from mqttgate.codec import (
    Connect,
    FrameReader,
    Pingreq,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
    decode_packet,
)

from .strategies import packet_ids, text, topic_filters, topic_names

paho = __import__("pytest").importorskip("paho.mqtt.client")
amqtt_adapters = __import__("pytest").importorskip("amqtt.adapters")


class CapturingClient(paho.Client):  # type: ignore[misc,name-defined]
    """A paho client whose writes land in a list instead of a socket."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(paho.CallbackAPIVersion.VERSION2, **kwargs)
        self.written: list[bytes] = []

    def _packet_queue(
        self, command: int, packet: bytes | bytearray, mid: int, qos: int, info: Any = None
    ) -> Any:
        self.written.append(bytes(packet))
        return paho.MQTT_ERR_SUCCESS


class _NoSocket:
    """Stands in for paho's socket; nothing is ever written to it."""

    def close(self) -> None:
        pass


def _one(raw: bytes, level: int) -> object:
    ((first, start, body, end),) = FrameReader(protocol_level=level).feed(raw)
    assert (start, end) == (0, len(raw))
    return decode_packet(first, raw[body:end], level)


protocols = st.sampled_from([(paho.MQTTv311, 4, "MQTT"), (paho.MQTTv31, 3, "MQIsdp")])


@settings(max_examples=60)
@given(
    protocols,
    text.filter(bool),
    st.booleans(),
    st.integers(0, 0xFFFF),
    st.none() | st.tuples(text, st.none() | text),
    st.none() | st.tuples(topic_names, st.binary(max_size=20), st.integers(0, 2), st.booleans()),
)
def test_paho_connect(proto: Any, cid: str, clean: bool, keep: int, creds: Any, will: Any) -> None:
    paho_proto, level, name = proto
    client = CapturingClient(client_id=cid, clean_session=clean, protocol=paho_proto)
    if creds is not None:
        client.username_pw_set(creds[0], creds[1])
    if will is not None:
        client.will_set(will[0], will[1], will[2], will[3])
    client._send_connect(keep)
    (raw,) = client.written
    packet = _one(raw, level)
    want_will = Will(will[0], will[1], will[2], will[3]) if will else None
    user = creds[0] if creds else None
    pw = creds[1].encode() if creds and creds[1] is not None else None
    assert packet == Connect(name, level, clean, keep, cid, user, pw, want_will)
    assert packet.encode(level) == raw  # type: ignore[union-attr]


@settings(max_examples=80)
@given(
    topic_names,
    st.binary(max_size=100),
    st.integers(0, 2),
    st.booleans(),
    st.booleans(),
    packet_ids,
)
def test_paho_publish(
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, mid: int
) -> None:
    client = CapturingClient()
    client._sock = _NoSocket()  # paho refuses to build a PUBLISH without one
    try:
        client._send_publish(mid, topic.encode(), payload, qos, retain, dup)
    finally:
        client._sock = None
    (raw,) = client.written
    want = Publish(topic, payload, qos, retain, dup, mid if qos else None)
    assert _one(raw, 4) == want
    assert want.encode(4) == raw


@settings(max_examples=60)
@given(st.lists(st.tuples(topic_filters, st.integers(0, 2)), min_size=1, max_size=4))
def test_paho_subscribe_unsubscribe(subs: list[tuple[str, int]]) -> None:
    client = CapturingClient()
    _, mid = client._send_subscribe(False, [(t.encode(), q) for t, q in subs])
    _, mid2 = client._send_unsubscribe(False, [t.encode() for t, _ in subs])
    raw_sub, raw_unsub = client.written
    want = Subscribe(mid, [Subscription(t, q) for t, q in subs])
    assert _one(raw_sub, 4) == want and want.encode(4) == raw_sub
    want_u = Unsubscribe(mid2, [t for t, _ in subs])
    assert _one(raw_unsub, 4) == want_u and want_u.encode(4) == raw_unsub


@given(packet_ids)
def test_paho_acks_and_pings(mid: int) -> None:
    client = CapturingClient()
    client._send_puback(mid)
    client._send_pubrec(mid)
    client._send_pubrel(mid)
    client._send_pubcomp(mid)
    client._send_pingreq()
    want = [Puback(mid), Pubrec(mid), Pubrel(mid), Pubcomp(mid), Pingreq()]
    assert [_one(raw, 4) for raw in client.written] == want
    assert [p.encode(4) for p in want] == client.written


# -- our bytes read by amqtt -----------------------------------------------------------


def _amqtt_read(cls_path: str, raw: bytes) -> Any:
    module, name = cls_path.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)

    async def read() -> Any:
        return await cls.from_stream(amqtt_adapters.BufferReader(raw))

    return asyncio.run(read())


@settings(max_examples=40)
@given(topic_names, st.binary(max_size=60), st.integers(0, 2), st.booleans(), packet_ids)
def test_amqtt_reads_our_publish(
    topic: str, payload: bytes, qos: int, retain: bool, mid: int
) -> None:
    raw = Publish(topic, payload, qos, retain, False, mid if qos else None).encode(4)
    theirs = _amqtt_read("amqtt.mqtt.publish.PublishPacket", raw)
    assert (theirs.topic_name, theirs.data, theirs.qos, theirs.retain_flag) == (
        topic,
        payload,
        qos,
        retain,
    )
    assert theirs.packet_id == (mid if qos else None)


@settings(max_examples=40)
@given(
    text.filter(bool),
    st.integers(0, 0xFFFF),
    text,
    text,
    topic_names,
    st.binary(max_size=20),
    st.integers(0, 2),
    st.booleans(),
)
def test_amqtt_reads_our_connect(
    cid: str, keep: int, user: str, pw: str, wt: str, wm: bytes, wq: int, wr: bool
) -> None:
    raw = Connect("MQTT", 4, True, keep, cid, user, pw.encode(), Will(wt, wm, wq, wr)).encode(4)
    theirs = _amqtt_read("amqtt.mqtt.connect.ConnectPacket", raw)
    got = (
        theirs.proto_name,
        theirs.proto_level,
        theirs.client_id,
        theirs.keep_alive,
        theirs.username,
        theirs.password,
        theirs.will_topic,
        theirs.will_message,
        theirs.will_qos,
        theirs.will_retain_flag,
    )
    assert got == ("MQTT", 4, cid, keep, user, pw, wt, wm, wq, wr)


@settings(max_examples=40)
@given(packet_ids, st.lists(st.tuples(topic_filters, st.integers(0, 2)), min_size=1, max_size=4))
def test_amqtt_reads_our_subscribe_and_suback(mid: int, subs: list[tuple[str, int]]) -> None:
    raw = Subscribe(mid, [Subscription(t, q) for t, q in subs]).encode(4)
    theirs = _amqtt_read("amqtt.mqtt.subscribe.SubscribePacket", raw)
    assert theirs.variable_header.packet_id == mid
    assert [tuple(t) for t in theirs.payload.topics] == subs
    codes = [q if q < 2 else 0x80 for _, q in subs]
    ack = _amqtt_read("amqtt.mqtt.suback.SubackPacket", Suback(mid, codes).encode(4))
    assert ack.variable_header.packet_id == mid and ack.payload.return_codes == codes
    unsub = _amqtt_read(
        "amqtt.mqtt.unsubscribe.UnsubscribePacket",
        Unsubscribe(mid, [t for t, _ in subs]).encode(4),
    )
    assert unsub.payload.topics == [t for t, _ in subs]
