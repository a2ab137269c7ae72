"""Job handlers by type: ``@dotdo.job("email")``, or a dict of them.

Handlers are registered at module level; like module-level event handlers they
belong to the App, whose list of modules every ``Worker`` imports when it starts,
so a worker's process knows the handlers its driver defined.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, overload

from dotdo import registry
from dotdo.checks import is_finite
from dotdo.errors import LimitError

__all__ = ["job", "handler_for", "handler_types", "progress", "cancelled", "current_job",
           "parent_results", "JobRun", "StepJournal", "running", "MAX_PROGRESS_MESSAGE"]

MAX_PROGRESS_MESSAGE = 4096  # bytes (UTF-8) of a progress message

_handlers: dict[str, Callable[[Any], Any]] = {}


def _check_type(job_type: object) -> str:
    if not isinstance(job_type, str) or not job_type:
        raise ValueError(f"a job type is a non-empty str like 'email', not {job_type!r}")
    return job_type


# A handler takes the job's payload (a checker rejects one that cannot).
Handler = TypeVar("Handler", bound=Callable[[Any], Any])
Handlers = TypeVar("Handlers", bound=dict[str, Callable[..., Any]])


@overload
def job(job_type: str) -> Callable[[Handler], Handler]: ...
@overload
def job(job_type: Handlers) -> Handlers: ...


def job(job_type: str | dict[str, Callable[[Any], Any]]) -> Any:
    """``@job("email")`` on ``async def send_email(payload)``; or ``job({"email": f, ...})``.
    The decorator returns the function as it was, type and all; the dict form the dict."""
    if isinstance(job_type, dict):
        for name, fn in job_type.items():
            job(name)(fn)
        return job_type
    _check_type(job_type)

    def register(fn: Handler) -> Handler:
        if not callable(fn):
            raise TypeError(f"job({job_type!r}) registers a function, not {type(fn).__name__}")
        _handlers[job_type] = fn
        registry.remember_module(fn)
        return fn

    return register


def handler_for(job_type: str) -> Callable[[Any], Any] | None:
    """The handler registered for ``job_type`` in this process, or None."""
    return _handlers.get(job_type)


def handler_types() -> list[str]:
    return sorted(_handlers)


class StepJournal(Protocol):
    """Where ``do(..., step_id=)`` journals its steps (``dotdo.context``). An object's
    own journal, the App's for driver code; in a job handler, its queue's."""

    async def lookup(self, step_id: str) -> tuple[bool, Any]:
        """``(True, result)`` if the step finished before, else ``(False, None)``:
        the caller runs it now (and holds it, where holding means anything)."""
        ...

    async def attempt(self, step_id: str, n: int, started: float, finished: float,
                      error: str) -> None:
        """Attempt ``n`` failed with ``error``."""
        ...

    async def finish(self, step_id: str, encoded: bytes, n: int, started: float,
                     finished: float) -> tuple[bool, Any]:
        """Journal the result; ``(True, other)`` if another result was journaled first
        (it wins: the caller returns it), else ``(False, None)``."""
        ...

    def abandon(self, step_id: str) -> None:
        """The caller gives the step up unfinished (it raised for good, or it was
        cancelled): another may run it now. Sent, not awaited."""
        ...


class JobRun(Protocol):
    """What a worker tells a running handler about its job (see ``current_job``)."""

    job_id: str
    queue: str
    attempt: int
    parents: dict[str, Any]

    @property
    def fence(self) -> int:
        """The claim's fencing number: larger for every later claim of the job."""
        ...

    def report_progress(self, value: float, message: str | None) -> None: ...

    def cancel_requested(self) -> bool: ...

    def steps(self) -> StepJournal | None:
        """The journal of named steps in this handler (None: the worker's own)."""
        ...


# Set by the worker around each attempt; copied into the thread a sync handler runs in.
running: contextvars.ContextVar[JobRun | None] = contextvars.ContextVar("dotdo_job", default=None)


def _run(what: str) -> JobRun:
    run = running.get()
    if run is None:
        raise RuntimeError(f"dotdo.{what}() works inside a job handler run by a Worker "
                           "(one registered with @dotdo.job), not here")
    return run


def progress(value: float, message: str | None = None) -> None:
    """Report how far the running job is, a fraction from 0 to 1, with an optional
    message: ``dotdo.progress(0.4, "parsed 4,000 rows")``. The queue's ``get`` and
    ``list`` show it, and it sends a ``Job.progress`` event; frequent reports are
    coalesced (the latest wins)."""
    if not is_finite(value) or not 0 <= value <= 1:
        raise ValueError(f"progress is a fraction from 0 to 1 (0.4 for 40%), not {value!r}")
    if message is not None and not isinstance(message, str):
        raise ValueError(f"progress's message is a str, not {type(message).__name__}")
    if message is not None and len(message.encode("utf-8", "replace")) > MAX_PROGRESS_MESSAGE:
        raise LimitError(f"a progress message holds at most {MAX_PROGRESS_MESSAGE:,} bytes: "
                         "say how far the job is in a line, and put details in its output")
    _run("progress").report_progress(float(value), message)


def cancelled() -> bool:
    """Whether the running job was asked to stop (``Queue.cancel`` of a running job,
    or its worker stopping): a sync handler checks it and returns or raises early;
    an async one is cancelled for it."""
    return _run("cancelled").cancel_requested()


def current_job() -> dict[str, Any]:
    """``{"id", "queue", "attempt", "fence"}`` of the job this handler runs: to enqueue
    children that wait for it (``depends_on=[dotdo.current_job()["id"]]``), or to
    fence writes to an outside system. ``fence`` is an integer that grows with every
    claim of a job (a later claim always has a larger one): a store that keeps the
    largest fence it has seen per job and refuses writes carrying a smaller one never
    takes a write from a run whose lease went to another worker."""
    run = _run("current_job")
    return {"id": run.job_id, "queue": run.queue, "attempt": run.attempt, "fence": run.fence}


def parent_results() -> dict[str, Any]:
    """``{parent job id: its output}`` for a job enqueued with ``depends_on``."""
    return dict(_run("parent_results").parents)
