"""The sidecar pod, simulated on loopback: Mosquitto from the base's ConfigMap, mqttgate
with the base's config.yaml and the example overlay's Secrets, laid out like the pod.

It follows the pod's start-up order (mqttgate first, the broker after it) and checks what
deploy/README.md promises: /healthz passes at once, /readyz only once the broker accepts
connections; clients get in only through mqttgate, over TLS, with a password; the message
reaches a subscriber on the broker itself. Needs the proxy (mqttgate serve).
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from .manifests import KUBERNETES, config_map_data, render
from .pod import (
    EXAMPLE_PASSWORD,
    EXAMPLE_USER,
    SHIPPED_METRICS_BIND,
    SHIPPED_MQTTS_BIND,
    SHIPPED_UPSTREAM,
    PodFiles,
    pod_files,
)
from .procs import free_port, http_get, mosquitto, mqttgate, tail, wait_for_http, wait_for_port

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


@dataclass
class Pod:
    files: PodFiles
    mqtts_port: int
    metrics_port: int
    broker_port: int
    log: Path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"


def _broker_config(port: int) -> str:
    """The base's mosquitto.conf with only the listener port changed."""
    text = config_map_data(render(KUBERNETES / "base"), "mosquitto-config")["mosquitto.conf"]
    shipped = "listener 1883 127.0.0.1"
    assert text.count(shipped) == 1
    return text.replace(shipped, f"listener {port} 127.0.0.1")


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """One pod for the module's tests: they only add clients, never change the pod."""
    tmp_path = tmp_path_factory.mktemp("sidecar")
    mqtts, metrics, broker = free_port(), free_port(), free_port()
    files = pod_files(
        tmp_path / "pod",
        {
            SHIPPED_MQTTS_BIND: f'"127.0.0.1:{mqtts}"',
            SHIPPED_METRICS_BIND: f'"127.0.0.1:{metrics}"',
            SHIPPED_UPSTREAM: f'"127.0.0.1:{broker}"',
        },
    )
    log = tmp_path / "mqttgate.log"
    state = Pod(files, mqtts, metrics, broker, log)
    # Native sidecar order: mqttgate first; the broker only after its startupProbe passes.
    with mqttgate(files.config, log) as gate:
        try:
            wait_for_http(f"{state.metrics_url}/healthz", gate)
            status, body = http_get(f"{state.metrics_url}/readyz")
            assert status == 503, f"/readyz without a broker: {status} {body}"
            with mosquitto(tmp_path, _broker_config(broker)) as broker_process:
                wait_for_port(broker, broker_process)
                wait_for_http(f"{state.metrics_url}/readyz", gate)
                yield state
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- mqttgate log ---\n{tail(log)}") from None


class Client:
    """A paho client that turns its callbacks into waitable results."""

    def __init__(self, protocol: int = mqtt.MQTTv311) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
        )
        self.connected = threading.Event()
        self.reason: object = None
        self.messages: list[tuple[str, bytes]] = []
        self.arrived = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.disconnected = threading.Event()
        self.client.on_disconnect = lambda *args: self.disconnected.set()

    def _on_connect(self, client: object, userdata: object, flags: object, reason: object,
                    properties: object = None) -> None:  # fmt: skip
        self.reason = reason
        self.connected.set()

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.messages.append((message.topic, message.payload))
        self.arrived.set()

    def connect(self, port: int, timeout: float = TIMEOUT) -> object:
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(timeout), "no CONNACK"
        return self.reason

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _tls_client(pod: Pod, password: str) -> Client:
    c = Client()
    c.client.tls_set(ca_certs=str(pod.files.ca_file), cert_reqs=ssl.CERT_REQUIRED)
    c.client.username_pw_set(EXAMPLE_USER, password)
    return c


def _sample(metrics_text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_check_config_accepts_the_pod_files(tmp_path: Path) -> None:
    """The shipped config.yaml and example users file, unchanged, pass check-config."""
    files = pod_files(tmp_path, {})
    result = subprocess.run(
        [sys.executable, "-m", "mqttgate.proxy.cli", "check-config", "--config",
         str(files.config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_client_reaches_broker_only_through_mqttgate(pod: Pod) -> None:
    watcher = Client()  # straight onto the broker, as only a process in the pod can
    assert watcher.connect(pod.broker_port) == 0
    watcher.client.subscribe("#", qos=1)
    assert watcher.subscribed.wait(TIMEOUT)

    device = _tls_client(pod, EXAMPLE_PASSWORD)
    try:
        assert device.connect(pod.mqtts_port) == 0, "the example user must get in"
        info = device.client.publish("demo/hello", b"through the gate", qos=1)
        info.wait_for_publish(TIMEOUT)
        assert watcher.arrived.wait(TIMEOUT), "the message never reached the broker"
        assert ("demo/hello", b"through the gate") in watcher.messages
        # Not in the example user's permissions: acknowledged, never forwarded.
        device.client.publish("factory/secret", b"nope", qos=1).wait_for_publish(TIMEOUT)
        device.client.publish("demo/after", b"fence", qos=1).wait_for_publish(TIMEOUT)
        watcher.arrived.clear()
        while not any(topic == "demo/after" for topic, _ in watcher.messages):
            assert watcher.arrived.wait(TIMEOUT), "the fence message never arrived"
            watcher.arrived.clear()
        assert all(topic != "factory/secret" for topic, _ in watcher.messages)
    finally:
        device.close()
        watcher.close()

    intruder = _tls_client(pod, "not-the-password")
    try:
        reason = intruder.connect(pod.mqtts_port)
        assert reason != 0, "a wrong password must be refused"
    finally:
        intruder.close()

    status, metrics = http_get(f"{pod.metrics_url}/metrics")
    assert status == 200
    assert _sample(metrics, "mqttgate_auth_total", method="password", result="success") >= 1
    assert _sample(metrics, "mqttgate_auth_total", result="bad_credentials") >= 1
    assert _sample(metrics, "mqttgate_publish_total", direction="in", decision="allowed") >= 2
    assert _sample(metrics, "mqttgate_publish_total", direction="in", decision="denied") >= 1


def test_plain_mqtt_to_the_proxy_port_gets_no_connack(pod: Pod) -> None:
    # CONNECT, MQTT 3.1.1, clean session, keep-alive 30, client id "plain", no TLS.
    connect = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 5]) + b"plain"
    with socket.create_connection(("127.0.0.1", pod.mqtts_port), timeout=TIMEOUT) as s:
        s.sendall(connect)
        try:
            answer = s.recv(64)
        except (ConnectionResetError, TimeoutError, OSError):
            answer = b""
    assert not answer.startswith(b"\x20"), "a clear-text client got a CONNACK"

    plain = Client()  # paho without TLS: the proxy hangs up, no CONNACK ever comes back
    try:
        plain.client.connect("127.0.0.1", pod.mqtts_port, keepalive=30)
        plain.client.loop_start()
        assert plain.disconnected.wait(TIMEOUT), "the proxy kept a clear-text client open"
        assert not plain.connected.is_set()
    finally:
        plain.close()
