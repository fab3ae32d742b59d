"""MQTT 5.0 properties (spec 2.2.2): data types, where each is allowed, duplicates.

Properties stay a list of ``(id, value)`` pairs in wire order so that a proxy can forward
them unchanged (user properties are ordered and may repeat).
"""

from __future__ import annotations

from typing import Final

from .constants import PacketType, PropertyId
from .errors import MALFORMED, PROTOCOL_ERROR, MQTTProtocolError
from .strings import check_topic_name, encode_mqtt_utf8
from .varint import Reader, encode_varint

Properties = list[tuple[int, object]]

#: Pseudo packet type for the Will Properties block of CONNECT.
WILL_CONTEXT: Final = 16

BYTE, U16, U32, VARINT, STRING, BINARY, PAIR = range(7)

_P = PacketType
_PUBACKS = (_P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP)
_ALL_WITH_PROPS = (
    _P.CONNECT,
    _P.CONNACK,
    _P.PUBLISH,
    WILL_CONTEXT,
    *_PUBACKS,
    _P.SUBSCRIBE,
    _P.SUBACK,
    _P.UNSUBSCRIBE,
    _P.UNSUBACK,
    _P.DISCONNECT,
    _P.AUTH,
)
_PUB_WILL = (_P.PUBLISH, WILL_CONTEXT)

#: id -> (data type, contexts where it may appear)
PROPERTY_TABLE: Final[dict[int, tuple[int, frozenset[int]]]] = {
    PropertyId.PAYLOAD_FORMAT_INDICATOR: (BYTE, frozenset(_PUB_WILL)),
    PropertyId.MESSAGE_EXPIRY_INTERVAL: (U32, frozenset(_PUB_WILL)),
    PropertyId.CONTENT_TYPE: (STRING, frozenset(_PUB_WILL)),
    PropertyId.RESPONSE_TOPIC: (STRING, frozenset(_PUB_WILL)),
    PropertyId.CORRELATION_DATA: (BINARY, frozenset(_PUB_WILL)),
    PropertyId.SUBSCRIPTION_IDENTIFIER: (VARINT, frozenset((_P.PUBLISH, _P.SUBSCRIBE))),
    PropertyId.SESSION_EXPIRY_INTERVAL: (U32, frozenset((_P.CONNECT, _P.CONNACK, _P.DISCONNECT))),
    PropertyId.ASSIGNED_CLIENT_IDENTIFIER: (STRING, frozenset((_P.CONNACK,))),
    PropertyId.SERVER_KEEP_ALIVE: (U16, frozenset((_P.CONNACK,))),
    PropertyId.AUTHENTICATION_METHOD: (STRING, frozenset((_P.CONNECT, _P.CONNACK, _P.AUTH))),
    PropertyId.AUTHENTICATION_DATA: (BINARY, frozenset((_P.CONNECT, _P.CONNACK, _P.AUTH))),
    PropertyId.REQUEST_PROBLEM_INFORMATION: (BYTE, frozenset((_P.CONNECT,))),
    PropertyId.WILL_DELAY_INTERVAL: (U32, frozenset((WILL_CONTEXT,))),
    PropertyId.REQUEST_RESPONSE_INFORMATION: (BYTE, frozenset((_P.CONNECT,))),
    PropertyId.RESPONSE_INFORMATION: (STRING, frozenset((_P.CONNACK,))),
    PropertyId.SERVER_REFERENCE: (STRING, frozenset((_P.CONNACK, _P.DISCONNECT))),
    PropertyId.REASON_STRING: (
        STRING,
        frozenset(
            (_P.CONNACK, *_PUBACKS, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH),
        ),
    ),
    PropertyId.RECEIVE_MAXIMUM: (U16, frozenset((_P.CONNECT, _P.CONNACK))),
    PropertyId.TOPIC_ALIAS_MAXIMUM: (U16, frozenset((_P.CONNECT, _P.CONNACK))),
    PropertyId.TOPIC_ALIAS: (U16, frozenset((_P.PUBLISH,))),
    PropertyId.MAXIMUM_QOS: (BYTE, frozenset((_P.CONNACK,))),
    PropertyId.RETAIN_AVAILABLE: (BYTE, frozenset((_P.CONNACK,))),
    PropertyId.USER_PROPERTY: (PAIR, frozenset(_ALL_WITH_PROPS)),
    PropertyId.MAXIMUM_PACKET_SIZE: (U32, frozenset((_P.CONNECT, _P.CONNACK))),
    PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE: (BYTE, frozenset((_P.CONNACK,))),
    PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE: (BYTE, frozenset((_P.CONNACK,))),
    PropertyId.SHARED_SUBSCRIPTION_AVAILABLE: (BYTE, frozenset((_P.CONNACK,))),
}

#: Properties whose value must be 0 or 1 (a Protocol Error otherwise).
_BOOLEAN_PROPS = frozenset(
    {
        PropertyId.PAYLOAD_FORMAT_INDICATOR,
        PropertyId.REQUEST_PROBLEM_INFORMATION,
        PropertyId.REQUEST_RESPONSE_INFORMATION,
        PropertyId.MAXIMUM_QOS,
        PropertyId.RETAIN_AVAILABLE,
        PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE,
        PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        PropertyId.SHARED_SUBSCRIPTION_AVAILABLE,
    }
)
#: Properties for which 0 is a Protocol Error.
_NONZERO_PROPS = frozenset(
    {
        PropertyId.RECEIVE_MAXIMUM,
        PropertyId.MAXIMUM_PACKET_SIZE,
        PropertyId.TOPIC_ALIAS,
        PropertyId.SUBSCRIPTION_IDENTIFIER,
    }
)


def _context_name(context: int) -> str:
    return "Will" if context == WILL_CONTEXT else PacketType(context).name


def _check_value(pid: int, value: int, context: int) -> None:
    if pid in _BOOLEAN_PROPS and value > 1:
        raise MQTTProtocolError(
            PROTOCOL_ERROR, f"{PropertyId(pid).name} in {_context_name(context)}: {value} not 0/1"
        )
    if pid in _NONZERO_PROPS and value == 0:
        raise MQTTProtocolError(
            PROTOCOL_ERROR, f"{PropertyId(pid).name} in {_context_name(context)}: must not be 0"
        )


def _check_allowed(pid: int, context: int, seen: set[int]) -> int:
    entry = PROPERTY_TABLE.get(pid)
    where = _context_name(context)
    if entry is None:
        raise MQTTProtocolError(MALFORMED, f"property 0x{pid:02X} in {where}: unknown identifier")
    kind, contexts = entry
    if context not in contexts:
        raise MQTTProtocolError(
            PROTOCOL_ERROR, f"property {PropertyId(pid).name} not allowed in {where}"
        )
    if pid in seen:
        repeatable = pid == PropertyId.USER_PROPERTY or (
            pid == PropertyId.SUBSCRIPTION_IDENTIFIER and context == PacketType.PUBLISH
        )
        if not repeatable:
            raise MQTTProtocolError(
                PROTOCOL_ERROR, f"property {PropertyId(pid).name} repeated in {where}"
            )
    seen.add(pid)
    return kind


def read_properties(r: Reader, context: int) -> Properties:
    """Read a property block (length varint + properties) at the reader's position."""
    where = _context_name(context)
    length = r.varint(f"{where} property length")
    end = r.pos + length
    if end > r.end:
        raise MQTTProtocolError(MALFORMED, f"{where} property length: exceeds packet")
    props: Properties = []
    if not length:
        return props
    outer_end = r.end
    r.end = end  # properties must not run past their declared block
    seen: set[int] = set()
    try:
        while r.pos < end:
            pid = r.varint(f"{where} property identifier")
            kind = _check_allowed(pid, context, seen)
            name = f"{PropertyId(pid).name} in {where}"
            value: object
            if kind == BYTE:
                value = r.u8(name)
            elif kind == U16:
                value = r.u16(name)
            elif kind == U32:
                value = r.u32(name)
            elif kind == VARINT:
                value = r.varint(name)
            elif kind == STRING:
                value = r.string(name)
            elif kind == BINARY:
                value = r.binary(name)
            else:
                value = (r.string(name + " key"), r.string(name + " value"))
            if isinstance(value, int):
                _check_value(pid, value, context)
            elif pid == PropertyId.RESPONSE_TOPIC:
                check_topic_name(value, name)  # type: ignore[arg-type]
            props.append((pid, value))
    finally:
        r.end = outer_end
    return props


def _fixed_int(value: object, size: int, name: str) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >> (8 * size):
        raise MQTTProtocolError(MALFORMED, f"{name}: expected a {size}-byte unsigned integer")
    return value.to_bytes(size, "big")


def encode_properties(props: Properties, context: int) -> bytes:
    """Encode a property block including its length prefix, validating as decode would."""
    if not props:
        return b"\x00"
    out = bytearray()
    seen: set[int] = set()
    for pid, value in props:
        kind = _check_allowed(pid, context, seen)
        name = f"{PropertyId(pid).name} in {_context_name(context)}"
        out += encode_varint(pid)
        if kind == BYTE:
            out += _fixed_int(value, 1, name)
        elif kind == U16:
            out += _fixed_int(value, 2, name)
        elif kind == U32:
            out += _fixed_int(value, 4, name)
        elif kind == VARINT:
            if not isinstance(value, int):
                raise MQTTProtocolError(MALFORMED, f"{name}: expected an integer")
            out += encode_varint(value)
        elif kind == STRING:
            if not isinstance(value, str):
                raise MQTTProtocolError(MALFORMED, f"{name}: expected str")
            out += encode_mqtt_utf8(value, name)
        elif kind == BINARY:
            if not isinstance(value, bytes | bytearray):
                raise MQTTProtocolError(MALFORMED, f"{name}: expected bytes")
            if len(value) > 65_535:
                raise MQTTProtocolError(MALFORMED, f"{name}: longer than 65535 bytes")
            out += len(value).to_bytes(2, "big") + value
        else:
            if (
                not isinstance(value, tuple)
                or len(value) != 2
                or not isinstance(value[0], str)
                or not isinstance(value[1], str)
            ):
                raise MQTTProtocolError(MALFORMED, f"{name}: expected (str, str)")
            out += encode_mqtt_utf8(value[0], name) + encode_mqtt_utf8(value[1], name)
        if isinstance(value, int):
            _check_value(pid, value, context)
    return encode_varint(len(out)) + bytes(out)


def get_property(props: Properties, pid: int, default: object = None) -> object:
    """First value of property ``pid`` in ``props``, or ``default``."""
    for key, value in props:
        if key == pid:
            return value
    return default
