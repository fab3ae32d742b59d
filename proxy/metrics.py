"""Prometheus metrics of the proxy, bound to a registry chosen by the caller.

Tests and the multi-worker mode each want their own registry, so nothing here touches the
global default registry unless asked to. The hot path never calls into prometheus-client:
connections count locally (see :class:`ConnStats`) and the server flushes the deltas.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Label values, fixed so that dashboards and alerts can rely on them.
AUTH_METHODS = ("password", "certificate")
AUTH_RESULTS = (
    "success",
    "bad_credentials",
    "not_authorized",
    "bad_auth_method",
    "upstream_unavailable",
)
DIRECTIONS = ("in", "out")
DECISIONS = ("allowed", "denied")
TLS_FAILURE_REASONS = (
    "expired",
    "not_yet_valid",
    "unknown_ca",
    "no_certificate",
    "bad_certificate",
    "protocol",
    "timeout",
    "other",
)


class ConnStats:
    """Per-connection event counts, flushed into :class:`Metrics` in bulk.

    Plain integer attributes: incrementing one costs a few nanoseconds, a prometheus
    counter costs a lock. ``flush`` moves the deltas and zeroes them, so a counter moves
    exactly once per event however often it is flushed.
    """

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "pub_in_allowed",
        "pub_in_denied",
        "pub_out_allowed",
        "pub_out_denied",
        "sub_allowed",
        "sub_denied",
    )

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.pub_in_allowed = 0
        self.pub_in_denied = 0
        self.pub_out_allowed = 0
        self.pub_out_denied = 0
        self.sub_allowed = 0
        self.sub_denied = 0


class Metrics:
    """Every metric of docs/design.md, with exactly those names and labels."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, per_user: bool = False
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.per_user = per_user
        r = self.registry
        self.connections_active = Gauge(
            "mqttgate_connections_active",
            "Client connections currently open",
            registry=r,
            multiprocess_mode="livesum",  # summed over live workers; ignored in one process
        )
        self.connections_total = Counter(
            "mqttgate_connections_total",
            "Client TCP connections accepted",
            ["listener"],
            registry=r,
        )
        self.tls_handshake_failures_total = Counter(
            "mqttgate_tls_handshake_failures_total",
            "TLS handshakes that failed, by reason",
            ["reason"],
            registry=r,
        )
        auth_labels = ["method", "result", "user"] if per_user else ["method", "result"]
        self.auth_total = Counter(
            "mqttgate_auth_total", "Authentication outcomes", auth_labels, registry=r
        )
        self.publish_total = Counter(
            "mqttgate_publish_total",
            "PUBLISH packets by direction and policy decision",
            ["direction", "decision"],
            registry=r,
        )
        self.subscribe_filters_total = Counter(
            "mqttgate_subscribe_filters_total",
            "SUBSCRIBE topic filters by policy decision",
            ["decision"],
            registry=r,
        )
        self.bytes_total = Counter(
            "mqttgate_bytes_total", "MQTT bytes relayed, by direction", ["direction"], registry=r
        )
        self.upstream_connect_failures_total = Counter(
            "mqttgate_upstream_connect_failures_total",
            "Failed attempts to connect to the upstream broker",
            registry=r,
        )
        self.policy_reloads_total = Counter(
            "mqttgate_policy_reloads_total", "Policy reloads by result", ["result"], registry=r
        )
        self.connect_duration_seconds = Histogram(
            "mqttgate_connect_duration_seconds",
            "From TCP accept to CONNACK sent to the client",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        # Pre-resolved children: label lookups cost more than the increment itself.
        self._bytes_in = self.bytes_total.labels("in")
        self._bytes_out = self.bytes_total.labels("out")
        self._pub_in_allowed = self.publish_total.labels("in", "allowed")
        self._pub_in_denied = self.publish_total.labels("in", "denied")
        self._pub_out_allowed = self.publish_total.labels("out", "allowed")
        self._pub_out_denied = self.publish_total.labels("out", "denied")
        self._sub_allowed = self.subscribe_filters_total.labels("allowed")
        self._sub_denied = self.subscribe_filters_total.labels("denied")

    def auth(self, method: str, result: str, user: str | None = None) -> None:
        if self.per_user:
            self.auth_total.labels(method, result, user or "").inc()
        else:
            self.auth_total.labels(method, result).inc()

    def flush(self, stats: ConnStats) -> None:
        """Move a connection's counts into the counters and zero them."""
        if stats.bytes_in:
            self._bytes_in.inc(stats.bytes_in)
            stats.bytes_in = 0
        if stats.bytes_out:
            self._bytes_out.inc(stats.bytes_out)
            stats.bytes_out = 0
        if stats.pub_in_allowed:
            self._pub_in_allowed.inc(stats.pub_in_allowed)
            stats.pub_in_allowed = 0
        if stats.pub_in_denied:
            self._pub_in_denied.inc(stats.pub_in_denied)
            stats.pub_in_denied = 0
        if stats.pub_out_allowed:
            self._pub_out_allowed.inc(stats.pub_out_allowed)
            stats.pub_out_allowed = 0
        if stats.pub_out_denied:
            self._pub_out_denied.inc(stats.pub_out_denied)
            stats.pub_out_denied = 0
        if stats.sub_allowed:
            self._sub_allowed.inc(stats.sub_allowed)
            stats.sub_allowed = 0
        if stats.sub_denied:
            self._sub_denied.inc(stats.sub_denied)
            stats.sub_denied = 0

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of a sample (0.0 when absent); for tests and readiness."""
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v
