"""Log records that say which object and which job: extras on every record, JSON
output, and each job attempt's own records.

:func:`configure` (once per process: a driver's ``dotdo.init``, a host's start)
wraps the log record factory, so that every record made in the process, by dotdo's
``dotdo`` logger and by the program's own loggers, carries six attributes (None when
unknown): ``dotdo_object`` (``"Queue/emails"``: the object the code acts for),
``dotdo_job_id``, ``dotdo_queue``, ``dotdo_attempt`` (inside :func:`job_scope`),
``dotdo_trace_id`` and ``dotdo_span_id`` (of the current span, when tracing is on).
A format string may name them (``%(dotdo_job_id)s``). Prefixed, so that a program's
own ``extra={"job_id": ...}`` still works (logging refuses an ``extra`` that names an
attribute the record has).

``DOTDO_LOG_FORMAT=json`` writes records to stderr as one JSON object a line
(:class:`JsonFormatter`); ``text``, the default, leaves the output as it was.

:func:`job_scope` also keeps the records made inside it, for the job's page. It keeps
the records logging makes, and changes no level: a logger's level decides, as
anywhere. With Python's defaults (the root logger at WARNING, other loggers without
a level of their own), ``logger.info`` makes no record at all; a program that wants a
job's INFO lines kept sets its logger's level (``logging.getLogger("app").setLevel
(logging.INFO)``) or the root's. The exception: a host process (a worker's), where
the root has no handler, so at INFO it prints nothing more (see :func:`configure`).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from dotdo.current import current_object
from dotdo.errors import ConfigError
from dotdo.tracing import current_ids

__all__ = ["configure", "job_scope", "JsonFormatter", "FORMAT_VARIABLE", "KEEP", "MESSAGE_LIMIT"]

FORMAT_VARIABLE = "DOTDO_LOG_FORMAT"
_FORMATS = ("text", "json")
KEEP = 200  # records a job scope keeps; the rest are counted
MESSAGE_LIMIT = 2_000  # characters of a kept record's message

# The attributes every record gets, None until known (one dict, for one update).
_NOTHING: dict[str, Any] = {"dotdo_object": None, "dotdo_job_id": None, "dotdo_queue": None,
                            "dotdo_attempt": None, "dotdo_trace_id": None, "dotdo_span_id": None}
# The fields of a JSON line: an ``extra=`` of one of these names is left out.
_FIELDS = frozenset({"ts", "level", "logger", "message", "object", "job_id", "queue",
                     "attempt", "trace_id", "span_id", "process", "host", "exc", "stack"})
# What a record has of its own: anything else in its __dict__ came as ``extra=``.
_OWN = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName", *_NOTHING}


class _Collector:
    """The records one job scope keeps (shared by the threads that run its code)."""

    __slots__ = ("queue", "job_id", "attempt", "records", "dropped", "last_ids", "open", "_lock")

    def __init__(self, queue: str, job_id: str, attempt: int) -> None:
        self.queue, self.job_id, self.attempt = queue, job_id, attempt
        self.records: list[dict[str, Any]] = []
        self.dropped = 0
        self.last_ids: tuple[str, str] | None = None
        self.open = True
        self._lock = threading.Lock()

    def keep(self, record: logging.LogRecord, ids: tuple[str, str] | None) -> None:
        if not self.open:  # a task the job left running, after the job ended
            return
        if len(self.records) >= KEEP:
            with self._lock:
                self.dropped += 1
                self.last_ids = ids
            return
        # Formatted outside the lock: a value's __str__ may log in turn.
        entry = {"t": record.created, "level": record.levelname, "logger": record.name,
                 "message": _capped(_message(record)),
                 "traceId": ids[0] if ids else None, "spanId": ids[1] if ids else None}
        with self._lock:
            if len(self.records) < KEEP:
                self.records.append(entry)
            else:
                self.dropped += 1
                self.last_ids = ids

    def close(self) -> None:
        with self._lock:
            self.open = False
            if self.dropped:
                ids = self.last_ids
                self.records.append({
                    "t": time.time(), "level": "WARNING", "logger": "dotdo",
                    "message": f"{self.dropped} more record{'s were' if self.dropped > 1 else ' was'}"
                               f" dropped: a job attempt keeps its first {KEEP}",
                    "traceId": ids[0] if ids else None, "spanId": ids[1] if ids else None})


_job: contextvars.ContextVar[_Collector | None] = contextvars.ContextVar(
    "dotdo_log_job", default=None)
_lock = threading.Lock()
_stamped = False  # the record factory is installed
_json = False  # the root's stream handlers and the last resort write JSON
_host: str | None = None


def _message(record: logging.LogRecord) -> str:
    """The record's message, and its exception's last line."""
    try:
        text = record.getMessage()
    except Exception as exc:  # noqa: BLE001 - bad arguments: the handlers report them
        text = f"{record.msg!r} (arguments {record.args!r} do not fit: {exc})"
    exc_info = record.exc_info
    if exc_info and exc_info[1] is not None:
        last = traceback.format_exception_only(exc_info[0], exc_info[1])[-1].strip()
        text = f"{text}\n{last}" if text else last
    return text


def _capped(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 1] + "…"


def _stamping(previous: Any) -> Any:
    """A record factory that makes records with ``previous`` and stamps them."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        job = _job.get()
        obj = current_object()
        ids = current_ids()
        if job is None and obj is None and ids is None:  # the usual case: one update
            record.__dict__.update(_NOTHING)
            return record
        d = record.__dict__
        d["dotdo_object"] = None if obj is None else f"{type(obj).__name__}/{getattr(obj, 'id', '?')}"
        if job is None:
            d["dotdo_job_id"] = d["dotdo_queue"] = d["dotdo_attempt"] = None
        else:
            d["dotdo_job_id"], d["dotdo_queue"], d["dotdo_attempt"] = job.job_id, job.queue, job.attempt
        if ids is None:
            d["dotdo_trace_id"] = d["dotdo_span_id"] = None
        else:
            d["dotdo_trace_id"], d["dotdo_span_id"] = ids
        # logging.makeLogRecord builds a blank record to fill: not a logging call
        if job is not None and record.name is not None:
            job.keep(record, ids)
        return record

    return make


def _stamp() -> None:
    """Install the stamping record factory, once."""
    global _stamped
    if _stamped:
        return
    with _lock:
        if not _stamped:
            _stamped = True
            logging.setLogRecordFactory(_stamping(logging.getLogRecordFactory()))


def _format() -> str:
    """``DOTDO_LOG_FORMAT``, checked."""
    value = os.environ.get(FORMAT_VARIABLE, "").strip().lower() or "text"
    if value not in _FORMATS:
        raise ConfigError(f"{FORMAT_VARIABLE}={os.environ[FORMAT_VARIABLE]!r}: use 'text' "
                          "(the default: logging's own output) or 'json' (one JSON object "
                          "a line, on stderr)")
    return value


def configure(host: str | None = None) -> None:
    """Stamp every record of this process with its object, job and span; with
    ``DOTDO_LOG_FORMAT=json``, write records as JSON. ``host``: this process is the
    host of that name (JSON lines say so; a root logger there with no handler and
    the default level goes to INFO, which prints nothing more). Idempotent.

    JSON replaces the formatter of the root logger's stream handlers, and logging's
    handler of last resort (what prints WARNING and above to stderr when no handler
    is configured, as in a Ray worker, whose root logger has none): the same records
    are printed, as JSON. No handler is added, so a later ``logging.basicConfig``
    still takes effect (with its own format). Loggers that do not propagate to the
    root, such as Ray's ``ray``, keep their handlers and formats.
    """
    global _json, _host
    kind = _format()
    if host is not None:
        _host = host
        root = logging.getLogger()
        if not root.handlers and root.level == logging.WARNING:
            # A host's root has no handler (Ray's workers): only the last resort prints,
            # WARNING and above, whatever root's level. At INFO, a job's INFO lines are
            # made, so kept for its page, and nothing more is printed.
            root.setLevel(logging.INFO)
    _stamp()
    with _lock:
        if kind == "json" and not _json:
            _json = True
            _json_output()


class _StderrJson(logging.StreamHandler):
    """The handler of last resort, in JSON: writes to ``sys.stderr`` as it is when
    the record comes (Ray replaces it in its workers)."""

    def __init__(self, level: int) -> None:
        logging.Handler.__init__(self, level)
        self.setFormatter(JsonFormatter())

    @property
    def stream(self) -> Any:
        return sys.stderr


def _json_output() -> None:
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setFormatter(JsonFormatter())
    if logging.lastResort is not None:
        logging.lastResort = _StderrJson(logging.lastResort.level)


class JsonFormatter(logging.Formatter):
    """One JSON object a record, on one line: ``ts`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, ``object``, ``job_id``, ``queue``, ``attempt``,
    ``trace_id``, ``span_id``, ``process`` (pid), ``host`` (this process's host, else
    null), ``exc`` (the traceback, when there is one), ``stack`` (with
    ``stack_info=True``), then the record's ``extra=`` fields that JSON can carry
    (others are left out; none replaces a field above)."""

    def format(self, record: logging.LogRecord) -> str:
        get = record.__dict__.get
        line: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "object": get("dotdo_object"), "job_id": get("dotdo_job_id"),
            "queue": get("dotdo_queue"), "attempt": get("dotdo_attempt"),
            "trace_id": get("dotdo_trace_id"), "span_id": get("dotdo_span_id"),
            "process": record.process, "host": _host,
        }
        if record.exc_info:
            if not record.exc_text:  # cached, as logging.Formatter does
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key in _OWN or key in _FIELDS or key.startswith("_"):
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue
            line[key] = value
        return json.dumps(line, default=str)


@contextlib.contextmanager
def job_scope(queue: str, job_id: str, attempt: int) -> Iterator[list[dict[str, Any]]]:
    """Run the block as attempt ``attempt`` of job ``job_id`` of ``queue``: its
    records carry the job, and the list yielded fills with them, up to :data:`KEEP`
    (then one more says how many were dropped): ``{"t", "level", "logger", "message",
    "traceId", "spanId"}``, the message with its exception's last line, cut at
    :data:`MESSAGE_LIMIT` characters.

    A context variable carries the scope: code run with the block's context is in it
    (the block's own task, tasks it starts, ``contextvars.copy_context().run`` and
    ``asyncio.to_thread`` in a thread); other threads and tasks are not, nor is code
    the job left running after the block. Which records are made is the loggers'
    levels' choice (see the module's docstring: with Python's defaults, no INFO);
    each is kept as it is made, whatever filters and handlers do with it after.
    """
    _stamp()  # a no-op once configure() has run
    collector = _Collector(queue, job_id, attempt)
    token = _job.set(collector)
    try:
        yield collector.records
    finally:
        _job.reset(token)
        collector.close()
