"""TLS contexts and handshake failure reasons, with real handshakes over memory BIOs."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
import trustme
from mqttgate.proxy.config import TLSConfig
from mqttgate.proxy.tls import classify_handshake_error, peer_common_name, server_context


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(tmp_path: Path, ca: trustme.CA) -> TLSConfig:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    return TLSConfig(tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt", True, "1.2")


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext
) -> tuple[ssl.SSLObject, BaseException | None]:
    """Drive both ends over memory BIOs; the server-side error (None on success)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    server_error: BaseException | None = None
    server_done = client_done = False
    for _ in range(20):
        if not client_done:
            try:
                cli.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                client_done = True
        s_in.write(c_out.read())
        if not server_done:
            try:
                srv.do_handshake()
                server_done = True
                # TLS 1.3: the client's certificate flight is read with the first data.
                srv.read(1)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                server_error = exc
                server_done = True
        c_in.write(s_out.read())
        if server_done and client_done:
            break
    return srv, server_error


def client_ctx(ca: trustme.CA, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(["mqtt"])
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


def test_mutual_tls_identity_is_subject_cn(ca: trustme.CA, tls_files: TLSConfig) -> None:
    srv, err = handshake(
        server_context(tls_files), client_ctx(ca, ca.issue_cert("press-17", common_name="press-17"))
    )
    assert err is None
    assert peer_common_name(srv.getpeercert()) == "press-17"
    assert srv.selected_alpn_protocol() == "mqtt"
    assert srv.version() in ("TLSv1.2", "TLSv1.3")


def test_without_mutual_tls_no_certificate_is_asked(ca: trustme.CA, tls_files: TLSConfig) -> None:
    cfg = TLSConfig(tls_files.cert_file, tls_files.key_file, None, False, "1.2")
    srv, err = handshake(server_context(cfg), client_ctx(ca))
    assert err is None and srv.getpeercert() in (None, {})


def test_min_version_13_refuses_12(ca: trustme.CA, tls_files: TLSConfig) -> None:
    cfg = TLSConfig(tls_files.cert_file, tls_files.key_file, None, False, "1.3")
    client = client_ctx(ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    _srv, err = handshake(server_context(cfg), client)
    assert err is not None and classify_handshake_error(err) == "protocol"


def test_missing_client_certificate(ca: trustme.CA, tls_files: TLSConfig) -> None:
    _srv, err = handshake(server_context(tls_files), client_ctx(ca))
    assert err is not None and classify_handshake_error(err) == "no_certificate"


def test_client_certificate_from_another_ca(ca: trustme.CA, tls_files: TLSConfig) -> None:
    other = trustme.CA()
    _srv, err = handshake(
        server_context(tls_files), client_ctx(ca, other.issue_cert(common_name="alice"))
    )
    assert err is not None and classify_handshake_error(err) == "unknown_ca"


def test_expired_and_not_yet_valid_client_certificates(
    ca: trustme.CA, tls_files: TLSConfig
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert(
        common_name="alice",
        not_before=now - datetime.timedelta(days=10),
        not_after=now - datetime.timedelta(days=1),
    )
    _srv, err = handshake(server_context(tls_files), client_ctx(ca, expired))
    assert err is not None and classify_handshake_error(err) == "expired"
    future = ca.issue_cert(
        common_name="alice",
        not_before=now + datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=10),
    )
    _srv, err = handshake(server_context(tls_files), client_ctx(ca, future))
    assert err is not None and classify_handshake_error(err) == "not_yet_valid"


def test_other_errors() -> None:
    assert classify_handshake_error(TimeoutError()) == "timeout"
    aborted = ConnectionAbortedError(
        "SSL handshake is taking longer than 2.0 seconds: aborting the connection"
    )
    assert classify_handshake_error(aborted) == "timeout"
    assert classify_handshake_error(ConnectionResetError()) == "other"


def test_peer_common_name_edge_cases() -> None:
    assert peer_common_name(None) is None
    assert peer_common_name({}) is None
    assert peer_common_name({"subject": ((("organizationName", "x"),),)}) is None
