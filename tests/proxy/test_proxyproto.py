"""PROXY protocol header parsing: exact consumption, partial input, bounded refusal."""

from __future__ import annotations

import socket
import struct

import pytest
from mqttgate.proxy.proxyproto import V2_SIGNATURE, ProxyHeaderError, parse_proxy_header

TLS_HELLO = b"\x16\x03\x01\x00\x05hello"


def v2(src: str, sport: int, *, family: int = socket.AF_INET, cmd: int = 1) -> bytes:
    if family == socket.AF_INET:
        body = socket.inet_pton(family, src) + socket.inet_pton(family, "10.0.0.1")
        fam = 0x11
    else:
        body = socket.inet_pton(family, src) + socket.inet_pton(family, "::1")
        fam = 0x21
    body += struct.pack("!HH", sport, 8883)
    return V2_SIGNATURE + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body


def test_v1_consumes_exactly_the_header() -> None:
    header = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 8883\r\n"
    assert parse_proxy_header(header + TLS_HELLO) == (len(header), ("192.0.2.7", 51234))
    assert parse_proxy_header(b"PROXY UNKNOWN\r\n" + TLS_HELLO) == (15, None)


def test_v2_ipv4_ipv6_and_local() -> None:
    h4 = v2("192.0.2.9", 40000)
    assert parse_proxy_header(h4 + TLS_HELLO) == (len(h4), ("192.0.2.9", 40000))
    h6 = v2("2001:db8::5", 40001, family=socket.AF_INET6)
    assert parse_proxy_header(h6) == (len(h6), ("2001:db8::5", 40001))
    local = V2_SIGNATURE + bytes([0x20, 0x00, 0, 0])
    assert parse_proxy_header(local + TLS_HELLO) == (16, None)


@pytest.mark.parametrize("cut", [1, 5, 12, 15, 20])
def test_partial_headers_ask_for_more(cut: int) -> None:
    assert parse_proxy_header(v2("192.0.2.9", 1)[:cut]) is None
    assert parse_proxy_header(b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 8883\r\n"[:cut]) is None


@pytest.mark.parametrize(
    "data",
    [
        TLS_HELLO,
        b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 10.0.0.1 1 99999\r\n",
        b"PROXY " + b"A" * 200,
        V2_SIGNATURE + bytes([0x30, 0x11, 0, 0]),
        V2_SIGNATURE + bytes([0x21, 0x11, 0xFF, 0xFF]),
    ],
)
def test_invalid_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(data)
