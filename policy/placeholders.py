"""`${username}` and `${client_id}` in patterns, filled in per connection.

The values come from the network (a client id) or from the users file (a user name). A
value holding `+`, `#`, `/` or U+0000 — or an empty one — would turn `users/${username}/#`
into something wider than the administrator wrote, so such a permission matches nothing.
"""

from __future__ import annotations

import logging
import re

from .model import CompiledUser, Permission, User
from .topics import PLACEHOLDER_RE, PatternTrie

__all__ = ["compile_user", "safe_value", "substitute"]

log = logging.getLogger("mqttgate.policy")

_UNSAFE = frozenset("+#/\x00")


def safe_value(value: str) -> bool:
    return bool(value) and _UNSAFE.isdisjoint(value)


def substitute(pattern: str, username: str, client_id: str | None) -> str | None:
    """`pattern` with its placeholders filled in, or None when a value is unsafe.

    One regex pass, so a value that itself looks like `${client_id}` is never expanded a
    second time. `client_id=None` leaves `${client_id}` in place (still a template).
    """
    if "${" not in pattern:
        return pattern
    unsafe: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        text = match.group(0)
        if name == "username":
            value = username
        elif name == "client_id":
            if client_id is None:
                return text
            value = client_id
        else:  # rejected by the loader; never widen if one slips through
            unsafe.append(name)
            return text
        if not safe_value(value):
            unsafe.append(name)
            return text
        return value

    result = PLACEHOLDER_RE.sub(fill, pattern)
    if unsafe:
        log.warning(
            "permission %r of user %r disabled for this connection: the value of ${%s} is "
            "empty or contains '+', '#', '/' or U+0000",
            pattern,
            username,
            unsafe[0],
        )
        return None
    return result


def compile_user(user: User) -> CompiledUser:
    """The connection-independent matchers of `user`."""
    read = PatternTrie()
    write = PatternTrie()
    templates: list[Permission] = []
    for perm in user.permissions:
        if "${client_id}" in perm.pattern:
            templates.append(perm)
            continue
        pattern = substitute(perm.pattern, user.name, None)
        if pattern is None:
            continue
        if perm.access.can_read:
            read.add(pattern)
        if perm.access.can_write:
            write.add(pattern)
    return CompiledUser(read=read, write=write, client_templates=tuple(templates))
