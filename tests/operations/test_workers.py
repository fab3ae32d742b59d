"""``workers: 2``: both worker processes accept connections on the shared port, ``/metrics``
sums them, and SIGHUP and SIGTERM reach every worker.

Which worker holds a connection is read from ``/proc`` (the socket inodes each worker has
open), so the proxy needs no test hook for it.
"""

from __future__ import annotations

import copy
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from mqttgate.codec import Connack, Connect, Suback, Subscribe, Subscription

from tests.integration.clients import RawClient
from tests.integration.conftest import Broker, Certs, UsersFile, free_port

from .gate import Gate, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc"),
]

CLIENTS = 16  # all on one worker by chance: 2 * 2**-16


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the field after the parenthesised command name: state, then the parent's pid
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def established_on(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is ``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if int(local.split(":")[1], 16) == port and state == "01":
            inodes.add(inode)
    return inodes


def sockets_of(pid: int) -> set[str]:
    inodes = set()
    folder = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(folder):
        try:
            target = os.readlink(folder / fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def login(port: int, certs: Certs, n: int) -> RawClient:
    client = RawClient(port, certs.client_context(), level=4)
    client.send(Connect(client_id=f"w{n}", username="alice", password=b"alice-pw").encode(4))
    connack = client.read_packet()
    assert isinstance(connack, Connack) and connack.reason_code == 0, connack
    return client


def test_two_workers_share_connections_metrics_and_signals(
    gate: Callable[..., Gate], mosquitto: Broker, certs: Certs, users_file: UsersFile
) -> None:
    port = free_port()
    g = gate(upstream=mosquitto.address, workers=2, port=port, wait_ready=False)
    g.wait_for(r"ready \(worker 0\)")
    g.wait_for(r"ready \(worker 1\)")
    g.wait_ready()
    workers = children(g.proc.pid)
    assert len(workers) == 2, workers

    clients: list[RawClient] = []
    try:
        for n in range(CLIENTS):
            clients.append(login(port, certs, n))
        held = {pid: sockets_of(pid) & established_on(port) for pid in workers}
        assert all(held.values()), f"a worker accepted nothing: {held}"
        assert sum(len(h) for h in held.values()) == CLIENTS

        scrape = g.scrape()  # the parent's /metrics sums both workers
        assert scrape.value("mqttgate_connections_active") == CLIENTS
        assert scrape.value("mqttgate_connections_total", listener="mqtts") == CLIENTS
        assert scrape.value("mqttgate_auth_total", method="password", result="success") == CLIENTS

        # SIGHUP to the supervisor reloads every worker: each connection sees the change
        revoked = copy.deepcopy(users_file.data)
        revoked["users"]["alice"]["permissions"] = []
        revoked["users"]["alice"]["roles"] = []
        users_file.write(revoked)
        g.signal(signal.SIGHUP)
        wait_until(lambda: g.output().count("reload: policy ok") == 2, what="both reloads")
        for n, client in enumerate(clients):
            client.send(Subscribe(n + 1, [Subscription("factory/line1/#", 1)]).encode(4))
            assert client.read_packet() == Suback(n + 1, [0x80])
    finally:
        for client in clients:
            client.close()
    after = g.settled()
    assert after.value("mqttgate_subscribe_filters_total", decision="denied") == CLIENTS

    assert g.stop() == 0  # SIGTERM: the supervisor stops both workers and exits 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
