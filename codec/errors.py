"""The codec's single error type.

Every failure the codec can detect on untrusted bytes surfaces as ``MQTTProtocolError``
so that callers need exactly one ``except`` clause; the reason code is the MQTT 5.0 code a
5.0 peer would be told (0x81 malformed, 0x82 protocol error, 0x84, 0x8F, 0x90, 0x95, ...).
"""

from __future__ import annotations

MALFORMED = 0x81
PROTOCOL_ERROR = 0x82
UNSUPPORTED_PROTOCOL_VERSION = 0x84
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
PACKET_TOO_LARGE = 0x95


class MQTTProtocolError(Exception):
    """A violation of the MQTT wire format or protocol rules.

    ``message`` names the field at fault so that logs and DISCONNECT reason strings are
    useful without a packet dump.
    """

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(reason_code, message)
        self.reason_code = reason_code
        self.message = message

    def __str__(self) -> str:
        return f"0x{self.reason_code:02X}: {self.message}"

    def __repr__(self) -> str:
        return f"MQTTProtocolError(0x{self.reason_code:02X}, {self.message!r})"
