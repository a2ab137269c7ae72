"""dotdo: Durable Objects on Ray.

``class Counter(dotdo.DurableObject)`` defines a kind of object; ``dotdo.Counter("x")``
is a stub for the object with id ``"x"``: a Ray actor with its own SQLite file,
created on first use. Calls on stubs return promises that pipeline.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any, TypeVar, overload

from dotdo import app as _app  # noqa: F401  (defines App: dotdo.App(id) is a stub)
from dotdo import codec as _codec
from dotdo import waits as _waits
from dotdo.app import deploy
from dotdo.clock import Clock, FakeClock
from dotdo.connect import init, shutdown
from dotdo.connect import settings as current_settings
from dotdo.context import do, send, try_
from dotdo.current import current_object
from dotdo.errors import (
    AwakeableError,
    ConfigError,
    CorruptStorageError,
    DecodeError,
    DotdoError,
    EncodeError,
    HandlerError,
    HungAttemptError,
    InvalidIdError,
    JobCancelledError,
    JobError,
    LeaseLostError,
    LimitError,
    MethodNotFoundError,
    NotExposed,
    NotFoundError,
    ObjectError,
    ParentFailedError,
    RejectedError,
    ReplayError,
    StorageError,
    StorageFullError,
    TerminalError,
    WorkerCrashError,
)
from dotdo.events import ErrorInfo, Event, on, on_error
from dotdo.hosting import Dedicated, Pooled
from dotdo.jobmodel import Job, JobEntry, JobOptions, JobStatus
from dotdo.jobs import cancelled, current_job, job, parent_results, progress
from dotdo.object import DurableObject, known_names, lookup
from dotdo.promise import Promise, get
from dotdo.registry import DEFAULT_APP
from dotdo.retry import RetryPolicy
from dotdo.schedule import Schedule, every
from dotdo.settings import Settings
from dotdo.storage.kv import Storage
from dotdo.stub import Stub
from dotdo.waits import awakeable, patched, run_job, sleep, sleep_until, wait, wait_for_event

__all__ = [
    # objects
    "DurableObject",
    "Storage",
    "stub",
    # calls and promises
    "Stub",
    "Promise",
    "get",
    # the $ API: three durability levels, events, schedules
    "send",
    "try_",
    "do",
    "RetryPolicy",
    "TerminalError",
    "on",
    "on_error",
    "Event",
    "ErrorInfo",
    "every",
    "Schedule",
    # the job queue (Queue and Worker live in the actors package)
    "job",
    "progress",
    "cancelled",
    "current_job",
    "parent_results",
    "sleep",
    "sleep_until",
    "wait_for_event",
    "awakeable",
    "wait",
    "resolve",
    "reject",
    "run_job",
    "patched",
    "JobOptions",
    "JobEntry",
    "JobStatus",
    "Job",
    # hosting: one actor per object, or a pool of actors
    "Dedicated",
    "Pooled",
    # running
    "init",
    "shutdown",
    "deploy",
    "DEFAULT_APP",
    "Settings",
    "current_settings",
    "current_object",
    "Clock",
    "FakeClock",
    # errors
    "DotdoError",
    "ConfigError",
    "InvalidIdError",
    "EncodeError",
    "DecodeError",
    "StorageError",
    "CorruptStorageError",
    "StorageFullError",
    "LeaseLostError",
    "ObjectError",
    "MethodNotFoundError",
    "LimitError",
    "NotFoundError",
    "HandlerError",
    "JobError",
    "WorkerCrashError",
    "HungAttemptError",
    "ParentFailedError",
    "JobCancelledError",
    "AwakeableError",
    "RejectedError",
    "ReplayError",
    "NotExposed",
]


_D = TypeVar("_D", bound=DurableObject)


@overload
def stub(cls: type[_D], object_id: str) -> Stub[_D]: ...
@overload
def stub(cls: str, object_id: str) -> Stub[Any]: ...


def stub(cls: type[DurableObject] | str, object_id: str) -> Stub[Any]:
    """A stub for object ``object_id`` of ``cls`` (a class or a registered class name);
    given the class, it is typed: ``dotdo.stub(Account, "alice")`` is a ``Stub[Account]``."""
    return Stub(_resolve(cls) if isinstance(cls, str) else cls, object_id)


def resolve(token: str, value: Any = None) -> Promise[None]:
    """Resolve the awakeable ``token`` with ``value`` (kept durably): the job waiting
    for it goes on with it. A second resolve or reject raises ``AwakeableError``."""
    queue, job_id, uid, key = _waits.parse_token(token)
    return stub("Queue", queue).settle_awakeable(job_id, uid, key, _codec.encode(value), None)


def reject(token: str, reason: str) -> Promise[None]:
    """Reject the awakeable ``token``: ``await dotdo.wait(token)`` raises
    ``RejectedError(reason)`` in its job."""
    if not isinstance(reason, str) or not reason:
        raise ValueError(f"a rejection has a reason, a non-empty str, not {reason!r}")
    queue, job_id, uid, key = _waits.parse_token(token)
    return stub("Queue", queue).settle_awakeable(job_id, uid, key, None, reason)


class _Factory:
    """``dotdo.<ClassName>``: call it with an id to get a stub. A type checker cannot
    know the class from the name, so its stubs are ``Stub[Any]`` and their calls
    ``Promise[Any]``: ``Account.stub(id)`` is the typed way."""

    __slots__ = ("_cls",)

    def __init__(self, cls: type[DurableObject]) -> None:
        self._cls = cls

    def __call__(self, object_id: str) -> Stub[Any]:
        return Stub(self._cls, object_id)

    def __repr__(self) -> str:
        return f"<dotdo stubs of {self._cls.__module__}.{self._cls.__qualname__}>"


def _unknown(name: str) -> str:
    known = ", ".join(known_names()) or "none yet"
    return (
        f"module 'dotdo' has no attribute {name!r}, and no DurableObject subclass is "
        f"named {name!r} (known: {known}). Define `class {name}(dotdo.DurableObject)` "
        "or import the module that defines it before calling dotdo."
        f"{name}(id)."
    )


_SHIPPED = "dotdo.objects"  # entry-point group of installed object classes (Queue, Worker)


def _resolve(name: str) -> type[DurableObject]:
    cls = lookup(name)
    if cls is None:
        # A class an installed package ships (ours are in the actors package, which
        # is built on dotdo, so dotdo names it only in pyproject's entry points).
        for entry in importlib.metadata.entry_points(group=_SHIPPED, name=name):
            entry.load()
        cls = lookup(name)
    if cls is None:
        raise AttributeError(_unknown(name))
    return cls


def __getattr__(name: str) -> _Factory:
    if name.startswith("_"):
        raise AttributeError(name)
    return _Factory(_resolve(name))
