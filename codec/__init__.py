"""mqttgate.codec: sans-IO streaming MQTT 3.1 / 3.1.1 / 5.0 codec.

Bytes in, frames and packets out; no sockets, no asyncio, nothing else of the project.

Every problem is an ``MQTTProtocolError(reason_code, message)``. Reason codes chosen:

* 0x81 malformed: bad framing (varint over 4 bytes, reserved type, wrong fixed-header
  flags, PUBLISH QoS 3), truncated fields, trailing bytes, ill-formed UTF-8 or U+0000,
  unknown property identifiers, reserved bits (CONNECT flag bit 0, subscription options,
  CONNACK flags), inconsistent CONNECT will flags, 3.x password without user name,
  return codes that do not exist in 3.x.
* 0x82 protocol error: packet identifier 0, property not allowed in the packet or repeated,
  property values out of range (Receive Maximum 0, Topic Alias 0, boolean properties > 1,
  Subscription Identifier 0), reason codes not allowed for the packet type, SUBSCRIBE /
  UNSUBSCRIBE without filters, SUBACK / 5.0 UNSUBACK without codes, retain handling 3,
  No Local on a shared subscription, Authentication Data without Authentication Method.
* 0x84 unsupported protocol version: CONNECT protocol name / level other than
  MQIsdp+3, MQTT+4, MQTT+5 (3.1.1 peers get CONNACK return code 1 for it).
* 0x8F topic filter invalid: empty filter, ``#`` / ``+`` misplaced, bad ``$share`` filter.
* 0x90 topic name invalid: empty PUBLISH / will topic (empty is allowed only in 5.0 with a
  Topic Alias), wildcards in a topic name or Response Topic.
* 0x95 packet too large: declared size above ``FrameReader.max_packet_size``.

Decisions left to the proxy, not the codec: empty or over-long client identifiers
(CONNACK 0x02 / 0x85), Topic Alias above the negotiated maximum, payload format checks.
Encoders write the canonical (shortest) form and drop 5.0-only fields (properties, ack
reason codes, UNSUBACK codes) when encoding for 3.1 / 3.1.1; AUTH is always written with
reason code and property length because some peers reject the 0-length form.
"""

from .constants import PROTOCOL_5, PROTOCOL_31, PROTOCOL_311, PacketType, PropertyId, ReasonCode
from .errors import MQTTProtocolError
from .framing import FrameReader
from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
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
)
from .peek import PublishPeek, peek_publish
from .properties import Properties, get_property
from .strings import validate_topic_filter, validate_topic_name

__all__ = [
    "PROTOCOL_5",
    "PROTOCOL_31",
    "PROTOCOL_311",
    "Auth",
    "Connack",
    "Connect",
    "Disconnect",
    "FrameReader",
    "MQTTProtocolError",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Properties",
    "PropertyId",
    "Puback",
    "Pubcomp",
    "Publish",
    "PublishPeek",
    "Pubrec",
    "Pubrel",
    "ReasonCode",
    "Suback",
    "Subscribe",
    "Subscription",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "decode_packet",
    "encode_packet",
    "get_property",
    "peek_publish",
    "validate_topic_filter",
    "validate_topic_name",
]
