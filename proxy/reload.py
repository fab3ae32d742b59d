"""Notice changed users/TLS files, and wire SIGHUP/SIGTERM into the event loop.

Polling ``os.stat`` once a second instead of inotify: it needs no dependency, sees every way a
file can change (in-place write, editor rename, Kubernetes' ``..data`` symlink swap, a file on
a network or overlay filesystem where inotify is silent) and costs a few syscalls per second.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable

__all__ = ["FileWatcher", "install_sighup", "install_signal_handlers"]

log = logging.getLogger("mqttgate.proxy.reload")

Callback = Callable[[], Awaitable[object] | object]
# (inode, device, mtime ns, size, resolved path); None while the file is missing
Signature = tuple[int, int, int, int, str] | None


def _signature(path: str) -> Signature:
    try:
        st = os.stat(path)  # follows symlinks: a swapped ..data target has a new inode
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size, os.path.realpath(path))


class FileWatcher:
    """Calls ``callback`` once after any of ``paths`` changed and then stayed unchanged.

    A change is reported only when two polls ``interval`` apart agree, so a file still being
    written is not loaded half-way (debounce). A file that is missing is never reported (there
    is nothing to load; the old snapshot stays), but its reappearance is. Callbacks run one at
    a time on the loop; an exception in one is logged and watching goes on.
    """

    def __init__(
        self, paths: Iterable[str | os.PathLike[str]], callback: Callback, *, interval: float = 1.0
    ) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.callback = callback
        self.interval = interval
        self._committed: dict[str, Signature] = {}
        self._pending: dict[str, Signature] | None = None
        self._task: asyncio.Task[None] | None = None

    def _snapshot(self) -> dict[str, Signature]:
        return {path: _signature(path) for path in self.paths}

    def start(self) -> None:
        """Take the current state as the baseline and start polling on the running loop.

        Start the watcher before loading the files, so a change in between is not lost.
        """
        if self._task is not None:
            return
        self._committed = self._snapshot()
        self._pending = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="file-watcher")

    async def stop(self) -> None:
        """Stop polling; waits for a running callback to be cancelled."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # gather: the watcher's own cancellation is swallowed, a cancellation of the
            # caller still propagates.
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> FileWatcher:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def poll(self) -> bool:
        """One poll step; True when a settled change should be reported now."""
        current = self._snapshot()
        if current == self._committed:
            self._pending = None
            return False
        if current != self._pending:
            self._pending = current  # changed, or still changing: wait one more interval
            return False
        self._pending = None
        self._committed = current
        return all(sig is not None for sig in current.values())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.poll():
                continue
            try:
                result = self.callback()
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reload callback failed")


def _dispatcher(callback: Callback, *, rerun: bool) -> Callable[[], None]:
    """Run ``callback`` for a signal; async callbacks never overlap.

    A signal arriving while an async callback still runs is coalesced into one rerun
    afterwards (``rerun=True``: a reload must see the newest files) or ignored (a shutdown
    already in progress).
    """
    state: dict[str, object] = {"task": None, "again": False}

    async def drive(first: Awaitable[object]) -> None:
        awaitable: Awaitable[object] | None = first
        while awaitable is not None:
            try:
                await awaitable
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("signal handler failed")
            awaitable = None
            if state["again"]:
                state["again"] = False
                result = callback()
                awaitable = result if inspect.isawaitable(result) else None
        state["task"] = None

    def on_signal() -> None:
        task = state["task"]
        if isinstance(task, asyncio.Task) and not task.done():
            if rerun:
                state["again"] = True
            return
        try:
            result = callback()
        except Exception:
            log.exception("signal handler failed")
            return
        if inspect.isawaitable(result):
            state["task"] = asyncio.ensure_future(drive(result))

    return on_signal


def install_sighup(loop: asyncio.AbstractEventLoop, callback: Callback) -> Callable[[], None]:
    """Call ``callback`` (sync or async) on SIGHUP; returns a function that uninstalls it."""
    loop.add_signal_handler(signal.SIGHUP, _dispatcher(callback, rerun=True))

    def uninstall() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return uninstall


def install_signal_handlers(
    loop: asyncio.AbstractEventLoop, on_sighup: Callback, on_sigterm: Callback
) -> Callable[[], None]:
    """SIGHUP reloads; SIGTERM and SIGINT (Ctrl-C) start the graceful shutdown.

    Repeated SIGHUPs during a reload coalesce into one more reload; a SIGTERM while an async
    ``on_sigterm`` still runs is ignored, so the shutdown is never started twice at once.

    Returns a function that restores the default handlers.
    """
    loop.add_signal_handler(signal.SIGHUP, _dispatcher(on_sighup, rerun=True))
    stop = _dispatcher(on_sigterm, rerun=False)
    loop.add_signal_handler(signal.SIGTERM, stop)
    loop.add_signal_handler(signal.SIGINT, stop)

    def uninstall() -> None:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    return uninstall
