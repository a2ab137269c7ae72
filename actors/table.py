"""What the parts of a queue share: its state (set up by ``Queue.__init__``) and
helpers to read its job table and write its event outbox."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import dotdo
from actors import metrics
from actors import queue_sql as sql
from actors.jobs import job_thing
from actors.limits import Limiter
from actors.options import Keep
from dotdo import codec

__all__ = ["JobTable"]


class JobTable:
    """The queue's state and table helpers; ``Queue`` and its parts build on it."""

    id: str
    storage: dotdo.Storage
    _ready: asyncio.Event  # something a claim waits for may have changed
    _outbox_ready: asyncio.Event
    _retain_now: asyncio.Event
    _listened: bool  # whether anyone handles Job events
    _tasks: set[asyncio.Task]
    _depth_at: float
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

    def _rows(self, statement: str, params: tuple = ()) -> list[dict[str, Any]]:
        cursor = self.storage.sql.execute(statement, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _one(self, statement: str, params: tuple = ()) -> Any:
        return self.storage.sql.execute(statement, params).fetchone()[0]

    def _thing(self, row: dict[str, Any]) -> dict[str, Any]:
        row = {**row, "payload": codec.decode(row["payload"])}
        return job_thing(row, time.time())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _gauge_depth(self) -> None:
        if time.monotonic() - self._depth_at < 1.0:  # a count per second is plenty
            return
        self._depth_at = time.monotonic()
        ready = self._one("SELECT count(*) FROM jobs WHERE status = 'pending' AND run_at <= ?",
                          (time.time(),))
        metrics.DEPTH.set(ready, tags={"queue": self.id})

    def _event(self, event_type: str, data: Any) -> None:
        # Kept for live views (Insight.recent_events) whether or not anyone handles them.
        self._recent_n += 1
        self._recent.append((self._recent_n, time.time(), event_type, data))
        if not self._listened:  # nobody handles Job events: sending them is waste
            return
        self.storage.sql.execute(sql.INSERT_OUTBOX, (event_type, codec.encode(data)))
        self._outbox_ready.set()
