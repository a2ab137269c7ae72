"""Dependencies between jobs: a job ``waiting`` for its parents runs once they all
completed, and follows one that fails or is cancelled (``on_parent_failure``)."""

from __future__ import annotations

from actors import queue_sql as sql
from actors.table import JobTable

__all__ = ["Flows"]


class Flows(JobTable):
    """The queue's handling of parents and children."""

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
        """A job just ended ``failed`` or ``cancelled``: its event, and its children
        follow it."""
        if status == "failed":
            self._event("Job.failed", {"$id": job_id, "error": error, "attempts": attempts})
        else:
            self._event("Job.cancelled", {"$id": job_id})
        self._children_follow(job_id, status, now)
