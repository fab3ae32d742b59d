"""The few MQTT 3.1.1 encoders and a frame splitter the load generator needs.

Kept separate from mqttgate.codec on purpose: the harness must measure the proxy, so it
cannot share (and hide) a bug or a cost of the codec under test.
"""

from __future__ import annotations

import struct

PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
CONNACK = 2
SUBACK = 9

DISCONNECT = b"\xe0\x00"


def varint(n: int) -> bytes:
    """Remaining-length encoding (7 bits per byte, high bit = more)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect(
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    keep_alive: int = 60,
    clean: bool = True,
) -> bytes:
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
    if password is not None:
        flags |= 0x40
        payload += _str(password)
    var = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keep_alive)
    return _packet(0x10, var + payload)


def subscribe(packet_id: int, topic_filter: str, qos: int) -> bytes:
    return _packet(0x82, struct.pack("!H", packet_id) + _str(topic_filter) + bytes([qos]))


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None) -> bytes:
    body = _str(topic)
    if qos:
        assert packet_id
        body += struct.pack("!H", packet_id)
    return _packet(0x30 | (qos << 1), body + payload)


def ack(kind: int, packet_id: int) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP (PUBREL carries the fixed flags 0b0010)."""
    first = (kind << 4) | (0x02 if kind == PUBREL else 0)
    return bytes([first, 2]) + struct.pack("!H", packet_id)


def split(buf: bytes | bytearray, pos: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    """Complete frames in buf from pos as (first_byte, body_start, end), and where the
    incomplete tail (if any) starts. Raises ValueError on a malformed length."""
    frames: list[tuple[int, int, int]] = []
    n = len(buf)
    while pos + 2 <= n:
        rem = buf[pos + 1]
        i = pos + 2
        if rem & 0x80:
            rem &= 0x7F
            shift = 7
            while True:
                if i >= n:
                    return frames, pos
                b = buf[i]
                i += 1
                rem |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ValueError("remaining length over 4 bytes")
        end = i + rem
        if end > n:
            break
        frames.append((buf[pos], i, end))
        pos = end
    return frames, pos


def publish_fields(buf: bytes | bytearray, first: int, body: int, end: int) -> tuple[int, int]:
    """(packet_id or 0, payload offset) of a PUBLISH frame found by split()."""
    tlen = (buf[body] << 8) | buf[body + 1]
    p = body + 2 + tlen
    if first & 0x06:
        return (buf[p] << 8) | buf[p + 1], p + 2
    return 0, p
