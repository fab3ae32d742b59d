"""The proxy's YAML config file: parsing, defaults and validation.

Every problem is collected (not just the first) with the file, line and field it concerns,
using the policy layer's :class:`~mqttgate.policy.Problem` so that ``check-config`` prints
config and users-file problems alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mqttgate.policy import LineMap, Problem, load_yaml
from mqttgate.policy.yamlsource import field_name

ENV_MUTUAL_TLS = "MQTTGATE_USE_MUTUAL_TLS"
ENV_CONFIG = "MQTTGATE_CONFIG"


class ConfigError(Exception):
    """The config file cannot be used; ``problems`` says every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    mutual_tls: bool = False
    min_version: str = "1.2"


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    host: str
    port: int
    tls: TLSConfig
    proxy_protocol: bool = False

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    address: str = "127.0.0.1:1883"
    host: str = "127.0.0.1"
    port: int = 1883
    connect_timeout: float = 5.0

    @property
    def embedded(self) -> bool:
        return self.address == "embedded"


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    file: Path
    reload: str = "watch"


@dataclass(frozen=True, slots=True)
class EnforcementConfig:
    denied_publish: str = "ack"
    client_id_namespace: bool = True


@dataclass(frozen=True, slots=True)
class AuthBackoffConfig:
    """Per-remote-address slow-down after repeated authentication failures."""

    #: Failures (inside ``window`` seconds) that are never delayed.
    threshold: int = 5
    #: First delay in seconds, doubled per further failure; 0 turns the backoff off.
    base_delay: float = 0.5
    max_delay: float = 30.0
    window: float = 300.0


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_packet_size: int = 1_048_576
    connect_timeout: float = 10.0
    max_connections: int = 10_000
    #: 0 means no per-user limit.
    max_connections_per_user: int = 0
    auth_backoff: AuthBackoffConfig = field(default_factory=AuthBackoffConfig)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    bind: str | None = "127.0.0.1:9100"
    per_user: bool = False


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True, slots=True)
class Config:
    listeners: tuple[ListenerConfig, ...]
    upstream: UpstreamConfig
    policy: PolicyConfig
    enforcement: EnforcementConfig = field(default_factory=EnforcementConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    #: Seconds that open connections get to finish on shutdown.
    shutdown_grace: float = 10.0
    #: Number of worker processes, or "auto" (one per CPU).
    workers: int | str = 1
    source: Path | None = None


MAX_PACKET_SIZE_LIMIT = 268_435_460
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def split_host_port(value: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port); ValueError when malformed."""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]:")
        if not sep:
            raise ValueError(value)
    else:
        host, sep, rest = value.rpartition(":")
        if not sep:
            raise ValueError(value)
    port = int(rest)
    if not host or not 0 <= port <= 65535:
        raise ValueError(value)
    return host, port


class _Reader:
    """Typed access to one YAML mapping that records problems instead of raising."""

    def __init__(self, file: str, lines: LineMap, problems: list[Problem]) -> None:
        self.file = file
        self.lines = lines
        self.problems = problems

    def problem(self, path: tuple[str | int, ...], message: str) -> None:
        # LineMap.line falls back to the nearest enclosing key that has a known line.
        self.problems.append(Problem(self.file, self.lines.line(path), field_name(path), message))

    def mapping(
        self, data: Any, path: tuple[str | int, ...], allowed: tuple[str, ...]
    ) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.problem(path, "must be a mapping")
            return {}
        for key in data:
            if key not in allowed:
                self.problem((*path, str(key)), f"unknown key (allowed: {', '.join(allowed)})")
        return data

    def boolean(
        self, data: dict[str, Any], path: tuple[str | int, ...], key: str, default: bool
    ) -> bool:
        if key not in data:
            return default
        v = data[key]
        if isinstance(v, bool):
            return v
        self.problem((*path, key), "must be true or false")
        return default

    def number(
        self,
        data: dict[str, Any],
        path: tuple[str | int, ...],
        key: str,
        default: float,
        *,
        minimum: float,
        maximum: float | None = None,
        integer: bool = False,
    ) -> float:
        if key not in data:
            return default
        v = data[key]
        ok_type = isinstance(v, int) if integer else isinstance(v, int | float)
        if isinstance(v, bool) or not ok_type:
            self.problem((*path, key), "must be an integer" if integer else "must be a number")
            return default
        if v < minimum or (maximum is not None and v > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.problem((*path, key), f"must be {bound}")
            return default
        return v

    def choice(
        self,
        data: dict[str, Any],
        path: tuple[str | int, ...],
        key: str,
        default: str,
        choices: tuple[str, ...],
    ) -> str:
        if key not in data:
            return default
        v = data[key]
        if isinstance(v, str) and v in choices:
            return v
        self.problem((*path, key), f"must be one of: {', '.join(choices)}")
        return default

    def string(
        self, data: dict[str, Any], path: tuple[str | int, ...], key: str, *, required: bool
    ) -> str | None:
        if key not in data or data[key] is None:
            if required:
                self.problem((*path, key), "is required")
            return None
        v = data[key]
        if isinstance(v, str) and v:
            return v
        self.problem((*path, key), "must be a non-empty string")
        return None


def _env_mutual_tls(problems: list[Problem]) -> bool | None:
    raw = os.environ.get(ENV_MUTUAL_TLS)
    if raw is None or raw == "":
        return None
    value = raw.strip().lower()
    if value in ("yes", "true", "1", "on"):
        return True
    if value in ("no", "false", "0", "off"):
        return False
    problems.append(Problem(ENV_MUTUAL_TLS, None, ENV_MUTUAL_TLS, "must be yes or no"))
    return None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    file = str(path)
    problems: list[Problem] = []
    try:
        data, lines = load_yaml(path)
    except OSError as exc:
        raise ConfigError([Problem(file, None, "", f"cannot read: {exc.strerror or exc}")]) from exc
    except Exception as exc:  # the policy layer reports YAML syntax errors its own way
        probs = getattr(exc, "problems", None)
        if probs:
            raise ConfigError(list(probs)) from exc
        raise ConfigError([Problem(file, None, "", f"invalid YAML: {exc}")]) from exc
    config = parse_config(data, lines, path, problems)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def parse_config(data: Any, lines: LineMap, path: Path, problems: list[Problem]) -> Config | None:
    """Build a :class:`Config` from parsed YAML, appending every problem to ``problems``."""
    base = path.parent
    r = _Reader(str(path), lines, problems)
    top = r.mapping(
        data,
        (),
        (
            "listeners",
            "upstream",
            "policy",
            "enforcement",
            "limits",
            "metrics",
            "log",
            "shutdown_grace",
            "workers",
        ),
    )
    if data is None:
        r.problem((), "the config file is empty")

    def resolve(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else (base / q)

    env_mutual = _env_mutual_tls(problems)

    # listeners
    listeners: list[ListenerConfig] = []
    raw_listeners = top.get("listeners")
    if not isinstance(raw_listeners, list) or not raw_listeners:
        r.problem(("listeners",), "must be a non-empty list")
        raw_listeners = []
    names: set[str] = set()
    for i, item in enumerate(raw_listeners):
        lp: tuple[str | int, ...] = ("listeners", i)
        ld = r.mapping(item, lp, ("name", "bind", "tls", "proxy_protocol"))
        name = r.string(ld, lp, "name", required=False) or f"listener{i}"
        if name in names:
            r.problem((*lp, "name"), f"duplicate listener name {name!r}")
        names.add(name)
        bind = r.string(ld, lp, "bind", required=True)
        host, port = "0.0.0.0", 8883
        if bind is not None:
            try:
                host, port = split_host_port(bind)
            except ValueError:
                r.problem((*lp, "bind"), "must be host:port")
        tp = (*lp, "tls")
        if "tls" not in ld:
            r.problem(tp, "is required")
        td = r.mapping(
            ld.get("tls"), tp, ("cert_file", "key_file", "ca_file", "mutual_tls", "min_version")
        )
        cert = r.string(td, tp, "cert_file", required="tls" in ld)
        key = r.string(td, tp, "key_file", required="tls" in ld)
        ca = r.string(td, tp, "ca_file", required=False)
        mutual = r.boolean(td, tp, "mutual_tls", False)
        if env_mutual is not None:
            mutual = env_mutual
        min_version = td.get("min_version", "1.2")
        if isinstance(min_version, float | int) and not isinstance(min_version, bool):
            min_version = {1.2: "1.2", 1.3: "1.3"}.get(float(min_version), str(min_version))
        if min_version not in ("1.2", "1.3"):
            r.problem((*tp, "min_version"), 'must be "1.2" or "1.3"')
            min_version = "1.2"
        for key_name, value in (("cert_file", cert), ("key_file", key), ("ca_file", ca)):
            if value is not None and not resolve(value).is_file():
                r.problem((*tp, key_name), f"file not found: {resolve(value)}")
        if mutual and ca is None:
            r.problem((*tp, "ca_file"), "is required when mutual TLS is on")
        proxy_protocol = r.boolean(ld, lp, "proxy_protocol", False)
        listeners.append(
            ListenerConfig(
                name=name,
                host=host,
                port=port,
                tls=TLSConfig(
                    cert_file=resolve(cert) if cert else Path(),
                    key_file=resolve(key) if key else Path(),
                    ca_file=resolve(ca) if ca else None,
                    mutual_tls=mutual,
                    min_version=str(min_version),
                ),
                proxy_protocol=proxy_protocol,
            )
        )

    # upstream
    up = ("upstream",)
    ud = r.mapping(top.get("upstream"), up, ("address", "connect_timeout"))
    address = r.string(ud, up, "address", required=False) or "127.0.0.1:1883"
    uhost, uport = "127.0.0.1", 1883
    if address != "embedded":
        try:
            uhost, uport = split_host_port(address)
        except ValueError:
            r.problem((*up, "address"), 'must be host:port or "embedded"')
    upstream = UpstreamConfig(
        address=address,
        host=uhost,
        port=uport,
        connect_timeout=r.number(ud, up, "connect_timeout", 5.0, minimum=0.001, maximum=3600),
    )

    # policy
    pp = ("policy",)
    if "policy" not in top:
        r.problem(pp, "is required")
    pd = r.mapping(top.get("policy"), pp, ("file", "reload"))
    pfile = r.string(pd, pp, "file", required="policy" in top)
    if pfile is not None and not resolve(pfile).is_file():
        r.problem((*pp, "file"), f"file not found: {resolve(pfile)}")
    policy = PolicyConfig(
        file=resolve(pfile) if pfile else Path(),
        reload=r.choice(pd, pp, "reload", "watch", ("watch", "sighup", "off")),
    )

    ep = ("enforcement",)
    ed = r.mapping(top.get("enforcement"), ep, ("denied_publish", "client_id_namespace"))
    enforcement = EnforcementConfig(
        denied_publish=r.choice(ed, ep, "denied_publish", "ack", ("ack", "disconnect")),
        client_id_namespace=r.boolean(ed, ep, "client_id_namespace", True),
    )

    lp2 = ("limits",)
    lim = r.mapping(
        top.get("limits"),
        lp2,
        (
            "max_packet_size",
            "connect_timeout",
            "max_connections",
            "max_connections_per_user",
            "auth_backoff",
        ),
    )
    bp = ("limits", "auth_backoff")
    bo = r.mapping(lim.get("auth_backoff"), bp, ("threshold", "base_delay", "max_delay", "window"))
    auth_backoff = AuthBackoffConfig(
        threshold=int(r.number(bo, bp, "threshold", 5, minimum=1, integer=True)),
        base_delay=r.number(bo, bp, "base_delay", 0.5, minimum=0, maximum=60),
        max_delay=r.number(bo, bp, "max_delay", 30.0, minimum=0, maximum=3600),
        window=r.number(bo, bp, "window", 300.0, minimum=1, maximum=86_400),
    )
    limits = LimitsConfig(
        max_packet_size=int(
            r.number(
                lim,
                lp2,
                "max_packet_size",
                1_048_576,
                minimum=64,
                maximum=MAX_PACKET_SIZE_LIMIT,
                integer=True,
            )
        ),
        connect_timeout=r.number(lim, lp2, "connect_timeout", 10.0, minimum=0.001, maximum=3600),
        max_connections=int(r.number(lim, lp2, "max_connections", 10_000, minimum=1, integer=True)),
        max_connections_per_user=int(
            r.number(lim, lp2, "max_connections_per_user", 0, minimum=0, integer=True)
        ),
        auth_backoff=auth_backoff,
    )

    mp = ("metrics",)
    md = r.mapping(top.get("metrics"), mp, ("bind", "per_user"))
    mbind: str | None = "127.0.0.1:9100"
    if "bind" in md:
        if md["bind"] is None or md["bind"] is False or md["bind"] == "off":
            mbind = None
        else:
            mbind = r.string(md, mp, "bind", required=False)
            if mbind is not None:
                try:
                    split_host_port(mbind)
                except ValueError:
                    r.problem((*mp, "bind"), "must be host:port (or null to turn metrics off)")
    metrics = MetricsConfig(bind=mbind, per_user=r.boolean(md, mp, "per_user", False))

    gp = ("log",)
    gd = r.mapping(top.get("log"), gp, ("level", "format"))
    level = gd.get("level", "info")
    if not isinstance(level, str) or level.lower() not in _LOG_LEVELS:
        r.problem((*gp, "level"), f"must be one of: {', '.join(_LOG_LEVELS)}")
        level = "info"
    log = LogConfig(
        level=level.lower(), format=r.choice(gd, gp, "format", "json", ("json", "text"))
    )

    shutdown_grace = r.number(top, (), "shutdown_grace", 10.0, minimum=0, maximum=3600)
    workers: int | str = 1
    if "workers" in top:
        w = top["workers"]
        if w == "auto":
            workers = "auto"
        elif isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 1024:
            workers = w
        else:
            r.problem(("workers",), 'must be a positive integer or "auto"')

    if problems:
        return None
    return Config(
        listeners=tuple(listeners),
        upstream=upstream,
        policy=policy,
        enforcement=enforcement,
        limits=limits,
        metrics=metrics,
        log=log,
        shutdown_grace=float(shutdown_grace),
        workers=workers,
        source=path,
    )
