"""Dependencies between jobs: a job ``waiting`` for its parents runs once they all
completed, and follows one that fails or is cancelled (``on_parent_failure``); and
where every end of a job is noted, for the ``Queue.wait`` calls waiting on it."""

from __future__ import annotations

import asyncio

from actors import queue_sql as sql
from actors.table import JobTable

__all__ = ["Flows"]


class Flows(JobTable):
    """The queue's handling of parents and children, and of jobs' ends."""

    _waiters: dict[str, set[asyncio.Future]]  # job id -> the futures of its wait() calls
    _woken: set[str]  # ids with waiters that ended in this step of the loop
    _wake_due: bool  # a wake-up is scheduled for the end of this step

    def _job_ended(self, job_id: str) -> None:
        """``job_id`` reached a final state, or left the table (purge, retention), in
        the write being made: its waiters are woken after that write is committed.
        The wake-up runs after the current step of the event loop, so after the
        commit of the transaction the end is written in (the call's own, or the one
        a batch of calls shares, ``ObjectTable.run_now``); a waiter then reads the
        row itself, so an end whose commit failed wakes it only to wait again."""
        if job_id not in self._waiters:  # nobody waits: the hot path costs one lookup
            return
        self._woken.add(job_id)
        if not self._wake_due:
            self._wake_due = True
            asyncio.get_running_loop().call_soon(self._wake_waiters)

    def _wake_waiters(self) -> None:
        self._wake_due = False
        woken, self._woken = self._woken, set()
        for job_id in woken:
            for future in self._waiters.get(job_id, ()):
                if not future.done():
                    future.set_result(None)

    def _parent_completed(self, job_id: str) -> None:
        if self._has_deps and self.storage.sql.execute(sql.PARENT_DONE, (job_id,)).rowcount:
            self._ready.set()

    def _children_follow(self, job_id: str, status: str, now: float) -> None:
        """A job ended failed or cancelled: the jobs waiting for it follow it, by their
        ``on_parent_failure``, and theirs follow them."""
        if not self._has_deps:
            return
        for child, uid, how in self.storage.sql.execute(sql.WAITING_CHILDREN, (job_id,)).fetchall():
            self._follow_parent(child, uid, how, job_id, status, now)

    def _follow_parent(self, job_id: str, uid: str, how: str, parent: str, parent_status: str,
                       now: float) -> None:
        self._end(job_id, uid, "cancelled" if how == "cancel" else "failed", 0,
                  f"ParentFailed: parent job {parent!r} ended {parent_status}", None, now)

    def _end(self, job_id: str, uid: str | None, status: str, attempts: int,
             error: str | None, trace: str | None, now: float) -> None:
        """End a job ``failed`` or ``cancelled`` (see ``_ended``)."""
        self.storage.sql.execute(sql.END, (status, attempts, now, error, trace, job_id, uid))
        self._ended(job_id, status, error, attempts, now)

    def _ended(self, job_id: str, status: str, error: str | None, attempts: int,
               now: float) -> None:
        """A job just ended ``failed`` or ``cancelled``: its event, its waiters, and
        its children follow it."""
        self._job_ended(job_id)
        if status == "failed":
            self._event("Job.failed", {"$id": job_id, "error": error, "attempts": attempts})
        else:
            self._event("Job.cancelled", {"$id": job_id})
        self._children_follow(job_id, status, now)
