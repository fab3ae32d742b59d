"""`python -m benchmarks [scenario ...] [options]`: start targets, measure, report."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from . import report
from .certs import make_certs
from .procs import raise_nofile
from .scenarios import (
    ALL_SCENARIOS,
    FLOW_SCENARIOS,
    FlowError,
    Params,
    run_flow,
    run_memory,
    run_storm,
)
from .targets import STARTERS, Env, Running, Unavailable, started

RESULTS = Path(__file__).resolve().parent / "results"
FLOW_TARGETS = ("direct", "bare-relay", "haproxy", "mqttgate")
CONN_TARGETS = ("mosquitto-tls", "bare-relay", "haproxy", "mqttgate")


def targets_for(scenario: str) -> tuple[str, ...]:
    if scenario in FLOW_SCENARIOS:
        return FLOW_TARGETS
    if scenario == "connect":
        return ("direct", *CONN_TARGETS)
    return CONN_TARGETS


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="mqttgate benchmarks: ratios against a bare relay and HAProxy, same run.",
    )
    p.add_argument(
        "scenarios",
        nargs="*",
        default=["all"],
        help=f"any of: all, {', '.join(ALL_SCENARIOS)} (default: all)",
    )
    p.add_argument("--targets", help=f"comma list, subset of {','.join(STARTERS)}")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--memory-reps", type=int, default=1)
    p.add_argument("--scale", type=float, default=1.0, help="multiply message/connection counts")
    p.add_argument("--messages", type=int, help="QoS 0 messages per run")
    p.add_argument("--connections", type=int, help="idle TLS connections (memory), default 2000")
    p.add_argument("--rate", type=float, help="latency mode offered msgs/s (default 20000)")
    p.add_argument("--tick-ms", type=float, help="latency mode: ms between writes (default 1)")
    p.add_argument("--time-limit", type=float, help="bound of one load loop, seconds")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for JSON and PNG")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--plot-from", type=Path, help="only redraw the PNG of a results JSON")
    args = p.parse_args(argv)
    names: list[str] = []
    for s in args.scenarios:
        if s == "all":
            names.extend(ALL_SCENARIOS)
        elif s in ALL_SCENARIOS:
            names.append(s)
        else:
            p.error(f"unknown scenario {s!r}")
    args.scenarios = list(dict.fromkeys(names))
    if args.targets:
        args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        unknown = set(args.targets) - set(STARTERS)
        if unknown:
            p.error(f"unknown targets: {sorted(unknown)}")
    return args


def _params(args: argparse.Namespace) -> Params:
    p = Params().scaled(args.scale) if args.scale != 1.0 else Params()
    if args.messages:
        p = replace(p, messages=args.messages)
    if args.connections:
        p = replace(p, connections=args.connections)
    if args.rate:
        p = replace(p, rate=args.rate)
    if args.tick_ms is not None:
        p = replace(p, tick_ms=args.tick_ms)
    if args.time_limit:
        p = replace(p, time_limit=args.time_limit)
    return p


def _measure(
    env: Env, running: dict[str, Running], scenario: str, target: str, p: Params, tag: str
) -> dict[str, Any]:
    r = running[target]
    if not r.server.alive():
        raise Unavailable(f"{target} exited ({r.server.proc.returncode}): {r.server.log_tail(800)}")
    if scenario in FLOW_SCENARIOS:
        return run_flow(r, scenario, p, tag)
    if scenario == "memory":
        if r.owned:  # a fresh process: earlier load must not pre-grow (or pre-fragment) it
            r.stop()
            running[target] = r = STARTERS[target](env)
        return run_memory(r, p, tag)
    return run_storm(r, p, tag, resume=scenario == "connect-resume")


def _replot(path: Path) -> int:
    doc = json.loads(path.read_text())
    summaries = {name: s["summary"] for name, s in doc["scenarios"].items()}
    m = doc["machine"]
    title = f"mqttgate benchmarks {doc['date']} ({m['nproc']} cores, {m['cpu_model']})"
    png = path.with_suffix(".png")
    if not report.plot(png, summaries, title):
        print("nothing to plot, or matplotlib is missing", file=sys.stderr)
        return 1
    print(f"plot: {png}")
    return 0


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.plot_from:
        return _replot(args.plot_from)
    p = _params(args)
    signal.signal(signal.SIGTERM, _sigterm)
    raise_nofile(max(20000, p.connections * 3 + 1000))
    plan = []
    for s in args.scenarios:
        plan.extend(["connect", "connect-resume"] if s == "connect" else [s])
    wanted = [t for t in STARTERS if any(t in targets_for(s) for s in plan)]
    if args.targets:
        wanted = [t for t in wanted if t in args.targets]
    facts = report.machine_facts()
    started_at = dt.datetime.now(dt.UTC)
    doc: dict[str, Any] = {
        "date": started_at.isoformat(timespec="seconds"),
        "machine": facts,
        "params": asdict(p),
        "reps": args.reps,
        "targets": {},
        "scenarios": {},
    }
    summaries: dict[str, dict[str, dict[str, Any]]] = {}
    all_runs: dict[str, list[dict[str, Any]]] = {}
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="mqttgate-bench-") as tmp:
        env = Env(Path(tmp), make_certs(Path(tmp)))
        try:
            with started(env, wanted) as (running, unavailable):
                for name in wanted:
                    doc["targets"][name] = (
                        "ok" if name in running else f"unavailable: {unavailable[name]}"
                    )
                    print(f"target {name}: {doc['targets'][name][:300]}", flush=True)
                for scenario in plan:
                    names = [t for t in targets_for(scenario) if t in running]
                    reps = args.memory_reps if scenario == "memory" else args.reps
                    runs: list[dict[str, Any]] = []
                    all_runs[scenario] = runs  # partial runs survive an interrupt
                    for rep in range(reps):
                        k = rep % max(1, len(names))
                        for target in names[k:] + names[:k]:  # rotate: no fixed position
                            tag = f"b{os.getpid()}-{scenario}-{target}-{rep}"
                            t0 = time.monotonic()
                            entry: dict[str, Any] = {"rep": rep, "target": target}
                            try:
                                entry["result"] = _measure(env, running, scenario, target, p, tag)
                            except (FlowError, OSError, ConnectionError, Unavailable) as exc:
                                entry["error"] = f"{type(exc).__name__}: {exc}"[:2000]
                                server = running[target].server
                                if not server.alive() and not isinstance(exc, Unavailable):
                                    entry["error"] += f"; it exited: {server.log_tail(800)}"
                            runs.append(entry)
                            shown = entry.get("result") or {"error": entry.get("error")}
                            brief = {
                                k: (round(v, 3) if isinstance(v, float) else v)
                                for k, v in shown.items()
                                if k != "latency_ns"
                            }
                            print(
                                f"{scenario:>14} rep {rep} {target:>13} "
                                f"{time.monotonic() - t0:5.1f}s {brief}",
                                flush=True,
                            )
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted: reporting what was measured", file=sys.stderr)
        finally:
            env.stop_all()
    for scenario, runs in all_runs.items():
        if runs:
            summaries[scenario] = report.summarize(scenario, runs)
            doc["scenarios"][scenario] = {"runs": runs, "summary": summaries[scenario]}
    doc["machine"]["loadavg_end"] = os.getloadavg()
    doc["goals"] = report.goals(summaries)
    doc["interrupted"] = interrupted
    print(report.table(summaries))
    if "mqttgate" in doc["targets"] and summaries:
        print("\n== goals (issue 7), mqttgate")
        for name, g in doc["goals"].items():
            print(f"  {name:34} {report._fmt(g['value']):>10}  want {g['want']:9} pass={g['pass']}")
    name = report.stamp()
    out_json = args.out / f"{name}.json"
    report.write_json(out_json, doc)
    print(f"\nresults: {out_json}")
    if not args.no_plot:
        png = args.out / f"{name}.png"
        title = f"mqttgate benchmarks {doc['date']} ({facts['nproc']} cores, {facts['cpu_model']})"
        try:
            if report.plot(png, summaries, title):
                print(f"plot: {png}")
        except Exception as exc:  # the numbers are saved; a plot can be redrawn from them
            print(f"no plot ({type(exc).__name__}: {exc}); redraw: --plot-from {out_json}")
    return 130 if interrupted else 0
