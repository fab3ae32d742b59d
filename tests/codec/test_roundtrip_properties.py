"""Property-based tests: round trips, arbitrary chunking, arbitrary bytes."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from mqttgate.codec import (
    Connect,
    FrameReader,
    MQTTProtocolError,
    Publish,
    decode_packet,
    encode_packet,
    peek_publish,
    validate_topic_name,
)

from .strategies import packets, publishes, topic_names

levels = st.sampled_from([3, 4, 5])


def _decode_whole(raw: bytes, level: int) -> object:
    frames = FrameReader(protocol_level=level).feed(raw)
    assert len(frames) == 1
    first, start, body, end = frames[0]
    assert (start, end) == (0, len(raw))
    return decode_packet(first, raw[body:end], level)


@settings(max_examples=100)
@given(st.data(), levels)
def test_encode_decode_round_trip(data: st.DataObject, level: int) -> None:
    packet = data.draw(packets(level))
    raw = encode_packet(packet, level)  # type: ignore[arg-type]
    decoded = _decode_whole(raw, level)
    assert decoded == packet
    assert encode_packet(decoded, level) == raw  # type: ignore[arg-type]


@given(st.data(), levels)
def test_peek_agrees_with_decode(data: st.DataObject, level: int) -> None:
    packet = data.draw(publishes(level))
    raw = packet.encode(level)
    first, _, body, end = FrameReader(protocol_level=level).feed(raw)[0]
    peek = peek_publish(raw, body, end, first, level)
    assert peek.topic == packet.topic.encode()
    assert peek.qos == packet.qos
    assert peek.packet_id == packet.packet_id
    alias = dict(packet.properties).get(0x23)
    assert peek.topic_alias == alias


@settings(max_examples=40)
@given(st.data(), levels, st.lists(st.integers(0, 10_000), max_size=8))
def test_stream_split_anywhere_yields_same_frames(
    data: st.DataObject, level: int, cuts: list[int]
) -> None:
    pkts = data.draw(st.lists(packets(level), min_size=1, max_size=5))
    raws = [p.encode(level) for p in pkts]  # type: ignore[attr-defined]
    stream = b"".join(raws)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    reader = FrameReader(protocol_level=level)
    got = []
    for a, b in itertools.pairwise(points):
        for first, start, _body, end in reader.feed(stream[a:b]):
            got.append((first, reader.buffer[start:end]))
    assert [g[1] for g in got] == raws
    assert [g[0] for g in got] == [r[0] for r in raws]
    assert reader.pending == 0


@settings(max_examples=30)
@given(st.data(), levels)
def test_one_byte_at_a_time(data: st.DataObject, level: int) -> None:
    pkts = data.draw(st.lists(packets(level), min_size=1, max_size=3))
    stream = b"".join(p.encode(level) for p in pkts)  # type: ignore[attr-defined]
    reader = FrameReader(protocol_level=level)
    out = []
    for i in range(len(stream)):
        for _first, start, _body, end in reader.feed(stream[i : i + 1]):
            out.append(reader.buffer[start:end])
    assert b"".join(out) == stream


@given(st.binary(max_size=300), levels, st.integers(2, 64))
def test_arbitrary_bytes_raise_only_protocol_errors(raw: bytes, level: int, chunk: int) -> None:
    maxsize = 100
    reader = FrameReader(max_packet_size=maxsize, protocol_level=level)
    try:
        for i in range(0, len(raw), chunk):
            for first, _start, body, end in reader.feed(raw[i : i + chunk]):
                assert end - _start <= maxsize
                buf = reader.buffer
                try:
                    decode_packet(first, buf[body:end], level)
                    if first >> 4 == 3:
                        peek_publish(buf, body, end, first, level)
                except MQTTProtocolError:
                    pass
            assert reader.pending <= maxsize
    except MQTTProtocolError as exc:
        assert exc.reason_code in (0x81, 0x82, 0x84, 0x8F, 0x90, 0x95)


@given(st.binary(max_size=80), st.integers(0, 255), levels)
def test_decode_arbitrary_bodies(body: bytes, first: int, level: int) -> None:
    try:
        packet = decode_packet(first, body, level)
    except MQTTProtocolError as exc:
        assert isinstance(exc.reason_code, int)
        assert exc.message
    else:
        if isinstance(packet, Connect):
            level = packet.protocol_level
        # Whatever decodes must re-encode and decode to the same packet.
        raw = encode_packet(packet, level)
        assert _decode_whole(raw, level) == packet


@given(st.binary(min_size=1, max_size=60), levels)
def test_peek_arbitrary_publish_bodies(body: bytes, level: int) -> None:
    for first in (0x30, 0x32, 0x34):
        try:
            peek = peek_publish(body, 0, len(body), first, level)
        except MQTTProtocolError:
            continue
        assert len(peek.topic) <= len(body)


# -- generated invalid input ------------------------------------------------------------

_FIXED_FLAGS = {t: 0 for t in (1, 2, 4, 5, 7, 9, 11, 12, 13, 14, 15)} | {6: 2, 8: 2, 10: 2}


@given(st.sampled_from(sorted(_FIXED_FLAGS)), st.integers(0, 15))
def test_wrong_fixed_flags_are_rejected(ptype: int, flags: int) -> None:
    reader = FrameReader(protocol_level=5)
    data = bytes(((ptype << 4) | flags, 0))
    if flags == _FIXED_FLAGS[ptype]:
        assert len(reader.feed(data)) == 1
    else:
        try:
            reader.feed(data)
        except MQTTProtocolError as exc:
            assert exc.reason_code == 0x81
        else:
            raise AssertionError("wrong flags accepted")


@given(publishes(4), st.integers(0, 100), st.sampled_from(["+", "#", "a+", "#/b"]))
def test_wildcards_in_publish_topics_are_rejected(packet: Publish, at: int, wild: str) -> None:
    cut = at % (len(packet.topic) + 1)
    packet.topic = packet.topic[:cut] + wild + packet.topic[cut:]
    raw = packet.encode(4)
    try:
        _decode_whole(raw, 4)
    except MQTTProtocolError as exc:
        assert exc.reason_code == 0x90
    else:
        raise AssertionError("wildcard topic accepted")


BAD_UTF8 = [b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\x00", b"\xc0\xaf", b"\xf4\x90\x80\x80"]


@given(topic_names, st.integers(0, 100), st.sampled_from(BAD_UTF8), st.sampled_from([4, 5]))
def test_malformed_utf8_topics_are_rejected(topic: str, at: int, bad: bytes, level: int) -> None:
    boundaries = [len(topic[:i].encode()) for i in range(len(topic) + 1)]
    cut = boundaries[at % len(boundaries)]
    raw_topic = topic.encode()
    raw_topic = raw_topic[:cut] + bad + raw_topic[cut:]
    body = len(raw_topic).to_bytes(2, "big") + raw_topic + (b"\x00" if level == 5 else b"") + b"p"
    try:
        decode_packet(0x30, body, level)
    except MQTTProtocolError as exc:
        assert exc.reason_code == 0x81
    else:
        raise AssertionError(f"malformed topic {raw_topic!r} accepted")
    # The hot path does not validate, but validate_topic_name (its cache-miss check) does.
    peek = peek_publish(body, 0, len(body), 0x30, level)
    assert peek.topic == raw_topic
    try:
        validate_topic_name(peek.topic)
    except MQTTProtocolError as exc:
        assert exc.reason_code == 0x81
    else:
        raise AssertionError("validate_topic_name accepted malformed UTF-8")


@settings(max_examples=60)
@given(st.data(), levels, st.integers(1, 50))
def test_truncated_packets_are_held_and_cut_bodies_only_raise_protocol_errors(
    data: st.DataObject, level: int, cut: int
) -> None:
    packet = data.draw(packets(level))
    raw = packet.encode(level)  # type: ignore[attr-defined]
    short = raw[: max(1, len(raw) - cut)]
    reader = FrameReader(protocol_level=level)
    assert reader.feed(short) == []
    assert reader.pending == len(short)
    first, _, b, e = FrameReader(protocol_level=level).feed(raw)[0]
    try:
        decode_packet(first, raw[b : max(b, e - cut)], level)
    except MQTTProtocolError as exc:
        assert exc.reason_code in (0x81, 0x82, 0x8F, 0x90)


@given(
    st.data(),
    levels,
    st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_mutated_publish_peek_agrees_whenever_decode_accepts(
    data: st.DataObject, level: int, mutations: list[tuple[int, int]]
) -> None:
    raw = bytearray(data.draw(publishes(level)).encode(level))
    body = 2 if raw[1] < 0x80 else 3
    for at, value in mutations:
        raw[body + at % (len(raw) - body)] = value
    buf = bytes(raw)
    try:
        packet = decode_packet(buf[0], buf[body:], level)
    except MQTTProtocolError:
        return
    assert isinstance(packet, Publish)
    peek = peek_publish(buf, body, len(buf), buf[0], level)
    assert peek.topic == packet.topic.encode()
    assert (peek.qos, peek.packet_id) == (packet.qos, packet.packet_id)
    assert peek.topic_alias == dict(packet.properties).get(0x23)
    assert packet.encode(level) == buf or level == 5  # 5.0 may hold non-canonical varints
