"""FrameReader: offsets, zero-copy, fixed-header rejection, memory bound, dead state."""

from __future__ import annotations

import pytest
from mqttgate.codec import FrameReader, MQTTProtocolError, Publish


def pub(topic: str = "a/b", payload: bytes = b"x" * 64) -> bytes:
    return Publish(topic, payload).encode(4)


def test_complete_chunk_is_used_without_copy() -> None:
    data = pub() * 3
    reader = FrameReader()
    frames = reader.feed(data)
    assert reader.buffer is data
    assert [(f[1], f[3]) for f in frames] == [(0, 71), (71, 142), (142, 213)]
    assert all(f[2] == f[1] + 2 for f in frames)


def test_partial_packet_is_kept_and_completed() -> None:
    data = pub() * 2
    reader = FrameReader()
    assert len(reader.feed(data[:100])) == 1
    assert reader.pending == 29
    frames = reader.feed(data[100:])
    assert len(frames) == 1
    _, start, _, end = frames[0]
    assert reader.buffer[start:end] == pub()
    assert reader.pending == 0


def test_large_packet_fed_in_small_pieces_is_not_rescanned() -> None:
    big = Publish("t", b"z" * 200_000).encode(4)
    reader = FrameReader()
    out = []
    for i in range(0, len(big), 1000):
        out += reader.feed(big[i : i + 1000])
        assert reader.pending < len(big)
    assert len(out) == 1 and reader.buffer[out[0][1] : out[0][3]] == big


def test_declared_size_above_maximum_rejected_from_fixed_header() -> None:
    """A 256 MiB declaration is refused after 5 bytes, with nothing buffered."""
    reader = FrameReader(max_packet_size=1024 * 1024)
    with pytest.raises(MQTTProtocolError) as exc:
        reader.feed(b"\x30\xff\xff\xff\x7f")  # remaining length 268,435,455 (256 MiB)
    assert exc.value.reason_code == 0x95
    assert reader.pending == 0
    assert "268435460" in exc.value.message.replace(",", "") or "exceeds" in exc.value.message


def test_declared_size_split_across_feeds_is_rejected_early() -> None:
    reader = FrameReader(max_packet_size=1000)
    assert reader.feed(b"\x30\xff") == []
    with pytest.raises(MQTTProtocolError) as exc:
        reader.feed(b"\xff\x7f")
    assert exc.value.reason_code == 0x95


def test_max_packet_size_counts_the_whole_packet() -> None:
    packet = pub()
    assert len(FrameReader(max_packet_size=len(packet)).feed(packet)) == 1
    with pytest.raises(MQTTProtocolError):
        FrameReader(max_packet_size=len(packet) - 1).feed(packet)


def test_varint_longer_than_four_bytes() -> None:
    with pytest.raises(MQTTProtocolError) as exc:
        FrameReader().feed(b"\x30\xff\xff\xff\xff\x01")
    assert exc.value.reason_code == 0x81
    reader = FrameReader()
    for b in b"\x30\xff\xff\xff":
        assert reader.feed(bytes((b,))) == []
    with pytest.raises(MQTTProtocolError):
        reader.feed(b"\xff")


@pytest.mark.parametrize(
    ("first", "level"),
    [
        (0x00, 4),  # reserved type 0
        (0x0F, 5),
        (0xF0, 4),  # AUTH below 5.0
        (0xF0, 3),
        (0xF1, 5),  # AUTH with flags
        (0x36, 4),  # PUBLISH QoS 3
        (0x3F, 5),
        (0x80, 4),  # SUBSCRIBE must be 0b0010
        (0x83, 4),
        (0xA0, 5),  # UNSUBSCRIBE
        (0x60, 4),  # PUBREL
        (0x11, 4),  # CONNECT
        (0x22, 4),
        (0x32 | 0x40, 4),
        (0x41, 5),
        (0x52, 4),
        (0x71, 4),
        (0x92, 4),
        (0xB8, 4),
        (0xC1, 4),
        (0xD2, 4),
        (0xE4, 5),
    ],
)
def test_illegal_first_bytes(first: int, level: int) -> None:
    reader = FrameReader(protocol_level=level)
    with pytest.raises(MQTTProtocolError) as exc:
        reader.feed(bytes((first,)))
    assert exc.value.reason_code == 0x81


def test_legal_first_bytes() -> None:
    reader = FrameReader(protocol_level=5)
    legal = [0x10, 0x20, 0x30, 0x33, 0x3D, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0]
    legal += [0xC0, 0xD0, 0xE0, 0xF0]
    stream = b"".join(bytes((b, 0)) for b in legal)
    assert [f[0] for f in reader.feed(stream)] == legal


def test_protocol_level_is_settable_for_auth() -> None:
    reader = FrameReader(protocol_level=4)
    reader.protocol_level = 5
    assert reader.feed(b"\xf0\x00") == [(0xF0, 0, 2, 2)]


def test_reader_is_dead_after_an_error() -> None:
    reader = FrameReader()
    with pytest.raises(MQTTProtocolError):
        reader.feed(b"\x00\x00")
    with pytest.raises(MQTTProtocolError):
        reader.feed(pub())


def test_error_after_good_frames_in_the_same_chunk_still_raises() -> None:
    """A bad packet anywhere in a chunk fails the whole feed: the connection is over."""
    reader = FrameReader()
    with pytest.raises(MQTTProtocolError):
        reader.feed(pub() + b"\x00\x00")


def test_empty_feed() -> None:
    reader = FrameReader()
    assert reader.feed(b"") == []
    assert reader.feed(pub()[:1]) == []
    assert reader.feed(b"") == []
    assert reader.pending == 1


def test_memoryview_and_bytearray_chunks() -> None:
    data = pub() * 2
    reader = FrameReader()
    assert len(reader.feed(bytearray(data[:50]))) == 0
    frames = reader.feed(memoryview(data)[50:])  # type: ignore[arg-type]
    assert [bytes(reader.buffer[s:e]) for _, s, _, e in frames] == [pub(), pub()]
