"""Incremental framing: bytes in, complete-frame offsets out.

The reader never copies packet bodies: it returns offsets into ``self.buffer``, which is the
fed chunk itself whenever no partial packet was pending. Fixed-header checks (type, flags,
declared size) happen as soon as those bytes arrive, so a peer declaring a huge packet is
refused before a single body byte is buffered.
"""

from __future__ import annotations

from .constants import PROTOCOL_5
from .errors import MALFORMED, PACKET_TOO_LARGE, MQTTProtocolError

DEFAULT_MAX_PACKET_SIZE = 268_435_460  # 1 + 4 + 268,435,455: the largest expressible packet

_FIXED_FLAGS = {6: 0b0010, 8: 0b0010, 10: 0b0010}


def _first_byte_table(protocol_level: int) -> bytes:
    """256 entries: 1 where the first byte (type + flags) is legal at this level."""
    table = bytearray(256)
    for b in range(256):
        ptype, flags = b >> 4, b & 0x0F
        if ptype == 0 or (ptype == 15 and protocol_level < PROTOCOL_5):
            continue
        ok = flags >> 1 & 3 != 3 if ptype == 3 else flags == _FIXED_FLAGS.get(ptype, 0)
        table[b] = ok
    return bytes(table)


_TABLES = {level: _first_byte_table(level) for level in (3, 4, 5)}


def first_byte_error(first_byte: int, protocol_level: int) -> MQTTProtocolError:
    """Explain why ``first_byte`` is illegal (only called once it is known to be)."""
    ptype, flags = first_byte >> 4, first_byte & 0x0F
    if ptype == 0:
        return MQTTProtocolError(MALFORMED, "packet type: reserved type 0")
    if ptype == 15 and protocol_level < PROTOCOL_5:
        return MQTTProtocolError(MALFORMED, "packet type: AUTH (15) is reserved below MQTT 5.0")
    if ptype == 3:
        return MQTTProtocolError(MALFORMED, "PUBLISH fixed header: QoS 3")
    return MQTTProtocolError(
        MALFORMED, f"fixed header flags: 0b{flags:04b} invalid for packet type {ptype}"
    )


def check_first_byte(first_byte: int, protocol_level: int) -> None:
    table = _TABLES.get(protocol_level, _TABLES[4])
    if not table[first_byte]:
        raise first_byte_error(first_byte, protocol_level)


def _too_large(size: int, maxsize: int) -> MQTTProtocolError:
    return MQTTProtocolError(
        PACKET_TOO_LARGE, f"remaining length: packet of {size} bytes exceeds maximum {maxsize}"
    )


class FrameReader:
    """Sans-IO framer. ``feed()`` returns ``(first_byte, start, body_start, end)`` tuples."""

    __slots__ = (
        "_dead",
        "_need",
        "_pending",
        "_protocol_level",
        "_table",
        "buffer",
        "max_packet_size",
    )

    def __init__(
        self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE, protocol_level: int = 4
    ) -> None:
        self.max_packet_size = max_packet_size
        self._protocol_level = protocol_level
        self._table = _TABLES.get(protocol_level, _TABLES[4])
        self.buffer: bytes = b""
        # Bytes of one incomplete packet (never more than max_packet_size).
        self._pending = bytearray()
        # Total size of the pending packet once its fixed header is complete, else 0.
        self._need = 0
        self._dead: MQTTProtocolError | None = None

    @property
    def protocol_level(self) -> int:
        return self._protocol_level

    @protocol_level.setter
    def protocol_level(self, level: int) -> None:
        self._protocol_level = level
        self._table = _TABLES.get(level, _TABLES[4])

    @property
    def pending(self) -> int:
        """Bytes of an incomplete packet held until more data arrives."""
        return len(self._pending)

    def _fail(self, err: MQTTProtocolError) -> MQTTProtocolError:
        self._dead = err
        self._pending = bytearray()
        self._need = 0
        self.buffer = b""
        return err

    def take(self, data: bytes) -> bytes | None:
        """The pending partial packet joined to ``data``, taken out of the reader, so that a
        caller can forward a leading run of packets it recognises by itself and ``feed()``
        only the rest; None while the pending packet is still incomplete (``data`` is kept).

        Whatever the caller does not consume must be fed back (``feed(buf[k:])``) with
        ``k`` at a packet boundary: every check of ``feed()`` then runs on it again.
        """
        if self._dead is not None:
            raise MQTTProtocolError(self._dead.reason_code, self._dead.message)
        pending = self._pending
        if not pending:
            return data
        need = self._need
        if need and len(pending) + len(data) < need:
            pending += data
            self.buffer = b""
            return None
        buf = bytes(pending) + data
        self._pending = bytearray()
        self._need = 0
        return buf

    def feed(self, data: bytes) -> list[tuple[int, int, int, int]]:
        """Complete frames as ``(first_byte, start, body_start, end)`` offsets into buffer."""
        if self._dead is not None:
            raise MQTTProtocolError(self._dead.reason_code, self._dead.message)
        pending = self._pending
        if pending:
            need = self._need
            if need and len(pending) + len(data) < need:
                pending += data
                self.buffer = b""
                return []
            buf = bytes(pending) + data
            self._pending = bytearray()
            self._need = 0
        else:
            buf = data
        self.buffer = buf
        n = len(buf)
        table = self._table
        maxsize = self.max_packet_size
        tiny = maxsize < 129  # only then can a 1-byte remaining length exceed the maximum
        frames: list[tuple[int, int, int, int]] = []
        append = frames.append
        pos = 0
        while pos < n:
            b0 = buf[pos]
            if not table[b0]:
                raise self._fail(first_byte_error(b0, self._protocol_level))
            p = pos + 1
            if p >= n:
                break
            b = buf[p]
            if b < 0x80:
                body = p + 1
                end = body + b
                if end > n:
                    if b + 2 > maxsize:
                        raise self._fail(_too_large(b + 2, maxsize))
                    self._need = b + 2
                    break
                if tiny and b + 2 > maxsize:
                    raise self._fail(_too_large(b + 2, maxsize))
                append((b0, pos, body, end))
                pos = end
                continue
            rl = b & 0x7F
            shift = 7
            while True:
                p += 1
                if p >= n:
                    break
                b = buf[p]
                rl |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise self._fail(
                        MQTTProtocolError(
                            MALFORMED, "remaining length: variable byte integer over 4 bytes"
                        )
                    )
            if p >= n:
                break
            body = p + 1
            end = body + rl
            if end - pos > maxsize:
                raise self._fail(_too_large(end - pos, maxsize))
            if end > n:
                self._need = end - pos
                break
            append((b0, pos, body, end))
            pos = end
        if pos < n:
            self._pending = bytearray(buf[pos:])
        return frames
