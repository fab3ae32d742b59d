"""Decoder rejections, each with the reason code documented in the codec."""

from __future__ import annotations

import pytest
from mqttgate.codec import (
    Auth,
    Connack,
    Connect,
    MQTTProtocolError,
    Publish,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    decode_packet,
    validate_topic_filter,
    validate_topic_name,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def s(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def reject(first: int, body: bytes, level: int) -> MQTTProtocolError:
    with pytest.raises(MQTTProtocolError) as exc:
        decode_packet(first, body, level)
    assert exc.value.message
    return exc.value


MQTT4 = s("MQTT") + b"\x04"
MQTT5 = s("MQTT") + b"\x05"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (s("MQTT") + h("03 02 00 00") + s("c"), 0x84, "protocol"),  # MQTT with level 3
        (s("MQIsdp") + h("04 02 00 00") + s("c"), 0x84, "protocol"),
        (s("MQTT") + h("06 02 00 00") + s("c"), 0x84, "protocol"),
        (s("HTTP") + h("04 02 00 00") + s("c"), 0x84, "protocol"),
        (MQTT4 + h("03 00 00") + s("c"), 0x81, "reserved"),
        (MQTT4 + h("18 00 00") + s("c"), 0x81, "will QoS 3"),
        (MQTT4 + h("08 00 00") + s("c"), 0x81, "will"),  # will QoS without will flag
        (MQTT4 + h("20 00 00") + s("c"), 0x81, "will"),  # will retain without will flag
        (MQTT4 + h("42 00 00") + s("c") + s("p"), 0x81, "password"),
        (MQTT4 + h("02 00 00") + s("c") + b"\x00", 0x81, "trailing"),
        (MQTT4 + h("02 00 00") + h("00 05 61"), 0x81, "client identifier"),
        (MQTT4 + h("02 00 00") + h("00 02 C3 28"), 0x81, "UTF-8"),
        (MQTT4 + h("02 00 00") + h("00 02 61 00"), 0x81, "U+0000"),
        (MQTT4 + h("02 00 00") + h("00 03 ED A0 80"), 0x81, "UTF-8"),  # surrogate
        (MQTT4 + h("06 00 00") + s("c") + s("a/+") + s("x"), 0x90, "wildcard"),
        (MQTT5 + h("02 00 00 03 21 00 00") + s("c"), 0x82, "RECEIVE_MAXIMUM"),
        (MQTT5 + h("02 00 00 04 11 00 00 00") + s("c"), 0x81, "too short"),
        (MQTT5 + h("02 00 00 0A 11 00 00 00 00 11 00 00 00 01") + s("c"), 0x82, "repeated"),
        (MQTT5 + h("02 00 00 02 23 00") + s("c"), 0x82, "not allowed"),  # topic alias
        (MQTT5 + h("02 00 00 02 7F 00") + s("c"), 0x81, "unknown"),
        (MQTT5 + h("02 00 00 03 16 00 00") + s("c"), 0x82, "Authentication"),
        (MQTT5 + h("02 00 00 07") + s("c"), 0x81, "exceeds"),
    ],
)
def test_connect_rejections(body: bytes, code: int, field: str) -> None:
    err = reject(0x10, body, 4)
    assert err.reason_code == code
    assert field in err.message


@pytest.mark.parametrize(
    ("first", "body", "level", "code"),
    [
        (0x30, h("00 03 61 2F 2B"), 4, 0x90),  # a/+
        (0x30, h("00 01 23 00"), 5, 0x90),  # #
        (0x30, h("00 00"), 4, 0x90),  # empty topic below 5.0
        (0x30, h("00 00 00"), 5, 0x90),  # empty topic without alias
        (0x30, h("00 02 C3 28"), 4, 0x81),  # malformed UTF-8
        (0x32, h("00 01 74 00 00"), 4, 0x82),  # packet id 0
        (0x32, h("00 01 74 00"), 4, 0x81),  # truncated packet id
        (0x30, h("00 05 74"), 4, 0x81),  # topic longer than body
        (0x30, h("00 01 74 03 23 00 00"), 5, 0x82),  # topic alias 0
        (0x30, h("00 01 74 02 01 02"), 5, 0x82),  # payload format indicator 2
        (0x30, h("00 01 74 06 23 00 01 23 00 02"), 5, 0x82),  # alias repeated
        (0x30, h("00 01 74 02 02 00"), 5, 0x81),  # message expiry truncated
        (0x30, h("00 01 74 05 11 00 00 00 00"), 5, 0x82),  # session expiry not in PUBLISH
        (0x30, h("00 01 74 02 0B 00"), 5, 0x82),  # subscription id 0
        (0x30, h("00 01 74 06 08 00 03 61 2F 23"), 5, 0x90),  # response topic a/#
        (0x36, h("00 01 74"), 4, 0x81),  # QoS 3
        (0x40, h("00 00"), 4, 0x82),  # PUBACK packet id 0
        (0x40, h("00 01 00"), 4, 0x81),  # trailing byte below 5.0
        (0x40, h("00 01 92"), 5, 0x82),  # reason not allowed in PUBACK
        (0x62, h("00 01 10"), 5, 0x82),  # reason not allowed in PUBREL
        (0x40, h("00 01 00 05"), 5, 0x81),  # property length beyond body
        (0x82, h("00 01"), 4, 0x82),  # SUBSCRIBE without filter
        (0x82, h("00 01 00"), 5, 0x82),
        (0x82, h("00 01 00 03 61 2F 23 04"), 4, 0x81),  # reserved option bit in 3.1.1
        (0x82, h("00 01 00 00 03 61 2F 23 40"), 5, 0x81),  # reserved option bit in 5.0
        (0x82, h("00 01 00 00 03 61 2F 23 30"), 5, 0x82),  # retain handling 3
        (0x82, h("00 01 00 03 61 2F 23 03"), 4, 0x81),  # QoS 3
        (0x82, h("00 01 00 03 23 2F 61 00"), 4, 0x8F),  # #/a
        (0x82, h("00 01 00 03 61 2B 62 00"), 4, 0x8F),  # a+b
        (0x82, h("00 01 00 00 00"), 4, 0x8F),  # empty filter
        (0x82, h("00 01 00 03 61 2F 62"), 4, 0x81),  # options byte missing
        (0x82, h("00 00 00 03 61 2F 62 00"), 4, 0x82),  # packet id 0
        (0x82, h("00 01 04 0B 01 0B 02 00 01 61 00"), 5, 0x82),  # two subscription ids
        (0x82, h("00 01 00 00 0A") + b"$share/g/a" + h("04"), 5, 0x82),  # no local on share
        (0x82, h("00 01 00 00 08") + b"$share/g" + h("00"), 5, 0x8F),  # share without filter
        (0x82, h("00 01 00 00 0A") + b"$share/+/a" + h("00"), 5, 0x8F),
        (0x90, h("00 01 03"), 4, 0x81),  # SUBACK code 3 in 3.1.1
        (0x90, h("00 01 00 05"), 5, 0x82),
        (0x90, h("00 01"), 4, 0x82),  # SUBACK without codes
        (0xA2, h("00 01"), 4, 0x82),  # UNSUBSCRIBE without filter
        (0xA2, h("00 01 00 01 2B 2B"), 4, 0x81),  # string length mismatch
        (0xB0, h("00 01 00"), 4, 0x81),
        (0xB0, h("00 01 00"), 5, 0x82),  # UNSUBACK 5.0 without codes
        (0xB0, h("00 01 00 87 02"), 5, 0x82),  # UNSUBACK code 0x02 not allowed
        (0x20, h("02 00"), 4, 0x81),  # CONNACK reserved flag
        (0x20, h("00 06"), 4, 0x81),  # 3.1.1 return code 6
        (0x20, h("01 05"), 4, 0x82),  # session present with failure
        (0x20, h("00 10 00"), 5, 0x82),  # 0x10 not a CONNACK code
        (0x20, h("00"), 4, 0x81),
        (0xC0, h("00"), 4, 0x81),  # PINGREQ with body
        (0xD0, h("00"), 4, 0x81),
        (0xE0, h("00"), 4, 0x81),  # DISCONNECT with body in 3.1.1
        (0xE0, h("05"), 5, 0x82),  # reason 0x05 not allowed
        (0xE0, h("00 02 11 00"), 5, 0x81),  # session expiry truncated
        (0xE0, h("00 03 23 00 01"), 5, 0x82),  # topic alias not allowed in DISCONNECT
        (0xF0, h("00"), 4, 0x81),  # AUTH below 5.0
        (0xF0, h("87 00"), 5, 0x82),
        (0xF0, h("18 04 16 00 01 61"), 5, 0x82),  # data without method
        (0x00, b"", 5, 0x81),
        (0x60, h("00 01"), 4, 0x81),  # PUBREL flags
    ],
)
def test_packet_rejections(first: int, body: bytes, level: int, code: int) -> None:
    assert reject(first, body, level).reason_code == code


def test_unknown_level_argument() -> None:
    assert reject(0x30, h("00 01 74"), 9).reason_code == 0x84


def test_truncated_prefixes_of_a_valid_packet_are_malformed() -> None:
    raw = Publish("a/b", b"", 1, packet_id=5, properties=[(0x26, ("k", "v"))]).encode(5)
    body = raw[2:]
    for cut in range(len(body) - 1):
        with pytest.raises(MQTTProtocolError):
            decode_packet(0x32, body[:cut], 5)


@pytest.mark.parametrize("topic", ["a/#", "+", "a/+/b", "#", ""])
def test_validate_topic_name_rejects(topic: str) -> None:
    with pytest.raises(MQTTProtocolError) as exc:
        validate_topic_name(topic.encode())
    assert exc.value.reason_code == 0x90


def test_validate_topic_name_accepts_and_decodes() -> None:
    assert validate_topic_name("a/ä/$SYS".encode()) == "a/ä/$SYS"
    with pytest.raises(MQTTProtocolError) as exc:
        validate_topic_name(b"\xff")
    assert exc.value.reason_code == 0x81


@pytest.mark.parametrize("good", ["#", "+", "a/#", "+/+", "a/+/b/#", "/", "a//b", "+/", "$SYS/#"])
def test_validate_topic_filter_accepts(good: str) -> None:
    validate_topic_filter(good)


@pytest.mark.parametrize("bad", ["", "a#", "#/a", "a/#/b", "a+", "+a/b", "a/b+/c", "##"])
def test_validate_topic_filter_rejects(bad: str) -> None:
    with pytest.raises(MQTTProtocolError) as exc:
        validate_topic_filter(bad)
    assert exc.value.reason_code == 0x8F


@pytest.mark.parametrize(
    "packet",
    [
        Publish("t", qos=1),  # no packet id
        Publish("t", qos=3),
        Subscribe(1, []),
        Subscribe(1, [Subscription("a", 3)]),
        Connect("MQTT", 3),
        Connect(username=None, password=b"x"),
        Publish("t", properties=[(0x11, 5)]),  # not a PUBLISH property
        Publish("t", properties=[(0x23, "x")]),
        Publish("\ud800"),
        Publish("x" * 70_000),
        Suback(1, []),
        Suback(1, [0x87]),  # not a 3.1.1 return code
        Connack(reason_code=0x87),  # not a 3.1.1 return code
    ],
)
def test_encoder_refuses_invalid_packets(packet: object) -> None:
    with pytest.raises(MQTTProtocolError):
        packet.encode(5 if isinstance(packet, Publish) and packet.properties else 4)  # type: ignore[attr-defined]


def test_five_only_encoder_checks() -> None:
    with pytest.raises(MQTTProtocolError):
        Unsuback(1, []).encode(5)
    with pytest.raises(MQTTProtocolError):
        Auth(0x87).encode(5)
    with pytest.raises(MQTTProtocolError):
        Auth().encode(4)
    assert Unsuback(1, []).encode(4) == b"\xb0\x02\x00\x01"
