"""The audit log of a real mqttgate process: one line per authentication result and per
denial, the documented fields, repeated denials rate-limited, and never a password or a
payload anywhere in the output (at log level debug, where the most is written)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from mqttgate.codec import Connack, Connect, Disconnect, Publish, Subscribe, Subscription

from tests.integration.clients import RawClient
from tests.integration.conftest import Broker, Certs, UsersFile

from .gate import Gate

pytestmark = pytest.mark.integration

SECRETS = {
    "alice": b"alice-pw",
    "wrong": b"Hunter2-Wrong-Guess",
    "unknown": b"Mallory-Secret-Pw",
}
PAYLOAD = b"PAYLOAD-SECRET-"
DENIED_PUBLISHES = 12

_TEXT_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def text_record(line: str) -> dict[str, Any]:
    """``time LEVEL logger event key=value ...`` -> a dict like a JSON record."""
    parts = line.split(" ", 4)
    record: dict[str, Any] = {"level": parts[1].lower(), "logger": parts[2]}
    if len(parts) > 3:
        record["event"] = parts[3]
    for name, value in _TEXT_FIELD.findall(parts[4] if len(parts) > 4 else ""):
        if value.startswith('"'):
            record[name] = json.loads(value)
        elif value == "-":
            record[name] = None
        else:
            record[name] = int(value) if value.isdigit() and name == "suppressed" else value
    return record


def records(g: Gate, fmt: str) -> list[dict[str, Any]]:
    if fmt == "json":
        return g.records()
    return [text_record(line) for line in g.output().splitlines() if line]


def login(g: Gate, certs: Certs, user: str, password: bytes) -> tuple[RawClient, int]:
    client = RawClient(g.port, certs.client_context(), level=4)
    client.send(Connect(client_id=f"audit-{user}", username=user, password=password).encode(4))
    connack = client.read_packet()
    assert isinstance(connack, Connack)
    return client, connack.reason_code


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_audit_lines_name_what_and_why_but_no_secret(
    gate: Callable[..., Gate], mosquitto: Broker, certs: Certs, users_file: UsersFile, fmt: str
) -> None:
    g = gate(upstream=mosquitto.address, log={"format": fmt})
    for user, password in (("alice", SECRETS["wrong"]), ("mallory", SECRETS["unknown"])):
        client, code = login(g, certs, user, password)
        client.close()
        assert code == 4
    alice, code = login(g, certs, "alice", SECRETS["alice"])
    try:
        assert code == 0
        alice.send(Subscribe(1, [Subscription("factory/line2/#", 1)]).encode(4))
        assert alice.read_packet() is not None
        alice.send(Publish("factory/line1/ok", PAYLOAD + b"allowed", qos=1, packet_id=2).encode(4))
        assert alice.read_packet() is not None
        for pid in range(3, 3 + DENIED_PUBLISHES):
            denied = Publish("factory/line2/x", PAYLOAD + b"denied", qos=1, packet_id=pid)
            alice.send(denied.encode(4))
            assert alice.read_packet() is not None  # the proxy's PUBACK
        alice.send(Disconnect().encode(4))
        assert alice.read_until_closed() == []
    finally:
        alice.close()
    g.settled()
    assert g.stop() == 0

    output = g.output()
    for secret in (*SECRETS.values(), PAYLOAD, users_file.data["users"]["alice"]["password"]):
        text = secret.decode() if isinstance(secret, bytes) else secret
        assert text not in output, f"{text!r} appears in the output"

    lines = records(g, fmt)
    auth = [r for r in lines if r.get("event") == "auth"]
    assert [(r["identity"], r["method"], r["result"]) for r in auth] == [
        ("alice", "password", "bad_credentials"),
        ("mallory", "password", "bad_credentials"),
        ("alice", "password", "success"),
    ]
    for r in auth:
        assert r["listener"] == "mqtts"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", r["remote"])
        assert r["client_id"] == f"audit-{r['identity']}"
    if fmt == "json":
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in auth)

    denied = [r for r in lines if r.get("event") == "denied"]
    subscribe = [r for r in denied if r["action"] == "subscribe"]
    assert [(r["identity"], r["topic"]) for r in subscribe] == [("alice", "factory/line2/#")]
    publish = [r for r in denied if r["action"] == "publish"]
    assert 1 <= len(publish) <= 5  # the first few, then summaries
    assert {(r["identity"], r["client_id"], r["topic"], r["reason"]) for r in publish} == {
        ("alice", "audit-alice", "factory/line2/x", "not_authorized")
    }
    summaries = [r for r in lines if r.get("event") == "denied_suppressed"]
    assert sum(int(r["suppressed"]) for r in summaries) == DENIED_PUBLISHES - len(publish)
