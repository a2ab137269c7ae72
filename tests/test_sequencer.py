"""The host's reordering of calls (no Ray needed: it is plain asyncio)."""

import asyncio
import random

from dotdo.sequencer import Sequencer


async def _run(seq: Sequencer, stream, n: int, order: list, deferred=None, more=False):
    """One call as the host runs it: whatever happens, it leaves admission."""
    admitted = seq.arrive(stream, n, deferred, more)
    try:
        if admitted is not None:
            await admitted
        order.append(n)
    finally:
        seq.leave(stream, n)


class _Clock:
    """The sequencer's clock for the deferred timeout, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


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
        seq.leave("s", 1)
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


def test_a_waiting_call_that_is_cancelled_does_not_hold_up_the_calls_after_it():
    async def main():
        seq, order = Sequencer(gap_timeout=3600), []
        assert seq.arrive("s", 1) is None  # admitted, not started yet
        second = asyncio.ensure_future(_run(seq, "s", 2, order))
        third = asyncio.ensure_future(_run(seq, "s", 3, order))
        await asyncio.sleep(0)
        second.cancel()  # e.g. ray.cancel while it waits for its turn
        await asyncio.gather(second, return_exceptions=True)
        seq.leave("s", 1)
        await asyncio.wait_for(third, 10)  # a hang guard, far above what it takes
        return order, seq.waiting(), seq.skipped

    # Call 2 counts as skipped, not as a gap given up on after a timeout.
    assert asyncio.run(main()) == ([3], 0, 0)


def test_an_admitted_call_cancelled_before_it_starts_lets_the_next_in():
    async def main():
        seq, order = Sequencer(gap_timeout=3600), []
        assert seq.arrive("s", 1) is None
        second = asyncio.ensure_future(_run(seq, "s", 2, order))
        third = asyncio.ensure_future(_run(seq, "s", 3, order))
        await asyncio.sleep(0)
        seq.leave("s", 1)  # call 2 is admitted now...
        second.cancel()  # ...and cancelled before it runs a line
        await asyncio.gather(second, return_exceptions=True)
        await asyncio.wait_for(third, 10)
        return order

    assert asyncio.run(main()) == [3]


async def _deferred_gap(clock):
    """Call 1 ran; call 3 waits for call 2, which its caller says it holds back."""
    seq, order = Sequencer(gap_timeout=0.01, deferred_timeout=30, now=clock), []
    await _run(seq, "s", 1, order)
    return seq, order, asyncio.ensure_future(_run(seq, "s", 3, order, deferred=[2]))


def test_a_deferred_gap_without_news_is_given_up_after_the_deferred_timeout():
    async def main():
        clock = _Clock()
        seq, order, later = await _deferred_gap(clock)
        await asyncio.sleep(0.1)  # many gap timeouts, no time on the sequencer's clock
        assert order == [1]
        clock.now = 31  # its caller said nothing more: it died holding call 2 back
        await asyncio.wait_for(later, 10)
        await _run(seq, "s", 2, order)  # should it come after all: a straggler
        return order, seq.skipped

    assert asyncio.run(main()) == ([1, 3, 2], 1)


def test_pings_keep_a_deferred_gap_waited_for():
    async def main():
        clock = _Clock()
        seq, order, later = await _deferred_gap(clock)
        for now in (20, 40, 60):  # the caller pings: still holding call 2 back
            clock.now = now
            seq.keep("s", [2], upto=4)
            await asyncio.sleep(0.05)
        clock.now = 85  # 25 s since the last ping
        await asyncio.sleep(0.05)
        assert order == [1]
        await _run(seq, "s", 2, order)
        await asyncio.wait_for(later, 10)
        return order, seq.skipped

    assert asyncio.run(main()) == ([1, 2, 3], 0)


def test_a_late_delivered_list_does_not_replace_newer_news():
    async def main():
        clock = _Clock()
        seq, order = Sequencer(gap_timeout=0.01, now=clock), []
        await _run(seq, "s", 1, order)
        seq.keep("s", [5], upto=7)  # a ping, sent after call 6
        waiting = [asyncio.ensure_future(_run(seq, "s", n, order, deferred=d))
                   for n, d in ((6, [2, 5]), (2, None), (3, [2]), (4, None))]
        await asyncio.sleep(0.1)
        assert order == [1, 2, 3, 4]  # call 3's old list did not drop 5
        await _run(seq, "s", 5, order)
        await asyncio.wait_for(asyncio.gather(*waiting), 10)
        return order, seq.skipped

    assert asyncio.run(main()) == ([1, 2, 3, 4, 5, 6], 0)


def test_a_cut_deferred_list_waits_for_every_number_above_its_highest():
    async def main():
        clock = _Clock()
        seq, order = Sequencer(gap_timeout=0.01, now=clock), []
        await _run(seq, "s", 1, order)
        # Calls 2..400 are held back; call 401 lists the lowest 256 and says so.
        last = asyncio.ensure_future(
            _run(seq, "s", 401, order, deferred=range(2, 258), more=True))
        for n in range(2, 258):
            await _run(seq, "s", n, order)
        await asyncio.sleep(0.1)  # many gap timeouts: 258 is not listed, yet waited for
        assert order[-1] == 257
        for n in range(258, 401):
            await _run(seq, "s", n, order)
        await asyncio.wait_for(last, 10)
        return order, seq.skipped

    assert asyncio.run(main()) == (list(range(1, 402)), 0)


def test_can_start_says_what_arrive_would_and_changes_nothing():
    async def main():
        seq = Sequencer(fresh=True)
        answers = [seq.can_start("s", 2), seq.can_start("s", 1)]  # a fresh host waits for 1
        assert seq.arrive("s", 1) is None
        answers += [seq.can_start("s", 2)]  # call 1 admitted, not yet started
        seq.leave("s", 1)
        answers += [seq.can_start("s", 2), seq.can_start("s", 1), seq.can_start("s", 3)]
        restarted = Sequencer(fresh=False)
        answers += [restarted.can_start("t", 5)]  # met mid-way: it settles first
        return answers

    assert asyncio.run(main()) == [False, True, False, True, True, False, False]


def test_a_stream_has_started_all_its_calls_only_once_each_one_has():
    # A caller asks this before it drops its stream (and a new one's calls could overtake)
    async def main():
        seq, order = Sequencer(), []
        await asyncio.gather(*(_run(seq, "s", n, order) for n in (1, 2)))
        assert seq.started_all("s", 2) and not seq.started_all("s", 3)
        waiting = asyncio.ensure_future(_run(seq, "s", 4, order))  # 3 has not come yet
        await asyncio.sleep(0)
        assert not seq.started_all("s", 4)
        waiting.cancel()
        # a stream parked (idle, beyond max_streams) still knows how far it got
        seq = Sequencer(max_streams=1)
        await _run(seq, "t", 1, order)
        await _run(seq, "u", 1, order)
        assert "t" not in seq._streams
        assert seq.started_all("t", 1) and not seq.started_all("t", 2)
        assert not seq.started_all("never", 1)

    asyncio.run(main())
