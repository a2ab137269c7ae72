"""Queue metrics in Prometheus' text format, under the names queue exporters use: jobs
finished by outcome (a counter), jobs by state (every ``JobStatus``: parked jobs are
``sleeping`` or ``waiting``), duration and wait quantiles, the age of the oldest
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
    ("dotdo_job_duration_seconds", "gauge",
     "Run time of the latest completed jobs (up to 1,000), by quantile."),
    ("dotdo_job_wait_seconds", "gauge",
     "Time from ready to started of the latest started jobs (up to 1,000), by quantile."),
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
            for quantile, field in (("0.5", "p50"), ("0.95", "p95")):
                value = m[key][field]
                if value is not None:  # no jobs yet: no sample, rather than a made-up 0
                    samples[family].append(_sample(family, {**q, "quantile": quantile}, value))
        samples["dotdo_queue_oldest_pending_age_seconds"].append(_sample(
            "dotdo_queue_oldest_pending_age_seconds", q, m["oldestPendingAge"] or 0.0))
        samples["dotdo_workers"].append(_sample("dotdo_workers", q, m["workers"]))
        samples["dotdo_queue_paused"].append(_sample("dotdo_queue_paused", q, int(m["paused"])))
    lines: list[str] = []
    for name, kind, text in _FAMILIES:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *samples[name]]
    return "\n".join(lines) + "\n"
