"""Test clients: paho-mqtt 2.x over TLS, and a raw TLS socket speaking bytes."""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from mqttgate.codec import FrameReader, MQTTProtocolError, decode_packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

V31, V311, V5 = mqtt.MQTTv31, mqtt.MQTTv311, mqtt.MQTTv5
TIMEOUT = 5.0


class Paho:
    """A paho client with blocking helpers; every wait is bounded."""

    def __init__(
        self,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        username: str | None = None,
        password: str | None = None,
        version: int = V311,
        client_id: str = "",
        clean: bool = True,
        will: tuple[str, bytes] | None = None,
        session_expiry: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": version}
        if version != V5:
            kwargs["clean_session"] = clean
        self.version = version
        self.clean = clean
        self.session_expiry = session_expiry
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.client.tls_set_context(ssl_context)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1)
        self.port = port
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: Any = None
        self.connack_properties: Any = None
        self.session_present: bool | None = None
        self.disconnect_reason: Any = None
        self.subacks: dict[int, list[Any]] = {}
        self._suback_event = threading.Condition()
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = lambda _c, _u, msg: self.messages.put(msg)
        c.on_subscribe = self._on_subscribe

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connack = reason
        self.connack_properties = props
        self.session_present = flags.session_present
        self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[Any], _props: Any) -> None:
        with self._suback_event:
            self.subacks[mid] = codes
            self._suback_event.notify_all()

    def connect(self, timeout: float = TIMEOUT) -> int:
        """Connect and return the CONNACK reason code value (paho maps 3.x codes to 5.0)."""
        props = None
        clean_start: Any = mqtt.MQTT_CLEAN_START_FIRST_ONLY
        if self.version == V5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            clean_start = self.clean
        self.client.connect(
            "127.0.0.1", self.port, keepalive=30, clean_start=clean_start, properties=props
        )
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise TimeoutError("no CONNACK")
        return int(self.connack.value)

    def subscribe(self, *topics: str, qos: int = 1, timeout: float = TIMEOUT) -> list[int]:
        result, mid = self.client.subscribe([(t, qos) for t in topics])
        assert result == mqtt.MQTT_ERR_SUCCESS
        with self._suback_event:
            if not self._suback_event.wait_for(lambda: mid in self.subacks, timeout):
                raise TimeoutError("no SUBACK")
            return [int(c.value) for c in self.subacks[mid]]

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Any:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(TIMEOUT)
            assert info.is_published(), f"publish to {topic} not acknowledged"
        return info

    def expect(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def expect_none(self, timeout: float = 0.5) -> None:
        with contextlib.suppress(queue.Empty):
            msg = self.messages.get(timeout=timeout)
            raise AssertionError(f"unexpected message on {msg.topic}: {msg.payload!r}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.connected.is_set() and not self.disconnected.is_set():
                self.client.disconnect()
                self.disconnected.wait(2)
        self.client.loop_stop()


class RawClient:
    """A TLS socket that sends exact bytes and reads whole MQTT packets back."""

    def __init__(
        self,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        level: int = 4,
        timeout: float = TIMEOUT,
        prefix: bytes = b"",
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if prefix:
            raw.sendall(prefix)
        self.sock = ssl_context.wrap_socket(raw, server_hostname="localhost")
        self.sock.settimeout(timeout)
        self.reader = FrameReader(protocol_level=level)
        self.level = level
        self._pending: list[Any] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_packet(self, timeout: float = TIMEOUT) -> Any:
        """The next packet, or None at EOF (connection closed)."""
        deadline = time.monotonic() + timeout
        while not self._pending:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
                return None
            if not data:
                return None
            for fb, _s, bs, end in self.reader.feed(data):
                self._pending.append(decode_packet(fb, self.reader.buffer[bs:end], self.level))
        return self._pending.pop(0)

    def read_until_closed(self, timeout: float = TIMEOUT) -> list[Any]:
        """Every packet until the server closes; TimeoutError if it does not."""
        packets = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"connection still open; got {packets}")
            try:
                packet = self.read_packet(remaining)
            except TimeoutError:
                raise TimeoutError(f"connection still open; got {packets}") from None
            except MQTTProtocolError:
                return packets
            if packet is None:
                return packets
            packets.append(packet)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
