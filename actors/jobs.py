"""Jobs and results as Things (the seed's ``$type``/``$id`` records), and statuses."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

__all__ = ["JobStatus", "Metrics", "job_thing", "result_thing"]


class JobStatus(str, enum.Enum):
    """Where a job is. ``delayed`` is a pending job whose ``run_at`` is still ahead."""

    PENDING = "pending"
    DELAYED = "delayed"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclasses.dataclass(frozen=True)
class Metrics:
    """A queue's counts: ``await dotdo.Queue(q).get_metrics().pending``."""

    pending: int
    running: int
    completed: int
    failed: int
    delayed: int
    retries: int
    cancelled: int
    paused: bool
    concurrency: int | None


def job_thing(row: dict[str, Any], now: float) -> dict[str, Any]:
    """The seed's Job Thing, from a row of the queue's ``jobs`` table."""
    status = row["status"]
    if status == JobStatus.PENDING and row["run_at"] > now:
        status = JobStatus.DELAYED.value
    return {
        "$type": "Job",
        "$id": row["id"],
        "type": row["type"],
        "payload": row["payload"],
        "status": status,
        "attempts": row["attempts"],
        "error": row["error"],
        "priority": row["priority"],
        "runAt": row["run_at"],
        "maxRetries": row["max_retries"],
        "timeout": row["timeout"],
        "createdAt": row["created"],
        "finishedAt": row["finished"],
    }


def result_thing(job_id: str, output: Any, completed_at: float) -> dict[str, Any]:
    """The seed's Result Thing."""
    return {"$type": "Result", "$id": f"result-{job_id}", "jobId": job_id,
            "output": output, "completedAt": completed_at}
