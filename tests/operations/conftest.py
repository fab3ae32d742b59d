"""Fixtures for the operations tests: the integration suite's broker, PKI and users file,
plus ``gate``: the real ``mqttgate serve`` process with its operations endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import conftest as integration
from tests.integration.conftest import Certs, UsersFile

from .gate import Gate, gate_config

# The shared fixtures, reused (not copied) so both suites start the same broker and PKI.
mosquitto = integration.mosquitto
tls_ca = integration.tls_ca
certs = integration.certs
password_hashes = integration.password_hashes
users_file = integration.users_file
running_proxy = integration.running_proxy


@pytest.fixture
def gate(tmp_path: Path, certs: Certs, users_file: UsersFile) -> Iterator[Callable[..., Gate]]:
    """``gate(upstream=..., **overrides)`` -> a started :class:`Gate`, stopped at teardown.

    ``overrides`` are top-level config keys merged over the integration suite's config
    (nested mappings are merged one level deep). Teardown fails the test if the process
    printed a traceback.
    """
    started: list[Gate] = []

    def start(*, upstream: str, wait_ready: bool = True, **overrides: Any) -> Gate:
        for attempt in range(3):
            path = gate_config(tmp_path, certs, users_file, upstream=upstream, **overrides)
            g = Gate(path, tmp_path / f"mqttgate-{len(started)}.log")
            try:
                if wait_ready:
                    g.wait_ready()
                else:
                    g.wait_until_serving()
            except AssertionError:
                # a free port picked for the metrics endpoint (or the listener) was taken
                # by another process in between: try again with new ports
                g.stop()
                if attempt == 2 or "already in use" not in g.output():
                    started.append(g)
                    raise
                continue
            started.append(g)
            return g
        raise AssertionError("unreachable")

    yield start
    for g in started:
        g.stop()
    for g in started:
        assert "Traceback" not in g.output(), g.output()
