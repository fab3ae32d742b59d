"""Packet dataclasses with decode/encode for MQTT 3.1, 3.1.1 and 5.0.

Decoders are strict (the proxy sits in front of brokers and must not forward anything a
broker would interpret differently); encoders write the canonical form, so that
``encode(decode(x)) == x`` for every canonical packet. Fields that only exist in 5.0
(properties, reason codes of acknowledgements, UNSUBACK codes) are dropped silently when
encoding for an older level, which lets the proxy build one object and write it to either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .constants import (
    CONNACK_RETURN_CODES_3,
    PROTOCOL_5,
    PROTOCOL_31,
    PROTOCOL_311,
    PROTOCOL_NAMES,
    REASON_CODES_5,
    SUBACK_RETURN_CODES_3,
    PacketType,
    PropertyId,
)
from .errors import (
    MALFORMED,
    PROTOCOL_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    MQTTProtocolError,
)
from .framing import check_first_byte
from .properties import WILL_CONTEXT, Properties, encode_properties, read_properties
from .strings import (
    check_shared_filter,
    check_topic_name,
    encode_mqtt_utf8,
    validate_topic_filter,
)
from .varint import Reader, encode_varint

__all__ = [
    "Auth",
    "Connack",
    "Connect",
    "Disconnect",
    "Packet",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "Subscription",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "decode_packet",
    "encode_packet",
]


# -- helpers ---------------------------------------------------------------------------


def _frame(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_varint(len(body)) + body


def _u16(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise MQTTProtocolError(MALFORMED, f"{name}: {value} out of range 0..65535")
    return value.to_bytes(2, "big")


def _packet_id(value: int | None, name: str) -> bytes:
    if value is None or not 1 <= value <= 0xFFFF:
        raise MQTTProtocolError(PROTOCOL_ERROR, f"{name}: packet identifier must be 1..65535")
    return value.to_bytes(2, "big")


def _binary(value: bytes, name: str) -> bytes:
    if len(value) > 0xFFFF:
        raise MQTTProtocolError(MALFORMED, f"{name}: longer than 65535 bytes")
    return len(value).to_bytes(2, "big") + bytes(value)


def _read_packet_id(r: Reader, name: str) -> int:
    pid = r.u16(f"{name} packet identifier")
    if pid == 0:
        raise MQTTProtocolError(PROTOCOL_ERROR, f"{name} packet identifier: must not be 0")
    return pid


def _check_reason(ptype: int, code: int, level: int) -> None:
    if level >= PROTOCOL_5 and code not in REASON_CODES_5[ptype]:
        raise MQTTProtocolError(
            PROTOCOL_ERROR, f"{PacketType(ptype).name} reason code: 0x{code:02X} not allowed"
        )


def _check_auth_props(props: Properties, where: str) -> None:
    ids = {pid for pid, _ in props}
    if PropertyId.AUTHENTICATION_DATA in ids and PropertyId.AUTHENTICATION_METHOD not in ids:
        raise MQTTProtocolError(
            PROTOCOL_ERROR, f"{where}: Authentication Data without Authentication Method"
        )


# -- CONNECT ---------------------------------------------------------------------------


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=list)


@dataclass(slots=True)
class Connect:
    protocol_name: str = "MQTT"
    protocol_level: int = PROTOCOL_311
    clean_start: bool = True
    keep_alive: int = 60
    client_id: str = ""
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int | None = None) -> bytes:
        """Encode at the packet's own protocol level (the argument is ignored for CONNECT)."""
        level = self.protocol_level
        if PROTOCOL_NAMES.get(level) != self.protocol_name:
            raise MQTTProtocolError(
                UNSUPPORTED_PROTOCOL_VERSION,
                f"CONNECT protocol: name {self.protocol_name!r} with level {level}",
            )
        flags = 0
        if self.clean_start:
            flags |= 0x02
        will = self.will
        if will is not None:
            if not 0 <= will.qos <= 2:
                raise MQTTProtocolError(MALFORMED, f"CONNECT will QoS: {will.qos}")
            flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        if self.password is not None:
            if self.username is None and level < PROTOCOL_5:
                raise MQTTProtocolError(MALFORMED, "CONNECT flags: password without username")
            flags |= 0x40
        if self.username is not None:
            flags |= 0x80
        out = bytearray(encode_mqtt_utf8(self.protocol_name, "CONNECT protocol name"))
        out.append(level)
        out.append(flags)
        out += _u16(self.keep_alive, "CONNECT keep alive")
        if level >= PROTOCOL_5:
            _check_auth_props(self.properties, "CONNECT")
            out += encode_properties(self.properties, PacketType.CONNECT)
        out += encode_mqtt_utf8(self.client_id, "CONNECT client identifier")
        if will is not None:
            if level >= PROTOCOL_5:
                out += encode_properties(will.properties, WILL_CONTEXT)
            out += encode_mqtt_utf8(will.topic, "CONNECT will topic")
            out += _binary(will.payload, "CONNECT will payload")
        if self.username is not None:
            out += encode_mqtt_utf8(self.username, "CONNECT user name")
        if self.password is not None:
            out += _binary(self.password, "CONNECT password")
        return _frame(0x10, bytes(out))


def _decode_connect(r: Reader) -> Connect:
    name = r.string("CONNECT protocol name")
    level = r.u8("CONNECT protocol level")
    if PROTOCOL_NAMES.get(level) != name:
        raise MQTTProtocolError(
            UNSUPPORTED_PROTOCOL_VERSION,
            f"CONNECT protocol: unsupported name {name!r} with level {level}",
        )
    flags = r.u8("CONNECT flags")
    if flags & 0x01:
        raise MQTTProtocolError(MALFORMED, "CONNECT flags: reserved bit 0 set")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if will_qos == 3:
        raise MQTTProtocolError(MALFORMED, "CONNECT flags: will QoS 3")
    if not will_flag and (will_qos or will_retain):
        raise MQTTProtocolError(MALFORMED, "CONNECT flags: will QoS/retain set without will flag")
    has_password = bool(flags & 0x40)
    has_username = bool(flags & 0x80)
    if has_password and not has_username and level < PROTOCOL_5:
        raise MQTTProtocolError(MALFORMED, "CONNECT flags: password flag without user name flag")
    keep_alive = r.u16("CONNECT keep alive")
    props: Properties = []
    if level >= PROTOCOL_5:
        props = read_properties(r, PacketType.CONNECT)
        _check_auth_props(props, "CONNECT")
    client_id = r.string("CONNECT client identifier")
    will = None
    if will_flag:
        will_props: Properties = []
        if level >= PROTOCOL_5:
            will_props = read_properties(r, WILL_CONTEXT)
        topic = r.string("CONNECT will topic")
        check_topic_name(topic, "CONNECT will topic")
        payload = r.binary("CONNECT will payload")
        will = Will(topic, payload, will_qos, will_retain, will_props)
    username = r.string("CONNECT user name") if has_username else None
    password = r.binary("CONNECT password") if has_password else None
    r.done("CONNECT")
    return Connect(
        name, level, bool(flags & 0x02), keep_alive, client_id, username, password, will, props
    )


# -- CONNACK ---------------------------------------------------------------------------


@dataclass(slots=True)
class Connack:
    session_present: bool = False
    reason_code: int = 0
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int) -> bytes:
        if protocol_level >= PROTOCOL_5:
            _check_reason(PacketType.CONNACK, self.reason_code, protocol_level)
        elif self.reason_code not in CONNACK_RETURN_CODES_3:
            raise MQTTProtocolError(
                MALFORMED, f"CONNACK return code: 0x{self.reason_code:02X} not valid below 5.0"
            )
        if self.session_present and self.reason_code:
            raise MQTTProtocolError(
                PROTOCOL_ERROR, "CONNACK: session present with a non-zero reason code"
            )
        body = bytes((1 if self.session_present else 0, self.reason_code))
        if protocol_level >= PROTOCOL_5:
            body += encode_properties(self.properties, PacketType.CONNACK)
        return _frame(0x20, body)


def _decode_connack(r: Reader, level: int) -> Connack:
    flags = r.u8("CONNACK acknowledge flags")
    if flags & 0xFE:
        raise MQTTProtocolError(MALFORMED, "CONNACK acknowledge flags: reserved bits set")
    code = r.u8("CONNACK reason code")
    props: Properties = []
    if level >= PROTOCOL_5:
        _check_reason(PacketType.CONNACK, code, level)
        props = read_properties(r, PacketType.CONNACK)
        _check_auth_props(props, "CONNACK")
    elif code not in CONNACK_RETURN_CODES_3:
        raise MQTTProtocolError(MALFORMED, f"CONNACK return code: 0x{code:02X}")
    if flags and code:
        raise MQTTProtocolError(PROTOCOL_ERROR, "CONNACK: session present with a failure code")
    r.done("CONNACK")
    return Connack(bool(flags), code, props)


# -- PUBLISH ---------------------------------------------------------------------------


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int) -> bytes:
        qos = self.qos
        if not 0 <= qos <= 2:
            raise MQTTProtocolError(MALFORMED, f"PUBLISH QoS: {qos}")
        first = 0x30 | (qos << 1) | (0x08 if self.dup else 0) | (0x01 if self.retain else 0)
        out = bytearray(encode_mqtt_utf8(self.topic, "PUBLISH topic name"))
        if qos:
            out += _packet_id(self.packet_id, "PUBLISH")
        if protocol_level >= PROTOCOL_5:
            out += encode_properties(self.properties, PacketType.PUBLISH)
        out += self.payload
        return _frame(first, bytes(out))


def _decode_publish(first_byte: int, r: Reader, level: int) -> Publish:
    qos = (first_byte >> 1) & 3
    topic = r.string("PUBLISH topic name")
    packet_id = _read_packet_id(r, "PUBLISH") if qos else None
    props: Properties = []
    if level >= PROTOCOL_5:
        props = read_properties(r, PacketType.PUBLISH)
    # An empty topic is legal only in 5.0 and only when a Topic Alias stands for it.
    if topic or not any(pid == PropertyId.TOPIC_ALIAS for pid, _ in props):
        check_topic_name(topic, "PUBLISH topic name")
    return Publish(
        topic,
        r.rest(),
        qos,
        bool(first_byte & 0x01),
        bool(first_byte & 0x08),
        packet_id,
        props,
    )


# -- PUBACK / PUBREC / PUBREL / PUBCOMP ------------------------------------------------


def _encode_reason_props(ptype: int, code: int, props: Properties, level: int) -> bytes:
    """The optional 5.0 tail of acknowledgements and DISCONNECT: the reason code only when
    it or the properties are needed, the property block only when there are properties."""
    _check_reason(ptype, code, level)
    if props:
        return bytes((code,)) + encode_properties(props, ptype)
    if code:
        return bytes((code,))
    return b""


def _decode_reason_props(r: Reader, ptype: int, level: int) -> tuple[int, Properties]:
    name = PacketType(ptype).name
    code = 0
    props: Properties = []
    if level >= PROTOCOL_5 and r.remaining():
        code = r.u8(f"{name} reason code")
        _check_reason(ptype, code, level)
        if r.remaining():
            props = read_properties(r, ptype)
    r.done(name)
    return code, props


@dataclass(slots=True)
class _PubAck:
    """Fields and encoder shared by PUBACK, PUBREC, PUBREL and PUBCOMP, which differ only
    in their packet type and fixed-header byte (each is still its own class, so equality
    and isinstance tell them apart)."""

    _PTYPE: ClassVar[int]
    _FIRST_BYTE: ClassVar[int]

    packet_id: int
    reason_code: int = 0
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int) -> bytes:
        ptype = self._PTYPE
        body = _packet_id(self.packet_id, PacketType(ptype).name)
        if protocol_level >= PROTOCOL_5:
            body += _encode_reason_props(ptype, self.reason_code, self.properties, protocol_level)
        return _frame(self._FIRST_BYTE, body)


@dataclass(slots=True)
class Puback(_PubAck):
    _PTYPE = PacketType.PUBACK
    _FIRST_BYTE = 0x40


@dataclass(slots=True)
class Pubrec(_PubAck):
    _PTYPE = PacketType.PUBREC
    _FIRST_BYTE = 0x50


@dataclass(slots=True)
class Pubrel(_PubAck):
    _PTYPE = PacketType.PUBREL
    _FIRST_BYTE = 0x62


@dataclass(slots=True)
class Pubcomp(_PubAck):
    _PTYPE = PacketType.PUBCOMP
    _FIRST_BYTE = 0x70


def _decode_ack(r: Reader, ptype: int, level: int) -> Puback | Pubrec | Pubrel | Pubcomp:
    packet_id = _read_packet_id(r, PacketType(ptype).name)
    code, props = _decode_reason_props(r, ptype, level)
    return _ACK_CLASSES[ptype](packet_id, code, props)


# -- SUBSCRIBE / SUBACK ----------------------------------------------------------------


@dataclass(slots=True)
class Subscription:
    topic_filter: str
    options: int = 0

    @property
    def qos(self) -> int:
        return self.options & 0x03


def _check_options(options: int, level: int, topic_filter: str) -> None:
    if options & 0x03 == 3:
        raise MQTTProtocolError(MALFORMED, f"SUBSCRIBE options of {topic_filter!r}: QoS 3")
    reserved = 0xC0 if level >= PROTOCOL_5 else 0xFC
    if options & reserved:
        raise MQTTProtocolError(
            MALFORMED, f"SUBSCRIBE options of {topic_filter!r}: reserved bits set"
        )
    if level >= PROTOCOL_5:
        if (options >> 4) & 3 == 3:
            raise MQTTProtocolError(
                PROTOCOL_ERROR, f"SUBSCRIBE options of {topic_filter!r}: retain handling 3"
            )
        if options & 0x04 and check_shared_filter(topic_filter):
            raise MQTTProtocolError(
                PROTOCOL_ERROR, f"SUBSCRIBE options of {topic_filter!r}: No Local on a share"
            )


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    subscriptions: list[Subscription] = field(default_factory=list)
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int) -> bytes:
        if not self.subscriptions:
            raise MQTTProtocolError(PROTOCOL_ERROR, "SUBSCRIBE: no topic filter")
        out = bytearray(_packet_id(self.packet_id, "SUBSCRIBE"))
        if protocol_level >= PROTOCOL_5:
            out += encode_properties(self.properties, PacketType.SUBSCRIBE)
        for sub in self.subscriptions:
            _check_options(sub.options, protocol_level, sub.topic_filter)
            out += encode_mqtt_utf8(sub.topic_filter, "SUBSCRIBE topic filter")
            out.append(sub.options)
        return _frame(0x82, bytes(out))


def _read_filter(r: Reader, name: str, level: int) -> str:
    topic_filter = r.string(f"{name} topic filter")
    validate_topic_filter(topic_filter)
    if level >= PROTOCOL_5:
        check_shared_filter(topic_filter)
    return topic_filter


def _decode_subscribe(r: Reader, level: int) -> Subscribe:
    packet_id = _read_packet_id(r, "SUBSCRIBE")
    props: Properties = []
    if level >= PROTOCOL_5:
        props = read_properties(r, PacketType.SUBSCRIBE)
    subs: list[Subscription] = []
    while r.remaining():
        topic_filter = _read_filter(r, "SUBSCRIBE", level)
        options = r.u8("SUBSCRIBE subscription options")
        _check_options(options, level, topic_filter)
        subs.append(Subscription(topic_filter, options))
    if not subs:
        raise MQTTProtocolError(PROTOCOL_ERROR, "SUBSCRIBE: no topic filter")
    return Subscribe(packet_id, subs, props)


@dataclass(slots=True)
class Suback:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int) -> bytes:
        if not self.reason_codes:
            raise MQTTProtocolError(PROTOCOL_ERROR, "SUBACK: no reason code")
        out = bytearray(_packet_id(self.packet_id, "SUBACK"))
        if protocol_level >= PROTOCOL_5:
            out += encode_properties(self.properties, PacketType.SUBACK)
        for code in self.reason_codes:
            _check_suback_code(code, protocol_level)
            out.append(code)
        return _frame(0x90, bytes(out))


def _check_suback_code(code: int, level: int) -> None:
    if level >= PROTOCOL_5:
        _check_reason(PacketType.SUBACK, code, level)
    elif code not in SUBACK_RETURN_CODES_3:
        raise MQTTProtocolError(MALFORMED, f"SUBACK return code: 0x{code:02X}")


def _decode_suback(r: Reader, level: int) -> Suback:
    packet_id = _read_packet_id(r, "SUBACK")
    props: Properties = []
    if level >= PROTOCOL_5:
        props = read_properties(r, PacketType.SUBACK)
    codes = list(r.rest())
    if not codes:
        raise MQTTProtocolError(PROTOCOL_ERROR, "SUBACK: no reason code")
    for code in codes:
        _check_suback_code(code, level)
    return Suback(packet_id, codes, props)


# -- UNSUBSCRIBE / UNSUBACK ------------------------------------------------------------


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: list[str] = field(default_factory=list)
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int) -> bytes:
        if not self.topic_filters:
            raise MQTTProtocolError(PROTOCOL_ERROR, "UNSUBSCRIBE: no topic filter")
        out = bytearray(_packet_id(self.packet_id, "UNSUBSCRIBE"))
        if protocol_level >= PROTOCOL_5:
            out += encode_properties(self.properties, PacketType.UNSUBSCRIBE)
        for topic_filter in self.topic_filters:
            out += encode_mqtt_utf8(topic_filter, "UNSUBSCRIBE topic filter")
        return _frame(0xA2, bytes(out))


def _decode_unsubscribe(r: Reader, level: int) -> Unsubscribe:
    packet_id = _read_packet_id(r, "UNSUBSCRIBE")
    props: Properties = []
    if level >= PROTOCOL_5:
        props = read_properties(r, PacketType.UNSUBSCRIBE)
    filters: list[str] = []
    while r.remaining():
        filters.append(_read_filter(r, "UNSUBSCRIBE", level))
    if not filters:
        raise MQTTProtocolError(PROTOCOL_ERROR, "UNSUBSCRIBE: no topic filter")
    return Unsubscribe(packet_id, filters, props)


@dataclass(slots=True)
class Unsuback:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int) -> bytes:
        out = bytearray(_packet_id(self.packet_id, "UNSUBACK"))
        if protocol_level >= PROTOCOL_5:
            if not self.reason_codes:
                raise MQTTProtocolError(PROTOCOL_ERROR, "UNSUBACK: no reason code")
            out += encode_properties(self.properties, PacketType.UNSUBACK)
            for code in self.reason_codes:
                _check_reason(PacketType.UNSUBACK, code, protocol_level)
                out.append(code)
        return _frame(0xB0, bytes(out))


def _decode_unsuback(r: Reader, level: int) -> Unsuback:
    packet_id = _read_packet_id(r, "UNSUBACK")
    props: Properties = []
    codes: list[int] = []
    if level >= PROTOCOL_5:
        props = read_properties(r, PacketType.UNSUBACK)
        codes = list(r.rest())
        if not codes:
            raise MQTTProtocolError(PROTOCOL_ERROR, "UNSUBACK: no reason code")
        for code in codes:
            _check_reason(PacketType.UNSUBACK, code, level)
    r.done("UNSUBACK")
    return Unsuback(packet_id, codes, props)


# -- PINGREQ / PINGRESP / DISCONNECT / AUTH --------------------------------------------


@dataclass(slots=True)
class Pingreq:
    def encode(self, protocol_level: int) -> bytes:
        return b"\xc0\x00"


@dataclass(slots=True)
class Pingresp:
    def encode(self, protocol_level: int) -> bytes:
        return b"\xd0\x00"


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int) -> bytes:
        if protocol_level < PROTOCOL_5:
            return b"\xe0\x00"
        body = _encode_reason_props(
            PacketType.DISCONNECT, self.reason_code, self.properties, protocol_level
        )
        return _frame(0xE0, body)


@dataclass(slots=True)
class Auth:
    """AUTH always carries reason code and property length when encoded.

    The spec allows a 0-length AUTH for Success without properties (and we decode it), but
    some implementations (e.g. the ``mqtt5`` package) reject it, so we never write it.
    """

    reason_code: int = 0
    properties: Properties = field(default_factory=list)

    def encode(self, protocol_level: int) -> bytes:
        if protocol_level < PROTOCOL_5:
            raise MQTTProtocolError(PROTOCOL_ERROR, "AUTH: only exists in MQTT 5.0")
        _check_reason(PacketType.AUTH, self.reason_code, protocol_level)
        _check_auth_props(self.properties, "AUTH")
        body = bytes((self.reason_code,)) + encode_properties(self.properties, PacketType.AUTH)
        return _frame(0xF0, body)


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)


def decode_packet(first_byte: int, body: bytes | memoryview, protocol_level: int) -> Packet:
    """Decode one packet body; raises only MQTTProtocolError.

    For CONNECT the level comes from the packet itself and ``protocol_level`` is ignored.
    """
    if not 0 <= first_byte <= 0xFF:
        raise MQTTProtocolError(MALFORMED, f"first byte {first_byte} out of range")
    ptype = first_byte >> 4
    level = protocol_level
    if ptype == PacketType.CONNECT:
        level = PROTOCOL_5
    elif level not in (PROTOCOL_31, PROTOCOL_311, PROTOCOL_5):
        raise MQTTProtocolError(UNSUPPORTED_PROTOCOL_VERSION, f"protocol level {level}")
    check_first_byte(first_byte, level)
    r = Reader(bytes(body))
    if ptype == 3:
        return _decode_publish(first_byte, r, level)
    if ptype in (4, 5, 6, 7):
        return _decode_ack(r, ptype, level)
    if ptype == 1:
        return _decode_connect(r)
    if ptype == 2:
        return _decode_connack(r, level)
    if ptype == 8:
        return _decode_subscribe(r, level)
    if ptype == 9:
        return _decode_suback(r, level)
    if ptype == 10:
        return _decode_unsubscribe(r, level)
    if ptype == 11:
        return _decode_unsuback(r, level)
    if ptype == 12:
        r.done("PINGREQ")
        return Pingreq()
    if ptype == 13:
        r.done("PINGRESP")
        return Pingresp()
    code, props = _decode_reason_props(r, ptype, level)
    if ptype == 14:
        return Disconnect(code, props)
    _check_auth_props(props, "AUTH")
    return Auth(code, props)


_ACK_CLASSES: dict[int, type[Puback] | type[Pubrec] | type[Pubrel] | type[Pubcomp]] = {
    4: Puback,
    5: Pubrec,
    6: Pubrel,
    7: Pubcomp,
}


def encode_packet(packet: Packet, protocol_level: int) -> bytes:
    """Same as ``packet.encode(protocol_level)``."""
    return packet.encode(protocol_level)
