"""FileWatcher with real files on disk, and signal wiring with real signals."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from mqttgate.proxy.reload import FileWatcher, install_sighup, install_signal_handlers

from tests.ops.support import RunLoop

INTERVAL = 0.05
SETTLE = 12 * INTERVAL  # long enough for detection plus debounce, with slack


def run_asyncio(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


async def watch_while(paths: list[Path], change: Any) -> int:
    """Count callbacks while ``change()`` runs and the watcher settles afterwards."""
    calls = 0

    def callback() -> None:
        nonlocal calls
        calls += 1

    async with FileWatcher(paths, callback, interval=INTERVAL):
        await asyncio.sleep(3 * INTERVAL)
        change()
        await asyncio.sleep(SETTLE)
    return calls


def test_unchanged_file_triggers_nothing(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")
    assert run_asyncio(watch_while([users], lambda: None)) == 0


def test_in_place_write_triggers_once(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")
    inode = users.stat().st_ino

    def change() -> None:
        with open(users, "r+") as f:  # same inode, same size, new content
            f.write("users: []\n")
        assert users.stat().st_ino == inode

    assert run_asyncio(watch_while([users], change)) == 1


def test_rename_replace_triggers_once(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")

    def change() -> None:
        new = tmp_path / ".users.yaml.tmp"
        new.write_text("users: {}\n")  # identical content: the new inode is what matters
        os.replace(new, users)

    assert run_asyncio(watch_while([users], change)) == 1


def test_kubernetes_configmap_symlink_swap_triggers_once(tmp_path: Path) -> None:
    # The layout kubelet uses: users.yaml -> ..data/users.yaml, ..data -> ..<timestamp>
    (tmp_path / "..2026_01").mkdir()
    (tmp_path / "..2026_01" / "users.yaml").write_text("users: {}\n")
    (tmp_path / "..data").symlink_to("..2026_01")
    (tmp_path / "users.yaml").symlink_to("..data/users.yaml")

    def change() -> None:
        (tmp_path / "..2026_02").mkdir()
        (tmp_path / "..2026_02" / "users.yaml").write_text("users: {}\n")
        (tmp_path / "..data_tmp").symlink_to("..2026_02")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        (tmp_path / "..2026_01" / "users.yaml").unlink()
        (tmp_path / "..2026_01").rmdir()

    assert run_asyncio(watch_while([tmp_path / "users.yaml"], change)) == 1


def test_any_of_several_files(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")

    def change() -> None:  # both files replaced together: still one reload
        cert.write_text("cert2")
        key.write_text("key2")

    assert run_asyncio(watch_while([cert, key], change)) == 1


def test_partial_write_is_reported_only_when_settled(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")
    watcher = FileWatcher([users], lambda: None)
    watcher._committed = watcher._snapshot()
    with open(users, "a") as f:
        f.write("# half")
        f.flush()
        assert not watcher.poll()  # first sight of a change: wait
        f.write(" and the rest\n")
        f.flush()
        assert not watcher.poll()  # still changing: wait again
    assert watcher.poll()  # stable for one interval: report
    assert not watcher.poll()  # and only once


def test_missing_file_is_not_reported_but_its_return_is(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")
    watcher = FileWatcher([users], lambda: None)
    watcher._committed = watcher._snapshot()
    users.unlink()
    assert not watcher.poll()
    assert not watcher.poll()
    assert not watcher.poll()
    users.write_text("users: {}\n")
    assert not watcher.poll()
    assert watcher.poll()


def test_async_callback_and_failing_callback_keep_watching(run: RunLoop, tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("v1")
    seen: list[str] = []

    async def callback() -> None:
        await asyncio.sleep(0)
        seen.append(users.read_text())
        if len(seen) == 1:
            raise RuntimeError("bad file")  # logged, the watcher survives

    async def main() -> None:
        async with FileWatcher([users], callback, interval=INTERVAL):
            await asyncio.sleep(2 * INTERVAL)
            users.write_text("v2")
            await asyncio.sleep(SETTLE)
            users.write_text("v3")
            await asyncio.sleep(SETTLE)

    run(main())
    assert seen == ["v2", "v3"]


def test_sighup_runs_async_callback_and_coalesces(run: RunLoop) -> None:
    runs = 0

    async def reload() -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.2)

    async def main() -> None:
        uninstall = install_sighup(asyncio.get_running_loop(), reload)
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.sleep(0.05)
            for _ in range(5):  # during the running reload: one rerun, not five
                os.kill(os.getpid(), signal.SIGHUP)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.6)
        finally:
            uninstall()

    run(main())
    assert runs == 2
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_install_signal_handlers_routes_hup_and_term(run: RunLoop) -> None:
    events: list[str] = []

    async def main() -> None:
        stopped = asyncio.Event()

        async def on_sigterm() -> None:
            events.append("term")
            stopped.set()

        uninstall = install_signal_handlers(
            asyncio.get_running_loop(), lambda: events.append("hup"), on_sigterm
        )
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stopped.wait(), 2)
        finally:
            uninstall()

    run(main())
    assert events == ["hup", "term"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
