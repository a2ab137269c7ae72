"""The queue's Prometheus metrics, through Ray's metrics API.

A scrape of Ray's metrics endpoint (each node's ``metrics_export_port``) shows them
with Ray's ``ray_`` prefix: ``ray_dotdo_jobs_total{queue,type,outcome}``,
``ray_dotdo_queue_depth{queue}`` and ``ray_dotdo_job_duration_seconds{queue,type}``.
"""

from __future__ import annotations

import collections

from ray.util import metrics

__all__ = ["JOBS", "DEPTH", "DURATION", "job_ended", "flush"]

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
