"""Retention: finished jobs past a queue's ``keep_completed`` / ``keep_failed`` are
deleted in the background, with their attempts, and their steps leave the journals
of the workers serving the queue."""

from __future__ import annotations

import asyncio
import builtins
import json
import logging

import dotdo
from actors import queue_sql as sql
from actors.flows import Flows
from actors.insight import Insight
from actors.jobs import FINISHED, step_id

__all__ = ["Retention", "RETAIN_EVERY", "RETAIN_BATCH"]

log = logging.getLogger("dotdo")

RETAIN_EVERY = 5.0  # seconds between rounds
RETAIN_BATCH = 1_000  # jobs deleted per transaction
_FORGET_BATCH = 500


class Retention(Flows, Insight):
    """The queue's background deletion of finished jobs."""

    async def _retain(self) -> None:
        """Delete finished jobs past the queue's keep_completed / keep_failed, in
        batches, every few seconds (and at once after ``configure``)."""
        while True:
            try:
                await asyncio.wait_for(self._retain_now.wait(), RETAIN_EVERY)
            except TimeoutError:
                pass
            self._retain_now.clear()
            if self.storage.closed:  # the object left memory (a lost cancel): end
                return
            try:
                await self._retain_round()
            except Exception:  # a round that failed is tried again next time
                log.warning("dotdo: queue %s could not apply its retention", self.id,
                            exc_info=True)

    async def _retain_round(self) -> None:
        for status in FINISHED:
            keep = self._keep["completed" if status == "completed" else "failed"]
            while True:
                rows: builtins.list[tuple] = []
                if keep.count is not None:
                    rows = self.storage.sql.execute(
                        sql.OVER_COUNT, (status, RETAIN_BATCH, keep.count)).fetchall()
                if not rows and keep.age is not None:
                    rows = self.storage.sql.execute(
                        sql.OVER_AGE, (status, self._now() - keep.age, RETAIN_BATCH)).fetchall()
                if not rows:
                    break
                self._delete_jobs(rows, status)
                await asyncio.sleep(0)  # other calls between batches
        await self._forget_steps()

    def _delete_jobs(self, rows: builtins.list[tuple], status: str) -> int:
        """Delete jobs ``(seq, id, uid, worker)`` that are ``status``, with their
        attempts and the points of their runs, and note their steps for their workers to forget."""
        uids = json.dumps([uid for _, _, uid, _ in rows])
        with self.storage.transaction():
            gone = self.storage.sql.execute(
                sql.DELETE_SEQS, (json.dumps([seq for seq, _, _, _ in rows]),)).rowcount
            self.storage.sql.execute(sql.DELETE_ATTEMPTS, (uids,))
            self.storage.sql.execute(sql.DELETE_JOB_LOGS, (uids,))
            self.storage.sql.execute(sql.DELETE_DEPS, (uids,))
            self.storage.sql.execute(sql.DELETE_POINTS_OF_UIDS, (uids,))
            for _, job_id, uid, worker in rows:
                self._job_ended(job_id)  # a wait() on it answers that it is gone
                if worker is not None:
                    self.storage.sql.execute(sql.INSERT_FORGET,
                                             (worker, step_id(self.id, job_id, uid)))
            self._count_gone(status, gone)
            # The fence counter must outlive the jobs that carried the largest fences.
            self.storage.put("fence", self._fence)
        return gone

    async def _forget_steps(self) -> None:
        """Tell workers serving this queue to forget the steps of purged jobs. Workers
        that no longer serve it are not woken for this: their journals drop steps
        after a week anyway."""
        serving = set(self.storage.get("workers", []))
        while rows := self.storage.sql.execute(sql.SELECT_FORGET, (_FORGET_BATCH,)).fetchall():
            by_worker: dict[str, builtins.list[str]] = {}
            for _, worker, step in rows:
                if worker in serving:
                    by_worker.setdefault(worker, []).append(step)
            try:
                await asyncio.gather(*(dotdo.Worker(w).forget_steps(steps)
                                       for w, steps in by_worker.items()))
            except Exception:  # noqa: BLE001 - a worker is restarting: next round
                return
            self.storage.sql.execute(sql.DELETE_FORGET, (json.dumps([r[0] for r in rows]),))
