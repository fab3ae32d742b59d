"""Authentication decisions for CONNECT.

Verifying an argon2 hash costs tens of milliseconds of CPU by design; a fleet of devices
reconnecting after a network blip would queue behind it. After one successful
verification the Authenticator remembers an HMAC of (username, password, stored hash)
under a per-process random key, so the same reconnect is answered by `try_cached` in
microseconds. The stored hash is part of the HMAC, so a reload that changes a user's hash
invalidates the entry by itself; the password itself is never kept.

Unknown users, and users without a hash, are verified against a dummy argon2 hash made
with the same parameters, so the time of an answer does not tell which user names exist.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import threading

from .model import PolicySnapshot, User
from .passwords import hash_password, verify_password

__all__ = ["MAX_CACHED_CREDENTIALS", "AuthResult", "Authenticator"]

MAX_CACHED_CREDENTIALS = 100_000


class AuthResult(enum.Enum):
    SUCCESS = "success"
    BAD_CREDENTIALS = "bad_credentials"
    NOT_AUTHORIZED = "not_authorized"


def _length_prefixed(*parts: bytes) -> bytes:
    # Unambiguous concatenation: ("ab", "c") and ("a", "bc") must not collide.
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


class Authenticator:
    """Thread-safe; one per process."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._verified: dict[str, bytes] = {}
        self._dummy_hash: str | None = None

    # -- internals (a subclass may observe them in tests) -------------------------------

    def _verify(self, stored_hash: str, password: bytes) -> bool:
        return verify_password(stored_hash, password)

    def _dummy_verify(self, password: bytes) -> None:
        """Spend what a real verification would cost, and always fail."""
        dummy = self._dummy_hash
        if dummy is None:
            made = hash_password(secrets.token_urlsafe(24))
            with self._lock:
                if self._dummy_hash is None:
                    self._dummy_hash = made
                dummy = self._dummy_hash
        self._verify(dummy, password)

    def _digest(self, username: str, password: bytes, stored_hash: str) -> bytes:
        message = _length_prefixed(
            username.encode("utf-8", "surrogatepass"), password, stored_hash.encode("utf-8")
        )
        return hmac.digest(self._key, message, "sha256")

    @staticmethod
    def _precheck(
        snapshot: PolicySnapshot, username: str | None, password: bytes | None
    ) -> tuple[AuthResult | None, User | None]:
        """An answer that needs no verification, or the user (None: unknown or no hash)."""
        if username is None or password is None:
            return AuthResult.BAD_CREDENTIALS, None
        user = snapshot.users.get(username)
        if user is None:
            return None, None
        if user.grant_type != "password":
            return AuthResult.NOT_AUTHORIZED, None
        if not user.password_hash:
            return None, None
        return None, user

    # -- public API --------------------------------------------------------------------

    def try_cached(
        self, snapshot: PolicySnapshot, username: str | None, password: bytes | None
    ) -> AuthResult | None:
        """An answer without a slow verification, or None: call authenticate_password."""
        answer, user = self._precheck(snapshot, username, password)
        if answer is not None:
            return answer
        if user is None or user.password_hash is None or username is None or password is None:
            return None
        remembered = self._verified.get(username)
        if remembered is None:
            return None
        digest = self._digest(username, password, user.password_hash)
        if hmac.compare_digest(digest, remembered):
            return AuthResult.SUCCESS
        return None

    def authenticate_password(
        self, snapshot: PolicySnapshot, username: str | None, password: bytes | None
    ) -> AuthResult:
        """Blocking (argon2): call it in an executor."""
        answer, user = self._precheck(snapshot, username, password)
        if answer is not None:
            return answer
        assert password is not None and username is not None
        if user is None or user.password_hash is None:
            self._dummy_verify(password)
            return AuthResult.BAD_CREDENTIALS
        digest = self._digest(username, password, user.password_hash)
        remembered = self._verified.get(username)
        if remembered is not None and hmac.compare_digest(digest, remembered):
            return AuthResult.SUCCESS
        if not self._verify(user.password_hash, password):
            return AuthResult.BAD_CREDENTIALS
        with self._lock:
            if len(self._verified) >= MAX_CACHED_CREDENTIALS and username not in self._verified:
                self._verified.clear()
            self._verified[username] = digest
        return AuthResult.SUCCESS

    def authenticate_certificate(
        self, snapshot: PolicySnapshot, common_name: str, connect_username: str | None
    ) -> AuthResult:
        """A client certificate chained to the CA: its CN names the user. An empty CONNECT
        username counts as none (some clients always send the field)."""
        user = snapshot.users.get(common_name)
        if user is None:
            return AuthResult.BAD_CREDENTIALS
        if user.grant_type != "certificate":
            return AuthResult.NOT_AUTHORIZED
        if connect_username and connect_username != common_name:
            return AuthResult.NOT_AUTHORIZED
        return AuthResult.SUCCESS

    def forget(self) -> None:
        """Drop every remembered verification (e.g. on shutdown or key rotation)."""
        with self._lock:
            self._verified.clear()
