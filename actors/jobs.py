"""Jobs and results as Things (records with ``$type`` and ``$id``), and statuses."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

from actors.queue_sql import PARKED_FOREVER
from dotdo import tracing
from dotdo.jobmodel import FINISHED, Job, JobStatus

__all__ = ["Job", "JobStatus", "Metrics", "DEFAULT_TIMEOUT", "FINISHED", "job_thing", "result_thing",
           "step_id"]

DEFAULT_TIMEOUT = 600.0  # seconds per attempt, when a job gives none


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
    stuck: int
    paused: bool
    concurrency: int | None
    retrying: int = 0
    waiting: int = 0
    sleeping: int = 0


def job_thing(row: dict[str, Any], now: float) -> Job:
    """A Job Thing, from a row of the queue's ``jobs`` table."""
    status = row["status"]
    if status == JobStatus.PENDING:
        if row["error"] is not None:
            status = JobStatus.RETRYING.value
        elif row["run_at"] > now:
            status = JobStatus.DELAYED.value
    elif status == JobStatus.RUNNING and row.get("stuck_since") is not None:
        status = JobStatus.STUCK.value
    thing: dict[str, Any] = {
        "$type": "Job",
        "$id": row["id"],
        "type": row["type"],
        "payload": row["payload"],
        "status": status,
        "attempts": row["attempts"],
        "error": row["error"],
        "claims": row.get("lease", 0),
        "crashes": row.get("crashes", 0),
        "priority": row["priority"],
        "runAt": row["run_at"],
        "maxRetries": row["max_retries"],
        "timeout": row["timeout"],
        "createdAt": row["created"],
        "startedAt": row.get("started"),
        "finishedAt": row["finished"],
        "worker": row.get("worker"),
        "progress": row.get("progress"),
        "progressMessage": row.get("progress_msg"),
    }
    # Options a job was given, only when given: most jobs carry none.
    for key, column in _OPTIONAL:
        value = row.get(column)
        if value:
            thing[key] = value
    park = row.get("park")
    if park:
        thing["waitingFor"] = park
        if row["run_at"] < PARKED_FOREVER:
            thing["wakeAt"] = row["run_at"]
        else:  # a wait without a timeout: it runs when its wait ends, at no set time
            thing["runAt"] = None
    traceparent = row.get("traceparent")
    if traceparent:
        thing["traceId"] = tracing.trace_id_of(traceparent)
    parent = row.get("parent")
    if parent:
        queue, job_id, _, _ = json.loads(parent)
        thing["parent"] = {"queue": queue, "id": job_id}
    return cast(Job, thing)  # the keys above are Job's


_OPTIONAL = (("trace", "trace"), ("group", "grp"), ("rateKey", "rate_key"),
             ("dedupeKey", "dedupe_key"), ("waitingOn", "waiting_on"),
             ("cancelRequestedAt", "cancel_requested"))


def result_thing(job_id: str, output: Any, completed_at: float) -> dict[str, Any]:
    """A Result Thing."""
    return {"$type": "Result", "$id": f"result-{job_id}", "jobId": job_id,
            "output": output, "completedAt": completed_at}


def step_id(queue: str, job_id: str, uid: str | None) -> str:
    """The step a job runs under in a worker's journal: ``job-{id}``,
    scoped by queue and by enqueue (``uid``), so that the same id in two queues, or
    enqueued again after a purge, is a new step. Jobs from files older than ``uid``
    keep the plain ``job-{id}`` they were journaled under."""
    return f"job-{job_id}" if uid is None else f"job-{job_id}@{queue}/{uid}"
