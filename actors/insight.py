"""What operators read from a queue beyond its jobs: throughput over time, durations
and waits, outcome totals that survive retention, its workers as the queue sees them,
failed jobs grouped by error, and the latest Job events (for live views)."""

from __future__ import annotations

import builtins
import json
import math
from typing import Any

from actors import queue_sql as sql
from actors.table import JobTable

__all__ = ["Insight", "RECENT_EVENTS"]

RECENT_EVENTS = 1_000  # Job events kept in memory for live views
_SAMPLE = 1_000  # recent jobs behind the duration and wait percentiles
_MAX_BUCKETS = 1_440


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

    def stats(self, window: float = 3600.0, bucket: float = 60.0) -> dict[str, Any]:
        """Throughput and failures per ``bucket`` s over the last ``window`` s, p50/p95
        of the duration and wait (ready to started) of the latest 1,000 jobs, the age
        of the oldest ready job, and outcome totals (counting purged jobs too)."""
        if not (isinstance(window, (int, float)) and isinstance(bucket, (int, float))
                and 0 < bucket <= window and window / bucket <= _MAX_BUCKETS):
            raise ValueError(f"stats() takes 0 < bucket <= window with at most {_MAX_BUCKETS} "
                             f"buckets, not window={window!r}, bucket={bucket!r}")
        now = self._now()
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
            "duration": _percentiles([r[0] for r in self.storage.sql.execute(
                sql.RECENT_DURATIONS, (_SAMPLE,)).fetchall()]),
            "wait": _percentiles([r[0] for r in self.storage.sql.execute(
                sql.RECENT_WAITS, (_SAMPLE,)).fetchall()]),
            "oldestPendingAge": self._oldest_ready_age(now),
            "totals": self.totals(),
        }

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
