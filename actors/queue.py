"""``Queue``: a job queue as a durable object.

Jobs live in the queue's own SQLite table. Workers *pull*: ``claim`` leases a batch
of ready jobs to a worker (waiting up to a second when there are none; an enqueue
that finds claims waiting leases its jobs to them in its own transaction),
``complete`` records a batch of outcomes in one transaction. Enqueueing, claiming and
completing all take many jobs per call and many rows per transaction. ``wait`` answers
once a job ended, woken by its end (no polling).

Each claim runs one attempt. A failed attempt comes back to the queue: with retries
left it waits there as ``retrying`` until its backoff has passed (holding no worker
slot), else it ends ``failed``. Every attempt that did not succeed is kept in the
``attempts`` table (``Queue.attempts``).

What a claim hands out, in order: nothing while paused; at most ``concurrency``
running; at most ``rate`` starts in any window; a suspect first (below); then ready
jobs by priority, then age. Once jobs carry a ``group`` (or ``group_concurrency`` or
``key_rate`` is set) a claim walks the groups round-robin instead, a group at a time
by priority, skipping groups at their ``group_concurrency`` and jobs whose
``rate_key`` spent its ``key_rate``.

Leases, in the jobs table so that they survive a restart of the queue:

* Each claim of a job bumps its ``lease`` number (a fencing token) and sets
  ``lease_until``. A worker's heartbeats (from a thread of its own, so a busy handler
  never stops them) extend the leases of the jobs it names; a lease that runs out puts
  its job back to ``pending``, marked *suspect*.
* An outcome counts only from the worker holding the job's current lease; a success
  from any worker that held the job wins, also over a failure (the job did run to
  the end), but never over a cancellation or a purge.
* A worker that restarts reports the jobs it was running when its process died
  (``recover``). A job that was running alone when its worker died killed it, as far
  as anyone can tell: after ``max_retries`` more such deaths it fails with a
  ``WorkerCrashError``. Jobs that died in company are suspects: each runs alone next
  time, so a job that kills its worker is found out without failing its neighbours.
  A suspect waits for an idle worker; once it has waited a lease timeout, the
  least busy worker takes nothing new until it is idle (the others go on).

Events (``Job.enqueued``, ``.retrying``, ``.progress``, ``.completed``, ``.failed``,
``.cancelled``) are written to an outbox in the same transaction as the change they
describe, and forwarded to ``App("default")`` with ids that stay the same when a
forward is repeated. While no handler there listens to ``Job`` events (the queue asks
every two seconds), none are written.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import json
import logging
import math
import time
import uuid
from typing import Any, Unpack, cast

import dotdo
from actors import queue_sql as sql
from actors.claims import Claims
from actors.insight import RECENT_EVENTS, Insight
from actors.jobs import DEFAULT_TIMEOUT, FINISHED, JobStatus, Metrics, job_thing, result_thing
from actors.limits import Limiter
from actors.options import (
    ENCODED_PAYLOAD,
    MAX_LEASE_TIMEOUT,
    MAX_PAYLOAD,
    JobSpec,
    Keep,
    Rate,
    number,
    span,
)
from actors.parks import Parks
from actors.retention import RETAIN_BATCH, Retention
from actors.table import LOOP_RETRY
from dotdo import clock, codec, tracing
from dotdo.jobmodel import Job, JobEntry, JobFlow, JobOptions, JobPage

__all__ = ["Queue", "DEFAULT_TIMEOUT", "MAX_PAYLOAD", "MAX_BATCH", "MAX_PAGE", "MAX_WAITERS",
           "KEEP_COMPLETED", "KEEP_FAILED"]

MAX_BATCH = 10_000  # jobs per enqueue_many
MAX_PAGE = 1_000  # jobs per list() page
# wait() calls waiting at once: each holds one of its host's 1,000 concurrent calls
# (dotdo.client), and the workers' claims and outcomes need some of them to end a job.
MAX_WAITERS = 500
LEASE_TIMEOUT = 30.0
# Retention unless configured: finished jobs do not pile up without limit.
KEEP_COMPLETED = Keep(count=10_000, age=7 * 86_400.0)
KEEP_FAILED = Keep(count=100_000, age=30 * 86_400.0)
_OUTBOX_BATCH = 500
_LISTEN_EVERY = 2.0
_UNCHANGED: Any = object()
log = logging.getLogger("dotdo")


def _new_row(spec: JobSpec, status: str = "pending", waiting_on: int = 0,
             trace: str | None = None) -> dict[str, Any]:
    """A job as it was just inserted from ``spec`` (with the payload as it was given)."""
    return {"id": spec.id, "type": spec.type, "payload": spec.value,
            "status": status, "priority": spec.priority, "run_at": spec.run_at, "attempts": 0,
            "max_retries": spec.max_retries, "timeout": spec.timeout, "error": None,
            "created": spec.created, "finished": None, "lease": 0, "crashes": 0,
            "uid": spec.uid, "grp": spec.group, "rate_key": spec.rate_key,
            "dedupe_key": spec.dedupe_key, "waiting_on": waiting_on, "traceparent": trace}


def _sealed(job: Any) -> Any:
    """``job`` with its payload encoded here, as ``ENCODED_PAYLOAD``; as it is if the
    payload does not encode (a promise, which Ray resolves first; or an error the
    queue then reports, writing nothing)."""
    if not isinstance(job, dict) or job.get("payload") is None:
        return job
    try:
        encoded = codec.encode(job["payload"])
    except dotdo.EncodeError:
        return job
    return {**{k: v for k, v in job.items() if k != "payload"}, ENCODED_PAYLOAD: encoded}


def _sealed_flow(flow: Any) -> Any:
    if not isinstance(flow, dict) or not isinstance(flow.get("children"), builtins.list):
        return _sealed(flow)
    return {**_sealed(flow), "children": [_sealed_flow(c) for c in flow["children"]]}


def outgoing(method: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Payloads leave the caller's process encoded (``Queue._dotdo_outgoing``): the
    queue stores and passes them on as bytes, and never rebuilds one, nor imports the
    modules of the classes in it."""
    if method == "enqueue":
        if len(args) >= 2:
            args, kwargs = args[:1] + args[2:], {**kwargs, "payload": args[1]}
        return args, _sealed(kwargs)
    if method == "enqueue_many" and args and isinstance(args[0], builtins.list):
        return ([_sealed(job) for job in args[0]], *args[1:]), kwargs
    if method == "enqueue_flow" and args:
        return (_sealed_flow(args[0]), *args[1:]), kwargs
    return args, kwargs


class Queue(Parks, Claims, Retention, Insight, dotdo.DurableObject):
    """A durable job queue; see the module docstring. Its parts: ``JobTable``
    (shared state, ``actors/table.py``), ``Flows`` (dependencies), ``Retention``,
    ``Claims`` (the worker protocol), ``Steps`` (named steps of job handlers, one for
    the whole queue), ``Parks`` (durable waits: jobs sleeping or waiting, holding no
    worker), ``Insight`` (what operators read)."""

    # Named steps of job handlers are journaled here (actors/steps.py): a step that
    # finished more than 30 days ago may run again.
    retain_steps = 30 * 86_400.0

    def __init__(self) -> None:
        # Wall minus monotonic time: _now() tells a step of the wall clock by it
        self._offset = self.storage.now() - clock.monotonic()
        self.storage.migrate("queue", sql.MIGRATIONS)
        db = self.storage.sql
        get = self.storage.get
        self._paused = bool(get("paused", False))
        self._limiter = Limiter()
        self._load_settings()
        now, mono = self._now(), time.monotonic()
        windows = [r.seconds for r in (self._limiter.queue and self._limiter.queue.rate,
                                       self._limiter.key_rate) if r]
        if windows:  # the windows as they were when the queue last ran
            since = now - max(windows)
            # Rate windows are on this process's monotonic clock: stored (wall) start
            # times become so many seconds ago.
            self._limiter.rebuild(((key, mono - (now - started)) for key, started in
                                   db.execute(sql.RECENT_STARTS, (since, since))), mono)
        # Outbox events get ids from this and their row number: the same id however
        # often a forward is repeated, and new ids if the file is ever recreated.
        self._instance = get("instance")
        if self._instance is None:
            self._instance = uuid.uuid4().hex[:12]
            self.storage.put("instance", self._instance)
        # Workers could not renew their leases while the queue was down, and stored
        # deadlines are of another process's monotonic clock: a fresh full lease each.
        db.execute(sql.GRACE, (mono + self._lease_timeout,))
        # Fences only grow: past the largest handed out, also by jobs since deleted.
        self._fence = max(int(get("fence", 0)), self._one(sql.MAX_FENCE))
        self._awake_at = mono
        self._grouped = self._any_grouped()
        self._has_deps = db.execute(sql.ANY_DEPS).fetchone() is not None
        self._load_parks()
        self._rr_after: str | None = None  # the group served last: fair claims go on after it
        self._depth_at = 0.0
        self._expiry_check_at = 0.0
        self._ready = asyncio.Event()
        self._step_changed = asyncio.Event()
        self._outbox_ready = asyncio.Event()
        self._outbox_ready.set()  # forward what a previous life left behind
        self._notices_ready = asyncio.Event()
        self._notices_ready.set()
        self._retain_now = asyncio.Event()
        self._listened = True  # until the App says otherwise
        self._tasks: set[asyncio.Task] = set()
        self._recent = collections.deque(maxlen=RECENT_EVENTS)
        self._recent_n = 0
        self._life = uuid.uuid4().hex[:12]
        self._seen: dict[str, float] = {}
        self._left: set[str] = set()
        self._polls = []  # idle workers' claims waiting: an enqueue leases them its jobs
        # wait() calls, by job id: futures on this loop, woken when the job ends. A new
        # process starts with none: calls in flight when the old one died failed with it.
        self._waiters: dict[str, set[asyncio.Future]] = {}
        self._waiting = 0  # futures in _waiters
        self._woken: set[str] = set()
        self._wake_due = False
        loop = asyncio.get_running_loop()
        # Kept: the loop holds tasks only weakly.
        self._loops = [loop.create_task(self._forward_events()),
                       loop.create_task(self._watch_listeners()),
                       loop.create_task(self._reap()),
                       loop.create_task(self._wake_workers()),
                       loop.create_task(self._retain()),
                       loop.create_task(self._forward_notices())]

    # -- enqueueing -------------------------------------------------------------------

    _dotdo_outgoing = staticmethod(outgoing)

    def enqueue(self, type: str, payload: Any = None, **options: Unpack[JobOptions]) -> Job:
        """Add a job and return it (a ``Job`` Thing) with ``enqueued`` saying what
        happened: ``added``; ``existing`` (its ``job_id`` is there: nothing added);
        ``debounced`` (a job with its ``dedupe_key`` not yet started took the new
        payload and runs ``debounce`` s from now); ``duplicate`` (one with its
        ``dedupe_key`` was enqueued within ``unique_for`` s: that one is returned).
        Options: ``dotdo.JobOptions`` (and ``docs/queue.md``)."""
        return self.enqueue_many([{"type": type, "payload": payload, **options}])[0]

    def enqueue_many(self, jobs: builtins.list[JobEntry]) -> builtins.list[Job]:
        """Add up to 10,000 jobs in one transaction; every job is checked before any
        is written. A job may depend on one earlier in the list."""
        if len(jobs) > MAX_BATCH:
            raise dotdo.LimitError(f"enqueue_many takes at most {MAX_BATCH:,} jobs per call, got "
                                   f"{len(jobs):,}: send them in several calls")
        now = self._now()
        specs = [JobSpec.parse(dict(spec), now) for spec in jobs]
        added: builtins.list[tuple[dict[str, Any] | None, str]]
        if len(specs) == 1 and specs[0].single_row and not self._listened and not self._polls:
            added = [self._add(specs[0], now)]  # one INSERT: atomic by itself
        else:
            with self.storage.transaction():
                added = [self._add(spec, now) for spec in specs]
                if self._polls and any(what in ("added", "debounced") for _, what in added):
                    self._hand_over(now)  # an idle worker's claim: leased in this commit
        if any(what in ("added", "debounced") for _, what in added):
            self._ready.set()
            self._gauge_depth()
        # A job enqueued again is returned as it is stored; a new one is what was written.
        old = [spec.id for spec, (row, _) in zip(specs, added) if row is None]
        stored = {r["id"]: self._thing(r) for r in self._rows(sql.SELECT_JOBS, (json.dumps(old),))
                  } if old else {}
        return [{**(stored[spec.id] if row is None else job_thing(row, now)), "enqueued": what}
                for spec, (row, what) in zip(specs, added)]

    def _add(self, spec: JobSpec, now: float) -> tuple[dict[str, Any] | None, str]:
        """Write one job (inside the caller's transaction): ``(row, what happened)``,
        row None for an existing job (read afterwards)."""
        db = self.storage.sql
        if spec.debounce is not None:
            rows = self._rows(sql.DEBOUNCE, (
                spec.type, spec.payload, spec.priority, spec.run_at, spec.max_retries,
                spec.timeout, spec.backoff, spec.group, spec.rate_key, spec.dedupe_key))
            if rows:
                rows[0]["payload"] = codec.passed_on(rows[0]["payload"])
                return rows[0], "debounced"
        elif spec.unique_for is not None:
            rows = self._rows(sql.UNIQUE_HOLDER, (spec.dedupe_key, now - spec.unique_for))
            if rows:
                rows[0]["payload"] = codec.passed_on(rows[0]["payload"])
                return rows[0], "duplicate"
        status, waiting, broken = "pending", 0, None
        for parent in spec.depends_on:
            found = db.execute(sql.PARENT_STATUS, (parent,)).fetchone()
            if found is None:
                raise dotdo.NotFoundError(
                    f"depends_on names job {parent!r}, which queue {self.id!r} does not hold: "
                    "enqueue parents first, or earlier in the same enqueue_many or flow")
            if found[0] in ("failed", "cancelled"):
                broken = broken or (parent, found[0])
            waiting += found[0] != "completed"
        if waiting:
            status = "waiting"
        # Traced: its enqueue span, whose context its attempts run under, whenever and
        # wherever they run (None when tracing is off).
        trace = tracing.producer(self.id, spec.id, spec.type)
        if spec.plain:
            inserted = db.execute(sql.INSERT_PLAIN, (
                spec.id, spec.type, spec.payload, spec.priority, spec.run_at, spec.max_retries,
                spec.timeout, spec.created, spec.uid, trace)).rowcount
            if not inserted:
                return None, "existing"
            self._event("Job.enqueued", {"$id": spec.id, "type": spec.type})
            return _new_row(spec, trace=trace), "added"
        inserted = db.execute(sql.INSERT_JOB, (
            spec.id, spec.type, spec.payload, status, spec.priority, spec.run_at,
            spec.max_retries, spec.timeout, spec.created, spec.uid, spec.backoff, spec.group,
            spec.rate_key, spec.dedupe_key, waiting,
            spec.on_parent_failure if spec.depends_on else None, trace)).rowcount
        if not inserted:
            return None, "existing"
        if spec.depends_on:
            self._has_deps = True
            for parent in spec.depends_on:
                db.execute(sql.INSERT_DEP, (parent, spec.uid))
        if spec.group:
            self._grouped = True
        self._event("Job.enqueued", {"$id": spec.id, "type": spec.type})
        row = _new_row(spec, status, waiting, trace)
        if broken is not None:  # a parent failed already: this job follows it now
            self._follow_parent(spec.id, spec.uid, spec.on_parent_failure, *broken, now)
            return None, "added"
        return row, "added"

    def enqueue_flow(self, flow: JobFlow) -> dict[str, Any]:
        """Enqueue a job with its children, and theirs, in one transaction: ``flow``
        is a job (``{"type", "payload", **options}``) with ``"children": [flows]``;
        each child depends on its parent (and runs once it completed; reads its
        output with ``dotdo.parent_results()``). Returns the tree as
        ``{"job": Job, "children": [...]}``."""
        flat: builtins.list[dict[str, Any]] = []
        shape: builtins.list[tuple[int, int | None]] = []  # (index, parent index)

        def walk(node: Any, parent: int | None, where: str) -> None:
            if not isinstance(node, dict):
                raise ValueError(f"a flow is a dict like {{'type': 'x', 'children': [...]}}, "
                                 f"not {type(node).__name__} at {where}")
            job = {k: v for k, v in node.items() if k != "children"}
            job.setdefault("job_id", uuid.uuid4().hex)
            if parent is not None:
                job["depends_on"] = [flat[parent]["job_id"], *(job.get("depends_on") or [])]
            flat.append(job)
            here = len(flat) - 1
            shape.append((here, parent))
            children = node.get("children") or []
            if not isinstance(children, builtins.list):
                raise ValueError(f"children at {where} is a list of flows, not {children!r}")
            if len(flat) + len(children) > MAX_BATCH:
                raise dotdo.LimitError(f"a flow holds at most {MAX_BATCH:,} jobs")
            for i, child in enumerate(children):
                walk(child, here, f"{where}.children[{i}]")

        walk(flow, None, "the root")
        jobs = self.enqueue_many(cast(builtins.list[JobEntry], flat))  # parse checks each
        nodes: builtins.list[dict[str, Any]] = [{"job": job, "children": []} for job in jobs]
        for here, parent in shape:
            if parent is not None:
                nodes[parent]["children"].append(nodes[here])
        return nodes[0]

    # -- reading ----------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        rows = self._rows(sql.SELECT_JOB, (job_id,))
        return self._thing(rows[0]) if rows else None

    def list(self, status: str | None = None, type: str | None = None, limit: int = 100,
             cursor: int | None = None, group: str | None = None, since: float | None = None
             ) -> JobPage:
        """Jobs in enqueue order, ``limit`` (at most 1,000) at a time:
        ``{"jobs": [...], "cursor": next}``; pass ``cursor`` back for the next page
        (stable while jobs are added). ``since``: enqueued at or after that time."""
        where, params = self._where(status, type, group, since)
        where.append("seq > ?")
        params.append(cursor or 0)
        limit = number("limit", limit, minimum=1, allow_none=False, integer=True)
        if limit > MAX_PAGE:
            raise dotdo.LimitError(f"list() returns at most {MAX_PAGE:,} jobs a page, not "
                                   f"{limit:,}: page with the cursor it returns")
        rows = self._rows(f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                          (*params, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return {"jobs": [self._thing(r) for r in rows],
                "cursor": rows[-1]["seq"] if more else None}

    def count(self, status: str | None = None, type: str | None = None,
              group: str | None = None, since: float | None = None) -> int:
        """How many jobs ``list`` would page through with these filters."""
        where, params = self._where(status, type, group, since)
        return self._one(f"SELECT count(*) FROM jobs WHERE {' AND '.join(where) or '1'}",
                         tuple(params))

    def _where(self, status: str | None, type: str | None, group: str | None,
               since: float | None) -> tuple[builtins.list[str], builtins.list[Any]]:
        """SQL conditions and their parameters for the filters of ``list``."""
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if status is not None:
            status = JobStatus(status).value  # ValueError names the statuses
            if status in ("delayed", "pending"):
                where.append(f"status = 'pending' AND error IS NULL AND run_at "
                             f"{'>' if status == 'delayed' else '<='} ?")
                params.append(self._now())
            elif status == "retrying":
                where.append("status = 'pending' AND error IS NOT NULL")
            elif status in ("stuck", "running"):
                where.append(f"status = 'running' AND stuck_since IS "
                             f"{'NOT NULL' if status == 'stuck' else 'NULL'}")
            else:
                where.append("status = ?")
                params.append(status)
        for column, value in (("type", type), ("grp", group)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("created >= ?")
            params.append(number("since", since, minimum=0, allow_none=False))
        return where, params

    def attempts(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """Every run of a job, oldest first: ``{"attempt", "worker", "startedAt",
        "finishedAt", "outcome", "error", "trace"}``, outcome one of ``failed``,
        ``cancelled``, ``lost`` (its worker went silent), ``crashed`` (its worker's
        process died), ``released`` (its worker stopped), ``parked`` (it ended at a
        durable wait: error says which), ``running``, ``completed``."""
        row = self._must_row(job_id)
        names = ("worker", "startedAt", "finishedAt", "outcome", "error", "trace")
        out = [dict(zip(names, r)) for r in
               self.storage.sql.execute(sql.SELECT_ATTEMPTS, (row["uid"],)).fetchall()]
        if row["status"] in ("running", "completed"):
            out.append({"worker": row["worker"], "startedAt": row["started"],
                        "finishedAt": row["finished"], "outcome": row["status"],
                        "error": None, "trace": None})
        for n, attempt in enumerate(out, 1):
            attempt["attempt"] = n
        return out

    def logs(self, job_id: str, limit: int = 1000) -> builtins.list[dict[str, Any]]:
        """What a job's handler logged while its runs ran, oldest first (at most
        ``limit`` lines): ``{"attempt", "t", "level", "logger", "message", "worker",
        "traceId", "spanId"}``, ``t`` in epoch seconds. Kept until the job is."""
        row = self._must_row(job_id)
        names = ("attempt", "t", "level", "logger", "message", "worker", "traceId", "spanId")
        return [dict(zip(names, r)) for r in self.storage.sql.execute(
            sql.SELECT_JOB_LOGS, (row["uid"], max(0, int(limit)))).fetchall()]

    def get_metrics(self) -> Metrics:
        counts = {s: (n, stuck, delayed or 0, retrying or 0) for s, n, stuck, delayed, retrying
                  in self.storage.sql.execute(sql.COUNTS, (self._now(),)).fetchall()}
        pending, _, delayed, retrying = counts.get("pending", (0, 0, 0, 0))
        running, stuck, _, _ = counts.get("running", (0, 0, 0, 0))
        return Metrics(
            pending=pending - delayed - retrying, running=running - stuck,
            completed=counts.get("completed", (0,))[0], failed=counts.get("failed", (0,))[0],
            delayed=delayed, retries=self._one(sql.RETRIES),
            cancelled=counts.get("cancelled", (0,))[0], stuck=stuck,
            paused=self._paused, concurrency=self._concurrency,
            retrying=retrying, waiting=counts.get("waiting", (0,))[0],
            sleeping=counts.get("sleeping", (0,))[0],
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """``{type: {status: count}}`` over every job the queue holds (stored
        statuses: ``pending`` includes delayed and retrying jobs)."""
        out: dict[str, dict[str, int]] = {}
        rows = self.storage.sql.execute("SELECT type, status, count(*) FROM jobs GROUP BY 1, 2")
        for job_type, status, n in rows.fetchall():
            out.setdefault(job_type, {})[status] = n
        return out

    def result(self, job_id: str) -> dict[str, Any] | None:
        """The job's ``Result`` Thing once it completed, else None."""
        rows = self._rows(sql.SELECT_JOB, (job_id,))
        if not rows or rows[0]["status"] != "completed":
            return None
        return result_thing(job_id, codec.passed_on(rows[0]["output"]),
                            rows[0]["finished"])

    async def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the job ends: its ``Result`` Thing (as ``result`` gives) once it
        completed; ``dotdo.JobError`` (its error, ``job_id``, ``status``; the subclass
        its error names, such as ``dotdo.WorkerCrashError``) if it ended
        failed (its retries spent) or cancelled; ``TimeoutError`` after ``timeout`` s
        (None: no limit; 0: only look); ``dotdo.NotFoundError`` for an unknown job, or
        one deleted (purge, retention) before it was read. No polling: the call waits
        on a future that the job's end wakes, after the end is committed."""
        if not isinstance(job_id, str):
            raise ValueError(f"wait() takes a job id (a str, the Job's '$id'), not {job_id!r}")
        if timeout is not None:
            try:
                timeout = number("timeout", timeout, minimum=0)
            except ValueError as exc:
                raise ValueError(f"{exc}: give wait() the seconds to wait for, or None to "
                                 "wait until the job ends") from None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        seen = False
        while True:
            row = self.storage.sql.execute(sql.SELECT_END, (job_id,)).fetchone()
            if row is None:
                raise dotdo.NotFoundError(
                    f"job {job_id!r} left queue {self.id!r} (purge or retention) before "
                    "wait() read how it ended: keep finished jobs longer (configure("
                    "keep_completed=, keep_failed=))" if seen else
                    f"no job {job_id!r} in queue {self.id!r}")
            status, output, finished, error = row
            if status == "completed":
                return result_thing(job_id, codec.passed_on(output), finished)
            if status in FINISHED:
                raise dotdo.JobError.of(error or f"Cancelled: job {job_id!r} was cancelled",
                                        job_id=job_id, status=status)
            seen = True
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {job_id!r} in queue {self.id!r} did not end within "
                                   f"{timeout:g} s (it is {status}): wait again, or give a "
                                   "longer timeout")
            if self._waiting >= MAX_WAITERS:
                raise dotdo.LimitError(
                    f"queue {self.id!r} has {MAX_WAITERS} wait() calls waiting already, the "
                    "most it takes (each holds one of its host's concurrent calls): wait on "
                    "fewer jobs at once, or poll result() for the rest")
            future = loop.create_future()
            futures = self._waiters.setdefault(job_id, set())
            futures.add(future)
            self._waiting += 1
            try:
                # Woken by the job's end (Flows._job_ended), then read again above.
                async with asyncio.timeout(left):
                    await future
            except TimeoutError:
                pass  # the row says whether it ended meanwhile; else the deadline passed
            finally:  # a timeout, or the caller's cancel: no future stays behind
                futures.discard(future)
                self._waiting -= 1
                if not futures and self._waiters.get(job_id) is futures:
                    del self._waiters[job_id]

    def waiters(self) -> dict[str, int]:
        """What waits on this queue's process now: ``calls`` (``wait`` calls), ``jobs``
        (the jobs they wait on) and ``claims`` (idle workers' long-poll claims, which
        an enqueue hands its jobs to). A restarted queue starts with none."""
        return {"calls": self._waiting, "jobs": len(self._waiters), "claims": len(self._polls)}

    def _must_row(self, job_id: str) -> dict[str, Any]:
        """The job's row as stored, or NotFoundError."""
        rows = self._rows(sql.SELECT_JOB, (job_id,))
        if not rows:
            raise dotdo.NotFoundError(f"no job {job_id!r} in queue {self.id!r}")
        return rows[0]

    def _must(self, job_id: str) -> Job:
        return self._thing(self._must_row(job_id))

    # -- operating --------------------------------------------------------------------

    def retry(self, job_id: str) -> Job:
        """Send a failed job back to the queue (out of the dead-letter list), with a
        fresh set of retries; its earlier attempts stay in ``attempts``."""
        job = self._must(job_id)
        if job["status"] != "failed":
            raise ValueError(f"job {job_id!r} is {job['status']}: only failed jobs can be retried")
        with self.storage.transaction():
            self.storage.sql.execute(sql.RETRY_FAILED, (self._now(), job_id))
            self._count_gone("failed", 1)
        self._ready.set()
        return self._must(job_id)

    def retry_all(self, type: str | None = None, since: float | None = None) -> int:
        """``retry`` every failed job (of ``type``, enqueued since ``since``); returns
        how many went back to the queue."""
        ids = [job["$id"] for job in self._every("failed", type, since)]
        for job_id in ids:
            self.retry(job_id)
        return len(ids)

    def cancel_all(self, status: str, type: str | None = None, since: float | None = None) -> int:
        """``cancel`` every job in ``status`` (not a finished one; of ``type``, enqueued
        since ``since``); returns how many were cancelled or asked to stop."""
        if JobStatus(status).value in FINISHED:
            raise ValueError(f"jobs that are {status} are finished: cancel_all takes pending, "
                             "delayed, retrying, waiting, running or stuck")
        ids = [job["$id"] for job in self._every(status, type, since)]
        for job_id in ids:
            self.cancel(job_id)
        return len(ids)

    def _every(self, status: str, type: str | None, since: float | None
               ) -> builtins.list[Job]:
        """Every job ``list`` finds with these filters, all pages."""
        out: builtins.list[Job] = []
        cursor = None
        while True:
            page = self.list(status=status, type=type, since=since, limit=MAX_PAGE, cursor=cursor)
            out += page["jobs"]
            if (cursor := page["cursor"]) is None:
                return out

    def cancel(self, job_id: str) -> Job:
        """Cancel a job not yet finished. One waiting to run ends ``cancelled`` at once
        (and its children follow their ``on_parent_failure``); a running one is asked
        to stop (an async handler is cancelled, a sync one sees ``dotdo.cancelled()``)
        and ends ``cancelled`` unless it completes first."""
        row, now = self._must_row(job_id), self._now()
        if row["status"] in ("pending", "waiting", "sleeping"):
            with self.storage.transaction():
                self._end(job_id, row["uid"], "cancelled", row["attempts"], row["error"],
                          row["trace"], now)
        elif row["status"] == "running":
            self.storage.sql.execute(sql.ASK_CANCEL, (now, job_id))
            self._spawn(self._tell_worker(row["worker"], job_id))
        else:
            raise ValueError(f"job {job_id!r} is {row['status']}: only jobs not yet finished "
                             "(pending, delayed, retrying, waiting, sleeping, running) can be cancelled")
        return self._must(job_id)

    async def _tell_worker(self, worker: str, job_id: str) -> None:
        """Ask a running job's worker to stop it now (heartbeats tell it too)."""
        try:
            await dotdo.Worker(worker).cancel_job(self.id, job_id)
        except Exception:  # noqa: BLE001 - its next heartbeat carries the request
            pass

    def purge(self, status: str | None = None, older_than: float | None = None) -> int:
        """Delete finished jobs (completed, failed, cancelled; or one ``status`` of
        those), optionally only those finished more than ``older_than`` s ago; their
        attempts go, and their steps in the journals of the workers serving this queue."""
        statuses = FINISHED if status is None else (JobStatus(status).value,)
        if not set(statuses) <= set(FINISHED):
            raise ValueError(f"purge removes finished jobs only ({', '.join(FINISHED)}), "
                             f"not {status!r}")
        cutoff = self._now() - (number("older_than", older_than, minimum=0) or 0)
        gone = 0
        for one in statuses:
            while rows := self.storage.sql.execute(
                    sql.OVER_AGE, (one, math.nextafter(cutoff, math.inf), RETAIN_BATCH)).fetchall():
                gone += self._delete_jobs(rows, one)
        return gone

    def pause(self) -> None:
        """Stop handing out jobs; running ones finish."""
        self._paused = True
        self.storage.put("paused", True)

    def resume(self) -> None:
        self._paused = False
        self.storage.put("paused", False)
        self._ready.set()

    def configure(self, concurrency: int | None = _UNCHANGED,
                  lease_timeout: float = _UNCHANGED, rate: str | None = _UNCHANGED,
                  key_rate: str | None = _UNCHANGED, group_concurrency: int | None = _UNCHANGED,
                  keep_completed: Any = _UNCHANGED, keep_failed: Any = _UNCHANGED
                  ) -> dict[str, Any]:
        """Set the queue's limits; options not given stay as they are; returns them all.

        ``concurrency``: at most that many jobs running at once across all workers
        (None: no limit). ``lease_timeout``: seconds a worker may go without a heartbeat
        before its jobs go to others (default 30; workers beat every third of it).
        ``rate``: at most that many job starts in any window (``"100/s"``, ``"6000/min"``,
        ``"10/h"``, ``"50/10s"``); ``key_rate``: the same for each ``rate_key`` of jobs.
        ``group_concurrency``: at most that many running jobs per ``group``.
        ``keep_completed`` / ``keep_failed`` (failed and cancelled): how many finished
        jobs stay, a count or ``{"count": n, "age": seconds}``; None keeps all."""
        # Every option is checked before any is stored: a bad one changes nothing.
        checked: dict[str, Any] = {}
        if concurrency is not _UNCHANGED:
            checked["concurrency"] = number("concurrency", concurrency, minimum=1, integer=True)
        if lease_timeout is not _UNCHANGED:
            checked["lease_timeout"] = float(number(
                "lease_timeout", lease_timeout, minimum=0.5, allow_none=False,
                maximum=MAX_LEASE_TIMEOUT, bound=span(MAX_LEASE_TIMEOUT),
                hint="a dead worker's jobs wait that long before others take them"))
        if rate is not _UNCHANGED:
            checked["rate"] = Rate.parse("rate", rate) and rate
        if key_rate is not _UNCHANGED:
            checked["key_rate"] = Rate.parse("key_rate", key_rate) and key_rate
        if group_concurrency is not _UNCHANGED:
            checked["group_concurrency"] = number("group_concurrency", group_concurrency,
                                                  minimum=1, integer=True)
        for name, value in (("keep_completed", keep_completed), ("keep_failed", keep_failed)):
            if value is not _UNCHANGED:
                checked[name] = Keep.parse(name, value).as_dict()
        with self.storage.transaction():
            for name, value in checked.items():
                self.storage.put(name, value)
        self._load_settings()
        self._ready.set()
        self._retain_now.set()
        return self.settings()

    def settings(self) -> dict[str, Any]:
        """The queue's limits and retention, as ``configure`` sets them."""
        get = self.storage.get
        return {"concurrency": self._concurrency, "lease_timeout": self._lease_timeout,
                "rate": get("rate"), "key_rate": get("key_rate"),
                "group_concurrency": self._group_limit,
                "keep_completed": self._keep["completed"].as_dict(),
                "keep_failed": self._keep["failed"].as_dict()}

    def _load_settings(self) -> None:
        """The limits and retention ``configure`` stored (or their defaults)."""
        get = self.storage.get
        self._concurrency = get("concurrency")
        self._lease_timeout = float(get("lease_timeout", LEASE_TIMEOUT))
        self._group_limit = get("group_concurrency")
        self._limiter.configure(Rate.parse("rate", get("rate")),
                                Rate.parse("key_rate", get("key_rate")))
        self._keep = {"completed": Keep(**get("keep_completed", KEEP_COMPLETED.as_dict())),
                      "failed": Keep(**get("keep_failed", KEEP_FAILED.as_dict()))}

    async def _watch_listeners(self) -> None:
        """Ask the App every few seconds whether anyone handles Job events."""
        app = dotdo.App(dotdo.DEFAULT_APP)
        while True:
            try:
                self._listened = await app.listens("Job")
            except Exception:  # noqa: BLE001 - the App is restarting: keep sending
                self._listened = True
            await asyncio.sleep(_LISTEN_EVERY)

    async def _forward_events(self) -> None:
        """Forward the outbox to App("default") in batches, deleting what it took.
        A batch sent again after a crash carries the same event ids: the App drops
        the ones it has."""
        app = dotdo.App(dotdo.DEFAULT_APP)
        failures = 0
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            try:
                await self._forward_outbox(app)
            except Exception:
                # The outbox could not be read or trimmed (a write the disk refused):
                # the events stay in it and go later, once it can.
                failures += 1
                log.warning("dotdo: queue %s could not forward its events (%d in a row); "
                            "trying again", self.id, failures, exc_info=True)
                self._outbox_ready.set()
                await asyncio.sleep(LOOP_RETRY.delay(failures))
            else:
                failures = 0

    async def _forward_outbox(self, app: Any) -> None:
        while True:
            rows = self.storage.sql.execute(sql.SELECT_OUTBOX, (_OUTBOX_BATCH,)).fetchall()
            if not rows:
                return
            try:
                # Leniently: a value only the App's handlers can rebuild passes as it is.
                await app.emit_many([[t, codec.decode(d, lenient=True), f"{self._instance}-{seq}"]
                                     for seq, t, d in rows])
            except Exception:  # noqa: BLE001 - the App is restarting: try again soon
                await asyncio.sleep(1.0)
                continue
            self.storage.sql.execute(sql.DELETE_OUTBOX, (rows[-1][0],))
