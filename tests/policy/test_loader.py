"""The users file: a good one loads; each kind of mistake is reported with file, line and
field; a reload that fails keeps the old snapshot."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mqttgate.policy import (
    Access,
    ConnectionPolicy,
    LineMap,
    Permission,
    PolicyLoadError,
    PolicyStore,
    Problem,
    check_policy_file,
    load_policy,
    load_yaml,
)

# Fixed hashes (made once with the project's own functions) keep the tests fast.
ARGON = (
    "$argon2id$v=19$m=65536,t=3,p=4$S8qF7TF+GY9WTt1nc2JrGQ"
    "$3Zy6S2S0+ojsth8FbYsGbxJ6fNvlxrZ1Gh60xNYHCeI"
)

GOOD = f"""\
roles:
  line-reader:
    permissions:
      - {{ topic: "factory/+/status", access: read }}
      - {{ topic: "users/${{username}}/#", access: readWrite }}
users:
  alice:
    grant_type: password
    password: "{ARGON}"
    roles: [line-reader]
    permissions:
      - {{ topic: "factory/line1/#", access: readWrite }}
  press-17:
    grant_type: certificate
    permissions:
      - {{ topic: "machines/press-17/#", access: write }}
"""


def write(tmp_path: Path, text: str, name: str = "users.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    path = write(tmp_path, text)
    with pytest.raises(PolicyLoadError) as info:
        load_policy(path)
    assert check_policy_file(path) == info.value.problems
    assert all(p.file == str(path) for p in info.value.problems)
    return info.value.problems


def test_good_file_loads(tmp_path: Path) -> None:
    snap = load_policy(write(tmp_path, GOOD))
    alice = snap.users["alice"]
    assert alice.grant_type == "password" and alice.password_hash == ARGON
    assert alice.roles == ("line-reader",)
    assert alice.permissions == (
        Permission("factory/line1/#", Access.READ_WRITE),
        Permission("factory/+/status", Access.READ),
        Permission("users/${username}/#", Access.READ_WRITE),
    )
    press = snap.users["press-17"]
    assert press.grant_type == "certificate" and press.password_hash is None
    c = ConnectionPolicy(snap, "alice", "c1")
    assert c.may_subscribe("factory/+/status") and c.may_publish("users/alice/x")
    assert not c.may_publish("factory/line2/status")
    assert check_policy_file(tmp_path / "users.yaml") == []
    with pytest.raises(TypeError):
        snap.users["mallory"] = alice  # type: ignore[index]


def _only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        # unknown key in a user
        (
            """\
            users:
              bob:
                grant_type: certificate
                colour: blue
            """,
            4,
            "users.bob.colour",
            "unknown key",
        ),
        # unknown top-level key
        ("users: {}\nextra: 1\n", 2, "extra", "unknown key"),
        # bad grant type
        (
            """\
            users:
              bob:
                grant_type: token
            """,
            3,
            "users.bob.grant_type",
            "grant_type",
        ),
        # invalid patterns
        (
            """\
            users:
              bob:
                grant_type: certificate
                permissions:
                  - { topic: "a/b", access: read }
                  - { topic: "a/#/b", access: read }
            """,
            6,
            "users.bob.permissions[1].topic",
            "invalid pattern",
        ),
        (
            """\
            users:
              bob:
                grant_type: certificate
                permissions:
                  - topic: "a+"
                    access: read
            """,
            5,
            "users.bob.permissions[0].topic",
            "'+'",
        ),
        (
            """\
            users:
              bob:
                grant_type: certificate
                permissions: [{ topic: "#a", access: read }]
            """,
            4,
            "users.bob.permissions[0].topic",
            "'#'",
        ),
        # bad access
        (
            """\
            users:
              bob:
                grant_type: certificate
                permissions: [{ topic: "a", access: all }]
            """,
            4,
            "users.bob.permissions[0].access",
            "access must be",
        ),
        # unknown role
        (
            """\
            roles:
              r1: { permissions: [] }
            users:
              bob:
                grant_type: certificate
                roles:
                  - r1
                  - r2
            """,
            8,
            "users.bob.roles[1]",
            "unknown role 'r2'",
        ),
        # duplicate user: PyYAML would silently keep the last
        (
            """\
            users:
              bob:
                grant_type: certificate
              carol:
                grant_type: certificate
              bob:
                grant_type: certificate
            """,
            6,
            "users.bob",
            "duplicate key 'bob' (first defined on line 2)",
        ),
        # plain text password
        (
            """\
            users:
              bob:
                grant_type: password
                password: hunter2
            """,
            4,
            "users.bob.password",
            "plain text",
        ),
        # unknown hash format
        (
            """\
            users:
              bob:
                grant_type: password
                password: "$md5$abc$def"
            """,
            4,
            "users.bob.password",
            "unknown format",
        ),
        # malformed argon2
        (
            """\
            users:
              bob:
                grant_type: password
                password: "$argon2id$garbage"
            """,
            4,
            "users.bob.password",
            "malformed",
        ),
        # password on a certificate user
        (
            f"""\
            users:
              bob:
                grant_type: certificate
                password: "{ARGON}"
            """,
            4,
            "users.bob.password",
            "must not have a password",
        ),
        # password user without password
        (
            """\
            users:
              bob:
                permissions: []
                grant_type: password
            """,
            2,
            "users.bob",
            "missing field 'password'",
        ),
        # invalid YAML
        ("users:\n  bob: [unclosed\n", 3, "", "invalid YAML"),
    ],
)
def test_each_error_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, words: str
) -> None:
    problem = _only(problems_of(tmp_path, text))
    assert problem.line == line, problem
    assert problem.field == field, problem
    assert words in problem.message, problem
    rendered = str(problem)
    assert rendered.startswith(f"{tmp_path / 'users.yaml'}:{line}: ")
    assert "hunter2" not in rendered


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        users:
          a: { grant_type: nope }
          b: { grant_type: password, password: plain }
          c: { grant_type: certificate, permissions: [{ topic: "x/#/y", access: read }] }
        """,
    )
    assert [(p.line, p.field) for p in problems] == [
        (2, "users.a.grant_type"),
        (3, "users.b.password"),
        (4, "users.c.permissions[0].topic"),
    ]


def test_duplicate_role_and_duplicate_permission_key(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        roles:
          r: {}
          r: {}
        users:
          x: { grant_type: certificate, grant_type: password }
        """,
    )
    assert {(p.line, p.field) for p in problems} == {(3, "roles.r"), (5, "users.x.grant_type")}


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    [problem] = check_policy_file(missing)
    assert problem.file == str(missing) and "cannot read" in problem.message
    assert _only(problems_of(tmp_path, "")).message.startswith("the users file is empty")
    assert "missing field 'users'" in _only(problems_of(tmp_path, "roles: {}\n")).message
    assert "mapping" in _only(problems_of(tmp_path, "- a\n- b\n")).message


def test_non_string_user_name(tmp_path: Path) -> None:
    problem = _only(problems_of(tmp_path, "users:\n  1234: { grant_type: certificate }\n"))
    assert problem.field == "users.1234" and problem.line == 2


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "users: &a\n  x: *a\n")
    assert problems


def test_load_yaml_line_map(tmp_path: Path) -> None:
    data, lines = load_yaml(write(tmp_path, "a:\n  b:\n    - x\n    - y: 1\n"))
    assert data == {"a": {"b": ["x", {"y": 1}]}}
    assert isinstance(lines, LineMap)
    assert lines.line(("a",)) == 1
    assert lines.line(("a", "b")) == 2
    assert lines.line(("a", "b", 1)) == 4
    assert lines.line(("a", "b", 1, "y")) == 4
    assert lines.line(("a", "b", 1, "missing")) == 4  # nearest ancestor


def test_store_reload_keeps_old_snapshot_on_failure(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    store = PolicyStore(path)
    first = store.current
    assert first.generation == 1 and "alice" in first.users
    path.write_text("users:\n  alice: { grant_type: password, password: plain }\n")
    assert store.reload() is False
    assert store.current is first
    assert store.last_error is not None
    assert store.last_error.problems[0].field == "users.alice.password"
    path.write_text("users:\n  bob: { grant_type: certificate }\n")
    assert store.reload() is True
    assert store.last_error is None
    assert store.current.generation == 2 and set(store.current.users) == {"bob"}
    path.unlink()
    assert store.reload() is False and store.current.generation == 2


def test_store_first_load_failure_raises(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError):
        PolicyStore(write(tmp_path, "users: [1]\n"))


def test_anchors_are_shared_and_yaml_tags_are_safe(tmp_path: Path) -> None:
    snap = load_policy(
        write(
            tmp_path,
            """\
            users:
              a: &cert { grant_type: certificate, permissions: [{ topic: "x", access: read }] }
              b: *cert
            """,
        )
    )
    assert snap.users["b"].permissions == snap.users["a"].permissions
    problem = _only(problems_of(tmp_path, 'users:\n  a: !!python/object:os.system "echo hi"\n'))
    assert problem.line == 2 and "invalid YAML" in problem.message


def test_recursive_alias_and_second_document(tmp_path: Path) -> None:
    problem = _only(problems_of(tmp_path, "users: &a\n  x: *a\n"))
    assert "recursive alias" in problem.message and problem.line == 2
    problem = _only(problems_of(tmp_path, "users: {}\n---\nusers: {}\n"))
    assert "single YAML document" in problem.message and problem.line == 2


def test_plain_scalars_keep_yaml_types(tmp_path: Path) -> None:
    data, lines = load_yaml(write(tmp_path, "a: 1\nb: yes\nc: ~\nd: '1'\ne: 1.5\nf: a/b\n"))
    assert data == {"a": 1, "b": True, "c": None, "d": "1", "e": 1.5, "f": "a/b"}
    assert lines.line(("e",)) == 5


def test_big_file_loads_and_still_reports_lines(tmp_path: Path) -> None:
    body = ["users:"]
    for i in range(300):
        body += [f"  u{i}:", "    grant_type: certificate", "    permissions:"]
        body += [f'      - {{ topic: "t{i}/{j}/+/#", access: readWrite }}' for j in range(20)]
    good = tmp_path / "big.yaml"
    good.write_text("\n".join(body) + "\n")
    assert len(load_policy(good).users) == 300
    body[-1] = '      - { topic: "t299/19/#/x", access: readWrite }'
    good.write_text("\n".join(body) + "\n")
    [problem] = check_policy_file(good)
    assert problem.line == len(body) and problem.field == "users.u299.permissions[19].topic"


def test_malformed_permission_entries(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """\
        users:
          u:
            grant_type: certificate
            permissions:
              - { topic: "a", access: [read] }
              - { topic: 5, access: read }
              - { topic: "a" }
              - "a/b"
              - { topic: "a", access: read, note: x }
        """,
    )
    assert [(p.line, p.field) for p in problems] == [
        (5, "users.u.permissions[0].access"),
        (6, "users.u.permissions[1].topic"),
        (7, "users.u.permissions[2]"),
        (8, "users.u.permissions[3]"),
        (9, "users.u.permissions[4].note"),
    ]


def test_quoted_anchored_scalar_stays_a_string(tmp_path: Path) -> None:
    data, _ = load_yaml(write(tmp_path, "a: 1\nb: &x '1'\nc: *x\nd: [1, '1', &y 2, *y]\n"))
    assert data == {"a": 1, "b": "1", "c": "1", "d": [1, "1", 2, 2]}


def test_hostile_documents_are_problems_not_crashes(tmp_path: Path) -> None:
    for text in (
        "[" * 20_000 + "]" * 20_000,
        "users: " + "{a: " * 5_000 + "1" + "}" * 5_000,
        "\xff\xfe garbage",
        "users:\n  a: &a [*a]\n",
        "users: !!binary aGVsbG8=\n",
        "? [a, b]\n: c\n",
    ):
        path = tmp_path / "hostile.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        assert check_policy_file(path), text[:40]
