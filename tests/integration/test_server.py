"""The Server's seams for operations: several listeners, readiness, TLS reload, shutdown."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from mqttgate.codec import Connack, Connect, Disconnect

from .clients import V5, Paho, RawClient
from .conftest import Broker, Certs, ProxyHandle, UsersFile, write_config

pytestmark = pytest.mark.integration


def test_several_listeners_with_their_own_tls_mode(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    second = {
        "name": "machines",
        "bind": "127.0.0.1:0",
        "tls": {
            "cert_file": str(certs.server_cert),
            "key_file": str(certs.server_key),
            "ca_file": str(certs.ca_file),
            "mutual_tls": True,
        },
    }
    proxy = running_proxy(upstream=mosquitto.address, extra_listeners=[second])
    ports = proxy.call(proxy.server.ports)
    assert set(ports) == {"mqtts", "machines"}
    human = Paho(ports["mqtts"], certs.client_context(), username="alice", password="alice-pw")
    machine = Paho(ports["machines"], certs.client_context(certs.client("press-17")), client_id="m")
    try:
        assert human.connect() == 0
        assert machine.connect() == 0
    finally:
        human.close()
        machine.close()
    assert proxy.metric("mqttgate_connections_total", {"listener": "machines"}) == 1
    assert proxy.metric("mqttgate_connections_total", {"listener": "mqtts"}) == 1


def test_readiness_names_what_is_missing(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker
) -> None:
    proxy = running_proxy(upstream=mosquitto.address)
    assert proxy.call(proxy.server.readiness) == {
        "policy": True,
        "listeners": True,
        "upstream": True,
    }
    mosquitto.process.terminate()
    mosquitto.process.wait(5)
    assert proxy.run(proxy.server.check_upstream()) is False
    assert proxy.call(proxy.server.readiness)["upstream"] is False


def test_shutdown_says_goodbye_and_stops_listening(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    proxy = running_proxy(upstream=mosquitto.address)
    client = RawClient(proxy.port, certs.client_context(), level=V5)
    client.send(
        Connect(protocol_level=5, client_id="bye", username="alice", password=b"alice-pw").encode(5)
    )
    assert isinstance(client.read_packet(), Connack)
    proxy.run(proxy.server.shutdown(2.0))
    try:
        packets = client.read_until_closed(timeout=3)
    finally:
        client.close()
    assert [(type(p), p.reason_code) for p in packets] == [(Disconnect, 0x8B)]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", proxy.port), timeout=1):
        pass
    assert proxy.active_connections() == 0


def test_tls_reload_swaps_the_server_certificate(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    proxy = running_proxy(upstream=mosquitto.address)
    new_ca = trustme.CA()
    new_cert = new_ca.issue_cert("127.0.0.1", "localhost")
    new_cert.cert_chain_pems[0].write_to_path(str(certs.server_cert))
    new_cert.private_key_pem.write_to_path(str(certs.server_key))
    assert proxy.call(proxy.server.reload_tls)
    new_ctx = ssl.create_default_context()
    new_ca.configure_trust(new_ctx)
    c = Paho(proxy.port, new_ctx, username="alice", password="alice-pw")
    try:
        assert c.connect() == 0
    finally:
        c.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        RawClient(proxy.port, certs.client_context())  # the old CA no longer matches
    # broken files: nothing changes
    certs.server_key.write_text("not a key")
    assert proxy.call(proxy.server.reload_tls) is False
    c = Paho(proxy.port, new_ctx, username="alice", password="alice-pw")
    try:
        assert c.connect() == 0
    finally:
        c.close()


def test_running_proxy_accepts_a_ready_config_file(
    running_proxy: Callable[..., ProxyHandle],
    mosquitto: Broker,
    certs: Certs,
    users_file: UsersFile,
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, certs=certs, users=users_file, upstream=mosquitto.address)
    proxy = running_proxy(path)
    c = Paho(proxy.port, certs.client_context(), username="bob", password="bob-pw")
    try:
        assert c.connect() == 0
    finally:
        c.close()
