"""Hypothesis profile sized for a loaded 2-core machine."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "codec",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("codec")
