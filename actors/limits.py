"""Rate limits of a queue: at most ``count`` job starts in any window of ``seconds``.

A sliding log per limit (the queue's own, and one per ``rate_key``) holds the start
times inside the window, so the limit holds exactly, over any window, not per fixed
bucket. The queue is the only one handing out jobs, so the logs live in its memory;
after a restart they are rebuilt from the start times in its table. A claim that
finds a limit spent sleeps until the oldest start leaves the window: nobody polls.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from actors.options import Rate

__all__ = ["SlidingLog", "Limiter"]


class SlidingLog:
    """Start times within the last ``rate.seconds``, at most ``rate.count`` of them."""

    __slots__ = ("rate", "starts")

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.starts: collections.deque[float] = collections.deque()

    def _trim(self, now: float) -> None:
        edge = now - self.rate.seconds
        while self.starts and self.starts[0] <= edge:
            self.starts.popleft()

    def room(self, now: float) -> int:
        """How many jobs may start at ``now``."""
        self._trim(now)
        return self.rate.count - len(self.starts)

    def opens_at(self) -> float:
        """When the next start is allowed, once ``room`` is 0."""
        return self.starts[0] + self.rate.seconds

    def note(self, now: float, n: int = 1) -> None:
        self.starts.extend([now] * n)
        while len(self.starts) > self.rate.count:  # a restart's rebuild may overfill
            self.starts.popleft()


class Limiter:
    """The queue's rate (``rate``) and each key's (``key_rate``)."""

    def __init__(self) -> None:
        self.queue: SlidingLog | None = None
        self.key_rate: Rate | None = None
        self.keys: dict[str, SlidingLog] = {}

    def configure(self, rate: Rate | None, key_rate: Rate | None) -> None:
        if rate != (self.queue.rate if self.queue else None):
            old = self.queue.starts if self.queue else ()
            self.queue = SlidingLog(rate) if rate else None
            if self.queue:
                self.queue.starts.extend(old)
        if key_rate != self.key_rate:
            self.key_rate = key_rate
            logs, self.keys = self.keys, {}
            if key_rate:
                for key, log in logs.items():
                    self.keys[key] = SlidingLog(key_rate)
                    self.keys[key].starts.extend(log.starts)

    def rebuild(self, starts: Iterable[tuple[str | None, float]], now: float) -> None:
        """Start times from the table after a restart: ``(rate_key, started)``, oldest
        first."""
        for key, started in starts:
            if self.queue:
                self.queue.note(started)
            if key is not None and self.key_rate:
                self.key(key).note(started)
        if self.queue:
            self.queue.room(now)
        for key in [k for k, log in self.keys.items() if log.room(now) == log.rate.count]:
            del self.keys[key]

    def key(self, key: str) -> SlidingLog:
        assert self.key_rate is not None
        log = self.keys.get(key)
        if log is None:
            log = self.keys[key] = SlidingLog(self.key_rate)
        return log

    def spent_keys(self, now: float) -> list[str]:
        """Keys that may not start a job now (idle keys are forgotten on the way)."""
        spent = []
        for key, log in list(self.keys.items()):
            room = log.room(now)
            if room <= 0:
                spent.append(key)
            elif room == log.rate.count:
                del self.keys[key]
        return spent

    def next_opening(self, keys: Iterable[str]) -> float | None:
        """The earliest time one of the spent ``keys`` may start a job again."""
        times = [self.keys[k].opens_at() for k in keys if k in self.keys and self.keys[k].starts]
        return min(times) if times else None
