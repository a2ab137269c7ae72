"""What the HTTP API takes and answers, as the types its OpenAPI schema is built from:
the request bodies, one type per answer, the error body, and the error codes each
kind of route answers (one table, shared by the routes of that kind).

The job's own types (``JobEntry``, ``Job``, ``JobPage``, ``JobStatus``) come from
:mod:`dotdo.jobmodel`, the very ones the queue checks against: they are rebuilt here
from their type hints, never listed again, as ``typing_extensions`` TypedDicts
(pydantic reads no others on Python 3.11). Answers are TypedDicts too, validated on
the way out: an answer has every key its type requires, the others only when the
service gave them, and no key its type does not document.
"""

from __future__ import annotations

import base64
import functools
import math
import types
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import typing_extensions as te
from pydantic import ConfigDict, Field, PlainSerializer, TypeAdapter, with_config

from dotdo.jobmodel import Job, JobEntry, JobPage, JobStatus, option_help

__all__ = ["Value", "plain", "ErrorBody", "READ", "LOOKUP", "WRITE", "SEND", "STREAM", "components",
           "EnqueueBody", "SettingsBody", "RetryBody", "CancelBody", "PurgeBody", "CallBody",
           "Status", "QueueSummary", "QueueView", "QueueSettings", "Stats", "DeadLetters",
           "JobAnswer", "JobsPage", "JobDetail", "Outcome", "Purged", "Retried", "Cancelled",
           "ResolveBody", "RejectBody", "Settled", "Point", "Awakeable", "Child", "SETTLE",
           "WorkerRow", "ScheduleRow", "ObjectPage", "ObjectView", "Step", "Called", "Sent",
           "JobEvent", "Timeline", "TimelineBar", "LogLine"]

REF = "#/components/schemas/"
_ANNOTATED: Any = Annotated  # subscripted with types known only at run time
_BODY = ConfigDict(extra="forbid", use_enum_values=True)  # a misspelt field is refused, named


def plain(value: Any) -> Any:
    """``value`` with only what JSON carries: bytes as base64, sets and tuples as lists,
    keys as text, and what JSON has no type for (NaN, a datetime, a value this process
    cannot rebuild) as its text. Job payloads and results, object keys and call results
    hold anything ``dotdo.codec`` stores."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


Value = Annotated[Any, PlainSerializer(plain, when_used="json")]
"""Any value a job or an object holds, answered as :func:`plain` makes it."""


# -- rebuilt from dotdo.jobmodel ----------------------------------------------------------

def _pydantic_type(hint: Any) -> Any:
    """``hint`` as pydantic reads it here: TypedDicts rebuilt, ``Any`` as :data:`Value`."""
    if hint is Any:
        return Value
    if te.is_typeddict(hint):
        return _rebuilt(hint)
    origin, args = get_origin(hint), get_args(hint)
    if not args or origin is Literal:
        return hint
    inner = tuple(_pydantic_type(a) for a in args)
    if origin in (Union, types.UnionType):
        return Union[inner]  # noqa: UP007 - built from a tuple of members
    return origin[inner]


def _typed_dict(name: str, fields: dict[str, Any], doc: str | None) -> Any:
    """A TypedDict pydantic reads, of ``fields`` (made so: keys such as ``$id`` and
    ``class`` are no identifiers, and derived ones are known only when this runs)."""
    out: Any = te.TypedDict(name, fields)  # type: ignore[misc]
    out.__doc__ = doc
    return out


@functools.cache
def _rebuilt(typed_dict: Any) -> Any:
    """A copy of ``typed_dict`` pydantic reads: the same keys, the same required ones,
    the same docstring."""
    return _typed_dict(typed_dict.__name__, {
        key: kind if key in typed_dict.__required_keys__ else te.NotRequired[kind]
        for key, hint in get_type_hints(typed_dict).items() for kind in [_pydantic_type(hint)]},
        typed_dict.__doc__)


# Lower bounds shown in the schema and checked before the queue sees the job, so that
# a bad value is refused naming its field; the queue checks these and more (its upper
# bounds). `type` is the one key a job must have.
_BOUNDS: dict[str, dict[str, Any]] = {"type": {"min_length": 1}, "job_id": {"min_length": 1},
                                      "delay": {"ge": 0}, "run_at": {"ge": 0},
                                      "max_retries": {"ge": 0}, "timeout": {"gt": 0}}


def _enqueue_body() -> Any:
    """``JobEntry`` (a job's type, payload and every enqueue option) as a request body,
    each key described by its docstring; ``type`` is required."""
    helps = option_help()
    hints = get_type_hints(JobEntry)
    gone = set(_BOUNDS) - set(hints)
    assert not gone, f"_BOUNDS names options JobEntry no longer has: {sorted(gone)}"
    fields: dict[str, Any] = {}
    for key, hint in hints.items():
        kind = _ANNOTATED[_pydantic_type(hint),
                          Field(description=helps.get(key), **_BOUNDS.get(key, {}))]
        fields[key] = te.Required[kind] if key == "type" else te.NotRequired[kind]
    body = _typed_dict("EnqueueBody", fields, "A job to enqueue: its type, its payload and any "
                                              "of the options `Queue.enqueue` takes.")
    body.__pydantic_config__ = _BODY
    return body


if TYPE_CHECKING:  # what the routes see; the schema's type is derived below
    EnqueueBody = dict[str, Any]
else:
    EnqueueBody = _enqueue_body()

JobAnswer: Any = _rebuilt(Job)
JobsPage: Any = _rebuilt(JobPage)
if TYPE_CHECKING:
    Counts = dict[str, int]
else:
    Counts = _typed_dict("Counts", {s.value: int for s in JobStatus},
                         "How many jobs are in each state now (every JobStatus).")


# -- request bodies -----------------------------------------------------------------------

@with_config(_BODY)
class KeepBody(te.TypedDict, total=False):
    """How many finished jobs of a kind stay: the newest ``count`` that finished less
    than ``age`` seconds ago (either may be left out; null: no limit)."""

    count: int | None
    age: float | None


@with_config(_BODY)
class SettingsBody(te.TypedDict, total=False):
    """Queue limits to change (``Queue.configure``); those left out stay as they are,
    null removes a limit. ``keep_*``: a count, or ``{"count", "age"}``."""

    concurrency: int | None
    lease_timeout: float
    rate: str | None
    key_rate: str | None
    group_concurrency: int | None
    keep_completed: int | KeepBody | None
    keep_failed: int | KeepBody | None


@with_config(_BODY)
class RetryBody(te.TypedDict, total=False):
    """Which failed jobs to retry: of a ``type``, enqueued ``since`` (epoch seconds)."""

    status: Literal["failed"]
    type: str | None
    since: float | None


@with_config(_BODY)
class CancelBody(te.TypedDict, total=False):
    """Which jobs to cancel: those in ``status`` (not a finished one), of a ``type``,
    enqueued ``since`` (epoch seconds)."""

    status: te.Required[JobStatus]
    type: str | None
    since: float | None


@with_config(_BODY)
class PurgeBody(te.TypedDict, total=False):
    """Which finished jobs to delete: of one ``status`` (all finished ones if left
    out), finished more than ``older_than`` seconds ago."""

    status: JobStatus | None
    older_than: Annotated[float | None, Field(ge=0)]


@with_config(_BODY)
class ResolveBody(te.TypedDict, total=False):
    """The value to resolve an awakeable with (null if left out): what
    ``await dotdo.wait(token)`` returns in its job."""

    value: Any


@with_config(_BODY)
class RejectBody(te.TypedDict):
    """Why the awakeable is rejected: ``await dotdo.wait(token)`` raises
    ``RejectedError`` with it in its job."""

    reason: Annotated[str, Field(min_length=1)]


@with_config(_BODY)
class CallBody(te.TypedDict, total=False):
    """The arguments of a call on an exposed object."""

    args: list[Any]
    kwargs: dict[str, Any]


# -- answers: queues ----------------------------------------------------------------------

class QueueSummary(te.TypedDict):
    """A queue: whether it is paused, its concurrency limit (null: none), its jobs by
    state, its registered workers, and how long its oldest ready job has waited
    (seconds; null: none waits)."""

    id: str
    paused: bool
    concurrency: int | None
    counts: Counts
    workers: int
    oldestPendingAge: float | None


class Keep(te.TypedDict):
    """How many finished jobs of a kind stay (null: no limit)."""

    count: int | None
    age: float | None


class QueueSettings(te.TypedDict):
    """A queue's limits and retention, as ``Queue.configure`` sets them."""

    concurrency: int | None
    lease_timeout: float
    rate: str | None
    key_rate: str | None
    group_concurrency: int | None
    keep_completed: Keep
    keep_failed: Keep


class Bucket(te.TypedDict):
    """Jobs that completed and failed in the ``bucket`` seconds from ``t``."""

    t: float
    completed: int
    failed: int


class Percentiles(te.TypedDict):
    """p50 and p95 (seconds) of the latest ``n`` jobs (null when there were none)."""

    p50: float | None
    p95: float | None
    n: int


class Totals(te.TypedDict):
    """Jobs that ever ended so, purged ones included: the numbers only grow."""

    completed: int
    failed: int
    cancelled: int


class Stats(te.TypedDict):
    """Throughput (jobs/s) and failures per bucket over the window, the failure rate,
    run time (``duration``) and ready-to-started time (``wait``), the oldest ready
    job's age and the outcome totals."""

    window: float
    bucket: float
    series: list[Bucket]
    throughput: float
    failureRate: float | None
    duration: Percentiles
    wait: Percentiles
    oldestPendingAge: float | None
    totals: Totals


class QueueView(QueueSummary):
    """One queue: its summary, settings, stats and ``types`` (job type -> stored status
    -> count; ``pending`` includes delayed and retrying jobs)."""

    settings: QueueSettings
    stats: Stats
    types: dict[str, dict[str, int]]


class DeadLetters(te.TypedDict):
    """Failed jobs sharing the first line of their error: how many, their types, when
    the latest failed, and the ids of the latest 5."""

    error: str | None
    count: int
    types: list[str]
    lastAt: float | None
    jobs: list[str]


class Purged(te.TypedDict):
    """How many finished jobs were deleted."""

    purged: int


class Retried(te.TypedDict):
    """How many failed jobs went back to the queue."""

    retried: int


class Cancelled(te.TypedDict):
    """How many jobs were cancelled (running ones: asked to stop)."""

    cancelled: int


# -- answers: jobs ------------------------------------------------------------------------

class Attempt(te.TypedDict):
    """One attempt of a job; ``outcome`` is ``failed``, ``cancelled``, ``lost`` (its
    worker went silent), ``crashed`` (its process died), ``released`` (its worker
    stopped), ``running`` or ``completed``."""

    attempt: int
    worker: str | None
    startedAt: float | None
    finishedAt: float | None
    outcome: str
    error: str | None
    trace: str | None


PointState = Literal["open", "done", "failed", "timeout"]


class Point(te.TypedDict):
    """A durable call of the job's runs, in the order they met it: ``key`` is its place
    (``sleep#1``, ``event#1``, ``awakeable#1``, ``wait#1``, ``child#1``,
    ``patch:<name>``, ``step:<step id>``); ``state`` open until it ended (done,
    failed, or timeout: a wait's time ran out); ``until``: a sleep's end or a wait's
    timeout (null: none); ``arg``: what it waits for (an event's type and match, the
    awakeable a wait waits for, a child's queue, id and type)."""

    key: str
    state: PointState
    until: float | None
    arg: Value
    createdAt: float
    endedAt: float | None


class Awakeable(te.TypedDict):
    """An awakeable the job's runs made: open until resolved (``done``) or rejected
    (``failed``); ``token`` is the id to settle it with
    (``POST /api/awakeables/{token}/resolve`` or ``reject``)."""

    key: str
    state: PointState
    token: str
    createdAt: float
    endedAt: float | None


class Child(te.TypedDict):
    """A child job the job's runs started (``dotdo.run_job``): its queue, id and type,
    and the point of the parent's run that waits for it."""

    queue: str
    id: str
    type: str
    point: str


def _job_detail() -> Any:
    """``Job`` with its queue, every attempt (``attempts``; the count moves to
    ``attemptCount``), its result (null until it completed), and what its runs met
    on the way: ``points`` in order, its ``awakeables`` (with their tokens) and the
    ``children`` it started."""
    fields = {key: kind for key, kind in get_type_hints(JobAnswer, include_extras=True).items()
              if key != "enqueued"}  # only enqueue answers say how it went
    fields.update(queue=str, attemptCount=int, attempts=list[Attempt], result=Value,
                  points=list[Point], awakeables=list[Awakeable], children=list[Child])
    return _typed_dict("JobDetail", fields, _job_detail.__doc__)


JobDetail: Any = _job_detail()


class JobRef(te.TypedDict):
    """A job elsewhere: its queue and id."""

    queue: str
    id: str


class TimelineBar(te.TypedDict):
    """One bar of a job's waterfall. ``kind``: ``queued`` (from its enqueue to its
    first run), ``attempt`` (a run: ``state`` its outcome, ``retried`` for a failure
    run again, ``retrying`` while the next run waits), a durable call of its runs
    (``sleep``, ``event``, ``awakeable``, ``wait``, ``child``: ``state`` as its point's;
    ``step`` and ``patch``: marks where the run met them) or ``finished`` (a mark:
    ``state`` the job's end). ``end`` is null while it goes on (it runs to the
    timeline's ``now``), ``duration`` then too; ``attempt`` is the run it belongs to;
    ``until``: a sleep's end or a wait's timeout; ``job``: a child's queue and id."""

    kind: Literal["queued", "attempt", "sleep", "event", "awakeable", "wait", "child", "step",
                  "patch", "finished"]
    label: str
    start: float
    end: float | None
    duration: float | None
    state: str
    attempt: int | None
    worker: str | None
    error: str | None
    detail: str | None
    until: float | None
    job: JobRef | None


class Timeline(te.TypedDict):
    """A job's life from its queue's records, as bars on one time axis (epoch seconds)
    from ``start`` (its enqueue) to ``end`` (its last record; null while unfinished:
    the axis runs to ``now``, the server's time of the answer). ``traceId``: the trace
    its runs are in, when tracing was on."""

    queue: str
    id: str
    status: JobStatus
    traceId: str | None
    start: float
    end: float | None
    now: float
    bars: list[TimelineBar]


class LogLine(te.TypedDict):
    """A log record emitted while an attempt of the job ran: when (epoch seconds), its
    level and logger, the message, the worker, and the trace and span it was in."""

    attempt: int
    t: float
    level: str
    logger: str
    message: str
    worker: str | None
    traceId: str | None
    spanId: str | None


class Outcome(te.TypedDict):
    """A job's outcome: ``done`` once it finished; ``output`` if it completed,
    ``error`` if it failed."""

    id: str
    status: JobStatus
    done: bool
    output: te.NotRequired[Value]
    error: te.NotRequired[str]


class Settled(te.TypedDict):
    """The awakeable was settled: its job, waiting for it, runs again (with the value,
    or ``RejectedError`` with the reason); one not waiting yet finds it when it waits."""

    token: str
    queue: str
    job: str
    awakeable: str
    settled: Literal["resolved", "rejected"]


class JobEvent(te.TypedDict):
    """A Job event (``Job.enqueued``, ``Job.completed``, ...) of a queue, at epoch
    seconds ``at``; ``data`` is what the event carries (the job, for most)."""

    queue: str
    at: float
    type: str
    data: Value


# -- answers: workers, schedules, objects -------------------------------------------------

class WorkerRow(te.TypedDict):
    """A worker of a queue: its process (null while it restarts), the jobs it runs,
    when its queue last heard from it, and what it completed and failed."""

    id: str
    queue: str
    node: str | None
    pid: int | None
    concurrency: int | None
    running: list[str]
    lastSeen: float | None
    online: bool
    completed: int
    failed: int
    registered: bool


class Schedule(te.TypedDict):
    """A schedule of an object: its spec, next and last run (epoch seconds), how many
    times it ran and its last error."""

    name: str
    spec: str
    nextRun: float
    lastRun: float | None
    ticks: int
    lastError: str | None


ScheduleRow = _typed_dict("ScheduleRow", {"class": str, "id": str, **get_type_hints(Schedule)},
                          "A schedule with the object it belongs to.")
if TYPE_CHECKING:
    ObjectRow = dict[str, Any]
else:
    ObjectRow = _typed_dict("ObjectRow", {"class": str, "id": str, "size": int, "modified": float},
                            "An object's file: its size (bytes) and when it last changed "
                            "(epoch s).")
ObjectPage = _typed_dict("ObjectPage", {"objects": list[ObjectRow], "cursor": str | None},
                         "A page of a class's objects: pass `cursor` back for the next (null: "
                         "the last).")


class Table(te.TypedDict):
    """One of the object's own SQL tables."""

    name: str
    rows: int


ObjectView = _typed_dict("ObjectView", {
    "class": str, "id": str, "path": str, "size": int, "modified": float,
    "kv": dict[str, Value], "tables": list[Table], "alarm": float | None,
    "schedules": list[Schedule], "steps": int},
    "An object as its file holds it: `path` relative to the storage root, its first 100 "
    "keys, its own tables, alarm, schedules and number of journaled steps.")


class StepError(te.TypedDict):
    """A failed attempt of a step."""

    attempt: int
    startedAt: float
    finishedAt: float
    error: str | None


class Step(te.TypedDict):
    """A step of the object's journal: ``finishedAt`` and ``result`` are null while it
    still fails."""

    step: str
    attempts: int
    startedAt: float
    finishedAt: float | None
    result: Value
    errors: list[StepError]


class Node(te.TypedDict):
    """A Ray node."""

    id: str
    address: str | None
    alive: bool
    cpus: float
    memory: float


class Cluster(te.TypedDict):
    """The Ray cluster (no address and no nodes when objects run in process)."""

    address: str | None
    nodes: list[Node]


class WorkersOnline(te.TypedDict):
    """Workers seen by their queue lately, of all those registered."""

    online: int
    total: int


class Status(te.TypedDict):
    """The storage root and namespace, Ray's nodes, objects by class, every queue and
    how many workers are online; ``traceUrl``: where a trace id links to, ``{trace_id}``
    in it standing for the id (``$DOTDO_TRACE_URL`` of the server; null: not set)."""

    storage: str
    namespace: str
    ray: Cluster
    classes: dict[str, int]
    queues: list[QueueSummary]
    workers: WorkersOnline
    traceUrl: str | None


class Called(te.TypedDict):
    """What the method returned."""

    result: Value


class Sent(te.TypedDict):
    """The event type that was sent."""

    sent: str


# -- errors -------------------------------------------------------------------------------

class ErrorBody(te.TypedDict):
    """Every error answer: what went wrong and how to fix it, and for a bad input the
    ``field`` at fault (its path: ``payload.a.1``; ``body`` for the body as a whole)."""

    error: str
    field: te.NotRequired[str]


_WHEN = {
    400: "Bad input: a body that is not JSON, a bad field, option or id (`field` names it), "
         "or a job in the wrong state for the action.",
    401: "No token, or a wrong one: send `Authorization: Bearer <token>`.",
    403: "The read-only token writing; a write carried by the cookie or `?token=` from "
         "another site's page; or a class, method or event that is not exposed.",
    404: "No such queue, job, class, object, method or awakeable.",
    409: "The awakeable was resolved or rejected before: it takes one, the first.",
    413: "The body is over the server's limit (1 MiB by default; the message says it).",
    500: "The server failed: an exposed method raised, or a bug. The message says what.",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    # By reference rather than `model=`: FastAPI files a model under the route's own
    # media type, and /metrics answers text, but its errors JSON.
    return {code: {"description": _WHEN[code], "content": {
        "application/json": {"schema": {"$ref": f"{REF}ErrorBody"}}}} for code in codes}


# The error answers of each kind of route; every route names its kind.
READ = _errors(401, 500)  # a listing: nothing in the request can be wrong but the token
LOOKUP = _errors(400, 401, 404, 500)  # a read naming a queue, job or object, or with options
WRITE = _errors(400, 401, 403, 404, 413, 500)  # changes something
SETTLE = _errors(400, 401, 403, 404, 409, 413, 500)  # settles an awakeable: once
SEND = _errors(400, 401, 403, 413, 500)  # an event: nothing to look up

STREAM: dict[int | str, dict[str, Any]] = {200: {
    "description": "Server-sent events: `counts` (every queue, as `GET /api/queues` answers) "
                   "at once and every 2 s; `job` (a Job event) as they happen; `error` when "
                   "a queue cannot be read (the stream goes on).",
    "content": {"text/event-stream": {"schema": {"type": "string"}, "itemSchema": {
        "type": "object", "required": ["event", "data"], "oneOf": [
            {"properties": {"event": {"const": kind}, "data": {
                "type": "string", "contentMediaType": "application/json",
                "contentSchema": schema}}}
            for kind, schema in (
                ("counts", {"type": "array", "items": {"$ref": f"{REF}QueueSummary"}}),
                ("job", {"$ref": f"{REF}JobEvent"}),
                ("error", {"$ref": f"{REF}ErrorBody"}))]}}}}}


def components() -> dict[str, Any]:
    """The schemas the routes name only by reference (errors, stream events), for the
    OpenAPI document's components."""
    out: dict[str, Any] = {}
    for kind in (ErrorBody, JobEvent):
        schema = TypeAdapter(kind).json_schema(ref_template=REF + "{model}", mode="serialization")
        out.update(schema.pop("$defs", {}))
        out[kind.__name__] = schema
    return out
