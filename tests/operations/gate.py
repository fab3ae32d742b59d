"""``mqttgate serve`` as a subprocess, its log, and typed scrapes of its ``/metrics``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Certs, UsersFile, free_port, write_config

CLI = [sys.executable, "-m", "mqttgate.proxy.cli"]
TIMEOUT = 10.0

#: A sample: metric name and its sorted label pairs.
Key = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> Key:
    return name, tuple(sorted(labels.items()))


def gate_config(
    folder: Path,
    certs: Certs,
    users: UsersFile,
    *,
    upstream: str,
    mutual_tls: bool = False,
    port: int = 0,
    **overrides: Any,
) -> Path:
    """The integration suite's config, with a fixed metrics port, JSON logs and overrides;
    the listener ``mqtts`` binds ``port`` (0: any, announced in the ``ready`` log line)."""
    path = write_config(folder, certs=certs, users=users, upstream=upstream, mutual_tls=mutual_tls)
    config = yaml.safe_load(path.read_text())
    config["listeners"][0]["bind"] = f"127.0.0.1:{port}"
    config["metrics"] = {"bind": f"127.0.0.1:{free_port()}"}
    config["log"] = {"level": "debug", "format": "json"}
    for name, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **value}
        else:
            config[name] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_until(condition: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


class Samples(dict[Key, float]):
    """One scrape of ``/metrics``: every sample by name and labels."""

    @classmethod
    def parse(cls, text: str) -> Samples:
        samples = cls()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[key(s.name, **s.labels)] = s.value
        return samples

    def value(self, name: str, **labels: str) -> float:
        return self.get(key(name, **labels), 0.0)


def counter_deltas(before: Samples, after: Samples, *, ignore: tuple[str, ...] = ()) -> dict:
    """Every ``mqttgate_`` sample that moved, but ``_created`` timestamps and ``ignore``d names."""
    changed = {}
    for k in before.keys() | after.keys():
        name = k[0]
        if not name.startswith("mqttgate_") or name.endswith("_created") or name in ignore:
            continue
        delta = after.get(k, 0.0) - before.get(k, 0.0)
        if delta:
            changed[k] = delta
    return changed


class Gate:
    """The proxy process. Output goes to a file (a pipe nobody reads could block it)."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config
        self.config = yaml.safe_load(config.read_text())
        self.metrics_port = int(self.config["metrics"]["bind"].rsplit(":", 1)[1])
        self.log_path = log_path
        self._log = log_path.open("wb")
        full_env = {**os.environ, **(env or {})}
        full_env.pop("MQTTGATE_USE_MUTUAL_TLS", None)
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        self.port = 0

    # -- output

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Every output line as JSON (the log format is json): fails on any other line."""
        records = []
        for line in self.output().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
        return records

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == event]

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        def seen() -> re.Match[str] | None:
            if self.proc.poll() is not None:
                found = re.search(pattern, self.output())
                if found:
                    return found
                raise AssertionError(f"exited with {self.proc.returncode}:\n{self.output()}")
            return re.search(pattern, self.output())

        return wait_until(seen, timeout, f"{pattern!r} in the output")  # type: ignore[no-any-return]

    def wait_ready(self) -> None:
        """Until the listeners are bound (the ``ready`` line names their ports) and the
        operations endpoint answers."""
        found = self.wait_for(r"ready(?: \(worker \d+\))?: mqtts=(\d+)")
        self.port = int(found.group(1))
        wait_until(lambda: self._answers("/healthz"), what="/healthz")

    def wait_until_serving(self) -> None:
        """Until the operations endpoint answers (the listeners may still be starting)."""

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}:\n{self.output()}")
            return self._answers("/healthz")

        wait_until(answers, what="/healthz")

    # -- the operations endpoint

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def _answers(self, path: str) -> bool:
        try:
            return self.get(path)[0] == 200
        except OSError:
            return False

    def scrape(self) -> Samples:
        status, text = self.get("/metrics")
        assert status == 200, text
        return Samples.parse(text)

    def settled(self, timeout: float = TIMEOUT) -> Samples:
        """A scrape taken once no client connection is open: closing a connection flushes
        its counts, so every counter is final then (no sleeping for the 1 s flush)."""
        return wait_until(  # type: ignore[no-any-return]
            lambda: (s := self.scrape()).value("mqttgate_connections_active") == 0 and s,
            timeout,
            "connections_active == 0",
        )

    # -- lifecycle

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode
