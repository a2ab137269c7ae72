"""``_Speed``: which sync handlers run on the worker's event loop (no Ray needed)."""

import time

from actors.worker import _Speed


def quick(payload):
    return payload


def slow(payload):
    time.sleep(0.002)  # over QUICK, under SLOW: an I/O wait that overlaps in the pool


def run(speed, handler, pool_busy=False):
    """One run where the worker would put it; True if it ran on the loop."""
    if speed.inline():
        speed.timed(handler, None, on_loop=True, clean=not pool_busy)
        return True
    speed.timed(handler, None)
    return False


def test_a_quick_handler_moves_to_the_loop_even_while_the_pool_is_busy():
    # Given a quick handler starting in the pool, its loop runs slowed by the pool
    # (dirty: they do not count)
    speed = _Speed(quick)
    places = [run(speed, quick) for _ in range(_Speed.PROBE_EVERY - 1)]
    assert not any(places)
    # When it is tried on the loop: the runs while the pool still runs are not judged
    assert all(run(speed, quick, pool_busy=True) for _ in range(5))
    # Then clean runs decide, and it stays on the loop
    assert all(run(speed, quick) for _ in range(100))


def test_a_handler_slow_in_the_pool_is_never_tried_on_the_loop():
    speed = _Speed(slow)
    assert not any(run(speed, slow) for _ in range(3 * _Speed.PROBE_EVERY))


def test_a_failed_try_waits_twice_as_long_before_the_next():
    # Given a handler quick in the pool but slow on the loop
    speed = _Speed(quick)
    for _ in range(_Speed.PROBE_EVERY - 1):
        run(speed, quick)
    on_loop = [run(speed, slow) for _ in range(_Speed.DECIDE)]
    assert all(on_loop) and not speed.trying
    assert speed.every == 2 * _Speed.PROBE_EVERY
    # Then it runs in the pool until the next try
    assert not any(run(speed, quick) for _ in range(speed.every - 1))
    assert run(speed, quick)


def test_async_handlers_are_known_as_such():
    async def handler(payload):
        return payload

    assert _Speed(handler).coroutine and not _Speed(quick).coroutine
