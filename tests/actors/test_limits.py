"""Rate limits on a fake clock: the achieved rate against the limit, exactly."""

from actors.limits import Limiter, SlidingLog
from actors.options import Rate


def drive(limiter: Limiter, keys: list, until: float, step: float = 0.001) -> dict:
    """Claim as fast as a worker could (every ``step`` s of fake time), one job per key
    in turn, as the queue does; returns the start times per key."""
    starts: dict = {}
    now = 0.0
    i = 0
    while now < until:
        key = keys[i % len(keys)]
        room = limiter.queue.room(now) if limiter.queue else 1
        if room > 0 and (key is None or limiter.key(key).room(now) > 0):
            if limiter.queue:
                limiter.queue.note(now)
            if key is not None:
                limiter.key(key).note(now)
            starts.setdefault(key, []).append(now)
        i += 1
        now += step
    return starts


def most_in_any_window(times: list, seconds: float) -> int:
    j, most = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - seconds:
            j += 1
        most = max(most, i - j + 1)
    return most


def test_a_queue_rate_is_reached_and_never_exceeded():
    # Given a limit of 100 starts a second, and workers that would start far more
    limiter = Limiter()
    limiter.configure(Rate(100, 1.0), None)
    # When they claim for ten seconds of fake time
    starts = drive(limiter, [None], until=10.0)[None]
    # Then no window of a second holds more than 100 starts, and the achieved rate is
    # the limit: 100 per second
    assert most_in_any_window(starts, 1.0) == 100
    assert len(starts) == 1000


def test_each_key_gets_its_own_rate_within_the_queue_rate():
    limiter = Limiter()
    limiter.configure(Rate(50, 1.0), Rate(10, 1.0))
    starts = drive(limiter, ["a", "b", "c"], until=5.0)
    for key in "abc":
        assert most_in_any_window(starts[key], 1.0) == 10
        assert len(starts[key]) == 50  # 10/s for 5 s: the key limit, reached
    # With eight keys the queue's 50/s binds before the keys' 10/s would
    limiter = Limiter()
    limiter.configure(Rate(50, 1.0), Rate(10, 1.0))
    starts = drive(limiter, list("abcdefgh"), until=5.0)
    everything = sorted(t for times in starts.values() for t in times)
    assert most_in_any_window(everything, 1.0) == 50 and len(everything) == 250


def test_a_spent_limit_says_when_it_opens_and_idle_keys_are_forgotten():
    log = SlidingLog(Rate(2, 10.0))
    log.note(1.0)
    log.note(3.0)
    assert log.room(5.0) == 0 and log.opens_at() == 11.0
    assert log.room(11.0) == 1
    limiter = Limiter()
    limiter.configure(None, Rate(1, 1.0))
    limiter.key("a").note(0.0)
    assert limiter.spent_keys(0.5) == ["a"] and limiter.next_opening(["a"]) == 1.0
    assert limiter.spent_keys(2.0) == [] and "a" not in limiter.keys


def test_a_restart_rebuilds_the_window_from_recorded_starts():
    limiter = Limiter()
    limiter.configure(Rate(3, 60.0), Rate(1, 60.0))
    limiter.rebuild([("a", 10.0), (None, 20.0), ("b", 30.0)], now=40.0)
    assert limiter.queue.room(40.0) == 0
    assert sorted(limiter.spent_keys(40.0)) == ["a", "b"]
    assert limiter.queue.room(70.1) == 1  # the start at 10 s left the window
