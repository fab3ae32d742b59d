"""The asyncio layer: listeners, TLS, and the two Protocols that move bytes for a Session.

All MQTT rules live in :mod:`mqttgate.proxy.session`; this module only accepts sockets,
runs handshakes and timers, and hands bytes back and forth. asyncio Protocols (not
streams) on both legs: no task per connection once it relays, no copies but the ones TLS
makes, and flow control straight from the transports' write buffers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Iterable
from typing import Any

from mqttgate.policy import Authenticator, AuthResult, PolicyStore
from mqttgate.proxy.audit import AuditLog, DenialLimiter
from mqttgate.proxy.backoff import AuthBackoff, PerUserLimiter
from mqttgate.proxy.config import Config, ListenerConfig
from mqttgate.proxy.metrics import ConnStats, Metrics
from mqttgate.proxy.proxyproto import V2_MAX, ProxyHeaderError, parse_proxy_header
from mqttgate.proxy.session import (
    AuthOutcome,
    Close,
    Denial,
    Event,
    OpenUpstream,
    Ready,
    Session,
    SessionSettings,
    State,
    VerifyPassword,
)
from mqttgate.proxy.shutdown import ShutdownCoordinator
from mqttgate.proxy.tls import classify_handshake_error, peer_common_name, server_context
from mqttgate.proxy.upstream import open_upstream, probe, set_nodelay
from prometheus_client import CollectorRegistry

log = logging.getLogger("mqttgate.server")

#: Write-buffer high-water mark per leg: above it the other leg stops reading.
WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024
#: How often per-connection counts are moved into the prometheus counters.
METRICS_FLUSH_INTERVAL = 1.0
#: Size of the one buffer that every client leg's TLS layer decrypts into (see
#: ClientConnection.get_buffer); uvloop reads at most 256 KiB per call anyway.
TLS_READ_BUFFER = 256 * 1024


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop; the default loop only where uvloop cannot be imported."""
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not available; using the default asyncio event loop")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Listener:
    """One configured listener at run time: its socket, TLS context and settings."""

    __slots__ = ("config", "context", "settings", "sock", "task")

    def __init__(
        self, config: ListenerConfig, context: ssl.SSLContext, settings: SessionSettings
    ) -> None:
        self.config = config
        self.context = context
        self.settings = settings
        self.sock: socket.socket | None = None
        self.task: asyncio.Task[None] | None = None


class UpstreamConnection(asyncio.Protocol):
    """The broker leg: bytes to the session, flow control onto the client leg."""

    __slots__ = ("client",)

    def __init__(self, client: ClientConnection) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client.upstream_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        client = self.client
        session = client.session
        if session is None:
            return
        try:
            events = session.upstream_data(data)
        except Exception as exc:
            log.error("internal error on a broker connection for %s: %r", client.peer, exc)
            log.debug("internal error details", exc_info=True)
            client.abort()
            return
        if events:
            client.handle(events)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream_lost()

    def pause_writing(self) -> None:
        transport = self.client.transport
        if transport is not None:
            transport.pause_reading()

    def resume_writing(self) -> None:
        transport = self.client.transport
        if transport is not None and self.client.reading_allowed():
            transport.resume_reading()


class ClientConnection(asyncio.BufferedProtocol):
    """The client leg (TLS): owns the Session, the timers and the upstream leg.

    A BufferedProtocol, so that uvloop's TLS layer decrypts straight into one buffer shared
    by every connection of the process (the loop runs one callback at a time, and
    buffer_updated copies the bytes out before returning). With a plain Protocol uvloop asks
    ``SSLObject.read`` for 256 KiB per TLS record: a fresh 256 KiB bytes object each time,
    which glibc serves with mmap, then mremap and munmap, plus an SSLWantReadError raised
    at the end of every read. Profiling showed those three syscalls per read on both the
    bare relay and mqttgate.
    """

    __slots__ = (
        "_connect_timer",
        "_upstream_paused",
        "accepted_at",
        "closed",
        "denials",
        "listener",
        "peer",
        "server",
        "session",
        "stats",
        "transport",
        "upstream",
    )

    def __init__(self, server: Server, listener: _Listener, accepted_at: float, peer: Any) -> None:
        self.server = server
        self.listener = listener
        self.accepted_at = accepted_at
        self.peer = peer
        self.transport: Any = None
        self.upstream: asyncio.Transport | None = None
        self.session: Session | None = None
        self.stats: ConnStats | None = None
        self.closed = False
        self._connect_timer: asyncio.TimerHandle | None = None
        self._upstream_paused = False
        #: Collapses repeated identical denial lines; made at the first denial.
        self.denials: DenialLimiter | None = None

    # -- asyncio.BufferedProtocol (the TLS transport, once the handshake succeeded)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called with the TLS transport once the handshake succeeded.
        self.tls_ready(transport)  # type: ignore[arg-type]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.server.read_buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        try:
            events = session.client_data(data)
        except Exception as exc:  # a bug must cost one connection, never the listener
            log.error("internal error on a client connection from %s: %r", self.peer, exc)
            log.debug("internal error details", exc_info=True)
            self.abort()
            return
        if events:
            self.handle(events)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None and not self.closed:
            events = self.session.client_closed()
            if events:
                self.handle(events)
        self.close()

    def pause_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None:
            self._upstream_paused = True
            upstream.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and self._upstream_paused:
            self._upstream_paused = False
            upstream.resume_reading()

    # -- lifecycle

    def reading_allowed(self) -> bool:
        session = self.session
        return session is not None and session.state is State.RELAY

    def tls_ready(self, transport: asyncio.Transport) -> None:
        """The handshake succeeded: create the session; the connect timer keeps running."""
        if self.closed:
            transport.abort()
            return
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        server = self.server
        peer_cn = None
        if self.listener.settings.mutual_tls:
            peer_cn = peer_common_name(transport.get_extra_info("peercert"))
        self.stats = ConnStats()
        self.session = Session(
            store=server.store,
            authenticator=server.authenticator,
            settings=self.listener.settings,
            send_client=transport.write,
            send_upstream=self._no_upstream,
            peer_cn=peer_cn,
            stats=self.stats,
            limiter=server.limiter,
        )
        loop = server.loop
        remaining = self.accepted_at + server.config.limits.connect_timeout - loop.time()
        self._connect_timer = loop.call_later(max(remaining, 0.0), self._connect_timeout)

    @staticmethod
    def _no_upstream(data: bytes) -> None:
        raise RuntimeError("session wrote upstream before it was connected")

    def _connect_timeout(self) -> None:
        self._connect_timer = None
        session = self.session
        if session is None or self.closed:
            return
        if session.state is State.RELAY:
            return
        if session.state in (State.CONNECTING_UPSTREAM, State.AWAIT_CONNACK):
            if session.state is State.AWAIT_CONNACK:
                # connected but no CONNACK; a pending TCP connect counts its own failure
                self.server.metrics.upstream_connect_failures_total.inc()
            self.handle(session.upstream_failed())
        else:
            log.debug("connect timeout from %s", self.peer)
            self.close()

    def handle(self, events: Iterable[Event]) -> None:
        """Act on the session's events (rare: never per relayed packet)."""
        close = False
        for event in events:
            kind = type(event)
            if kind is Close:
                close = True
            elif kind is Denial:
                self.server.audit_denied(self, event)  # type: ignore[arg-type]
            elif kind is AuthOutcome:
                self.server.audit_auth(self, event)  # type: ignore[arg-type]
            elif kind is VerifyPassword:
                self._verify_password(event)  # type: ignore[arg-type]
            elif kind is OpenUpstream:
                self._open_upstream()
            elif kind is Ready:
                self._ready()
        if close:
            self.close()

    def _verify_password(self, event: VerifyPassword) -> None:
        if self.transport is not None:
            self.transport.pause_reading()
        delay = self.server.backoff.delay_for(self.host)
        if delay > 0:
            # An address that keeps failing waits longer each time (the connect timer
            # still closes it at its deadline); the hash is not even computed meanwhile.
            self.server.loop.call_later(delay, self._start_verification, event)
        else:
            self._start_verification(event)

    @property
    def host(self) -> str:
        peer = self.peer
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return str(peer)

    def _start_verification(self, event: VerifyPassword) -> None:
        if self.closed:
            return
        server = self.server
        future = server.loop.run_in_executor(server.executor, self._verify_in_thread, event)
        future.add_done_callback(self._password_done)

    def _verify_in_thread(self, event: VerifyPassword) -> AuthResult | None:
        """Runs in the executor. A connection that closed while queued (a storm of logins
        outlasting their connect timeout) costs no hash at all."""
        if self.closed:
            return None
        return self.server.authenticator.authenticate_password(
            event.snapshot, event.username, event.password
        )

    def _password_done(self, future: asyncio.Future[AuthResult | None]) -> None:
        if self.closed or self.session is None:
            return
        try:
            result = future.result()
            if result is None:
                return
        except Exception:
            log.exception("password verification failed")
            self.close()
            return
        self.handle(self.session.password_checked(result))

    def _open_upstream(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()
        task = self.server.loop.create_task(self._connect_upstream())
        self.server.track(task)

    async def _connect_upstream(self) -> None:
        server = self.server
        host, port = server.upstream_address
        timeout = server.config.upstream.connect_timeout
        try:
            await open_upstream(server.loop, host, port, timeout, lambda: UpstreamConnection(self))
        except (OSError, TimeoutError) as exc:
            server.upstream_ok = False
            server.metrics.upstream_connect_failures_total.inc()
            log.warning("upstream %s:%d unreachable: %s", host, port, exc or type(exc).__name__)
            if not self.closed and self.session is not None:
                self.handle(self.session.upstream_failed())
            return
        # Success was handled by upstream_made, from the protocol's connection_made.

    def upstream_made(self, transport: asyncio.Transport) -> None:
        """The broker accepted the TCP connection: TCP_NODELAY, then the CONNECT at once."""
        set_nodelay(transport.get_extra_info("socket"))
        self.server.upstream_ok = True
        session = self.session
        if self.closed or session is None:
            transport.close()
            return
        self.upstream = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        session._send_upstream = transport.write
        self.handle(session.upstream_connected())

    def _ready(self) -> None:
        timer = self._connect_timer
        if timer is not None:
            timer.cancel()
            self._connect_timer = None
        server = self.server
        server.metrics.connect_duration_seconds.observe(server.loop.time() - self.accepted_at)
        if self.transport is not None:
            self.transport.resume_reading()

    def upstream_lost(self) -> None:
        if self.closed:
            return
        session = self.session
        if session is not None:
            events = session.upstream_closed()
            if events:
                self.handle(events)
        self.close()

    def close(self) -> None:
        """Close both legs once; buffered writes are flushed first."""
        if self.closed:
            return
        self.closed = True
        timer = self._connect_timer
        if timer is not None:
            timer.cancel()
            self._connect_timer = None
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None:
            self.upstream.close()
        if self.session is not None:
            self.session.release()
            if self.denials is not None:
                self.server.audit.flush_denials(
                    listener=self.listener.config.name,
                    remote=self.peer,
                    identity=self.session.identity,
                    client_id=self.session.client_id,
                    limiter=self.denials,
                )
        self.server.connection_closed(self)

    def begin_shutdown(self) -> None:
        """Say goodbye (5.0: DISCONNECT 0x8B) and close once written data is flushed."""
        if self.closed:
            return
        if self.session is None:
            self.abort()
            return
        self.handle(self.session.server_shutdown())

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.close()


class Server:
    """The proxy at run time. The ops modules (HTTP, reload, shutdown) drive it through
    ``reload_policy()``, ``reload_tls()``, ``readiness()`` and ``shutdown(grace)``."""

    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        audit: AuditLog | None = None,
        store: PolicyStore | None = None,
    ) -> None:
        self.config = config
        self.metrics = Metrics(registry, per_user=config.metrics.per_user)
        self.audit = audit if audit is not None else AuditLog()
        self.store = store if store is not None else PolicyStore(config.policy.file)
        self.authenticator = Authenticator()
        per_user = config.limits.max_connections_per_user
        self.limiter = PerUserLimiter(per_user if per_user > 0 else None)
        b = config.limits.auth_backoff
        self.backoff = AuthBackoff(
            threshold=b.threshold, base_delay=b.base_delay, max_delay=b.max_delay, window=b.window
        )
        # argon2 is CPU- and memory-hard (64 MiB per hash): a few threads are enough.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(2, min(4, os.cpu_count() or 2)), thread_name_prefix="mqttgate-auth"
        )
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.listeners: list[_Listener] = []
        self.connections: set[ClientConnection] = set()
        self.upstream_address: tuple[str, int] = (config.upstream.host, config.upstream.port)
        #: What every client leg's TLS layer decrypts into (ClientConnection.get_buffer).
        self.read_buffer = memoryview(bytearray(TLS_READ_BUFFER))
        self.upstream_ok = False
        self.embedded: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._drained: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None

    # -- start / stop

    async def start(self, sockets: dict[str, socket.socket] | None = None) -> None:
        """Start the embedded broker if configured, bind every listener, accept.

        ``sockets``: already bound listening sockets by listener name (the multi-worker
        mode hands each worker SO_REUSEPORT sockets); the others are bound here.
        """
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        if self.config.upstream.embedded:
            from mqttgate.proxy.embedded import EmbeddedBroker

            self.embedded = EmbeddedBroker()
            await self.embedded.start()
            self.upstream_address = (self.embedded.host, self.embedded.port)
        for lc in self.config.listeners:
            listener = _Listener(lc, server_context(lc.tls), self._settings(lc))
            given = (sockets or {}).get(lc.name)
            if given is not None:
                sock = given
            else:
                family = socket.AF_INET6 if ":" in lc.host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((lc.host, lc.port))
                    sock.listen(1024)
                except OSError:
                    sock.close()
                    await self._stop_listeners()
                    raise
            sock.setblocking(False)
            listener.sock = sock
            self.listeners.append(listener)
            log.info(
                "listener %s on %s (mutual TLS %s)",
                lc.name,
                self._bound(listener),
                lc.tls.mutual_tls,
            )
        for listener in self.listeners:
            listener.task = self.loop.create_task(self._accept_loop(listener))
        self._flush_timer = self.loop.call_later(METRICS_FLUSH_INTERVAL, self._periodic_flush)
        if self.embedded is not None:
            self.upstream_ok = True
        else:
            self.upstream_ok = await probe(
                *self.upstream_address, self.config.upstream.connect_timeout
            )

    def _settings(self, lc: ListenerConfig) -> SessionSettings:
        return SessionSettings(
            mutual_tls=lc.tls.mutual_tls,
            max_packet_size=self.config.limits.max_packet_size,
            disconnect_on_denied_publish=self.config.enforcement.denied_publish == "disconnect",
            client_id_namespace=self.config.enforcement.client_id_namespace,
        )

    @staticmethod
    def _bound(listener: _Listener) -> str:
        if listener.sock is None:
            return "-"
        host, port = listener.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def ports(self) -> dict[str, int]:
        """Bound port of each listener by name (listeners may bind port 0)."""
        return {
            lst.config.name: int(lst.sock.getsockname()[1])
            for lst in self.listeners
            if lst.sock is not None
        }

    async def serve_forever(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()

    async def _stop_listeners(self) -> None:
        for listener in self.listeners:
            if listener.task is not None:
                listener.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener.task
                listener.task = None
            if listener.sock is not None:
                listener.sock.close()
                listener.sock = None

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, give open connections ``grace`` seconds, then close the rest."""
        if self._closing:
            return
        self._closing = True
        if grace is None:
            grace = self.config.shutdown_grace
        await self._stop_listeners()
        # The coordinator drains the live set; connection_closed() sets `drained` at empty.
        coordinator = ShutdownCoordinator(self.connections)
        self._drained = coordinator.drained
        result = await coordinator.shutdown((), grace)
        log.info("shutdown: %d connections closed, %d aborted", result.graceful, result.aborted)
        current = asyncio.current_task()
        pending = [task for task in self._tasks if task is not current]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self.embedded is not None:
            await self.embedded.stop()
            self.embedded = None
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self._stopped is not None:
            self._stopped.set()

    # -- ops seams

    def reload_policy(self) -> bool:
        """Reload the users file; on success existing connections rebind right away."""
        ok = self.store.reload()
        self.metrics.policy_reloads_total.labels("success" if ok else "error").inc()
        if ok:
            for conn in list(self.connections):
                if conn.session is not None and not conn.closed:
                    events = conn.session.check_policy()
                    if events:
                        conn.handle(events)
        return ok

    def reload_tls(self) -> bool:
        """Rebuild every listener's TLS context; new handshakes use it. All or nothing."""
        try:
            contexts = [server_context(lst.config.tls) for lst in self.listeners]
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("TLS files not reloaded, keeping the old ones: %s", exc)
            return False
        for lst, ctx in zip(self.listeners, contexts, strict=True):
            lst.context = ctx
        return True

    def readiness(self) -> dict[str, bool]:
        """What /readyz reports: all True means ready."""
        return {
            "policy": self.store.current is not None,
            "listeners": bool(self.listeners)
            and all(lst.sock is not None for lst in self.listeners),
            "upstream": self.upstream_ok,
        }

    async def check_upstream(self) -> bool:
        """Probe the broker now and remember the answer for ``readiness()``."""
        self.upstream_ok = await probe(*self.upstream_address, self.config.upstream.connect_timeout)
        return self.upstream_ok

    def flush_metrics(self) -> None:
        flush = self.metrics.flush
        for conn in self.connections:
            if conn.stats is not None:
                flush(conn.stats)

    def audit_auth(self, conn: ClientConnection, event: AuthOutcome) -> None:
        # A per-user label only for names that passed the user lookup: a failed login's
        # name is the client's choice and must not create label values.
        known = event.result not in ("bad_credentials", "bad_auth_method")
        self.metrics.auth(event.method, event.result, event.username if known else None)
        if event.method == "password":
            if event.result == "bad_credentials":
                self.backoff.failure(conn.host)
            elif event.result == "success" and len(self.backoff):
                self.backoff.success(conn.host)
        self.audit.auth(
            listener=conn.listener.config.name,
            remote=conn.peer,
            identity=event.username,
            client_id=event.client_id,
            method=event.method,
            result=event.result,
        )

    def audit_denied(self, conn: ClientConnection, event: Denial) -> None:
        session = conn.session
        if conn.denials is None:
            conn.denials = DenialLimiter()
        self.audit.denied(
            listener=conn.listener.config.name,
            remote=conn.peer,
            identity=session.identity if session is not None else None,
            client_id=session.client_id if session is not None else None,
            action=event.action,
            topic=event.topic,
            reason="not_authorized",
            limiter=conn.denials,
        )

    # -- internals

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connection_closed(self, conn: ClientConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.metrics.connections_active.dec()
            if conn.stats is not None:
                self.metrics.flush(conn.stats)
            if self._drained is not None and not self.connections:
                self._drained.set()

    def _periodic_flush(self) -> None:
        self.flush_metrics()
        if not self._closing:
            self._flush_timer = self.loop.call_later(METRICS_FLUSH_INTERVAL, self._periodic_flush)

    async def _accept_loop(self, listener: _Listener) -> None:
        loop = self.loop
        lsock = listener.sock
        assert lsock is not None
        while True:
            try:
                sock, addr = await loop.sock_accept(lsock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:  # EMFILE and friends: back off briefly, keep serving
                log.warning("accept failed on %s: %s", listener.config.name, exc)
                await asyncio.sleep(0.1)
                continue
            self._accepted(listener, sock, addr)

    def _accepted(self, listener: _Listener, sock: socket.socket, addr: Any) -> None:
        if len(self.connections) >= self.config.limits.max_connections or self._closing:
            # Full: a clean close before any TLS work.
            with contextlib.suppress(OSError):
                sock.close()
            return
        sock.setblocking(False)
        set_nodelay(sock)
        metrics = self.metrics
        metrics.connections_total.labels(listener.config.name).inc()
        metrics.connections_active.inc()
        conn = ClientConnection(self, listener, self.loop.time(), addr)
        self.connections.add(conn)
        self.track(self.loop.create_task(self._handshake(conn, sock)))

    async def _handshake(self, conn: ClientConnection, sock: socket.socket) -> None:
        """PROXY header (optional) and TLS handshake, within the connect timeout."""
        loop = self.loop
        listener = conn.listener
        deadline = conn.accepted_at + self.config.limits.connect_timeout
        phase = "proxy"
        try:
            if listener.config.proxy_protocol:
                async with asyncio.timeout_at(deadline):
                    source = await self._read_proxy_header(sock)
                if source is not None:
                    conn.peer = source
            phase = "tls"
            # With ssl= the handshake error is raised here, so it can be counted; the
            # handshake timeout ends at the connect deadline.
            await loop.connect_accepted_socket(
                lambda: conn,
                sock,
                ssl=listener.context,
                ssl_handshake_timeout=max(deadline - loop.time(), 0.001),
            )
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                sock.close()
            conn.abort()
            raise
        except (
            OSError,
            TimeoutError,
            ssl.SSLError,
            ssl.CertificateError,
            ProxyHeaderError,
            ConnectionError,
        ) as exc:
            if phase == "tls":
                reason = classify_handshake_error(exc)
                self.metrics.tls_handshake_failures_total.labels(reason).inc()
                log.debug("TLS handshake with %s failed (%s): %s", conn.peer, reason, exc)
            else:
                log.debug("PROXY header from %s refused: %s", conn.peer, exc)
            with contextlib.suppress(OSError):
                sock.close()
            conn.abort()
            return

    async def _read_proxy_header(self, sock: socket.socket) -> tuple[str, int] | None:
        loop = self.loop
        while True:
            waiter = loop.create_future()
            fd = sock.fileno()
            loop.add_reader(fd, _wake, waiter)
            try:
                await waiter
            finally:
                loop.remove_reader(fd)
            try:
                peeked = sock.recv(V2_MAX, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                continue  # spurious wake-up
            if not peeked:
                raise ConnectionError("closed before PROXY header")
            parsed = parse_proxy_header(peeked)
            if parsed is None:
                if len(peeked) >= V2_MAX:
                    raise ProxyHeaderError("PROXY header too long")
                await asyncio.sleep(0.01)  # only part of it arrived; it will not grow unbounded
                continue
            consumed, source = parsed
            sock.recv(consumed)
            return source
