"""Shared fixtures for end-to-end tests: a real Mosquitto, certificates, users files, and
the real proxy running on its own event loop thread.

Other suites (ops, benchmarks) reuse these; keep the names stable:
``mosquitto``, ``tls_ca``, ``certs``, ``users_file``, ``running_proxy``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mqttgate.policy import hash_password
from prometheus_client import CollectorRegistry

from tests.support.processes import free_port, stop_process

pytestmark = pytest.mark.integration

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def wait_for_port(
    port: int, timeout: float = 5.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in MOSQUITTO_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    pytest.fail(
        "mosquitto is not installed: the integration tests need a real broker "
        "(apt-get install -y mosquitto)",
        pytrace=False,
    )


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private Mosquitto on a free loopback port, anonymous, no persistence."""
    binary = mosquitto_binary()
    folder = tmp_path_factory.mktemp("mosquitto")
    for _attempt in range(3):
        port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 1000\n"
            "log_dest none\n"
        )
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(port, proc=proc)
        except RuntimeError:
            proc.wait(timeout=5)
            continue
        break
    else:
        pytest.fail("mosquitto did not start", pytrace=False)
    try:
        yield Broker("127.0.0.1", port, proc)
    finally:
        stop_process(proc)
        if proc.stderr is not None:
            proc.stderr.close()


# ----------------------------------------------------------------------------- certificates


@dataclass
class Certs:
    """PEM files of one test PKI, in one folder."""

    folder: Path
    ca: trustme.CA
    ca_file: Path
    server_cert: Path
    server_key: Path

    def client(self, name: str) -> tuple[Path, Path]:
        """(cert, key) of a client certificate whose subject CN is ``name``."""
        cert = self.ca.issue_cert(common_name=name)
        crt, key = self.folder / f"client-{name}.crt", self.folder / f"client-{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(crt))
        cert.private_key_pem.write_to_path(str(key))
        return crt, key

    def expired_client(self, name: str) -> tuple[Path, Path]:
        now = datetime.datetime.now(datetime.UTC)
        cert = self.ca.issue_cert(
            common_name=name,
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        )
        crt, key = self.folder / f"expired-{name}.crt", self.folder / f"expired-{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(crt))
        cert.private_key_pem.write_to_path(str(key))
        return crt, key

    def foreign_client(self, name: str) -> tuple[Path, Path]:
        """A self-signed certificate (another CA) with CN ``name``, made with cryptography."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        crt, kf = self.folder / f"foreign-{name}.crt", self.folder / f"foreign-{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kf.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return crt, kf

    def client_context(self, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if cert is not None:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        return ctx


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certs(tls_ca: trustme.CA, tmp_path: Path) -> Certs:
    folder = tmp_path / "pki"
    folder.mkdir()
    server = tls_ca.issue_cert("127.0.0.1", "localhost")
    server_cert, server_key = folder / "tls.crt", folder / "tls.key"
    server.cert_chain_pems[0].write_to_path(str(server_cert))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(server_cert), append=True)
    server.private_key_pem.write_to_path(str(server_key))
    ca_file = folder / "ca.crt"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    return Certs(folder, tls_ca, ca_file, server_cert, server_key)


# ----------------------------------------------------------------------------- users

#: Passwords of the standard test users (hashed once per session: argon2 is slow on purpose).
PASSWORDS = {
    "alice": "alice-pw",
    "bob": "bob-pw",
    "sys": "sys-pw",
    "root": "root-pw",
    "carol": "carol-pw",
}


@pytest.fixture(scope="session")
def password_hashes() -> dict[str, str]:
    return {name: hash_password(pw) for name, pw in PASSWORDS.items()}


def standard_users(hashes: dict[str, str]) -> dict[str, Any]:
    """The users every end-to-end test starts from; tests add or rewrite as they need."""
    return {
        "roles": {
            "line-reader": {"permissions": [{"topic": "factory/+/status", "access": "read"}]},
        },
        "users": {
            "alice": {
                "grant_type": "password",
                "password": hashes["alice"],
                "roles": ["line-reader"],
                "permissions": [
                    {"topic": "factory/line1/#", "access": "readWrite"},
                    {"topic": "users/${username}/#", "access": "readWrite"},
                    {"topic": "shared/#", "access": "readWrite"},
                ],
            },
            "bob": {
                "grant_type": "password",
                "password": hashes["bob"],
                "permissions": [
                    {"topic": "factory/line2/#", "access": "readWrite"},
                    {"topic": "shared/#", "access": "readWrite"},
                ],
            },
            "carol": {
                "grant_type": "password",
                "password": hashes["carol"],
                "permissions": [{"topic": "factory/line1/status", "access": "write"}],
            },
            "sys": {
                "grant_type": "password",
                "password": hashes["sys"],
                "permissions": [{"topic": "$SYS/#", "access": "read"}],
            },
            "root": {
                "grant_type": "password",
                "password": hashes["root"],
                "permissions": [{"topic": "#", "access": "readWrite"}],
            },
            "press-17": {
                "grant_type": "certificate",
                "permissions": [
                    {"topic": "machines/press-17/#", "access": "readWrite"},
                ],
            },
        },
    }


class UsersFile:
    """Writes the users file; ``write(data)`` replaces it atomically (rename)."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.write(data)

    def write(self, data: dict[str, Any] | None = None) -> None:
        if data is not None:
            self.data = data
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.data, sort_keys=False))
        tmp.replace(self.path)


@pytest.fixture
def users_file(tmp_path: Path, password_hashes: dict[str, str]) -> UsersFile:
    return UsersFile(tmp_path / "users.yaml", standard_users(password_hashes))


# ----------------------------------------------------------------------------- the proxy


def write_config(
    folder: Path,
    *,
    certs: Certs,
    users: UsersFile,
    upstream: str,
    mutual_tls: bool = False,
    enforcement: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    proxy_protocol: bool = False,
    extra_listeners: list[dict[str, Any]] | None = None,
) -> Path:
    config: dict[str, Any] = {
        "listeners": [
            {
                "name": "mqtts",
                "bind": "127.0.0.1:0",
                "tls": {
                    "cert_file": str(certs.server_cert),
                    "key_file": str(certs.server_key),
                    "ca_file": str(certs.ca_file),
                    "mutual_tls": mutual_tls,
                },
                "proxy_protocol": proxy_protocol,
            },
            *(extra_listeners or []),
        ],
        "upstream": {"address": upstream, "connect_timeout": 2},
        "policy": {"file": str(users.path), "reload": "off"},
        "enforcement": enforcement or {},
        "limits": {"connect_timeout": 2, **(limits or {})},
        "metrics": {"bind": None},
        "log": {"level": "debug", "format": "text"},
        "shutdown_grace": 0.2,
    }
    path = folder / f"config-{free_port()}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class ProxyHandle:
    """The real proxy (Server) on a uvloop event loop in a background thread."""

    def __init__(self, config_path: Path) -> None:
        from mqttgate.proxy.config import load_config
        from mqttgate.proxy.server import Server, new_event_loop

        self.config = load_config(config_path)
        self.registry = CollectorRegistry()
        self.loop = new_event_loop()
        #: Anything that reached the loop's exception handler: a client error must never.
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="mqttgate-test", daemon=True
        )
        self.thread.start()
        self.server = Server(self.config, registry=self.registry)
        try:
            self.run(self.server.start())
        except BaseException:
            self.stop()
            raise
        self.port = self.server.ports()["mqtts"]

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def runner() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(runner)
        return future.result(timeout)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        self.call(self.server.flush_metrics)
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    def reload_policy(self) -> bool:
        return bool(self.call(self.server.reload_policy))

    def active_connections(self) -> int:
        return int(self.call(lambda: len(self.server.connections)))

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.run(self.server.shutdown(0.2))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def running_proxy(
    tmp_path: Path, certs: Certs, users_file: UsersFile
) -> Iterator[Callable[..., ProxyHandle]]:
    """``running_proxy(config_path)`` or ``running_proxy(upstream=..., **options)`` -> a
    started :class:`ProxyHandle` (listener ``mqtts`` on ``handle.port``), stopped at teardown.

    ``upstream`` is a broker address (``mosquitto.address``) or ``"embedded"``; the options
    are those of :func:`write_config`. A ready config file should name its first listener
    ``mqtts`` and bind port 0 (or a free port). Teardown fails the test if the proxy's loop
    saw an unhandled error or a traceback was logged.
    """
    handles: list[ProxyHandle] = []
    tracebacks = _TracebackCatcher()
    logging.getLogger("mqttgate").addHandler(tracebacks)

    def start(
        config: Path | None = None, *, upstream: str = "embedded", **options: Any
    ) -> ProxyHandle:
        path = config or write_config(
            tmp_path, certs=certs, users=users_file, upstream=upstream, **options
        )
        handle = ProxyHandle(path)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()
    logging.getLogger("mqttgate").removeHandler(tracebacks)
    for handle in handles:
        assert not handle.loop_errors, f"unhandled errors in the proxy loop: {handle.loop_errors}"
    logged = [r.getMessage() for r in tracebacks.records]
    assert not logged, f"tracebacks logged: {logged}"


class _TracebackCatcher(logging.Handler):
    """Collects log records that carry a traceback: client errors must never produce one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)
