"""Password formats, the Authenticator's rules and cache, and `mqttgate passwd`."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from pathlib import Path

import argon2
import bcrypt
import pytest
from mqttgate.policy import (
    Authenticator,
    AuthResult,
    PolicySnapshot,
    User,
    hash_password,
    passwd,
    verify_password,
)
from mqttgate.policy.passwords import hash_problem

# Shared across the module: argon2 hashing is deliberately slow.
PASSWORD = "correct horse"
ARGON = hash_password(PASSWORD)

# passlib's documented example: pbkdf2_sha256.hash("password").
PASSLIB_VECTOR = (
    "$pbkdf2-sha256$6400$0ZrzXitFSGltTQnBWOsdAw$Y11AchqV4b0sUisdZd0Xr97KWoymNE0LNNrnEgY4H9M"
)


def django_pbkdf2(password: str, salt: str = "pepperpepper12", rounds: int = 1000) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), rounds)
    return f"pbkdf2_sha256${rounds}${salt}${base64.b64encode(digest).decode()}"


def passlib_pbkdf2(password: str, salt: bytes = b"0123456789abcdef", rounds: int = 1000) -> str:
    def ab64(raw: bytes) -> str:
        return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")

    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return f"$pbkdf2-sha256${rounds}${ab64(salt)}${ab64(digest)}"


def bcrypt_hash(password: str, prefix: bytes = b"2b") -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4, prefix=prefix)).decode()


@pytest.mark.parametrize(
    "make",
    [
        lambda pw: ARGON if pw == PASSWORD else hash_password(pw),
        bcrypt_hash,
        lambda pw: bcrypt_hash(pw, b"2a"),
        lambda pw: bcrypt_hash(pw).replace("$2b$", "$2y$", 1),
        django_pbkdf2,
        passlib_pbkdf2,
    ],
    ids=["argon2id", "bcrypt-2b", "bcrypt-2a", "bcrypt-2y", "django-pbkdf2", "passlib-pbkdf2"],
)
def test_each_format_verifies_right_and_rejects_wrong(make: object) -> None:
    stored = make(PASSWORD)  # type: ignore[operator]
    assert hash_problem(stored) is None
    assert verify_password(stored, PASSWORD.encode())
    assert not verify_password(stored, b"wrong")
    assert not verify_password(stored, b"")


def test_passlib_documented_vector() -> None:
    assert verify_password(PASSLIB_VECTOR, b"password")
    assert not verify_password(PASSLIB_VECTOR, b"Password")


def test_bcrypt_long_password_uses_first_72_bytes_like_everyone_else() -> None:
    stored = bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(rounds=4)).decode()
    assert verify_password(stored, b"x" * 100)


@pytest.mark.parametrize(
    "stored", ["hunter2", "", "$pbkdf2-sha256$x$y$z", "pbkdf2_sha256$0$s$AAAA", "$2b$04$short"]
)
def test_unusable_hashes(stored: str) -> None:
    assert hash_problem(stored) is not None
    assert not verify_password(stored, stored.encode())


def test_hash_password_is_argon2id() -> None:
    assert ARGON.startswith("$argon2id$")


def test_new_hashes_use_the_owasp_argon2id_profile() -> None:
    params = argon2.extract_parameters(hash_password("x"))
    assert (params.type, params.memory_cost, params.time_cost, params.parallelism) == (
        argon2.Type.ID,
        19_456,
        2,
        1,
    )


# --- the Authenticator -----------------------------------------------------------------


class RecordingAuthenticator(Authenticator):
    """The real Authenticator, counting which hashes it verified against."""

    def __init__(self) -> None:
        super().__init__()
        self.verified: list[str] = []

    def _verify(self, stored_hash: str, password: bytes) -> bool:
        self.verified.append(stored_hash)
        return super()._verify(stored_hash, password)


def snap(**hashes: str | None) -> PolicySnapshot:
    users = {
        name: User(name, "password", h, (), ()) for name, h in hashes.items() if name != "cert"
    }
    users["dev"] = User("dev", "certificate", None, (), ())
    return PolicySnapshot(users, Path("memory.yaml"))


def test_password_rules() -> None:
    auth = RecordingAuthenticator()
    s = snap(alice=ARGON)
    pw = PASSWORD.encode()
    assert auth.authenticate_password(s, "alice", pw) is AuthResult.SUCCESS
    assert auth.authenticate_password(s, "alice", b"nope") is AuthResult.BAD_CREDENTIALS
    assert auth.authenticate_password(s, "alice", None) is AuthResult.BAD_CREDENTIALS
    assert auth.authenticate_password(s, None, pw) is AuthResult.BAD_CREDENTIALS
    assert auth.authenticate_password(s, "dev", pw) is AuthResult.NOT_AUTHORIZED
    assert auth.try_cached(s, "dev", pw) is AuthResult.NOT_AUTHORIZED


def test_unknown_user_and_missing_hash_verify_against_the_dummy() -> None:
    auth = RecordingAuthenticator()
    s = snap(alice=ARGON, nohash=None)
    assert auth.try_cached(s, "mallory", b"x") is None  # must go to the slow path
    assert auth.authenticate_password(s, "mallory", b"x") is AuthResult.BAD_CREDENTIALS
    assert auth.authenticate_password(s, "nohash", b"") is AuthResult.BAD_CREDENTIALS
    assert len(auth.verified) == 2
    dummy = auth.verified[0]
    assert dummy == auth.verified[1] != ARGON
    # Same algorithm and parameters as a real hash: only the salt and digest differ.
    assert dummy.rsplit("$", 2)[0] == ARGON.rsplit("$", 2)[0]


def test_cache_hit_after_success_and_only_for_the_same_password() -> None:
    auth = RecordingAuthenticator()
    s = snap(alice=ARGON)
    pw = PASSWORD.encode()
    assert auth.try_cached(s, "alice", pw) is None
    assert auth.authenticate_password(s, "alice", pw) is AuthResult.SUCCESS
    calls = len(auth.verified)
    assert auth.try_cached(s, "alice", pw) is AuthResult.SUCCESS
    assert auth.authenticate_password(s, "alice", pw) is AuthResult.SUCCESS
    assert len(auth.verified) == calls  # answered from the cache
    assert auth.try_cached(s, "alice", b"wrong") is None
    assert auth.try_cached(s, "alice", None) is AuthResult.BAD_CREDENTIALS
    assert PASSWORD.encode() not in repr(auth.__dict__).encode()


def test_changed_hash_in_a_new_snapshot_invalidates_the_cache() -> None:
    auth = RecordingAuthenticator()
    pw = PASSWORD.encode()
    assert auth.authenticate_password(snap(alice=ARGON), "alice", pw) is AuthResult.SUCCESS
    rotated = snap(alice=django_pbkdf2("new password"))
    assert auth.try_cached(rotated, "alice", pw) is None
    assert auth.authenticate_password(rotated, "alice", pw) is AuthResult.BAD_CREDENTIALS
    same_again = snap(alice=ARGON)  # a reload with the same hash keeps the entry
    assert auth.try_cached(same_again, "alice", pw) is AuthResult.SUCCESS


def test_concurrent_use() -> None:
    auth = Authenticator()
    stored = django_pbkdf2(PASSWORD)
    s = snap(**{f"u{i}": stored for i in range(8)})
    results: list[AuthResult] = []

    def worker(i: int) -> None:
        for _ in range(20):
            results.append(auth.authenticate_password(s, f"u{i}", PASSWORD.encode()))
            cached = auth.try_cached(s, f"u{i}", PASSWORD.encode())
            results.append(cached or AuthResult.BAD_CREDENTIALS)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8 * 40 and set(results) == {AuthResult.SUCCESS}


def test_certificate_rules() -> None:
    auth = Authenticator()
    s = snap(alice=ARGON)
    assert auth.authenticate_certificate(s, "dev", None) is AuthResult.SUCCESS
    assert auth.authenticate_certificate(s, "dev", "") is AuthResult.SUCCESS
    assert auth.authenticate_certificate(s, "dev", "dev") is AuthResult.SUCCESS
    assert auth.authenticate_certificate(s, "dev", "alice") is AuthResult.NOT_AUTHORIZED
    assert auth.authenticate_certificate(s, "alice", None) is AuthResult.NOT_AUTHORIZED
    assert auth.authenticate_certificate(s, "ghost", None) is AuthResult.BAD_CREDENTIALS


# --- mqttgate passwd -------------------------------------------------------------------


def test_passwd_reads_one_stdin_line_and_prints_one_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\nsecond line\n"))
    assert passwd.main(["alice"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1 and out.endswith("\n")
    assert lines[0].startswith("$argon2id$")
    assert verify_password(lines[0], b"s3cret pass")
    assert not verify_password(lines[0], b"second line")
    assert "s3cret" not in err


def test_passwd_refuses_empty_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert passwd.main([]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "empty" in err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_passwd_on_a_terminal_prompts_twice_without_echo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["pw one", "pw two"])
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:  # stands in for the terminal
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("sys.stdin", _Tty(""))
    monkeypatch.setattr("getpass.getpass", fake_getpass)
    assert passwd.main(["alice"]) == 1
    assert prompts[0] == "Password for alice: "
    out, err = capsys.readouterr()
    assert out == "" and "differ" in err


def test_credential_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mqttgate.policy.auth.MAX_CACHED_CREDENTIALS", 3)
    stored = django_pbkdf2(PASSWORD, rounds=10)
    s = snap(**{f"u{i}": stored for i in range(10)})
    auth = Authenticator()
    for i in range(10):
        assert auth.authenticate_password(s, f"u{i}", PASSWORD.encode()) is AuthResult.SUCCESS
        assert len(auth._verified) <= 3
    assert auth.try_cached(s, "u9", PASSWORD.encode()) is AuthResult.SUCCESS
    assert auth.try_cached(s, "u0", PASSWORD.encode()) is None
