"""Metric names and labels of docs/design.md; counts move exactly once per event."""

from __future__ import annotations

from mqttgate.proxy.metrics import ConnStats, Metrics
from prometheus_client import CollectorRegistry, generate_latest

DESIGN_NAMES = {
    "mqttgate_connections_active",
    "mqttgate_connections_total",
    "mqttgate_tls_handshake_failures_total",
    "mqttgate_auth_total",
    "mqttgate_publish_total",
    "mqttgate_subscribe_filters_total",
    "mqttgate_bytes_total",
    "mqttgate_upstream_connect_failures_total",
    "mqttgate_policy_reloads_total",
    "mqttgate_connect_duration_seconds",
}


def test_every_design_metric_exists_on_the_given_registry() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    names = {m.name for m in registry.collect()}
    # prometheus_client reports counters without their _total suffix
    assert {n.removesuffix("_total") for n in DESIGN_NAMES} == names


def test_flush_moves_counts_once() -> None:
    metrics = Metrics(CollectorRegistry())
    stats = ConnStats()
    stats.bytes_in, stats.bytes_out = 100, 7
    stats.pub_in_allowed, stats.pub_in_denied, stats.pub_out_denied = 3, 1, 2
    stats.sub_allowed, stats.sub_denied = 4, 5
    metrics.flush(stats)
    metrics.flush(stats)  # nothing new: nothing moves
    v = metrics.value
    assert v("mqttgate_bytes_total", {"direction": "in"}) == 100
    assert v("mqttgate_bytes_total", {"direction": "out"}) == 7
    assert v("mqttgate_publish_total", {"direction": "in", "decision": "allowed"}) == 3
    assert v("mqttgate_publish_total", {"direction": "in", "decision": "denied"}) == 1
    assert v("mqttgate_publish_total", {"direction": "out", "decision": "denied"}) == 2
    assert v("mqttgate_subscribe_filters_total", {"decision": "allowed"}) == 4
    assert v("mqttgate_subscribe_filters_total", {"decision": "denied"}) == 5
    assert stats.bytes_in == 0 and stats.sub_denied == 0


def test_usernames_appear_only_with_per_user() -> None:
    plain = Metrics(CollectorRegistry())
    plain.auth("password", "success", "alice")
    assert b"alice" not in generate_latest(plain.registry)
    per_user = Metrics(CollectorRegistry(), per_user=True)
    per_user.auth("password", "success", "alice")
    assert (
        per_user.value(
            "mqttgate_auth_total", {"method": "password", "result": "success", "user": "alice"}
        )
        == 1
    )
