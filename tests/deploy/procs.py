"""Real processes for the deployment tests: Mosquitto on loopback and mqttgate itself.

Every process is started by a context manager that kills it on exit, so a failing
assertion never leaves a broker or proxy behind holding a port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# free_port is re-exported: the deployment tests import it from here.
from tests.support.processes import free_port as free_port
from tests.support.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], status: int = 200, timeout: float = 15.0
) -> str:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mqttgate exited with {process.returncode}: see its output")
        try:
            code, body = http_get(url, timeout=1.0)
            if code == status:
                return body
            last = (code, body)
        except OSError as error:
            last = error
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last!r})")


@contextlib.contextmanager
def mosquitto(directory: Path, config_text: str) -> Iterator[subprocess.Popen[bytes]]:
    """Mosquitto with ``config_text`` as its whole configuration."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed")
    conf = directory / "mosquitto.conf"
    conf.write_text(config_text, encoding="utf-8")
    log = (directory / "mosquitto.log").open("wb")
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process)
        log.close()


@contextlib.contextmanager
def mqttgate(config: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m mqttgate.proxy.cli serve --config FILE`` from the repository's venv."""
    env = dict(os.environ)
    env.pop("MQTTGATE_USE_MUTUAL_TLS", None)
    env["MQTTGATE_CONFIG"] = str(config)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mqttgate.proxy.cli", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(config.parent),
        env=env,
    )
    try:
        yield process
    finally:
        stop_process(process)
        log.close()


def tail(path: Path, limit: int = 3000) -> str:
    """The end of a process log, for assertion messages."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return "<no log>"
