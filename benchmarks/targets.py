"""The systems under test, each started and stopped by the harness in the same run.

A target is what the load generator connects to, plus the one process whose CPU and
memory is charged to it: the broker for `direct` and `mosquitto-tls` (there is no proxy),
the relay or proxy process for the others (the shared broker behind them is not counted).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .certs import Certs
from .loadgen import Endpoint, open_client
from .procs import Server, free_port, wait_port

REPO = Path(__file__).resolve().parent.parent
USERNAME = "bench"
PASSWORD = "bench-password-0123456789"
START_TIMEOUT = 15.0


class Unavailable(Exception):
    """The target could not be started here (not installed, not written yet, crashed)."""


@dataclass
class Env:
    """What all targets of one run share: a temp folder, certificates, one broker."""

    folder: Path
    certs: Certs
    broker: Server | None = None
    broker_port: int = 0
    servers: list[Server] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Server:
        server = Server(name, argv, self.folder / f"{name}.log", env)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        self.servers.clear()


@dataclass
class Running:
    name: str
    endpoint: Endpoint
    pid: int  # the process whose CPU and RSS are charged to this target
    server: Server
    owned: bool  # stop it when the target is done (False: the shared broker)

    def stop(self) -> None:
        if self.owned:
            self.server.stop()


def _binary(name: str) -> str | None:
    """BENCH_<NAME> (a path) if set, else PATH, else /usr/sbin (Debian puts both there)."""
    chosen = os.environ.get(f"BENCH_{name.upper()}")
    if chosen is not None:
        return chosen if os.access(chosen, os.X_OK) else None
    fallback = f"/usr/sbin/{name}"
    return shutil.which(name) or (fallback if os.access(fallback, os.X_OK) else None)


def mosquitto_binary() -> str | None:
    return _binary("mosquitto")


def haproxy_binary() -> str | None:
    return _binary("haproxy")


def _mosquitto_conf(path: Path, port: int, certs: Certs | None) -> None:
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "max_queued_messages 0",  # else QoS 0 is silently dropped under load
        "max_queued_bytes 0",
        "max_inflight_messages 1000",  # QoS 1/2 windows, not round trips, set the pace
        "set_tcp_nodelay true",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
    ]
    if certs is not None:
        lines += [f"certfile {certs.cert}", f"keyfile {certs.key}"]
    if os.geteuid() == 0:
        lines.append("user root")  # stay able to read the temp folder's files
    path.write_text("\n".join(lines) + "\n")


def start_mosquitto(env: Env, name: str, tls: bool) -> tuple[Server, int]:
    binary = mosquitto_binary()
    if binary is None:
        raise Unavailable("mosquitto is not installed")
    port = free_port()
    conf = env.folder / f"{name}.conf"
    _mosquitto_conf(conf, port, env.certs if tls else None)
    server = env.start(name, [binary, "-c", str(conf)])
    try:
        wait_port(port, server, START_TIMEOUT)
    except RuntimeError as exc:
        server.stop()
        raise Unavailable(str(exc)) from exc
    return server, port


def _endpoint(env: Env, port: int, tls: bool) -> Endpoint:
    return Endpoint("127.0.0.1", port, str(env.certs.ca) if tls else None, USERNAME, PASSWORD)


def _probe(server: Server, ep: Endpoint, timeout: float = START_TIMEOUT) -> None:
    """A full TLS + CONNECT + CONNACK through the target, so 'listening' means 'working'."""
    deadline = time.monotonic() + timeout
    ctx = ep.context()
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not server.alive():
            break
        try:
            sock = open_client(ep, "bench-probe", ctx, timeout=5)
        except (OSError, ConnectionError) as exc:
            last = exc
            time.sleep(0.2)
            continue
        sock.close()
        return
    server.stop()
    raise Unavailable(f"{server.name}: probe failed ({last!r}); log: {server.log_tail(800)}")


def _ensure_broker(env: Env) -> None:
    if env.broker is None or not env.broker.alive():
        env.broker, env.broker_port = start_mosquitto(env, "broker", tls=False)


# ----------------------------------------------------------------------------- targets


def start_direct(env: Env) -> Running:
    _ensure_broker(env)
    assert env.broker is not None
    ep = _endpoint(env, env.broker_port, tls=False)
    return Running("direct", ep, env.broker.pid, env.broker, owned=False)


def start_mosquitto_tls(env: Env) -> Running:
    server, port = start_mosquitto(env, "mosquitto-tls", tls=True)
    ep = _endpoint(env, port, tls=True)
    _probe(server, ep)
    return Running("mosquitto-tls", ep, server.pid, server, owned=True)


def start_bare_relay(env: Env) -> Running:
    _ensure_broker(env)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.bare_relay",
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        f"127.0.0.1:{env.broker_port}",
        "--cert",
        str(env.certs.cert),
        "--key",
        str(env.certs.key),
    ]
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    server = env.start("bare-relay", argv, {**os.environ, "PYTHONPATH": pythonpath})
    ep = _endpoint(env, port, tls=True)
    _wait_and_probe(server, port, ep)
    return Running("bare-relay", ep, server.pid, server, owned=True)


def start_haproxy(env: Env) -> Running:
    binary = haproxy_binary()
    if binary is None:
        raise Unavailable("haproxy is not installed")
    _ensure_broker(env)
    port = free_port()
    conf = env.folder / "haproxy.cfg"
    # HAProxy refuses to start unless it can have 2 descriptors per connection
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    soft = 200_000 if soft == resource.RLIM_INFINITY else soft
    maxconn = max(100, (soft - 100) // 2)
    conf.write_text(
        "\n".join(
            [
                "global",
                "  nbthread 1",
                f"  maxconn {maxconn}",
                "defaults",
                "  mode tcp",
                "  timeout connect 5s",
                "  timeout client 1h",
                "  timeout server 1h",
                "frontend mqtts",
                f"  bind 127.0.0.1:{port} ssl crt {env.certs.combined}",
                "  default_backend broker",
                "backend broker",
                f"  server b1 127.0.0.1:{env.broker_port}",
                "",
            ]
        )
    )
    server = env.start("haproxy", [binary, "-f", str(conf), "-db"])
    ep = _endpoint(env, port, tls=True)
    _wait_and_probe(server, port, ep)
    return Running("haproxy", ep, server.pid, server, owned=True)


def _password_hash(password: str) -> str:
    try:
        from mqttgate.policy import hash_password  # the project's own format, once it exists

        return str(hash_password(password))
    except ImportError:
        from argon2 import PasswordHasher

        return str(PasswordHasher().hash(password))


def users_document(password_hash: str) -> dict[str, object]:
    """The benchmark user: 100 permissions, the one covering bench/t/# among the last."""
    perms: list[dict[str, str]] = []
    for i in range(98):
        access = ("read", "write", "readWrite")[i % 3]
        perms.append({"topic": f"plant/{i}/+/line/#", "access": access})
    perms.append({"topic": "bench/t/#", "access": "readWrite"})
    perms.append({"topic": "bench/other/${username}/#", "access": "read"})
    return {
        "users": {
            USERNAME: {
                "grant_type": "password",
                "password": password_hash,
                "permissions": perms,
            }
        }
    }


def write_mqttgate_config(env: Env, port: int) -> Path:
    users = env.folder / "users.yaml"
    users.write_text(yaml.safe_dump(users_document(_password_hash(PASSWORD)), sort_keys=False))
    config = {
        "listeners": [
            {
                "name": "bench",
                "bind": f"127.0.0.1:{port}",
                "tls": {
                    "cert_file": str(env.certs.cert),
                    "key_file": str(env.certs.key),
                    "ca_file": str(env.certs.ca),
                    "mutual_tls": False,
                    "min_version": "1.2",
                },
                "proxy_protocol": False,
            }
        ],
        "upstream": {"address": f"127.0.0.1:{env.broker_port}", "connect_timeout": 5},
        "policy": {"file": str(users), "reload": "off"},
        "enforcement": {"denied_publish": "ack", "client_id_namespace": True},
        "limits": {
            "max_packet_size": 1048576,
            "connect_timeout": 10,
            "max_connections": 20000,
        },
        "metrics": {"bind": f"127.0.0.1:{free_port()}"},
        "log": {"level": "warning", "format": "text"},
    }
    path = env.folder / "mqttgate.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def mqttgate_argv(config: Path) -> list[str]:
    """The same as `mqttgate serve --config FILE`, with this interpreter, also where the
    console script is not on PATH."""
    return [
        sys.executable,
        "-c",
        "import sys; from mqttgate.proxy.cli import main; sys.argv[0] = 'mqttgate'; "
        "sys.exit(main())",
        "serve",
        "--config",
        str(config),
    ]


def start_mqttgate(env: Env) -> Running:
    try:
        import mqttgate.proxy.cli  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"mqttgate.proxy.cli does not import: {exc}") from exc
    _ensure_broker(env)
    port = free_port()
    config = write_mqttgate_config(env, port)
    argv = mqttgate_argv(config)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("MQTTGATE_")}
    server = env.start("mqttgate", argv, child_env)
    ep = _endpoint(env, port, tls=True)
    _wait_and_probe(server, port, ep)
    return Running("mqttgate", ep, server.pid, server, owned=True)


def _wait_and_probe(server: Server, port: int, ep: Endpoint) -> None:
    try:
        wait_port(port, server, START_TIMEOUT)
    except RuntimeError as exc:
        server.stop()
        raise Unavailable(str(exc)) from exc
    _probe(server, ep)


STARTERS = {
    "direct": start_direct,
    "mosquitto-tls": start_mosquitto_tls,
    "bare-relay": start_bare_relay,
    "haproxy": start_haproxy,
    "mqttgate": start_mqttgate,
}


@contextlib.contextmanager
def started(env: Env, names: list[str]) -> Iterator[tuple[dict[str, Running], dict[str, str]]]:
    """Start every named target; yield (running, unavailable reasons); stop them all."""
    running: dict[str, Running] = {}
    unavailable: dict[str, str] = {}
    try:
        for name in names:
            try:
                running[name] = STARTERS[name](env)
            except Unavailable as exc:
                unavailable[name] = str(exc)
        yield running, unavailable
    finally:
        for r in running.values():
            with contextlib.suppress(Exception):
                r.stop()
