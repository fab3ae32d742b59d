"""Smoke test of the benchmark harness against real Mosquitto and the bare relay.

Tiny message counts (about a second of load): it proves the harness measures what it says
(every QoS 1 message arrives, boundaries check out, the report carries its fields), not
how fast anything is.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import wire
from benchmarks.loadgen import stride_check
from benchmarks.targets import mosquitto_binary

REPO = Path(__file__).resolve().parents[2]


def test_split_finds_frames_and_keeps_the_incomplete_tail() -> None:
    big = wire.publish("bench/t/1", bytes(300), qos=1, packet_id=7)  # 2-byte length
    stream = wire.publish("bench/t/1", b"x" * 64) + big + wire.ack(wire.PUBACK, 9)
    for cut in range(len(stream) + 1):
        frames, pos = wire.split(stream[:cut])
        ends = [end for _, _, end in frames]
        assert all(e <= cut for e in ends)
        assert pos == (ends[-1] if ends else 0)
    frames, pos = wire.split(stream)
    assert [f >> 4 for f, _, _ in frames] == [wire.PUBLISH, wire.PUBLISH, wire.PUBACK]
    assert pos == len(stream)
    first, body, end = frames[1]
    assert wire.publish_fields(stream, first, body, end) == (7, end - 300)


def _stride_errors(stream: bytes, chunk_sizes: list[int]) -> int:
    size = len(wire.publish("bench/t/1", bytes(64)))
    off = bad = pos = 0
    for n in chunk_sizes:
        errors, off = stride_check(stream[pos : pos + n], off, size, 0x30, size - 2)
        bad += errors
        pos += n
    assert pos >= len(stream)
    return bad


def test_stride_check_holds_across_any_chunking_and_catches_a_shifted_stream() -> None:
    rng = random.Random(7)
    stream = wire.publish("bench/t/1", bytes(64)) * 300
    for _ in range(50):
        chunks: list[int] = []
        while sum(chunks) < len(stream):
            chunks.append(rng.randint(1, 400))
        assert _stride_errors(stream, chunks) == 0
    shifted = stream[:700] + b"\x30" + stream[700:]  # one stray byte: every later packet moves
    assert _stride_errors(shifted, [333] * 200) > 0


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_harness_against_direct_broker_and_bare_relay(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "qos0", "qos1", "latency",
         "--targets", "direct,bare-relay", "--reps", "1", "--scale", "0.02",
         "--time-limit", "10", "--out", str(tmp_path), "--no-plot"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [path] = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())

    assert doc["targets"] == {"direct": "ok", "bare-relay": "ok"}
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["python"]
    assert doc["date"] and not doc["interrupted"]

    for scenario in ("qos0", "qos1", "latency"):
        runs = doc["scenarios"][scenario]["runs"]
        assert {r["target"] for r in runs} == {"direct", "bare-relay"}
        for run in runs:
            result = run["result"]
            assert result["errors"] == 0
            if scenario != "qos0":  # QoS 0 may legally drop; QoS 1 must not
                assert result["delivered"] == result["expected"] > 0
            assert result["msgs_per_s"] > 0
            assert result["cpu_us_per_msg"] is not None

    qos1 = doc["scenarios"]["qos1"]["summary"]
    assert qos1["direct"]["lost"] == 0 and qos1["bare-relay"]["lost"] == 0
    assert qos1["direct"]["msgs_per_s_x_bare-relay"] > 0
    # present, but may be None: a tiny run can cost the relay under one 10 ms clock tick
    assert "cpu_us_per_msg_x_bare-relay" in qos1["direct"]

    latency = doc["scenarios"]["latency"]["summary"]["bare-relay"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["p999_ms"]
    assert (
        doc["scenarios"]["latency"]["summary"]["direct"]["p99_ms_added_ms_bare-relay"] is not None
    )
    assert set(doc["goals"]) >= {"qos0_throughput_vs_bare_relay", "p99_added_latency_ms"}
    assert "msgs_per_s" in done.stdout  # the printed table


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_a_target_that_cannot_start_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_HAPROXY": str(tmp_path / "none")}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "qos0", "--targets", "direct,haproxy",
         "--reps", "1", "--scale", "0.01", "--out", str(tmp_path), "--no-plot"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [path] = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["targets"]["direct"] == "ok"
    assert doc["targets"]["haproxy"].startswith("unavailable: haproxy is not installed")
    assert [r["target"] for r in doc["scenarios"]["qos0"]["runs"]] == ["direct"]
    assert "target haproxy: unavailable" in done.stdout
