"""The time the runtime reads: real by default, injectable for tests.

Backoff waits, schedules and alarms all go through a :class:`Clock`, so tests can
check them without waiting for real minutes: :class:`FakeClock` jumps instead of
sleeping, :class:`ManualClock` stands still until it is told to move (what
:mod:`dotdo.testing` runs objects on), and :meth:`Clock.shift` moves a real clock
forward (an object told that three hours have passed).

A clock has two faces: :meth:`Clock.now`, wall time for what is about the calendar,
and :meth:`Clock.monotonic`, which a shift does not move, so that code measuring
durations can tell a step of the wall clock from time passing. :func:`install` makes
one clock the process's: in-process hosting starts its objects on it, and
:func:`monotonic` reads it (the queue tells a step of its host's clock by it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Callable

__all__ = ["Clock", "FakeClock", "ManualClock", "install", "installed", "monotonic"]


class Clock:
    """Wall-clock time in epoch seconds, plus an adjustable offset."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self._sleepers: set[asyncio.Future] = set()

    def now(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        """Seconds on a clock that only time passing moves (a shift does not)."""
        return time.monotonic()

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

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)


@dataclasses.dataclass(eq=False)
class _Sleeper:
    until: float  # on the clock's monotonic time
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    label: object
    woken: bool = False  # told to resume (it leaves the clock once it does)


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class ManualClock(Clock):
    """A clock that stands still until :meth:`advance` moves it: ``sleep`` waits, on
    any event loop, for the clock to reach its end, however long that takes in real
    time. ``label`` (optional) is called in each ``sleep`` and kept with the sleeper,
    so that whoever advances the clock can tell whose sleeps are waiting
    (:func:`dotdo.testing.drain` asks which running jobs sleep). Thread-safe: the
    clock is advanced from one thread while objects sleep on another."""

    def __init__(self, start: float = 1_700_000_000.0,
                 label: Callable[[], object] | None = None) -> None:
        super().__init__()
        self.t = start
        self._label = label
        self._lock = threading.Lock()
        self._waiting: set[_Sleeper] = set()

    def now(self) -> float:
        return self.t + self.offset

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            sleeper = _Sleeper(self.t + seconds, loop, loop.create_future(),
                               self._label() if self._label is not None else None)
            self._waiting.add(sleeper)
        try:
            await sleeper.future
        finally:
            with self._lock:
                self._waiting.discard(sleeper)

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward and wake the sleeps that end by then
        (each resumes on its own loop, soon after). Returns ``now()``."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"a clock advances by a finite number of seconds >= 0, not {seconds!r}")
        return self.advance_to(self.t + seconds)

    def advance_to(self, t: float) -> float:
        """Move the clock to :meth:`monotonic` time ``t`` (never back) and wake the
        sleeps that end by then. Returns ``now()``."""
        with self._lock:
            self.t = max(self.t, t)
            due = [s for s in self._waiting if s.until <= self.t and not s.woken]
            for sleeper in due:
                sleeper.woken = True
        for sleeper in due:
            self._call(sleeper)
        return self.now()

    def next_wake(self) -> float | None:
        """When (on :meth:`monotonic` time) the first sleep not yet woken ends."""
        with self._lock:
            return min((s.until for s in self._waiting if not s.woken), default=None)

    def sleepers(self) -> list[tuple[float, object]]:
        """``(until, label)`` of every sleep not yet woken, soonest first."""
        with self._lock:
            waiting = [(s.until, s.label) for s in self._waiting if not s.woken]
        return sorted(waiting, key=lambda item: item[0])

    def shift(self, seconds: float) -> None:
        """Move wall time only (a step of the clock, as :meth:`Clock.shift`); every
        sleeper wakes to look again."""
        with self._lock:
            self.offset += seconds
            waiting = [s for s in self._waiting if not s.woken]
            for sleeper in waiting:
                sleeper.woken = True
        for sleeper in waiting:
            self._call(sleeper)

    @staticmethod
    def _call(sleeper: _Sleeper) -> None:
        try:
            sleeper.loop.call_soon_threadsafe(_wake, sleeper.future)
        except RuntimeError:  # its loop is closed: nobody waits on it any more
            pass


_installed: Clock | None = None


def install(clock: Clock | None) -> Clock | None:
    """Make ``clock`` this process's (None: the real one again); returns the one
    installed before. In-process hosts started from now on run on it."""
    global _installed
    previous, _installed = _installed, clock
    return previous


def installed() -> Clock | None:
    """The clock :func:`install` made this process's, or None (real time)."""
    return _installed


def monotonic() -> float:
    """Monotonic seconds of this process's clock: :meth:`Clock.monotonic` of the
    installed one, else ``time.monotonic()``."""
    clock = _installed
    return time.monotonic() if clock is None else clock.monotonic()
