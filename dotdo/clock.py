"""The time the runtime reads: real by default, injectable for tests.

Backoff waits, schedules and alarms all go through a :class:`Clock`, so tests can
check them without waiting for real minutes: :class:`FakeClock` jumps instead of
sleeping, and :meth:`Clock.shift` moves a real clock forward (an object told that
three hours have passed).
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["Clock", "FakeClock"]


class Clock:
    """Wall-clock time in epoch seconds, plus an adjustable offset."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self._sleepers: set[asyncio.Future] = set()

    def now(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the clock is shifted meanwhile: callers
        compare ``now()`` with what they wait for and sleep again if early."""
        if seconds <= 0:
            return
        fut = asyncio.get_running_loop().create_future()
        self._sleepers.add(fut)
        try:
            await asyncio.wait_for(fut, seconds)
        except TimeoutError:
            pass
        finally:
            self._sleepers.discard(fut)

    def shift(self, seconds: float) -> None:
        """Move this clock forward (or back); sleepers wake to look again."""
        self.offset += seconds
        for fut in self._sleepers:
            if not fut.done():
                fut.set_result(None)


class FakeClock(Clock):
    """A clock that never waits: ``sleep`` advances ``now`` and returns."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        super().__init__()
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t + self.offset

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)
