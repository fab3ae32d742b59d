"""``mqttgate check-config``: every problem as ``file:line: field: message``, exit 1 on any,
exit 0 on a good config, and nothing started (no port bound, no broker contacted)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import Certs, UsersFile, write_config

from .gate import CLI

pytestmark = pytest.mark.integration


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def line_of(path: Path, text: str) -> int:
    """1-based number of the line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def config_with(tmp_path: Path, certs: Certs, users: UsersFile, **changes: object) -> Path:
    path = write_config(tmp_path, certs=certs, users=users, upstream="127.0.0.1:1")
    config = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_good_config_passes_without_starting_anything(
    tmp_path: Path, certs: Certs, users_file: UsersFile
) -> None:
    with socket.socket() as taken:  # serve could not bind it; check-config must not try
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = config_with(
            tmp_path,
            certs,
            users_file,
            listeners__0__bind=f"127.0.0.1:{port}",
            metrics={"bind": f"127.0.0.1:{port}"},
        )
        result = check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"{path}: OK\n"


def test_every_config_problem_is_listed_with_file_line_and_field(
    tmp_path: Path, certs: Certs, users_file: UsersFile
) -> None:
    path = config_with(
        tmp_path,
        certs,
        users_file,
        limits__connect_timeout=-1,
        enforcement={"denied_publish": "maybe"},
        listeners__0__tls__mutal_tls=True,  # a typo must not pass silently
        workers=0,
    )
    result = check(path)
    assert result.returncode == 1
    problems = result.stdout.splitlines()
    expected = [
        (line_of(path, "connect_timeout: -1"), "limits.connect_timeout"),
        (line_of(path, "denied_publish: maybe"), "enforcement.denied_publish"),
        (line_of(path, "mutal_tls"), "listeners[0].tls"),
        (line_of(path, "workers: 0"), "workers"),
    ]
    for line, field in expected:
        prefix = f"{path}:{line}: {field}"
        assert any(p.startswith(prefix) for p in problems), f"{prefix} not in {problems}"
    assert len(problems) == len(expected), problems


def test_users_file_problems_are_listed_with_file_line_and_field(
    tmp_path: Path, certs: Certs, users_file: UsersFile
) -> None:
    path = config_with(tmp_path, certs, users_file)
    users_file.path.write_text(
        "users:\n"
        "  alice:\n"
        "    grant_type: password\n"
        "    password: plain-text-is-refused\n"
        "  press-17:\n"
        "    grant_type: magic\n"
    )
    result = check(path)
    assert result.returncode == 1
    users = users_file.path
    assert f"{users}:4: users.alice.password: " in result.stdout, result.stdout
    assert f"{users}:6: users.press-17.grant_type: " in result.stdout, result.stdout
    assert "plain-text-is-refused" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("field", "content", "message"),
    [
        ("cert_file", "garbage\n", "not a PEM certificate chain"),
        ("key_file", "garbage\n", "not an unencrypted PEM private key"),
    ],
)
def test_unusable_tls_files_are_problems_too(
    tmp_path: Path, certs: Certs, users_file: UsersFile, field: str, content: str, message: str
) -> None:
    broken = tmp_path / f"broken-{field}.pem"
    broken.write_text(content)
    path = config_with(tmp_path, certs, users_file, **{f"listeners__0__tls__{field}": str(broken)})
    result = check(path)
    assert result.returncode == 1
    line = line_of(path, f"{field}: {broken}")
    assert result.stdout == f"{path}:{line}: listeners[0].tls.{field}: {message}\n"


def test_key_of_another_certificate_is_a_problem(
    tmp_path: Path, certs: Certs, users_file: UsersFile
) -> None:
    _crt, other_key = certs.client("someone-else")
    path = config_with(tmp_path, certs, users_file, listeners__0__tls__key_file=str(other_key))
    result = check(path)
    assert result.returncode == 1
    line = line_of(path, f"key_file: {other_key}")
    assert result.stdout.startswith(
        f"{path}:{line}: listeners[0].tls.key_file: does not match cert_file"
    )
