"""Summaries (medians, paired ratios), goals from issue 7, table, JSON and plot."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from .targets import REPO, haproxy_binary, mosquitto_binary

REFERENCES = ("bare-relay", "haproxy")

# scenario -> metrics summarised as medians; the first ones also get ratios to references
#: The connect storm's figures, with and without TLS session resumption.
_STORM_FIGURES = (
    "connects_per_s",
    "p50_ms",
    "p99_ms",
    "target_cpu_ms_per_connect",
    "target_connects_per_core_s",
    "target_core_share",
    "gen_cores",
)

METRICS: dict[str, tuple[str, ...]] = {
    "qos0": ("msgs_per_s", "cpu_us_per_msg"),
    "qos1": ("msgs_per_s", "cpu_us_per_msg"),
    "qos2": ("msgs_per_s", "cpu_us_per_msg"),
    "fanin": ("msgs_per_s", "cpu_us_per_msg"),
    "fanout": ("msgs_per_s", "cpu_us_per_msg"),
    "latency": ("p50_ms", "p99_ms", "p999_ms", "achieved_rate", "cpu_us_per_msg"),
    "memory": ("kib_per_conn",),
    "connect": _STORM_FIGURES,
    "connect-resume": _STORM_FIGURES,
}
RATIO_METRICS = {
    "msgs_per_s",
    "cpu_us_per_msg",
    "kib_per_conn",
    "connects_per_s",
    "target_cpu_ms_per_connect",
}
DIFF_METRICS = {"p50_ms", "p99_ms", "p999_ms"}  # latency: added milliseconds over the reference


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(scenario: str, runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per target: median of each metric over the repetitions, plus ratios (or added ms)
    against each reference computed per repetition (the runs closest in time) and then
    taking the median, which cancels most of the drift of a shared machine."""
    metrics = METRICS[scenario]
    by_target: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_target.setdefault(run["target"], []).append(run)
    summary: dict[str, dict[str, Any]] = {}
    for target, items in by_target.items():
        ok = [r["result"] for r in items if "result" in r]
        s: dict[str, Any] = {"runs": len(items), "failed_runs": len(items) - len(ok)}
        for m in metrics:
            s[m] = _median([r.get(m) for r in ok])
        for key in ("lost", "errors", "failed"):
            if ok and key in ok[0]:
                s[key] = sum(r.get(key) or 0 for r in ok)
        for ref in REFERENCES:
            if ref == target or ref not in by_target:
                continue
            ref_by_rep = {r["rep"]: r.get("result") for r in by_target[ref]}
            for m in metrics:
                if m not in RATIO_METRICS and m not in DIFF_METRICS:
                    continue
                paired = []
                for r in items:
                    mine, theirs = r.get("result"), ref_by_rep.get(r["rep"])
                    if not mine or not theirs or mine.get(m) is None or not theirs.get(m):
                        continue
                    if m in RATIO_METRICS:
                        paired.append(mine[m] / theirs[m])
                    else:
                        paired.append(mine[m] - theirs[m])
                suffix = "x" if m in RATIO_METRICS else "added_ms"
                s[f"{m}_{suffix}_{ref}"] = _median(paired)
        summary[target] = s
    return summary


def goals(summaries: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The acceptance targets of issue 7 for mqttgate, judged on this run's numbers."""

    def get(scenario: str, key: str) -> Any:
        return summaries.get(scenario, {}).get("mqttgate", {}).get(key)

    def check(value: Any, ok: bool | None, want: str) -> dict[str, Any]:
        return {"value": value, "want": want, "pass": None if value is None else ok}

    out: dict[str, Any] = {}
    v = get("qos0", "msgs_per_s_x_bare-relay")
    out["qos0_throughput_vs_bare_relay"] = check(v, v is not None and v >= 0.95, ">= 0.95x")
    v = get("qos0", "cpu_us_per_msg_x_bare-relay")
    out["cpu_per_msg_vs_bare_relay"] = check(v, v is not None and v <= 1.3, "<= 1.3x")
    v = get("qos0", "cpu_us_per_msg_x_haproxy")
    out["cpu_per_msg_vs_haproxy"] = check(v, v is not None and v < 1.0, "< 1.0x")
    v = get("latency", "p99_ms_added_ms_bare-relay")
    out["p99_added_latency_ms"] = check(v, v is not None and v <= 1.0, "<= 1 ms")
    v = get("memory", "kib_per_conn_x_bare-relay")
    out["idle_memory_vs_bare_relay"] = check(v, v is not None and v <= 1.2, "<= 1.2x")
    v = get("connect", "connects_per_s")
    out["connect_storm_per_s"] = check(v, v is not None and v >= 500, ">= 500/s")
    return out


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def machine_facts() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mosq, hap = mosquitto_binary(), haproxy_binary()
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
        "mosquitto": _first_line([mosq, "-h"]) if mosq else None,
        "haproxy": _first_line([hap, "-v"]) if hap else None,
    }
    facts["git_commit"] = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    # uncommitted changes in the code under test make the commit an approximation
    facts["git_dirty_source"] = bool(
        _first_line(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "codec", "policy", "proxy"]
        )
    )
    try:
        import uvloop

        facts["uvloop"] = getattr(uvloop, "__version__", None)
    except ImportError:
        facts["uvloop"] = None
    return facts


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def table(summaries: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines: list[str] = []
    for scenario, summary in summaries.items():
        metrics = METRICS[scenario]
        extra = sorted(
            {k for s in summary.values() for k in s if k.endswith(REFERENCES) and "_x_" in k}
            | {k for s in summary.values() for k in s if "added_ms" in k and "p99_ms" in k}
        )
        cols = ["target", *metrics, *extra, "lost", "errors", "failed", "failed_runs"]
        cols = [c for c in cols if c == "target" or any(c in s for s in summary.values())]
        rows = [[t, *(_fmt(s.get(c)) for c in cols[1:])] for t, s in summary.items()]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        lines.append(f"\n== {scenario}")
        lines.append("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
        for r in rows:
            lines.append("  ".join(x.rjust(w) for x, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def plot(path: Path, summaries: dict[str, dict[str, dict[str, Any]]], title: str) -> bool:
    """Latency percentiles per target and CPU us/msg per target; False if matplotlib is
    missing (it is an optional 'bench' extra) or there is nothing to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    lat = summaries.get("latency", {})
    cpu = summaries.get("qos0", {})
    if not lat and not cpu:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    names = list(lat)
    for i, (key, label) in enumerate((("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))):
        xs = [j + (i - 1) * 0.27 for j in range(len(names))]
        ax.bar(xs, [lat[n].get(key) or 0 for n in names], width=0.27, label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.set_title("QoS 0 latency at fixed rate (log scale)")
    ax.legend()
    ax = axes[1]
    names = list(cpu)
    ax.bar(names, [cpu[n].get("cpu_us_per_msg") or 0 for n in names], color="tab:gray")
    ax.set_ylabel("us of CPU per delivered message")
    ax.set_title("QoS 0 CPU per message (broker for 'direct', else the proxy)")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
