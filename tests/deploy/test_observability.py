"""Alerting rules, the Grafana dashboard and the scrape config refer to real metrics.

Every PromQL expression is checked for balanced brackets and for metric names, label names
and label values that docs/design.md documents; a live test then scrapes a running
mqttgate and requires every referenced metric family to be exported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .manifests import DEPLOY, REPO
from .pod import SHIPPED_METRICS_BIND, SHIPPED_MQTTS_BIND, SHIPPED_UPSTREAM, pod_files
from .procs import free_port, http_get, mqttgate, tail, wait_for_http

ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
SCRAPE = DEPLOY / "prometheus" / "scrape-config.yaml"
DASHBOARD = DEPLOY / "grafana" / "mqttgate-dashboard.json"
# Labels Prometheus itself attaches (target labels) and histogram buckets.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "le"}
# Metrics from elsewhere that the rules may use: the scrape's own and kube-state-metrics.
FOREIGN_METRICS = {"up": {"job", "instance"}, "kube_pod_status_ready": {"condition", "pod"}}
PROMQL_WORDS = {
    "sum", "by", "without", "rate", "increase", "irate", "max", "min", "avg", "count",
    "histogram_quantile", "and", "or", "unless", "offset", "bool", "on", "ignoring",
    "group_left", "group_right", "label_values", "topk", "bottomk", "abs", "clamp_min",
    "delta", "deriv", "absent", "vector", "scalar", "time", "changes", "resets",
}  # fmt: skip


def documented_metrics() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(metric -> label names, label -> documented values) from docs/design.md."""
    text = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("### Metrics", 1)[1].split("\n#", 1)[0]
    prefix = re.search(r"prefix `(\w+)`", section)
    assert prefix, "design.md names the metric prefix"
    listing, _, values_part = section.partition("Label values:")
    metrics: dict[str, set[str]] = {}
    for name, labels in re.findall(r"`(\w+)(?:\{([\w,\s]+)\})?`", listing):
        if name == prefix.group(1):
            continue
        metrics[prefix.group(1) + name] = {x.strip() for x in labels.split(",") if x.strip()}
    values: dict[str, set[str]] = {}
    for label, alternatives in re.findall(
        r"`(\w+)` = ((?:`[\w]+`(?:\s*\([^)]*\))?\s*\|?\s*)+)", values_part
    ):
        values[label] = set(re.findall(r"`(\w+)`", alternatives))
    return metrics, values


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    for variable in data["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(<selector>, <label>) is Grafana's, not PromQL: check the selector.
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert selector, variable["definition"]
            exprs.append(selector.group(1))
    return exprs


def all_expressions() -> list[str]:
    return [rule["expr"] for rule in alert_rules()] + dashboard_expressions()


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in _strip_strings(expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))


def metric_references(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric name, [(label, operator, value), ...]) for every selector in ``expr``.

    A light PromQL reading: label lists of by/without/on/ignoring, range and offset
    durations, strings and label matchers are blanked out (same length, so positions keep
    pointing into ``expr``); what is left as an identifier that is neither a keyword nor a
    function call is a metric name.
    """
    masked = re.sub(r'"(?:[^"\\]|\\.)*"', _blank, expr)
    masked = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", _blank, masked
    )
    masked = re.sub(r"\[[^\]]*\]", _blank, masked)
    masked = re.sub(r"\boffset\s+\w+", _blank, masked)
    masked = re.sub(r"\{[^{}]*\}", lambda m: "{" + " " * (len(m.group(0)) - 2) + "}", masked)
    found = []
    for match in re.finditer(r"(?<![\w$.])[a-zA-Z_:][\w:]*", masked):
        name = match.group(0)
        rest = masked[match.end() :].lstrip()
        if name in PROMQL_WORDS or rest.startswith("("):
            continue
        matchers: list[tuple[str, str, str]] = []
        if rest.startswith("{"):
            brace = masked.index("{", match.end())
            close = masked.index("}", brace)
            selector = expr[brace + 1 : close]
            matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', selector)
        found.append((name, matchers))
    return found


def test_alert_rules_are_well_formed() -> None:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(data) == {"groups"}
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)) and len(names) >= 4
    for rule in alert_rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["for"]
    text = " ".join(rule["expr"] for rule in alert_rules())
    # The issue's four concerns each have a rule.
    for needle in (
        "mqttgate_auth_total",
        "mqttgate_policy_reloads_total",
        "mqttgate_upstream_connect_failures_total",
        "up{",
        "kube_pod_status_ready",
    ):
        assert needle in text, needle


def test_dashboard_is_importable_and_covers_the_issue() -> None:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert data["uid"] and data["title"] and isinstance(data["schemaVersion"], int)
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
    text = " ".join(dashboard_expressions())
    for metric in (
        "connections_active",
        "connections_total",
        "auth_total",
        "publish_total",
        "subscribe_filters_total",
        "bytes_total",
        "policy_reloads_total",
        "tls_handshake_failures_total",
        "connect_duration_seconds_bucket",
    ):
        assert f"mqttgate_{metric}" in text, metric
    assert "histogram_quantile(0.99" in text


def test_design_md_parser_finds_the_contract() -> None:
    metrics, values = documented_metrics()
    assert metrics["mqttgate_auth_total"] == {"method", "result"}
    assert metrics["mqttgate_connections_active"] == set()
    assert "mqttgate_connect_duration_seconds" in metrics
    assert values["direction"] == {"in", "out"}
    assert values["decision"] == {"allowed", "denied"}
    assert "bad_credentials" in values["result"]


def documented_histograms() -> set[str]:
    text = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    return {"mqttgate_" + name for name in re.findall(r"`(\w+)` \(histogram\)", text)}


def check_expression(expr: str) -> None:
    """Raise AssertionError unless ``expr`` is balanced and names only documented things."""
    assert _balanced(expr), expr
    metrics, values = documented_metrics()
    histograms = documented_histograms()
    references = metric_references(expr)
    assert references, f"no metric found in {expr}"
    for name, matchers in references:
        if name in FOREIGN_METRICS:
            labels = FOREIGN_METRICS[name]
        else:
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in metrics else name
            assert family in metrics, f"{name} is not a documented metric (docs/design.md)"
            assert family == name or family in histograms, f"{name}: {family} is no histogram"
            labels = metrics[family]
        for label, operator, value in matchers:
            assert label in labels | TARGET_LABELS, f"{name} has no label {label}"
            # design.md enumerates `result` for the auth metric; reload results are not listed.
            checked = label in values and name.startswith("mqttgate_")
            if label == "result" and name == "mqttgate_policy_reloads_total":
                checked = False
            if checked:
                alternatives = value.split("|") if operator in {"=~", "!~"} else [value]
                for alternative in alternatives:
                    assert alternative in values[label], f"{name}{{{label}}}: {alternative!r}"


@pytest.mark.parametrize("expr", all_expressions())
def test_expression_is_balanced_and_uses_documented_metrics(expr: str) -> None:
    check_expression(expr)


@pytest.mark.parametrize(
    "bad",
    [
        "sum(rate(mqttgate_auth_failures_total[5m]))",  # no such metric
        'sum(rate(mqttgate_auth_total{user="alice"}[5m]))',  # no such label
        'sum(rate(mqttgate_auth_total{result=~"success|wrong_password"}[5m]))',  # no such value
        'rate(mqttgate_publish_total{direction="inbound"}[5m])',
        "rate(mqttgate_bytes_total_bucket[5m])",  # buckets of a counter
        "histogram_quantile(0.9, sum by (le) (rate(mqttgate_connect_seconds_bucket[5m])))",
        "sum(rate(mqttgate_bytes_total[5m])",
    ],
)
def test_expression_check_rejects_mistakes(bad: str) -> None:
    with pytest.raises(AssertionError):
        check_expression(bad)


def test_expression_reader_finds_metrics_not_keywords() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, job) (rate(mqttgate_connect_duration_seconds_bucket"
        '{job=~"$job"}[$__rate_interval] offset 5m))) and on (job) up == 1'
    )
    assert metric_references(expr) == [
        ("mqttgate_connect_duration_seconds_bucket", [("job", "=~", "$job")]),
        ("up", []),
    ]


def test_balance_check_catches_a_broken_expression() -> None:
    assert not _balanced("sum(rate(mqttgate_auth_total[5m])")
    assert not _balanced("sum(rate(mqttgate_auth_total[5m)))")
    assert _balanced('sum(rate(mqttgate_auth_total{result=~"a(|"}[5m]))')


def test_scrape_config_keeps_the_annotated_metrics_port() -> None:
    data = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    assert data["rule_files"] == ["alerts.yaml"]
    jobs = {job["job_name"]: job for job in data["scrape_configs"]}
    pods = jobs["kubernetes-pods-mqttgate"]
    assert pods["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = {
        tuple(r["source_labels"]): r for r in pods["relabel_configs"] if r.get("action") == "keep"
    }
    assert keep[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]["regex"] == "true"
    assert keep[("__meta_kubernetes_pod_container_port_number",)]["regex"] == "9100"
    address = next(r for r in pods["relabel_configs"] if r.get("target_label") == "__address__")
    joined = "10.0.0.7:8883;9100"
    assert re.fullmatch(address["regex"], joined)
    assert (
        re.sub(address["regex"], address["replacement"].replace("$", "\\"), joined)
        == "10.0.0.7:9100"
    )


def _exported(metrics_text: str) -> set[str]:
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


@pytest.mark.integration
def test_live_metrics_export_every_referenced_metric(tmp_path: Path) -> None:
    """Needs the proxy (mqttgate serve): embedded upstream, config from the pod's ConfigMap."""
    mqtts, metrics_port = free_port(), free_port()
    files = pod_files(
        tmp_path / "pod",
        {
            SHIPPED_MQTTS_BIND: f'"127.0.0.1:{mqtts}"',
            SHIPPED_METRICS_BIND: f'"127.0.0.1:{metrics_port}"',
            SHIPPED_UPSTREAM: '"embedded"',
        },
    )
    log = tmp_path / "mqttgate.log"
    with mqttgate(files.config, log) as process:
        base = f"http://127.0.0.1:{metrics_port}"
        try:
            wait_for_http(f"{base}/healthz", process)
            wait_for_http(f"{base}/readyz", process)
            status, body = http_get(f"{base}/metrics")
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- mqttgate log ---\n{tail(log)}") from None
    assert status == 200
    exported = _exported(body)
    referenced = {
        name
        for expr in all_expressions()
        for name, _ in metric_references(expr)
        if name.startswith("mqttgate_")
    }
    assert referenced, "the rules and dashboard reference no mqttgate metric"
    missing = sorted(referenced - exported)
    assert not missing, f"referenced but not exported: {missing}"
