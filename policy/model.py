"""The immutable policy model: users, their permissions, and a snapshot of all of them.

A snapshot never changes after it is built, so every connection can decide against it
without locks; a reload builds a new one and swaps it in.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from .topics import PatternTrie

__all__ = ["Access", "CompiledUser", "Permission", "PolicySnapshot", "User"]


class Access(enum.Enum):
    READ = "read"
    WRITE = "write"
    READ_WRITE = "readWrite"

    @property
    def can_read(self) -> bool:
        return self is not Access.WRITE

    @property
    def can_write(self) -> bool:
        return self is not Access.READ


@dataclass(frozen=True, slots=True)
class Permission:
    pattern: str
    access: Access


@dataclass(frozen=True, slots=True)
class User:
    name: str
    grant_type: str  # "password" | "certificate"
    password_hash: str | None
    roles: tuple[str, ...]
    permissions: tuple[Permission, ...]  # the user's own, then its roles' in role order


@dataclass(frozen=True, slots=True)
class CompiledUser:
    """The part of a user's permissions that is the same for every connection of the user:
    patterns without `${client_id}`, with `${username}` already substituted. Patterns that
    name `${client_id}` stay as templates for ConnectionPolicy to fill in."""

    read: PatternTrie
    write: PatternTrie
    client_templates: tuple[Permission, ...]


class PolicySnapshot:
    """All users at one moment. Compiled per-user matchers are built on first use and kept
    with the snapshot, so thousands of connections of one user share them."""

    __slots__ = ("_compiled", "_lock", "generation", "source", "users")

    def __init__(self, users: Mapping[str, User], source: Path, generation: int = 0) -> None:
        self.users: Mapping[str, User] = MappingProxyType(dict(users))
        self.source = source
        self.generation = generation
        self._compiled: dict[str, CompiledUser] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"PolicySnapshot(source={str(self.source)!r}, generation={self.generation}, "
            f"users={len(self.users)})"
        )

    def compiled(self, user: User) -> CompiledUser:
        """The shared matchers of `user` (which must belong to this snapshot)."""
        found = self._compiled.get(user.name)
        if found is not None:
            return found
        from .placeholders import compile_user  # local: placeholders imports this module

        built = compile_user(user)
        with self._lock:
            return self._compiled.setdefault(user.name, built)
