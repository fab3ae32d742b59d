"""mqttgate with 1 and with 2 worker processes, measured side by side (issue 5).

`workers: N` makes mqttgate fork N processes that each bind the listen port with
SO_REUSEPORT; the kernel picks a worker per new connection by a hash of its addresses.
This measures what that buys on this machine, in one invocation, the two settings
interleaved (their order alternates per repetition), medians of the repetitions:

- spreading: N held TLS + CONNECT connections, counted per worker process (its socket
  inodes from /proc/<pid>/fd, matched against the established sockets of /proc/net/tcp
  whose local port is the listen port);
- connect storms: `cold` (each connection a distinct user never seen by this process, so
  each CONNECT costs one argon2 verification), `again` (the same users once more: warm in
  the worker that verified each, cold in the other one, the cache is per process) and
  `warm` (the one benchmark user, verified in every worker beforehand);
- QoS 0 throughput: 4 publisher -> subscriber pairs on distinct topics, with mqttgate's
  CPU (supervisor + workers) per delivered message.

Every mqttgate is started fresh for each (repetition, workers) so that its password cache
is cold. Run from the repository root:

    .venv/bin/python -m benchmarks.workers            # about 2-3 minutes on 2 cores
    .venv/bin/python -m benchmarks.workers --reps 1 --scale 0.3   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import ssl
import statistics
import sys
import tempfile
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

from . import loadgen, wire
from .certs import make_certs
from .loadgen import Endpoint, PubSpec, SubSpec, open_client
from .procs import CLK_TCK, Server, cpu_seconds, free_port, raise_nofile, tree, wait_port
from .report import machine_facts, stamp
from .scenarios import _Workers, storm_summary
from .targets import (
    PASSWORD,
    USERNAME,
    Env,
    Unavailable,
    mqttgate_argv,
    start_mosquitto,
    users_document,
    write_mqttgate_config,
)

RESULTS = Path(__file__).resolve().parent / "results"
START_TIMEOUT = 20.0
STORM_PROCS = 4
PAIRS = 4


@dataclass(frozen=True)
class Params:
    spread_connections: int = 200
    cold_users: int = 24  # argon2 costs ~0.3 s of CPU each here: few, but each one counts
    warm_connections: int = 300
    messages: int = 40_000  # QoS 0 messages per pair
    payload: int = 64
    time_limit: float = 15.0

    def scaled(self, factor: float) -> Params:
        def s(n: int) -> int:
            return max(STORM_PROCS, int(n * factor))

        return replace(
            self,
            spread_connections=s(self.spread_connections),
            cold_users=s(self.cold_users),
            warm_connections=s(self.warm_connections),
            messages=s(self.messages),
        )


# ------------------------------------------------------------------------ mqttgate


@dataclass
class Gate:
    server: Server
    port: int
    endpoint: Endpoint
    workers: list[int]  # the processes that accept connections (the supervisor's children)

    @property
    def pid(self) -> int:
        return self.server.pid


def _storm_user(i: int) -> str:
    return f"storm-{i:04d}"


def write_users(folder: Path, n_users: int) -> Path:
    """The harness's benchmark user plus `n_users` storm users. They all share one argon2
    hash of the same password: the verification costs the same, and the cache is keyed by
    user name, so each storm user still needs its own verification."""
    from mqttgate.policy import hash_password

    hashed = hash_password(PASSWORD)
    doc: dict[str, Any] = users_document(hashed)
    users = doc["users"]
    for i in range(n_users):
        users[_storm_user(i)] = {
            "grant_type": "password",
            "password": hashed,
            "permissions": [{"topic": "bench/t/#", "access": "readWrite"}],
        }
    path = folder / "users-workers.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_config(base: dict[str, Any], folder: Path, workers: int) -> tuple[Path, int]:
    """The harness's mqttgate config with `workers`, a fresh port and a short grace."""
    config = json.loads(json.dumps(base))
    port = free_port()
    config["listeners"][0]["bind"] = f"127.0.0.1:{port}"
    config["metrics"]["bind"] = f"127.0.0.1:{free_port()}"
    config["workers"] = workers
    config["shutdown_grace"] = 1
    path = folder / f"mqttgate-w{workers}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, port


def _socket_table() -> dict[int, tuple[int, int]]:
    """inode -> (local port, state) of every IPv4 TCP socket (state 1: established, 10: listen)."""
    out: dict[int, tuple[int, int]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = line.split()
            out[int(f[9])] = (int(f[1].rsplit(":", 1)[1], 16), int(f[3], 16))
    return out


def _socket_inodes(pid: int) -> list[int]:
    inodes = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.append(int(target[8:-1]))
    return inodes


def sockets_per_worker(pids: list[int], port: int, state: int = 1) -> list[int]:
    """How many sockets on local `port` in `state` each process holds."""
    table = _socket_table()
    return [sum(1 for i in _socket_inodes(pid) if table.get(i) == (port, state)) for pid in pids]


def _own_cpu(pid: int) -> float:
    """user + sys CPU of one process (all threads, not its children)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        raw = Path(f"/proc/{pid}/stat").read_text()
        f = raw[raw.rindex(")") + 2 :].split()
        return (int(f[11]) + int(f[12])) / CLK_TCK
    return 0.0


def start_gate(env: Env, base: dict[str, Any], workers: int) -> Gate:
    path, port = write_config(base, env.folder, workers)
    argv = mqttgate_argv(path)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("MQTTGATE_")}
    server = env.start(f"mqttgate-w{workers}", argv, child_env)
    try:
        wait_port(port, server, START_TIMEOUT)
    except RuntimeError as exc:
        server.stop()
        raise Unavailable(str(exc)) from exc
    # every worker listening (each binds its own SO_REUSEPORT socket), not just the first
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        pids = [server.pid] if workers == 1 else tree(server.pid)[1:]
        listening = [p for p, n in zip(pids, sockets_per_worker(pids, port, 10), strict=True) if n]
        if len(listening) == workers:
            break
        if time.monotonic() > deadline or not server.alive():
            server.stop()
            raise Unavailable(f"{len(listening)}/{workers} workers listen: {server.log_tail()}")
        time.sleep(0.1)
    ep = Endpoint("127.0.0.1", port, str(env.certs.ca), USERNAME, PASSWORD)
    return Gate(server, port, ep, sorted(listening))


# ------------------------------------------------------------------------ measurements


def measure_spread(gate: Gate, n: int) -> dict[str, Any]:
    """Hold n TLS + CONNECT connections; count them per worker. Also warms the benchmark
    user's password in every worker (n >> workers, so each one has seen it)."""
    ctx = gate.endpoint.context()
    socks: list[ssl.SSLSocket | socket.socket] = []
    failed = 0

    def one(i: int) -> Any:
        try:
            return open_client(gate.endpoint, f"spread-{i}", ctx)
        except (OSError, ConnectionError) as exc:
            return exc

    try:
        with ThreadPoolExecutor(4) as ex:
            for res in ex.map(one, range(n)):
                if isinstance(res, BaseException):
                    failed += 1
                else:
                    socks.append(res)
        time.sleep(0.3)
        counts = sockets_per_worker(gate.workers, gate.port)
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
    held = sum(counts)
    return {
        "opened": len(socks),
        "failed": failed,
        "per_worker": counts,
        "max_share": max(counts) / held if held else None,
    }


@dataclass(frozen=True)
class UserStorm:
    endpoint: Endpoint
    users: tuple[str, ...]  # one connection per entry, each with that user name
    client_prefix: str
    time_limit: float


def user_storm(conn: Connection, spec: UserStorm) -> None:
    """Connect, CONNECT (as the next user), CONNACK, DISCONNECT, close; one at a time."""
    try:
        ctx = spec.endpoint.context()
        conn.send(("ready", None))
        if not conn.poll(60) or conn.recv() != "go":
            raise TimeoutError("no go from the coordinator")
        times = array("d")
        failed = 0
        t0 = time.monotonic()
        deadline = t0 + spec.time_limit
        for i, user in enumerate(spec.users):
            if time.monotonic() > deadline:
                break
            ep = replace(spec.endpoint, username=user)
            t = time.monotonic()
            try:
                s = open_client(ep, f"{spec.client_prefix}-{i}", ctx)
            except (OSError, ConnectionError):
                failed += 1
                continue
            times.append(time.monotonic() - t)
            with contextlib.suppress(OSError):
                s.sendall(wire.DISCONNECT)
            with contextlib.suppress(OSError):
                s.close()
        result = {"times": times.tobytes(), "failed": failed, "t_start": t0}
        conn.send(("result", {**result, "t_end": time.monotonic()}))
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", repr(exc)))


def measure_storm(gate: Gate, users: list[str], tag: str, limit: float) -> dict[str, Any]:
    with _Workers() as w:
        for k in range(STORM_PROCS):
            part = tuple(users[k::STORM_PROCS])
            w.start("storm", user_storm, UserStorm(gate.endpoint, part, f"{tag}-{k}", limit))
        w.gather({"storm"}, "ready", 30)
        cpu0 = cpu_seconds(gate.pid)
        w.send({"storm"}, "go")
        res = w.gather({"storm"}, "result", limit + 15)
        cpu1 = cpu_seconds(gate.pid)
    summary = storm_summary(res, cpu1 - cpu0, "gate")
    del summary["elapsed"]
    return summary


def measure_qos0(gate: Gate, p: Params, tag: str, broker: int) -> dict[str, Any]:
    """PAIRS publisher -> subscriber pairs, each on its own topic, QoS 0, as fast as possible."""
    topics = [f"bench/t/w{i}" for i in range(PAIRS)]
    packet_size = len(wire.publish(topics[0], bytes(p.payload)))
    with _Workers() as w:
        for i, topic in enumerate(topics):
            spec = SubSpec(
                gate.endpoint, f"{tag}-s{i}", 1, topic, 0, p.messages, packet_size,
                p.payload, False, p.time_limit,
            )  # fmt: skip
            w.start("sub", loadgen.subscriber, spec)
        w.gather({"sub"}, "ready", 30)
        for i in range(2):
            pspec = PubSpec(
                gate.endpoint, f"{tag}-p{i}", tuple(topics[i::2]), 0, p.messages, p.payload,
                500, 200, 0.0, p.time_limit,
            )  # fmt: skip
            w.start("pub", loadgen.publisher, pspec)
        w.gather({"pub"}, "ready", 30)
        conns = sockets_per_worker(gate.workers, gate.port)
        own0 = [_own_cpu(pid) for pid in gate.workers]
        cpu0, b0 = cpu_seconds(gate.pid), _own_cpu(broker)
        w.send({"sub"}, "go")
        w.send({"pub"}, "go")
        subs = w.gather({"sub"}, "result", p.time_limit + 10)
        cpu1, b1 = cpu_seconds(gate.pid), _own_cpu(broker)
        own1 = [_own_cpu(pid) for pid in gate.workers]
        pubs = w.gather({"pub"}, "result", 10)
    delivered = sum(s["received"] for s in subs)
    elapsed = max(max(s["t_last"] for s in subs) - min(x["t_start"] for x in pubs), 1e-9)
    return {
        "expected": p.messages * PAIRS,
        "delivered": delivered,
        "errors": sum(s["errors"] for s in subs),
        "seconds": round(elapsed, 3),
        "msgs_per_s": delivered / elapsed,
        "cpu_seconds": round(cpu1 - cpu0, 3),
        "cpu_us_per_msg": (cpu1 - cpu0) * 1e6 / delivered if delivered else None,
        "gate_cores": round((cpu1 - cpu0) / elapsed, 3),
        "broker_cores": round((b1 - b0) / elapsed, 3),
        "client_conns_per_worker": conns,  # 2 per pair; where the kernel put them
        "worker_cpu_s": [round(b - a, 2) for a, b in zip(own0, own1, strict=True)],
        "sub_core_share": round(max(s["cpu_s"] for s in subs) / elapsed, 3),
    }


def one_run(env: Env, base: dict[str, Any], workers: int, p: Params, rep: int) -> dict[str, Any]:
    tag = f"r{rep}w{workers}"
    gate = start_gate(env, base, workers)
    try:
        out: dict[str, Any] = {"workers": workers, "rep": rep, "worker_pids": gate.workers}
        users = [_storm_user(i) for i in range(p.cold_users)]
        # cold first, on an idle fresh process: no storm user has been verified yet
        out["cold"] = measure_storm(gate, users, f"{tag}-cold", p.time_limit)
        out["again"] = measure_storm(gate, users, f"{tag}-again", p.time_limit)
        out["spread"] = measure_spread(gate, p.spread_connections)
        time.sleep(0.5)  # let the closed connections go before the next phase
        warm = [USERNAME] * p.warm_connections
        out["warm"] = measure_storm(gate, warm, f"{tag}-warm", p.time_limit)
        assert env.broker is not None
        out["qos0"] = measure_qos0(gate, p, tag, env.broker.pid)
        if not gate.server.alive():
            raise RuntimeError(f"mqttgate died: {gate.server.log_tail()}")
        return out
    finally:
        gate.server.stop()


# ------------------------------------------------------------------------ report

FIGURES = (
    ("spread", "max_share", "spread: largest worker's share of {n} conns"),
    ("cold", "connects_per_s", "cold storm connects/s"),
    ("cold", "p99_ms", "cold storm p99 connect ms"),
    ("cold", "gate_cpu_ms_per_connect", "cold storm mqttgate CPU ms/connect"),
    ("cold", "gate_core_share", "cold storm mqttgate cores used"),
    ("again", "connects_per_s", "same users again connects/s"),
    ("again", "p99_ms", "same users again p99 ms"),
    ("warm", "connects_per_s", "warm storm connects/s"),
    ("warm", "p99_ms", "warm storm p99 connect ms"),
    ("warm", "gate_cpu_ms_per_connect", "warm storm mqttgate CPU ms/connect"),
    ("qos0", "msgs_per_s", "QoS 0, 4 pairs: msgs/s"),
    ("qos0", "cpu_us_per_msg", "QoS 0 mqttgate CPU us/msg"),
    ("qos0", "gate_cores", "QoS 0 mqttgate cores used"),
    ("qos0", "broker_cores", "QoS 0 Mosquitto cores used"),
)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Median of each figure per worker count, and the median of the per-repetition ratio
    2 workers / 1 worker (the two runs of a repetition are adjacent in time)."""
    out: dict[str, dict[str, float | None]] = {}
    by = {w: {r["rep"]: r for r in runs if r["workers"] == w and "error" not in r} for w in (1, 2)}
    for phase, key, _ in FIGURES:
        name = f"{phase}.{key}"
        row: dict[str, float | None] = {}
        for w in (1, 2):
            vals = [r[phase][key] for r in by[w].values() if r[phase][key] is not None]
            row[f"w{w}"] = statistics.median(vals) if vals else None
        ratios = [
            by[2][rep][phase][key] / by[1][rep][phase][key]
            for rep in by[1].keys() & by[2].keys()
            if by[1][rep][phase][key] and by[2][rep][phase][key] is not None
        ]
        row["ratio"] = statistics.median(ratios) if ratios else None
        out[name] = row
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def table(summary: dict[str, dict[str, float | None]], p: Params) -> str:
    lines = [
        "| figure | 1 worker | 2 workers | 2 / 1 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for phase, key, label in FIGURES:
        row = summary[f"{phase}.{key}"]
        text = label.format(n=p.spread_connections)
        lines.append(f"| {text} | {_fmt(row['w1'])} | {_fmt(row['w2'])} | {_fmt(row['ratio'])} |")
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__)
    ap.add_argument("--reps", type=int, default=3, help="repetitions per worker count")
    ap.add_argument("--scale", type=float, default=1.0, help="scale every count")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON")
    return ap.parse_args(argv)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    p = Params().scaled(args.scale) if args.scale != 1.0 else Params()
    signal.signal(signal.SIGTERM, _sigterm)
    raise_nofile(8192)
    facts = machine_facts()
    runs: list[dict[str, Any]] = []
    t_begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mqttgate-workers-bench-") as tmp:
        folder = Path(tmp)
        env = Env(folder, make_certs(folder))
        try:
            env.broker, env.broker_port = start_mosquitto(env, "broker", tls=False)
            base = yaml.safe_load(write_mqttgate_config(env, free_port()).read_text())
            base["policy"]["file"] = str(write_users(folder, p.cold_users))
            for rep in range(args.reps):
                order = (1, 2) if rep % 2 == 0 else (2, 1)
                for workers in order:
                    try:
                        run = one_run(env, base, workers, p, rep)
                    except (Unavailable, RuntimeError, OSError) as exc:
                        run = {"workers": workers, "rep": rep, "error": str(exc)[-800:]}
                    runs.append(run)
                    _print_run(run)
        except KeyboardInterrupt:
            print("interrupted: reporting what was measured", file=sys.stderr)
        finally:
            env.stop_all()
    facts["loadavg_end"] = os.getloadavg()
    facts["seconds"] = round(time.monotonic() - t_begin, 1)
    summary = summarize(runs)
    text = table(summary, p)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"workers-{stamp()}.json"
    document = {
        "benchmark": "workers",
        "params": p.__dict__,
        "reps": args.reps,
        "machine": facts,
        "summary": summary,
        "runs": runs,
    }
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(f"\nwrote {path} ({facts['seconds']} s)")
    return 0 if runs and all("error" not in r for r in runs) else 1


def _print_run(run: dict[str, Any]) -> None:
    head = f"rep {run['rep']} workers={run['workers']}:"
    if "error" in run:
        print(head, "error:", run["error"], flush=True)
        return
    c, a, wm, q, s = run["cold"], run["again"], run["warm"], run["qos0"], run["spread"]
    print(
        head,
        f"spread {s['per_worker']}",
        f"| cold {c['connects_per_s']:.1f}/s p99 {c['p99_ms']:.0f} ms",
        f"| again {a['connects_per_s']:.1f}/s",
        f"| warm {wm['connects_per_s']:.0f}/s p99 {wm['p99_ms']:.1f} ms",
        f"| qos0 {q['msgs_per_s']:,.0f} msgs/s {q['cpu_us_per_msg']:.1f} us/msg"
        f" conns {q['client_conns_per_worker']} cpu {q['worker_cpu_s']}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
