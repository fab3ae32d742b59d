"""Hypothesis strategies producing valid packets for every type and protocol level."""

from __future__ import annotations

from hypothesis import strategies as st
from mqttgate.codec import (
    Auth,
    Connack,
    Connect,
    Disconnect,
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
)
from mqttgate.codec.constants import REASON_CODES_5, PacketType

P = PropertyId

text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    max_size=12,
)
level_name = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00+#/"),
    min_size=1,
    max_size=6,
)
topic_names = st.lists(level_name, min_size=1, max_size=4).map("/".join)
filter_level = st.one_of(level_name, st.just("+"))
topic_filters = st.builds(
    lambda levels, hash_: "/".join(levels + (["#"] if hash_ else [])),
    st.lists(filter_level, min_size=1, max_size=4),
    st.booleans(),
)
packet_ids = st.integers(1, 0xFFFF)
user_props = st.lists(st.tuples(st.just(int(P.USER_PROPERTY)), st.tuples(text, text)), max_size=2)


def _props(optional: list[tuple[int, st.SearchStrategy[object]]]) -> st.SearchStrategy[list]:
    """A subset of the given properties (each at most once) followed by user properties."""
    picks = [st.one_of(st.none(), st.tuples(st.just(int(pid)), s)) for pid, s in optional]
    return st.builds(
        lambda chosen, users: [c for c in chosen if c is not None] + users,
        st.tuples(*picks),
        user_props,
    )


u16 = st.integers(0, 0xFFFF)
u16nz = st.integers(1, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
flag = st.integers(0, 1)
blob = st.binary(max_size=10)

publish_props = _props(
    [
        (P.PAYLOAD_FORMAT_INDICATOR, flag),
        (P.MESSAGE_EXPIRY_INTERVAL, u32),
        (P.CONTENT_TYPE, text),
        (P.RESPONSE_TOPIC, topic_names),
        (P.CORRELATION_DATA, blob),
        (P.SUBSCRIPTION_IDENTIFIER, st.integers(1, 268_435_455)),
        (P.TOPIC_ALIAS, u16nz),
    ]
)
will_props = _props(
    [
        (P.PAYLOAD_FORMAT_INDICATOR, flag),
        (P.MESSAGE_EXPIRY_INTERVAL, u32),
        (P.WILL_DELAY_INTERVAL, u32),
        (P.CONTENT_TYPE, text),
    ]
)
connect_props = _props(
    [
        (P.SESSION_EXPIRY_INTERVAL, u32),
        (P.RECEIVE_MAXIMUM, u16nz),
        (P.MAXIMUM_PACKET_SIZE, st.integers(1, 0xFFFFFFFF)),
        (P.TOPIC_ALIAS_MAXIMUM, u16),
        (P.REQUEST_PROBLEM_INFORMATION, flag),
        (P.REQUEST_RESPONSE_INFORMATION, flag),
    ]
)
connack_props = _props(
    [
        (P.SESSION_EXPIRY_INTERVAL, u32),
        (P.ASSIGNED_CLIENT_IDENTIFIER, text),
        (P.SERVER_KEEP_ALIVE, u16),
        (P.MAXIMUM_QOS, flag),
        (P.RETAIN_AVAILABLE, flag),
        (P.REASON_STRING, text),
        (P.SHARED_SUBSCRIPTION_AVAILABLE, flag),
    ]
)
reason_props = _props([(P.REASON_STRING, text)])
disconnect_props = _props(
    [(P.SESSION_EXPIRY_INTERVAL, u32), (P.REASON_STRING, text), (P.SERVER_REFERENCE, text)]
)
auth_props = _props([(P.REASON_STRING, text)])


def _codes(ptype: int) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(REASON_CODES_5[ptype]))


def props_if(level: int, strategy: st.SearchStrategy[list]) -> st.SearchStrategy[list]:
    return strategy if level == 5 else st.just([])


def connects(level: int) -> st.SearchStrategy[Connect]:
    name = "MQIsdp" if level == 3 else "MQTT"
    wills = st.builds(
        Will, topic_names, blob, st.integers(0, 2), st.booleans(), props_if(level, will_props)
    )

    def build(clean, keep, cid, user, pw, will, props):  # type: ignore[no-untyped-def]
        if level < 5 and user is None:
            pw = None
        return Connect(name, level, clean, keep, cid, user, pw, will, props)

    return st.builds(
        build,
        st.booleans(),
        u16,
        text,
        st.none() | text,
        st.none() | blob,
        st.none() | wills,
        props_if(level, connect_props),
    )


def publishes(level: int) -> st.SearchStrategy[Publish]:
    def publish(topic, payload, qos, retain, dup, pid, props):  # type: ignore[no-untyped-def]
        return Publish(topic, payload, qos, retain, dup, pid if qos else None, props)

    return st.builds(
        publish,
        topic_names,
        st.binary(max_size=40),
        st.integers(0, 2),
        st.booleans(),
        st.booleans(),
        packet_ids,
        props_if(level, publish_props),
    )


def packets(level: int) -> st.SearchStrategy[object]:
    """Any valid packet a client or server may send at ``level``."""
    if level == 5:
        connack = st.builds(
            lambda sp, rc, props: Connack(sp and rc == 0, rc, props),
            st.booleans(),
            _codes(PacketType.CONNACK),
            connack_props,
        )
    else:
        connack = st.builds(
            lambda sp, rc: Connack(sp and rc == 0, rc), st.booleans(), st.integers(0, 5)
        )

    def ack(cls, ptype):  # type: ignore[no-untyped-def]
        if level < 5:
            return st.builds(cls, packet_ids)
        return st.builds(cls, packet_ids, _codes(ptype), reason_props)

    sub_options = st.integers(0, 2) | (
        st.builds(
            lambda q, nl, rap, rh: q | nl << 2 | rap << 3 | rh << 4,
            st.integers(0, 2),
            flag,
            flag,
            st.integers(0, 2),
        )
        if level == 5
        else st.nothing()
    )
    suback_codes = _codes(PacketType.SUBACK) if level == 5 else st.sampled_from([0, 1, 2, 0x80])
    choices = [
        connects(level),
        connack,
        publishes(level),
        ack(Puback, PacketType.PUBACK),
        ack(Pubrec, PacketType.PUBREC),
        ack(Pubrel, PacketType.PUBREL),
        ack(Pubcomp, PacketType.PUBCOMP),
        st.builds(
            Subscribe,
            packet_ids,
            st.lists(st.builds(Subscription, topic_filters, sub_options), min_size=1, max_size=4),
            props_if(level, _props([(P.SUBSCRIPTION_IDENTIFIER, st.integers(1, 1000))])),
        ),
        st.builds(
            Suback,
            packet_ids,
            st.lists(suback_codes, min_size=1, max_size=4),
            props_if(level, reason_props),
        ),
        st.builds(
            Unsubscribe,
            packet_ids,
            st.lists(topic_filters, min_size=1, max_size=4),
            props_if(level, user_props),
        ),
        st.builds(
            Unsuback,
            packet_ids,
            st.lists(_codes(PacketType.UNSUBACK), min_size=1, max_size=4)
            if level == 5
            else st.just([]),
            props_if(level, reason_props),
        ),
        st.just(Pingreq()),
        st.just(Pingresp()),
        st.builds(Disconnect, _codes(PacketType.DISCONNECT), disconnect_props)
        if level == 5
        else st.just(Disconnect()),
    ]
    if level == 5:
        choices.append(st.builds(Auth, _codes(PacketType.AUTH), auth_props))
    return st.one_of(*choices)
