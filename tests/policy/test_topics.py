"""Matching and coverage: the MQTT specification's wildcard examples, `$` topics, and a
property check of the trie against a slow reference written here."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mqttgate.policy import filter_covered_by, pattern_error, split_share, topic_matches
from mqttgate.policy.topics import PatternTrie

# (pattern, topic, matches) -- MQTT 5.0 section 4.7.1 / 4.7.2 examples first.
MATCH_TABLE = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "sport/tennis", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "$SYS/broker", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("a/b/c", "a/b/c", True),
    ("a/b/c", "a/b", False),
    ("a/b", "a/b/c", False),
    ("a/+/c", "a//c", True),
    ("+", "$", False),
    ("a/$x", "a/$x", True),
    ("+/$x", "a/$x", True),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), MATCH_TABLE)
def test_match_table(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected
    assert PatternTrie([pattern]).matches(topic) is expected


# (filter, pattern, covered)
COVER_TABLE = [
    ("a/+/c", "a/#", True),
    ("a/+/c", "a/+/+", True),
    ("a/+/c", "a/b/c", False),
    ("a/#", "a/#", True),
    ("a/#", "#", True),
    ("a/#", "a/+", False),
    ("a/+/#", "a/+/c", False),
    ("a/#", "a/+/#", False),  # a/# matches "a", which a/+/# does not
    ("a/+/#", "a/+/#", True),
    ("a/+/#", "a/#", True),
    ("a/b", "a/b/#", True),
    ("a/b/c", "a/b", False),
    ("a", "a/b", False),
    ("#", "#", True),
    ("#", "+/#", False),
    ("+", "+", True),
    ("+", "#", True),
    ("+", "a", False),
    ("$SYS/#", "#", False),
    ("$SYS/x", "+/x", False),
    ("$SYS/#", "$SYS/#", True),
    ("$SYS/+", "$SYS/#", True),
    ("$SYS/a", "$SYS/+", True),
    ("a/b", "a/b", True),
]


@pytest.mark.parametrize(("topic_filter", "pattern", "expected"), COVER_TABLE)
def test_cover_table(topic_filter: str, pattern: str, expected: bool) -> None:
    assert filter_covered_by(topic_filter, pattern) is expected
    assert PatternTrie([pattern]).covers(topic_filter) is expected


def test_coverage_needs_one_pattern_not_a_union() -> None:
    # a/+ is the union of a/x and a/y only for those two values: not covered.
    trie = PatternTrie(["a/x", "a/y"])
    assert not trie.covers("a/+")
    # Two patterns that together cover a/# ("a" and "a/+/..." ) still do not count.
    assert not PatternTrie(["a", "a/+/#"]).covers("a/#")
    assert PatternTrie(["a/x", "a/#"]).covers("a/+")


@pytest.mark.parametrize(
    "pattern", ["a/#/b", "a+", "#a", "a/b#", "+a/b", "", "a\x00b", "${nope}/x", "##"]
)
def test_invalid_patterns(pattern: str) -> None:
    assert pattern_error(pattern) is not None


@pytest.mark.parametrize(
    "pattern", ["#", "+", "a/+/#", "/", "a//b", "$SYS/#", "users/${username}/#", "x/${client_id}"]
)
def test_valid_patterns(pattern: str) -> None:
    assert pattern_error(pattern) is None


@pytest.mark.parametrize(
    ("topic_filter", "inner"),
    [
        ("$share/g/a/b", "a/b"),
        ("$share/g/#", "#"),
        ("a/b", "a/b"),
        ("$share/g", None),
        ("$share//a", None),
        ("$share/g/", None),
        ("$share/+/a", None),
        ("$share/", None),
    ],
)
def test_split_share(topic_filter: str, inner: str | None) -> None:
    assert split_share(topic_filter) == inner


def test_deep_and_long_topics_stay_linear() -> None:
    deep = "/".join(["x"] * 1000)
    trie = PatternTrie(["+/" * 999 + "+", "x/#"])
    assert trie.matches(deep)
    assert trie.covers(deep)
    all_plus = PatternTrie(["/".join(["+"] * 1000)])
    assert all_plus.matches(deep)
    assert not all_plus.matches(deep + "/x")
    long_topic = "a/" + "b" * 65_530
    assert PatternTrie(["a/+"]).matches(long_topic)
    assert not PatternTrie(["a/b"]).matches(long_topic)


# --- property checks against a slow, obviously-correct reference ------------------------

LEVEL = st.sampled_from(["a", "b", "", "$s"])
PATTERN_LEVEL = st.sampled_from(["a", "b", "", "$s", "+"])


@st.composite
def patterns(draw: st.DrawFn) -> str:
    levels = draw(st.lists(PATTERN_LEVEL, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels = [*levels[:3], "#"] if draw(st.booleans()) else levels
    return "/".join(levels)


TOPICS = st.lists(LEVEL, min_size=1, max_size=5).map("/".join)


def reference_match(pattern: str, topic: str) -> bool:
    """Recursive definition straight from the specification's prose."""
    p, t = pattern.split("/"), topic.split("/")
    if t[0].startswith("$") and p[0] in ("+", "#"):
        return False

    def rec(i: int, j: int) -> bool:
        if i == len(p):
            return j == len(t)
        if p[i] == "#":
            return True  # zero or more levels, the parent included
        if j == len(t):
            return False
        return (p[i] == "+" or p[i] == t[j]) and rec(i + 1, j + 1)

    return rec(0, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=5), TOPICS)
def test_trie_agrees_with_reference(pats: list[str], topic: str) -> None:
    expected = any(reference_match(p, topic) for p in pats)
    assert PatternTrie(pats).matches(topic) is expected
    assert any(topic_matches(p, topic) for p in pats) is expected


def _all_topics(max_levels: int = 5) -> list[str]:
    out: list[str] = []
    frontier = [[x] for x in ["a", "b", "", "$s", "c"]]
    for _ in range(max_levels):
        out.extend("/".join(t) for t in frontier)
        frontier = [[*t, x] for t in frontier for x in ["a", "b", "", "$s", "c"]][:4000]
    return out


ALL_TOPICS = _all_topics(4)


@settings(max_examples=150, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=4), patterns())
def test_covered_filter_only_reaches_readable_topics(pats: list[str], topic_filter: str) -> None:
    trie = PatternTrie(pats)
    covered = trie.covers(topic_filter)
    assert covered is any(filter_covered_by(topic_filter, p) for p in pats)
    if covered:
        for topic in ALL_TOPICS:
            if reference_match(topic_filter, topic):
                assert trie.matches(topic), (topic_filter, pats, topic)


@settings(max_examples=150, deadline=None)
@given(patterns(), patterns())
def test_coverage_is_exact_on_small_universe(topic_filter: str, pattern: str) -> None:
    # Over a universe with a level value ("c") that neither side names, "every matched
    # topic is matched" decides coverage exactly (up to the universe's depth).
    matched = [t for t in ALL_TOPICS if reference_match(topic_filter, t)]
    semantic = all(reference_match(pattern, t) for t in matched)
    if filter_covered_by(topic_filter, pattern):
        assert semantic
    elif len(topic_filter.split("/")) < 4 and len(pattern.split("/")) < 4:
        assert not semantic, (topic_filter, pattern)


def test_pattern_length_limit_is_in_utf8_bytes() -> None:
    assert pattern_error("a" * 65_535) is None
    assert pattern_error("a" * 65_536) is not None
    assert pattern_error("é" * 32_768) is not None  # 65,536 bytes
