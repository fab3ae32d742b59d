"""Certificate and users rotation without restarts, the way Kubernetes delivers it.

The kubelet updates a projected volume atomically: the files live in a timestamped
directory, ``..data`` is a symlink to it, and every visible name (``config.yaml``, ``tls``,
``users``) is a symlink through ``..data``. An update writes a new timestamped directory and
renames a new ``..data`` symlink over the old one. This module builds exactly that layout
from the example overlay and rotates the users file and the certificate in it, while one
mqttgate process keeps running. Needs the proxy (mqttgate serve).
"""

from __future__ import annotations

import os
import signal
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import paho.mqtt.client as mqtt
import pytest
import trustme
import yaml
from argon2 import PasswordHasher

from tests.support.tls import served_certificate

from .manifests import one, projected_files, render
from .pod import (
    EXAMPLE,
    EXAMPLE_PASSWORD,
    EXAMPLE_USER,
    SHIPPED_METRICS_BIND,
    SHIPPED_MQTTS_BIND,
    SHIPPED_UPSTREAM,
    pod_files,
)
from .procs import free_port, mqttgate, tail, wait_for_http

pytestmark = pytest.mark.integration

MOUNT = PurePosixPath("/etc/mqttgate")
# The users file is polled once a second and debounced over two polls; the kubelet itself
# takes up to a minute, which is not what is measured here.
RELOAD_WAIT = 10.0


class ProjectedVolume:
    """A directory updated the way the kubelet's atomic writer does it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def write(self, files: dict[str, bytes]) -> None:
        self.generation += 1
        stamp = f"..2026_11_27_00_00_{self.generation:02d}.{uuid.uuid4().hex[:6]}"
        target = self.root / stamp
        for relative, content in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        tmp_link = self.root / "..data_tmp"
        tmp_link.symlink_to(stamp)
        tmp_link.replace(self.root / "..data")  # rename(2): the atomic switch
        for top in {PurePosixPath(relative).parts[0] for relative in files}:
            visible = self.root / top
            if not visible.is_symlink():
                visible.symlink_to(f"..data/{top}")
        if old:
            for path in sorted((self.root / old).rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            (self.root / old).rmdir()


@dataclass
class RunningPod:
    volume: ProjectedVolume
    files: dict[str, bytes]
    mqtts_port: int
    process: object


def _volume_files(tmp_path: Path, rewrites: dict[str, str]) -> dict[str, bytes]:
    """The mqttgate container's files under /etc/mqttgate, relative to it."""
    staged = pod_files(tmp_path / "staged", rewrites)
    workload = one(render(EXAMPLE), "Deployment", "mqttgate")
    files: dict[str, bytes] = {}
    for in_container in projected_files(workload, "mqttgate"):
        relative = in_container.relative_to(MOUNT)
        files[str(relative)] = (staged.root / in_container.relative_to("/")).read_bytes()
    return files


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPod]:
    tmp_path = tmp_path_factory.mktemp("rotation")
    mqtts, metrics = free_port(), free_port()
    files = _volume_files(
        tmp_path,
        {
            SHIPPED_MQTTS_BIND: f'"127.0.0.1:{mqtts}"',
            SHIPPED_METRICS_BIND: f'"127.0.0.1:{metrics}"',
            SHIPPED_UPSTREAM: '"embedded"',
        },
    )
    root = tmp_path / "etc-mqttgate"
    root.mkdir()
    volume = ProjectedVolume(root)
    volume.write(files)
    log = tmp_path / "mqttgate.log"
    with mqttgate(root / "config.yaml", log) as process:
        try:
            wait_for_http(f"http://127.0.0.1:{metrics}/readyz", process)
            yield RunningPod(volume, files, mqtts, process)
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- mqttgate log ---\n{tail(log)}") from None
        assert process.poll() is None, "mqttgate restarted or died during rotation"


def _connack(port: int, username: str, password: str) -> object:
    """CONNACK reason for a TLS client (certificate not verified: only auth is measured)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rot-{uuid.uuid4().hex[:6]}")
    client.tls_set(cert_reqs=ssl.CERT_NONE)
    client.tls_insecure_set(True)
    client.username_pw_set(username, password)
    result: list[object] = []
    done = threading.Event()

    def on_connect(*args: object) -> None:
        result.append(args[3])
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *args: done.set()
    try:
        client.connect("127.0.0.1", port, keepalive=30)
        client.loop_start()
        assert done.wait(10), "no answer to CONNECT"
        return result[0] if result else "disconnected"
    finally:
        client.disconnect()
        client.loop_stop()


def _wait_until(condition: object, timeout: float = RELOAD_WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.25)
    return False


def test_users_secret_update_takes_effect_without_restart(running: RunningPod) -> None:
    assert _connack(running.mqtts_port, EXAMPLE_USER, EXAMPLE_PASSWORD) == 0
    users = yaml.safe_load(running.files["users/users.yaml"])
    users["users"][EXAMPLE_USER]["password"] = PasswordHasher().hash("rotated-password")
    running.files["users/users.yaml"] = yaml.safe_dump(users).encode()
    running.volume.write(running.files)
    assert _wait_until(
        lambda: _connack(running.mqtts_port, EXAMPLE_USER, "rotated-password") == 0
    ), "the new users file was not picked up"
    assert _connack(running.mqtts_port, EXAMPLE_USER, EXAMPLE_PASSWORD) != 0


def _new_certificate() -> dict[str, bytes]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    return {
        "tls/tls.crt": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
        "tls/tls.key": leaf.private_key_pem.bytes(),
        "tls/ca.crt": ca.cert_pem.bytes(),
    }


def _der(pem: bytes) -> bytes:
    first = pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    return ssl.PEM_cert_to_DER_cert(first.decode())


def test_certificate_renewal_is_served_after_sighup(running: RunningPod) -> None:
    """design.md: SIGHUP reloads the TLS files; new handshakes get the new certificate."""
    assert served_certificate(running.mqtts_port) == _der(running.files["tls/tls.crt"])
    running.files.update(_new_certificate())
    running.volume.write(running.files)
    os.kill(running.process.pid, signal.SIGHUP)  # type: ignore[attr-defined]
    expected = _der(running.files["tls/tls.crt"])
    assert _wait_until(lambda: served_certificate(running.mqtts_port) == expected)


@pytest.mark.slow
def test_certificate_renewal_is_served_without_a_signal(running: RunningPod) -> None:
    """What cert-manager rotation needs without a restart or a signal: a watch on TLS files."""
    running.files.update(_new_certificate())
    running.volume.write(running.files)
    expected = _der(running.files["tls/tls.crt"])
    assert _wait_until(lambda: served_certificate(running.mqtts_port) == expected)
