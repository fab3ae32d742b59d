"""Small builders shared by the policy tests."""

from __future__ import annotations

from pathlib import Path

from mqttgate.policy import Access, ConnectionPolicy, Permission, PolicySnapshot, User

_ACCESS = {"r": Access.READ, "w": Access.WRITE, "rw": Access.READ_WRITE}


def snapshot_with(*users: User) -> PolicySnapshot:
    return PolicySnapshot({u.name: u for u in users}, Path("memory.yaml"))


def user(name: str, *perms: tuple[str, str], grant_type: str = "certificate") -> User:
    return User(
        name=name,
        grant_type=grant_type,
        password_hash=None,
        roles=(),
        permissions=tuple(Permission(p, _ACCESS[a]) for p, a in perms),
    )


def conn(*perms: tuple[str, str], name: str = "u", client_id: str = "c") -> ConnectionPolicy:
    return ConnectionPolicy(snapshot_with(user(name, *perms)), name, client_id)
