"""PROXY protocol v1/v2 header parsing (HAProxy spec), sans-IO and bounded.

A load balancer in front of the proxy prepends one header naming the real client address;
everything after it is the client's TLS stream, so the header must be consumed exactly.
"""

from __future__ import annotations

import ipaddress
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107
#: Longest v2 header accepted (TLVs included); more is refused rather than buffered.
V2_MAX = 4096


class ProxyHeaderError(ValueError):
    """Not a valid PROXY protocol header."""


def parse_proxy_header(data: bytes) -> tuple[int, tuple[str, int] | None] | None:
    """(bytes consumed, source (host, port) or None for LOCAL/UNKNOWN), or None: need more.

    Raises :class:`ProxyHeaderError` when ``data`` cannot start a valid header.
    """
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if data:
        raise ProxyHeaderError("no PROXY protocol header")
    return None


def _parse_v1(data: bytes) -> tuple[int, tuple[str, int] | None] | None:
    if not b"PROXY "[: len(data)].startswith(data[:6]):
        raise ProxyHeaderError("bad v1 signature")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("v1 header too long")
        return None
    parts = data[:end].decode("ascii", "replace").split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return end + 2, None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("bad v1 header")
    try:
        src = ipaddress.ip_address(parts[2])
        ipaddress.ip_address(parts[3])
        sport = int(parts[4])
        dport = int(parts[5])
    except ValueError as exc:
        raise ProxyHeaderError("bad v1 address") from exc
    if not (0 <= sport <= 65535 and 0 <= dport <= 65535):
        raise ProxyHeaderError("bad v1 port")
    return end + 2, (str(src), sport)


def _parse_v2(data: bytes) -> tuple[int, tuple[str, int] | None] | None:
    if not V2_SIGNATURE.startswith(data[:12]):
        raise ProxyHeaderError("bad v2 signature")
    if len(data) < 16:
        return None
    ver_cmd, fam, length = struct.unpack("!BBH", data[12:16])
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError("bad v2 version")
    total = 16 + length
    if total > V2_MAX:
        raise ProxyHeaderError("v2 header too long")
    if len(data) < total:
        return None
    cmd = ver_cmd & 0x0F
    if cmd == 0:  # LOCAL: health check from the balancer itself
        return total, None
    if cmd != 1:
        raise ProxyHeaderError("bad v2 command")
    body = data[16:total]
    if fam >> 4 == 1 and len(body) >= 12:
        src = str(ipaddress.IPv4Address(body[0:4]))
        sport = struct.unpack("!H", body[8:10])[0]
        return total, (src, sport)
    if fam >> 4 == 2 and len(body) >= 36:
        src = str(ipaddress.IPv6Address(body[0:16]))
        sport = struct.unpack("!H", body[32:34])[0]
        return total, (src, sport)
    return total, None
