"""The worker protocol of a queue: claims (what is handed out, in which order,
within which limits), heartbeats, progress, outcomes and a restarted worker's account.
See ``actors/queue.py``'s docstring for leases and suspects.

Two clocks. Leases and rate windows are measured on the monotonic clock of the
queue's own process (``time.monotonic``), which no step of the wall clock moves; a
queue that restarts, or finds its own process stalled (frozen, or its loop blocked),
gives every running job a fresh full lease instead of trusting a deadline it could not
watch. Wall time (``self._now()``, the host's clock) is for what is about the calendar:
``run_at``, retry times, what operators read. When the wall clock steps, due jobs and
retry waits (durations) move with it (``JobTable._clock_stepped``).

Payloads and outputs pass through encoded: a claim hands a job's payload to the
worker as the bytes it was stored as, and a worker reports an output as its encoded
bytes, so no value that only a worker (or a driver) can decode is decoded here."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import dotdo
from actors import queue_sql as sql
from actors.flows import Flows
from actors.jobs import job_thing, result_thing, step_id
from actors.options import MAX_BACKOFF, number
from dotdo import codec, logs
from dotdo.retry import backoff_delay

__all__ = ["Claims"]

log = logging.getLogger("dotdo")
# A crash's error text names its class first: Queue.wait raises that class for it.
_CRASH = dotdo.WorkerCrashError.__name__
# The queue's process missed this much of its reaping beat (frozen, or its loop held):
# workers could not renew their leases meanwhile, so the leases get that time back.
_STALL = 1.0


def _failure(value: Any) -> tuple[str, str | None, bool, float | None]:
    """``(error, traceback, final, worker's backoff)`` of a reported failure."""
    if isinstance(value, dict):
        return (str(value.get("error")), value.get("trace"), bool(value.get("final")),
                value.get("backoff"))
    return str(value), None, False, None  # a worker of the first release: a str


@dataclasses.dataclass(eq=False)
class _Poll:
    """A long-poll claim waiting for work. ``rows``: jobs an enqueue leased to it in
    its own transaction (``Claims._hand_over``), read again by the claim once awake."""

    worker: str
    n: int
    idle: bool
    rows: builtins.list[dict[str, Any]] | None = None
    alone: bool = False
    fence: int = 0


class Claims(Flows):
    """What workers call on a queue."""

    _polls: builtins.list[_Poll]  # long-poll claims waiting now, oldest first
    # The ids of a batch's completed jobs, into their types' histograms (actors/insight.py).
    _count_completed: Callable[[builtins.list[str]], None]

    def register_worker(self, worker: str) -> None:
        """``worker`` works for this queue: it is woken whenever the queue activates."""
        self._left.discard(worker)
        workers = self.storage.get("workers", [])
        if worker not in workers:
            self.storage.put("workers", [*workers, worker])

    def unregister_worker(self, worker: str) -> None:
        """``worker`` stopped: a claim of its still waiting gets nothing."""
        self._left.add(worker)
        self._ready.set()  # its waiting claim answers now
        workers = self.storage.get("workers", [])
        if worker in workers:
            self.storage.put("workers", [w for w in workers if w != worker])

    async def _wake_workers(self) -> None:
        """After a restart, workers come back too; those that no longer work here
        leave the list, so it holds only live assignments."""
        names = self.storage.get("workers", [])
        answers = await asyncio.gather(*(dotdo.Worker(w).serves(self.id) for w in names),
                                       return_exceptions=True)
        try:
            for name, serves in zip(names, answers):
                if serves is False:
                    self.unregister_worker(name)
        except Exception:
            log.warning("dotdo: queue %s could not update its list of workers", self.id,
                        exc_info=True)

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
            now, mono = self._now(), time.monotonic()
            self._seen[worker] = now  # a worker in a long-poll is alive
            if mono >= self._expiry_check_at:  # not at every claim: it is a write
                self._reclaim_expired(mono)
            if worker in self._left:  # stopped while this claim waited
                return {"jobs": [], "lease_timeout": self._lease_timeout}
            rows, alone, blocked, opens = self._lease(worker, n, idle, now, mono)
            if rows or mono >= deadline:
                self._gauge_depth()
                return {"jobs": [self._grant(r, alone, now) for r in rows],
                        "lease_timeout": self._lease_timeout}
            self._ready.clear()
            timeout = deadline - mono
            # A lease running out, or a spent rate opening (monotonic times), or a
            # job's run_at (wall time) may give us work.
            for at in (self._one(sql.NEXT_EXPIRY), opens):
                if at is not None:
                    timeout = min(timeout, max(at - mono, 0.001))
            if not blocked:
                at = self._one(sql.NEXT_RUN_AT, (now,))
                if at is not None:
                    timeout = min(timeout, max(at - now, 0.001))
            poll = _Poll(worker, n, idle)
            self._polls.append(poll)
            try:
                # Not wait_for: its task per wait costs the wake-up loop turns, and this
                # wake-up is on the path of every job handed to an idle worker.
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                pass
            except BaseException:  # cancelled: what an enqueue leased it goes back
                if poll.rows:
                    self.storage.sql.execute(sql.UNLEASE, (
                        json.dumps([r["seq"] for r in poll.rows]), poll.fence))
                    self._ready.set()
                raise
            finally:
                self._polls.remove(poll)
            if poll.rows:
                # Leased in an enqueue's transaction; read again now, after its commit
                # (a batch's shared one may have failed: then they are not ours).
                kept = {seq for (seq,) in self.storage.sql.execute(sql.STILL_LEASED, (
                    json.dumps([r["seq"] for r in poll.rows]), worker, poll.fence))}
                rows = [r for r in poll.rows if r["seq"] in kept]
                if rows:
                    self._gauge_depth()
                    return {"jobs": [self._grant(r, poll.alone, now) for r in rows],
                            "lease_timeout": self._lease_timeout}

    def _hand_over(self, now: float) -> None:
        """Inside an enqueue's transaction: lease its jobs to the long-poll claims
        waiting now, oldest first, as their own claim would (``_lease``, every limit
        applies), so that the job's insert and its lease are one commit, and the claim
        answers on its wake-up without a write of its own."""
        mono = time.monotonic()
        for poll in self._polls:
            if poll.rows is not None or poll.worker in self._left:
                continue
            rows, alone, _, _ = self._lease(poll.worker, poll.n, poll.idle, now, mono)
            if not rows:
                return
            poll.rows, poll.alone, poll.fence = rows, alone, self._fence

    def _grant(self, row: dict[str, Any], alone: bool, now: float) -> dict[str, Any]:
        """What a worker gets of a job it claimed: the Job (its ``payload`` None) and,
        apart, the payload and the parents' outputs as stored (the worker decodes
        them), the lease (the fence), and the step it runs under."""
        grant = {"job": job_thing({**row, "payload": None}, now), "payload": row["payload"],
                 "lease": row["lease"], "uid": row["uid"], "alone": alone,
                 "step": step_id(self.id, row["id"], row["uid"])}
        if row.get("traceparent"):  # its attempts' spans go under its enqueue's
            grant["trace"] = row["traceparent"]
        if row.get("on_parent_failure"):  # it had parents: hand over their outputs
            grant["parents"] = dict(
                self.storage.sql.execute(sql.PARENT_RESULTS, (row["uid"],)).fetchall())
        return grant

    def _lease(self, worker: str, n: int, idle: bool, now: float, mono: float
               ) -> tuple[builtins.list[dict[str, Any]], bool, bool, float | None]:
        """``(rows leased, alone, blocked, opens)``: ``blocked`` when ready jobs exist but
        may not be handed out now (paused, at a concurrency limit): only an event
        (resume, configure, a job finishing) changes that, or the (monotonic) time
        ``opens``, when a spent rate limit allows a start again."""
        if self._paused:
            return [], False, True, None
        if self._concurrency is not None:
            n = min(n, self._concurrency - self._one(sql.RUNNING))
            if n <= 0:
                return [], False, True, None
        rate = self._limiter.queue
        if rate is not None and n > 0:
            n = min(n, rate.room(mono))
            if n <= 0:
                return [], False, True, rate.opens_at()
        if n <= 0:
            return [], False, False, None
        until = mono + self._lease_timeout
        fence = self._fence + 1  # this claim's: larger than any claim's before
        rows, alone, opens = None, False, None
        suspect = self.storage.sql.execute(sql.READY_SUSPECT, (now,)).fetchone()
        if suspect is not None:
            if idle:
                rows = self._rows(sql.CLAIM_SEQ, (worker, now, fence, until, suspect[0]))
                alone = True
            elif (now - suspect[1] > self._lease_timeout  # waited long enough: make room
                    and self.storage.sql.execute(sql.LEAST_BUSY).fetchone() == (worker,)):
                return [], False, True, None
        if rows is None:
            if self._grouped or self._group_limit is not None or self._limiter.key_rate:
                rows, opens = self._pick(worker, n, now, mono, fence, until)
            else:
                rows = self._rows(sql.CLAIM, (worker, now, fence, until, now, n))
        if rows:
            self._fence = fence
            if rate is not None:
                rate.note(mono, len(rows))
            if self._limiter.key_rate:
                for row in rows:
                    if row["rate_key"] is not None:
                        self._limiter.key(row["rate_key"]).note(mono)
        return rows, alone, False, opens

    def _any_grouped(self) -> bool:
        """Whether a job with a group is pending or running (two index seeks)."""
        db = self.storage.sql
        return (db.execute(sql.NEXT_GROUP, ("",)).fetchone() is not None
                or db.execute(sql.RUNNING_GROUPED).fetchone() is not None)

    def _next_group(self, after: str | None) -> str:
        """The group after ``after`` in turn: ``''`` (jobs without one) first, then the
        groups with pending jobs in name order, wrapping round to ``''``."""
        if after is None:
            return ""
        found = self.storage.sql.execute(sql.NEXT_GROUP, (after,)).fetchone()
        return "" if found is None else found[0]

    def _pick(self, worker: str, n: int, now: float, mono: float, fence: int, until: float
              ) -> tuple[builtins.list[dict[str, Any]], float | None]:
        """Lease up to ``n`` jobs round-robin across groups (``''``, jobs without a
        group, is one of them), by priority within each, within ``group_concurrency``
        and ``key_rate``. Returns the rows and, if a key's rate held jobs back, when
        the first such key opens again."""
        limit = self._group_limit
        running = dict(self.storage.sql.execute(sql.RUNNING_BY_GROUP).fetchall()) if limit else {}
        spent = self._limiter.spent_keys(mono) if self._limiter.key_rate else []
        spent_json = json.dumps(spent)
        # The groups after the one served last, each with its first ready jobs.
        candidates: builtins.list[tuple[str, builtins.list[tuple[int, str | None]]]] = []
        first = group = self._next_group(self._rr_after)
        visits = 0
        while len(candidates) < n and visits < 4 * n + 16:
            visits += 1
            room = n if group == "" or limit is None else min(n, limit - running.get(group, 0))
            if room > 0:
                ready = self.storage.sql.execute(
                    sql.GROUP_READY if group else sql.UNGROUPED_READY,
                    (group, now, spent_json, room)).fetchall()
                if ready:
                    candidates.append((group, ready))
            group = self._next_group(group)
            if group == first:
                break
        if self._grouped and not self._any_grouped():
            self._grouped = False  # no grouped job pending or running: the plain claim again
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
                        left = self._limiter.key(key).room(mono)
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
        rows = self._rows(sql.CLAIM_SEQS, (worker, now, fence, until, json.dumps(picked)))
        return sorted(rows, key=lambda r: order[r["seq"]]), opens

    def _reap_every(self) -> float:
        return min(1.0, self._lease_timeout / 4)

    def _reclaim_expired(self, mono: float) -> None:
        """Put back the jobs whose lease ran out (their worker went silent)."""
        self._watch_time(mono)
        self._expiry_check_at = mono + self._reap_every()
        first = self._one(sql.NEXT_EXPIRY)
        if first is None or first >= mono:
            return  # no lease ran out: no write
        now = self._now()
        with self.storage.transaction():
            self.storage.sql.execute(sql.LOG_EXPIRED, (now, mono))
            for (job_id,) in self.storage.sql.execute(sql.CANCEL_EXPIRED, (now, mono)).fetchall():
                self._ended(job_id, "cancelled", None, 0, now)
            self.storage.sql.execute(sql.REQUEUE_EXPIRED, (now, mono))
        self._ready.set()

    def _watch_time(self, mono: float) -> None:
        """Before leases are judged: if this process missed its beat (it was frozen,
        or its loop held), nobody could renew a lease meanwhile: every running job
        gets that time back. (A step of the wall clock is noticed by ``_now``.)"""
        stalled = mono - self._awake_at - self._reap_every()
        self._awake_at = mono
        if stalled <= _STALL:
            return
        log.warning("dotdo: queue %s was stalled for %.1f s (its process frozen or its "
                    "loop held): running jobs keep their leases", self.id, stalled)
        with self.storage.transaction():
            self.storage.sql.execute(sql.EXTEND_ALL, (stalled,))

    async def _reap(self) -> None:
        """Put back the jobs of workers gone silent, also while nobody claims."""
        await self._forever("reaping expired leases", self._reap_every, self._reap_round)

    def _reap_round(self) -> None:
        self._reclaim_expired(time.monotonic())
        self._wake_parked(self._now())  # parked jobs due: ready, whether or not anyone claims

    def heartbeat(self, worker: str, holding: builtins.list, stuck: Sequence[str] = ()
                  ) -> dict[str, Any]:
        """``worker`` is alive and still runs ``holding``, ``[job id, lease]`` pairs:
        the leases of those it still holds go on. ``stuck`` are job ids whose attempt
        ran past its timeout and has not stopped. Returns the lease timeout (so
        workers beat often enough), the jobs to cancel, and ``lost``: the pairs whose
        lease the worker no longer holds (it ran out, the job went to another worker
        or ended), whose runs it must stop at once."""
        now = self._now()
        self._seen[worker] = now
        runs, stuck_ids = json.dumps([list(r) for r in holding]), json.dumps(list(stuck))
        with self.storage.transaction():
            self.storage.sql.execute(sql.EXTEND_LEASES, (
                time.monotonic() + self._lease_timeout, runs, worker))
            self.storage.sql.execute(sql.MARK_STUCK, (now, worker, stuck_ids))
            self.storage.sql.execute(sql.CLEAR_STUCK, (worker, stuck_ids))
        lost = [json.loads(r[0]) for r in self.storage.sql.execute(sql.LOST_RUNS, (runs, worker))]
        cancel = [r[0] for r in self.storage.sql.execute(sql.TO_CANCEL, (worker,)).fetchall()]
        return {"lease_timeout": self._lease_timeout, "cancel": cancel, "lost": lost}

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
        """Record ``[job_id, uid, lease, kind, value, ran(, log lines)]`` outcomes in one
        transaction, ``kind`` one of ``ok`` (value: the output, encoded), ``failed`` (value:
        ``{"error", "trace", "final", "backoff"}``), ``released`` (not run, or
        interrupted by its worker stopping: back to pending; value: why, or None) or
        ``parked`` (the run ended at a durable wait: the queue parked the job then);
        ``ran`` is 1 if the handler ran; the lines are what it logged (``dotdo.logs``).
        Returns how many counted; a report from a worker that no longer holds the job
        is ignored (see the module docstring), with its lines."""
        now = self._now()
        done = 0
        completed: builtins.list[str] = []
        with self.storage.transaction():
            for outcome in outcomes:
                job_id, uid, lease, kind, value, ran = outcome[:6]
                ran = 1 if ran else 0
                if kind == "ok":
                    if not isinstance(value, bytes):
                        raise TypeError("an ok outcome carries the output encoded (bytes)")
                    changed = self.storage.sql.execute(
                        sql.COMPLETE, (ran, now, value, job_id, uid, lease)).rowcount
                    if changed:
                        completed.append(job_id)
                        self._job_ended(job_id)
                        self._event("Job.completed", result_thing(
                            job_id, codec.decode(value, lenient=True), now))
                        self._parent_completed(job_id)
                elif kind == "failed":
                    changed = self._fail(job_id, uid, worker, lease, value, ran, now)
                elif kind == "released":
                    if value is not None:
                        self.storage.sql.execute(sql.LOG_ATTEMPT, (
                            now, "released", value, None, job_id, uid))
                    changed = self.storage.sql.execute(
                        sql.RELEASE, (job_id, uid, worker, lease)).rowcount
                    if changed:
                        self._cancel_if_asked(job_id, uid, now)
                elif kind == "parked":
                    changed = 0  # the queue parked it at the point (actors/parks.py)
                else:
                    raise ValueError(f"unknown outcome kind {kind!r}")
                if len(outcome) > 6 and (changed or kind == "parked"):
                    self._keep_logs(uid, worker, kind == "ok", outcome[6])
                done += changed
            self._count_completed(completed)
        self._ready.set()
        return done

    def _keep_logs(self, uid: str | None, worker: str, completed: bool,
                   lines: builtins.list) -> None:
        """Store what a run logged (inside the caller's transaction), under the run's
        number in :meth:`Queue.attempts`: every run that did not complete has its row
        there by now (this one's too), the completed one comes after them."""
        runs = self.storage.sql.execute(sql.COUNT_RUNS, (uid,)).fetchone()[0]
        attempt = runs + 1 if completed else max(runs, 1)
        for line in lines[:logs.KEEP + 1]:  # and the line that counts those left out
            self.storage.sql.execute(sql.INSERT_JOB_LOG, (
                uid, attempt, worker, line["t"], line["level"], line["logger"], line["message"],
                line.get("traceId"), line.get("spanId")))

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
            run_at = now + backoff_delay(base, max(attempts, 1), MAX_BACKOFF)
            self.storage.sql.execute(sql.RETRY_LATER, (attempts, error, trace, run_at, job_id, uid))
            self._event("Job.retrying", {"$id": job_id, "error": error, "attempts": attempts,
                                         "runAt": run_at})
        else:
            self._end(job_id, uid, "failed", attempts, error, trace, now)
        return 1

    def _cancel_if_asked(self, job_id: str, uid: str | None, now: float) -> None:
        """A job back in the queue without an outcome (its worker stopped or died)
        whose cancel was asked for while it ran ends cancelled, not run again."""
        if self.storage.sql.execute(sql.CANCEL_ASKED, (now, job_id, uid)).rowcount:
            self._ended(job_id, "cancelled", None, 0, now)

    def recover(self, worker: str, crashed: builtins.list, holding: builtins.list[str]) -> dict[str, int]:
        """A worker's account after its process died, or after it lost an answer.

        ``crashed``: ``[job_id, uid, lease, alone]`` of jobs it was running when its
        process died. One running alone is taken to have killed it: it fails once that
        happened more than ``max_retries`` times; the others become suspects and run
        alone next time. Every other job leased to ``worker`` and not in ``holding``
        (the answer of a claim that never reached it) goes back to pending."""
        now = self._now()
        failed = suspects = 0
        with self.storage.transaction():
            for job_id, uid, lease, alone in crashed:
                holder = (job_id, uid, worker, lease)
                row = self.storage.sql.execute(sql.CRASHED, (1 if alone else 0, *holder)).fetchone()
                if row is None:
                    continue  # no longer this worker's
                crashes, max_retries, attempts = row
                self.storage.sql.execute(sql.LOG_ATTEMPT, (
                    now, "crashed", f"{_CRASH}: the worker's process died while running it",
                    None, job_id, uid))
                if crashes > max_retries:
                    error = (f"{_CRASH}: the job's worker process died while running it "
                             f"alone, {crashes} times (os._exit, a signal such as SIGKILL or "
                             "SIGSEGV, or running out of memory); it is not tried again")
                    self._end(job_id, uid, "failed", max(attempts, crashes), error, None, now)
                    failed += 1
                else:
                    suspects += self.storage.sql.execute(sql.SUSPECT, (now, *holder)).rowcount
                    self._cancel_if_asked(job_id, uid, now)
            requeued = self.storage.sql.execute(
                sql.REQUEUE_UNHELD, (worker, json.dumps(list(holding)))).rowcount
        self._ready.set()
        return {"failed": failed, "suspects": suspects, "requeued": requeued}
