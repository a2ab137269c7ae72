"""Bounds on the times a queue takes: a delay or run time at most a year away, an
attempt's timeout at most a week, a lease at most a day. Past them the call fails
with an error that says the bound, and nothing is written (in this process: the
checks are logic)."""

import math

import pytest

import dotdo
from actors.options import MAX_DELAY, MAX_LEASE_TIMEOUT, MAX_TIMEOUT


@pytest.mark.parametrize("options, bound", [
    ({"delay": 1e308}, "366 days"),
    ({"delay": MAX_DELAY + 1}, "366 days"),
    ({"run_at": 1e308}, "366 days from now"),
    ({"debounce": 1e308, "dedupe_key": "k"}, "366 days"),
    ({"timeout": 1e308}, "7 days"),
    ({"timeout": MAX_TIMEOUT + 1}, "7 days"),
])
def test_a_job_further_away_than_a_year_or_longer_than_a_week_is_refused(queue, options, bound):
    with pytest.raises(dotdo.LimitError, match=f"may be at most {bound}") as refused:
        queue.enqueue("echo", 1, **options).result()
    assert str(refused.value).startswith(next(iter(options)))  # names the option
    assert queue.count().result() == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_delays_and_timeouts_are_refused(queue, bad):
    for option in ("delay", "timeout", "run_at"):
        with pytest.raises(ValueError, match=f"{option} must be a finite number"):
            queue.enqueue("echo", 1, **{option: bad}).result()
    assert queue.count().result() == 0


def test_the_bounds_themselves_are_taken(queue):
    job = queue.enqueue("echo", 1, delay=MAX_DELAY, timeout=MAX_TIMEOUT).result()
    assert job["status"] == "delayed"
    assert queue.configure(lease_timeout=MAX_LEASE_TIMEOUT).result()["lease_timeout"] == 86_400


def test_a_lease_timeout_over_a_day_is_refused_and_changes_nothing(queue):
    before = queue.settings().result()
    for bad in (MAX_LEASE_TIMEOUT + 1, 1e308):
        with pytest.raises(dotdo.LimitError, match=r"lease_timeout may be at most 1 day \(86,400 s\)"):
            queue.configure(lease_timeout=bad, concurrency=3).result()
    assert queue.settings().result() == before
