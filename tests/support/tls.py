"""TLS probes shared by the test suites."""

from __future__ import annotations

import socket
import ssl


def served_certificate(port: int) -> bytes:
    """The DER certificate a TLS listener on 127.0.0.1:``port`` presents to a new handshake
    (not verified: the tests compare it with the file they expect to be served)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der
