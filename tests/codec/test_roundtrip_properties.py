"""Property-based tests: round trips, arbitrary chunking, arbitrary bytes."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from mqttgate.codec import (
    Connect,
    FrameReader,
    MQTTProtocolError,
    decode_packet,
    encode_packet,
    peek_publish,
)

from .strategies import packets, publishes

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
