"""MQTT UTF-8 strings, topic names and topic filters.

MQTT strings are UTF-8 without U+0000 and without surrogates (spec 1.5.4). Python's strict
decoder already rejects ill-formed sequences, overlong forms and encoded surrogates, so only
U+0000 needs an extra check. Encoding errors are malformed packets (0x81); violations of the
topic rules use 0x90 (topic name invalid) and 0x8F (topic filter invalid), the codes a 5.0
server reports for them.
"""

from __future__ import annotations

from .errors import MALFORMED, TOPIC_FILTER_INVALID, TOPIC_NAME_INVALID, MQTTProtocolError

MAX_STRING_BYTES = 65_535


def decode_mqtt_utf8(raw: bytes | memoryview, field: str) -> str:
    """Decode an MQTT UTF-8 string, raising 0x81 if it is not well formed."""
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise MQTTProtocolError(MALFORMED, f"{field}: invalid UTF-8") from None
    if "\x00" in text:
        raise MQTTProtocolError(MALFORMED, f"{field}: contains U+0000")
    return text


def encode_mqtt_utf8(text: str, field: str) -> bytes:
    """Encode with the 2-byte length prefix; refuse what a peer would reject."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise MQTTProtocolError(MALFORMED, f"{field}: not encodable as UTF-8") from None
    if "\x00" in text:
        raise MQTTProtocolError(MALFORMED, f"{field}: contains U+0000")
    if len(raw) > MAX_STRING_BYTES:
        raise MQTTProtocolError(MALFORMED, f"{field}: longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def check_topic_name(topic: str, field: str = "topic name") -> None:
    """Apply the topic-name rules to an already decoded string (non-empty, no wildcards)."""
    if not topic:
        raise MQTTProtocolError(TOPIC_NAME_INVALID, f"{field}: empty")
    if "+" in topic or "#" in topic:
        raise MQTTProtocolError(TOPIC_NAME_INVALID, f"{field}: contains a wildcard")


def validate_topic_name(raw: bytes) -> str:
    """Decode and check a PUBLISH topic name taken raw from the wire.

    Called by the proxy only on a cache miss of its per-topic decision cache, so it may be
    thorough rather than fast.
    """
    topic = decode_mqtt_utf8(raw, "topic name")
    check_topic_name(topic)
    return topic


def validate_topic_filter(topic_filter: str) -> None:
    """Check the wildcard rules: ``#`` alone in the last level, ``+`` alone in its level."""
    if not topic_filter:
        raise MQTTProtocolError(TOPIC_FILTER_INVALID, "topic filter: empty")
    if "\x00" in topic_filter:
        raise MQTTProtocolError(MALFORMED, "topic filter: contains U+0000")
    if "+" not in topic_filter and "#" not in topic_filter:
        return
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            raise MQTTProtocolError(
                TOPIC_FILTER_INVALID, f"topic filter {topic_filter!r}: '#' not alone in last level"
            )
        if "+" in level and level != "+":
            raise MQTTProtocolError(
                TOPIC_FILTER_INVALID, f"topic filter {topic_filter!r}: '+' not a whole level"
            )


SHARE_PREFIX = "$share/"


def check_shared_filter(topic_filter: str) -> bool:
    """For MQTT 5.0: check a ``$share/<name>/<filter>`` subscription; True if it is one."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return False
    rest = topic_filter[len(SHARE_PREFIX) :]
    name, sep, inner = rest.partition("/")
    if not name or "+" in name or "#" in name:
        raise MQTTProtocolError(
            TOPIC_FILTER_INVALID, f"topic filter {topic_filter!r}: invalid share name"
        )
    if not sep or not inner:
        raise MQTTProtocolError(
            TOPIC_FILTER_INVALID, f"topic filter {topic_filter!r}: shared filter has no topic"
        )
    return True
