"""Load-generator workers: raw (optionally TLS-wrapped) sockets, pre-encoded packets.

Each worker runs in its own process (the coordinator forks it) so that the publisher and
the subscriber never share a GIL. A worker talks to the coordinator over a Pipe:

    worker -> ("ready", info) | ("error", text)
    coordinator -> "go"
    worker -> ("result", dict)
    coordinator -> "stop"      (the worker then sends DISCONNECT and closes)

Every loop is bounded by a message count and by a deadline, so a stuck target costs at
most `time_limit` seconds, never a hang.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import struct
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from . import wire

RECV = 262_144
HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    ca: str | None  # None: plain TCP; else the CA file that signed the server certificate
    username: str
    password: str

    def context(self) -> ssl.SSLContext | None:
        if self.ca is None:
            return None
        return ssl.create_default_context(cafile=self.ca)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by peer")
        out += chunk
    return bytes(out)


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """One whole packet, reading no byte beyond it (so nothing is left buffered here)."""
    head = _recv_exact(sock, 2)
    rem, shift, b = head[1] & 0x7F, 7, head[1]
    while b & 0x80:
        b = _recv_exact(sock, 1)[0]
        rem |= (b & 0x7F) << shift
        shift += 7
    return head[0], _recv_exact(sock, rem)


def open_client(
    ep: Endpoint,
    client_id: str,
    ctx: ssl.SSLContext | None,
    session: ssl.SSLSession | None = None,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> socket.socket:
    """TCP connect, TLS handshake, CONNECT, CONNACK accepted; raises otherwise."""
    raw = socket.create_connection((ep.host, ep.port), timeout=timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        if ctx is not None:
            sock = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        sock.sendall(wire.connect(client_id, ep.username, ep.password))
        first, body = read_packet(sock)
    except BaseException:
        raw.close()
        raise
    if first >> 4 != wire.CONNACK or len(body) < 2 or body[1] != 0:
        sock.close()
        raise ConnectionRefusedError(f"CONNACK refused: {first:#x} {body.hex()}")
    return sock


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.settimeout(0.5)
        sock.sendall(wire.DISCONNECT)
    with contextlib.suppress(OSError):
        sock.close()


def _await_go(conn: Connection, timeout: float) -> None:
    if not conn.poll(timeout) or conn.recv() != "go":
        raise TimeoutError("no go from the coordinator")


def _drain(sock: socket.socket) -> bytes:
    """All that can be read now (up to RECV). For TLS that means more than one record:
    one recv() returns at most one, which would make a reader wake up per record."""
    data = sock.recv(RECV)
    if not data:
        raise ConnectionError("closed by peer")
    if not isinstance(sock, ssl.SSLSocket):
        return data
    parts, n = [data], len(data)
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        while n < RECV:
            try:
                more = sock.recv(RECV - n)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            if not more:
                break
            parts.append(more)
            n += len(more)
    finally:
        sock.settimeout(timeout)
    return b"".join(parts)


def _run_worker(
    conn: Connection,
    connect: Callable[[list[socket.socket]], None],
    run: Callable[[list[socket.socket]], dict[str, object]],
    linger: float,
) -> None:
    """The protocol of a subscriber or publisher worker: `connect` fills the socket list
    (sockets appended before a failure are closed too), then "ready", "go", `run`, and its
    result with the worker's own CPU time (to show that the generator is not the
    bottleneck); the sockets stay open up to `linger` seconds, until the coordinator's
    "stop". Any error goes to the coordinator as text."""
    socks: list[socket.socket] = []
    try:
        connect(socks)
        conn.send(("ready", None))
        _await_go(conn, 60)
        cpu0 = time.process_time()
        result = run(socks)
        result["cpu_s"] = time.process_time() - cpu0
        conn.send(("result", result))
        if conn.poll(linger):
            conn.recv()
    except Exception:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc(limit=3)))
    finally:
        for s in socks:
            _close(s)


# --------------------------------------------------------------------------- subscriber


@dataclass(frozen=True)
class SubSpec:
    endpoint: Endpoint
    client_prefix: str
    connections: int
    topic_filter: str
    qos: int
    expected: int  # PUBLISH packets each connection must receive
    packet_size: int  # size of each PUBLISH on the wire (QoS 0 stride check)
    payload_size: int
    latency: bool
    time_limit: float
    idle_limit: float = 2.0


class _SubState:
    __slots__ = ("buf", "bytes", "count", "errors", "off", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.count = 0
        self.bytes = 0
        self.errors = 0
        self.off = 0  # stride mode: where the next packet starts in the next chunk


def subscriber(conn: Connection, spec: SubSpec) -> None:
    def connect(socks: list[socket.socket]) -> None:
        ctx = spec.endpoint.context()
        for i in range(spec.connections):
            s = open_client(spec.endpoint, f"{spec.client_prefix}-{i}", ctx)
            socks.append(s)
            s.sendall(wire.subscribe(1, spec.topic_filter, spec.qos))
            first, body = read_packet(s)
            if first >> 4 != wire.SUBACK or body[-1] >= 0x80:
                raise ConnectionRefusedError(f"SUBACK refused: {body.hex()}")

    _run_worker(conn, connect, lambda socks: _subscribe_loop(socks, spec), linger=30)


def stride_check(
    data: bytes, off: int, size: int, first_byte: int, rem_byte: int
) -> tuple[int, int]:
    """Boundary check of a stream of equal-size packets at C speed: every packet's first
    byte and (if rem_byte >= 0) length byte sit at their stride. `off` is where the next
    packet starts in `data`; returns (checks failed, off for the next chunk)."""
    bad = 0
    heads = data[off::size]
    if heads.count(first_byte) != len(heads):
        bad += 1
    if rem_byte >= 0:
        lens = data[(off + 1) % size :: size]
        if lens.count(rem_byte) != len(lens):
            bad += 1
    return bad, (off - len(data)) % size


def _subscribe_loop(socks: list[socket.socket], spec: SubSpec) -> dict[str, object]:
    stride = spec.qos == 0 and not spec.latency
    first_byte = 0x30 | (spec.qos << 1)
    size = spec.packet_size
    rem_byte = size - 2 if size - 2 < 128 else -1  # one length byte, else skip that check
    lat = array("q")
    sel = selectors.DefaultSelector()
    states = []
    for s in socks:
        s.settimeout(5.0)
        st = _SubState(s)
        states.append(st)
        sel.register(s, selectors.EVENT_READ, st)
    open_states = len(states)
    start = time.monotonic()
    deadline = start + spec.time_limit
    last_data = start
    t_first = t_last = 0.0
    unpack = struct.unpack_from
    ack = wire.ack
    while open_states and time.monotonic() < deadline:
        events = sel.select(0.2)
        now = time.monotonic()
        if not events:
            if now - last_data > spec.idle_limit:
                break
            continue
        for key, _ in events:
            st = key.data
            data = _drain(st.sock)
            recv_ns = time.monotonic_ns()
            t_recv = recv_ns / 1e9
            last_data = t_recv
            if not t_first:
                t_first = t_recv
            t_last = t_recv
            n = len(data)
            st.bytes += n
            if stride:
                bad, st.off = stride_check(data, st.off, size, first_byte, rem_byte)
                st.errors += bad
                st.count = st.bytes // size
                if n < RECV // 4:
                    # a reader faster than the stream wakes up per packet and steals a
                    # core from the target; let the kernel buffer gather a batch instead
                    time.sleep(0.0005)
            else:
                st.buf += data
                frames, pos = wire.split(st.buf)
                out = []
                buf = st.buf
                for first, body, end in frames:
                    kind = first >> 4
                    if kind == wire.PUBLISH:
                        st.count += 1
                        pid, p = wire.publish_fields(buf, first, body, end)
                        if end - p != spec.payload_size:
                            st.errors += 1
                        qos = (first >> 1) & 3
                        if qos == 1:
                            out.append(ack(wire.PUBACK, pid))
                        elif qos == 2:
                            out.append(ack(wire.PUBREC, pid))
                        if spec.latency:
                            lat.append(recv_ns - unpack("<q", buf, p)[0])
                    elif kind == wire.PUBREL:
                        out.append(ack(wire.PUBCOMP, (buf[body] << 8) | buf[body + 1]))
                    else:
                        st.errors += 1
                del st.buf[:pos]
                if out:
                    st.sock.sendall(b"".join(out))
            if st.count >= spec.expected:
                sel.unregister(st.sock)
                open_states -= 1
    sel.close()
    if stride:  # a stream that stops inside a packet has lost a boundary
        for st in states:
            st.errors += st.bytes % size != 0
    result: dict[str, object] = {
        "received": sum(st.count for st in states),
        "bytes": sum(st.bytes for st in states),
        "errors": sum(st.errors for st in states),
        "per_connection": [st.count for st in states],
        "t_first": t_first,
        "t_last": t_last,
    }
    if spec.latency:
        result["latency_ns"] = lat.tobytes()
    return result


# --------------------------------------------------------------------------- publisher


@dataclass(frozen=True)
class PubSpec:
    endpoint: Endpoint
    client_prefix: str
    topics: tuple[str, ...]  # one connection per topic
    qos: int
    messages: int  # per connection
    payload_size: int
    batch: int
    window: int  # QoS 1/2: unacknowledged messages allowed per connection
    rate: float  # 0: as fast as possible; else msgs/s per connection with timestamps
    time_limit: float
    tick_ms: float = 1.0  # paced mode: at most one sendall per tick (messages due are batched)


def publisher(conn: Connection, spec: PubSpec) -> None:
    def connect(socks: list[socket.socket]) -> None:
        ctx = spec.endpoint.context()
        for i, _ in enumerate(spec.topics):
            socks.append(open_client(spec.endpoint, f"{spec.client_prefix}-{i}", ctx))

    def run(socks: list[socket.socket]) -> dict[str, object]:
        if spec.rate:
            return _paced(socks[0], spec)
        if spec.qos == 0:
            return _blast(socks, spec)
        return _windowed(socks, spec)

    # A long linger keeps the sockets open until every message is delivered.
    _run_worker(conn, connect, run, linger=60)


def _blast(socks: list[socket.socket], spec: PubSpec) -> dict[str, object]:
    payload = bytes(spec.payload_size)
    packets = [wire.publish(t, payload) for t in spec.topics]
    batches = [p * spec.batch for p in packets]
    sent = [0] * len(socks)
    t0 = time.monotonic()
    deadline = t0 + spec.time_limit
    while time.monotonic() < deadline:
        progressed = False
        for i, s in enumerate(socks):
            n = min(spec.batch, spec.messages - sent[i])
            if n <= 0:
                continue
            s.sendall(batches[i] if n == spec.batch else packets[i] * n)
            sent[i] += n
            progressed = True
        if not progressed:
            break
    return {"sent": sum(sent), "t_start": t0, "t_end": time.monotonic()}


def _windowed(socks: list[socket.socket], spec: PubSpec) -> dict[str, object]:
    payload = bytes(spec.payload_size)
    ids = min(65535, 2 * spec.window + 2)
    tables = [[wire.publish(t, payload, spec.qos, i + 1) for i in range(ids)] for t in spec.topics]
    sent = [0] * len(socks)
    done = [0] * len(socks)
    bufs = [bytearray() for _ in socks]
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.settimeout(5.0)
        sel.register(s, selectors.EVENT_READ, i)
    final = wire.PUBACK if spec.qos == 1 else wire.PUBCOMP
    t0 = time.monotonic()
    deadline = t0 + spec.time_limit
    total = spec.messages * len(socks)
    while sum(done) < total and time.monotonic() < deadline:
        for i, s in enumerate(socks):
            room = min(spec.window - (sent[i] - done[i]), spec.messages - sent[i], spec.batch)
            if room > 0:
                table = tables[i]
                first = sent[i]
                s.sendall(b"".join(table[(first + k) % ids] for k in range(room)))
                sent[i] += room
        for key, _ in sel.select(0.5):
            i = key.data
            bufs[i] += _drain(socks[i])
            frames, pos = wire.split(bufs[i])
            out = []
            buf = bufs[i]
            for first_byte, body, _end in frames:
                kind = first_byte >> 4
                if kind == final:
                    done[i] += 1
                elif kind == wire.PUBREC:
                    out.append(wire.ack(wire.PUBREL, (buf[body] << 8) | buf[body + 1]))
            del bufs[i][:pos]
            if out:
                socks[i].sendall(b"".join(out))
    sel.close()
    return {"sent": sum(sent), "acked": sum(done), "t_start": t0, "t_end": time.monotonic()}


def _paced(sock: socket.socket, spec: PubSpec) -> dict[str, object]:
    """QoS 0 at a fixed offered rate; each payload starts with its send time (monotonic ns)."""
    prefix = wire.publish(spec.topics[0], bytes(spec.payload_size))[: -spec.payload_size]
    pad = bytes(spec.payload_size - 16)
    pack = struct.pack
    t0 = time.monotonic_ns()
    deadline = t0 + int(spec.time_limit * 1e9)
    interval = 1e9 / spec.rate
    tick = int(spec.tick_ms * 1e6)
    sent = 0
    next_send = t0
    while sent < spec.messages:
        now = time.monotonic_ns()
        if now > deadline:
            break
        if now < next_send:
            time.sleep((next_send - now) / 1e9)
            continue
        due = min(spec.messages, int((now - t0) / interval) + 1)
        if due > sent:
            sock.sendall(b"".join(prefix + pack("<qq", now, k) + pad for k in range(sent, due)))
            sent = due
        next_send = max(now + tick, t0 + int(sent * interval))
    t_end = time.monotonic_ns()
    return {"sent": sent, "t_start": t0 / 1e9, "t_end": t_end / 1e9}


# --------------------------------------------------------------------------- connect storm


@dataclass(frozen=True)
class StormSpec:
    endpoint: Endpoint
    client_prefix: str
    connections: int
    resume: bool  # reuse the previous TLS session (session ticket)
    time_limit: float


def storm(conn: Connection, spec: StormSpec) -> None:
    """Connect, CONNECT, CONNACK, DISCONNECT, close, as fast as one worker can."""
    try:
        ctx = spec.endpoint.context()
        conn.send(("ready", None))
        _await_go(conn, 60)
        times = array("d")
        reused = failed = 0
        session: ssl.SSLSession | None = None
        t0 = time.monotonic()
        deadline = t0 + spec.time_limit
        for i in range(spec.connections):
            if time.monotonic() > deadline:
                break
            t = time.monotonic()
            try:
                s = open_client(spec.endpoint, f"{spec.client_prefix}-{i}", ctx, session)
            except (OSError, ConnectionError):
                failed += 1
                continue
            times.append(time.monotonic() - t)
            if isinstance(s, ssl.SSLSocket):
                reused += bool(s.session_reused)
                if spec.resume:
                    session = s.session
            _close(s)
        conn.send(
            (
                "result",
                {
                    "times": times.tobytes(),
                    "reused": reused,
                    "failed": failed,
                    "t_start": t0,
                    "t_end": time.monotonic(),
                },
            )
        )
    except Exception:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc(limit=3)))
