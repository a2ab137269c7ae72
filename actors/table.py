"""What the parts of a queue share: its state (set up by ``Queue.__init__``) and
helpers to read its job table and write its event outbox."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import dotdo
from actors import metrics
from actors import queue_sql as sql
from actors.jobs import Job, job_thing
from actors.limits import Limiter
from actors.options import Keep
from dotdo import clock, codec

__all__ = ["JobTable"]

log = logging.getLogger("dotdo")
# A background loop whose round failed (a write the disk refused, say) waits this long
# before the next, doubling to a cap, and goes on.
LOOP_RETRY = dotdo.RetryPolicy(max_retries=1_000_000, backoff=0.1, max_backoff=30.0)
STEP = 1.0  # seconds the wall clock may drift against the monotonic one without a step
DEPTH_EVERY = 1.0  # seconds between counts of the ready jobs, at least...
DEPTH_SHARE = 100  # ...and this many times as long as the last count took


class JobTable:
    """The queue's state and table helpers; ``Queue`` and its parts build on it."""

    id: str
    storage: dotdo.Storage
    _ready: asyncio.Event  # something a claim waits for may have changed
    _outbox_ready: asyncio.Event
    _retain_now: asyncio.Event
    _listened: bool  # whether anyone handles Job events
    _tasks: set[asyncio.Task]
    _depth_at: float  # when the depth gauge may count again (monotonic)
    _expiry_check_at: float
    _paused: bool
    _concurrency: int | None
    _lease_timeout: float
    _group_limit: int | None
    _keep: dict[str, Keep]
    _limiter: Limiter
    _grouped: bool  # some job with a group is pending or running: claims take turns
    _has_deps: bool  # some job has parents
    _rr_after: str | None  # the group served last
    _recent: collections.deque  # (number, time, type, data) of the latest Job events
    _recent_n: int
    _left: set[str]  # workers that stopped (unregistered) since this process started
    _seen: dict[str, float]  # worker -> when it last claimed or beat (this process's view)
    _life: str  # tells this process's event numbers from a previous one's
    _fence: int  # the last claim's fence (lease number): the next claim's is larger
    _awake_at: float  # monotonic: when the queue last looked at its leases
    _offset: float  # wall time minus monotonic time then: a change is a clock step
    _wake_parked: Callable[[float], None]  # parked jobs due are ready (actors/parks.py)

    def _now(self) -> float:
        """Wall time, from the host's clock (the one seam every wall-time read of the
        queue goes through: tests step it as a real clock would step). A step of that
        clock is noticed here, before anything is written with the new time."""
        now = self.storage.now()
        # The host clock's own monotonic time: a test clock's advance is time passing,
        # not a step (real clocks: time.monotonic()).
        offset = now - clock.monotonic()
        stepped = offset - self._offset
        if abs(stepped) > STEP:
            self._clock_stepped(now, stepped)
        self._offset = offset  # slow drift is no step: it is absorbed
        return now

    def _clock_stepped(self, now: float, stepped: float) -> None:
        """The wall clock stepped by ``stepped`` s. What was due stays due and retry
        waits keep their length: those jobs' times move with the clock (a step back
        must not hold ready work for as long as the step), and so do suspects' waits.
        Jobs delayed to a later time keep that time (a calendar time). Leases are on
        the monotonic clock: no step moves them."""
        log.warning("dotdo: the wall clock of queue %s stepped by %+.1f s: due jobs and "
                    "retry waits move with it (leases are on the monotonic clock)",
                    self.id, stepped)
        with self.storage.transaction():
            self.storage.sql.execute(sql.SHIFT_DUE, (stepped, now - stepped))
            self.storage.sql.execute(sql.SHIFT_SUSPECTS, (stepped,))
        self._ready.set()

    async def _forever(self, what: str, every: Callable[[], float],
                       body: Callable[[], Awaitable[None] | None]) -> None:
        """Run ``body`` every ``every()`` s for the queue's life. A round that raises
        is logged and tried again after a growing wait (LOOP_RETRY): one failed write
        must not end the loop for good."""
        failures = 0
        while True:
            await asyncio.sleep(every() if not failures else LOOP_RETRY.delay(failures))
            if self.storage.closed:  # the object left memory (a lost cancel): end
                return
            try:
                done = body()
                if done is not None:
                    await done
            except Exception:
                failures += 1
                log.warning("dotdo: queue %s failed %s (%d in a row); trying again", self.id,
                            what, failures, exc_info=True)
            else:
                failures = 0

    def _rows(self, statement: str, params: tuple = ()) -> list[dict[str, Any]]:
        cursor = self.storage.sql.execute(statement, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _one(self, statement: str, params: tuple = ()) -> Any:
        return self.storage.sql.execute(statement, params).fetchone()[0]

    def _thing(self, row: dict[str, Any]) -> Job:
        """A Job Thing from a row. The payload is never rebuilt here: plain data as it
        is, anything else still encoded (``codec.passed_on``), decoded by the caller's
        process with its own classes."""
        row = {**row, "payload": codec.passed_on(row["payload"])}
        return job_thing(row, self._now())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _gauge_depth(self) -> None:
        """Count the ready jobs for the depth gauge, at most once a second and at most
        1% of the time: a count walks every ready job (100 ms for a million), and it
        holds the queue's loop while it runs."""
        started = time.monotonic()
        if started < self._depth_at:
            return
        ready = self._one(sql.COUNT_READY, (self._now(),))
        metrics.DEPTH.set(ready, tags={"queue": self.id})
        took = time.monotonic() - started
        self._depth_at = started + max(DEPTH_EVERY, took * DEPTH_SHARE)

    def _event(self, event_type: str, data: Any) -> None:
        # Kept for live views (Insight.recent_events) whether or not anyone handles them.
        self._recent_n += 1
        self._recent.append((self._recent_n, self._now(), event_type, data))
        if not self._listened:  # nobody handles Job events: sending them is waste
            return
        self.storage.sql.execute(sql.INSERT_OUTBOX, (event_type, codec.encode(data)))
        self._outbox_ready.set()
