"""The host's reordering of calls (no Ray needed: it is plain asyncio)."""

import asyncio
import random

from dotdo.sequencer import Sequencer


async def _run(seq: Sequencer, stream, n: int, order: list, deferred=None):
    admitted = seq.arrive(stream, n, deferred)
    if admitted is not None:
        await admitted
    order.append(n)
    seq.started(stream, n)


def test_scrambled_arrivals_start_in_number_order():
    async def main():
        seq, order = Sequencer(), []
        numbers = list(range(1, 201))
        random.Random(7).shuffle(numbers)
        await asyncio.gather(*(_run(seq, "s", n, order) for n in numbers))
        return order

    assert asyncio.run(main()) == list(range(1, 201))


def test_streams_are_independent():
    async def main():
        seq, a, b = Sequencer(), [], []
        await asyncio.gather(
            _run(seq, "a", 2, a), _run(seq, "b", 1, b), _run(seq, "a", 1, a), _run(seq, "b", 2, b)
        )
        return a, b

    assert asyncio.run(main()) == ([1, 2], [1, 2])


def test_restarted_host_settles_then_starts_from_lowest():
    async def main():
        seq, order = Sequencer(settle=0.05), []
        # A restarted host: the stream's calls 1..40 died with the old process.
        await asyncio.gather(*(_run(seq, "s", n, order) for n in [43, 41, 42]))
        return order

    assert asyncio.run(main()) == [41, 42, 43]


def test_gap_that_never_fills_is_skipped():
    async def main():
        seq, order = Sequencer(gap_timeout=0.05), []
        await _run(seq, "s", 1, order)
        await asyncio.gather(_run(seq, "s", 4, order), _run(seq, "s", 3, order))
        # call 2 arrives after it was given up on: it still runs
        await _run(seq, "s", 2, order)
        return order, seq.skipped

    assert asyncio.run(main()) == ([1, 3, 4, 2], 1)


def test_next_waits_until_previous_has_started():
    async def main():
        seq, order = Sequencer(), []
        assert seq.arrive("s", 1) is None
        second = asyncio.ensure_future(_run(seq, "s", 2, order))
        await asyncio.sleep(0.01)
        assert order == []  # 1 admitted but not started: 2 waits
        seq.started("s", 1)
        await second
        return order

    assert asyncio.run(main()) == [2]


def test_skipped_call_lets_the_next_in():
    async def main():
        seq, order = Sequencer(gap_timeout=60), []
        await _run(seq, "s", 1, order)
        later = asyncio.ensure_future(_run(seq, "s", 3, order))
        await asyncio.sleep(0.01)
        seq.skip("s", 2)  # call 2's argument failed: it will never come
        await later
        return order

    assert asyncio.run(main()) == [1, 3]


def test_deferred_gap_is_waited_out_not_skipped():
    async def main():
        seq, order = Sequencer(gap_timeout=0.02), []
        await _run(seq, "s", 1, order)
        # Call 2 waits for a promise argument; call 3 says so and must wait for it.
        later = asyncio.ensure_future(_run(seq, "s", 3, order, deferred=[2]))
        await asyncio.sleep(0.1)  # five gap timeouts
        assert order == [1]
        await _run(seq, "s", 2, order)
        await later
        return order, seq.skipped

    assert asyncio.run(main()) == ([1, 2, 3], 0)


def test_fresh_host_waits_for_call_one_however_late():
    async def main():
        seq, order = Sequencer(fresh=True, settle=0.01, gap_timeout=60), []
        later = asyncio.ensure_future(asyncio.gather(_run(seq, "s", 3, order), _run(seq, "s", 2, order)))
        await asyncio.sleep(0.1)  # ten settle periods: a restarted host would have moved on
        assert order == []
        await _run(seq, "s", 1, order)
        await later
        return order

    assert asyncio.run(main()) == [1, 2, 3]


def test_a_parked_stream_resumes_in_order_without_settling():
    async def main():
        # Room for one live stream: "a" is parked (one number) when "b" arrives.
        seq, a, b = Sequencer(max_streams=1, settle=3600), [], []
        for n in (1, 2, 3):
            await _run(seq, "a", n, a)
        await _run(seq, "b", 1, b)
        assert seq._parked == {"a": 4}
        # Its calls 5 and 4 arrive out of order: 4 starts first, with no settle wait
        # (an hour here), and 5 after it.
        await asyncio.wait_for(asyncio.gather(_run(seq, "a", 5, a), _run(seq, "a", 4, a)), 5)
        return a

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]


def test_parked_streams_beyond_the_limit_are_forgotten_and_settle_if_they_return():
    async def main():
        seq, order = Sequencer(max_streams=1, max_parked=1, settle=0.05), []
        for stream in ("a", "b", "c"):
            await _run(seq, stream, 1, order)
        assert list(seq._parked) == ["b"]  # "a" was the oldest: forgotten
        await _run(seq, "a", 2, order)  # met mid-way: settles, then runs
        return order

    assert asyncio.run(main()) == [1, 1, 1, 2]
