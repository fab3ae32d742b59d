"""Variable Byte Integer (spec 1.5.5) and the bounded reader the decoders share."""

from __future__ import annotations

from .constants import MAX_VARINT
from .errors import MALFORMED, MQTTProtocolError
from .strings import decode_mqtt_utf8


def encode_varint(value: int) -> bytes:
    if value < 0 or value > MAX_VARINT:
        raise MQTTProtocolError(MALFORMED, f"variable byte integer {value} out of range")
    if value < 128:
        return bytes((value,))
    out = bytearray()
    while True:
        digit = value & 0x7F
        value >>= 7
        if value:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


class Reader:
    """Cursor over one packet body; every read is bounds-checked and names its field.

    Reading past the body is a malformed packet (0x81), never an IndexError.
    """

    __slots__ = ("buf", "end", "pos")

    def __init__(self, body: bytes) -> None:
        self.buf = body
        self.pos = 0
        self.end = len(body)

    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int, field: str) -> int:
        pos = self.pos
        if pos + n > self.end:
            raise MQTTProtocolError(MALFORMED, f"{field}: packet too short")
        self.pos = pos + n
        return pos

    def u8(self, field: str) -> int:
        return self.buf[self._need(1, field)]

    def u16(self, field: str) -> int:
        p = self._need(2, field)
        return (self.buf[p] << 8) | self.buf[p + 1]

    def u32(self, field: str) -> int:
        p = self._need(4, field)
        return int.from_bytes(self.buf[p : p + 4], "big")

    def varint(self, field: str) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            b = self.u8(field)
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise MQTTProtocolError(MALFORMED, f"{field}: variable byte integer over 4 bytes")

    def binary(self, field: str) -> bytes:
        n = self.u16(field)
        p = self._need(n, field)
        return self.buf[p : p + n]

    def string(self, field: str) -> str:
        return decode_mqtt_utf8(self.binary(field), field)

    def rest(self) -> bytes:
        p = self.pos
        self.pos = self.end
        return self.buf[p:]

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise MQTTProtocolError(MALFORMED, f"{what}: trailing bytes after packet body")
