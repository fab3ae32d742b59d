"""Use every core: N forked worker processes sharing the listen ports via SO_REUSEPORT.

One Python process relays on one core. Rather than a parent that accepts and hands sockets
over, each worker binds the same address with SO_REUSEPORT and the kernel spreads new
connections across them; the parent only supervises: it forwards SIGHUP/SIGTERM, restarts a
worker that dies (rate-limited, so a crash loop ends the pod instead of spinning), and owns
the prometheus multiprocess directory so ``/metrics`` sums all workers.

The parent runs a plain selector event loop (optionally with an operations task such as the
metrics endpoint) and forks from it. A forked child therefore starts by dropping everything
of the parent's loop: signal handlers and wakeup fd, the "running loop" marker, the loop's
file descriptors (replaced by /dev/null, so no listening socket or epoll instance of the
parent stays shared). Call :func:`run_workers` from the main thread before starting threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = [
    "Supervisor",
    "prepare_multiprocess_dir",
    "resolve_workers",
    "reuseport_socket",
    "run_workers",
]

log = logging.getLogger("mqttgate.proxy.workers")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_BLOCKED_AROUND_FORK = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
_PR_SET_PDEATHSIG = 1

ParentMain = Callable[["Supervisor"], Coroutine[Any, Any, None]]


def resolve_workers(value: int | str) -> int:
    """Number of worker processes from the config value: a positive int or ``"auto"``.

    ``auto`` counts the CPUs this process may run on (a container's cpuset), falling back to
    ``os.cpu_count()``.
    """
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            try:
                return max(1, len(os.sched_getaffinity(0)))
            except (AttributeError, OSError):
                return max(1, os.cpu_count() or 1)
        if not value.strip().isdigit():
            raise ValueError(f"workers must be a positive integer or 'auto', not {value!r}")
        value = int(value)
    if isinstance(value, bool) or value < 1:
        raise ValueError(f"workers must be a positive integer or 'auto', not {value!r}")
    return value


def reuseport_socket(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """A bound, listening, non-blocking socket that other workers may bind too.

    Pass it to ``loop.create_server(sock=...)``. SO_REUSEPORT makes the kernel balance new
    connections across all sockets bound to the address.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def prepare_multiprocess_dir() -> str:
    """Create a fresh ``PROMETHEUS_MULTIPROC_DIR`` and switch prometheus_client to it.

    prometheus_client picks its value class when it is imported, which may be before the
    variable is set; we switch it here so metrics created afterwards (in the workers) write
    to per-process files. An unlabelled metric created earlier keeps a plain in-memory value
    that no other process sees: create metrics inside ``worker_main``, or call this before
    importing the module that defines them and pass the result to :func:`run_workers`.
    Gauges need a ``multiprocess_mode`` (``livesum`` for live connection counts).
    """
    path = tempfile.mkdtemp(prefix="mqttgate-metrics-")
    os.environ[MULTIPROC_ENV] = path
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return path


def _set_pdeathsig(parent: int) -> None:
    """Linux: get SIGTERM when the supervisor dies, so no orphaned worker keeps the port."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


class Supervisor:
    """The parent process: starts, watches, restarts and stops the workers."""

    def __init__(
        self,
        n: int,
        worker_main: Callable[[int], int],
        *,
        parent_main: ParentMain | None = None,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        restart_delay: float = 0.5,
        stop_timeout: float = 10.0,
        multiprocess_dir: str | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("need at least one worker")
        self.n = n
        self.worker_main = worker_main
        self.parent_main = parent_main
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.restart_delay = restart_delay
        self.stop_timeout = stop_timeout
        self.multiprocess_dir = multiprocess_dir or ""
        self.pids: dict[int, int] = {}  # worker index -> pid of the live process
        self._restart_at: dict[int, float] = {}
        self._restarts: collections.deque[float] = collections.deque()
        self._stopping = False
        self._gave_up = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def alive(self) -> int:
        """Live workers (for a readiness check)."""
        return len(self.pids)

    # -- parent ---------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT: 0 when every worker then exited in time, else 1."""
        from prometheus_client import values

        previous = os.environ.get(MULTIPROC_ENV)
        value_class = values.ValueClass
        if self.multiprocess_dir:
            previous = None  # the caller prepared it for us: unset it with the directory
        else:
            self.multiprocess_dir = prepare_multiprocess_dir()
        try:
            with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
                return runner.run(self._main())
        finally:
            shutil.rmtree(self.multiprocess_dir, ignore_errors=True)
            values.ValueClass = value_class
            if previous is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = previous

    async def _main(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        loop.add_signal_handler(signal.SIGCHLD, wake.set)
        parent_task: asyncio.Task[None] | None = None
        try:
            for index in range(self.n):
                self._spawn(index)
            if self.parent_main is not None:
                parent_task = asyncio.create_task(self.parent_main(self))
            while not self._stopping:
                self._reap()
                if parent_task is not None and parent_task.done():
                    if not parent_task.cancelled() and parent_task.exception() is not None:
                        log.error("supervisor task failed", exc_info=parent_task.exception())
                        self._gave_up = True
                        break
                    parent_task = None
                self._start_due_restarts()
                await self._sleep(self._next_timeout())
            return await self._stop_all()
        finally:
            if self.pids:  # leaving by an exception (a failed fork): do not orphan workers
                self._forward(signal.SIGTERM)
            if parent_task is not None:
                parent_task.cancel()
                await asyncio.gather(parent_task, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                loop.remove_signal_handler(sig)

    async def _sleep(self, timeout: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    def _next_timeout(self) -> float:
        # SIGCHLD wakes us at once; the poll is a safety net for a lost signal.
        timeout = 0.5
        now = time.monotonic()
        for when in self._restart_at.values():
            timeout = min(timeout, max(0.0, when - now))
        return timeout

    def _request_stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def _forward(self, sig: int) -> None:
        for pid in list(self.pids.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _reap(self) -> list[int]:
        """Collect exited workers; schedule restarts unless we are stopping."""
        exited = []
        for index, pid in list(self.pids.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            del self.pids[index]
            exited.append(index)
            self._mark_dead(pid)
            if self._stopping:
                continue
            log.warning("worker %d (pid %d) exited unexpectedly: %s", index, pid, _describe(status))
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > self.restart_window:
                self._restarts.popleft()
            if len(self._restarts) >= self.max_restarts:
                log.error(
                    "workers restarted %d times within %.0fs; giving up",
                    len(self._restarts),
                    self.restart_window,
                )
                self._gave_up = True
                self._request_stop()
                continue
            self._restarts.append(now)
            self._restart_at[index] = now + self.restart_delay
        return exited

    def _mark_dead(self, pid: int) -> None:
        """Drop a dead worker's live gauges (e.g. active connections) from the sums."""
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def _start_due_restarts(self) -> None:
        now = time.monotonic()
        for index, when in list(self._restart_at.items()):
            if when <= now and not self._stopping:
                del self._restart_at[index]
                self._spawn(index)

    async def _stop_all(self) -> int:
        self._restart_at.clear()
        self._forward(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self.pids and time.monotonic() < deadline:
            self._reap()
            if self.pids:
                await self._sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        forced = bool(self.pids)
        if forced:
            log.error("workers %s did not stop in %.0fs; killing", self.pids, self.stop_timeout)
            self._forward(signal.SIGKILL)
            for pid in self.pids.values():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                self._mark_dead(pid)
            self.pids.clear()
        return 1 if forced or self._gave_up else 0

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        # Signals stay blocked across fork so none can reach the child while it still
        # carries the parent's handlers (they would wake the parent's loop through the
        # shared wakeup socket).
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED_AROUND_FORK)
        try:
            pid = os.fork()
            if pid == 0:
                self._child(index, parent, old_mask)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        self.pids[index] = pid
        log.info("worker %d started (pid %d)", index, pid)

    # -- child ----------------------------------------------------------------------------

    def _child(self, index: int, parent: int, old_mask: set[int | signal.Signals]) -> None:
        code: object = 1
        try:
            self._forget_parent_loop()
            _set_pdeathsig(parent)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            result = self.worker_main(index)
            code = 0 if result is None else result
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 1)

    def _forget_parent_loop(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        # Ctrl-C reaches the whole process group; the supervisor turns it into an orderly
        # SIGTERM for every worker, so a worker must not die of it on its own.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        asyncio.events._set_running_loop(None)
        loop = self._loop
        fds: set[int] = set()
        selector = getattr(loop, "_selector", None)
        if selector is not None:
            fds.add(selector.fileno())
            fds.update(key.fd for key in selector.get_map().values())
        for name in ("_ssock", "_csock"):
            sock = getattr(loop, name, None)
            if sock is not None:
                fds.add(sock.fileno())
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in fds:
            if fd > 2 and fd != devnull:
                with contextlib.suppress(OSError):
                    os.dup2(devnull, fd)
        os.close(devnull)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def run_workers(
    n: int,
    worker_main: Callable[[int], int],
    *,
    parent_main: ParentMain | None = None,
    max_restarts: int = 5,
    restart_window: float = 60.0,
    restart_delay: float = 0.5,
    stop_timeout: float = 10.0,
    multiprocess_dir: str | None = None,
) -> int:
    """Run ``worker_main(index)`` in ``n`` forked processes until SIGTERM; the exit status.

    Each worker binds its listeners itself with :func:`reuseport_socket`. ``parent_main``,
    if given, runs in the parent's event loop for the whole time (e.g. the metrics endpoint
    with ``multiprocess_dir=supervisor.multiprocess_dir``) and is cancelled at the end.
    ``multiprocess_dir``: one made earlier by :func:`prepare_multiprocess_dir` (removed at
    exit like our own).
    """
    return Supervisor(
        n,
        worker_main,
        parent_main=parent_main,
        max_restarts=max_restarts,
        restart_window=restart_window,
        restart_delay=restart_delay,
        stop_timeout=stop_timeout,
        multiprocess_dir=multiprocess_dir,
    ).run()
