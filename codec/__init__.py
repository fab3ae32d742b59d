"""mqttgate.codec: sans-IO streaming MQTT 3.1 / 3.1.1 / 5.0 codec.

Bytes in, frames and packets out; no sockets, no asyncio, nothing else of the project.
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
