"""Hot reload of the users file in a real mqttgate process (``policy.reload: watch``): a
client that stays connected and subscribed follows the new permissions from its next packet;
a broken file changes nothing and is counted and logged with file, line and field.

That a new handshake presents a rotated certificate is covered where the TLS files change:
tests/integration/test_server.py (reload) and tests/deploy/test_rotation.py (SIGHUP and the
file watch, with a Kubernetes-style projected volume); here: connections made before the
rotation stay up on the old certificate.
"""

from __future__ import annotations

import copy
import re
import ssl
from collections.abc import Callable

import pytest
import trustme

from tests.integration.clients import Paho
from tests.integration.conftest import PASSWORDS, Broker, Certs, ProxyHandle, UsersFile
from tests.support.tls import served_certificate

from .gate import Gate, Samples, wait_until

pytestmark = pytest.mark.integration

#: The ``result`` label of a reload that kept the old policy (issue 5 calls it "error").
RELOAD_FAILED = "error"


def wait_moved(g: Gate, before: Samples, name: str, delta: float, **labels: str) -> Samples:
    """Poll ``/metrics`` until the sample moved by ``delta`` (counts of open connections are
    flushed once a second); fails if it moves further."""
    target = before.value(name, **labels) + delta

    def reached() -> Samples | None:
        now = g.scrape()
        value = now.value(name, **labels)
        assert value <= target, f"{name}{labels} moved past {target}: {value}"
        return now if value == target else None

    return wait_until(reached, what=f"{name}{labels} to move by {delta}")  # type: ignore[no-any-return]


def test_connected_client_follows_reloaded_permissions(
    gate: Callable[..., Gate], mosquitto: Broker, certs: Certs, users_file: UsersFile
) -> None:
    g = gate(upstream=mosquitto.address, policy={"reload": "watch"})
    alice = Paho(g.port, certs.client_context(), username="alice", password=PASSWORDS["alice"])
    root = Paho(g.port, certs.client_context(), username="root", password=PASSWORDS["root"])
    revoked = copy.deepcopy(users_file.data)
    revoked["users"]["alice"]["roles"] = []
    revoked["users"]["alice"]["permissions"] = [
        {"topic": "users/${username}/#", "access": "readWrite"}
    ]
    try:
        assert alice.connect() == 0 and root.connect() == 0
        assert alice.subscribe("factory/line1/#") == [1]
        assert root.subscribe("factory/line1/b", "users/alice/#") == [1, 1]  # not .../a
        root.publish("factory/line1/a", b"before")
        assert alice.expect().payload == b"before"
        alice.publish("factory/line1/b", b"alice-before")
        assert root.expect().payload == b"alice-before"
        assert alice.expect().payload == b"alice-before"  # her own subscription matches too
        before = g.scrape()

        users_file.write(revoked)  # replaced by rename, as Kubernetes and editors do
        wait_moved(g, before, "mqttgate_policy_reloads_total", 1, result="success")
        root.publish("factory/line1/a", b"after")  # still subscribed at the broker ...
        wait_moved(g, before, "mqttgate_publish_total", 1, direction="out", decision="denied")
        alice.expect_none(0.2)  # ... but no longer delivered
        alice.publish("factory/line1/b", b"alice-after")  # answered by the proxy
        wait_moved(g, before, "mqttgate_publish_total", 1, direction="in", decision="denied")
        alice.publish("users/alice/x", b"own")  # what she keeps still works
        assert root.expect().payload == b"own"
        root.expect_none(0.2)

        users_file.path.write_text("users:\n  alice: [broken\n")  # written in place
        wait_moved(g, before, "mqttgate_policy_reloads_total", 1, result=RELOAD_FAILED)
        logged = g.wait_for(r"users\.yaml:\d+: [^\"]*")
        assert re.search(r"users\.yaml:\d+: ", logged.group(0))
        root.publish("factory/line1/a", b"still-revoked")  # the revoked snapshot stays ...
        alice.publish("users/alice/x", b"own-again")  # ... and nothing else changed
        assert root.expect().payload == b"own-again"
        assert alice.expect_none(0.2) is None
        bob = Paho(g.port, certs.client_context(), username="bob", password=PASSWORDS["bob"])
        try:
            assert bob.connect() == 0  # logins keep working on the old snapshot
        finally:
            bob.close()

    finally:
        alice.close()
        root.close()


def test_certificate_rotation_keeps_existing_connections(
    running_proxy: Callable[..., ProxyHandle], mosquitto: Broker, certs: Certs
) -> None:
    proxy = running_proxy(upstream=mosquitto.address)
    before = served_certificate(proxy.port)
    alice = Paho(proxy.port, certs.client_context(), username="alice", password="alice-pw")
    try:
        assert alice.connect() == 0
        assert alice.subscribe("factory/line1/#") == [1]
        leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
        leaf.cert_chain_pems[0].write_to_path(str(certs.server_cert))
        leaf.private_key_pem.write_to_path(str(certs.server_key))
        assert proxy.call(proxy.server.reload_tls)  # what SIGHUP and the file watch call
        rotated = served_certificate(proxy.port)
        assert rotated != before
        assert rotated == ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
        alice.publish("factory/line1/still", b"up")  # the old TLS session carries on
        assert alice.expect().payload == b"up"
        assert not alice.disconnected.is_set()
    finally:
        alice.close()
