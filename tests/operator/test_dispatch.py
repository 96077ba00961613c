"""Dispatch order (high, default, low; FIFO within) and the place in line."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as s

from receiptsync_operator.dispatch import Entry, ordered, plan


def e(job_id, priority, score):
    return Entry(job_id=job_id, priority=priority, score=score)


ENTRIES = [e("low1", "low", 1), e("def1", "default", 2), e("high1", "high", 3), e("def0", "default", 0.5),
           e("high2", "high", 4)]


def test_priority_then_fifo():
    assert [x.job_id for x in ordered(ENTRIES)] == ["high1", "high2", "def0", "def1", "low1"]


def test_plan_fills_free_slots_in_order():
    p = plan(ENTRIES, active=2, max_workers=4)
    assert p.start == ("high1", "high2")
    assert p.waiting == {"def0": 1, "def1": 2, "low1": 3}
    assert p.total_waiting == 3


def test_plan_when_full_starts_nothing():
    p = plan(ENTRIES, active=4, max_workers=4)
    assert p.start == () and p.waiting["high1"] == 1 and p.waiting["low1"] == 5


def test_over_capacity_is_not_negative():
    assert plan(ENTRIES, active=9, max_workers=1).start == ()


def test_blocked_keep_their_place_but_do_not_start():
    p = plan(ENTRIES, active=0, max_workers=2, blocked={"high1"})
    assert p.start == ("high2", "def0")
    assert p.waiting == {"high1": 1, "def1": 2, "low1": 3}


def test_empty_queue():
    p = plan([], active=0, max_workers=3)
    assert p.start == () and p.waiting == {} and p.total_waiting == 0


def test_ties_are_stable_by_job_id():
    p = plan([e("b", "default", 1), e("a", "default", 1)], active=0, max_workers=1)
    assert p.start == ("a",)


@given(s.lists(s.tuples(s.sampled_from(["high", "default", "low"]), s.floats(0, 1e9)), max_size=30, unique_by=lambda t: t),
       s.integers(0, 10), s.integers(1, 10))
def test_plan_properties(items, active, max_workers):
    entries = [e(f"j{i}", p, sc) for i, (p, sc) in enumerate(items)]
    p = plan(entries, active=active, max_workers=max_workers)
    assert len(p.start) == min(len(entries), max(0, max_workers - active))
    assert sorted(p.waiting.values()) == list(range(1, len(entries) - len(p.start) + 1))
    rank = {"high": 0, "default": 1, "low": 2}
    started = [x for x in entries if x.job_id in p.start]
    waiting = [x for x in entries if x.job_id in p.waiting]
    for a in started:
        for b in waiting:
            assert (rank[a.priority], a.score) <= (rank[b.priority], b.score)
