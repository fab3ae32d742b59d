"""Audit log: one line per event, no secrets, escaped client strings, throttled denials."""

from __future__ import annotations

import inspect
import io
import json
import logging
from collections.abc import Iterator

import pytest
from mqttgate.proxy.audit import (
    AuditLog,
    DenialLimiter,
    configure_logging,
    format_remote,
)


@pytest.fixture(autouse=True)
def restore_mqttgate_logger() -> Iterator[None]:
    """configure_logging changes process-wide state; other test modules must not see it."""
    logger = logging.getLogger("mqttgate")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            logger.removeHandler(handler)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture
def json_stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    return stream


def json_stream_handler(stream: io.StringIO) -> logging.Handler:
    [handler] = [
        h for h in logging.getLogger("mqttgate").handlers if getattr(h, "stream", None) is stream
    ]
    return handler


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_auth_event_is_one_json_line_with_the_documented_fields(json_stream: io.StringIO) -> None:
    AuditLog().auth(
        listener="mqtts",
        remote=("192.0.2.7", 51234),
        identity="alice",
        client_id="sensor-1",
        method="password",
        result="bad_credentials",
    )
    [event] = lines(json_stream)
    assert event["event"] == "auth"
    assert event["logger"] == "mqttgate.audit"
    assert event["level"] == "warning"
    assert event["remote"] == "192.0.2.7:51234"
    assert event["identity"] == "alice"
    assert event["client_id"] == "sensor-1"
    assert event["method"] == "password"
    assert event["result"] == "bad_credentials"
    assert str(event["time"]).endswith("Z")


def test_denied_event_names_what_and_why(json_stream: io.StringIO) -> None:
    AuditLog().denied(
        listener="mqtts",
        remote=("2001:db8::1", 8883, 0, 0),
        identity="bob",
        client_id="c",
        action="publish",
        topic="factory/line2/cmd",
        reason="no write permission",
    )
    [event] = lines(json_stream)
    assert event["event"] == "denied"
    assert event["remote"] == "[2001:db8::1]:8883"
    assert event["action"] == "publish"
    assert event["topic"] == "factory/line2/cmd"
    assert event["reason"] == "no write permission"


def test_api_cannot_take_a_password_or_payload() -> None:
    for method in (AuditLog.auth, AuditLog.denied, AuditLog.flush_denials):
        params = inspect.signature(method).parameters
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        assert not {"password", "payload", "message", "extra"} & set(params)
    with pytest.raises(TypeError):
        AuditLog().auth(  # type: ignore[call-arg]
            listener="l",
            remote=None,
            identity="a",
            client_id="c",
            method="password",
            result="success",
            password=b"secret",
        )


def test_text_format_escapes_client_strings_onto_one_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "text", stream=stream)
    AuditLog().denied(
        listener="mqtts",
        remote="198.51.100.1:1",
        identity="eve",
        client_id='x\n2026-01-01 INFO fake line "result=success"\u2028',
        action="subscribe",
        topic="a b",
        reason="no read permission",
    )
    text = stream.getvalue()
    assert text.count("\n") == 1 and "\u2028" not in text
    assert " denied " in text
    assert "identity=eve" in text
    assert 'topic="a b"' in text
    assert 'client_id="x\\n2026-01-01' in text


def test_positional_arguments_follow_the_documented_order(json_stream: io.StringIO) -> None:
    audit = AuditLog()
    audit.auth("mqtts", "192.0.2.1:5", "alice", "c1", "certificate", "success")
    audit.denied("mqtts", "192.0.2.1:5", "alice", "c1", "subscribe", "a/#", "no read permission")
    auth, denied = lines(json_stream)
    assert (auth["identity"], auth["client_id"], auth["method"]) == ("alice", "c1", "certificate")
    assert (denied["action"], denied["topic"]) == ("subscribe", "a/#")


def test_long_client_strings_are_truncated(json_stream: io.StringIO) -> None:
    AuditLog().denied(
        listener="l",
        remote=None,
        identity="a",
        client_id="c",
        action="publish",
        topic="t/" * 5000,
        reason="r",
    )
    [event] = lines(json_stream)
    assert len(str(event["topic"])) < 300


def test_levels_follow_configuration(json_stream: io.StringIO) -> None:
    configure_logging("warning", "json", stream=json_stream)  # replaces, does not add
    audit = AuditLog()
    audit.auth(
        listener="l", remote=None, identity="a", client_id="c", method="password", result="success"
    )
    audit.auth(
        listener="l",
        remote=None,
        identity="a",
        client_id="c",
        method="password",
        result="bad_credentials",
    )
    assert [e["result"] for e in lines(json_stream)] == ["bad_credentials"]
    ours = [h for h in logging.getLogger("mqttgate").handlers if hasattr(h, "_mqttgate_handler")]
    assert ours == [json_stream_handler(json_stream)]


def test_other_mqttgate_logs_use_the_same_format(json_stream: io.StringIO) -> None:
    logging.getLogger("mqttgate.proxy.server").info("listening on %s", "0.0.0.0:8883")
    [event] = lines(json_stream)
    assert event["message"] == "listening on 0.0.0.0:8883"
    assert event["logger"] == "mqttgate.proxy.server"


def test_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError):
        configure_logging("info", "xml")
    with pytest.raises(ValueError):
        configure_logging("loud", "json")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def deny(audit: AuditLog, limiter: DenialLimiter, topic: str = "forbidden") -> None:
    audit.denied(
        listener="l",
        remote="192.0.2.1:1",
        identity="a",
        client_id="c",
        action="publish",
        topic=topic,
        reason="no write permission",
        limiter=limiter,
    )


def test_repeated_denials_collapse_into_summaries(json_stream: io.StringIO) -> None:
    clock = FakeClock()
    limiter = DenialLimiter(burst=3, interval=10.0, clock=clock)
    audit = AuditLog()
    for _ in range(1000):
        deny(audit, limiter)
    events = lines(json_stream)
    assert [e["event"] for e in events] == ["denied"] * 3  # the rest is held back
    clock.now = 11.0
    deny(audit, limiter)
    events = lines(json_stream)
    assert events[-1]["event"] == "denied_suppressed"
    assert events[-1]["suppressed"] == 998  # 997 held back + this one
    assert events[-1]["topic"] == "forbidden"
    for _ in range(5):
        deny(audit, limiter)
    audit.flush_denials(
        listener="l", remote="192.0.2.1:1", identity="a", client_id="c", limiter=limiter
    )
    events = lines(json_stream)
    assert events[-1]["event"] == "denied_suppressed" and events[-1]["suppressed"] == 5
    audit.flush_denials(
        listener="l", remote="192.0.2.1:1", identity="a", client_id="c", limiter=limiter
    )
    assert len(lines(json_stream)) == len(events)  # nothing left to report


def test_distinct_topics_cannot_bypass_the_limiter(json_stream: io.StringIO) -> None:
    limiter = DenialLimiter(burst=2, interval=60.0, max_keys=4, clock=FakeClock())
    audit = AuditLog()
    for i in range(10_000):
        deny(audit, limiter, topic=f"t/{i}")
    assert len(lines(json_stream)) <= 4 * 2 + 2
    assert len(limiter._entries) <= 5


def test_limiter_uses_slots() -> None:
    limiter = DenialLimiter()
    with pytest.raises(AttributeError):
        limiter.anything = 1  # type: ignore[attr-defined]


def test_format_remote() -> None:
    assert format_remote(("10.0.0.1", 5)) == "10.0.0.1:5"
    assert format_remote(("::1", 5, 0, 0)) == "[::1]:5"
    assert format_remote("unix") == "unix"
    assert format_remote(None) is None
