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
        status = "cancelled" if how == "cancel" else "failed"
        error = f"ParentFailed: parent job {parent!r} ended {parent_status}"
        self.storage.sql.execute(sql.END, (status, 0, now, error, None, job_id, uid))
        if status == "failed":
            self._event("Job.failed", {"$id": job_id, "error": error, "attempts": 0})
        else:
            self._event("Job.cancelled", {"$id": job_id})
        self._children_follow(job_id, status, now)
