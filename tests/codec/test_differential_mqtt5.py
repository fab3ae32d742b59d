"""Differential tests against ``mqtt5``, an independent (Rust) MQTT 5.0 implementation.

For generated packets of every 5.0 type: bytes we encode are read by mqtt5 to the same
fields, and bytes mqtt5 writes for the same packet decode with our codec to the same
fields. Fields are compared semantically (mqtt5 fills in spec defaults for absent
properties, so our side applies the same defaults).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mqttgate.codec import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    FrameReader,
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
    Unsuback,
    Unsubscribe,
    Will,
    decode_packet,
)

from .strategies import packets

mqtt5 = pytest.importorskip("mqtt5")
P = PropertyId

# mqtt5 field name -> (property id, default when absent)
_PUBLISH_LIKE = {
    "payload_format_indicator": (P.PAYLOAD_FORMAT_INDICATOR, 0),
    "message_expiry_interval": (P.MESSAGE_EXPIRY_INTERVAL, None),
    "content_type": (P.CONTENT_TYPE, None),
    "response_topic": (P.RESPONSE_TOPIC, None),
    "correlation_data": (P.CORRELATION_DATA, None),
}
_CONNECT = {
    "session_expiry_interval": (P.SESSION_EXPIRY_INTERVAL, 0),
    "authentication_method": (P.AUTHENTICATION_METHOD, None),
    "authentication_data": (P.AUTHENTICATION_DATA, None),
    "request_problem_info": (P.REQUEST_PROBLEM_INFORMATION, 1),
    "request_response_info": (P.REQUEST_RESPONSE_INFORMATION, 0),
    "receive_max": (P.RECEIVE_MAXIMUM, 65535),
    "topic_alias_max": (P.TOPIC_ALIAS_MAXIMUM, 0),
    "max_packet_size": (P.MAXIMUM_PACKET_SIZE, None),
}
_CONNACK = {
    "session_expiry_interval": (P.SESSION_EXPIRY_INTERVAL, None),
    "assigned_client_id": (P.ASSIGNED_CLIENT_IDENTIFIER, None),
    "server_keep_alive": (P.SERVER_KEEP_ALIVE, None),
    "authentication_method": (P.AUTHENTICATION_METHOD, None),
    "authentication_data": (P.AUTHENTICATION_DATA, None),
    "response_info": (P.RESPONSE_INFORMATION, None),
    "server_reference": (P.SERVER_REFERENCE, None),
    "reason_str": (P.REASON_STRING, None),
    "receive_max": (P.RECEIVE_MAXIMUM, 65535),
    "topic_alias_max": (P.TOPIC_ALIAS_MAXIMUM, 0),
    "max_qos": (P.MAXIMUM_QOS, 2),
    "retain_available": (P.RETAIN_AVAILABLE, 1),
    "max_packet_size": (P.MAXIMUM_PACKET_SIZE, None),
    "wildcard_subscription_available": (P.WILDCARD_SUBSCRIPTION_AVAILABLE, 1),
    "subscription_id_available": (P.SUBSCRIPTION_IDENTIFIER_AVAILABLE, 1),
    "shared_subscription_available": (P.SHARED_SUBSCRIPTION_AVAILABLE, 1),
}
_REASON = {"reason_str": (P.REASON_STRING, None)}
_DISCONNECT = {
    "session_expiry_interval": (P.SESSION_EXPIRY_INTERVAL, None),
    "server_reference": (P.SERVER_REFERENCE, None),
    "reason_str": (P.REASON_STRING, None),
}
_AUTH = {
    "authentication_method": (P.AUTHENTICATION_METHOD, None),
    "authentication_data": (P.AUTHENTICATION_DATA, None),
    "reason_str": (P.REASON_STRING, None),
}


def _props(props: list[tuple[int, object]], table: dict[str, tuple[int, object]]) -> dict[str, Any]:
    values = dict(props)
    out: dict[str, Any] = {name: values.get(pid, default) for name, (pid, default) in table.items()}
    out["user_properties"] = [v for k, v in props if k == P.USER_PROPERTY]
    return out


def semantic(packet: object) -> dict[str, Any]:
    """Our packet as mqtt5's field names and defaults."""
    match packet:
        case Publish():
            d = {
                "topic": packet.topic,
                "payload": packet.payload,
                "qos": packet.qos,
                "retain": packet.retain,
                "duplicate": packet.dup,
                "packet_id": packet.packet_id,
                "subscription_ids": [v for k, v in packet.properties if k == 0x0B],
                "topic_alias": dict(packet.properties).get(P.TOPIC_ALIAS),
            }
            return d | _props(packet.properties, _PUBLISH_LIKE)
        case Connect():
            will = None
            if packet.will is not None:
                w = packet.will
                will = {"topic": w.topic, "payload": w.payload, "qos": w.qos, "retain": w.retain}
                will |= _props(w.properties, _PUBLISH_LIKE | {"will_delay_interval": (0x18, 0)})
            d = {
                "client_id": packet.client_id,
                "username": packet.username,
                "password": packet.password,
                "clean_start": packet.clean_start,
                "will": will,
                "keep_alive": packet.keep_alive,
            }
            return d | _props(packet.properties, _CONNECT)
        case Connack():
            d = {"session_present": packet.session_present, "reason_code": packet.reason_code}
            return d | _props(packet.properties, _CONNACK)
        case Puback() | Pubrec() | Pubrel() | Pubcomp():
            d = {"packet_id": packet.packet_id, "reason_code": packet.reason_code}
            return d | _props(packet.properties, _REASON)
        case Subscribe():
            filters = [
                {
                    "pattern": s.topic_filter,
                    "max_qos": s.options & 3,
                    "no_local": bool(s.options & 4),
                    "retain_as_published": bool(s.options & 8),
                    "retain_handling": (s.options >> 4) & 3,
                }
                for s in packet.subscriptions
            ]
            d = {
                "packet_id": packet.packet_id,
                "topic_filters": filters,
                "subscription_id": dict(packet.properties).get(0x0B),
            }
            return d | _props(packet.properties, {})
        case Suback() | Unsuback():
            d = {"packet_id": packet.packet_id, "reason_codes": list(packet.reason_codes)}
            return d | _props(packet.properties, _REASON)
        case Unsubscribe():
            d = {"packet_id": packet.packet_id, "patterns": list(packet.topic_filters)}
            return d | _props(packet.properties, {})
        case Disconnect():
            return {"reason_code": packet.reason_code} | _props(packet.properties, _DISCONNECT)
        case Auth():
            return {"reason_code": packet.reason_code} | _props(packet.properties, _AUTH)
        case Pingreq() | Pingresp():
            return {}
    raise AssertionError(packet)


def _plain(value: Any) -> Any:
    if hasattr(value, "value") and hasattr(value, "name"):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if type(value).__module__.startswith("mqtt5") or type(value).__name__ in (
        "Will",
        "TopicFilter",
    ):
        return m5_fields(value)
    if isinstance(value, bool):
        return value
    return value


def m5_fields(obj: Any) -> dict[str, Any]:
    names = [n for n in dir(obj) if not n.startswith("_") and n != "write"]
    return {n: _plain(getattr(obj, n)) for n in names}


_CLASSES = {
    Connect: "ConnectPacket",
    Connack: "ConnAckPacket",
    Publish: "PublishPacket",
    Puback: "PubAckPacket",
    Pubrec: "PubRecPacket",
    Pubrel: "PubRelPacket",
    Pubcomp: "PubCompPacket",
    Subscribe: "SubscribePacket",
    Suback: "SubAckPacket",
    Unsubscribe: "UnsubscribePacket",
    Unsuback: "UnsubAckPacket",
    Pingreq: "PingReqPacket",
    Pingresp: "PingRespPacket",
    Disconnect: "DisconnectPacket",
    Auth: "AuthPacket",
}
_REASON_ENUMS = {
    "ConnAckPacket": "ConnAckReasonCode",
    "PubAckPacket": "PubAckReasonCode",
    "PubRecPacket": "PubRecReasonCode",
    "PubRelPacket": "PubRelReasonCode",
    "PubCompPacket": "PubCompReasonCode",
    "SubAckPacket": "SubAckReasonCode",
    "UnsubAckPacket": "UnsubAckReasonCode",
    "DisconnectPacket": "DisconnectReasonCode",
    "AuthPacket": "AuthReasonCode",
}


def build_m5(packet: object) -> Any:
    """The mqtt5 object for our packet, built from the semantic fields."""
    cls_name = _CLASSES[type(packet)]
    kwargs = semantic(packet)
    enum = getattr(mqtt5, _REASON_ENUMS.get(cls_name, "QoS"))
    if "reason_code" in kwargs:
        kwargs["reason_code"] = enum(kwargs["reason_code"])
    if "reason_codes" in kwargs:
        kwargs["reason_codes"] = [enum(c) for c in kwargs["reason_codes"]]
    for key in ("qos", "max_qos"):
        if key in kwargs:
            kwargs[key] = mqtt5.QoS(kwargs[key])
    if kwargs.get("will") is not None:
        will = dict(kwargs["will"])
        will["qos"] = mqtt5.QoS(will["qos"])
        kwargs["will"] = mqtt5.Will(**will)
    if "topic_filters" in kwargs:
        kwargs["topic_filters"] = [
            mqtt5.TopicFilter(
                **(
                    f
                    | {
                        "max_qos": mqtt5.QoS(f["max_qos"]),
                        "retain_handling": mqtt5.RetainHandling(f["retain_handling"]),
                    }
                )
            )
            for f in kwargs["topic_filters"]
        ]
    for key in ("request_problem_info", "request_response_info", "retain_available"):
        if key in kwargs:
            kwargs[key] = bool(kwargs[key])
    for key in (
        "wildcard_subscription_available",
        "subscription_id_available",
        "shared_subscription_available",
    ):
        if key in kwargs:
            kwargs[key] = bool(kwargs[key])
    return getattr(mqtt5, cls_name)(**kwargs)


def _norm(d: dict[str, Any]) -> dict[str, Any]:
    """Booleans-as-ints on both sides compare equal; normalise the will too."""
    out = {}
    for k, v in d.items():
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, dict):
            v = _norm(v)
        if isinstance(v, list):
            v = [_norm(x) if isinstance(x, dict) else x for x in v]
        out[k] = v
    return out


def _decode(raw: bytes) -> object:
    reader = FrameReader(protocol_level=5)
    ((first, start, body, end),) = reader.feed(raw)
    assert (start, end) == (0, len(raw))
    return decode_packet(first, raw[body:end], 5)


def _not_ping(packet: object) -> bool:
    """Pings have no fields; they are compared byte for byte below."""
    return not isinstance(packet, Pingreq | Pingresp)


@settings(max_examples=150)
@given(packets(5))
def test_our_bytes_read_by_mqtt5(packet: object) -> None:
    raw = packet.encode(5)  # type: ignore[attr-defined]
    theirs, consumed = mqtt5.read(raw)
    assert consumed == len(raw)
    assert _norm(m5_fields(theirs)) == _norm(semantic(packet))


@settings(max_examples=150)
@given(packets(5).filter(_not_ping))
def test_mqtt5_bytes_decoded_by_us(packet: object) -> None:
    theirs = build_m5(packet)
    raw = theirs.write()
    ours = _decode(raw)
    assert _norm(semantic(ours)) == _norm(m5_fields(theirs))
    # And our encoder writes what we decoded back to bytes mqtt5 reads identically.
    again, _ = mqtt5.read(ours.encode(5))  # type: ignore[attr-defined]
    assert again == theirs


@given(st.sampled_from([Pingreq(), Pingresp()]))
def test_ping_bytes_agree(packet: object) -> None:
    cls = getattr(mqtt5, _CLASSES[type(packet)])
    assert cls().write() == packet.encode(5)  # type: ignore[attr-defined]
    assert _decode(cls().write()) == packet


def test_short_forms_agree_with_mqtt5() -> None:
    assert mqtt5.PubAckPacket(7).write() == Puback(7).encode(5)
    assert mqtt5.DisconnectPacket().write() == Disconnect().encode(5)
    assert _decode(mqtt5.AuthPacket().write()) == Auth()
    rc = mqtt5.PubRecReasonCode(0x10)
    assert mqtt5.PubRecPacket(7, reason_code=rc).write() == Pubrec(7, 0x10).encode(5)


def test_password_without_user_name_agrees() -> None:
    theirs = mqtt5.ConnectPacket("c", password=b"p")
    assert _decode(theirs.write()) == Connect("MQTT", 5, False, 0, "c", None, b"p")
    assert Connect("MQTT", 5, False, 0, "c", None, b"p").encode(5) == theirs.write()


def test_will_in_connect_agrees() -> None:
    will = mqtt5.Will("w/t", payload=b"bye", qos=mqtt5.QoS(1), will_delay_interval=5)
    theirs = mqtt5.ConnectPacket("cid", username="u", password=b"p", will=will)
    ours = _decode(theirs.write())
    assert isinstance(ours, Connect)
    assert ours.will == Will("w/t", b"bye", 1, False, [(P.WILL_DELAY_INTERVAL, 5)])
