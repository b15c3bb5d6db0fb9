"""Expectations: counted down by observations, satisfied when met or after 5 minutes."""

from __future__ import annotations

from kcore.controllers import EXPECTATIONS_TIMEOUT, Expectations


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_creations_are_counted_down():
    e = Expectations()
    assert e.satisfied("ns/rs")  # nothing recorded: act
    e.expect_creations("ns/rs", 2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.pending("ns/rs") == (1, frozenset())
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    e.creation_observed("ns/rs")  # more than expected does not go negative
    assert e.satisfied("ns/rs")
    e.creation_observed("ns/other")  # no record: ignored
    assert "ns/other" not in e


def test_deletions_are_tracked_by_identity_so_repeats_count_once():
    e = Expectations()
    e.expect_deletions("ns/rs", ["u1", "u2"])
    e.deletion_observed("ns/rs", "u1")
    e.deletion_observed("ns/rs", "u1")  # first terminating, then gone: still one
    assert not e.satisfied("ns/rs")
    assert e.pending("ns/rs") == (0, frozenset({"u2"}))
    e.deletion_observed("ns/rs", "u2")
    assert e.satisfied("ns/rs")


def test_expectations_expire_after_five_minutes():
    clock = Clock()
    e = Expectations(clock=clock)
    assert EXPECTATIONS_TIMEOUT == 300.0
    e.expect_creations("ns/rs", 1)
    clock.now = 299.0
    assert not e.satisfied("ns/rs")
    clock.now = 301.0
    assert e.satisfied("ns/rs")  # an event was lost: do not stall forever


def test_forget_drops_the_record():
    e = Expectations()
    e.expect_creations("ns/rs", 3)
    e.forget("ns/rs")
    assert e.satisfied("ns/rs")
    assert "ns/rs" not in e
