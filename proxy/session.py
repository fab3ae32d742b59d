"""One client connection's MQTT session rules, sans-IO (in the spirit of h11).

A :class:`Session` is fed the bytes that arrive from the client and from the upstream
broker; it writes what must go each way through two callables it was given and returns
the rare events the I/O layer must act on (verify a password off the event loop, open the
upstream connection, close). It never touches a socket, a loop or a clock, so every rule of
docs/design.md is unit-tested by feeding bytes.

Hot path: frames are forwarded as the original bytes. A chunk whose frames are all allowed
(the common case) goes out with one write of the very bytes object that came in; only
packets that must change (a filtered SUBSCRIBE, a merged SUBACK, a rewritten CONNECT /
CONNACK) are decoded and re-encoded. PUBLISH decisions are cached per connection by the raw
topic bytes and dropped when the policy snapshot changes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Protocol

from mqttgate.codec import (
    PROTOCOL_5,
    Connack,
    Connect,
    Disconnect,
    FrameReader,
    MQTTProtocolError,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Suback,
    Subscribe,
    decode_packet,
    get_property,
    peek_publish,
    validate_topic_filter,
    validate_topic_name,
)
from mqttgate.policy import Authenticator, AuthResult, ConnectionPolicy, PolicySnapshot, PolicyStore
from mqttgate.proxy.metrics import ConnStats

# Packet types (first byte >> 4).
_CONNECT = 1
_CONNACK = 2
_PUBLISH = 3
_PUBACK = 4
_PUBREC = 5
_PUBREL = 6
_PUBCOMP = 7
_SUBSCRIBE = 8
_SUBACK = 9
_UNSUBSCRIBE = 10
_UNSUBACK = 11
_PINGREQ = 12
_PINGRESP = 13
_DISCONNECT = 14
_AUTH = 15

# MQTT 5.0 property identifiers used here.
_P_ASSIGNED_CLIENT_ID = 0x12
_P_AUTH_METHOD = 0x15
_P_AUTH_DATA = 0x16
_P_TOPIC_ALIAS_MAXIMUM = 0x22
_P_MAXIMUM_PACKET_SIZE = 0x27

# MQTT 5.0 reason codes used here.
RC_SUCCESS = 0x00
RC_UNSPECIFIED = 0x80
RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_UNSUPPORTED_VERSION = 0x84
RC_CLIENT_ID_NOT_VALID = 0x85
RC_BAD_CREDENTIALS = 0x86
RC_NOT_AUTHORIZED = 0x87
RC_SERVER_UNAVAILABLE = 0x88
RC_BAD_AUTH_METHOD = 0x8C
RC_TOPIC_ALIAS_INVALID = 0x94
RC_SERVER_SHUTTING_DOWN = 0x8B
RC_QUOTA_EXCEEDED = 0x97

# MQTT 3.1 / 3.1.1 CONNACK return codes.
V3_UNACCEPTABLE_PROTOCOL = 1
V3_IDENTIFIER_REJECTED = 2
V3_SERVER_UNAVAILABLE = 3
V3_BAD_CREDENTIALS = 4
V3_NOT_AUTHORIZED = 5

#: Distinct topics remembered per connection and direction before the cache starts over.
DECISION_CACHE_SIZE = 1024


#: First bytes of the 3.x acknowledgements that are forwarded unchanged when their remaining
#: length is 2: PUBACK, PUBREC, PUBREL, PUBCOMP (index: first byte; 1 = such an ack).
_ACK_FIRST_BYTES = bytes(1 if b in (0x40, 0x50, 0x62, 0x70) else 0 for b in range(256))


def _allowed_prefix(
    buf: bytes, pos: int, n: int, cache: dict[bytes, bool], maxsize: int
) -> tuple[bytes, int] | None:
    """(fixed header + topic, packet size) of the 3.x PUBLISH at ``pos`` when its topic is
    one already judged allowed (in ``cache``) and the whole packet passes the framer's checks;
    None otherwise (the general path decides it)."""
    b0 = buf[pos]
    if b0 >> 4 != _PUBLISH or b0 & 6 == 6:
        return None
    p = pos + 1
    rl = 0
    shift = 0
    while True:
        if p >= n or shift > 21:
            return None
        b = buf[p]
        rl |= (b & 0x7F) << shift
        p += 1
        if b < 0x80:
            break
        shift += 7
    end = p + rl
    if rl < 2 or end - pos > maxsize or p + 2 > n:
        return None
    tend = p + 2 + ((buf[p] << 8) | buf[p + 1])
    if tend > end or tend > n or not cache.get(buf[p + 2 : tend]):
        return None
    return buf[pos:tend], end - pos


def _all_start_with(buf: bytes, pos: int, k: int, prefix: bytes, size: int) -> bool:
    """Whether the ``k`` consecutive ``size``-byte slots from ``pos`` all start with
    ``prefix``: one strided slice per prefix byte, so the work per packet is done in C."""
    stop = pos + k * size
    for j in range(len(prefix)):  # noqa: SIM110 - a generator costs more per call here
        if buf[pos + j : stop : size] != prefix[j : j + 1] * k:
            return False
    return True


#: Fewest packets checked by strided compares rather than one by one: below it the
#: slices (one per prefix byte) cost more than the per-packet loop.
_BLOCK_MIN = 16

#: No PUBLISH learnt yet: (fixed header + topic, packet size).
_NO_RUN: tuple[bytes | None, int] = (None, 0)


def _allowed_run(
    buf: bytes, cache: dict[bytes, bool], maxsize: int, learnt: tuple[bytes | None, int]
) -> tuple[int, int, tuple[bytes | None, int]]:
    """Length of the leading run of ``buf`` that needs no decision beyond the cache, for a
    3.x session: PUBLISHes whose fixed header and topic are byte for byte those of one judged
    allowed (``prefix``, which fixes the size too), and 2-byte acknowledgements.

    Returns (run length, PUBLISHes in it, (prefix, size)): what was learnt on the way is
    kept for the next chunk, since a stream usually repeats its topic. One C-level
    ``startswith`` per packet instead of framing tuples, topic slices and dict lookups.
    """
    prefix, size = learnt
    n = len(buf)
    pos = 0
    pubs = 0
    startswith = buf.startswith
    acks = _ACK_FIRST_BYTES
    blocks = True
    while True:
        if prefix is not None and startswith(prefix, pos):
            if blocks:
                k = (n - pos) // size
                if k >= _BLOCK_MIN and _all_start_with(buf, pos, k, prefix, size):
                    pos += k * size
                    pubs += k
                    continue
                blocks = False  # a mixed stream: packet by packet from here on
            end = pos + size
            if end > n:
                break
            pubs += 1
        elif pos + 4 <= n and acks[buf[pos]] and buf[pos + 1] == 2:
            end = pos + 4
        else:
            if pos >= n:
                break
            learnt = _allowed_prefix(buf, pos, n, cache, maxsize)
            if learnt is None or learnt[0] == prefix:
                break
            prefix, size = learnt
            continue
        pos = end
    return pos, pubs, (prefix, size)


class State(IntEnum):
    AWAIT_CONNECT = 0
    AUTHENTICATING = 1
    CONNECTING_UPSTREAM = 2
    AWAIT_CONNACK = 3
    RELAY = 4
    CLOSED = 5


# --------------------------------------------------------------------------- events


class Event:
    __slots__ = ()


class VerifyPassword(Event):
    """Run ``Authenticator.authenticate_password`` off the loop, then ``password_checked``."""

    __slots__ = ("password", "snapshot", "username")

    def __init__(
        self, snapshot: PolicySnapshot, username: str | None, password: bytes | None
    ) -> None:
        self.snapshot = snapshot
        self.username = username
        self.password = password

    def __repr__(self) -> str:  # never show the password
        return f"VerifyPassword(username={self.username!r})"


class OpenUpstream(Event):
    """Connect to the broker, then call ``upstream_connected`` or ``upstream_failed``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OpenUpstream()"


class AuthOutcome(Event):
    """The final result of one CONNECT (for ``auth_total`` and the audit log)."""

    __slots__ = ("client_id", "method", "result", "username")

    def __init__(self, method: str, result: str, username: str | None, client_id: str) -> None:
        self.method = method
        self.result = result
        self.username = username
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"AuthOutcome({self.method!r}, {self.result!r}, {self.username!r})"


class Denial(Event):
    """A denied action (for the audit log): ``action`` is publish / read / subscribe / will."""

    __slots__ = ("action", "topic")

    def __init__(self, action: str, topic: str) -> None:
        self.action = action
        self.topic = topic

    def __repr__(self) -> str:
        return f"Denial({self.action!r}, {self.topic!r})"


class Ready(Event):
    """The client has its CONNACK: the session relays from now on."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Ready()"


class Close(Event):
    """Close both legs after flushing what was written. ``reason`` is for debug logs."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Close({self.reason!r})"


_NO_EVENTS: tuple[Event, ...] = ()


# --------------------------------------------------------------------------- settings


class SlotLimiter(Protocol):
    def acquire(self, identity: str) -> bool: ...
    def release(self, identity: str) -> None: ...


class SessionSettings:
    """What a session needs from the config; shared by all sessions of a listener."""

    __slots__ = (
        "client_id_namespace",
        "disconnect_on_denied_publish",
        "max_packet_size",
        "mutual_tls",
    )

    def __init__(
        self,
        *,
        mutual_tls: bool = False,
        max_packet_size: int = 1_048_576,
        disconnect_on_denied_publish: bool = False,
        client_id_namespace: bool = True,
    ) -> None:
        self.mutual_tls = mutual_tls
        self.max_packet_size = max_packet_size
        self.disconnect_on_denied_publish = disconnect_on_denied_publish
        self.client_id_namespace = client_id_namespace


def namespace_identity(identity: str) -> str:
    """Percent-encode ``%`` and ``/`` so ``<identity>/`` is an unambiguous prefix."""
    return identity.replace("%", "%25").replace("/", "%2F")


def generate_client_id() -> str:
    return "mqttgate-" + secrets.token_hex(8)


def _replace_property(props: list[tuple[int, Any]], pid: int, value: Any) -> list[tuple[int, Any]]:
    out = [(k, v) for k, v in props if k != pid]
    if value is not None:
        out.append((pid, value))
    return out


class _Alias:
    """One direction's topic-alias map, and whether the receiver knows each mapping.

    A PUBLISH that sets an alias but is dropped by the policy never reaches the receiver, so
    the receiver keeps the old mapping (or none). A later alias-only PUBLISH that *is*
    forwarded must then carry its topic again, or the receiver would deliver it under the
    old topic. ``synced`` says which aliases the receiver knows as we do.
    """

    __slots__ = ("maximum", "synced", "topics")

    def __init__(self) -> None:
        self.maximum = 0
        self.topics: dict[int, bytes] = {}
        self.synced: dict[int, bool] = {}


class Session:
    """The rules of docs/design.md for one client connection."""

    __slots__ = (
        "_assigned_id",
        "_auth_method",
        "_b2c_alias",
        "_c2b_alias",
        "_client_id",
        "_client_max",
        "_client_reader",
        "_deferred",
        "_deferred_bytes",
        "_denied_in_qos2",
        "_denied_out_qos2",
        "_events",
        "_identity",
        "_level",
        "_limiter",
        "_pending_subs",
        "_policy",
        "_rcache",
        "_rrun",
        "_send_client",
        "_send_upstream",
        "_slot_taken",
        "_snapshot",
        "_upstream_connect",
        "_upstream_connect_packet",
        "_upstream_reader",
        "_username",
        "_wcache",
        "_wrun",
        "authenticator",
        "peer_cn",
        "settings",
        "state",
        "stats",
        "store",
    )

    def __init__(
        self,
        *,
        store: PolicyStore,
        authenticator: Authenticator,
        settings: SessionSettings,
        send_client: Callable[[bytes], object],
        send_upstream: Callable[[bytes], object],
        peer_cn: str | None = None,
        stats: ConnStats | None = None,
        limiter: SlotLimiter | None = None,
    ) -> None:
        self.store = store
        self.authenticator = authenticator
        self.settings = settings
        self.peer_cn = peer_cn
        self.stats = stats if stats is not None else ConnStats()
        self.state = State.AWAIT_CONNECT
        self._send_client = send_client
        self._send_upstream = send_upstream
        self._limiter = limiter
        self._slot_taken = False
        self._client_reader = FrameReader(max_packet_size=settings.max_packet_size)
        self._upstream_reader: FrameReader | None = None
        self._level = 4
        self._events: list[Event] | None = None
        self._policy: ConnectionPolicy | None = None
        self._snapshot: PolicySnapshot | None = None
        self._identity: str | None = None
        self._username: str | None = None
        self._client_id = ""
        self._assigned_id: str | None = None
        self._auth_method = "certificate" if settings.mutual_tls else "password"
        self._client_max = 0
        self._upstream_connect: bytes | None = None
        self._upstream_connect_packet: Any = None
        # Allocated on first use: most connections never need them.
        self._deferred: list[tuple[bytes, list[tuple[int, int, int, int]]]] | None = None
        self._deferred_bytes = 0
        self._wcache: dict[bytes, bool] = {}
        self._rcache: dict[bytes, bool] = {}
        # (fixed header + topic, size) of the last allowed 3.x PUBLISH each way; see
        # _allowed_run. Learnt from the decision cache, so valid for as long as the policy
        # snapshot is (dropped with the caches by _refresh_policy).
        self._wrun = _NO_RUN
        self._rrun = _NO_RUN
        self._c2b_alias: _Alias | None = None
        self._b2c_alias: _Alias | None = None
        self._pending_subs: dict[int, list[int | None]] | None = None
        self._denied_in_qos2: set[int] | None = None
        self._denied_out_qos2: set[int] | None = None

    # ------------------------------------------------------------------ public API

    @property
    def identity(self) -> str | None:
        """The authenticated username, once authentication succeeded."""
        return self._identity

    @property
    def protocol_level(self) -> int:
        return self._level

    @property
    def client_id(self) -> str:
        """The client id as the client knows it (the assigned one when it sent none)."""
        return self._client_id

    def client_data(self, data: bytes) -> tuple[Event, ...] | list[Event]:
        """Bytes received from the client."""
        state = self.state
        if state is State.CLOSED:
            return _NO_EVENTS
        self.stats.bytes_in += len(data)
        try:
            if state is State.RELAY and self._level != PROTOCOL_5:
                pubs, self._wrun = self._relay_runs(
                    data,
                    self._client_reader,
                    self._wcache,
                    self._wrun,
                    self._denied_in_qos2,
                    self._send_upstream,
                    self._relay_client,
                )
                self.stats.pub_in_allowed += pubs
                return self._take()
            frames = self._client_reader.feed(data)
            if not frames:
                return _NO_EVENTS
            buf = self._client_reader.buffer
            if state is State.RELAY:
                self._relay_client(buf, frames)
            elif state is State.AWAIT_CONNECT:
                self._first_packet(buf, frames)
            else:
                self._defer(buf, frames)
        except MQTTProtocolError as exc:
            self._client_protocol_error(exc.reason_code, exc.message)
        return self._take()

    def upstream_data(self, data: bytes) -> tuple[Event, ...] | list[Event]:
        """Bytes received from the broker."""
        if self.state is State.CLOSED or self._upstream_reader is None:
            return _NO_EVENTS
        self.stats.bytes_out += len(data)
        try:
            if self.state is State.RELAY and self._level != PROTOCOL_5:
                pubs, self._rrun = self._relay_runs(
                    data,
                    self._upstream_reader,
                    self._rcache,
                    self._rrun,
                    self._denied_out_qos2,
                    self._send_client,
                    self._relay_upstream,
                )
                self.stats.pub_out_allowed += pubs
                return self._take()
            frames = self._upstream_reader.feed(data)
            if frames:
                buf = self._upstream_reader.buffer
                if self.state is State.RELAY:
                    self._relay_upstream(buf, frames)
                elif self.state is State.AWAIT_CONNACK:
                    self._upstream_connack(buf, frames)
                else:
                    self._close("broker sent data before CONNECT")
        except MQTTProtocolError as exc:
            self._upstream_protocol_error(exc.message)
        return self._take()

    def password_checked(self, result: AuthResult) -> tuple[Event, ...] | list[Event]:
        """The outcome of a :class:`VerifyPassword` event."""
        if self.state is State.AUTHENTICATING:
            self._auth_done(result)
        return self._take()

    def upstream_connected(self) -> tuple[Event, ...] | list[Event]:
        """The upstream TCP connection is open: send the rewritten CONNECT."""
        if self.state is not State.CONNECTING_UPSTREAM or self._upstream_connect is None:
            return self._take()
        self.state = State.AWAIT_CONNACK
        reader = FrameReader(
            max_packet_size=self.settings.max_packet_size, protocol_level=self._level
        )
        self._upstream_reader = reader
        self._send_upstream(self._upstream_connect)
        self._upstream_connect = None
        return self._take()

    def upstream_failed(self) -> tuple[Event, ...] | list[Event]:
        """The broker could not be reached (or did not answer CONNECT in time)."""
        if self.state in (State.CONNECTING_UPSTREAM, State.AWAIT_CONNACK):
            self._emit(
                AuthOutcome(
                    self._auth_method, "upstream_unavailable", self._identity, self._client_id
                )
            )
            self._refuse(RC_SERVER_UNAVAILABLE, V3_SERVER_UNAVAILABLE, "upstream unavailable")
        elif self.state is not State.CLOSED:
            self._close("upstream closed")
        return self._take()

    def upstream_closed(self) -> tuple[Event, ...] | list[Event]:
        """The broker closed its leg."""
        return self.upstream_failed()

    def client_closed(self) -> tuple[Event, ...] | list[Event]:
        """The client closed its leg: close the upstream one (the broker sends the will)."""
        if self.state is not State.CLOSED:
            self._close("client closed")
        return self._take()

    def check_policy(self) -> tuple[Event, ...] | list[Event]:
        """Rebind to the store's current snapshot now (after a reload), not at the next packet."""
        if self.state is State.RELAY and self._policy is not None:
            self._refresh_policy()
        return self._take()

    def server_shutdown(self) -> tuple[Event, ...] | list[Event]:
        """The proxy is stopping: tell a 5.0 client (DISCONNECT 0x8B), then close."""
        if self.state is State.RELAY and self._level == PROTOCOL_5:
            self._send_client(
                Disconnect(reason_code=RC_SERVER_SHUTTING_DOWN, properties=[]).encode(PROTOCOL_5)
            )
        self._close("server shutting down")
        return self._take()

    def release(self) -> None:
        """Give back the per-user slot; called once by the I/O layer when the connection ends."""
        if self._slot_taken and self._limiter is not None and self._identity is not None:
            self._limiter.release(self._identity)
        self._slot_taken = False

    # ------------------------------------------------------------------ helpers

    def _emit(self, event: Event) -> None:
        if self._events is None:
            self._events = [event]
        else:
            self._events.append(event)

    def _take(self) -> tuple[Event, ...] | list[Event]:
        events = self._events
        if events is None:
            return _NO_EVENTS
        self._events = None
        return events

    def _close(self, reason: str) -> None:
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._emit(Close(reason))

    def _client_protocol_error(self, reason_code: int, message: str) -> None:
        """A 5.0 client gets DISCONNECT with the reason; a 3.x client is just closed."""
        if self.state is State.CLOSED:
            return
        if self._level == PROTOCOL_5 and self.state is not State.AWAIT_CONNECT:
            code = reason_code if reason_code >= 0x80 else RC_PROTOCOL_ERROR
            self._send_client(Disconnect(reason_code=code, properties=[]).encode(PROTOCOL_5))
        self._close(f"client protocol error: {message}")

    def _upstream_protocol_error(self, message: str) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.AWAIT_CONNACK:
            self._emit(
                AuthOutcome(
                    self._auth_method, "upstream_unavailable", self._identity, self._client_id
                )
            )
            self._refuse(RC_SERVER_UNAVAILABLE, V3_SERVER_UNAVAILABLE, f"broker error: {message}")
            return
        if self._level == PROTOCOL_5:
            self._send_client(
                Disconnect(reason_code=RC_UNSPECIFIED, properties=[]).encode(PROTOCOL_5)
            )
        self._close(f"broker protocol error: {message}")

    def _refuse(self, code5: int, code3: int, reason: str) -> None:
        """Answer the CONNECT with a failure CONNACK, then close."""
        level = self._level
        code = code5 if level == PROTOCOL_5 else code3
        self._send_client(
            Connack(session_present=False, reason_code=code, properties=[]).encode(level)
        )
        self._close(reason)

    def _defer(self, buf: bytes, frames: list[tuple[int, int, int, int]]) -> None:
        """Keep frames that arrive before the relay starts (the I/O layer pauses reading)."""
        if self._deferred is None:
            self._deferred = []
        self._deferred.append((buf, frames))
        self._deferred_bytes += frames[-1][3] - frames[0][1]
        if self._deferred_bytes > 2 * self.settings.max_packet_size + 65536:
            self._close("too much data before CONNACK")

    # ------------------------------------------------------------------ CONNECT

    def _first_packet(self, buf: bytes, frames: list[tuple[int, int, int, int]]) -> None:
        first_byte, _start, body_start, end = frames[0]
        if first_byte >> 4 != _CONNECT:
            self._close("first packet is not CONNECT")
            return
        try:
            packet = decode_packet(first_byte, buf[body_start:end], 4)
        except MQTTProtocolError as exc:
            if exc.reason_code == RC_UNSUPPORTED_VERSION:
                level = self._guess_level(buf, body_start, end)
                self._level = level
                self._refuse(
                    RC_UNSUPPORTED_VERSION, V3_UNACCEPTABLE_PROTOCOL, "unsupported protocol"
                )
            else:
                self._close(f"malformed CONNECT: {exc.message}")
            return
        if not isinstance(packet, Connect):
            self._close("first packet is not CONNECT")
            return
        self._level = packet.protocol_level
        self._client_reader.protocol_level = packet.protocol_level
        if len(frames) > 1:
            self._defer(buf, frames[1:])
            if self.state is State.CLOSED:
                return
        self._on_connect(packet)

    @staticmethod
    def _guess_level(buf: bytes, body_start: int, end: int) -> int:
        try:
            name_len = int.from_bytes(buf[body_start : body_start + 2], "big")
            level = buf[body_start + 2 + name_len]
        except IndexError:
            return 4
        return PROTOCOL_5 if level == PROTOCOL_5 else 4

    def _on_connect(self, packet: Connect) -> None:
        level = packet.protocol_level
        v5 = level == PROTOCOL_5
        self._username = packet.username
        if v5:
            self._client_max = int(get_property(packet.properties, _P_MAXIMUM_PACKET_SIZE, 0) or 0)
            self._b2c_alias = _Alias()
            # The broker may use aliases towards the client up to what the client allows.
            self._b2c_alias.maximum = int(
                get_property(packet.properties, _P_TOPIC_ALIAS_MAXIMUM, 0) or 0
            )
            if get_property(packet.properties, _P_AUTH_METHOD) is not None:
                self._emit(
                    AuthOutcome(
                        self._auth_method, "bad_auth_method", packet.username, packet.client_id
                    )
                )
                self._refuse(RC_BAD_AUTH_METHOD, V3_NOT_AUTHORIZED, "authentication method")
                return
        client_id = packet.client_id
        if client_id == "" and self.settings.client_id_namespace:
            if not v5 and not packet.clean_start:
                # MQTT 3.1.1 [MQTT-3.1.3-8]: no persistent session without a client id.
                self._refuse(RC_CLIENT_ID_NOT_VALID, V3_IDENTIFIER_REJECTED, "empty client id")
                return
            client_id = generate_client_id()
            self._assigned_id = client_id
        self._client_id = client_id
        self._upstream_connect_packet = packet
        snapshot = self.store.current
        self._snapshot = snapshot
        if self.settings.mutual_tls:
            if self.peer_cn is None:
                self._auth_done(AuthResult.NOT_AUTHORIZED)
                return
            result = self.authenticator.authenticate_certificate(
                snapshot, self.peer_cn, packet.username
            )
            self._auth_done(result)
            return
        cached = self.authenticator.try_cached(snapshot, packet.username, packet.password)
        if cached is not None:
            self._auth_done(cached)
            return
        self.state = State.AUTHENTICATING
        self._emit(VerifyPassword(snapshot, packet.username, packet.password))

    def _auth_done(self, result: AuthResult) -> None:
        packet: Connect = self._upstream_connect_packet
        self._upstream_connect_packet = None  # it holds the password: keep it no longer
        if result is AuthResult.BAD_CREDENTIALS:
            self._emit(
                AuthOutcome(self._auth_method, "bad_credentials", self._username, self._client_id)
            )
            self._refuse(RC_BAD_CREDENTIALS, V3_BAD_CREDENTIALS, "bad credentials")
            return
        if result is not AuthResult.SUCCESS:
            self._emit(
                AuthOutcome(self._auth_method, "not_authorized", self._username, self._client_id)
            )
            self._refuse(RC_NOT_AUTHORIZED, V3_NOT_AUTHORIZED, "not authorized")
            return
        identity = self.peer_cn if self.settings.mutual_tls else packet.username
        assert identity is not None
        snapshot = self._snapshot
        assert snapshot is not None
        policy = ConnectionPolicy(snapshot, identity, self._client_id)
        will = packet.will
        if will is not None:
            try:
                validate_topic_name(will.topic.encode("utf-8"))
                allowed = policy.may_publish(will.topic)
            except MQTTProtocolError:
                allowed = False
            if not allowed:
                self._emit(Denial("will", will.topic))
                self._emit(
                    AuthOutcome(self._auth_method, "not_authorized", identity, self._client_id)
                )
                self._refuse(RC_NOT_AUTHORIZED, V3_NOT_AUTHORIZED, "will topic not writable")
                return
        if self._limiter is not None:
            if not self._limiter.acquire(identity):
                self._emit(
                    AuthOutcome(self._auth_method, "not_authorized", identity, self._client_id)
                )
                self._refuse(RC_QUOTA_EXCEEDED, V3_NOT_AUTHORIZED, "too many connections for user")
                return
            self._slot_taken = True
        self._identity = identity
        self._policy = policy
        # Rewrite CONNECT for the broker.
        packet.username = identity
        packet.password = None
        level = packet.protocol_level
        if level == PROTOCOL_5:
            props = [
                (k, v) for k, v in packet.properties if k not in (_P_AUTH_METHOD, _P_AUTH_DATA)
            ]
            limit = self.settings.max_packet_size
            if self._client_max:
                limit = min(limit, self._client_max)
            packet.properties = _replace_property(props, _P_MAXIMUM_PACKET_SIZE, limit)
        if self.settings.client_id_namespace:
            packet.client_id = f"{namespace_identity(identity)}/{self._client_id}"
        self._upstream_connect = packet.encode(level)
        self.state = State.CONNECTING_UPSTREAM
        self._emit(OpenUpstream())

    # ------------------------------------------------------------------ CONNACK

    def _upstream_connack(self, buf: bytes, frames: list[tuple[int, int, int, int]]) -> None:
        first_byte, start, body_start, end = frames[0]
        if first_byte >> 4 != _CONNACK:
            self._upstream_protocol_error("first packet from broker is not CONNACK")
            return
        connack = decode_packet(first_byte, buf[body_start:end], self._level)
        assert isinstance(connack, Connack)
        level = self._level
        if level == PROTOCOL_5:
            self._c2b_alias = _Alias()
            self._c2b_alias.maximum = int(
                get_property(connack.properties, _P_TOPIC_ALIAS_MAXIMUM, 0) or 0
            )
            props = connack.properties
            changed = False
            if self._assigned_id is not None:
                props = _replace_property(props, _P_ASSIGNED_CLIENT_ID, self._assigned_id)
                changed = True
            # Tell the client our packet size limit, so it does not learn it by DISCONNECT.
            limit = self.settings.max_packet_size
            theirs = get_property(props, _P_MAXIMUM_PACKET_SIZE)
            if connack.reason_code == RC_SUCCESS and (theirs is None or int(theirs) > limit):
                props = _replace_property(props, _P_MAXIMUM_PACKET_SIZE, limit)
                changed = True
            if changed:
                connack.properties = props
                self._send_client(connack.encode(level))
            else:
                self._send_client(buf[start:end])
        else:
            self._send_client(buf[start:end])
        if connack.reason_code != RC_SUCCESS:
            self._emit(
                AuthOutcome(
                    self._auth_method, "upstream_unavailable", self._identity, self._client_id
                )
            )
            self._close(f"broker refused CONNECT with {connack.reason_code:#x}")
            return
        self._emit(AuthOutcome(self._auth_method, "success", self._identity, self._client_id))
        self.state = State.RELAY
        self._emit(Ready())
        if len(frames) > 1:
            self._relay_upstream(buf, frames[1:])
        deferred = self._deferred or ()
        self._deferred = None
        self._deferred_bytes = 0
        for dbuf, dframes in deferred:
            if self.state is not State.RELAY:
                break
            self._relay_client(dbuf, dframes)

    # ------------------------------------------------------------------ policy

    def _refresh_policy(self) -> bool:
        policy = self._policy
        assert policy is not None
        self._wcache.clear()
        self._rcache.clear()
        self._wrun = self._rrun = _NO_RUN
        if policy.refresh(self.store.current):
            return True
        if self._level == PROTOCOL_5:
            self._send_client(
                Disconnect(reason_code=RC_NOT_AUTHORIZED, properties=[]).encode(PROTOCOL_5)
            )
        self._close("user removed from policy")
        return False

    def _may_write(self, topic: bytes) -> bool:
        """Cache miss: validate the topic (a protocol error if invalid), then decide."""
        name = validate_topic_name(topic)
        policy = self._policy
        assert policy is not None
        allowed = bool(policy.may_publish(name))
        if len(self._wcache) >= DECISION_CACHE_SIZE:
            self._wcache.clear()
        self._wcache[topic] = allowed
        return allowed

    def _may_read(self, topic: bytes) -> bool:
        name = validate_topic_name(topic)
        policy = self._policy
        assert policy is not None
        allowed = bool(policy.may_read(name))
        if len(self._rcache) >= DECISION_CACHE_SIZE:
            self._rcache.clear()
        self._rcache[topic] = allowed
        return allowed

    # ------------------------------------------------------------------ client -> broker

    def _relay_runs(
        self,
        data: bytes,
        reader: FrameReader,
        cache: dict[bytes, bool],
        learnt: tuple[bytes | None, int],
        denied: set[int] | None,
        send: Callable[[bytes], object],
        relay: Callable[[bytes, list[tuple[int, int, int, int]]], None],
    ) -> tuple[int, tuple[bytes | None, int]]:
        """3.x relay, either way: forward the leading run of cached-allowed packets in one
        write, then the rest through the framer and ``relay`` (the full rules).

        Returns (PUBLISHes in the run, what the run path learnt). ``denied``: the QoS 2 ids
        this direction completes itself; while there are any, a PUBLISH or PUBREL may end
        such a flow, so everything takes the full path.
        """
        buf = reader.take(data)
        if buf is None:
            return 0, learnt
        policy = self._policy
        assert policy is not None
        if self.store.current is not policy.snapshot:
            if not self._refresh_policy():
                return 0, _NO_RUN
            learnt = _NO_RUN
        pubs = 0
        if not denied:
            if len(buf) == 4 and _ACK_FIRST_BYTES[buf[0]] and buf[1] == 2:
                send(buf)  # one acknowledgement per read: the common QoS 1/2 case
                return 0, learnt
            pos, pubs, learnt = _allowed_run(buf, cache, reader.max_packet_size, learnt)
            if pos:
                if pos == len(buf):
                    send(buf)
                    return pubs, learnt
                send(buf[:pos])
                buf = buf[pos:]
        frames = reader.feed(buf)
        if frames:
            relay(reader.buffer, frames)
        return pubs, learnt

    def _relay_client(self, buf: bytes, frames: list[tuple[int, int, int, int]]) -> None:
        policy = self._policy
        assert policy is not None
        if self.store.current is not policy.snapshot and not self._refresh_policy():
            return
        send = self._send_upstream
        stats = self.stats
        level = self._level
        wcache = self._wcache
        fast = level != PROTOCOL_5  # no properties, so no topic alias to look for
        run = -1  # start offset of the current run of frames forwarded unchanged
        for first_byte, start, body_start, end in frames:
            ptype = first_byte >> 4
            if ptype == _PUBLISH:
                if fast and end - body_start >= 2:
                    # Hot path: a topic already judged allowed, read straight off the wire.
                    tend = body_start + 2 + ((buf[body_start] << 8) | buf[body_start + 1])
                    if tend <= end and wcache.get(buf[body_start + 2 : tend]):
                        stats.pub_in_allowed += 1
                        if run < 0:
                            run = start
                        continue
                peek = peek_publish(buf, body_start, end, first_byte, level)
                topic = peek.topic
                rewrite = False
                if peek.topic_alias is not None:
                    topic, rewrite = self._resolve_alias(self._c2b_alias, peek.topic_alias, topic)
                allowed = wcache.get(topic)
                if allowed is None:
                    allowed = self._may_write(topic)
                if allowed:
                    stats.pub_in_allowed += 1
                    if peek.qos == 2 and self._denied_in_qos2:
                        # A 5.0 flow ends at our PUBREC 0x87, so the client may reuse the id
                        # at once: its next PUBREL belongs to the broker again.
                        self._denied_in_qos2.discard(peek.packet_id)  # type: ignore[arg-type]
                    if peek.topic_alias is not None:
                        alias = self._c2b_alias
                        assert alias is not None
                        alias.synced[peek.topic_alias] = True
                    if not rewrite:
                        if run < 0:
                            run = start
                        continue
                    if run >= 0:
                        send(buf[run:start])
                        run = -1
                    send(self._with_topic(first_byte, buf, body_start, end, topic))
                    continue
                # denied
                if run >= 0:
                    send(buf[run:start])
                    run = -1
                stats.pub_in_denied += 1
                if peek.topic_alias is not None and peek.topic:
                    alias = self._c2b_alias
                    assert alias is not None
                    alias.synced[peek.topic_alias] = False
                self._emit(Denial("publish", topic.decode("utf-8", "replace")))
                if self.settings.disconnect_on_denied_publish:
                    if level == PROTOCOL_5:
                        self._send_client(
                            Disconnect(reason_code=RC_NOT_AUTHORIZED, properties=[]).encode(level)
                        )
                    self._close("denied publish")
                    return
                code = RC_NOT_AUTHORIZED if level == PROTOCOL_5 else 0
                if peek.qos == 1:
                    assert peek.packet_id is not None
                    self._send_client(
                        Puback(packet_id=peek.packet_id, reason_code=code, properties=[]).encode(
                            level
                        )
                    )
                elif peek.qos == 2:
                    assert peek.packet_id is not None
                    if self._denied_in_qos2 is None:
                        self._denied_in_qos2 = set()
                    self._denied_in_qos2.add(peek.packet_id)
                    self._send_client(
                        Pubrec(packet_id=peek.packet_id, reason_code=code, properties=[]).encode(
                            level
                        )
                    )
            elif ptype in (_PUBACK, _PUBREC, _PUBCOMP, _UNSUBSCRIBE, _PINGREQ, _DISCONNECT):
                if run < 0:
                    run = start
            elif ptype == _PUBREL:
                if self._denied_in_qos2:
                    pid = int.from_bytes(buf[body_start : body_start + 2], "big")
                    if pid in self._denied_in_qos2:
                        if run >= 0:
                            send(buf[run:start])
                            run = -1
                        self._denied_in_qos2.discard(pid)
                        self._send_client(
                            Pubcomp(packet_id=pid, reason_code=0, properties=[]).encode(level)
                        )
                        continue
                if run < 0:
                    run = start
            elif ptype == _SUBSCRIBE:
                if run >= 0:
                    send(buf[run:start])
                    run = -1
                self._subscribe(first_byte, buf, start, body_start, end)
                if self.state is not State.RELAY:
                    return
            else:
                # CONNECT again, or a packet only a server sends, or AUTH after we refused
                # authentication methods at CONNECT.
                if run >= 0:
                    send(buf[run:start])
                self._client_protocol_error(RC_PROTOCOL_ERROR, f"unexpected packet type {ptype}")
                return
        if run >= 0:
            send(buf[run : frames[-1][3]])

    @staticmethod
    def _resolve_alias(alias_map: _Alias | None, alias: int, topic: bytes) -> tuple[bytes, bool]:
        """(real topic, whether the forwarded packet must carry the topic again)."""
        if alias_map is None:
            raise MQTTProtocolError(RC_PROTOCOL_ERROR, "topic alias below MQTT 5.0")
        if alias == 0 or (alias_map.maximum and alias > alias_map.maximum) or alias > 65535:
            raise MQTTProtocolError(RC_TOPIC_ALIAS_INVALID, "topic alias out of range")
        if topic:
            if not alias_map.maximum:
                raise MQTTProtocolError(RC_TOPIC_ALIAS_INVALID, "topic alias not allowed")
            alias_map.topics[alias] = topic
            return topic, False
        known = alias_map.topics.get(alias)
        if known is None:
            raise MQTTProtocolError(RC_PROTOCOL_ERROR, "unknown topic alias")
        return known, not alias_map.synced.get(alias, False)

    def _with_topic(
        self, first_byte: int, buf: bytes, body_start: int, end: int, topic: bytes
    ) -> bytes:
        packet = decode_packet(first_byte, buf[body_start:end], self._level)
        assert isinstance(packet, Publish)
        packet.topic = topic.decode("utf-8")
        return packet.encode(self._level)

    def _subscribe(
        self, first_byte: int, buf: bytes, start: int, body_start: int, end: int
    ) -> None:
        level = self._level
        packet = decode_packet(first_byte, buf[body_start:end], level)
        assert isinstance(packet, Subscribe)
        policy = self._policy
        assert policy is not None
        codes: list[int | None] = []
        kept = []
        fail = RC_NOT_AUTHORIZED if level == PROTOCOL_5 else RC_UNSPECIFIED
        for sub in packet.subscriptions:
            validate_topic_filter(sub.topic_filter)
            if policy.may_subscribe(sub.topic_filter):
                kept.append(sub)
                codes.append(None)
                self.stats.sub_allowed += 1
            else:
                codes.append(fail)
                self.stats.sub_denied += 1
                self._emit(Denial("subscribe", sub.topic_filter))
        pending = self._pending_subs
        if len(kept) == len(codes):
            if pending:
                pending.pop(packet.packet_id, None)
            self._send_upstream(buf[start:end])
        elif not kept:
            if pending:
                pending.pop(packet.packet_id, None)
            suback = Suback(
                packet_id=packet.packet_id, reason_codes=[c or fail for c in codes], properties=[]
            )
            self._send_client(suback.encode(level))
        else:
            packet.subscriptions = kept
            if pending is None:
                pending = self._pending_subs = {}
            pending[packet.packet_id] = codes
            self._send_upstream(packet.encode(level))

    # ------------------------------------------------------------------ broker -> client

    def _relay_upstream(self, buf: bytes, frames: list[tuple[int, int, int, int]]) -> None:
        policy = self._policy
        assert policy is not None
        if self.store.current is not policy.snapshot and not self._refresh_policy():
            return
        send = self._send_client
        stats = self.stats
        level = self._level
        rcache = self._rcache
        client_max = self._client_max
        fast = level != PROTOCOL_5
        run = -1
        for first_byte, start, body_start, end in frames:
            ptype = first_byte >> 4
            if ptype == _PUBLISH:
                if fast and end - body_start >= 2:
                    tend = body_start + 2 + ((buf[body_start] << 8) | buf[body_start + 1])
                    if tend <= end and rcache.get(buf[body_start + 2 : tend]):
                        stats.pub_out_allowed += 1
                        if run < 0:
                            run = start
                        continue
                peek = peek_publish(buf, body_start, end, first_byte, level)
                topic = peek.topic
                rewrite = False
                if peek.topic_alias is not None:
                    topic, rewrite = self._resolve_alias(self._b2c_alias, peek.topic_alias, topic)
                allowed = rcache.get(topic)
                if allowed is None:
                    allowed = self._may_read(topic)
                if allowed and (not client_max or end - start <= client_max):
                    stats.pub_out_allowed += 1
                    if peek.topic_alias is not None:
                        alias = self._b2c_alias
                        assert alias is not None
                        alias.synced[peek.topic_alias] = True
                    if not rewrite:
                        if run < 0:
                            run = start
                        continue
                    if run >= 0:
                        send(buf[run:start])
                        run = -1
                    send(self._with_topic(first_byte, buf, body_start, end, topic))
                    continue
                if run >= 0:
                    send(buf[run:start])
                    run = -1
                stats.pub_out_denied += 1
                if peek.topic_alias is not None and peek.topic:
                    alias = self._b2c_alias
                    assert alias is not None
                    alias.synced[peek.topic_alias] = False
                if not allowed:
                    self._emit(Denial("read", topic.decode("utf-8", "replace")))
                # Complete the QoS flow with the broker ourselves.
                if peek.qos == 1:
                    assert peek.packet_id is not None
                    self._send_upstream(
                        Puback(packet_id=peek.packet_id, reason_code=0, properties=[]).encode(level)
                    )
                elif peek.qos == 2:
                    assert peek.packet_id is not None
                    if self._denied_out_qos2 is None:
                        self._denied_out_qos2 = set()
                    self._denied_out_qos2.add(peek.packet_id)
                    self._send_upstream(
                        Pubrec(packet_id=peek.packet_id, reason_code=0, properties=[]).encode(level)
                    )
            elif ptype in (_PUBACK, _PUBREC, _PUBCOMP, _UNSUBACK, _PINGRESP, _DISCONNECT, _AUTH):
                if run < 0:
                    run = start
            elif ptype == _PUBREL:
                if self._denied_out_qos2:
                    pid = int.from_bytes(buf[body_start : body_start + 2], "big")
                    if pid in self._denied_out_qos2:
                        if run >= 0:
                            send(buf[run:start])
                            run = -1
                        self._denied_out_qos2.discard(pid)
                        self._send_upstream(
                            Pubcomp(packet_id=pid, reason_code=0, properties=[]).encode(level)
                        )
                        continue
                if run < 0:
                    run = start
            elif ptype == _SUBACK:
                if self._pending_subs:
                    pid = int.from_bytes(buf[body_start : body_start + 2], "big")
                    codes = self._pending_subs.pop(pid, None)
                    if codes is not None:
                        if run >= 0:
                            send(buf[run:start])
                            run = -1
                        send(self._merge_suback(first_byte, buf, body_start, end, codes))
                        continue
                if run < 0:
                    run = start
            else:
                if run >= 0:
                    send(buf[run:start])
                self._upstream_protocol_error(f"unexpected packet type {ptype} from broker")
                return
        if run >= 0:
            send(buf[run : frames[-1][3]])

    def _merge_suback(
        self, first_byte: int, buf: bytes, body_start: int, end: int, codes: list[int | None]
    ) -> bytes:
        """Put our failure codes back at the positions of the filters we removed."""
        suback = decode_packet(first_byte, buf[body_start:end], self._level)
        assert isinstance(suback, Suback)
        theirs = iter(suback.reason_codes)
        merged = [c if c is not None else next(theirs, RC_UNSPECIFIED) for c in codes]
        suback.reason_codes = merged
        return suback.encode(self._level)
