"""``Queue``: a job queue as a durable object.

Jobs live in the queue's own SQLite table. Workers *pull*: ``claim`` leases a batch
of ready jobs to a worker (waiting up to a second when there are none), ``complete``
records a batch of outcomes in one transaction. Enqueueing, claiming and completing
all take many jobs per call and many rows per transaction.

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

Events (``Job.enqueued``, ``Job.completed``, ``Job.failed``) are written to an outbox
in the same transaction as the change they describe, and forwarded to
``App("default")`` with ids that stay the same when a forward is repeated. While no
handler there listens to ``Job`` events (the queue asks every two seconds), none are
written.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import dotdo
from actors import metrics
from actors.jobs import DEFAULT_TIMEOUT, JobStatus, Metrics, job_thing, result_thing, step_id
from dotdo import codec
from dotdo.checks import is_finite, is_int
from dotdo.ids import check_id

__all__ = ["Queue", "DEFAULT_TIMEOUT", "MAX_PAYLOAD", "MAX_BATCH", "MAX_PAGE"]

MAX_PAYLOAD = 1 << 20  # bytes of encoded payload per job
MAX_BATCH = 10_000  # jobs per enqueue_many
MAX_PAGE = 1_000  # jobs per list() page
LEASE_TIMEOUT = 30.0

CREATE_JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    payload     BLOB NOT NULL,
    status      TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    run_at      REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    timeout     REAL,
    error       TEXT,
    worker      TEXT,
    created     REAL NOT NULL,
    started     REAL,
    finished    REAL,
    output      BLOB
)"""
# Columns added since the first release: an older file gets them with ALTER TABLE.
# uid tells apart two jobs that had the same id (enqueued again after a purge).
JOB_COLUMNS = (
    ("uid", "TEXT"),
    ("lease", "INTEGER NOT NULL DEFAULT 0"),
    ("lease_until", "REAL"),
    ("suspect_since", "REAL"),  # when it became a suspect; NULL: it is not one
    ("crashes", "INTEGER NOT NULL DEFAULT 0"),
    ("stuck_since", "REAL"),
)
CREATE_READY = (
    "CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (priority DESC, run_at, seq) "
    "WHERE status = 'pending'"
)
CREATE_STATUS = "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq)"
# Suspects are few: finding one must not scan every pending job.
CREATE_SUSPECTS = (
    "CREATE INDEX IF NOT EXISTS jobs_suspects ON jobs (priority DESC, run_at, seq) "
    "WHERE status = 'pending' AND suspect_since IS NOT NULL"
)
CREATE_OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    type  TEXT NOT NULL,
    data  BLOB NOT NULL
)"""

INSERT_JOB = (
    "INSERT OR IGNORE INTO jobs (id, type, payload, status, priority, run_at, max_retries, "
    "timeout, created, uid) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)"
)
SELECT_JOB = "SELECT * FROM jobs WHERE id = ?"
# Jobs by id, many at once: ids as one JSON array, so one statement serves any count.
SELECT_JOBS = "SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
_LEASED = (
    "status = 'running', worker = ?, started = ?, lease = lease + 1, lease_until = ?, "
    "stuck_since = NULL"
)
# INDEXED BY: SQLite's planner would rather search jobs_status and sort every
# pending job (3.5 ms a claim at 18,000 pending, against 6 us walking the index).
CLAIM = (
    f"UPDATE jobs SET {_LEASED} WHERE seq IN ("
    "SELECT seq FROM jobs INDEXED BY jobs_ready WHERE status = 'pending' "
    "AND suspect_since IS NULL AND run_at <= ? "
    "ORDER BY priority DESC, run_at, seq LIMIT ?) RETURNING *"
)
READY_SUSPECT = (
    "SELECT seq, suspect_since FROM jobs INDEXED BY jobs_suspects WHERE status = 'pending' "
    "AND suspect_since IS NOT NULL AND run_at <= ? "
    "ORDER BY priority DESC, run_at, seq LIMIT 1"
)
CLAIM_SEQ = f"UPDATE jobs SET {_LEASED} WHERE seq = ? RETURNING *"
_REQUEUED = "status = 'pending', worker = NULL, lease_until = NULL, stuck_since = NULL"
# A lease that ran out: its worker may have died running the job.
REQUEUE_EXPIRED = (
    f"UPDATE jobs SET {_REQUEUED}, suspect_since = coalesce(suspect_since, ?) "
    "WHERE status = 'running' AND lease_until < ?"
)
REQUEUE_UNHELD = (
    f"UPDATE jobs SET {_REQUEUED} WHERE status = 'running' AND worker = ? "
    "AND id NOT IN (SELECT value FROM json_each(?))"
)
EXTEND_LEASES = (
    "UPDATE jobs SET lease_until = ? WHERE status = 'running' AND worker = ? "
    "AND id IN (SELECT value FROM json_each(?))"
)
MARK_STUCK = (
    "UPDATE jobs SET stuck_since = coalesce(stuck_since, ?) WHERE status = 'running' "
    "AND worker = ? AND id IN (SELECT value FROM json_each(?))"
)
CLEAR_STUCK = (
    "UPDATE jobs SET stuck_since = NULL WHERE status = 'running' AND worker = ? "
    "AND stuck_since IS NOT NULL AND id NOT IN (SELECT value FROM json_each(?))"
)
# The holder of a job's current lease: the only worker whose failure counts.
_HOLDER = "id = ? AND uid IS ? AND status = 'running' AND worker = ? AND lease = ?"
COMPLETE = (
    "UPDATE jobs SET status = 'completed', attempts = ?, finished = ?, output = ?, "
    "error = NULL, lease_until = NULL, stuck_since = NULL, suspect_since = NULL "
    "WHERE id = ? AND uid IS ? AND lease >= ? AND status IN ('running', 'pending', 'failed')"
)
FAIL = (
    "UPDATE jobs SET status = 'failed', attempts = ?, finished = ?, error = ?, "
    f"lease_until = NULL, stuck_since = NULL WHERE {_HOLDER}"
)
RELEASE = f"UPDATE jobs SET {_REQUEUED} WHERE {_HOLDER}"
CRASHED = f"UPDATE jobs SET crashes = crashes + ? WHERE {_HOLDER} RETURNING crashes, max_retries"
SUSPECT = (f"UPDATE jobs SET {_REQUEUED}, suspect_since = coalesce(suspect_since, ?) "
           f"WHERE {_HOLDER}")
COUNTS = (
    "SELECT status, count(*), count(stuck_since), "
    "sum(status = 'pending' AND run_at > ?) FROM jobs GROUP BY status"
)
RETRIES = "SELECT coalesce(sum(max(attempts - 1, 0)), 0) FROM jobs"
RUNNING = "SELECT count(*) FROM jobs WHERE status = 'running'"
# The worker to go idle for a suspect: the one with the fewest jobs running.
LEAST_BUSY = (
    "SELECT worker FROM jobs WHERE status = 'running' GROUP BY worker "
    "ORDER BY count(*), worker LIMIT 1"
)
NEXT_RUN_AT = "SELECT min(run_at) FROM jobs WHERE status = 'pending' AND run_at > ?"
NEXT_EXPIRY = "SELECT min(lease_until) FROM jobs WHERE status = 'running'"
GRACE = "UPDATE jobs SET lease_until = max(coalesce(lease_until, 0), ?) WHERE status = 'running'"
INSERT_OUTBOX = "INSERT INTO outbox (type, data) VALUES (?, ?)"
SELECT_OUTBOX = "SELECT seq, type, data FROM outbox ORDER BY seq LIMIT ?"
DELETE_OUTBOX = "DELETE FROM outbox WHERE seq <= ?"

_FINISHED = ("completed", "failed", "cancelled")
_OPTIONS = {"type", "payload", "job_id", "priority", "delay", "run_at", "max_retries", "timeout"}
_OUTBOX_BATCH = 500
_LISTEN_EVERY = 2.0
_UNCHANGED: Any = object()


def _number(name: str, value: Any, *, minimum: float, allow_none: bool = True,
            integer: bool = False) -> Any:
    """``value`` if it is a finite number >= ``minimum`` (an int if ``integer``)."""
    if value is None and allow_none:
        return None
    if not is_finite(value) or (integer and not is_int(value)) or value < minimum:
        what = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} >= {minimum:g}, got {value!r}")
    return value


def _new_row(row: tuple) -> dict[str, Any]:
    """A job as ``INSERT_JOB`` just wrote it from ``row`` (payload decoded, as read)."""
    (job_id, job_type, payload, priority, run_at, max_retries, timeout, created, uid) = row
    return {"id": job_id, "type": job_type, "payload": codec.decode(payload), "status": "pending",
            "priority": priority, "run_at": run_at, "attempts": 0, "max_retries": max_retries,
            "timeout": timeout, "error": None, "created": created, "finished": None,
            "lease": 0, "crashes": 0, "uid": uid}


class Queue(dotdo.DurableObject):
    """A durable job queue; see the module docstring."""

    def __init__(self) -> None:
        db = self.storage.sql
        for ddl in (CREATE_JOBS, CREATE_OUTBOX):
            db.execute(ddl)
        have = {row[1] for row in db.execute("PRAGMA table_info(jobs)").fetchall()}
        for name, decl in JOB_COLUMNS:
            if name not in have:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
        for ddl in (CREATE_READY, CREATE_STATUS, CREATE_SUSPECTS):
            db.execute(ddl)
        self._paused = bool(self.storage.get("paused", False))
        self._concurrency = self.storage.get("concurrency")
        self._lease_timeout = float(self.storage.get("lease_timeout", LEASE_TIMEOUT))
        # Outbox events get ids from this and their row number: the same id however
        # often a forward is repeated, and new ids if the file is ever recreated.
        self._instance = self.storage.get("instance")
        if self._instance is None:
            self._instance = uuid.uuid4().hex[:12]
            self.storage.put("instance", self._instance)
        # Workers could not renew their leases while the queue was down.
        db.execute(GRACE, (time.time() + self._lease_timeout,))
        self._depth_at = 0.0
        self._expiry_check_at = 0.0
        self._ready = asyncio.Event()
        self._outbox_ready = asyncio.Event()
        self._outbox_ready.set()  # forward what a previous life left behind
        self._listened = True  # until the App says otherwise
        loop = asyncio.get_running_loop()
        # Kept: the loop holds tasks only weakly.
        self._loops = [loop.create_task(self._forward_events()),
                       loop.create_task(self._watch_listeners()),
                       loop.create_task(self._reap()),
                       loop.create_task(self._wake_workers())]

    # -- helpers --------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        cursor = self.storage.sql.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _one(self, sql: str, params: tuple = ()) -> Any:
        return self.storage.sql.execute(sql, params).fetchone()[0]

    def _thing(self, row: dict[str, Any]) -> dict[str, Any]:
        row = {**row, "payload": codec.decode(row["payload"])}
        return job_thing(row, time.time())

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
        self.storage.sql.execute(INSERT_OUTBOX, (event_type, codec.encode(data)))
        self._outbox_ready.set()

    def _job_row(self, spec: dict[str, Any], now: float) -> tuple:
        job_type = spec.get("type")
        if not isinstance(job_type, str) or not job_type:
            raise ValueError(f"a job needs a type, a non-empty str like 'email', not {job_type!r}")
        check_id(job_type)
        unknown = set(spec) - _OPTIONS
        if unknown:
            raise TypeError(f"unknown job option(s) {sorted(unknown)}; the options are "
                            f"{', '.join(sorted(_OPTIONS - {'type', 'payload'}))}")
        job_id = spec.get("job_id")
        if job_id is None:
            job_id = uuid.uuid4().hex
        elif not isinstance(job_id, str):
            raise ValueError(f"job_id is a str, not {type(job_id).__name__}")
        check_id(job_id)
        priority = spec.get("priority", 0)
        if not is_int(priority) or abs(priority) >= 2**63:
            raise ValueError(f"priority is an int (64-bit), not {priority!r}")
        delay = _number("delay", spec.get("delay"), minimum=0)
        run_at = _number("run_at", spec.get("run_at"), minimum=0)
        if delay is not None and run_at is not None:
            raise ValueError("give delay= or run_at=, not both")
        max_retries = _number("max_retries", spec.get("max_retries", 3), minimum=0,
                              allow_none=False, integer=True)
        timeout = _number("timeout", spec.get("timeout"), minimum=0.001)
        payload = codec.encode(spec.get("payload"))  # refused here: nothing written
        if len(payload) > MAX_PAYLOAD:
            raise dotdo.LimitError(
                f"the payload of job {job_id!r} is {len(payload):,} bytes encoded, over the "
                f"limit of {MAX_PAYLOAD:,}: store big data elsewhere (a file, an object's "
                "storage) and put its key in the payload")
        when = run_at if run_at is not None else now + (delay or 0)
        return (job_id, job_type, payload, priority, when, max_retries,
                timeout or DEFAULT_TIMEOUT, now, uuid.uuid4().hex[:16])

    # -- the API --------------------------------------------------------------------

    def enqueue(self, type: str, payload: Any = None, **options: Any) -> dict[str, Any]:
        """Add a job and return it (a ``Job`` Thing). ``job_id`` is an idempotency key:
        enqueuing it again returns the existing job and adds nothing. Options:
        ``priority`` (higher first), ``delay`` (s) or ``run_at`` (epoch), ``max_retries``
        (default 3), ``timeout`` (s per attempt, default 600)."""
        return self.enqueue_many([{"type": type, "payload": payload, **options}])[0]

    def enqueue_many(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add up to 10,000 jobs in one transaction; every job is checked before any
        is written."""
        if len(jobs) > MAX_BATCH:
            raise dotdo.LimitError(f"enqueue_many takes at most {MAX_BATCH:,} jobs per call, got "
                             f"{len(jobs):,}: send them in several calls")
        now = time.time()
        rows = [self._job_row(dict(spec), now) for spec in jobs]
        if len(rows) == 1 and not self._listened:  # one statement: atomic by itself
            added = [bool(self.storage.sql.execute(INSERT_JOB, rows[0]).rowcount)]
        else:
            with self.storage.transaction():
                added = [bool(self.storage.sql.execute(INSERT_JOB, row).rowcount) for row in rows]
                for row, new in zip(rows, added):
                    if new:
                        self._event("Job.enqueued", {"$id": row[0], "type": row[1]})
        if any(added):
            self._ready.set()
            self._gauge_depth()
        # A job enqueued again is returned as it is stored; a new one is what was written.
        old = [row[0] for row, new in zip(rows, added) if not new]
        stored = {r["id"]: self._thing(r) for r in self._rows(SELECT_JOBS, (json.dumps(old),))
                  } if old else {}
        return [job_thing(_new_row(row), now) if new else stored[row[0]]
                for row, new in zip(rows, added)]

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows(SELECT_JOB, (job_id,))
        return self._thing(rows[0]) if rows else None

    def list(self, status: str | None = None, type: str | None = None, limit: int = 100,
             cursor: int | None = None) -> dict[str, Any]:
        """Jobs in enqueue order, ``limit`` (at most 1,000) at a time:
        ``{"jobs": [...], "cursor": next}``; pass ``cursor`` back for the next page
        (stable while jobs are added)."""
        where: builtins.list[str] = ["seq > ?"]
        params: builtins.list[Any] = [cursor or 0]
        if status is not None:
            status = JobStatus(status).value  # ValueError names the statuses
            if status in ("delayed", "pending"):
                where.append(f"status = 'pending' AND run_at {'>' if status == 'delayed' else '<='} ?")
                params.append(time.time())
            elif status in ("stuck", "running"):
                where.append(f"status = 'running' AND stuck_since IS "
                             f"{'NOT NULL' if status == 'stuck' else 'NULL'}")
            else:
                where.append("status = ?")
                params.append(status)
        if type is not None:
            where.append("type = ?")
            params.append(type)
        limit = _number("limit", limit, minimum=1, allow_none=False, integer=True)
        if limit > MAX_PAGE:
            raise dotdo.LimitError(f"list() returns at most {MAX_PAGE:,} jobs a page, not {limit:,}: "
                             "page with the cursor it returns")
        rows = self._rows(f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                          (*params, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return {"jobs": [self._thing(r) for r in rows],
                "cursor": rows[-1]["seq"] if more else None}

    def get_metrics(self) -> Metrics:
        counts = {s: (n, stuck, delayed or 0) for s, n, stuck, delayed
                  in self.storage.sql.execute(COUNTS, (time.time(),)).fetchall()}
        pending, _, delayed = counts.get("pending", (0, 0, 0))
        running, stuck, _ = counts.get("running", (0, 0, 0))
        return Metrics(
            pending=pending - delayed, running=running - stuck,
            completed=counts.get("completed", (0,))[0], failed=counts.get("failed", (0,))[0],
            delayed=delayed, retries=self._one(RETRIES),
            cancelled=counts.get("cancelled", (0,))[0], stuck=stuck,
            paused=self._paused, concurrency=self._concurrency,
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """``{type: {status: count}}`` over every job the queue holds."""
        out: dict[str, dict[str, int]] = {}
        rows = self.storage.sql.execute("SELECT type, status, count(*) FROM jobs GROUP BY 1, 2")
        for job_type, status, n in rows.fetchall():
            out.setdefault(job_type, {})[status] = n
        return out

    def retry(self, job_id: str) -> dict[str, Any]:
        """Send a failed job back to the queue (out of the dead-letter list)."""
        job = self._must(job_id)
        if job["status"] != "failed":
            raise ValueError(f"job {job_id!r} is {job['status']}: only failed jobs can be retried")
        self.storage.sql.execute(
            f"UPDATE jobs SET {_REQUEUED}, error = NULL, run_at = ?, finished = NULL, "
            "crashes = 0, suspect_since = NULL WHERE id = ?", (time.time(), job_id))
        self._ready.set()
        return self._must(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a pending or delayed job."""
        job = self._must(job_id)
        if job["status"] not in ("pending", "delayed"):
            raise ValueError(f"job {job_id!r} is {job['status']}: only pending or delayed jobs "
                             "can be cancelled")
        self.storage.sql.execute(
            "UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND status = 'pending'",
            (time.time(), job_id))
        return self._must(job_id)

    def purge(self, status: str | None = None, older_than: float | None = None) -> int:
        """Delete finished jobs (completed, failed, cancelled; or one ``status`` of
        those), optionally only those finished more than ``older_than`` s ago."""
        statuses = _FINISHED if status is None else (JobStatus(status).value,)
        if not set(statuses) <= set(_FINISHED):
            raise ValueError(f"purge removes finished jobs only ({', '.join(_FINISHED)}), "
                             f"not {status!r}")
        cutoff = time.time() - (_number("older_than", older_than, minimum=0) or 0)
        marks = ",".join("?" * len(statuses))
        return self.storage.sql.execute(
            f"DELETE FROM jobs WHERE status IN ({marks}) AND finished <= ?",
            (*statuses, cutoff)).rowcount

    def pause(self) -> None:
        """Stop handing out jobs; running ones finish."""
        self._paused = True
        self.storage.put("paused", True)

    def resume(self) -> None:
        self._paused = False
        self.storage.put("paused", False)
        self._ready.set()

    def configure(self, concurrency: int | None = _UNCHANGED,
                  lease_timeout: float = _UNCHANGED) -> dict[str, Any]:
        """``concurrency``: at most that many jobs running at once across all workers
        (None: no limit). ``lease_timeout``: seconds a worker may go without a heartbeat
        before its jobs go to others (default 30; workers beat every third of it).
        Options not given stay as they are; returns them all."""
        if concurrency is not _UNCHANGED:
            _number("concurrency", concurrency, minimum=1, integer=True)
            self._concurrency = concurrency
            self.storage.put("concurrency", concurrency)
        if lease_timeout is not _UNCHANGED:
            self._lease_timeout = float(_number("lease_timeout", lease_timeout, minimum=0.5,
                                                allow_none=False))
            self.storage.put("lease_timeout", self._lease_timeout)
        self._ready.set()
        return {"concurrency": self._concurrency, "lease_timeout": self._lease_timeout}

    def result(self, job_id: str) -> dict[str, Any] | None:
        """The job's ``Result`` Thing once it completed, else None."""
        rows = self._rows(SELECT_JOB, (job_id,))
        if not rows or rows[0]["status"] != "completed":
            return None
        return result_thing(job_id, codec.decode(rows[0]["output"]), rows[0]["finished"])

    def _must(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        if job is None:
            raise dotdo.NotFoundError(f"no job {job_id!r} in queue {self.id!r}")
        return job

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

        Returns ``{"jobs": [{"job", "lease", "uid", "step", "alone"}], "lease_timeout"}``. A
        suspect job (its worker died while running it) goes only to an ``idle`` worker,
        alone; once one has waited a lease timeout, the least busy worker gets nothing
        new, so that it goes idle.
        """
        n = _number("n", n, minimum=0, allow_none=False, integer=True)
        deadline = time.monotonic() + _number("wait", wait, minimum=0, allow_none=False)
        while True:
            now = time.time()
            if now >= self._expiry_check_at:  # not at every claim: it is a write
                self._reclaim_expired(now)
            rows, alone, blocked = self._lease(worker, n, idle, now)
            if rows or time.monotonic() >= deadline:
                self._gauge_depth()
                return {"jobs": [{"job": self._thing(r), "lease": r["lease"], "uid": r["uid"],
                                  "alone": alone, "step": step_id(self.id, r["id"], r["uid"])}
                                 for r in rows],
                        "lease_timeout": self._lease_timeout}
            self._ready.clear()
            timeout = deadline - time.monotonic()
            wake = [self._one(NEXT_EXPIRY)]
            if not blocked:  # a job's run_at or a lease running out may give us work
                wake.append(self._one(NEXT_RUN_AT, (now,)))
            for at in wake:
                if at is not None:
                    timeout = min(timeout, max(at - now, 0.001))
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                pass

    def _lease(self, worker: str, n: int, idle: bool, now: float
               ) -> tuple[builtins.list[dict[str, Any]], bool, bool]:
        """``(rows leased, alone, blocked)``: ``blocked`` when ready jobs exist but may
        not be handed out now (paused, at the concurrency limit): only an event
        (resume, configure, a job finishing) changes that, not the clock."""
        if self._paused:
            return [], False, True
        if self._concurrency is not None:
            n = min(n, self._concurrency - self._one(RUNNING))
            if n <= 0:
                return [], False, True
        if n <= 0:
            return [], False, False
        until = now + self._lease_timeout
        suspect = self.storage.sql.execute(READY_SUSPECT, (now,)).fetchone()
        if suspect is not None:
            if idle:
                return self._rows(CLAIM_SEQ, (worker, now, until, suspect[0])), True, False
            if (now - suspect[1] > self._lease_timeout  # waited long enough: make room
                    and self.storage.sql.execute(LEAST_BUSY).fetchone() == (worker,)):
                return [], False, True
        return self._rows(CLAIM, (worker, now, until, now, n)), False, False

    def _reclaim_expired(self, now: float) -> None:
        self._expiry_check_at = now + min(1.0, self._lease_timeout / 4)
        if self.storage.sql.execute(REQUEUE_EXPIRED, (now, now)).rowcount:
            self._ready.set()

    async def _reap(self) -> None:
        """Put back the jobs of workers gone silent, also while nobody claims."""
        while True:
            await asyncio.sleep(min(1.0, self._lease_timeout / 4))
            self._reclaim_expired(time.time())

    def heartbeat(self, worker: str, holding: builtins.list[str], stuck: Sequence[str] = ()) -> float:
        """``worker`` is alive and still runs ``holding``: their leases go on. ``stuck``
        are those whose attempt ran past its timeout and has not stopped. Returns the
        lease timeout, so workers beat often enough."""
        now = time.time()
        ids, stuck_ids = json.dumps(list(holding)), json.dumps(list(stuck))
        with self.storage.transaction():
            self.storage.sql.execute(EXTEND_LEASES, (now + self._lease_timeout, worker, ids))
            self.storage.sql.execute(MARK_STUCK, (now, worker, stuck_ids))
            self.storage.sql.execute(CLEAR_STUCK, (worker, stuck_ids))
        return self._lease_timeout

    def complete(self, worker: str, outcomes: builtins.list) -> int:
        """Record ``[job_id, uid, lease, kind, value, attempts]`` outcomes in one
        transaction, ``kind`` one of ``ok`` (value: the output), ``failed`` (value: the
        error) or ``released`` (not run: back to pending). Returns how many counted;
        a report from a worker that no longer holds the job is ignored (see the module
        docstring)."""
        now = time.time()
        done = 0
        with self.storage.transaction():
            for job_id, uid, lease, kind, value, attempts in outcomes:
                if kind == "ok":
                    changed = self.storage.sql.execute(
                        COMPLETE, (attempts, now, codec.encode(value), job_id, uid, lease)).rowcount
                    if changed:
                        self._event("Job.completed", result_thing(job_id, value, now))
                elif kind == "failed":
                    changed = self._fail(job_id, uid, worker, lease, value, attempts, now)
                elif kind == "released":
                    changed = self.storage.sql.execute(RELEASE, (job_id, uid, worker, lease)).rowcount
                else:
                    raise ValueError(f"unknown outcome kind {kind!r}")
                done += changed
        self._ready.set()
        return done

    def _fail(self, job_id: str, uid: str | None, worker: str, lease: int, error: str,
              attempts: int, now: float) -> int:
        changed = self.storage.sql.execute(
            FAIL, (attempts, now, error, job_id, uid, worker, lease)).rowcount
        if changed:
            self._event("Job.failed", {"$id": job_id, "error": error, "attempts": attempts})
        return changed

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
                row = self.storage.sql.execute(CRASHED, (1 if alone else 0, *holder)).fetchone()
                if row is None:
                    continue  # no longer this worker's
                crashes, max_retries = row
                if crashes > max_retries:
                    failed += self._fail(
                        job_id, uid, worker, lease,
                        f"WorkerCrashError: the job's worker process died while running it "
                        f"alone, {crashes} times (os._exit, a signal such as SIGKILL or "
                        "SIGSEGV, or running out of memory); it is not tried again", crashes, now)
                else:
                    suspects += self.storage.sql.execute(SUSPECT, (now, *holder)).rowcount
            requeued = self.storage.sql.execute(
                REQUEUE_UNHELD, (worker, json.dumps(list(holding)))).rowcount
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
                rows = self.storage.sql.execute(SELECT_OUTBOX, (_OUTBOX_BATCH,)).fetchall()
                if not rows:
                    break
                try:
                    await app.emit_many([[t, codec.decode(d), f"{self._instance}-{seq}"]
                                         for seq, t, d in rows])
                except Exception:  # noqa: BLE001 - the App is restarting: try again soon
                    await asyncio.sleep(1.0)
                    continue
                self.storage.sql.execute(DELETE_OUTBOX, (rows[-1][0],))
