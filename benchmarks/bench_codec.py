"""Framing + topic-peek throughput of mqttgate.codec on a stream of QoS 0 PUBLISHes.

Plain script: ``python benchmarks/bench_codec.py [--packets N] [--chunk BYTES]``. Prints a
table of packets/s for the codec and for a baseline in the same run: a loop that only
slices the stream at precomputed offsets, i.e. the floor any pure-Python framer pays.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from functools import partial

from mqttgate.codec import FrameReader, Publish, peek_publish

PAYLOAD = bytes(range(64))


def make_stream(level: int, count: int) -> tuple[bytes, list[tuple[int, int]]]:
    packets = [
        Publish(f"sensors/building-{i % 50}/temp", PAYLOAD).encode(level) for i in range(count)
    ]
    offsets = []
    pos = 0
    for pkt in packets:
        tl = (pkt[2] << 8) | pkt[3]
        offsets.append((pos + 4, pos + 4 + tl))
        pos += len(pkt)
    return b"".join(packets), offsets


def chunks(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def run_codec(parts: list[bytes], level: int) -> int:
    reader = FrameReader(protocol_level=level)
    feed = reader.feed
    count = 0
    for part in parts:
        frames = feed(part)
        buf = reader.buffer
        for first, _start, body, end in frames:
            if first >> 4 == 3:
                peek_publish(buf, body, end, first, level)
        count += len(frames)
    return count


def run_baseline(stream: bytes, offsets: list[tuple[int, int]]) -> int:
    count = 0
    for ts, te in offsets:
        stream[ts:te]
        count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=65_536, help="bytes per feed() call")
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {args.packets} packets, "
        f"best of {args.repeat} interleaved runs"
    )
    cases: list[tuple[str, Callable[[], int]]] = []
    for level, name in ((4, "3.1.1"), (5, "5.0")):
        stream, offsets = make_stream(level, args.packets)
        parts = chunks(stream, args.chunk)
        odd = chunks(stream, 1000)
        cases += [
            (f"baseline slice at known offsets ({name})", partial(run_baseline, stream, offsets)),
            (f"FrameReader+peek, {args.chunk} B chunks ({name})", partial(run_codec, parts, level)),
            (f"FrameReader+peek, 1 chunk ({name})", partial(run_codec, [stream], level)),
            (f"FrameReader+peek, 1000 B chunks ({name})", partial(run_codec, odd, level)),
        ]
    # Interleave the repeats so that load from other processes hits every case alike.
    # Wall time and CPU time: on a shared machine the process also waits for a core, and
    # CPU time (process_time) shows what the code itself costs.
    wall = dict.fromkeys(range(len(cases)), float("inf"))
    cpu = dict.fromkeys(range(len(cases)), float("inf"))
    for _ in range(args.repeat):
        for i, (label, fn) in enumerate(cases):
            c0, t0 = time.process_time(), time.perf_counter()
            n = fn()
            wall[i] = min(wall[i], time.perf_counter() - t0)
            cpu[i] = min(cpu[i], time.process_time() - c0)
            assert n == args.packets, (label, n)
    n = args.packets
    print(f"{'case':46} {'packets/s':>12} {'ns/packet':>10} {'packets/CPU-s':>14}")
    for i, (label, _fn) in enumerate(cases):
        print(f"{label:46} {n / wall[i]:12,.0f} {wall[i] / n * 1e9:10.0f} {n / cpu[i]:14,.0f}")


if __name__ == "__main__":
    main()
