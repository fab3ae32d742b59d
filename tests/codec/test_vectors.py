"""Known byte vectors for every packet type and level, many from the MQTT specifications."""

from __future__ import annotations

import pytest
from mqttgate.codec import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    FrameReader,
    MQTTProtocolError,
    Pingreq,
    Pingresp,
    PropertyId,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
    decode_packet,
    encode_packet,
    get_property,
)
from mqttgate.codec.varint import Reader, encode_varint

P = PropertyId


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def mqtt_str(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(2, "big") + raw


def frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


# 3.1.1 spec figure 3.6 (CONNECT variable header example): 00 04 'MQTT' 04 CE 00 0A
CONNECT_311_BODY = (
    h("00 04 4D 51 54 54 04 CE 00 0A")
    + mqtt_str("client-1")
    + mqtt_str("will/topic")
    + h("00 03")
    + b"bye"
    + mqtt_str("user")
    + h("00 02")
    + b"pw"
)
# 5.0 spec figure 3-4 (CONNECT variable header example): ... 05 C2 00 0A 05 11 00 00 00 0A
CONNECT_5_BODY = (
    h("00 04 4D 51 54 54 05 C2 00 0A 05 11 00 00 00 0A")
    + mqtt_str("c")
    + mqtt_str("u")
    + h("00 01 70")
)
CONNECT_31_BODY = h("00 06") + b"MQIsdp" + h("03 02 00 3C") + mqtt_str("old-client")

VECTORS: list[tuple[str, int, bytes, object]] = [
    (
        "connect 3.1.1 spec example",
        4,
        frame(0x10, CONNECT_311_BODY),
        Connect("MQTT", 4, True, 10, "client-1", "user", b"pw", Will("will/topic", b"bye", 1)),
    ),
    (
        "connect 5.0 spec example",
        5,
        frame(0x10, CONNECT_5_BODY),
        Connect("MQTT", 5, True, 10, "c", "u", b"p", None, [(P.SESSION_EXPIRY_INTERVAL, 10)]),
    ),
    (
        "connect 3.1",
        3,
        frame(0x10, CONNECT_31_BODY),
        Connect("MQIsdp", 3, True, 60, "old-client"),
    ),
    (
        "connect 5.0 with will properties",
        5,
        frame(
            0x10,
            h("00 04 4D 51 54 54 05 2C 00 00 00")
            + mqtt_str("")
            + h("05 18 00 00 00 05")
            + mqtt_str("w")
            + h("00 00"),
        ),
        Connect(
            "MQTT",
            5,
            False,
            0,
            "",
            None,
            None,
            Will("w", b"", 1, True, [(P.WILL_DELAY_INTERVAL, 5)]),
        ),
    ),
    (
        "connect 5.0 password without user name",
        5,
        frame(0x10, h("00 04 4D 51 54 54 05 42 00 00 00") + mqtt_str("c") + h("00 01 70")),
        Connect("MQTT", 5, True, 0, "c", None, b"p"),
    ),
    ("connack 3.1.1 accepted", 4, h("20 02 00 00"), Connack(False, 0)),
    ("connack 3.1.1 session present", 4, h("20 02 01 00"), Connack(True, 0)),
    ("connack 3.1.1 not authorized", 4, h("20 02 00 05"), Connack(False, 5)),
    ("connack 3.1 refused", 3, h("20 02 00 02"), Connack(False, 2)),
    ("connack 5.0 no props", 5, h("20 03 00 00 00"), Connack(False, 0)),
    (
        "connack 5.0 not authorized with reason string",
        5,
        h("20 08 00 87 05 1F 00 02 6E 6F"),
        Connack(False, 0x87, [(P.REASON_STRING, "no")]),
    ),
    (
        "connack 5.0 capabilities",
        5,
        h("20 0A 01 00 07 24 01 25 00 22 00 0A"),
        Connack(
            True, 0, [(P.MAXIMUM_QOS, 1), (P.RETAIN_AVAILABLE, 0), (P.TOPIC_ALIAS_MAXIMUM, 10)]
        ),
    ),
    # 3.1.1 spec figure 3.11 (PUBLISH variable header example): topic a/b, packet id 10
    (
        "publish 3.1.1 spec example qos1",
        4,
        h("32 09 00 03 61 2F 62 00 0A") + b"hi",
        Publish("a/b", b"hi", 1, False, False, 10),
    ),
    ("publish 3.1.1 qos0 retain", 4, h("31 05 00 01 74") + b"xy", Publish("t", b"xy", 0, True)),
    ("publish 3.1 qos2 dup", 3, h("3C 05 00 01 74 00 07"), Publish("t", b"", 2, False, True, 7)),
    (
        "publish 5.0 alias only",
        5,
        h("30 06 00 00 03 23 00 01"),
        Publish("", b"", 0, False, False, None, [(P.TOPIC_ALIAS, 1)]),
    ),
    (
        "publish 5.0 two subscription ids and user properties",
        5,
        h("30 14 00 01 74 10 0B 01 0B 02 26 00 01 6B 00 01 76 26 00 00 00 00") + b"",
        Publish(
            "t",
            b"",
            0,
            properties=[
                (P.SUBSCRIPTION_IDENTIFIER, 1),
                (P.SUBSCRIPTION_IDENTIFIER, 2),
                (P.USER_PROPERTY, ("k", "v")),
                (P.USER_PROPERTY, ("", "")),
            ],
        ),
    ),
    ("puback 3.1.1", 4, h("40 02 00 01"), Puback(1)),
    ("pubrec 3.1.1", 4, h("50 02 FF FF"), Pubrec(0xFFFF)),
    ("pubrel 3.1.1", 4, h("62 02 00 02"), Pubrel(2)),
    ("pubcomp 3.1", 3, h("70 02 00 03"), Pubcomp(3)),
    ("puback 5.0 short form", 5, h("40 02 00 01"), Puback(1)),
    ("puback 5.0 reason only", 5, h("40 03 00 01 87"), Puback(1, 0x87)),
    (
        "pubrec 5.0 reason and props",
        5,
        h("50 08 00 01 10 04 1F 00 01 78"),
        Pubrec(1, 0x10, [(P.REASON_STRING, "x")]),
    ),
    ("pubrel 5.0 not found", 5, h("62 03 00 09 92"), Pubrel(9, 0x92)),
    ("pubcomp 5.0", 5, h("70 02 00 09"), Pubcomp(9)),
    # 3.1.1 spec figure 3.23 (SUBSCRIBE payload example): a/b QoS 1, c/d QoS 2
    (
        "subscribe 3.1.1 spec example",
        4,
        h("82 0E 00 0A 00 03 61 2F 62 01 00 03 63 2F 64 02"),
        Subscribe(10, [Subscription("a/b", 1), Subscription("c/d", 2)]),
    ),
    (
        "subscribe 5.0 options and id",
        5,
        h("82 0B 00 01 02 0B 05 00 03 61 2F 23 2D"),
        Subscribe(1, [Subscription("a/#", 0x2D)], [(P.SUBSCRIPTION_IDENTIFIER, 5)]),
    ),
    (
        "subscribe 5.0 shared",
        5,
        frame(0x82, h("00 01 00") + mqtt_str("$share/g/a/+") + h("01")),
        Subscribe(1, [Subscription("$share/g/a/+", 1)]),
    ),
    # 3.1.1 spec figure 3.26 (SUBACK payload example): 0x00, 0x02, 0x80
    ("suback 3.1.1 spec example", 4, h("90 05 00 0A 00 02 80"), Suback(10, [0, 2, 0x80])),
    ("suback 5.0", 5, h("90 05 00 0A 00 01 87"), Suback(10, [1, 0x87])),
    # 3.1.1 spec figure 3.30 (UNSUBSCRIBE payload example): a/b, c/d
    (
        "unsubscribe 3.1.1 spec example",
        4,
        h("A2 0C 00 0A 00 03 61 2F 62 00 03 63 2F 64"),
        Unsubscribe(10, ["a/b", "c/d"]),
    ),
    (
        "unsubscribe 5.0",
        5,
        h("A2 0D 00 0A 07 26 00 01 6B 00 01 76 00 01 23"),
        Unsubscribe(10, ["#"], [(P.USER_PROPERTY, ("k", "v"))]),
    ),
    ("unsuback 3.1.1", 4, h("B0 02 00 0A"), Unsuback(10)),
    ("unsuback 5.0", 5, h("B0 05 00 0A 00 00 11"), Unsuback(10, [0, 0x11])),
    ("pingreq", 4, h("C0 00"), Pingreq()),
    ("pingresp", 5, h("D0 00"), Pingresp()),
    ("disconnect 3.1.1", 4, h("E0 00"), Disconnect()),
    ("disconnect 5.0 short", 5, h("E0 00"), Disconnect()),
    ("disconnect 5.0 reason only", 5, h("E0 01 04"), Disconnect(4)),
    (
        "disconnect 5.0 with props",
        5,
        h("E0 07 8E 05 11 00 00 00 00"),
        Disconnect(0x8E, [(P.SESSION_EXPIRY_INTERVAL, 0)]),
    ),
    ("auth 5.0 success", 5, h("F0 02 00 00"), Auth()),
    (
        "auth 5.0 continue",
        5,
        h("F0 0C 18 0A 15 00 02 6D 65 16 00 02 01 02"),
        Auth(0x18, [(P.AUTHENTICATION_METHOD, "me"), (P.AUTHENTICATION_DATA, b"\x01\x02")]),
    ),
]


@pytest.mark.parametrize(("name", "level", "raw", "packet"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_decodes_and_encodes(name: str, level: int, raw: bytes, packet: object) -> None:
    frames = FrameReader(protocol_level=level).feed(raw)
    assert len(frames) == 1
    assert frames[0][0] == raw[0] and frames[0][1] == 0 and frames[0][3] == len(raw)
    first, _, body, end = frames[0]
    assert decode_packet(first, raw[body:end], level) == packet
    assert encode_packet(packet, level) == raw  # type: ignore[arg-type]


def test_every_packet_type_has_a_vector() -> None:
    assert {v[2][0] >> 4 for v in VECTORS} == set(range(1, 16))


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (127, "7F"),
        (128, "80 01"),
        (16_383, "FF 7F"),
        (16_384, "80 80 01"),
        (2_097_151, "FF FF 7F"),
        (2_097_152, "80 80 80 01"),
        (268_435_455, "FF FF FF 7F"),
    ],
)
def test_remaining_length_spec_table(value: int, encoded: str) -> None:
    """Spec 3.1.1 table 2.4 / 5.0 table 1-1: the boundaries of the varint sizes."""
    assert encode_varint(value) == h(encoded)
    assert Reader(h(encoded)).varint("x") == value


def test_utf8_spec_example() -> None:
    """Spec 3.1.1 figure 1.3: 'A\\U0002A6D4' is 00 05 41 F0 AA 9B 94."""
    raw = h("00 05 41 F0 AA 9B 94")
    assert Reader(raw).string("s") == "A\U0002a6d4"


def test_connect_311_spec_flags_decode_to_fields() -> None:
    packet = decode_packet(0x10, CONNECT_311_BODY, 0)
    assert isinstance(packet, Connect)
    assert packet.will is not None and packet.will.qos == 1 and not packet.will.retain
    assert packet.username == "user" and packet.password == b"pw"
    assert packet.keep_alive == 10


def test_get_property_returns_first_value() -> None:
    props: list[tuple[int, object]] = [
        (P.SUBSCRIPTION_IDENTIFIER, 3),
        (P.SUBSCRIPTION_IDENTIFIER, 4),
    ]
    assert get_property(props, P.SUBSCRIPTION_IDENTIFIER) == 3
    assert get_property(props, P.TOPIC_ALIAS) is None
    assert get_property(props, P.TOPIC_ALIAS, 7) == 7


@pytest.mark.parametrize(
    ("raw", "packet"),
    [
        (h("40 04 00 01 00 00"), Puback(1)),
        (h("62 03 00 01 00"), Pubrel(1)),
        (h("E0 02 00 00"), Disconnect()),
        (h("E0 01 00"), Disconnect()),
    ],
)
def test_long_forms_decode_to_short_canonical_form(raw: bytes, packet: object) -> None:
    assert decode_packet(raw[0], raw[2:], 5) == packet
    assert len(encode_packet(packet, 5)) < len(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [h("F0 00"), h("F0 01 00")])
def test_short_auth_forms_decode_and_encode_as_full_form(raw: bytes) -> None:
    assert decode_packet(raw[0], raw[2:], 5) == Auth()
    assert Auth().encode(5) == h("F0 02 00 00")


def test_five_only_fields_are_dropped_below_five() -> None:
    assert Puback(1, 0x87, [(P.REASON_STRING, "x")]).encode(4) == h("40 02 00 01")
    assert Unsuback(1, [0x11]).encode(4) == h("B0 02 00 01")
    assert Disconnect(0x8E).encode(4) == h("E0 00")


def test_decode_accepts_memoryview_bodies() -> None:
    raw = Publish("a/b", b"hi", 1, packet_id=3).encode(4)
    assert decode_packet(raw[0], memoryview(raw)[2:], 4) == Publish("a/b", b"hi", 1, packet_id=3)


def test_bridge_protocol_level_bit_is_unsupported() -> None:
    """Mosquitto bridges set bit 7 of the level (0x84); we only speak plain levels."""
    body = mqtt_str("MQTT") + h("84 02 00 00") + mqtt_str("c")
    with pytest.raises(MQTTProtocolError) as exc:
        decode_packet(0x10, body, 4)
    assert exc.value.reason_code == 0x84
