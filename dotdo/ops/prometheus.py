"""Queue metrics in Prometheus' text format, under the names queue exporters use: jobs
finished by outcome (a counter), jobs by state (every ``JobStatus``: parked jobs are
``sleeping`` or ``waiting``), histograms of the run time and the wait of completed jobs
by type (kept by each queue in its file: ``Queue.histograms``), the age of the oldest
waiting job, workers, and whether the queue is paused."""

from __future__ import annotations

from typing import Any

__all__ = ["render", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name, type, help
_FAMILIES = (
    ("dotdo_jobs_total", "counter",
     "Jobs that ended, by outcome (completed, failed, cancelled); purged jobs still count."),
    ("dotdo_queue_jobs", "gauge",
     "Jobs in each state now; parked jobs (durable waits, holding no worker) are sleeping "
     "(dotdo.sleep) or waiting (an event, an awakeable, a child job)."),
    ("dotdo_job_duration_seconds", "histogram",
     "Run time (started to completed) of the jobs that completed, by type; counted since "
     "the queue's file began counting them, kept across restarts."),
    ("dotdo_job_wait_seconds", "histogram",
     "Time from ready to started of the run that completed, of the jobs that completed, "
     "by type; counted since the queue's file began counting them, kept across restarts."),
    ("dotdo_queue_oldest_pending_age_seconds", "gauge",
     "Seconds the oldest ready job has waited (0 when none waits)."),
    ("dotdo_workers", "gauge", "Workers registered on the queue."),
    ("dotdo_queue_paused", "gauge", "1 when the queue hands out no jobs."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    inside = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
    return f"{name}{{{inside}}} {float(value)!r}"


def _le(bound: float) -> str:
    return repr(float(bound))


def _histogram(name: str, q: dict[str, str], histogram: dict[str, Any]) -> list[str]:
    """A histogram family's samples of one queue, one series per job type: cumulative
    ``_bucket`` per bound and ``+Inf``, ``_sum``, ``_count``."""
    bounds = [*map(_le, histogram["le"]), "+Inf"]
    lines: list[str] = []
    for job_type, h in sorted(histogram["types"].items()):
        labels = {**q, "type": job_type}
        lines += [_sample(f"{name}_bucket", {**labels, "le": le}, n)
                  for le, n in zip(bounds, h["buckets"], strict=True)]
        lines += [_sample(f"{name}_sum", labels, h["sum"]),
                  _sample(f"{name}_count", labels, h["count"])]
    return lines


def render(queues: list[dict[str, Any]]) -> str:
    """The exposition text of ``Service.metrics()``."""
    samples: dict[str, list[str]] = {name: [] for name, _, _ in _FAMILIES}
    for m in queues:
        q = {"queue": m["queue"]}
        for outcome, n in m["totals"].items():
            samples["dotdo_jobs_total"].append(
                _sample("dotdo_jobs_total", {**q, "outcome": outcome}, n))
        for state, n in m["counts"].items():
            samples["dotdo_queue_jobs"].append(_sample("dotdo_queue_jobs", {**q, "state": state}, n))
        for family, key in (("dotdo_job_duration_seconds", "duration"),
                            ("dotdo_job_wait_seconds", "wait")):
            # Types with no completed job yet have no series, rather than made-up zeros;
            # nor has a queue whose process runs a release without histograms.
            if m[key].get("histogram"):
                samples[family] += _histogram(family, q, m[key]["histogram"])
        samples["dotdo_queue_oldest_pending_age_seconds"].append(_sample(
            "dotdo_queue_oldest_pending_age_seconds", q, m["oldestPendingAge"] or 0.0))
        samples["dotdo_workers"].append(_sample("dotdo_workers", q, m["workers"]))
        samples["dotdo_queue_paused"].append(_sample("dotdo_queue_paused", q, int(m["paused"])))
    lines: list[str] = []
    for name, kind, text in _FAMILIES:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *samples[name]]
    return "\n".join(lines) + "\n"
