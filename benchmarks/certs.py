"""A throw-away CA and server certificate for one benchmark run (trustme)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path  # server certificate chain
    key: Path
    combined: Path  # chain + key in one PEM, as HAProxy wants it

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        return ctx

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def make_certs(folder: Path) -> Certs:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    paths = Certs(
        ca=folder / "ca.crt",
        cert=folder / "server.crt",
        key=folder / "server.key",
        combined=folder / "server.pem",
    )
    ca.cert_pem.write_to_path(str(paths.ca))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    paths.cert.write_bytes(chain)
    leaf.private_key_pem.write_to_path(str(paths.key))
    paths.combined.write_bytes(chain + leaf.private_key_pem.bytes())
    return paths
