"""The PUBLISH hot path: topic, QoS, packet id and Topic Alias without a full decode.

The proxy calls this for every PUBLISH, so it works on plain ints and local variables and
allocates nothing but the topic slice and the result tuple. It checks structure only; the
topic bytes are validated by ``validate_topic_name`` when the proxy's cache misses.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import MALFORMED, PROTOCOL_ERROR, MQTTProtocolError


class PublishPeek(NamedTuple):
    topic: bytes
    qos: int
    packet_id: int | None
    topic_alias: int | None


# Size of each PUBLISH-legal fixed-size property; -1: varint, -2: length-prefixed, -3: pair.
_PUBLISH_PROPS = {
    0x01: 1,  # payload format indicator
    0x02: 4,  # message expiry interval
    0x03: -2,  # content type
    0x08: -2,  # response topic
    0x09: -2,  # correlation data
    0x0B: -1,  # subscription identifier
    0x23: 2,  # topic alias
    0x26: -3,  # user property
}

_new = tuple.__new__


def _short(field: str) -> MQTTProtocolError:
    return MQTTProtocolError(MALFORMED, f"PUBLISH {field}: packet too short")


def peek_publish(
    buf: bytes, body_start: int, end: int, first_byte: int, protocol_level: int
) -> PublishPeek:
    """Raw topic bytes, QoS, packet id and 5.0 Topic Alias of the PUBLISH at ``buf``."""
    # Hot path: every line here runs once per PUBLISH. A topic length byte read past
    # ``end`` (but inside ``buf``) is harmless: the ``te > end`` check rejects it.
    try:
        te = body_start + 2 + ((buf[body_start] << 8) | buf[body_start + 1])
    except IndexError:
        raise _short("topic name") from None
    if te > end or body_start < 0:
        raise _short("topic name")
    qos = (first_byte >> 1) & 3
    if not qos:
        if protocol_level < 5:
            return _new(PublishPeek, (buf[body_start + 2 : te], 0, None, None))
        if te < end and not buf[te]:  # no properties: skip the property walk
            return _new(PublishPeek, (buf[body_start + 2 : te], 0, None, None))
        return _new(PublishPeek, (buf[body_start + 2 : te], 0, None, _topic_alias(buf, te, end)))
    if qos == 3:
        raise MQTTProtocolError(MALFORMED, "PUBLISH fixed header: QoS 3")
    p = te + 2
    if p > end:
        raise _short("packet identifier")
    packet_id = (buf[te] << 8) | buf[te + 1]
    if not packet_id:
        raise MQTTProtocolError(PROTOCOL_ERROR, "PUBLISH packet identifier: must not be 0")
    alias = _topic_alias(buf, p, end) if protocol_level >= 5 else None
    return _new(PublishPeek, (buf[body_start + 2 : te], qos, packet_id, alias))


def _read_varint(buf: bytes, p: int, end: int, field: str) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if p >= end:
            raise _short(field)
        b = buf[p]
        p += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, p
        shift += 7
        if shift > 21:
            raise MQTTProtocolError(MALFORMED, f"PUBLISH {field}: varint over 4 bytes")


def _topic_alias(buf: bytes, p: int, end: int) -> int | None:
    """Walk the 5.0 property block checking its structure; return the Topic Alias."""
    if p < end and buf[p] == 0:  # the common case: no properties
        return None
    length, p = _read_varint(buf, p, end, "property length")
    pend = p + length
    if pend > end:
        raise _short("property length")
    alias: int | None = None
    while p < pend:
        pid, p = _read_varint(buf, p, pend, "property identifier")
        size = _PUBLISH_PROPS.get(pid)
        if size is None:
            raise MQTTProtocolError(
                MALFORMED if pid not in _KNOWN else PROTOCOL_ERROR,
                f"PUBLISH property 0x{pid:02X}: not allowed in PUBLISH",
            )
        if size > 0:
            if p + size > pend:
                raise _short("property value")
            if pid == 0x23:
                if alias is not None:
                    raise MQTTProtocolError(PROTOCOL_ERROR, "PUBLISH Topic Alias: repeated")
                alias = (buf[p] << 8) | buf[p + 1]
                if not alias:
                    raise MQTTProtocolError(PROTOCOL_ERROR, "PUBLISH Topic Alias: must not be 0")
            p += size
        elif size == -1:
            _, p = _read_varint(buf, p, pend, "subscription identifier")
        else:
            for _ in range(1 if size == -2 else 2):
                if p + 2 > pend:
                    raise _short("property value")
                p += 2 + ((buf[p] << 8) | buf[p + 1])
                if p > pend:
                    raise _short("property value")
    return alias


_KNOWN = frozenset(
    {0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A}
    | {0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A}
)
