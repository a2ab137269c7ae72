"""Named steps of job handlers: one step for the whole queue.

``await dotdo.do(charge, user, step_id=f"charge-{user}")`` inside a job handler names a
step of the job's *queue*, not of the worker that happens to run it: every job of the
queue, on any worker, reaches the same step, and it runs once. Its result is journaled
in the queue's file (``_dotdo_steps``, as any object's steps), which every worker of
the queue reaches, and comes back, without running the step again, to every later
``do`` of that id: in another job, on another worker, or in the same job run again
after its worker died or its lease ran out.

While a step runs it has a *hold* (``step_holds``) naming the run: job, enqueue (uid)
and lease. A ``do`` of a held step waits for it to end; a hold counts only while its
run still holds its job's lease, so a run whose worker died or froze past its lease
does not keep a step from the job's next run. Only a run that holds its job's lease
may take a step: a stale run (its lease went to another worker) is told so, and stops.
A step is at-least-once where its run dies mid-step (it runs again), exactly-once
once it finished: the first result journaled wins, also over a stale run's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actors import queue_sql as sql
from actors.table import JobTable

__all__ = ["Steps", "STEP_WAIT"]

STEP_WAIT = 1.0  # seconds a step_begin waits for a held step before answering "busy"
_RECHECK = 0.25  # a hold's run may lose its lease without a word: look again this often


class Steps(JobTable):
    """What a worker calls on the queue for a named step of a job handler."""

    _step_changed: asyncio.Event  # set (and replaced) when a hold ends
    _any_points: bool  # some run has points (actors/parks.py)

    def _note_step(self, job_id: str, uid: str | None, step: str) -> None:
        """A run of ``job_id`` met the named step ``step``, done: a point of its run,
        so that a resumed run that no longer reaches it is told (``dotdo.ReplayError``)."""
        self._ended_point(job_id, uid, f"step:{step}", "done", None, self._now())

    def _ended_point(self, job_id: str, uid: str | None, key: str, state: str,
                     value: bytes | None, now: float) -> None:
        """Write point ``key`` of a run as ended already (kept if it is there)."""
        self.storage.sql.execute(sql.INSERT_POINT, (
            uid, key, job_id, uid, state, None, None, value, now, now))
        self._any_points = True

    def _holds(self, job_id: str, uid: str | None, worker: str, lease: int) -> bool:
        """Whether this run (of ``worker``, under ``lease``) still holds its job."""
        return self.storage.sql.execute(
            sql.HOLDS_JOB, (job_id, uid, worker, lease)).fetchone() is not None

    def _steps_changed(self) -> None:
        """Wake every ``step_begin`` waiting for a hold to end."""
        self._step_changed.set()
        self._step_changed = asyncio.Event()

    async def step_begin(self, worker: str, job_id: str, uid: str | None, lease: int,
                         step: str, wait: float = STEP_WAIT) -> dict[str, Any]:
        """A run of ``job_id`` (held by ``worker`` under ``lease``) reaches ``step``.
        Answers ``{"done": result}`` (encoded: it finished before, do not run it),
        ``{"run": True}`` (this run holds the step now: run it), ``{"lost": True}``
        (this run no longer holds its job: stop) or, after waiting up to ``wait`` s
        for another run holding the step, ``{"busy": True}`` (ask again)."""
        deadline = time.monotonic() + min(max(float(wait), 0.0), 30.0)
        while True:
            result = self.storage.journal.step_result(step)
            if result is not None:
                self._note_step(job_id, uid, step)
                return {"done": result}
            if not self._holds(job_id, uid, worker, lease):
                return {"lost": True}
            holder = self.storage.sql.execute(sql.SELECT_STEP_HOLD, (step,)).fetchone()
            if holder is None or tuple(holder) == (job_id, uid, lease, worker) or not \
                    self._holds(holder[0], holder[1], holder[3], holder[2]):
                self.storage.sql.execute(sql.UPSERT_STEP_HOLD, (
                    step, job_id, uid, lease, worker, self._now()))
                return {"run": True}
            left = deadline - time.monotonic()
            if left <= 0:
                return {"busy": True}
            try:
                await asyncio.wait_for(self._step_changed.wait(), min(left, _RECHECK))
            except TimeoutError:
                pass

    def step_finish(self, worker: str, job_id: str, uid: str | None, lease: int, step: str,
                    result: bytes, attempts: int, started: float, finished: float) -> bytes:
        """The step ran to the end: journal ``result`` (encoded) unless a result is
        journaled already (the first wins, also over a stale run's: its side effects
        happened), end the hold, and return the result every run of it will see."""
        if not isinstance(result, bytes):
            raise TypeError("step_finish takes the step's result encoded (bytes)")
        with self.storage.transaction():
            self.storage.journal.finish_step(step, result, attempts, started, finished)
            self.storage.sql.execute(sql.DELETE_STEP_HOLD, (step,))
            self._note_step(job_id, uid, step)
        self._steps_changed()
        stored = self.storage.journal.step_result(step)
        assert stored is not None, "journaled just now, in this transaction or before"
        return stored

    def step_attempt(self, worker: str, job_id: str, uid: str | None, lease: int, step: str,
                     attempt: int, started: float, finished: float, error: str | None,
                     final: bool) -> None:
        """An attempt at the step failed (``error``; None: it was interrupted). Kept in
        the queue's journal; ``final``: the run gives the step up, and its hold ends,
        so another run may try it."""
        with self.storage.transaction():
            if error is not None:
                self.storage.journal.record_attempt(step, attempt, started, finished, error)
            if final:
                self.storage.sql.execute(sql.DELETE_STEP_HOLD_OF, (step, job_id, uid, lease))
        if final:
            self._steps_changed()
