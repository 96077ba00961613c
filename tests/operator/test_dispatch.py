"""Dispatch order (high, default, low; FIFO within), the place in line, and when it is worth a write."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as s

from receiptsync_operator.dispatch import EXACT_PLACES, Entry, ordered, place_worth_writing, plan


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


@given(s.lists(s.tuples(s.sampled_from(["high", "default", "low"]), s.floats(0, 1e9)), max_size=30,
               unique_by=lambda t: t),
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


# --- when a changed place in line is worth a status write ------------------------------------------------
def test_place_in_line_first_place_is_always_written():
    assert place_worth_writing(None, 1) and place_worth_writing(None, 700)


def test_place_in_line_unchanged_is_never_written():
    assert not place_worth_writing(5, 5) and not place_worth_writing(1, 1)


def test_place_in_line_is_exact_for_the_next_in_line_and_always_when_it_becomes_next():
    assert place_worth_writing(2, 1) and place_worth_writing(40, 1)
    assert place_worth_writing(1, 3)  # runs of a higher priority came in ahead: leaving 1st is news
    assert not place_worth_writing(3, 2) and not place_worth_writing(5, 3)  # coarse steps behind the next
    assert place_worth_writing(2, 3) and not place_worth_writing(3, 4)  # pushed back near the front: news


def test_place_in_line_further_back_only_in_coarse_steps():
    assert not place_worth_writing(100, 99) and not place_worth_writing(100, 26)
    assert place_worth_writing(100, 25) and place_worth_writing(100, 4)
    assert not place_worth_writing(10, 39) and place_worth_writing(10, 40)


def test_place_in_line_writes_grow_logarithmically_with_the_queue():
    for n in (10, 150, 1000):
        shown, writes = None, 0
        for position in range(n, 0, -1):  # one run moving up as those ahead start, one at a time
            if place_worth_writing(shown, position):
                shown, writes = position, writes + 1
        assert shown == 1
        assert writes <= (n.bit_length() + 1) // 2 + EXACT_PLACES + 1, (n, writes)  # about log4(n) + 2


@given(s.integers(1, 10_000), s.integers(1, 10_000))
def test_place_in_line_within_the_exact_places_always_tells_the_truth(shown, position):
    if position <= EXACT_PLACES and position != shown:
        assert place_worth_writing(shown, position)


# --- when a dispatch pass reads the queue ----------------------------------------------------------------
def test_a_pass_reads_the_queue_when_a_slot_is_free_or_the_last_one_is_old():
    from receiptsync_operator.dispatch import REFRESH_EVERY, pass_worth_it

    assert pass_worth_it(synced=True, active=7, max_workers=8, since_last_pass=0.0)
    assert not pass_worth_it(synced=True, active=8, max_workers=8, since_last_pass=0.01)
    assert pass_worth_it(synced=True, active=8, max_workers=8, since_last_pass=REFRESH_EVERY)
    assert pass_worth_it(synced=False, active=8, max_workers=8, since_last_pass=0.0)  # slots not known yet


def test_a_run_arriving_behind_busy_slots_is_placed_behind_its_priority_and_the_higher_ones():
    from receiptsync_operator.dispatch import arrival_place

    waiting = {"high": 2, "default": 5, "low": 7}  # the newcomer already counted in its own priority
    assert arrival_place(waiting, "high") == 2
    assert arrival_place(waiting, "default") == 7
    assert arrival_place(waiting, "low") == 14
    assert arrival_place({}, "default") == 1
