"""Every error dotdo raises on purpose derives from :class:`DotdoError`.

The tree::

    DotdoError
    ├── ConfigError                 dotdo.init() got something it cannot use
    ├── InvalidIdError (ValueError) an object id that is empty or too long, or a class
    │                               name that is not an identifier
    ├── EncodeError (TypeError)     a value msgpack cannot carry; nothing was written
    ├── DecodeError                 stored bytes that do not decode
    ├── StorageError                the object's SQLite file cannot be used
    │   ├── CorruptStorageError     ... because it is not a readable SQLite database
    │   └── StorageFullError        ... because its disk is full: nothing was written
    ├── ObjectError                 a call reached an object but could not run
    │   └── MethodNotFoundError (AttributeError)
    ├── NotExposed                  the HTTP API may not reach that class, method or event
    ├── NotFoundError (KeyError)    no such thing: a job in a queue, a stored stub's class
    ├── LimitError (ValueError)     over a documented limit (payload size, batch, page)
    ├── TerminalError               raised by user code in a step: stop retrying now
    ├── LeaseLostError              a job's run whose lease went to another worker: it stops
    ├── AwakeableError              an awakeable was settled (resolved or rejected) before
    ├── RejectedError               the awakeable a job waits for was rejected (the reason)
    ├── ReplayError                 a resumed job's journal does not fit its code (a deploy
    │                               removed or reordered a step it had passed)
    ├── HandlerError (RuntimeError) a handler raised SystemExit, KeyboardInterrupt or
    │                               its own CancelledError: a failure, not the host's end
    └── JobError (RuntimeError)     a job failed or was cancelled (Queue.wait, Worker.process);
        │                           the message is its error; job_id, status
        ├── WorkerCrashError        ... because its worker's process died while running it
        │                           alone, max_retries + 1 times (its handler never raised)
        ├── HungAttemptError        ... because a sync attempt ran on past 3x its timeout
        ├── ParentFailedError       ... because a job it depends on failed or was cancelled
        └── JobCancelledError       ... because it was cancelled

Errors raised by user code inside an object reach the caller as themselves (a
``ValueError`` raised in a method is a ``ValueError`` at ``await``), not wrapped.
"""

from __future__ import annotations

__all__ = [
    "DotdoError",
    "ConfigError",
    "InvalidIdError",
    "EncodeError",
    "DecodeError",
    "StorageError",
    "CorruptStorageError",
    "StorageFullError",
    "ObjectError",
    "MethodNotFoundError",
    "NotExposed",
    "LimitError",
    "NotFoundError",
    "TerminalError",
    "LeaseLostError",
    "AwakeableError",
    "RejectedError",
    "ReplayError",
    "HandlerError",
    "JobError",
    "WorkerCrashError",
    "HungAttemptError",
    "ParentFailedError",
    "JobCancelledError",
]


class DotdoError(Exception):
    """Root of every error dotdo raises itself."""


class ConfigError(DotdoError):
    """``dotdo.init`` was given settings it cannot use, or was called too late."""


class InvalidIdError(DotdoError, ValueError):
    """An object id that is not a non-empty string of at most 512 characters, or a class
    name that is not a Python identifier."""


class EncodeError(DotdoError, TypeError):
    """A value that cannot be encoded as msgpack; the call wrote nothing."""


class DecodeError(DotdoError):
    """Stored bytes that do not decode as dotdo's msgpack."""


class StorageError(DotdoError):
    """An object's SQLite file cannot be opened or used."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self):  # keep ``path`` across Ray's pickling
        return (type(self), (self.args[0], self.path))


class CorruptStorageError(StorageError):
    """An object's SQLite file is not a readable database; it is left untouched."""


class StorageFullError(StorageError):
    """The disk holding an object's file is full: the write was refused, nothing of it
    was written, and writes work again once there is space."""


class ObjectError(DotdoError):
    """A call reached a durable object but could not be run there."""


class MethodNotFoundError(ObjectError, AttributeError):
    """The object has no public method of that name."""


class NotExposed(DotdoError):
    """A class, method or event the HTTP API was not allowed to reach: give the class
    ``expose=True`` (or a list of methods), or the server ``events=[noun]``."""


class LimitError(DotdoError, ValueError):
    """A value or a batch over one of dotdo's documented limits; nothing was written."""


class NotFoundError(DotdoError, KeyError):
    """No such thing where it was looked up (a job id in a queue, a stored stub's
    class in this process). A ``KeyError``, so ``except KeyError`` still catches it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TerminalError(DotdoError):
    """Raise it (or a subclass) inside a step to stop retrying at once."""


class LeaseLostError(DotdoError):
    """Raised in a job handler whose run no longer holds its job's lease (its worker
    froze or lost the queue for longer than the lease, and the job went to another
    worker): the run stops, and what it returns is discarded."""


class HandlerError(DotdoError, RuntimeError):
    """A handler raised something that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, its own ``CancelledError``): a failed attempt like any
    other, never the end of the process running it."""


class AwakeableError(DotdoError):
    """``dotdo.resolve`` or ``dotdo.reject`` of an awakeable settled before: an
    awakeable takes one resolve or reject, the first. (One that is not there, its job
    purged, is a ``NotFoundError``.)"""


class RejectedError(DotdoError):
    """Raised in a job handler by ``await dotdo.wait(token)`` when the awakeable was
    rejected (``dotdo.reject(token, reason)``); the message is the reason."""


class ReplayError(DotdoError):
    """A job that resumed (after a sleep, a wait, or its worker's death) under code that
    no longer reaches a step its journal holds: the message names the step. Guard a
    change to a handler with runs in flight by ``dotdo.patched("name")``, or let those
    runs finish before the deploy."""


class JobError(DotdoError, RuntimeError):
    """A job ended failed or cancelled (``Queue.wait``), or a job run directly
    (``Worker.process``) failed; the message is its error. ``job_id`` and ``status``
    (``failed`` or ``cancelled``) say which job and how it ended, where known."""

    def __init__(self, message: str, job_id: str | None = None,
                 status: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status

    def __reduce__(self):  # keep ``job_id`` and ``status`` across Ray's pickling
        return (type(self), (self.args[0], self.job_id, self.status))

    @staticmethod
    def of(message: str, job_id: str | None = None, status: str | None = None) -> JobError:
        """The error of a job that ended with the error text ``message``: of the class
        the text names first (``"WorkerCrashError: ..."``), else a plain JobError."""
        cls = _JOB_ERRORS.get(message.partition(":")[0], JobError)
        return cls(message, job_id=job_id, status=status)


class WorkerCrashError(JobError):
    """A job whose worker's process died while it ran alone there (``os._exit``, a
    signal such as SIGKILL or SIGSEGV, the OOM killer), ``max_retries`` + 1 times: it
    failed without its handler raising, and is not tried again. Its ``error`` text
    starts with this class's name. Find what kills the process (the worker's log, the
    kernel's for the OOM killer), then ``Queue.retry`` the job."""


class HungAttemptError(JobError):
    """A job whose sync handler ran on past 3x its timeout: the attempt was given up and
    its worker's process replaced (a thread cannot be stopped), its retries spent. Its
    error text starts with ``HungAttempt``. Make the handler return within its
    ``timeout`` (or raise the timeout), then ``Queue.retry`` the job."""


class ParentFailedError(JobError):
    """A job that depends on another (``depends_on``) which failed or was cancelled,
    with ``on_parent_failure="fail"``: it never ran. Its error text starts with
    ``ParentFailed`` and names the parent. Retry the parent, then this job."""


class JobCancelledError(JobError):
    """A job that was cancelled (``Queue.cancel``, a cancelled parent, ``dotdo jobs
    cancel``) before it completed. Its error text starts with ``Cancelled``."""


# The errors a job's error text may name first ("WorkerCrashError: ..."): how a job
# that failed in the queue, where only its text is kept, becomes its class again. The
# text is what a worker and the queue write; the class is what a waiter catches.
_JOB_ERRORS: dict[str, type[JobError]] = {
    "WorkerCrashError": WorkerCrashError,
    "HungAttempt": HungAttemptError,
    "ParentFailed": ParentFailedError,
    "Cancelled": JobCancelledError,
}
