"""Per-connection decisions: publish/read/subscribe, placeholders that must never widen a
pattern, caches that stay bounded, refresh to a new snapshot."""

from __future__ import annotations

import logging
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from mqttgate.policy import ConnectionPolicy, pattern_error
from mqttgate.policy.connection import MAX_CACHE_ENTRIES

from .helpers import conn, snapshot_with, user
from .test_topics import ALL_TOPICS, patterns, reference_match


def test_access_kinds() -> None:
    c = conn(("r/#", "r"), ("w/#", "w"), ("rw/#", "rw"))
    assert c.may_read("r/x") and not c.may_publish("r/x")
    assert c.may_publish("w/x") and not c.may_read("w/x")
    assert c.may_read("rw/x") and c.may_publish("rw/x")
    assert c.may_subscribe("r/+") and not c.may_subscribe("w/+")
    assert c.may_subscribe("rw/#")
    assert not c.may_publish("other")


def test_subscribe_needs_one_read_pattern_covering_the_filter() -> None:
    c = conn(("a/#", "r"), ("b/+/c", "r"), ("x/y", "r"), ("x/z", "r"))
    assert c.may_subscribe("a/+/c")
    assert c.may_subscribe("a/#")
    assert c.may_subscribe("b/q/c")
    assert not c.may_subscribe("b/#")
    assert not c.may_subscribe("x/+")
    assert not c.may_subscribe("#")


def test_share_prefix_is_stripped_and_invalid_share_denied() -> None:
    c = conn(("a/#", "r"), ("#", "r"))
    assert c.may_subscribe("$share/g/a/b")
    assert c.may_subscribe("$share/g/#")
    for bad in ("$share/g", "$share//a/b", "$share/g/", "$share/"):
        assert not c.may_subscribe(bad), bad


def test_dollar_topics_need_a_pattern_naming_them() -> None:
    everything = conn(("#", "rw"))
    assert not everything.may_read("$SYS/broker/uptime")
    assert not everything.may_publish("$SYS/x")
    assert not everything.may_subscribe("$SYS/#")
    assert everything.may_subscribe("#")
    sys_reader = conn(("$SYS/#", "r"))
    assert sys_reader.may_read("$SYS/broker/uptime")
    assert sys_reader.may_subscribe("$SYS/broker/+")


@pytest.mark.parametrize("bad", ["", "a/+", "a/#", "a\x00b", "+", "#"])
def test_publish_and_read_refuse_non_topic_names(bad: str) -> None:
    c = conn(("#", "rw"))
    assert not c.may_publish(bad)
    assert not c.may_read(bad)


@pytest.mark.parametrize("bad", ["", "a/#/b", "a+", "#a", "a\x00"])
def test_subscribe_refuses_invalid_filters(bad: str) -> None:
    assert not conn(("#", "rw")).may_subscribe(bad)


@pytest.mark.parametrize("name", ["#", "+", "a/b", "a/+", "", "x\x00y"])
def test_unsafe_username_never_widens(name: str, caplog: pytest.LogCaptureFixture) -> None:
    snap = snapshot_with(user(name, ("users/${username}/#", "rw"), ("pub", "w")))
    with caplog.at_level(logging.WARNING, logger="mqttgate.policy"):
        c = ConnectionPolicy(snap, name, "cid")
        assert c.may_publish("pub")  # other permissions still work
        for topic in ("users/x/y", "users/a/b/c", "users/+/y", "users/#", "users/a"):
            assert not c.may_publish(topic), topic
            assert not c.may_read(topic), topic
        assert not c.may_subscribe("users/#")
        assert not c.may_subscribe("users/+/#")
    assert any("disabled" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("cid", ["#", "+", "a/b", "", "a\x00"])
def test_unsafe_client_id_never_widens(cid: str) -> None:
    snap = snapshot_with(user("dev", ("dev/${client_id}/#", "rw")))
    c = ConnectionPolicy(snap, "dev", cid)
    for topic in ("dev/x", "dev/a/b", "dev/#", "dev/+/x"):
        assert not c.may_publish(topic)
        assert not c.may_subscribe(topic)


def test_placeholders_substituted_per_connection() -> None:
    snap = snapshot_with(
        user("alice", ("users/${username}/#", "rw"), ("dev/${username}/${client_id}", "w"))
    )
    a1 = ConnectionPolicy(snap, "alice", "phone")
    a2 = ConnectionPolicy(snap, "alice", "laptop")
    assert a1.may_publish("users/alice/x") and a1.may_subscribe("users/alice/#")
    assert not a1.may_publish("users/bob/x")
    assert a1.may_publish("dev/alice/phone") and not a1.may_publish("dev/alice/laptop")
    assert a2.may_publish("dev/alice/laptop") and not a2.may_publish("dev/alice/phone")
    # The connection-independent part is compiled once per snapshot and user.
    assert a1._shared is a2._shared


def test_placeholder_value_is_not_expanded_twice() -> None:
    name = "${client_id}"
    snap = snapshot_with(user(name, ("u/${username}", "w")))
    c = ConnectionPolicy(snap, name, "zzz")
    assert c.may_publish("u/${client_id}")
    assert not c.may_publish("u/zzz")


def test_unknown_user_decides_nothing_and_refresh_reports_removal() -> None:
    snap = snapshot_with(user("a", ("#", "rw")))
    ghost = ConnectionPolicy(snap, "nobody", "c")
    assert not ghost.may_publish("x") and not ghost.may_read("x")
    assert not ghost.may_subscribe("x")
    c = ConnectionPolicy(snap, "a", "c")
    assert c.may_publish("x")
    assert c.refresh(snapshot_with(user("b", ("#", "rw")))) is False
    assert not c.may_publish("x")


def test_refresh_drops_cached_decisions() -> None:
    c = ConnectionPolicy(snapshot_with(user("a", ("t/#", "rw"))), "a", "c")
    assert c.may_publish("t/1") and c.may_read("t/1") and c.may_subscribe("t/#")
    newer = snapshot_with(user("a", ("other/#", "r")))
    assert c.refresh(newer) is True
    assert c.snapshot is newer
    assert not c.may_publish("t/1")
    assert not c.may_read("t/1")
    assert not c.may_subscribe("t/#")


def test_idle_connection_is_small_and_caches_are_lazy() -> None:
    c = conn(("a/#", "rw"))
    assert not hasattr(c, "__dict__")
    assert c._publish_cache is None and c._read_cache is None and c._subscribe_cache is None
    assert sys.getsizeof(c) < 200
    c.may_publish("a/1")
    assert c._publish_cache == {"a/1": True}
    assert c._read_cache is None


def test_cache_is_bounded() -> None:
    c = conn(("a/#", "rw"))
    for i in range(MAX_CACHE_ENTRIES * 2 + 5):
        c.may_publish(f"a/{i}")
        c.may_read(f"b/{i}")
    assert c._publish_cache is not None and len(c._publish_cache) <= MAX_CACHE_ENTRIES
    assert c._read_cache is not None and len(c._read_cache) <= MAX_CACHE_ENTRIES
    assert c.may_publish("a/again") and not c.may_read("b/again")


def test_adversarial_sizes() -> None:
    c = conn(("a/#", "rw"), ("+/+/+", "r"))
    deep = "a/" + "/".join(["x"] * 999)
    assert c.may_publish(deep)
    assert c.may_subscribe(deep + "/#")
    huge = "a/" + "y" * 65_536
    assert c.may_publish(huge)
    assert not c.may_publish("b/" + "y" * 65_536)
    assert not c.may_subscribe("/".join(["+"] * 1000))


def test_many_patterns_decide_without_scanning() -> None:
    perms = [(f"site/{i}/+/data/#", "rw") for i in range(2000)]
    c = conn(*perms)
    assert c.may_publish("site/1999/x/data/y")
    assert not c.may_publish("site/2000/x/data/y")
    assert c.may_subscribe("site/7/+/data/#")
    assert not c.may_subscribe("site/+/x/data/#")


# --- property: a granted subscription only ever delivers readable topics ----------------

TOPIC_NAMES = [t for t in ALL_TOPICS if t]  # an empty topic name is not a topic


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(patterns(), st.sampled_from(["r", "w", "rw"])), min_size=1, max_size=4),
    patterns(),
)
def test_granted_subscription_implies_every_matching_topic_readable(
    perms: list[tuple[str, str]], topic_filter: str
) -> None:
    assume(all(pattern_error(p) is None for p, _ in perms))
    c = conn(*perms)
    if c.may_subscribe(topic_filter):
        for topic in TOPIC_NAMES:
            if reference_match(topic_filter, topic):
                assert c.may_read(topic), (perms, topic_filter, topic)
    for topic in TOPIC_NAMES[:300]:
        readable = any(reference_match(p, topic) for p, a in perms if a != "w")
        assert c.may_read(topic) is readable
        writable = any(reference_match(p, topic) for p, a in perms if a != "r")
        assert c.may_publish(topic) is writable
