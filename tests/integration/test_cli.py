"""The ``mqttgate`` command as users run it: a subprocess, signals, printed output."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .clients import Paho
from .conftest import Certs, UsersFile, free_port, write_config

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "mqttgate.proxy.cli"]


def run_cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert re.fullmatch(r"mqttgate \d+\.\d+\.\d+.*\n", result.stdout)


def test_passwd_prints_a_hash() -> None:
    result = run_cli("passwd", "alice", stdin="s3cret\n")
    assert result.returncode == 0
    assert result.stdout.startswith("$argon2id$") and result.stdout.count("\n") == 1


def test_check_config_ok(tmp_path: Path, certs: Certs, users_file: UsersFile) -> None:
    path = write_config(tmp_path, certs=certs, users=users_file, upstream="127.0.0.1:1883")
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_config_reports_config_and_users_problems(
    tmp_path: Path, certs: Certs, users_file: UsersFile
) -> None:
    path = write_config(tmp_path, certs=certs, users=users_file, upstream="127.0.0.1:1883")
    text = path.read_text().replace("connect_timeout: 2\n", "connect_timeout: -1\n", 1)
    path.write_text(text)
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 1
    assert re.search(r"config-\d+\.yaml:\d+: upstream\.connect_timeout: ", result.stdout), (
        result.stdout
    )
    # users-file problems are reported too (once the config itself is valid)
    path.write_text(text.replace("connect_timeout: -1\n", "connect_timeout: 2\n", 1))
    users_file.path.write_text("users:\n  alice:\n    grant_type: magic\n")
    result = run_cli("check-config", "--config", str(path))
    assert result.returncode == 1
    assert re.search(r"users\.yaml:3: .*grant_type", result.stdout), result.stdout


def test_config_from_environment(tmp_path: Path, certs: Certs, users_file: UsersFile) -> None:
    path = write_config(tmp_path, certs=certs, users=users_file, upstream="127.0.0.1:1883")
    result = run_cli("check-config", env={"MQTTGATE_CONFIG": str(path)})
    assert result.returncode == 0, result.stdout + result.stderr


class Served:
    """``mqttgate serve`` as a subprocess; a thread collects its output lines."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output)
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} not seen; output so far:\n{self.output}")
            try:
                self.output += self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise AssertionError(
                        f"exited with {self.proc.returncode}:\n{self.output}"
                    ) from None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture
def served() -> Iterator[list[Served]]:
    procs: list[Served] = []
    yield procs
    for p in procs:
        p.stop()


def test_quickstart_prints_working_commands(tmp_path: Path, served: list[Served]) -> None:
    port = free_port()
    proc = Served(["serve", "--state-dir", str(tmp_path / "qs"), "--port", str(port)])
    served.append(proc)
    proc.wait_for(r"Stop with Ctrl-C")
    sub = re.search(
        r"mosquitto_sub -h (\S+) -p (\d+) --cafile (\S+) -u (\S+) -P '([^']+)' -t 'demo/#'",
        proc.output,
    )
    assert sub, proc.output
    host, printed_port, cafile, user, password = sub.groups()
    assert (host, int(printed_port)) == ("127.0.0.1", port)
    assert re.search(
        rf"mosquitto_pub -h 127.0.0.1 -p {port} --cafile \S+ -u {user} -P '{re.escape(password)}'",
        proc.output,
    )
    assert "paho" in proc.output and f'c.connect("127.0.0.1", {port})' in proc.output
    import ssl

    ctx = ssl.create_default_context(cafile=cafile)
    subscriber = Paho(port, ctx, username=user, password=password, client_id="qs-sub")
    publisher = Paho(port, ctx, username=user, password=password, client_id="qs-pub")
    try:
        assert subscriber.connect() == 0
        assert subscriber.subscribe("demo/#") == [1]
        assert publisher.connect() == 0
        publisher.publish("demo/hello", b"hello")
        assert subscriber.expect().payload == b"hello"
        assert publisher.subscribe("elsewhere/#") == [
            0x80
        ]  # permissions apply in the quickstart too
    finally:
        subscriber.close()
        publisher.close()
    assert proc.stop() == 0


def test_serve_with_config_reloads_on_sighup_and_stops_on_sigterm(
    tmp_path: Path, certs: Certs, users_file: UsersFile, served: list[Served]
) -> None:
    port = free_port()
    path = write_config(tmp_path, certs=certs, users=users_file, upstream="embedded")
    path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    proc = Served(["serve", "--config", str(path)])
    served.append(proc)
    proc.wait_for(r"ready")
    bob = Paho(port, certs.client_context(), username="bob", password="bob-pw")
    try:
        assert bob.connect() == 0
        assert bob.subscribe("factory/line1/#") == [0x80]
        data = dict(users_file.data)
        data["users"]["bob"]["permissions"].append({"topic": "factory/line1/#", "access": "read"})
        users_file.write(data)
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for(r"reload: policy ok")
        assert bob.subscribe("factory/line1/#") == [1]
    finally:
        bob.close()
    started = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - started < 5


def test_serve_exposes_metrics_and_watches_the_users_file(
    tmp_path: Path, certs: Certs, users_file: UsersFile, served: list[Served]
) -> None:
    import json
    import urllib.request

    import yaml

    port, metrics_port = free_port(), free_port()
    path = write_config(tmp_path, certs=certs, users=users_file, upstream="embedded")
    config = yaml.safe_load(path.read_text())
    config["listeners"][0]["bind"] = f"127.0.0.1:{port}"
    config["metrics"] = {"bind": f"127.0.0.1:{metrics_port}"}
    config["policy"]["reload"] = "watch"
    config["log"]["format"] = "json"
    path.write_text(yaml.safe_dump(config))
    proc = Served(["serve", "--config", str(path)])
    served.append(proc)
    proc.wait_for(r"ready: mqtts=")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5) as response:
        assert response.status == 200 and json.loads(response.read())["ready"] is True
    bob = Paho(port, certs.client_context(), username="bob", password="bob-pw")
    try:
        assert bob.connect() == 0
        assert bob.subscribe("factory/line1/#") == [0x80]
        data = dict(users_file.data)
        data["users"]["bob"]["permissions"].append({"topic": "factory/line1/#", "access": "read"})
        users_file.write(data)  # replaced by rename, as Kubernetes does
        deadline = time.monotonic() + 10
        while bob.subscribe("factory/line1/#") != [1]:
            assert time.monotonic() < deadline, "users file change not picked up"
            time.sleep(0.3)
    finally:
        bob.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'mqttgate_connections_total{listener="mqtts"}' in text
    assert 'mqttgate_auth_total{method="password",result="success"} 1.0' in text
    assert 'mqttgate_policy_reloads_total{result="success"}' in text
    assert proc.stop() == 0


def test_serve_with_a_broken_users_file_exits_with_the_problem(
    tmp_path: Path, certs: Certs, users_file: UsersFile
) -> None:
    path = write_config(tmp_path, certs=certs, users=users_file, upstream="127.0.0.1:1883")
    users_file.path.write_text(
        "users:\n  alice:\n    grant_type: password\n    password: plain-text\n"
    )
    result = subprocess.run(
        [*CLI, "serve", "--config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "users.yaml:4" in result.stderr and "Traceback" not in result.stderr
