"""SIGTERM while QoS 1 messages stream through a real mqttgate process.

Kubernetes sends SIGTERM before it kills a pod. What the broker acknowledged must not be
lost by the proxy: every message whose PUBACK reached the publisher is either delivered to
the (persistent-session) subscriber before the shutdown or still queued for it in the broker,
where the subscriber finds it when it reconnects (here directly to Mosquitto, under the
namespaced client id the proxy gave its session).
"""

from __future__ import annotations

import queue
import signal
import socket
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from mqttgate.codec import Connack, Connect, Disconnect

from tests.integration.clients import V311, Paho, RawClient
from tests.integration.conftest import Broker, Certs

from .gate import Gate, wait_until

pytestmark = pytest.mark.integration

GRACE = 3.0
TOPIC = "factory/line1/stream"


class Streamer:
    """A paho publisher that keeps up to ``window`` QoS 1 messages in flight until its
    connection ends, and records which payloads the broker acknowledged."""

    def __init__(self, port: int, certs: Certs, window: int = 20, pace: float = 0.0) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="streamer")
        self.client.tls_set_context(certs.client_context())
        self.client.username_pw_set("root", "root-pw")
        self.client.max_inflight_messages_set(window)
        self.client.reconnect_delay_set(30, 30)  # no reconnect while the test runs
        self.window = window
        self.pace = pace
        self.port = port
        self._sent: dict[int, bytes] = {}  # mid -> payload
        self._acked: set[int] = set()  # mids whose PUBACK arrived
        # paho calls on_publish holding its own locks: never call publish() holding ours
        self._cond = threading.Condition()
        self.connected = threading.Event()
        self.gone = threading.Event()
        self.client.on_connect = lambda *_: self.connected.set()
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._thread = threading.Thread(target=self._stream, daemon=True)

    def _on_disconnect(self, *_: object) -> None:
        self.gone.set()
        with self._cond:
            self._cond.notify_all()

    def _on_publish(self, _c: object, _u: object, mid: int, _rc: object, _p: object) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def _stream(self) -> None:
        seq = 0
        while not self.gone.is_set() and seq < 60_000:  # mids must not wrap
            with self._cond:
                self._cond.wait_for(
                    lambda: len(self._sent) - len(self._acked) < self.window or self.gone.is_set(),
                    5,
                )
            if self.gone.is_set():
                return
            payload = b"%d" % seq
            info = self.client.publish(TOPIC, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return
            with self._cond:
                self._sent[info.mid] = payload
            seq += 1
            time.sleep(self.pace)

    @property
    def acked(self) -> set[bytes]:
        with self._cond:
            return {self._sent[mid] for mid in self._acked if mid in self._sent}

    def start(self) -> None:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(5), "publisher not connected"
        self._thread.start()

    def stop(self) -> None:
        self.gone.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(5)
        self.client.loop_stop()


def drain(broker: Broker, client_id: str, expected: set[bytes], seen: set[bytes]) -> set[bytes]:
    """Reconnect to the broker itself with the persistent session's id and collect what
    it still holds, until ``expected`` is covered or nothing more arrives for a while."""
    got: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_message = lambda _c, _u, msg: got.put(msg.payload)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    drained: set[bytes] = set()
    try:
        assert connected.wait(5), "could not reach the broker directly"
        while not expected <= seen | drained:
            try:
                drained.add(got.get(timeout=2))
            except queue.Empty:
                break
    finally:
        client.disconnect()
        client.loop_stop()
    return drained


def test_sigterm_loses_nothing_the_broker_acknowledged(
    gate: Callable[..., Gate], mosquitto: Broker, certs: Certs
) -> None:
    g = gate(upstream=mosquitto.address, shutdown_grace=GRACE)
    # the subscriber has a persistent session, so the broker queues for it while it is away
    sink = Paho(
        g.port,
        certs.client_context(),
        username="alice",
        password="alice-pw",
        version=V311,
        client_id="sink",
        clean=False,
    )
    # a 5.0 client, to see the goodbye, and a TCP client that never starts TLS
    v5 = RawClient(g.port, certs.client_context(), level=5)
    idle = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    streamer = Streamer(g.port, certs, pace=0.003)  # faster than the sink, within its queue
    try:
        assert sink.connect() == 0
        assert sink.subscribe(TOPIC, qos=1) == [1]
        # a slow consumer: the broker queues for it, so the shutdown catches a full queue
        sink.client.on_message = lambda _c, _u, msg: (time.sleep(0.01), sink.messages.put(msg))
        v5.send(
            Connect(protocol_level=5, client_id="v5", username="bob", password=b"bob-pw").encode(5)
        )
        assert isinstance(v5.read_packet(), Connack)
        streamer.start()
        wait_until(lambda: sink.messages.qsize() >= 100, what="the stream to flow")

        g.signal(signal.SIGTERM)
        started = time.monotonic()
        g.proc.wait(timeout=GRACE + 5)
        elapsed = time.monotonic() - started
        assert g.proc.returncode == 0, g.output()
        assert elapsed < GRACE, f"took {elapsed:.1f}s to exit"
        assert [(type(p), p.reason_code) for p in v5.read_until_closed()] == [(Disconnect, 0x8B)]
        assert streamer.gone.wait(5), "the publisher's connection outlived the proxy"
    finally:
        streamer.stop()
        sink.close()
        v5.close()
        idle.close()

    acked = set(streamer.acked)
    delivered = set()
    while not sink.messages.empty():
        delivered.add(sink.messages.get_nowait().payload)
    assert len(acked) >= 100
    queued = drain(mosquitto, "alice/sink", acked, delivered)
    lost = acked - delivered - queued
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {sorted(lost)[:5]}"
    assert "shutdown: " in g.output()
