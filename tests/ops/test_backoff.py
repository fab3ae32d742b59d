"""AuthBackoff and PerUserLimiter: brute force slows down, honest typos do not."""

from __future__ import annotations

import pytest
from mqttgate.proxy.backoff import AuthBackoff, PerUserLimiter, address_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_few_failures_are_not_delayed() -> None:
    backoff = AuthBackoff(threshold=5, clock=FakeClock())
    for _ in range(4):
        backoff.failure("192.0.2.1")
        assert backoff.delay_for("192.0.2.1") == 0.0


def test_brute_force_gets_exponentially_slower_up_to_the_cap() -> None:
    backoff = AuthBackoff(threshold=3, base_delay=0.5, max_delay=4.0, clock=FakeClock())
    delays = []
    for _ in range(8):
        backoff.failure("192.0.2.1")
        delays.append(backoff.delay_for("192.0.2.1"))
    assert delays == [0.0, 0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay_for("192.0.2.2") == 0.0  # other addresses are untouched


def test_huge_failure_counts_stay_at_max_delay() -> None:
    backoff = AuthBackoff(threshold=1, base_delay=1.0, max_delay=30.0, clock=FakeClock())
    for _ in range(2000):
        backoff.failure("192.0.2.1")
    assert backoff.delay_for("192.0.2.1") == 30.0


def test_success_clears_and_window_expires() -> None:
    clock = FakeClock()
    backoff = AuthBackoff(threshold=1, base_delay=1.0, window=60.0, clock=clock)
    backoff.failure("192.0.2.1")
    assert backoff.delay_for("192.0.2.1") == 1.0
    backoff.success("192.0.2.1")
    assert backoff.delay_for("192.0.2.1") == 0.0
    backoff.failure("192.0.2.1")
    clock.now += 61.0
    assert backoff.delay_for("192.0.2.1") == 0.0
    backoff.failure("192.0.2.1")  # counting restarts after expiry
    assert backoff.delay_for("192.0.2.1") == 1.0


def test_memory_is_bounded_by_evicting_the_oldest() -> None:
    backoff = AuthBackoff(threshold=1, max_entries=3, clock=FakeClock())
    for i in range(10):
        backoff.failure(f"192.0.2.{i}")
    assert len(backoff) == 3
    assert backoff.delay_for("192.0.2.0") == 0.0  # evicted
    assert backoff.delay_for("192.0.2.9") > 0.0


def test_recent_failure_protects_an_entry_from_eviction() -> None:
    backoff = AuthBackoff(threshold=1, max_entries=2, clock=FakeClock())
    backoff.failure("192.0.2.1")
    backoff.failure("192.0.2.2")
    backoff.failure("192.0.2.1")  # now the most recent
    backoff.failure("192.0.2.3")
    assert backoff.delay_for("192.0.2.1") > 0.0
    assert backoff.delay_for("192.0.2.2") == 0.0


def test_ipv6_clients_share_their_slash_64_and_mapped_v4_counts_as_v4() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("2001:db8:0:1::1") != address_key("2001:db8::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("not-an-ip") == "not-an-ip"
    backoff = AuthBackoff(threshold=2, clock=FakeClock())
    backoff.failure("2001:db8::1")
    backoff.failure("2001:db8::2")
    assert backoff.delay_for("2001:db8::3") > 0.0


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        AuthBackoff(threshold=0)
    with pytest.raises(ValueError):
        PerUserLimiter(0)


def test_per_user_limiter_counts_live_connections() -> None:
    limiter = PerUserLimiter(2)
    assert limiter.acquire("alice")
    assert limiter.acquire("alice")
    assert not limiter.acquire("alice")
    assert limiter.acquire("bob")
    assert limiter.count("alice") == 2
    limiter.release("alice")
    assert limiter.acquire("alice")
    for _ in range(5):  # over-release must not create credit
        limiter.release("bob")
    assert limiter.count("bob") == 0
    assert limiter.acquire("bob")
    assert limiter.acquire("bob")
    assert not limiter.acquire("bob")


def test_per_user_limiter_without_limit_only_counts() -> None:
    limiter = PerUserLimiter(None)
    for _ in range(100):
        assert limiter.acquire("alice")
    assert limiter.count("alice") == 100
    for _ in range(100):
        limiter.release("alice")
    assert limiter.count("alice") == 0
