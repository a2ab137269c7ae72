"""The backoff schedule and do/try_ without Ray (driver code, a fake clock)."""

import asyncio

import pytest

import dotdo
from dotdo.clock import FakeClock
from dotdo.context import use_clock
from dotdo.retry import RetryPolicy, backoff_delay, backoff_delays


@pytest.mark.parametrize(
    "policy, delays",
    [
        (RetryPolicy(max_retries=0), []),
        (RetryPolicy(max_retries=3), [1.0, 2.0, 4.0]),
        (RetryPolicy(max_retries=5), [1.0, 2.0, 4.0, 8.0, 10.0]),
        (RetryPolicy(max_retries=5, max_backoff=1000), [1.0, 2.0, 4.0, 8.0, 16.0]),
        (RetryPolicy(max_retries=3, backoff=0.5, max_backoff=1.0), [0.5, 1.0, 1.0]),
    ],
)
def test_backoff_delays_are_the_seeds(policy, delays):
    assert backoff_delays(policy) == delays



def test_one_schedule_doubles_a_number_or_follows_a_list_under_its_cap():
    # The job queue's retries (a job's backoff=30 or [10, 60]) and do()'s share it.
    assert [backoff_delay(30.0, n, 86_400.0) for n in (1, 2, 3)] == [30.0, 60.0, 120.0]
    assert [backoff_delay([10.0, 60.0], n, 86_400.0) for n in (1, 2, 3, 9)] == [10, 60, 60, 60]
    assert backoff_delay([10.0, 600.0], 2, 100.0) == 100.0
    assert backoff_delay(3600.0, 200, 86_400.0) == 86_400.0
    assert backoff_delay(1.0, 10**30, 60.0) == 60.0  # past every float: the cap
    policy = RetryPolicy(max_retries=5, backoff=0.5, max_backoff=3.0)
    assert backoff_delays(policy) == [backoff_delay(0.5, n, 3.0) for n in range(1, 6)]

def test_jitter_stays_within_half_to_full_wait():
    policy = RetryPolicy(max_retries=5, jitter=True)
    for _ in range(50):
        for got, full in zip(backoff_delays(policy), [1, 2, 4, 8, 10]):
            assert full / 2 <= got <= full


def test_bad_policy_is_refused():
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


@pytest.mark.parametrize("retry", [1024, 1025, 1100, 10**6, 10**30])
def test_delay_far_past_the_cap_is_the_cap(retry):
    # The alarm loop's policy: after ~17 h of failures, retry 1025 must still wait 60 s.
    policy = RetryPolicy(max_retries=1_000_000, backoff=1.0, max_backoff=60.0)
    assert policy.delay(retry) == 60.0
    jittered = RetryPolicy(max_retries=1_000_000, max_backoff=60.0, jitter=True)
    assert 30.0 <= jittered.delay(retry) <= 60.0


def test_delay_doubles_exactly_until_the_cap():
    tiny = RetryPolicy(backoff=5e-324, max_backoff=1e308)  # the smallest float doubles far
    assert tiny.delay(2098) == 2.0**1023
    assert tiny.delay(2099) == 1e308
    assert RetryPolicy(backoff=0).delay(10**9) == 0.0


@pytest.mark.parametrize(
    "field, value",
    [("backoff", float("nan")), ("backoff", float("inf")), ("backoff", -1.0),
     ("backoff", "1"), ("backoff", 10**400), ("max_backoff", float("nan")),
     ("max_backoff", float("inf")), ("max_backoff", -0.5), ("max_backoff", None)],
)
def test_bad_backoff_is_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be a finite number"):
        RetryPolicy(**{field: value})


@pytest.mark.parametrize("value", [True, False, 2.0, "3", None])
def test_max_retries_must_be_an_int(value):
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=value)


def _run(coro, clock):
    async def main():
        use_clock(clock)
        return await coro

    return asyncio.run(main())


def test_do_waits_the_schedule_between_attempts():
    clock, calls = FakeClock(), []

    def flaky():
        calls.append(clock.now())
        if len(calls) < 4:
            raise ConnectionError(f"attempt {len(calls)}")
        return "ok"

    assert _run(dotdo.do(flaky), clock) == "ok"
    assert clock.slept == [1.0, 2.0, 4.0]
    assert [b - a for a, b in zip(calls, calls[1:])] == [1.0, 2.0, 4.0]


def test_do_raises_last_error_with_attempts_after_giving_up():
    clock = FakeClock()

    async def always():
        raise KeyError("gone")

    with pytest.raises(KeyError) as info:
        _run(dotdo.do(always, max_retries=5), clock)
    assert info.value.attempts == 6
    assert clock.slept == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert any("gave up after 6 attempts" in n for n in info.value.__notes__)


def test_terminal_error_stops_at_once():
    clock, calls = FakeClock(), []

    def refuse():
        calls.append(1)
        raise dotdo.TerminalError("card declined")

    with pytest.raises(dotdo.TerminalError):
        _run(dotdo.do(refuse), clock)
    assert calls == [1] and clock.slept == []


def test_do_passes_arguments_and_awaits_lambdas():
    async def add(a, b):
        return a + b

    assert _run(dotdo.do(add, 2, b=3), FakeClock()) == 5
    assert _run(dotdo.do(lambda: add(1, 1)), FakeClock()) == 2


def test_do_has_no_timeout():
    with pytest.raises(TypeError, match="try_"):
        _run(dotdo.do(lambda: 1, timeout=1), FakeClock())


def test_try_once_raises_and_times_out():
    calls = []

    def boom():
        calls.append(1)
        raise ValueError("no")

    with pytest.raises(ValueError):
        asyncio.run(dotdo.try_(boom))
    assert calls == [1]  # no retry

    async def slow():
        await asyncio.sleep(5)

    with pytest.raises(TimeoutError, match="0.05"):
        asyncio.run(dotdo.try_(slow, timeout=0.05))

    import time

    with pytest.raises(TimeoutError):
        asyncio.run(dotdo.try_(time.sleep, 1, timeout=0.05))  # a blocking sync fn too
    assert asyncio.run(dotdo.try_(lambda x: x * 2, 21, timeout=1)) == 42
