"""Server-side TLS: contexts built from config, identities and failure reasons.

Built on the stdlib ``ssl`` module (uvloop drives it); the proxy owns no crypto.
"""

from __future__ import annotations

import ssl

from mqttgate.proxy.config import TLSConfig

# Modern AEAD suites only for TLS 1.2 (TLS 1.3 suites are fixed by OpenSSL and all fine).
_CIPHERS_TLS12 = (
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!RC4:!3DES"
)

# OpenSSL X509_V_ERR_* codes that name the cause precisely.
_X509_EXPIRED = 10
_X509_NOT_YET_VALID = 9
_X509_UNKNOWN_CA = {2, 18, 19, 20, 21, 7, 8}


def server_context(cfg: TLSConfig) -> ssl.SSLContext:
    """A hardened server context; raises ``ssl.SSLError``/``OSError`` on unusable files."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if cfg.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    ctx.set_ciphers(_CIPHERS_TLS12)
    ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
    ctx.set_alpn_protocols(["mqtt"])
    # Session tickets (stateless resumption) are on by default; one ticket is enough for
    # MQTT clients that reconnect, and fewer tickets mean less work per handshake.
    ctx.num_tickets = 1
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if cfg.mutual_tls:
        if cfg.ca_file is None:
            raise ValueError("mutual TLS needs ca_file")
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(cfg.ca_file))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_common_name(peercert: dict[str, object] | None) -> str | None:
    """The subject Common Name of a verified peer certificate (``getpeercert()`` form)."""
    if not peercert:
        return None
    subject = peercert.get("subject")
    if not isinstance(subject, tuple):
        return None
    for rdn in subject:
        for attr in rdn:
            if len(attr) == 2 and attr[0] == "commonName":
                return str(attr[1])
    return None


def classify_handshake_error(exc: BaseException) -> str:
    """Map a failed handshake to a metric label of ``tls_handshake_failures_total``."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionAbortedError) and "taking longer" in str(exc):
        return "timeout"  # the loop's ssl_handshake_timeout fired
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == _X509_EXPIRED:
            return "expired"
        if code == _X509_NOT_YET_VALID:
            return "not_yet_valid"
        if code in _X509_UNKNOWN_CA:
            return "unknown_ca"
        return "bad_certificate"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        text = str(exc).upper()
        if (
            "PEER_DID_NOT_RETURN_A_CERTIFICATE" in reason
            or "PEER_DID_NOT_RETURN_A_CERTIFICATE" in text
        ):
            return "no_certificate"
        if "CERTIFICATE_REQUIRED" in reason or "CERTIFICATE_REQUIRED" in text:
            return "no_certificate"
        if "EXPIRED" in reason:
            return "expired"
        if "UNKNOWN_CA" in reason:
            return "unknown_ca"
        if "CERTIFICATE" in reason:
            return "bad_certificate"
        if any(
            w in reason
            for w in (
                "VERSION",
                "WRONG_VERSION",
                "HTTP_REQUEST",
                "NO_SHARED_CIPHER",
                "UNSUPPORTED_PROTOCOL",
                "PROTOCOL",
            )
        ):
            return "protocol"
        return "other"
    return "other"
