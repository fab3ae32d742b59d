"""One measurement of one scenario against one running target.

The coordinator (this process) forks the load-generator workers, waits until every one of
them is connected, samples the target's CPU, says "go", collects the results and samples
the CPU again: connection set-up is not charged to the message figures.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import resource
import signal
import time
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import Any

from . import loadgen, wire
from .loadgen import PubSpec, StormSpec, SubSpec, open_client
from .procs import cpu_seconds, rss_bytes
from .targets import Running

FLOW_SCENARIOS = ("qos0", "qos1", "qos2", "fanin", "fanout", "latency")
ALL_SCENARIOS = (*FLOW_SCENARIOS, "memory", "connect")


class FlowError(Exception):
    """A worker failed (connect refused, target died, timeout)."""


@dataclass(frozen=True)
class Params:
    messages: int = 100_000  # QoS 0 messages per run (all publishers together)
    qos1_messages: int = 30_000
    qos2_messages: int = 20_000
    window: int = 200  # QoS 1/2 in-flight messages per publisher connection
    batch: int = 500  # messages per sendall
    payload: int = 64
    fanin_publishers: int = 8
    fanout_subscribers: int = 4
    rate: float = 20_000.0  # latency mode: offered msgs/s
    tick_ms: float = 1.0  # latency mode: one write per tick carries the messages due
    latency_seconds: float = 2.0
    connections: int = 2000  # memory: idle TLS connections held open
    storm_connections: int = 600
    storm_workers: int = 8
    time_limit: float = 15.0  # hard bound of one run's load loop, seconds

    def scaled(self, factor: float) -> Params:
        """A smaller (or larger) run with the same shape."""

        def s(n: int) -> int:
            return max(1, int(n * factor))

        return replace(
            self,
            messages=s(self.messages),
            qos1_messages=s(self.qos1_messages),
            qos2_messages=s(self.qos2_messages),
            latency_seconds=max(0.2, self.latency_seconds * factor),
            connections=s(self.connections),
            storm_connections=s(self.storm_connections),
        )


@dataclass(frozen=True)
class Flow:
    qos: int
    publishers: int
    pub_procs: int
    subscribers: int
    sub_procs: int
    messages: int  # per publisher connection
    rate: float = 0.0


def flow_for(name: str, p: Params) -> Flow:
    if name == "qos0":
        return Flow(0, 1, 1, 1, 1, p.messages)
    if name == "qos1":
        return Flow(1, 1, 1, 1, 1, p.qos1_messages)
    if name == "qos2":
        return Flow(2, 1, 1, 1, 1, p.qos2_messages)
    if name == "fanin":
        n = p.fanin_publishers
        return Flow(0, n, min(2, n), 1, 1, max(1, p.messages // n))
    if name == "fanout":
        n = p.fanout_subscribers
        return Flow(0, 1, 1, n, min(2, n), max(1, p.messages // n))
    if name == "latency":
        return Flow(0, 1, 1, 1, 1, max(1, int(p.rate * p.latency_seconds)), rate=p.rate)
    raise ValueError(name)


def _entry(fn: Callable[[Connection, Any], None], conn: Connection, spec: object) -> None:
    # Ctrl-C is the coordinator's business: it stops the workers in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fn(conn, spec)


class _Workers:
    """Forked workers and their pipes; never outlive the `with` block."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("fork")
        self.items: list[tuple[str, mp.process.BaseProcess, Connection]] = []

    def start(self, role: str, fn: Callable[[Connection, Any], None], spec: object) -> None:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_entry, args=(fn, child, spec), daemon=True)
        proc.start()
        child.close()
        self.items.append((role, proc, parent))

    def gather(self, roles: set[str], kind: str, timeout: float) -> list[dict[str, Any]]:
        """One ("kind", payload) message from every worker of the given roles."""
        pending = {conn: role for role, _, conn in self.items if role in roles}
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FlowError(f"{sorted(set(pending.values()))} did not report {kind!r}")
            for conn in wait(list(pending), left):
                assert isinstance(conn, Connection)
                try:
                    what, payload = conn.recv()
                except EOFError as exc:
                    raise FlowError(f"{pending[conn]} worker died") from exc
                if what == "error":
                    raise FlowError(f"{pending[conn]}: {payload}")
                if what != kind:
                    raise FlowError(f"{pending[conn]}: expected {kind!r}, got {what!r}")
                out.append(payload or {})
                del pending[conn]
        return out

    def send(self, roles: set[str], message: str) -> None:
        for role, _, conn in self.items:
            if role in roles:
                with contextlib.suppress(OSError):
                    conn.send(message)

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.send({"pub", "sub", "storm"}, "stop")
        for _, proc, conn in self.items:
            proc.join(3)
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
            conn.close()


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def run_flow(r: Running, name: str, p: Params, tag: str) -> dict[str, Any]:
    flow = flow_for(name, p)
    topics = (
        ["bench/t/1"]
        if flow.publishers == 1
        else [f"bench/t/{i:02d}" for i in range(flow.publishers)]
    )
    topic_filter = topics[0] if flow.publishers == 1 else "bench/t/+"
    packet_size = len(wire.publish(topics[0], bytes(p.payload), flow.qos, 1 if flow.qos else None))
    expected_each = flow.messages * flow.publishers
    latency = flow.rate > 0
    limit = p.time_limit
    with _Workers() as w:
        for i, n in enumerate(_split(flow.subscribers, flow.sub_procs)):
            spec = SubSpec(
                r.endpoint, f"{tag}-s{i}", n, topic_filter, flow.qos, expected_each,
                packet_size, p.payload, latency, limit,
            )  # fmt: skip
            w.start("sub", loadgen.subscriber, spec)
        w.gather({"sub"}, "ready", 30)
        chunks = _split(flow.publishers, flow.pub_procs)
        first = 0
        for i, n in enumerate(chunks):
            pspec = PubSpec(
                r.endpoint, f"{tag}-p{i}", tuple(topics[first : first + n]), flow.qos,
                flow.messages, p.payload, p.batch, p.window, flow.rate, limit, p.tick_ms,
            )  # fmt: skip
            first += n
            w.start("pub", loadgen.publisher, pspec)
        w.gather({"pub"}, "ready", 30)
        cpu0 = cpu_seconds(r.pid)
        w.send({"sub"}, "go")
        w.send({"pub"}, "go")
        subs = w.gather({"sub"}, "result", limit + 10)
        cpu1 = cpu_seconds(r.pid)
        pubs = w.gather({"pub"}, "result", 10)
    delivered = sum(s["received"] for s in subs)
    expected = expected_each * flow.subscribers
    t_start = min(x["t_start"] for x in pubs)
    t_end = max(s["t_last"] for s in subs) or time.monotonic()
    elapsed = max(t_end - t_start, 1e-9)
    out: dict[str, Any] = {
        "expected": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "errors": sum(s["errors"] for s in subs),
        "published": sum(x["sent"] for x in pubs),
        "seconds": round(elapsed, 4),
        "msgs_per_s": delivered / elapsed,
        "cpu_seconds": round(cpu1 - cpu0, 3),
        "cpu_us_per_msg": (cpu1 - cpu0) * 1e6 / delivered if delivered else None,
        # the busiest generator process of each role, as a share of one core over the run
        "pub_core_share": round(max(x["cpu_s"] for x in pubs) / elapsed, 3),
        "sub_core_share": round(max(x["cpu_s"] for x in subs) / elapsed, 3),
    }
    if latency:
        lat = array("q")
        for s in subs:
            lat.frombytes(s["latency_ns"])
        values = sorted(v / 1e6 for v in lat)
        pub = pubs[0]
        out.update(
            offered_rate=flow.rate,
            achieved_rate=pub["sent"] / max(pub["t_end"] - pub["t_start"], 1e-9),
            p50_ms=percentile(values, 50),
            p99_ms=percentile(values, 99),
            p999_ms=percentile(values, 99.9),
            max_ms=values[-1] if values else None,
        )
    return out


def _warm(r: Running) -> None:
    """One full connect first: password cache warm, lazy imports and allocations done."""
    open_client(r.endpoint, "bench-warm", r.endpoint.context()).close()


def run_memory(r: Running, p: Params, tag: str) -> dict[str, Any]:
    _warm(r)
    time.sleep(0.5)
    rss0 = rss_bytes(r.pid)
    ctx = r.endpoint.context()
    socks = []
    failed = 0

    def one(i: int) -> Any:
        try:
            return open_client(r.endpoint, f"{tag}-m{i}", ctx)
        except (OSError, ConnectionError) as exc:
            return exc

    deadline = time.monotonic() + p.time_limit * 4
    try:
        with ThreadPoolExecutor(4) as ex:
            for res in ex.map(one, range(p.connections)):
                if isinstance(res, BaseException):
                    failed += 1
                else:
                    socks.append(res)
                if time.monotonic() > deadline:
                    break
        time.sleep(1.0)
        rss1 = rss_bytes(r.pid)
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
    n = len(socks)
    return {
        "connections": n,
        "failed": failed,
        "rss_before_mib": round(rss0 / 2**20, 2),
        "rss_after_mib": round(rss1 / 2**20, 2),
        "kib_per_conn": (rss1 - rss0) / 1024 / n if n else None,
    }


def run_storm(r: Running, p: Params, tag: str, resume: bool) -> dict[str, Any]:
    """Every client connects as the benchmark user: after _warm() its password is in the
    target's cache, so the storm measures the warm path (TLS + CONNECT, no argon2).

    Besides the rate it reports who used the CPU: the target (``target_cpu_ms_per_connect``,
    and ``target_core_share`` of one core over the storm) and the generator's four client
    processes (``gen_cores``, from their rusage once reaped). When target and generator
    together use about every core of the machine, the rate is a bound set by the machine;
    ``target_connects_per_core_s`` (1000 / target ms per connect) is what one fully busy
    core of the target would do.
    """
    _warm(r)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with _Workers() as w:
        for i, n in enumerate(_split(p.storm_connections, p.storm_workers)):
            w.start(
                "storm",
                loadgen.storm,
                StormSpec(r.endpoint, f"{tag}-c{i}", n, resume, p.time_limit),
            )
        w.gather({"storm"}, "ready", 30)
        cpu0 = cpu_seconds(r.pid)
        w.send({"storm"}, "go")
        res = w.gather({"storm"}, "result", p.time_limit + 15)
        cpu1 = cpu_seconds(r.pid)
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    gen_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    summary = storm_summary(res, cpu1 - cpu0, "target")
    ok, elapsed = summary["connects"], summary.pop("elapsed")
    return {
        "resume": resume,
        **summary,
        "reused": sum(x["reused"] for x in res),
        "target_connects_per_core_s": ok / (cpu1 - cpu0) if cpu1 > cpu0 else None,
        "gen_cores": round(gen_cpu / elapsed, 3),
    }


def storm_summary(res: list[dict[str, Any]], cpu: float, who: str) -> dict[str, Any]:
    """Connect-storm figures from the storm workers' results and ``cpu`` seconds that
    ``who`` (the process under test) spent meanwhile; ``elapsed`` is for the caller."""
    times = array("d")
    for x in res:
        times.frombytes(x["times"])
    ok = len(times)
    elapsed = max(max(x["t_end"] for x in res) - min(x["t_start"] for x in res), 1e-9)
    ms = sorted(t * 1000 for t in times)
    return {
        "connects": ok,
        "failed": sum(x["failed"] for x in res),
        "connects_per_s": ok / elapsed,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        f"{who}_cpu_ms_per_connect": cpu * 1000 / ok if ok else None,
        f"{who}_core_share": round(cpu / elapsed, 3),
        "elapsed": elapsed,
    }
