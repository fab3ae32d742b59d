"""Per-connection decisions, cached.

Tens of thousands of mostly idle connections each hold one of these, so an idle one is a
handful of slots and no dicts; caches appear with the first decision. A warm decision is
one dict lookup. Caches are bounded so a client publishing to random topics cannot grow
memory without limit.
"""

from __future__ import annotations

from .model import CompiledUser, PolicySnapshot, User
from .placeholders import substitute
from .topics import PatternTrie, is_valid_topic_name, pattern_error, split_share

__all__ = ["MAX_CACHE_ENTRIES", "ConnectionPolicy"]

MAX_CACHE_ENTRIES = 10_000


class ConnectionPolicy:
    """The decisions of one authenticated connection against one snapshot."""

    __slots__ = (
        "_own_read",
        "_own_write",
        "_publish_cache",
        "_read_cache",
        "_shared",
        "_subscribe_cache",
        "_user",
        "client_id",
        "snapshot",
        "username",
    )

    def __init__(self, snapshot: PolicySnapshot, username: str, client_id: str) -> None:
        self.username = username
        self.client_id = client_id
        self.snapshot = snapshot
        self._user: User | None = None
        self._shared: CompiledUser | None = None
        self._own_read: PatternTrie | None = None
        self._own_write: PatternTrie | None = None
        self._publish_cache: dict[str, bool] | None = None
        self._read_cache: dict[str, bool] | None = None
        self._subscribe_cache: dict[str, bool] | None = None
        self._bind(snapshot)

    def _bind(self, snapshot: PolicySnapshot) -> bool:
        self.snapshot = snapshot
        self._publish_cache = self._read_cache = self._subscribe_cache = None
        self._own_read = self._own_write = None
        user = snapshot.users.get(self.username)
        self._user = user
        if user is None:
            self._shared = None
            return False
        shared = snapshot.compiled(user)
        self._shared = shared
        if shared.client_templates:
            # Only patterns naming ${client_id} are compiled per connection.
            read = PatternTrie()
            write = PatternTrie()
            for perm in shared.client_templates:
                pattern = substitute(perm.pattern, self.username, self.client_id)
                if pattern is None or pattern_error(pattern) is not None:
                    continue
                if perm.access.can_read:
                    read.add(pattern)
                if perm.access.can_write:
                    write.add(pattern)
            self._own_read = read if read.size else None
            self._own_write = write if write.size else None
        return True

    def refresh(self, snapshot: PolicySnapshot) -> bool:
        """Rebind to a new snapshot, dropping caches. False: the user is gone (disconnect)."""
        return self._bind(snapshot)

    # -- decisions ---------------------------------------------------------------------

    def may_publish(self, topic: str) -> bool:
        cache = self._publish_cache
        if cache is not None:
            hit = cache.get(topic)
            if hit is not None:
                return hit
        else:
            cache = self._publish_cache = {}
        decision = self._decide_topic(topic, write=True)
        if len(cache) >= MAX_CACHE_ENTRIES:
            cache.clear()
        cache[topic] = decision
        return decision

    def may_read(self, topic: str) -> bool:
        cache = self._read_cache
        if cache is not None:
            hit = cache.get(topic)
            if hit is not None:
                return hit
        else:
            cache = self._read_cache = {}
        decision = self._decide_topic(topic, write=False)
        if len(cache) >= MAX_CACHE_ENTRIES:
            cache.clear()
        cache[topic] = decision
        return decision

    def may_subscribe(self, topic_filter: str) -> bool:
        """Whether the filter (after stripping `$share/<group>/`) lies inside one read
        permission: every topic it can match is readable."""
        cache = self._subscribe_cache
        if cache is not None:
            hit = cache.get(topic_filter)
            if hit is not None:
                return hit
        else:
            cache = self._subscribe_cache = {}
        decision = self._decide_filter(topic_filter)
        if len(cache) >= MAX_CACHE_ENTRIES:
            cache.clear()
        cache[topic_filter] = decision
        return decision

    def _decide_topic(self, topic: str, *, write: bool) -> bool:
        shared = self._shared
        if shared is None or not is_valid_topic_name(topic):
            return False
        if write:
            own = self._own_write
            return shared.write.matches(topic) or (own is not None and own.matches(topic))
        own = self._own_read
        return shared.read.matches(topic) or (own is not None and own.matches(topic))

    def _decide_filter(self, topic_filter: str) -> bool:
        shared = self._shared
        if shared is None:
            return False
        inner = split_share(topic_filter)
        if inner is None or pattern_error(inner) is not None:
            return False
        own = self._own_read
        return shared.read.covers(inner) or (own is not None and own.covers(inner))
