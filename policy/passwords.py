"""Password hashes: argon2id for new hashes; bcrypt and PBKDF2-SHA256 verified so users
can be moved from other systems without resetting their passwords.

Accepted formats (the users file refuses anything else, plain text included):
- argon2 (PHC string): `$argon2id$v=19$m=...,t=...,p=...$salt$hash` (argon2i/argon2d too)
- bcrypt: `$2b$`, `$2a$`, `$2y$` + cost + 53 characters
- PBKDF2-SHA256, passlib's format: `$pbkdf2-sha256$<rounds>$<salt>$<hash>`, salt and hash
  in passlib's "adapted base64" (`.` for `+`, no padding)
- PBKDF2-SHA256, Django's format: `pbkdf2_sha256$<rounds>$<salt>$<hash>`, salt used as
  its UTF-8 text, hash in standard base64
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

import argon2
import bcrypt

__all__ = ["hash_format", "hash_password", "hash_problem", "verify_password"]

#: argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): about 50 ms of one
#: core here, against about 330 ms for argon2-cffi's default RFC 9106 low-memory profile
#: (64 MiB, 3 passes, 4 lanes). After a proxy restart every device of a fleet reconnects
#: with a cold verification cache, so this cost decides how fast a fleet is back online.
#: Hashes made with other parameters keep verifying with their own.
_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
_BCRYPT_RE = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_AB64_RE = re.compile(r"[./A-Za-z0-9]*")
MAX_PBKDF2_ROUNDS = 10_000_000
BCRYPT_MAX_PASSWORD = 72


def hash_password(password: str) -> str:
    """An argon2id hash of `password`, for the users file."""
    return _hasher.hash(password)


def hash_format(stored: str) -> str | None:
    """The family of a stored hash: "argon2", "bcrypt", "pbkdf2-sha256", or None."""
    if stored.startswith(("$argon2id$", "$argon2i$", "$argon2d$")):
        return "argon2"
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        return "bcrypt"
    if stored.startswith(("$pbkdf2-sha256$", "pbkdf2_sha256$")):
        return "pbkdf2-sha256"
    return None


def hash_problem(stored: str) -> str | None:
    """Why `stored` is not a usable password hash, or None when it is. Never echoes it."""
    kind = hash_format(stored)
    if kind is None:
        return (
            "not a password hash (plain text or an unknown format); "
            "use `mqttgate passwd` to make an argon2id hash"
        )
    if kind == "argon2":
        try:
            argon2.extract_parameters(stored)
        except (argon2.exceptions.InvalidHashError, ValueError):
            return "malformed argon2 hash"
        return None
    if kind == "bcrypt":
        return None if _BCRYPT_RE.fullmatch(stored) else "malformed bcrypt hash"
    return None if _parse_pbkdf2(stored) is not None else "malformed PBKDF2-SHA256 hash"


def _ab64_decode(text: str) -> bytes:
    if not _AB64_RE.fullmatch(text):
        raise ValueError("not adapted base64")
    padded = text.replace(".", "+") + "=" * (-len(text) % 4)
    return base64.b64decode(padded, validate=True)


def _parse_pbkdf2(stored: str) -> tuple[int, bytes, bytes] | None:
    """(rounds, salt, expected digest) of a PBKDF2-SHA256 hash, or None if malformed."""
    try:
        if stored.startswith("$pbkdf2-sha256$"):
            parts = stored.split("$")
            if len(parts) != 5:
                return None
            rounds_text, salt, digest = int(parts[2]), _ab64_decode(parts[3]), parts[4]
            expected = _ab64_decode(digest)
        else:
            parts = stored.split("$")
            if len(parts) != 4:
                return None
            rounds_text = int(parts[1])
            salt = parts[2].encode("utf-8")
            expected = base64.b64decode(parts[3], validate=True)
    except (ValueError, binascii.Error):
        return None
    if not 1 <= rounds_text <= MAX_PBKDF2_ROUNDS or not salt or len(expected) < 16:
        return None
    return rounds_text, salt, expected


def verify_password(stored: str, password: bytes) -> bool:
    """Whether `password` matches `stored`. Slow on purpose; call it off the event loop.
    A malformed hash verifies nothing."""
    kind = hash_format(stored)
    if kind == "argon2":
        try:
            return _hasher.verify(stored, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False
    if kind == "bcrypt":
        if not _BCRYPT_RE.fullmatch(stored):
            return False
        # bcrypt only ever used the first 72 bytes; bcrypt>=5 refuses longer input, while
        # hashes made elsewhere were computed on the truncated password.
        try:
            return bool(bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], stored.encode("ascii")))
        except ValueError:
            return False
    if kind == "pbkdf2-sha256":
        parsed = _parse_pbkdf2(stored)
        if parsed is None:
            return False
        rounds, salt, expected = parsed
        actual = hashlib.pbkdf2_hmac("sha256", password, salt, rounds, dklen=len(expected))
        return hmac.compare_digest(actual, expected)
    return False
