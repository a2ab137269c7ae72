"""``Queue``: the seed's job queue as a durable object.

Jobs live in the queue's own SQLite table. Workers *pull*: ``claim`` leases a batch
of ready jobs to a worker (waiting up to a second when there are none), ``complete``
records a batch of outcomes in one transaction. Enqueueing, claiming and completing
all take many jobs per call and many rows per transaction.

Crash safety: a job leased to a worker stays ``running`` until that worker reports
it. A restarted worker claims with ``fresh=True`` and gets its own running jobs back
first (it replays finished steps from its journal instead of running them again); a
worker silent for ``lease_timeout`` seconds loses its jobs to the others. Events
(``Job.enqueued``, ``Job.completed``, ``Job.failed``) are written to an outbox in the
same transaction as the change they describe, and forwarded to ``App("default")``,
where module-level handlers subscribe to them. While no handler there listens to
``Job`` events (the queue asks every two seconds), none are written.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import dotdo
from actors import metrics
from actors.jobs import JobStatus, Metrics, job_thing, result_thing
from dotdo import codec

__all__ = ["Queue"]

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
CREATE_READY = (
    "CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (priority DESC, run_at, seq) "
    "WHERE status = 'pending'"
)
CREATE_STATUS = "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq)"
CREATE_OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    type  TEXT NOT NULL,
    data  BLOB NOT NULL
)"""

INSERT_JOB = (
    "INSERT OR IGNORE INTO jobs (id, type, payload, status, priority, run_at, max_retries, "
    "timeout, created) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)"
)
SELECT_JOB = "SELECT * FROM jobs WHERE id = ?"
# Jobs by id, many at once: ids as one JSON array, so one statement serves any count.
SELECT_JOBS = "SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
CLAIM = (
    "UPDATE jobs SET status = 'running', worker = ?, started = ? WHERE seq IN ("
    "SELECT seq FROM jobs WHERE status = 'pending' AND run_at <= ? "
    "ORDER BY priority DESC, run_at, seq LIMIT ?) RETURNING *"
)
MINE = "SELECT * FROM jobs WHERE status = 'running' AND worker = ? ORDER BY seq"
REQUEUE_WORKER = "UPDATE jobs SET status = 'pending', worker = NULL WHERE status = 'running' AND worker = ?"
COMPLETE = (
    "UPDATE jobs SET status = 'completed', attempts = ?, finished = ?, output = ?, error = NULL "
    "WHERE id = ? AND status IN ('running', 'pending')"
)
FAIL = (
    "UPDATE jobs SET status = 'failed', attempts = ?, finished = ?, error = ? "
    "WHERE id = ? AND status IN ('running', 'pending')"
)
COUNTS = "SELECT status, count(*) FROM jobs GROUP BY status"
DELAYED = "SELECT count(*) FROM jobs WHERE status = 'pending' AND run_at > ?"
RETRIES = "SELECT coalesce(sum(max(attempts - 1, 0)), 0) FROM jobs"
RUNNING = "SELECT count(*) FROM jobs WHERE status = 'running'"
NEXT_RUN_AT = "SELECT min(run_at) FROM jobs WHERE status = 'pending'"
INSERT_OUTBOX = "INSERT INTO outbox (type, data) VALUES (?, ?)"
SELECT_OUTBOX = "SELECT seq, type, data FROM outbox ORDER BY seq LIMIT ?"
DELETE_OUTBOX = "DELETE FROM outbox WHERE seq <= ?"

_FINISHED = ("completed", "failed", "cancelled")
_OUTBOX_BATCH = 500
_LISTEN_EVERY = 2.0


def _number(name: str, value: Any, *, minimum: float, allow_none: bool = True) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}")
    return value


class Queue(dotdo.DurableObject):
    """A durable job queue; see the module docstring."""

    lease_timeout = 30.0

    def __init__(self) -> None:
        db = self.storage.sql
        for ddl in (CREATE_JOBS, CREATE_READY, CREATE_STATUS, CREATE_OUTBOX):
            db.execute(ddl)
        self._paused = bool(self.storage.get("paused", False))
        self._concurrency = self.storage.get("concurrency")
        self._workers: dict[str, float] = {}  # worker id -> last seen (monotonic)
        self._depth_at = 0.0
        self._ready = asyncio.Event()
        self._outbox_ready = asyncio.Event()
        self._outbox_ready.set()  # forward what a previous life left behind
        self._listened = True  # until the App says otherwise
        loop = asyncio.get_running_loop()
        loop.create_task(self._forward_events())
        loop.create_task(self._watch_listeners())
        for worker in self.storage.get("workers", []):
            dotdo.Worker(worker).resume()  # after a restart, workers come back too

    # -- helpers --------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        cursor = self.storage.sql.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _thing(self, row: dict[str, Any]) -> dict[str, Any]:
        row = {**row, "payload": codec.decode(row["payload"])}
        return job_thing(row, time.time())

    def _gauge_depth(self) -> None:
        if time.monotonic() - self._depth_at < 1.0:  # a count per second is plenty
            return
        self._depth_at = time.monotonic()
        ready = self.storage.sql.execute(
            "SELECT count(*) FROM jobs WHERE status = 'pending' AND run_at <= ?", (time.time(),)
        ).fetchone()[0]
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
        unknown = set(spec) - {"type", "payload", "job_id", "priority", "delay", "run_at",
                               "max_retries", "timeout"}
        if unknown:
            raise TypeError(f"unknown job option(s) {sorted(unknown)}")
        job_id = spec.get("job_id") or uuid.uuid4().hex
        if not isinstance(job_id, str):
            raise ValueError(f"job_id is a str, not {type(job_id).__name__}")
        priority = spec.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValueError(f"priority is an int, not {priority!r}")
        delay = _number("delay", spec.get("delay"), minimum=0)
        run_at = _number("run_at", spec.get("run_at"), minimum=0)
        if delay is not None and run_at is not None:
            raise ValueError("give delay= or run_at=, not both")
        max_retries = spec.get("max_retries", 3)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries is an int >= 0, not {max_retries!r}")
        timeout = _number("timeout", spec.get("timeout"), minimum=0.001)
        payload = codec.encode(spec.get("payload"))  # refused here: nothing written
        when = run_at if run_at is not None else now + (delay or 0)
        return (job_id, job_type, payload, priority, when, max_retries, timeout, now)

    # -- the API --------------------------------------------------------------------

    def enqueue(self, type: str, payload: Any = None, **options: Any) -> dict[str, Any]:
        """Add a job and return it (a ``Job`` Thing). ``job_id`` is an idempotency key:
        enqueuing it again returns the existing job and adds nothing. Options:
        ``priority`` (higher first), ``delay`` (s) or ``run_at`` (epoch), ``max_retries``
        (default 3), ``timeout`` (s, per attempt)."""
        return self.enqueue_many([{"type": type, "payload": payload, **options}])[0]

    def enqueue_many(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add many jobs in one transaction; every job is checked before any is written."""
        now = time.time()
        rows = [self._job_row(dict(spec), now) for spec in jobs]
        with self.storage.transaction():
            new = [row for row in rows if self.storage.sql.execute(INSERT_JOB, row).rowcount]
            for row in new:
                self._event("Job.enqueued", {"$id": row[0], "type": row[1]})
        if new:
            self._ready.set()
            self._gauge_depth()
        # Re-read to return what is stored: an idempotent enqueue returns the job as it is.
        stored = {r["id"]: r for r in self._rows(SELECT_JOBS, (json.dumps([r[0] for r in rows]),))}
        return [self._thing(stored[row[0]]) for row in rows]

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows(SELECT_JOB, (job_id,))
        return self._thing(rows[0]) if rows else None

    def list(self, status: str | None = None, type: str | None = None, limit: int = 100,
             cursor: int | None = None) -> dict[str, Any]:
        """Jobs in enqueue order, ``limit`` at a time: ``{"jobs": [...], "cursor": next}``;
        pass ``cursor`` back for the next page (stable while jobs are added)."""
        where, params = ["seq > ?"], [cursor or 0]
        if status is not None:
            status = JobStatus(status).value  # ValueError names the statuses
            if status == "delayed":
                where.append("status = 'pending' AND run_at > ?")
                params.append(time.time())
            elif status == "pending":
                where.append("status = 'pending' AND run_at <= ?")
                params.append(time.time())
            else:
                where.append("status = ?")
                params.append(status)
        if type is not None:
            where.append("type = ?")
            params.append(type)
        limit = int(_number("limit", limit, minimum=1, allow_none=False))
        rows = self._rows(f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                          (*params, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return {"jobs": [self._thing(r) for r in rows],
                "cursor": rows[-1]["seq"] if more else None}

    def get_metrics(self) -> Metrics:
        counts = dict(self.storage.sql.execute(COUNTS).fetchall())
        delayed = self.storage.sql.execute(DELAYED, (time.time(),)).fetchone()[0]
        retries = self.storage.sql.execute(RETRIES).fetchone()[0]
        return Metrics(
            pending=counts.get("pending", 0) - delayed, running=counts.get("running", 0),
            completed=counts.get("completed", 0), failed=counts.get("failed", 0),
            delayed=delayed, retries=retries, cancelled=counts.get("cancelled", 0),
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
            "UPDATE jobs SET status = 'pending', error = NULL, run_at = ?, worker = NULL, "
            "finished = NULL WHERE id = ?", (time.time(), job_id))
        self._ready.set()
        return self.get(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a pending or delayed job."""
        job = self._must(job_id)
        if job["status"] not in ("pending", "delayed"):
            raise ValueError(f"job {job_id!r} is {job['status']}: only pending or delayed jobs "
                             "can be cancelled")
        self.storage.sql.execute(
            "UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND status = 'pending'",
            (time.time(), job_id))
        return self.get(job_id)

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

    def configure(self, concurrency: int | None = None) -> None:
        """Limit how many jobs run at once across all workers (None: no limit)."""
        if concurrency is not None:
            _number("concurrency", concurrency, minimum=1)
        self._concurrency = concurrency
        self.storage.put("concurrency", concurrency)
        self._ready.set()

    def result(self, job_id: str) -> dict[str, Any] | None:
        """The job's ``Result`` Thing once it completed, else None."""
        rows = self._rows(SELECT_JOB, (job_id,))
        if not rows or rows[0]["status"] != "completed":
            return None
        return result_thing(job_id, codec.decode(rows[0]["output"]), rows[0]["finished"])

    def _must(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r} in queue {self.id!r}")
        return job

    # -- the worker protocol ----------------------------------------------------------

    def register_worker(self, worker: str) -> None:
        workers = self.storage.get("workers", [])
        if worker not in workers:
            self.storage.put("workers", workers + [worker])
        self._workers[worker] = time.monotonic()

    async def claim(self, worker: str, n: int, wait: float = 1.0, fresh: bool = False) -> list:
        """Lease up to ``n`` ready jobs to ``worker``. With ``fresh`` (the worker has just
        started), its jobs still marked running come first: it was running them when
        it died. Waits up to ``wait`` s for work."""
        self._workers[worker] = time.monotonic()
        self._reclaim_silent()
        mine = self._rows(MINE, (worker,)) if fresh else []
        deadline = time.monotonic() + wait
        while True:
            jobs = mine + self._lease(worker, n - len(mine))
            if jobs or time.monotonic() >= deadline:
                self._gauge_depth()
                return [self._thing(r) for r in jobs]
            self._ready.clear()
            next_run = self.storage.sql.execute(NEXT_RUN_AT).fetchone()[0]
            timeout = deadline - time.monotonic()
            if next_run is not None:
                timeout = min(timeout, max(next_run - time.time(), 0.001))
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                pass

    def _lease(self, worker: str, n: int) -> list[dict[str, Any]]:
        if self._paused or n <= 0:
            return []
        if self._concurrency is not None:
            running = self.storage.sql.execute(RUNNING).fetchone()[0]
            n = min(n, self._concurrency - running)
            if n <= 0:
                return []
        now = time.time()
        return self._rows(CLAIM, (worker, now, now, n))

    def _reclaim_silent(self) -> None:
        limit = time.monotonic() - self.lease_timeout
        for worker, seen in list(self._workers.items()):
            if seen < limit:
                if self.storage.sql.execute(REQUEUE_WORKER, (worker,)).rowcount:
                    self._ready.set()
                del self._workers[worker]

    def heartbeat(self, worker: str) -> None:
        self._workers[worker] = time.monotonic()

    def complete(self, worker: str, outcomes: list) -> int:
        """Record ``[job_id, ok, output_or_error, attempts]`` outcomes in one transaction;
        a job already finished is left alone (a late duplicate report)."""
        self._workers[worker] = time.monotonic()
        now = time.time()
        done = 0
        with self.storage.transaction():
            for job_id, ok, value, attempts in outcomes:
                if ok:
                    changed = self.storage.sql.execute(
                        COMPLETE, (attempts, now, codec.encode(value), job_id)).rowcount
                    if changed:
                        self._event("Job.completed", result_thing(job_id, value, now))
                else:
                    changed = self.storage.sql.execute(FAIL, (attempts, now, value, job_id)).rowcount
                    if changed:
                        self._event("Job.failed", {"$id": job_id, "error": value,
                                                   "attempts": attempts})
                done += changed
        if self._concurrency is not None:
            self._ready.set()
        return done

    async def _watch_listeners(self) -> None:
        """Ask the App every few seconds whether anyone handles Job events."""
        app = dotdo.App("default")
        while True:
            try:
                self._listened = await app.listens("Job")
            except Exception:  # noqa: BLE001 - the App is restarting: keep sending
                self._listened = True
            await asyncio.sleep(_LISTEN_EVERY)

    async def _forward_events(self) -> None:
        """Forward the outbox to App("default") in batches, deleting what it took."""
        app = dotdo.App("default")
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while True:
                rows = self.storage.sql.execute(SELECT_OUTBOX, (_OUTBOX_BATCH,)).fetchall()
                if not rows:
                    break
                try:
                    await app.emit_many([[t, codec.decode(d)] for _, t, d in rows])
                except Exception:  # noqa: BLE001 - the App is restarting: try again soon
                    await asyncio.sleep(1.0)
                    continue
                self.storage.sql.execute(DELETE_OUTBOX, (rows[-1][0],))
