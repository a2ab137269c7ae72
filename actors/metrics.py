"""The queue's Prometheus metrics: those sent through Ray's metrics API (by workers,
and the queue's depth), and the histograms a queue keeps of its completed jobs
(``Timings``: kept by ``actors/insight.py`` in the queue's file, served at ``dotdo
serve``'s ``/metrics``).

A scrape of Ray's metrics endpoint (each node's ``metrics_export_port``) shows the
first kind with Ray's ``ray_`` prefix: ``ray_dotdo_jobs_total{queue,type,outcome}``,
``ray_dotdo_queue_depth{queue}`` and ``ray_dotdo_job_duration_seconds{queue,type}``
(per worker process, since it started).
"""

from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import Iterable
from typing import Any

from ray.util import metrics

__all__ = ["JOBS", "DEPTH", "DURATION", "job_ended", "flush", "BOUNDS", "Timings"]

JOBS = metrics.Counter(
    "dotdo_jobs_total", description="Jobs finished, by queue, type and outcome.",
    tag_keys=("queue", "type", "outcome"),
)
DEPTH = metrics.Gauge(
    "dotdo_queue_depth", description="Jobs waiting to run (pending, not delayed).",
    tag_keys=("queue",),
)
DURATION = metrics.Histogram(
    "dotdo_job_duration_seconds", description="Time from a job's start to its outcome.",
    boundaries=[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60],
    tag_keys=("queue", "type"),
)

# Per job, only the duration is recorded at once; the counts add up here and go to
# ``JOBS`` once per batch (``flush``), one call per series: each call to Ray's metrics
# costs microseconds, and Ray exports them only every few seconds anyway.
_tags: dict[tuple[str, str], dict[str, str]] = {}
_counts: collections.Counter[tuple[str, str, str]] = collections.Counter()


def job_ended(queue: str, job_type: str, outcome: str, seconds: float) -> None:
    """A job of ``queue`` ended with ``outcome`` after ``seconds`` (``job_type``: its
    label); counted at the next ``flush``."""
    key = (queue, job_type)
    tags = _tags.get(key)
    if tags is None:
        if len(_tags) > 10_000:  # labels are bounded, queue names need not be
            _tags.clear()
        tags = _tags[key] = {"queue": queue, "type": job_type}
    DURATION.observe(seconds, tags=tags)
    _counts[queue, job_type, outcome] += 1


def flush() -> None:
    """Add the counts of the jobs ended since the last flush to ``JOBS``."""
    if _counts:
        counts = list(_counts.items())
        _counts.clear()
        for (queue, job_type, outcome), n in counts:
            JOBS.inc(n, tags={"queue": queue, "type": job_type, "outcome": outcome})


# Upper bounds (seconds) of the buckets of a queue's own histograms, 5 ms to an hour;
# one more bucket, +Inf, holds the rest.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
          300.0, 900.0, 3600.0)
_LE = list(BOUNDS)


class Timings:
    """The run-time and wait histograms of one job type's completed jobs, as stored:
    per bucket the jobs that fell in it (not cumulative; the last is +Inf), and the
    sums. ``value()`` is what the queue stores, ``Timings(stored)`` reads it back; a
    value of other bounds (an older release's) reads as empty: a counter reset."""

    __slots__ = ("duration", "duration_sum", "wait", "wait_sum")

    def __init__(self, stored: dict[str, Any] | None = None) -> None:
        size = len(BOUNDS) + 1
        if not (isinstance(stored, dict) and stored.get("le") == _LE
                and len(stored.get("duration") or ()) == len(stored.get("wait") or ()) == size):
            stored = {}
        self.duration: list[int] = stored.get("duration") or [0] * size
        self.duration_sum: float = stored.get("durationSum", 0.0)
        self.wait: list[int] = stored.get("wait") or [0] * size
        self.wait_sum: float = stored.get("waitSum", 0.0)

    def add(self, times: Iterable[tuple[float, float]]) -> None:
        """Count jobs by their ``(run seconds, wait seconds)``; a bucket holds the
        values at or under its bound (Prometheus' ``le``)."""
        for run, wait in times:
            self.duration[bisect.bisect_left(BOUNDS, run)] += 1
            self.duration_sum += run
            self.wait[bisect.bisect_left(BOUNDS, wait)] += 1
            self.wait_sum += wait

    def value(self) -> dict[str, Any]:
        return {"le": _LE, "duration": self.duration, "durationSum": self.duration_sum,
                "wait": self.wait, "waitSum": self.wait_sum}

    def histogram(self, family: str) -> dict[str, Any]:
        """``family`` (``duration`` or ``wait``) as Prometheus reads it: ``buckets``
        cumulative, one per bound of ``BOUNDS`` then +Inf (which equals ``count``),
        ``sum`` and ``count``."""
        run = family == "duration"
        cumulative = list(itertools.accumulate(self.duration if run else self.wait))
        return {"buckets": cumulative, "sum": self.duration_sum if run else self.wait_sum,
                "count": cumulative[-1]}
