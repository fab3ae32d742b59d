"""Topic patterns: validation, matching, filter coverage and a trie over topic levels.

A user may hold hundreds of patterns; scanning them one by one for every PUBLISH would
make the decision cost grow with the policy. The trie walks the topic level by level, so
the cost grows with the topic's depth and the number of patterns that share its prefix.

Two rules of MQTT 5.0 section 4.7 shape everything here:
- `#` matches the parent level too (`a/#` matches `a`);
- a topic whose first level starts with `$` is never matched by a leading `+` or `#`.
"""

from __future__ import annotations

import re

__all__ = [
    "PLACEHOLDER_RE",
    "PatternTrie",
    "filter_covered_by",
    "is_valid_topic_name",
    "pattern_error",
    "split_share",
    "topic_matches",
]

MAX_TOPIC_BYTES = 65_535
PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z_]*)\}")
KNOWN_PLACEHOLDERS = frozenset({"username", "client_id"})
_WILDCARD_CHARS = frozenset("+#\x00")


def pattern_error(pattern: str) -> str | None:
    """Why `pattern` is not a valid permission pattern / topic filter, or None when it is.

    Placeholders count as ordinary level text here: whether a substituted value is safe is
    decided per connection, where the value is known.
    """
    if not pattern:
        return "pattern must not be empty"
    if "\x00" in pattern:
        return "pattern must not contain U+0000"
    if "${" in pattern:
        for match in PLACEHOLDER_RE.finditer(pattern):
            name = match.group(1)
            if name not in KNOWN_PLACEHOLDERS:
                return f"unknown placeholder ${{{name}}} (use ${{username}} or ${{client_id}})"
    # A character is at most 4 UTF-8 bytes: encode only patterns that might be too long.
    if len(pattern) * 4 > MAX_TOPIC_BYTES and (
        len(pattern.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES
    ):
        return "pattern is longer than 65535 bytes"
    if "+" not in pattern and "#" not in pattern:
        return None
    levels = pattern.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if level == "#":
            if index != last:
                return "'#' must be the last level"
        elif "#" in level:
            return "'#' must occupy a whole level"
        elif level != "+" and "+" in level:
            return "'+' must occupy a whole level"
    return None


def is_valid_topic_name(topic: str) -> bool:
    """A topic name as PUBLISH carries it: non-empty, no wildcards, no U+0000."""
    return bool(topic) and _WILDCARD_CHARS.isdisjoint(topic)


def split_share(topic_filter: str) -> str | None:
    """The filter inside `$share/<group>/<filter>`, the filter itself when not shared, or
    None when a `$share` filter lacks its group or its filter (such a filter is denied)."""
    if not topic_filter.startswith("$share/"):
        return topic_filter
    parts = topic_filter.split("/", 2)
    if len(parts) < 3:
        return None
    group, inner = parts[1], parts[2]
    if not group or "+" in group or "#" in group or not inner:
        return None
    return inner


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether the topic name `topic` is matched by the filter `pattern` (one pattern,
    no trie; used where there is a single pattern to check)."""
    p_levels = pattern.split("/")
    t_levels = topic.split("/")
    if t_levels[0].startswith("$") and p_levels[0] in ("+", "#"):
        return False
    for index, p_level in enumerate(p_levels):
        if p_level == "#":
            return True
        if index >= len(t_levels):
            return False
        if p_level != "+" and p_level != t_levels[index]:
            return False
    return len(p_levels) == len(t_levels)


def filter_covered_by(topic_filter: str, pattern: str) -> bool:
    """Whether every topic that `topic_filter` can match is matched by `pattern`."""
    f_levels = topic_filter.split("/")
    p_levels = pattern.split("/")
    dollar = f_levels[0].startswith("$")
    for index, p_level in enumerate(p_levels):
        if p_level == "#":
            return not (index == 0 and dollar)
        if index >= len(f_levels):
            return False
        f_level = f_levels[index]
        if f_level == "#":
            return False
        if p_level == "+":
            if index == 0 and dollar:
                return False
            continue
        if f_level == "+" or f_level != p_level:
            return False
    return len(p_levels) == len(f_levels)


class _Node:
    """One level of the trie. `hash_here` marks a pattern ending in `/#` below this node
    (or `#` at the root); `end_here` a pattern ending exactly at this node."""

    __slots__ = ("children", "end_here", "hash_here", "plus")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.plus: _Node | None = None
        self.hash_here = False
        self.end_here = False


class PatternTrie:
    """A set of valid patterns, answering match and coverage questions without scanning
    every pattern. Each trie node stands for one pattern prefix, so a topic reaches each
    node at most once: the work per decision is bounded by the trie's size, never
    exponential, even for 1,000-level topics or many `+` levels."""

    __slots__ = ("_root", "size")

    def __init__(self, patterns: list[str] | tuple[str, ...] = ()) -> None:
        self._root = _Node()
        self.size = 0
        for pattern in patterns:
            self.add(pattern)

    def add(self, pattern: str) -> None:
        node = self._root
        for level in pattern.split("/"):
            if level == "#":
                node.hash_here = True
                self.size += 1
                return
            if level == "+":
                if node.plus is None:
                    node.plus = _Node()
                node = node.plus
            else:
                child = node.children.get(level)
                if child is None:
                    child = node.children[level] = _Node()
                node = child
        node.end_here = True
        self.size += 1

    def matches(self, topic: str) -> bool:
        """Whether some pattern matches the topic name `topic` (no wildcards in it)."""
        return self._walk(topic, False)

    def covers(self, topic_filter: str) -> bool:
        """Whether ONE pattern matches every topic that the valid filter can match."""
        return self._walk(topic_filter, True)

    def _walk(self, path: str, wildcards: bool) -> bool:
        """Follow `path` level by level. Matching a topic name reads every level as text;
        coverage (`wildcards`) lets a `+` level of the filter pass only through `+` patterns
        and a `#` level only reach a `#` pattern, so that one pattern covers all of it."""
        levels = path.split("/")
        root = self._root
        if levels[0].startswith("$"):
            # A leading wildcard never matches a `$` topic: skip the root's wildcards.
            child = root.children.get(levels[0])
            if child is None:
                return False
            frontier = [child]
            rest = levels[1:]
        else:
            frontier = [root]
            rest = levels
        for level in rest:
            nxt: list[_Node] = []
            if wildcards and (level == "+" or level == "#"):
                for node in frontier:
                    if node.hash_here:
                        return True
                    if level == "+" and node.plus is not None:
                        nxt.append(node.plus)
            else:
                for node in frontier:
                    if node.hash_here:
                        return True
                    child = node.children.get(level)
                    if child is not None:
                        nxt.append(child)
                    if node.plus is not None:
                        nxt.append(node.plus)
            if not nxt:
                return False
            frontier = nxt
        return any(node.end_here or node.hash_here for node in frontier)
