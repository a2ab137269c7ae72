"""The queue's Prometheus metrics, through Ray's metrics API.

A scrape of Ray's metrics endpoint (each node's ``metrics_export_port``) shows them
with Ray's ``ray_`` prefix: ``ray_dotdo_jobs_total{queue,type,outcome}``,
``ray_dotdo_queue_depth{queue}`` and ``ray_dotdo_job_duration_seconds{queue,type}``.
"""

from __future__ import annotations

from ray.util import metrics

__all__ = ["JOBS", "DEPTH", "DURATION"]

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
