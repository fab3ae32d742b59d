"""Multi-process workers with real child processes, SO_REUSEPORT and real signals."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mqttgate.proxy.workers import resolve_workers, reuseport_socket

APP = Path(__file__).with_name("workers_app.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def echo(port: int) -> tuple[int, int, int]:
    """(worker index, worker pid, SIGHUPs it has seen) of the worker that took the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        f = conn.makefile("rwb")
        index, pid, hups = (int(x) for x in f.readline().split())
        f.write(b"ping\n")
        f.flush()
        assert f.readline() == b"ping\n"
        return index, pid, hups


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def pid_alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that is not its parent does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class App:
    def __init__(self, mode: str) -> None:
        self.echo_port, self.metrics_port = free_port(), free_port()
        self.mp_dir: Path | None = None
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), str(self.echo_port), str(self.metrics_port), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # little output: the supervisor's warnings, tracebacks
            text=True,
            start_new_session=True,  # its own process group: the cleanup can kill everything
        )

    def info(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.mp_dir = Path(info["multiprocess_dir"])
        return info

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()

    def cleanup(self) -> None:
        # the whole group: also workers a broken supervisor might have left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        if self.mp_dir is not None:  # a SIGKILLed supervisor cannot remove it itself
            shutil.rmtree(self.mp_dir, ignore_errors=True)


@pytest.fixture
def app() -> Iterator[App]:
    app = App("serve")
    try:
        yield app
    finally:
        app.cleanup()


def counter_value(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics:\n{metrics}")


def test_workers_share_the_port_aggregate_metrics_restart_and_stop(app: App) -> None:
    info = app.info()
    mp_dir = Path(str(info["multiprocess_dir"]))
    assert mp_dir.is_dir()

    # both workers accept on the same port (the kernel spreads connects over them)
    seen: dict[int, int] = {}
    connects = 0
    for _ in range(60):
        index, pid, _ = wait_for(lambda: echo(app.echo_port), what="echo")
        seen[index] = pid
        connects += 1
        if len(seen) == 2 and connects >= 20:
            break
    assert set(seen) == {0, 1}
    assert seen[0] != seen[1] and app.proc.pid not in seen.values()

    # every worker's counter is summed by the supervisor's /metrics
    metrics = app.metrics()
    assert counter_value(metrics, "mqttgate_test_echo_connections_total") == connects
    assert counter_value(metrics, "mqttgate_test_early_total") == connects

    # SIGHUP to the supervisor reaches every worker
    os.kill(app.proc.pid, signal.SIGHUP)
    hupped: set[int] = set()

    def all_hupped() -> bool:
        index, _, hups = echo(app.echo_port)
        if hups:
            hupped.add(index)
        return hupped == {0, 1}

    wait_for(all_hupped, what="SIGHUP in both workers")

    # a worker that dies is replaced, and the counters of the dead one still count
    before = counter_value(app.metrics(), "mqttgate_test_echo_connections_total")
    os.kill(seen[0], signal.SIGKILL)

    def replaced() -> bool:
        index, pid, _ = echo(app.echo_port)
        return index == 0 and pid != seen[0]

    wait_for(replaced, what="worker 0 restarted")
    assert not pid_alive(seen[0])
    after = counter_value(app.metrics(), "mqttgate_test_echo_connections_total")
    assert after > before

    # SIGTERM stops everything within a few seconds, exit 0, temp dir removed
    workers = {echo(app.echo_port)[1] for _ in range(30)}
    started = time.monotonic()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=8) == 0
    assert time.monotonic() - started < 5
    assert not any(pid_alive(pid) for pid in workers)
    assert not mp_dir.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", app.echo_port), timeout=1).close()


def test_workers_exit_when_the_supervisor_is_killed(app: App) -> None:
    app.info()
    workers: dict[int, int] = {}
    wait_for(
        lambda: workers.update([echo(app.echo_port)[:2]]) or len(workers) == 2,
        what="both workers",
    )
    app.proc.kill()  # SIGKILL: no chance to forward anything
    app.proc.wait(5)
    wait_for(
        lambda: not any(pid_alive(pid) for pid in workers.values()),
        timeout=5,
        what="orphaned workers to exit",
    )


def test_ctrl_c_to_the_process_group_stops_everything_cleanly(app: App) -> None:
    app.info()
    workers: dict[int, int] = {}
    wait_for(
        lambda: workers.update([echo(app.echo_port)[:2]]) or len(workers) == 2,
        what="both workers",
    )
    os.killpg(app.proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    assert app.proc.wait(timeout=8) == 0
    assert not any(pid_alive(pid) for pid in workers.values())
    assert app.proc.stderr is not None
    errors = app.proc.stderr.read()
    assert "KeyboardInterrupt" not in errors and "Traceback" not in errors, errors


def test_crash_loop_gives_up_with_exit_1() -> None:
    app = App("crash")
    try:
        info = app.info()
        assert app.proc.wait(timeout=10) == 1  # 3 restarts allowed, then the supervisor quits
        assert not Path(str(info["multiprocess_dir"])).exists()
    finally:
        app.cleanup()


def test_reuseport_sockets_bind_the_same_port_twice() -> None:
    first = reuseport_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        second = reuseport_socket("127.0.0.1", port)
        second.close()
        assert not first.getblocking()
    finally:
        first.close()


def test_resolve_workers() -> None:
    assert resolve_workers(3) == 3
    assert resolve_workers("4") == 4
    assert resolve_workers("auto") >= 1
    for bad in (0, -1, "zero", "", True):
        with pytest.raises(ValueError):
            resolve_workers(bad)  # type: ignore[arg-type]
