"""Policy engine micro-benchmarks: decisions per second, users-file load time, password
verification versus the cached path. Plain script; prints a Markdown table.

    .venv/bin/python benchmarks/bench_policy.py [--users 10000] [--perms 50]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mqttgate.policy import (
    Access,
    Authenticator,
    ConnectionPolicy,
    Permission,
    PolicySnapshot,
    User,
    hash_password,
    load_policy,
    topic_matches,
)

rows: list[tuple[str, str]] = []


def report(name: str, value: str) -> None:
    rows.append((name, value))
    print(f"| {name} | {value} |", flush=True)


def per_second(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} /s ({seconds / count * 1e6:.2f} µs each)"


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def pattern_for(i: int) -> str:
    shape = i % 4
    if shape == 0:
        return f"site/{i}/+/data/#"
    if shape == 1:
        return f"site/{i}/line/{i % 100}/status"
    if shape == 2:
        return f"+/device{i}/telemetry/#"
    return f"users/${{username}}/app{i}/+"


def topic_for(i: int) -> str:
    """A topic of the shape of pattern i (allowed when pattern i exists)."""
    shape = i % 4
    if shape == 0:
        return f"site/{i}/x/data/a/b"
    if shape == 1:
        return f"site/{i}/line/{i % 100}/status"
    if shape == 2:
        return f"plant/device{i}/telemetry/t"
    return f"users/bench/app{i}/q"


def big_user(n_patterns: int) -> User:
    perms = tuple(
        Permission(pattern_for(i), Access.READ_WRITE if i % 8 < 6 else Access.READ)
        for i in range(n_patterns)
    )
    return User("bench", "certificate", None, (), perms)


def bench_decisions(n_patterns: int, n_topics: int) -> None:
    user = big_user(n_patterns)
    snap = PolicySnapshot({user.name: user}, Path("bench.yaml"))
    rnd = random.Random(2)
    # i < n_patterns: allowed unless read-only; i >= n_patterns: no pattern, denied.
    topics = [topic_for(rnd.randrange(n_patterns * 2)) for _ in range(n_topics)]
    filters = [t.rsplit("/", 1)[0] + "/#" for t in topics[:2000]]

    start = time.perf_counter()
    conn = ConnectionPolicy(snap, "bench", "c1")
    report(
        f"first connection of a {n_patterns}-pattern user (compile)",
        f"{(time.perf_counter() - start) * 1e3:.1f} ms",
    )
    start = time.perf_counter()
    for _ in range(1000):
        ConnectionPolicy(snap, "bench", "c2")
    report(
        "later connection (shared matchers)", f"{(time.perf_counter() - start) * 1e3:.2f} µs each"
    )

    def cold() -> None:
        c = ConnectionPolicy(snap, "bench", "c3")
        for t in topics:
            c.may_publish(t)

    report(
        f"may_publish cold cache, {n_patterns} patterns", per_second(len(topics), timed(cold, 3))
    )
    allowed = sum(conn.may_publish(t) for t in topics)

    def warm() -> None:
        for t in topics:
            conn.may_publish(t)

    report(
        f"may_publish warm cache ({allowed}/{len(topics)} allowed)",
        per_second(len(topics), timed(warm, 5)),
    )

    def sub_cold() -> None:
        c = ConnectionPolicy(snap, "bench", "c4")
        for f in filters:
            c.may_subscribe(f)

    report(
        f"may_subscribe cold cache, {n_patterns} patterns",
        per_second(len(filters), timed(sub_cold, 3)),
    )

    expanded = [
        p.pattern.replace("${username}", "bench") for p in user.permissions if p.access.can_write
    ]
    sample = topics[:500]

    def linear() -> None:
        for t in sample:
            any(topic_matches(p, t) for p in expanded)

    report(
        f"(reference) linear scan over {len(expanded)} write patterns",
        per_second(len(sample), timed(linear, 1)),
    )


def bench_memory() -> None:
    user = big_user(50)
    snap = PolicySnapshot({user.name: user}, Path("bench.yaml"))
    ConnectionPolicy(snap, "bench", "warmup")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    conns = [ConnectionPolicy(snap, "bench", f"c{i}") for i in range(10_000)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    report(
        "idle ConnectionPolicy memory (10,000 connections)", f"{size / len(conns):.0f} bytes each"
    )


def bench_load(n_users: int, n_perms: int) -> None:
    stored = hash_password("bench password")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "users.yaml"
        lines = ["roles:", "  common:", "    permissions:"]
        lines += [f'      - {{ topic: "common/{j}/#", access: read }}' for j in range(5)]
        lines.append("users:")
        own = n_perms - 5
        for i in range(n_users):
            lines.append(f"  user{i}:")
            if i % 2:
                lines.append("    grant_type: certificate")
            else:
                lines.append("    grant_type: password")
                lines.append(f'    password: "{stored}"')
            lines.append("    roles: [common]")
            lines.append("    permissions:")
            for j in range(own):
                lines.append(f'      - {{ topic: "tenant{i}/dev{j}/+/x/#", access: readWrite }}')
        path.write_text("\n".join(lines) + "\n")
        size = path.stat().st_size
        start = time.perf_counter()
        cpu = time.process_time()
        snap = load_policy(path)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    assert len(snap.users) == n_users
    report(
        f"load users file: {n_users:,} users x {n_perms} permissions ({size / 1e6:.1f} MB)",
        f"{elapsed:.2f} s wall, {cpu:.2f} s CPU",
    )


def bench_auth() -> None:
    stored = hash_password("bench password")
    user = User("alice", "password", stored, (), ())
    snap = PolicySnapshot({"alice": user}, Path("bench.yaml"))
    auth = Authenticator()
    pw = b"bench password"
    n = 5
    start = time.perf_counter()
    for _ in range(n):
        auth._verify(stored, pw)
    report(
        "argon2id verify (argon2-cffi defaults)",
        f"{(time.perf_counter() - start) / n * 1e3:.1f} ms",
    )
    auth.authenticate_password(snap, "alice", pw)
    m = 20_000
    start = time.perf_counter()
    for _ in range(m):
        auth.try_cached(snap, "alice", pw)
    report("try_cached hit (HMAC-SHA256)", f"{(time.perf_counter() - start) / m * 1e6:.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--perms", type=int, default=50)
    parser.add_argument("--patterns", type=int, default=1000)
    args = parser.parse_args()
    print(f"# policy benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# {platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# {cpus} CPUs, load average before the run: {load}")
    print("| measurement | result |\n| --- | --- |")
    bench_decisions(args.patterns, 20_000)
    bench_memory()
    bench_auth()
    bench_load(args.users, args.perms)


if __name__ == "__main__":
    main()
