"""What operators read from a queue beyond its jobs: throughput over time, durations
and waits (percentiles of recent jobs, and histograms of every completed job by type),
outcome totals that survive retention, its workers as the queue sees them, failed jobs
grouped by error, and the latest Job events (for live views)."""

from __future__ import annotations

import builtins
import json
import math
from typing import Any

from actors import queue_sql as sql
from actors.metrics import BOUNDS, Timings
from actors.table import JobTable

__all__ = ["Insight", "RECENT_EVENTS"]

RECENT_EVENTS = 1_000  # Job events kept in memory for live views
_SAMPLE = 1_000  # recent jobs behind the duration and wait percentiles
_MAX_BUCKETS = 1_440
# Per job type, the histograms of its completed jobs (actors/metrics.py's Timings), at
# this key prefix of the queue's storage, written in the commit of the outcomes.
_TIMINGS = "timings/"
# Types with histograms of their own; later ones share "(other)". Only a type some
# worker has a handler for completes, so enqueuers cannot add types here; the cap
# bounds what years of renamed types leave behind.
MAX_TIMED_TYPES = 100
_OTHER = "(other)"
# Run time and wait (ready to started) of jobs a batch just completed: one lookup by id
# each, never a walk of the completed jobs.
_TIMES = (
    "SELECT type, max(finished - coalesce(started, finished), 0), "
    "max(coalesce(started, finished) - run_at, 0) FROM jobs "
)
COMPLETED_TIMES = _TIMES + "WHERE id IN (SELECT value FROM json_each(?))"
COMPLETED_TIMES_OF_ONE = _TIMES + "WHERE id = ?"  # a batch of one: the usual one when idle


def _percentiles(values: builtins.list[float]) -> dict[str, Any]:
    """p50 and p95 (nearest rank) of ``values``, and how many there were."""
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.5), "p95": rank(0.95), "n": len(ordered)}


class Insight(JobTable):
    """The queue's read side for operators (the CLI, the HTTP API, the dashboard)."""

    _timed: set[str] | None = None  # job types with histograms stored (None: not read yet)

    def stats(self, window: float = 3600.0, bucket: float = 60.0) -> dict[str, Any]:
        """Throughput and failures per ``bucket`` s over the last ``window`` s, p50/p95
        of the duration and wait (ready to started) of the latest 1,000 jobs, the age
        of the oldest ready job, and outcome totals (counting purged jobs too).
        ``duration`` and ``wait`` also carry ``histogram``: ``{"le": bounds, "types":
        {type: {"buckets", "sum", "count"}}}`` over every job that completed since the
        queue's file began counting (``histograms``)."""
        if not (isinstance(window, (int, float)) and isinstance(bucket, (int, float))
                and 0 < bucket <= window and window / bucket <= _MAX_BUCKETS):
            raise ValueError(f"stats() takes 0 < bucket <= window with at most {_MAX_BUCKETS} "
                             f"buckets, not window={window!r}, bucket={bucket!r}")
        now = self._now()
        timings = self._timings()
        start = math.floor((now - window) / bucket) * bucket + bucket
        n = math.ceil((now - start) / bucket) or 1
        series = [{"t": start + i * bucket, "completed": 0, "failed": 0} for i in range(n)]
        for index, status, count in self.storage.sql.execute(
                sql.SERIES, (start, bucket, start)).fetchall():
            if 0 <= index < n:
                series[index][status] = count
        done = sum(b["completed"] for b in series)
        failed = sum(b["failed"] for b in series)
        return {
            "window": window, "bucket": bucket, "series": series,
            "throughput": done / window,
            "failureRate": failed / (done + failed) if done + failed else None,
            "duration": {**_percentiles([r[0] for r in self.storage.sql.execute(
                sql.RECENT_DURATIONS, (_SAMPLE,)).fetchall()]),
                         "histogram": self._histogram(timings, "duration")},
            "wait": {**_percentiles([r[0] for r in self.storage.sql.execute(
                sql.RECENT_WAITS, (_SAMPLE,)).fetchall()]),
                     "histogram": self._histogram(timings, "wait")},
            "oldestPendingAge": self._oldest_ready_age(now),
            "totals": self.totals(),
        }

    def histograms(self) -> dict[str, Any]:
        """Histograms of the run time (``duration``, started to completed) and the wait
        (ready to started, of the run that completed) of every job that completed,
        since the queue's file began counting, by job type: ``{"duration": {"le":
        bounds, "types": {type: {"buckets": cumulative counts (the last, +Inf, is
        ``count``), "sum", "count"}}}, "wait": ...}``. They only grow, as Prometheus
        histograms must; retention and ``purge`` take nothing from them."""
        timings = self._timings()
        return {family: self._histogram(timings, family) for family in ("duration", "wait")}

    def _timings(self) -> dict[str, Timings]:
        return {key[len(_TIMINGS):]: Timings(value)
                for key, value in self.storage.list(_TIMINGS).items()}

    @staticmethod
    def _histogram(timings: dict[str, Timings], family: str) -> dict[str, Any]:
        return {"le": builtins.list(BOUNDS),
                "types": {t: timing.histogram(family) for t, timing in timings.items()}}

    def _count_completed(self, job_ids: builtins.list[str]) -> None:
        """Add the jobs a batch just completed (``Claims.complete``, in its
        transaction) to their types' histograms: one read of the batch's rows, and one
        read and one write per type in it, which a failed commit takes back with the
        rest."""
        if not job_ids:
            return
        if len(job_ids) == 1:
            statement, params = COMPLETED_TIMES_OF_ONE, (job_ids[0],)
        else:
            statement, params = COMPLETED_TIMES, (json.dumps(job_ids),)
        by_type: dict[str, builtins.list[tuple[float, float]]] = {}
        for job_type, run, wait in self.storage.sql.execute(statement, params).fetchall():
            by_type.setdefault(job_type, []).append((run, wait))
        if self._timed is None:  # the types stored, read once per process
            self._timed = {key[len(_TIMINGS):] for key in self.storage.list(_TIMINGS)}
        timed = self._timed
        changed: dict[str, Timings] = {}
        for job_type, times in by_type.items():
            label = job_type if job_type in timed or len(timed) < MAX_TIMED_TYPES else _OTHER
            timing = changed.get(label)
            if timing is None:
                timing = changed[label] = Timings(self.storage.get(_TIMINGS + label))
            timing.add(times)
            timed.add(label)
        self.storage.put({_TIMINGS + label: t.value() for label, t in changed.items()})

    def oldest_pending_age(self) -> float | None:
        """Seconds the oldest ready job has waited to start (None: none waits)."""
        return self._oldest_ready_age(self._now())

    def _oldest_ready_age(self, now: float) -> float | None:
        oldest = self._one(sql.OLDEST_READY, (now,))
        return None if oldest is None else max(0.0, now - oldest)

    def totals(self) -> dict[str, int]:
        """Jobs that ever ended completed, failed or cancelled here: the table's count
        plus those retention or ``purge`` deleted (and failed jobs later retried), so
        the numbers only grow, as Prometheus counters must."""
        counts = dict(self.storage.sql.execute(sql.FINISHED_COUNTS).fetchall())
        gone = self.storage.get("gone", {})
        return {status: counts.get(status, 0) + gone.get(status, 0)
                for status in ("completed", "failed", "cancelled")}

    def _count_gone(self, status: str, n: int) -> None:
        """``n`` jobs left ``status`` without a new outcome (deleted, or retried from
        failed): keep them in the totals."""
        if n:
            gone = self.storage.get("gone", {})
            gone[status] = gone.get(status, 0) + n
            self.storage.put("gone", gone)

    def workers(self) -> builtins.list[dict[str, Any]]:
        """The workers serving this queue, and every worker holding or having run a
        job still in the table: ``{"worker", "registered", "lastSeen", "running",
        "completed", "failed"}`` (counts over the jobs the table still holds)."""
        rows: dict[str, dict[str, Any]] = {}

        def row(name: str) -> dict[str, Any]:
            return rows.setdefault(name, {"worker": name, "registered": False,
                                          "lastSeen": self._seen.get(name), "running": 0,
                                          "completed": 0, "failed": 0})

        for name in self.storage.get("workers", []):
            row(name)["registered"] = True
        for name, status, count in self.storage.sql.execute(sql.BY_WORKER).fetchall():
            row(name)[status] = count
        return sorted(rows.values(), key=lambda r: r["worker"])

    def dead_letters(self, limit: int = 50) -> builtins.list[dict[str, Any]]:
        """Failed jobs grouped by the first line of their error, biggest group first:
        ``{"error", "count", "types", "lastAt", "jobs"}`` (the latest 5 ids)."""
        return [{"error": error, "count": count, "types": sorted(set((types or "").split(","))),
                 "lastAt": last, "jobs": json.loads(ids)}
                for error, count, types, last, ids in self.storage.sql.execute(
                    sql.DEAD_LETTERS, (limit,)).fetchall()]

    def recent_events(self, after: int = 0) -> dict[str, Any]:
        """Job events since number ``after`` (the latest 1,000 at most), as live views
        poll them: ``{"instance", "next", "events": [{"n", "at", "type", "data"}]}``.
        Numbers restart with the queue's process; ``instance`` tells a new one apart."""
        events = [{"n": n, "at": at, "type": kind, "data": data}
                  for n, at, kind, data in self._recent if n > after]
        return {"instance": self._life, "next": self._recent_n, "events": events}
