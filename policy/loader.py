"""The users file -> a PolicySnapshot, or every problem in it.

All problems are collected before failing, so an operator fixes a file in one pass; each
names the file, the line and the field. The file has no path-valued fields today; any that
are added must be resolved against the file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .model import Access, Permission, PolicySnapshot, User
from .passwords import hash_problem
from .problems import PolicyLoadError, Problem
from .topics import pattern_error
from .yamlsource import KeyPath, LineMap, field_name, load_yaml, paused_gc

__all__ = ["check_policy_file", "load_policy", "parse_policy"]

_TOP_KEYS = frozenset({"roles", "users"})
_ROLE_KEYS = frozenset({"permissions"})
_USER_KEYS = frozenset({"grant_type", "password", "roles", "permissions"})
_PERMISSION_KEYS = frozenset({"topic", "access"})
_GRANT_TYPES = ("password", "certificate")
_ACCESS = {a.value: a for a in Access}


class _Parser:
    def __init__(self, file: str, lines: LineMap) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []
        # access text -> pattern -> Permission: equal entries share one object, and a
        # pattern seen before needs no second validation.
        self._permission_cache: dict[str, dict[str, Permission]] = {a: {} for a in _ACCESS}

    def problem(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.file, self.lines.line(path), field_name(path), message))

    def mapping(self, value: Any, path: KeyPath, what: str) -> dict[Any, Any] | None:
        if isinstance(value, dict):
            return value
        self.problem(path, f"{what} must be a mapping, got {type(value).__name__}")
        return None

    def unknown_keys(self, data: dict[Any, Any], allowed: frozenset[str], path: KeyPath) -> None:
        for key in data:
            if key not in allowed:
                self.problem(
                    (*path, str(key)),
                    f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})",
                )

    def permissions(self, value: Any, path: KeyPath) -> list[Permission]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, "permissions must be a list of {topic, access}")
            return []
        result: list[Permission] = []
        caches = self._permission_cache
        for index, item in enumerate(value):
            # Fast path for a well-formed entry: a 10,000-user file holds half a million.
            if type(item) is dict and len(item) == 2:
                topic = item.get("topic")
                access_text = item.get("access")
                cache = caches.get(access_text) if isinstance(access_text, str) else None
                if cache is not None and isinstance(topic, str) and isinstance(access_text, str):
                    perm = cache.get(topic)
                    if perm is None and pattern_error(topic) is None:
                        perm = cache[topic] = Permission(topic, _ACCESS[access_text])
                    if perm is not None:
                        result.append(perm)
                        continue
            self.report_permission((*path, index), item)
        return result

    def report_permission(self, item_path: KeyPath, item: Any) -> None:
        """Every problem of a permission entry that failed the fast path."""
        if not isinstance(item, dict):
            self.problem(item_path, "a permission must be a mapping {topic, access}")
            return
        self.unknown_keys(item, _PERMISSION_KEYS, item_path)
        topic = item.get("topic")
        access_text = item.get("access")
        if "topic" not in item:
            self.problem(item_path, "missing field 'topic'")
        elif not isinstance(topic, str):
            self.problem((*item_path, "topic"), "topic must be a string")
        else:
            error = pattern_error(topic)
            if error is not None:
                self.problem((*item_path, "topic"), f"invalid pattern {topic!r}: {error}")
        if "access" not in item:
            self.problem(item_path, "missing field 'access'")
        elif not isinstance(access_text, str) or access_text not in _ACCESS:
            self.problem(
                (*item_path, "access"),
                f"access must be one of read, write, readWrite, got {access_text!r}",
            )

    def roles(self, value: Any) -> dict[str, tuple[Permission, ...]]:
        roles: dict[str, tuple[Permission, ...]] = {}
        if value is None:
            return roles
        data = self.mapping(value, ("roles",), "roles")
        if data is None:
            return roles
        for name, body in data.items():
            path: KeyPath = ("roles", str(name))
            if not isinstance(name, str) or not name:
                self.problem(path, "role name must be a non-empty string (quote it)")
                continue
            if body is None:
                roles[name] = ()
                continue
            role = self.mapping(body, path, "a role")
            if role is None:
                continue
            self.unknown_keys(role, _ROLE_KEYS, path)
            roles[name] = tuple(self.permissions(role.get("permissions"), (*path, "permissions")))
        return roles

    def user(self, name: str, body: Any, roles: dict[str, tuple[Permission, ...]]) -> User | None:
        path: KeyPath = ("users", name)
        data = self.mapping(body, path, "a user")
        if data is None:
            return None
        before = len(self.problems)
        self.unknown_keys(data, _USER_KEYS, path)
        grant_type = data.get("grant_type")
        if "grant_type" not in data:
            self.problem(path, "missing field 'grant_type' (password or certificate)")
        elif grant_type not in _GRANT_TYPES:
            self.problem(
                (*path, "grant_type"),
                f"grant_type must be password or certificate, got {grant_type!r}",
            )
        password = data.get("password")
        if grant_type == "certificate" and "password" in data:
            self.problem((*path, "password"), "a certificate user must not have a password")
        elif grant_type == "password":
            if password is None:
                self.problem(path, "missing field 'password' (a hash from `mqttgate passwd`)")
            elif not isinstance(password, str):
                self.problem((*path, "password"), "password must be a hash string")
            else:
                error = hash_problem(password)
                if error is not None:
                    self.problem((*path, "password"), error)
        role_names: list[str] = []
        raw_roles = data.get("roles")
        if raw_roles is not None:
            if not isinstance(raw_roles, list):
                self.problem((*path, "roles"), "roles must be a list of role names")
            else:
                for index, role in enumerate(raw_roles):
                    if not isinstance(role, str) or role not in roles:
                        self.problem((*path, "roles", index), f"unknown role {role!r}")
                    elif role not in role_names:
                        role_names.append(role)
        own = self.permissions(data.get("permissions"), (*path, "permissions"))
        if len(self.problems) != before:
            return None
        merged: list[Permission] = own
        if role_names:
            # Equal permissions are one object within a load (see _permission_cache).
            seen = {id(perm) for perm in own}
            for role in role_names:
                for perm in roles[role]:
                    if id(perm) not in seen:
                        seen.add(id(perm))
                        merged.append(perm)
        return User(
            name=name,
            grant_type=str(grant_type),
            password_hash=password if grant_type == "password" else None,
            roles=tuple(role_names),
            permissions=tuple(merged),
        )

    def document(self, data: Any) -> dict[str, User]:
        users: dict[str, User] = {}
        if data is None:
            self.problem((), "the users file is empty (expected 'users:')")
            return users
        top = self.mapping(data, (), "the users file")
        if top is None:
            return users
        self.unknown_keys(top, _TOP_KEYS, ())
        roles = self.roles(top.get("roles"))
        if "users" not in top:
            self.problem((), "missing field 'users'")
            return users
        raw_users = top.get("users")
        if raw_users is None:
            return users
        mapping = self.mapping(raw_users, ("users",), "users")
        if mapping is None:
            return users
        for name, body in mapping.items():
            if not isinstance(name, str) or not name:
                self.problem(
                    ("users", str(name)), "user name must be a non-empty string (quote it)"
                )
                continue
            user = self.user(name, body, roles)
            if user is not None:
                users[name] = user
        return users


def parse_policy(data: Any, lines: LineMap, source: Path, generation: int = 0) -> PolicySnapshot:
    """A snapshot from already parsed YAML (see load_yaml). Raises PolicyLoadError."""
    parser = _Parser(lines.file, lines)
    users = parser.document(data)
    if parser.problems:
        raise PolicyLoadError(parser.problems)
    return PolicySnapshot(users, source, generation)


def load_policy(path: str | os.PathLike[str], *, generation: int = 0) -> PolicySnapshot:
    """Load the users file at `path`. Raises PolicyLoadError listing every problem."""
    with paused_gc():
        data, lines = load_yaml(path)
        return parse_policy(data, lines, Path(path), generation)


def check_policy_file(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem of the users file at `path`; empty when it loads."""
    try:
        load_policy(path)
    except PolicyLoadError as exc:
        return exc.problems
    return []
