"""What a job of the queue is, declared once for every side of it: the options it is
enqueued with (``JobOptions``), the states it goes through (``JobStatus``) and the
record the queue answers with (``Job``). The queue checks against them, and the
command line and the HTTP API derive their flags and request bodies from them."""

from __future__ import annotations

import ast
import enum
import functools
import inspect
from typing import Annotated, Any, Literal, NotRequired, TypedDict

__all__ = ["JobOptions", "JobEntry", "JobFlow", "JobStatus", "Job", "JobPage", "ParentFailure",
           "Seconds", "Epoch", "FINISHED", "UNFINISHED", "option_help"]

ParentFailure = Literal["fail", "cancel"]
# What a number of seconds means, for whoever reads or shows it (the command line takes
# "10m" for a duration, an ISO time for a moment): ``get_type_hints(...,
# include_extras=True)`` keeps the mark, a type checker sees a float.
Seconds = Annotated[float, "duration"]
Epoch = Annotated[float, "moment"]


class JobOptions(TypedDict, total=False):
    """What ``Queue.enqueue(type, payload, **options)`` accepts besides the type and
    the payload; each may be left out. Every list of the options derives from this one:
    the queue's checks, ``dotdo jobs enqueue``'s flags, the HTTP API's request body."""

    job_id: str | None
    """The job's id, unique in its queue (a random one if None); enqueueing an id the
    queue holds adds nothing (``enqueued: existing``)."""
    priority: int
    """Higher runs first (a 64-bit int); 0 by default."""
    delay: Seconds | None
    """Seconds from now before the job may run (at most 366 days)."""
    run_at: Epoch | None
    """When the job may run, as epoch seconds (at most 366 days ahead); not with delay."""
    max_retries: int
    """Attempts after the first one that failed (3 by default; 0: no retry)."""
    timeout: Seconds | None
    """Seconds one attempt may take (600 if None; at most 7 days)."""
    backoff: Seconds | list[Seconds] | None
    """Seconds before the first retry, doubling per retry (30: 30, 60, 120 ...), or a
    list of waits whose last repeats ([10, 60, 600]); None: the worker's."""
    group: str | None
    """The job's group: claims take groups in turn, each under group_concurrency."""
    rate_key: str | None
    """The key whose starts the queue's key_rate limits (like 'customer-42')."""
    dedupe_key: str | None
    """The key debounce and unique_for merge jobs by (like 'reindex-doc-7')."""
    debounce: Seconds | None
    """Run this many seconds after the last enqueue of its dedupe_key (needed): one
    enqueued before the job started replaces its payload and options (``debounced``)."""
    unique_for: Seconds | None
    """Seconds after its enqueue during which a job of the same dedupe_key (without
    one: the same type and payload) adds nothing (``duplicate``)."""
    depends_on: list[str] | None
    """Ids of up to 100 jobs that must complete before this one runs (``waiting``)."""
    on_parent_failure: ParentFailure
    """What the job does when a parent fails or is cancelled: 'fail' (the default) or
    'cancel'."""


class JobEntry(JobOptions, total=False):
    """One job of ``Queue.enqueue_many``'s list (and a node of ``enqueue_flow``): its
    type and payload beside its options."""

    type: str
    """The job's type, as registered with ``@dotdo.job``: 'email'."""
    payload: Any
    """The handler's argument: anything ``dotdo.codec`` encodes, at most 1 MiB so."""


class JobFlow(JobEntry, total=False):
    """What ``Queue.enqueue_flow`` takes: a job with the jobs that wait for it."""

    children: list[JobFlow]
    """Flows whose root depends on this job (and runs once it completed)."""


class JobStatus(str, enum.Enum):
    """Where a job is. ``delayed`` is a pending job whose ``run_at`` is still ahead;
    ``retrying`` one whose last attempt failed, back in the queue until its next run
    (``runAt``); ``waiting`` one whose parents (``depends_on``) have not all completed;
    ``stuck`` a running job whose attempt ran past its timeout and has not stopped
    (sync code cannot be interrupted: it holds its worker slot until it returns).
    ``sleeping`` is a job whose handler parked in ``dotdo.sleep`` until ``wakeAt``;
    ``waiting`` also a job parked in a wait (``waitingFor``: an event, an awakeable, a
    child job). A parked job holds no worker."""

    PENDING = "pending"
    DELAYED = "delayed"
    RETRYING = "retrying"
    WAITING = "waiting"
    SLEEPING = "sleeping"
    RUNNING = "running"
    STUCK = "stuck"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The states a job does not leave (but by retry()), and the others, as plain text.
FINISHED: tuple[str, ...] = (JobStatus.COMPLETED.value, JobStatus.FAILED.value,
                             JobStatus.CANCELLED.value)
UNFINISHED: tuple[str, ...] = tuple(s.value for s in JobStatus if s.value not in FINISHED)

# A Job Thing's keys are not all identifiers ("$type", "$id"): the functional form.
Job = TypedDict("Job", {
    "$type": Literal["Job"],
    "$id": str,
    "type": str,
    "payload": Any,
    "status": JobStatus,
    "attempts": int,
    "error": str | None,
    "claims": int,
    "crashes": int,
    "priority": int,
    "runAt": float | None,  # None: parked in a wait without a timeout
    "maxRetries": int,
    "timeout": float,
    "createdAt": float,
    "startedAt": float | None,
    "finishedAt": float | None,
    "worker": str | None,
    "progress": float | None,
    "progressMessage": str | None,
    # Present only when the job has them: most jobs carry none.
    "trace": NotRequired[str],
    "group": NotRequired[str],
    "rateKey": NotRequired[str],
    "dedupeKey": NotRequired[str],
    "waitingOn": NotRequired[int],
    "cancelRequestedAt": NotRequired[float],
    # The OpenTelemetry trace of a job enqueued with tracing on: its enqueue and attempts.
    "traceId": NotRequired[str],
    # A parked job (sleeping, or waiting at a durable wait): the point of its run it
    # waits at (``sleep#1``, ``event#1``, ``wait#1``, ``child#1``) and when it wakes
    # (a sleep's end, a wait's timeout; absent for a wait without one).
    "waitingFor": NotRequired[str],
    "wakeAt": NotRequired[float],
    # A child job of a parked run (``dotdo.run_job``): its parent's queue and id.
    "parent": NotRequired[dict[str, str]],
    # Only in enqueue's answer: added, existing, debounced or duplicate.
    "enqueued": NotRequired[str],
})
Job.__doc__ = """A job as ``Queue.get``, ``list`` and ``enqueue`` answer it (a Job Thing):
``status`` is a ``JobStatus`` value, times are epoch seconds."""


class JobPage(TypedDict):
    """A page of ``Queue.list``: pass ``cursor`` back for the next (None: the last)."""

    jobs: list[Job]
    cursor: int | None


@functools.cache
def option_help() -> dict[str, str]:
    """``{option: its docstring, on one line}`` of ``JobEntry``'s keys: for help texts
    (the docstrings below a TypedDict's keys are in its source only)."""
    found: dict[str, str] = {}
    for cls in (JobOptions, JobEntry):
        body = ast.parse(inspect.getsource(cls)).body[0]
        assert isinstance(body, ast.ClassDef)
        for key, doc in zip(body.body, body.body[1:]):
            if (isinstance(key, ast.AnnAssign) and isinstance(key.target, ast.Name)
                    and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)):
                found[key.target.id] = " ".join(str(doc.value.value).split())
    return found

