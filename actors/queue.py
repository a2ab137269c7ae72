"""``Queue``: a job queue as a durable object.

Jobs live in the queue's own SQLite table. Workers *pull*: ``claim`` leases a batch
of ready jobs to a worker (waiting up to a second when there are none), ``complete``
records a batch of outcomes in one transaction. Enqueueing, claiming and completing
all take many jobs per call and many rows per transaction.

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
import json
import logging
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

import dotdo
from actors import metrics
from actors import queue_sql as sql
from actors.jobs import DEFAULT_TIMEOUT, JobStatus, Metrics, job_thing, result_thing, step_id
from actors.limits import Limiter
from actors.options import MAX_PAYLOAD, JobSpec, Keep, Rate, number, retry_delay
from dotdo import codec

__all__ = ["Queue", "DEFAULT_TIMEOUT", "MAX_PAYLOAD", "MAX_BATCH", "MAX_PAGE", "KEEP_COMPLETED",
           "KEEP_FAILED"]

log = logging.getLogger("dotdo")

MAX_BATCH = 10_000  # jobs per enqueue_many
MAX_PAGE = 1_000  # jobs per list() page
LEASE_TIMEOUT = 30.0
# Retention unless configured: finished jobs do not pile up without limit.
KEEP_COMPLETED = Keep(count=10_000, age=7 * 86_400.0)
KEEP_FAILED = Keep(count=100_000, age=30 * 86_400.0)
RETAIN_EVERY = 5.0
_RETAIN_BATCH = 1_000

_FINISHED = ("completed", "failed", "cancelled")
_OUTBOX_BATCH = 500
_LISTEN_EVERY = 2.0
_UNCHANGED: Any = object()
_NEVER = math.inf


def _new_row(spec: JobSpec, status: str = "pending", waiting_on: int = 0) -> dict[str, Any]:
    """A job as it was just inserted from ``spec`` (payload decoded, as read)."""
    return {"id": spec.id, "type": spec.type, "payload": codec.decode(spec.payload),
            "status": status, "priority": spec.priority, "run_at": spec.run_at, "attempts": 0,
            "max_retries": spec.max_retries, "timeout": spec.timeout, "error": None,
            "created": spec.created, "finished": None, "lease": 0, "crashes": 0,
            "uid": spec.uid, "grp": spec.group, "rate_key": spec.rate_key,
            "dedupe_key": spec.dedupe_key, "waiting_on": waiting_on}


def _failure(value: Any) -> tuple[str, str | None, bool, float | None]:
    """``(error, traceback, final, worker's backoff)`` of a reported failure."""
    if isinstance(value, dict):
        return (str(value.get("error")), value.get("trace"), bool(value.get("final")),
                value.get("backoff"))
    return str(value), None, False, None  # a worker of the first release: a str


class Queue(dotdo.DurableObject):
    """A durable job queue; see the module docstring."""

    def __init__(self) -> None:
        db = self.storage.sql
        for ddl in sql.DDL:
            db.execute(ddl)
        have = {row[1] for row in db.execute("PRAGMA table_info(jobs)").fetchall()}
        for name, decl in sql.JOB_COLUMNS:
            if name not in have:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
        for ddl in sql.INDEXES:
            db.execute(ddl)
        get = self.storage.get
        self._paused = bool(get("paused", False))
        self._concurrency = get("concurrency")
        self._lease_timeout = float(get("lease_timeout", LEASE_TIMEOUT))
        self._group_limit: int | None = get("group_concurrency")
        self._keep = {"completed": Keep(**get("keep_completed", KEEP_COMPLETED.as_dict())),
                      "failed": Keep(**get("keep_failed", KEEP_FAILED.as_dict()))}
        self._limiter = Limiter()
        self._limiter.configure(Rate.parse("rate", get("rate")),
                                Rate.parse("key_rate", get("key_rate")))
        now = time.time()
        windows = [r.seconds for r in (Rate.parse("rate", get("rate")),
                                       Rate.parse("key_rate", get("key_rate"))) if r]
        if windows:  # the windows as they were when the queue last ran
            since = now - max(windows)
            self._limiter.rebuild(db.execute(sql.RECENT_STARTS, (since, since)), now)
        # Outbox events get ids from this and their row number: the same id however
        # often a forward is repeated, and new ids if the file is ever recreated.
        self._instance = get("instance")
        if self._instance is None:
            self._instance = uuid.uuid4().hex[:12]
            self.storage.put("instance", self._instance)
        # Workers could not renew their leases while the queue was down.
        db.execute(sql.GRACE, (now + self._lease_timeout,))
        self._grouped = db.execute(sql.ANY_GROUPED).fetchone() is not None
        self._has_deps = db.execute(sql.ANY_DEPS).fetchone() is not None
        self._rr_after: str | None = None  # the group served last: fair claims go on after it
        self._depth_at = 0.0
        self._expiry_check_at = 0.0
        self._ready = asyncio.Event()
        self._outbox_ready = asyncio.Event()
        self._outbox_ready.set()  # forward what a previous life left behind
        self._retain_now = asyncio.Event()
        self._listened = True  # until the App says otherwise
        self._tasks: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        # Kept: the loop holds tasks only weakly.
        self._loops = [loop.create_task(self._forward_events()),
                       loop.create_task(self._watch_listeners()),
                       loop.create_task(self._reap()),
                       loop.create_task(self._wake_workers()),
                       loop.create_task(self._retain())]

    # -- helpers --------------------------------------------------------------------

    def _rows(self, statement: str, params: tuple = ()) -> list[dict[str, Any]]:
        cursor = self.storage.sql.execute(statement, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _one(self, statement: str, params: tuple = ()) -> Any:
        return self.storage.sql.execute(statement, params).fetchone()[0]

    def _thing(self, row: dict[str, Any]) -> dict[str, Any]:
        row = {**row, "payload": codec.decode(row["payload"])}
        return job_thing(row, time.time())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _gauge_depth(self) -> None:
        if time.monotonic() - self._depth_at < 1.0:  # a count per second is plenty
            return
        self._depth_at = time.monotonic()
        ready = self._one("SELECT count(*) FROM jobs WHERE status = 'pending' AND run_at <= ?",
                          (time.time(),))
        metrics.DEPTH.set(ready, tags={"queue": self.id})

    def _event(self, event_type: str, data: Any) -> None:
        if not self._listened:  # nobody handles Job events: sending them is waste
            return
        self.storage.sql.execute(sql.INSERT_OUTBOX, (event_type, codec.encode(data)))
        self._outbox_ready.set()

    # -- enqueueing -------------------------------------------------------------------

    def enqueue(self, type: str, payload: Any = None, **options: Any) -> dict[str, Any]:
        """Add a job and return it (a ``Job`` Thing) with ``enqueued`` saying what
        happened: ``added``; ``existing`` (its ``job_id`` is there: nothing added);
        ``debounced`` (a job with its ``dedupe_key`` not yet started took the new
        payload and runs ``debounce`` s from now); ``duplicate`` (one with its
        ``dedupe_key`` was enqueued within ``unique_for`` s: that one is returned).
        Options: see ``docs/queue.md``."""
        return self.enqueue_many([{"type": type, "payload": payload, **options}])[0]

    def enqueue_many(self, jobs: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """Add up to 10,000 jobs in one transaction; every job is checked before any
        is written. A job may depend on one earlier in the list."""
        if len(jobs) > MAX_BATCH:
            raise dotdo.LimitError(f"enqueue_many takes at most {MAX_BATCH:,} jobs per call, got "
                                   f"{len(jobs):,}: send them in several calls")
        now = time.time()
        specs = [JobSpec.parse(dict(spec), now) for spec in jobs]
        if len(specs) == 1 and specs[0].plain and not self._listened:
            spec = specs[0]  # the hot path: one statement, atomic by itself
            cursor = self.storage.sql.execute(sql.INSERT_PLAIN, (
                spec.id, spec.type, spec.payload, spec.priority, spec.run_at, spec.max_retries,
                spec.timeout, spec.created, spec.uid))
            added: builtins.list[tuple[dict[str, Any] | None, str]] = [
                (_new_row(spec), "added") if cursor.rowcount else (None, "existing")]
        else:
            with self.storage.transaction():
                added = [self._add(spec, now) for spec in specs]
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
                rows[0]["payload"] = codec.decode(rows[0]["payload"])
                return rows[0], "debounced"
        elif spec.unique_for is not None:
            rows = self._rows(sql.UNIQUE_HOLDER, (spec.dedupe_key, now - spec.unique_for))
            if rows:
                rows[0]["payload"] = codec.decode(rows[0]["payload"])
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
        inserted = db.execute(sql.INSERT_JOB, (
            spec.id, spec.type, spec.payload, status, spec.priority, spec.run_at,
            spec.max_retries, spec.timeout, spec.created, spec.uid, spec.backoff, spec.group,
            spec.rate_key, spec.dedupe_key, waiting,
            spec.on_parent_failure if spec.depends_on else None)).rowcount
        if not inserted:
            return None, "existing"
        if spec.depends_on:
            self._has_deps = True
            for parent in spec.depends_on:
                db.execute(sql.INSERT_DEP, (parent, spec.uid))
        if spec.group:
            self._grouped = True
        self._event("Job.enqueued", {"$id": spec.id, "type": spec.type})
        row = _new_row(spec, status, waiting)
        if broken is not None:  # a parent failed already: this job follows it now
            self._follow_parent(spec.id, spec.uid, spec.on_parent_failure, *broken, now)
            return None, "added"
        return row, "added"

    def enqueue_flow(self, flow: dict[str, Any]) -> dict[str, Any]:
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
        jobs = self.enqueue_many(flat)
        nodes: builtins.list[dict[str, Any]] = [{"job": job, "children": []} for job in jobs]
        for here, parent in shape:
            if parent is not None:
                nodes[parent]["children"].append(nodes[here])
        return nodes[0]

    # -- reading ----------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows(sql.SELECT_JOB, (job_id,))
        return self._thing(rows[0]) if rows else None

    def list(self, status: str | None = None, type: str | None = None, limit: int = 100,
             cursor: int | None = None, group: str | None = None) -> dict[str, Any]:
        """Jobs in enqueue order, ``limit`` (at most 1,000) at a time:
        ``{"jobs": [...], "cursor": next}``; pass ``cursor`` back for the next page
        (stable while jobs are added)."""
        where: builtins.list[str] = ["seq > ?"]
        params: builtins.list[Any] = [cursor or 0]
        if status is not None:
            status = JobStatus(status).value  # ValueError names the statuses
            if status in ("delayed", "pending"):
                where.append(f"status = 'pending' AND error IS NULL AND run_at "
                             f"{'>' if status == 'delayed' else '<='} ?")
                params.append(time.time())
            elif status == "retrying":
                where.append("status = 'pending' AND error IS NOT NULL")
            elif status in ("stuck", "running"):
                where.append(f"status = 'running' AND stuck_since IS "
                             f"{'NOT NULL' if status == 'stuck' else 'NULL'}")
            else:
                where.append("status = ?")
                params.append(status)
        if type is not None:
            where.append("type = ?")
            params.append(type)
        if group is not None:
            where.append("grp = ?")
            params.append(group)
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

    def attempts(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """Every attempt of a job, oldest first: ``{"attempt", "worker", "startedAt",
        "finishedAt", "outcome", "error", "trace"}``, outcome one of ``failed``,
        ``cancelled``, ``lost`` (its worker went silent), ``crashed`` (its worker's
        process died), ``released`` (its worker stopped), ``running``, ``completed``."""
        job = self._rows(sql.SELECT_JOB, (job_id,))
        if not job:
            raise dotdo.NotFoundError(f"no job {job_id!r} in queue {self.id!r}")
        row = job[0]
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

    def get_metrics(self) -> Metrics:
        counts = {s: (n, stuck, delayed or 0, retrying or 0) for s, n, stuck, delayed, retrying
                  in self.storage.sql.execute(sql.COUNTS, (time.time(),)).fetchall()}
        pending, _, delayed, retrying = counts.get("pending", (0, 0, 0, 0))
        running, stuck, _, _ = counts.get("running", (0, 0, 0, 0))
        return Metrics(
            pending=pending - delayed - retrying, running=running - stuck,
            completed=counts.get("completed", (0,))[0], failed=counts.get("failed", (0,))[0],
            delayed=delayed, retries=self._one(sql.RETRIES),
            cancelled=counts.get("cancelled", (0,))[0], stuck=stuck,
            paused=self._paused, concurrency=self._concurrency,
            retrying=retrying, waiting=counts.get("waiting", (0,))[0],
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
        return result_thing(job_id, codec.decode(rows[0]["output"]), rows[0]["finished"])

    def _must(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        if job is None:
            raise dotdo.NotFoundError(f"no job {job_id!r} in queue {self.id!r}")
        return job

    # -- operating --------------------------------------------------------------------

    def retry(self, job_id: str) -> dict[str, Any]:
        """Send a failed job back to the queue (out of the dead-letter list), with a
        fresh set of retries; its earlier attempts stay in ``attempts``."""
        job = self._must(job_id)
        if job["status"] != "failed":
            raise ValueError(f"job {job_id!r} is {job['status']}: only failed jobs can be retried")
        self.storage.sql.execute(sql.RETRY_FAILED, (time.time(), job_id))
        self._ready.set()
        return self._must(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job not yet finished. One waiting to run ends ``cancelled`` at once
        (and its children follow their ``on_parent_failure``); a running one is asked
        to stop (an async handler is cancelled, a sync one sees ``dotdo.cancelled()``)
        and ends ``cancelled`` unless it completes first."""
        rows = self._rows(sql.SELECT_JOB, (job_id,))
        if not rows:
            raise dotdo.NotFoundError(f"no job {job_id!r} in queue {self.id!r}")
        row, now = rows[0], time.time()
        if row["status"] in ("pending", "waiting"):
            with self.storage.transaction():
                self.storage.sql.execute(sql.END, ("cancelled", row["attempts"], now, row["error"],
                                                   row["trace"], job_id, row["uid"]))
                self._event("Job.cancelled", {"$id": job_id})
                self._children_follow(job_id, "cancelled", now)
        elif row["status"] == "running":
            self.storage.sql.execute(
                "UPDATE jobs SET cancel_requested = coalesce(cancel_requested, ?) WHERE id = ?",
                (now, job_id))
            self._spawn(self._tell_worker(row["worker"], job_id))
        else:
            raise ValueError(f"job {job_id!r} is {row['status']}: only jobs not yet finished "
                             "(pending, delayed, retrying, waiting, running) can be cancelled")
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
        statuses = _FINISHED if status is None else (JobStatus(status).value,)
        if not set(statuses) <= set(_FINISHED):
            raise ValueError(f"purge removes finished jobs only ({', '.join(_FINISHED)}), "
                             f"not {status!r}")
        cutoff = time.time() - (number("older_than", older_than, minimum=0) or 0)
        gone = 0
        for one in statuses:
            while rows := self.storage.sql.execute(
                    sql.OVER_AGE, (one, math.nextafter(cutoff, math.inf), _RETAIN_BATCH)).fetchall():
                gone += self._delete_jobs(rows)
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
            checked["lease_timeout"] = float(number("lease_timeout", lease_timeout, minimum=0.5,
                                                    allow_none=False))
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
        get = self.storage.get
        self._concurrency = get("concurrency")
        self._lease_timeout = float(get("lease_timeout", LEASE_TIMEOUT))
        self._group_limit = get("group_concurrency")
        self._limiter.configure(Rate.parse("rate", get("rate")),
                                Rate.parse("key_rate", get("key_rate")))
        self._keep = {"completed": Keep(**get("keep_completed", KEEP_COMPLETED.as_dict())),
                      "failed": Keep(**get("keep_failed", KEEP_FAILED.as_dict()))}
        self._ready.set()
        self._retain_now.set()
        return {"concurrency": self._concurrency, "lease_timeout": self._lease_timeout,
                "rate": get("rate"), "key_rate": get("key_rate"),
                "group_concurrency": self._group_limit,
                "keep_completed": self._keep["completed"].as_dict(),
                "keep_failed": self._keep["failed"].as_dict()}

    # -- dependencies ---------------------------------------------------------------

    def _parent_completed(self, job_id: str) -> None:
        if self._has_deps and self.storage.sql.execute(sql.PARENT_DONE, (job_id,)).rowcount:
            self._ready.set()

    def _children_follow(self, job_id: str, status: str, now: float) -> None:
        """A job ended failed or cancelled: the jobs waiting for it follow it, by their
        ``on_parent_failure``, and theirs follow them."""
        if not self._has_deps:
            return
        for child, uid, how in self.storage.sql.execute(sql.WAITING_CHILDREN, (job_id,)).fetchall():
            self._follow_parent(child, uid, how, job_id, status, now)

    def _follow_parent(self, job_id: str, uid: str, how: str, parent: str, parent_status: str,
                       now: float) -> None:
        status = "cancelled" if how == "cancel" else "failed"
        error = f"ParentFailed: parent job {parent!r} ended {parent_status}"
        self.storage.sql.execute(sql.END, (status, 0, now, error, None, job_id, uid))
        if status == "failed":
            self._event("Job.failed", {"$id": job_id, "error": error, "attempts": 0})
        else:
            self._event("Job.cancelled", {"$id": job_id})
        self._children_follow(job_id, status, now)

    # -- retention --------------------------------------------------------------------

    async def _retain(self) -> None:
        """Delete finished jobs past the queue's keep_completed / keep_failed, in
        batches, every few seconds (and at once after ``configure``)."""
        while True:
            try:
                await asyncio.wait_for(self._retain_now.wait(), RETAIN_EVERY)
            except TimeoutError:
                pass
            self._retain_now.clear()
            for status in _FINISHED:
                keep = self._keep["completed" if status == "completed" else "failed"]
                while True:
                    rows: builtins.list[tuple] = []
                    if keep.count is not None:
                        rows = self.storage.sql.execute(
                            sql.OVER_COUNT, (status, _RETAIN_BATCH, keep.count)).fetchall()
                    if not rows and keep.age is not None:
                        rows = self.storage.sql.execute(
                            sql.OVER_AGE, (status, time.time() - keep.age, _RETAIN_BATCH)).fetchall()
                    if not rows:
                        break
                    self._delete_jobs(rows)
                    await asyncio.sleep(0)  # other calls between batches
            await self._forget_steps()

    def _delete_jobs(self, rows: builtins.list[tuple]) -> int:
        """Delete jobs ``(seq, id, uid, worker)`` with their attempts, and note their
        steps for their workers to forget."""
        uids = json.dumps([uid for _, _, uid, _ in rows])
        with self.storage.transaction():
            gone = self.storage.sql.execute(
                sql.DELETE_SEQS, (json.dumps([seq for seq, _, _, _ in rows]),)).rowcount
            self.storage.sql.execute(sql.DELETE_ATTEMPTS, (uids,))
            self.storage.sql.execute(sql.DELETE_DEPS, (uids,))
            for _, job_id, uid, worker in rows:
                if worker is not None:
                    self.storage.sql.execute(sql.INSERT_FORGET,
                                             (worker, step_id(self.id, job_id, uid)))
        return gone

    async def _forget_steps(self) -> None:
        """Tell workers serving this queue to forget the steps of purged jobs. Workers
        that no longer serve it are not woken for this: their journals drop steps
        after a week anyway."""
        serving = set(self.storage.get("workers", []))
        while rows := self.storage.sql.execute(sql.SELECT_FORGET, (_OUTBOX_BATCH,)).fetchall():
            by_worker: dict[str, builtins.list[str]] = {}
            for _, worker, step in rows:
                if worker in serving:
                    by_worker.setdefault(worker, []).append(step)
            try:
                await asyncio.gather(*(dotdo.Worker(w).forget_steps(steps)
                                       for w, steps in by_worker.items()))
            except Exception:  # noqa: BLE001 - a worker is restarting: next round
                return
            self.storage.sql.execute(sql.DELETE_FORGET, (json.dumps([r[0] for r in rows]),))

    # -- the worker protocol ----------------------------------------------------------

    def register_worker(self, worker: str) -> None:
        """``worker`` works for this queue: it is woken whenever the queue activates."""
        workers = self.storage.get("workers", [])
        if worker not in workers:
            self.storage.put("workers", [*workers, worker])

    def unregister_worker(self, worker: str) -> None:
        workers = self.storage.get("workers", [])
        if worker in workers:
            self.storage.put("workers", [w for w in workers if w != worker])

    async def _wake_workers(self) -> None:
        """After a restart, workers come back too; those that no longer work here
        leave the list, so it holds only live assignments."""
        names = self.storage.get("workers", [])
        answers = await asyncio.gather(*(dotdo.Worker(w).serves(self.id) for w in names),
                                       return_exceptions=True)
        for name, serves in zip(names, answers):
            if serves is False:
                self.unregister_worker(name)

    async def claim(self, worker: str, n: int, wait: float = 1.0, idle: bool = False) -> dict:
        """Lease up to ``n`` ready jobs to ``worker``, waiting up to ``wait`` s for some.

        Returns ``{"jobs": [{"job", "lease", "uid", "step", "alone", "parents"}],
        "lease_timeout"}``. A suspect job (its worker died while running it) goes only
        to an ``idle`` worker, alone; once one has waited a lease timeout, the least
        busy worker gets nothing new, so that it goes idle.
        """
        n = number("n", n, minimum=0, allow_none=False, integer=True)
        deadline = time.monotonic() + number("wait", wait, minimum=0, allow_none=False)
        while True:
            now = time.time()
            if now >= self._expiry_check_at:  # not at every claim: it is a write
                self._reclaim_expired(now)
            rows, alone, blocked, opens = self._lease(worker, n, idle, now)
            if rows or time.monotonic() >= deadline:
                self._gauge_depth()
                return {"jobs": [self._grant(r, alone) for r in rows],
                        "lease_timeout": self._lease_timeout}
            self._ready.clear()
            timeout = deadline - time.monotonic()
            wake = [self._one(sql.NEXT_EXPIRY), opens]
            if not blocked:  # a job's run_at or a lease running out may give us work
                wake.append(self._one(sql.NEXT_RUN_AT, (now,)))
            for at in wake:
                if at is not None:
                    timeout = min(timeout, max(at - now, 0.001))
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                pass

    def _grant(self, row: dict[str, Any], alone: bool) -> dict[str, Any]:
        grant = {"job": self._thing(row), "lease": row["lease"], "uid": row["uid"],
                 "alone": alone, "step": step_id(self.id, row["id"], row["uid"])}
        if row.get("on_parent_failure"):  # it had parents: hand over their outputs
            grant["parents"] = {parent: codec.decode(output) for parent, output in
                                self.storage.sql.execute(sql.PARENT_RESULTS, (row["uid"],))}
        return grant

    def _lease(self, worker: str, n: int, idle: bool, now: float
               ) -> tuple[builtins.list[dict[str, Any]], bool, bool, float | None]:
        """``(rows leased, alone, blocked, opens)``: ``blocked`` when ready jobs exist but
        may not be handed out now (paused, at a concurrency limit): only an event
        (resume, configure, a job finishing) changes that, or the time ``opens``, when a
        spent rate limit allows a start again."""
        if self._paused:
            return [], False, True, None
        if self._concurrency is not None:
            n = min(n, self._concurrency - self._one(sql.RUNNING))
            if n <= 0:
                return [], False, True, None
        rate = self._limiter.queue
        if rate is not None and n > 0:
            n = min(n, rate.room(now))
            if n <= 0:
                return [], False, True, rate.opens_at()
        if n <= 0:
            return [], False, False, None
        until = now + self._lease_timeout
        rows, alone, opens = None, False, None
        suspect = self.storage.sql.execute(sql.READY_SUSPECT, (now,)).fetchone()
        if suspect is not None:
            if idle:
                rows, alone = self._rows(sql.CLAIM_SEQ, (worker, now, until, suspect[0])), True
            elif (now - suspect[1] > self._lease_timeout  # waited long enough: make room
                    and self.storage.sql.execute(sql.LEAST_BUSY).fetchone() == (worker,)):
                return [], False, True, None
        if rows is None:
            if self._grouped or self._group_limit is not None or self._limiter.key_rate:
                rows, opens = self._pick(worker, n, now, until)
            else:
                rows = self._rows(sql.CLAIM, (worker, now, until, now, n))
        if rows:
            if rate is not None:
                rate.note(now, len(rows))
            if self._limiter.key_rate:
                for row in rows:
                    if row["rate_key"] is not None:
                        self._limiter.key(row["rate_key"]).note(now)
        return rows, alone, False, opens

    def _next_group(self, after: str | None) -> str | None:
        """The next group with pending jobs after ``after``, in name order, wrapping."""
        if after is not None:
            found = self.storage.sql.execute(sql.NEXT_GROUP, (after,)).fetchone()
            if found is not None:
                return found[0]
        found = self.storage.sql.execute(sql.FIRST_GROUP).fetchone()
        return None if found is None else found[0]

    def _pick(self, worker: str, n: int, now: float, until: float
              ) -> tuple[builtins.list[dict[str, Any]], float | None]:
        """Lease up to ``n`` jobs round-robin across groups (``''``, jobs without a
        group, is one of them), by priority within each, within ``group_concurrency``
        and ``key_rate``. Returns the rows and, if a key's rate held jobs back, when
        the first such key opens again."""
        limit = self._group_limit
        running = dict(self.storage.sql.execute(sql.RUNNING_BY_GROUP).fetchall()) if limit else {}
        spent = self._limiter.spent_keys(now) if self._limiter.key_rate else []
        spent_json = json.dumps(spent)
        # The groups after the one served last, each with its first ready jobs.
        candidates: builtins.list[tuple[str, builtins.list[tuple[int, str | None]]]] = []
        first = group = self._next_group(self._rr_after)
        visits = 0
        while group is not None and len(candidates) < n and visits < 4 * n + 16:
            visits += 1
            room = n if group == "" or limit is None else min(n, limit - running.get(group, 0))
            if room > 0:
                ready = self.storage.sql.execute(
                    sql.GROUP_READY, (group, now, spent_json, room)).fetchall()
                if ready:
                    candidates.append((group, ready))
            group = self._next_group(group)
            if group == first:
                break
        if first in ("", None) and self.storage.sql.execute(sql.NEXT_GROUP, ("",)).fetchone() is None:
            self._grouped = False  # no grouped job is pending: the plain claim again
        picked: builtins.list[int] = []
        key_room: dict[str, int] = {}
        held_back: set[str] = set(spent)
        last = None
        for turn in range(n):  # one job per group per turn: round-robin
            moved = False
            for group, ready in candidates:
                if turn >= len(ready) or len(picked) >= n:
                    continue
                seq, key = ready[turn]
                if key is not None and self._limiter.key_rate:
                    left = key_room.get(key)
                    if left is None:
                        left = self._limiter.key(key).room(now)
                    if left <= 0:
                        held_back.add(key)
                        continue
                    key_room[key] = left - 1
                picked.append(seq)
                last, moved = group, True
            if not moved:
                break
        if last is not None:
            self._rr_after = last
        opens = self._limiter.next_opening(held_back) if held_back else None
        if not picked:
            return [], opens
        order = {seq: i for i, seq in enumerate(picked)}
        rows = self._rows(sql.CLAIM_SEQS, (worker, now, until, json.dumps(picked)))
        return sorted(rows, key=lambda r: order[r["seq"]]), opens

    def _reclaim_expired(self, now: float) -> None:
        self._expiry_check_at = now + min(1.0, self._lease_timeout / 4)
        first = self._one(sql.NEXT_EXPIRY)
        if first is None or first >= now:
            return  # no lease ran out: no write
        with self.storage.transaction():
            self.storage.sql.execute(sql.LOG_EXPIRED, (now, now))
            for (job_id,) in self.storage.sql.execute(sql.CANCEL_EXPIRED, (now, now)).fetchall():
                self._event("Job.cancelled", {"$id": job_id})
                self._children_follow(job_id, "cancelled", now)
            self.storage.sql.execute(sql.REQUEUE_EXPIRED, (now, now))
        self._ready.set()

    async def _reap(self) -> None:
        """Put back the jobs of workers gone silent, also while nobody claims."""
        while True:
            await asyncio.sleep(min(1.0, self._lease_timeout / 4))
            self._reclaim_expired(time.time())

    def heartbeat(self, worker: str, holding: builtins.list[str], stuck: Sequence[str] = ()
                  ) -> dict[str, Any]:
        """``worker`` is alive and still runs ``holding``: their leases go on. ``stuck``
        are those whose attempt ran past its timeout and has not stopped. Returns the
        lease timeout (so workers beat often enough) and the jobs to cancel."""
        now = time.time()
        ids, stuck_ids = json.dumps(list(holding)), json.dumps(list(stuck))
        with self.storage.transaction():
            self.storage.sql.execute(sql.EXTEND_LEASES, (now + self._lease_timeout, worker, ids))
            self.storage.sql.execute(sql.MARK_STUCK, (now, worker, stuck_ids))
            self.storage.sql.execute(sql.CLEAR_STUCK, (worker, stuck_ids))
        cancel = [r[0] for r in self.storage.sql.execute(sql.TO_CANCEL, (worker,)).fetchall()]
        return {"lease_timeout": self._lease_timeout, "cancel": cancel}

    def progress(self, worker: str, updates: builtins.list) -> int:
        """Record ``[job_id, uid, lease, fraction, message]`` progress reports of jobs
        ``worker`` runs; returns how many counted."""
        done = 0
        with self.storage.transaction():
            for job_id, uid, lease, value, message in updates:
                if self.storage.sql.execute(
                        sql.PROGRESS, (value, message, job_id, uid, worker, lease)).rowcount:
                    done += 1
                    self._event("Job.progress", {"$id": job_id, "progress": value,
                                                 "message": message})
        return done

    def complete(self, worker: str, outcomes: builtins.list) -> int:
        """Record ``[job_id, uid, lease, kind, value, ran]`` outcomes in one
        transaction, ``kind`` one of ``ok`` (value: the output), ``failed`` (value:
        ``{"error", "trace", "final", "backoff"}``) or ``released`` (not run, or
        interrupted by its worker stopping: back to pending; value: why, or None);
        ``ran`` is 1 if the handler ran. Returns how many counted; a report from a
        worker that no longer holds the job is ignored (see the module docstring)."""
        now = time.time()
        done = 0
        with self.storage.transaction():
            for job_id, uid, lease, kind, value, ran in outcomes:
                ran = 1 if ran else 0
                if kind == "ok":
                    changed = len(self.storage.sql.execute(
                        sql.COMPLETE, (ran, now, codec.encode(value), job_id, uid, lease)
                    ).fetchall())
                    if changed:
                        self._event("Job.completed", result_thing(job_id, value, now))
                        self._parent_completed(job_id)
                elif kind == "failed":
                    changed = self._fail(job_id, uid, worker, lease, value, ran, now)
                elif kind == "released":
                    if value is not None:
                        self.storage.sql.execute(sql.LOG_ATTEMPT, (
                            now, "released", value, None, job_id, uid))
                    changed = self.storage.sql.execute(
                        sql.RELEASE, (job_id, uid, worker, lease)).rowcount
                else:
                    raise ValueError(f"unknown outcome kind {kind!r}")
                done += changed
        self._ready.set()
        return done

    def _fail(self, job_id: str, uid: str | None, worker: str, lease: int, value: Any,
              ran: int, now: float) -> int:
        """A failed attempt from the lease holder: retry later, or end the job."""
        held = self.storage.sql.execute(sql.HELD, (job_id, uid, worker, lease)).fetchone()
        if held is None:
            return 0
        attempts, max_retries, cancel_requested, backoff = held
        attempts += ran
        error, trace, final, worker_backoff = _failure(value)
        outcome = "cancelled" if cancel_requested is not None else "failed"
        self.storage.sql.execute(sql.LOG_ATTEMPT, (now, outcome, error, trace, job_id, uid))
        if cancel_requested is not None:
            self._end(job_id, uid, "cancelled", attempts, error, trace, now)
        elif not final and attempts <= max_retries:
            base = json.loads(backoff) if backoff else (worker_backoff or 0.0)
            run_at = now + retry_delay(base, max(attempts, 1))
            self.storage.sql.execute(sql.RETRY_LATER, (attempts, error, trace, run_at, job_id, uid))
            self._event("Job.retrying", {"$id": job_id, "error": error, "attempts": attempts,
                                         "runAt": run_at})
        else:
            self._end(job_id, uid, "failed", attempts, error, trace, now)
        return 1

    def _end(self, job_id: str, uid: str | None, status: str, attempts: int, error: str,
             trace: str | None, now: float) -> None:
        self.storage.sql.execute(sql.END, (status, attempts, now, error, trace, job_id, uid))
        if status == "failed":
            self._event("Job.failed", {"$id": job_id, "error": error, "attempts": attempts})
        else:
            self._event("Job.cancelled", {"$id": job_id})
        self._children_follow(job_id, status, now)

    def recover(self, worker: str, crashed: builtins.list, holding: builtins.list[str]) -> dict[str, int]:
        """A worker's account after its process died, or after it lost an answer.

        ``crashed``: ``[job_id, uid, lease, alone]`` of jobs it was running when its
        process died. One running alone is taken to have killed it: it fails once that
        happened more than ``max_retries`` times; the others become suspects and run
        alone next time. Every other job leased to ``worker`` and not in ``holding``
        (the answer of a claim that never reached it) goes back to pending."""
        now = time.time()
        failed = suspects = 0
        with self.storage.transaction():
            for job_id, uid, lease, alone in crashed:
                holder = (job_id, uid, worker, lease)
                row = self.storage.sql.execute(sql.CRASHED, (1 if alone else 0, *holder)).fetchone()
                if row is None:
                    continue  # no longer this worker's
                crashes, max_retries = row
                self.storage.sql.execute(sql.LOG_ATTEMPT, (
                    now, "crashed", "WorkerCrashError: the worker's process died while running "
                    "it", None, job_id, uid))
                if crashes > max_retries:
                    error = (f"WorkerCrashError: the job's worker process died while running it "
                             f"alone, {crashes} times (os._exit, a signal such as SIGKILL or "
                             "SIGSEGV, or running out of memory); it is not tried again")
                    attempts = self._one("SELECT attempts FROM jobs WHERE id = ?", (job_id,))
                    self._end(job_id, uid, "failed", max(attempts, crashes), error, None, now)
                    failed += 1
                else:
                    suspects += self.storage.sql.execute(sql.SUSPECT, (now, *holder)).rowcount
            requeued = self.storage.sql.execute(
                sql.REQUEUE_UNHELD, (worker, json.dumps(list(holding)))).rowcount
        self._ready.set()
        return {"failed": failed, "suspects": suspects, "requeued": requeued}

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
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while True:
                rows = self.storage.sql.execute(sql.SELECT_OUTBOX, (_OUTBOX_BATCH,)).fetchall()
                if not rows:
                    break
                try:
                    await app.emit_many([[t, codec.decode(d), f"{self._instance}-{seq}"]
                                         for seq, t, d in rows])
                except Exception:  # noqa: BLE001 - the App is restarting: try again soon
                    await asyncio.sleep(1.0)
                    continue
                self.storage.sql.execute(sql.DELETE_OUTBOX, (rows[-1][0],))
