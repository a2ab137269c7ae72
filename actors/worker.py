"""``Worker``: runs jobs of a queue, each under ``do(step_id=...)``.

``dotdo.Worker("w1").start("emails", concurrency=16)`` makes the worker pull batches
of jobs from ``dotdo.Queue("emails")`` and run up to ``concurrency`` at once, with
each job's retries and per-attempt timeout; outcomes go back to the queue in batches.
The assignment is stored, so after a crash the restarted worker resumes by itself.

What keeps the queue's promise (no job lost, no finished job run again):

* Every job the worker holds has a row in its own ``held`` table, written before the
  job starts and deleted once the queue has its outcome. A job's success is journaled
  as its step; a failure in the row. A restarted worker reports both from its file
  (a finished job is never run again) and tells the queue which jobs were running
  when its process died, so that one that kills its worker is found out.
* Group commit: the outcomes of the jobs that finished since the last report are
  written down in one transaction (one fsync), and only then reported, in one
  ``complete`` per queue (``_write_down``, ``_report``). Until its batch commits, a
  finished job is in flight: if the process dies then, it counts as running and
  runs again (at-least-once); once committed, it is never run again here.
* Heartbeats come from a thread of their own: a handler that never yields, or a sync
  one computing for minutes, cannot stop them.
* State follows the commit: a claimed job is held in memory only once its row is
  written (if the write fails, the claim goes straight back to the queue), and an
  outcome that cannot be written down still goes to the queue from memory.
* Sync handlers run in a thread pool of the worker's concurrency, off the event loop,
  but for quick ones, which run on the loop (see ``_Speed``).
  An attempt past its timeout is cancelled if it is a coroutine; sync code cannot be
  interrupted, so the job waits for it to return (shown as ``stuck`` meanwhile)
  before it is tried again: two runs of one job never overlap. One still running at
  ``HUNG_AFTER`` times its timeout is given up: the attempt fails, and the worker's
  process is replaced (the thread cannot be stopped any other way).
* A heartbeat's answer names the runs whose lease the worker no longer holds (it
  froze, or lost the queue, past the lease, and the job went to another worker):
  those runs stop at once (async ones are cancelled, sync ones see
  ``dotdo.cancelled()``) and their outcomes are discarded. ``dotdo.current_job()``'s
  ``fence`` lets a handler's writes elsewhere refuse a run that lost its lease.
* Named steps in handlers (``do(..., step_id=)``) are the queue's (``actors/steps.py``).

``dotdo.Worker(id).process(job)`` runs one Job Thing directly.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import logging
import os
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dotdo
from actors import metrics
from actors.jobs import DEFAULT_TIMEOUT, result_thing
from actors.options import MAX_OUTPUT
from dotdo import codec, logs, signals, tracing
from dotdo import jobs as job_handlers
from dotdo.app import import_modules
from dotdo.checks import is_finite, is_int
from dotdo.waits import Parked

__all__ = ["Worker"]

log = logging.getLogger("dotdo")
_FLUSH_EVERY = 0.05
_RELOAD_AFTER = 1.0
_RETRY_AFTER = 0.5  # seconds between tries while a queue or the App is away
_PROGRESS_EVERY = 0.2  # progress reports of a worker's jobs go at most this often
HUNG_AFTER = 3  # times its timeout: a sync attempt still running then has its process replaced
_UNWIND = 0.2  # seconds interrupted async handlers get to end, once stop()'s time is up
_GIVE_BACK_WAIT = 10.0  # seconds SIGTERM waits for interrupted jobs before the process ends

CREATE_HELD = """
CREATE TABLE IF NOT EXISTS held (
    step     TEXT PRIMARY KEY,
    queue    TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    uid      TEXT,
    lease    INTEGER NOT NULL,
    outcome  BLOB
) WITHOUT ROWID"""
HOLD = "INSERT INTO held (step, queue, job_id, uid, lease) VALUES (?, ?, ?, ?, ?)"
RENEW = "UPDATE held SET lease = ? WHERE step = ?"
SETTLE = "UPDATE held SET outcome = ? WHERE step = ?"
RELEASE = "DELETE FROM held WHERE step = ?"
SELECT_HELD = "SELECT step, queue, job_id, uid, lease, outcome FROM held"
# The worker's schema versions (``Storage.migrate``): MIGRATIONS[n] takes its tables
# from version n to n + 1.
MIGRATIONS = {0: lambda db: db.execute(CREATE_HELD)}


@dataclasses.dataclass(eq=False, slots=True)
class _Held:
    """A job this worker holds, from its claim until the queue has its outcome."""

    step: str
    queue: str
    job_id: str
    uid: str | None
    lease: int
    outcome: list | None = None  # [kind, value, ran] once known; an ok value is encoded
    alone: bool = False  # nothing else ran beside it (a suspect, or the one that died)
    deadline: float | None = None  # the running attempt's timeout, monotonic
    task: asyncio.Task | None = None
    attempt: int = 1
    parents: dict[str, Any] = dataclasses.field(default_factory=dict)
    # "cancel" (Queue.cancel), "stop" (the worker stops) or "lost" (the lease went elsewhere)
    interrupt: str | None = None
    lost: bool = False  # its run no longer holds the job: whatever it returns is discarded
    cancellable: bool = False  # awaiting an async handler: task.cancel() reaches it
    progress: tuple[float, str | None] | None = None
    # The step's journaled result if it finished here before, read with its claim.
    replay: bytes | None = None
    looked_up: bool = False  # replay was read (else _run reads it)
    ran: tuple[int, float, float] | None = None  # a success to journal: (attempts, started, finished)
    unwritten: bool = False  # its outcome is known but not yet in the file (see _write_down)
    # Durable waits (dotdo/waits.py): the points the queue journaled for the job's
    # earlier runs (this run must meet each again), those this run met, how many of
    # each kind it met, and patch markers it met not yet sent to the queue.
    journaled: list[str] = dataclasses.field(default_factory=list)
    answers: dict[str, dict] = dataclasses.field(default_factory=dict)  # of ended points
    parked: bool = False  # its run parked the job: the queue has it, not a lost lease
    reached: list[str] = dataclasses.field(default_factory=list)
    counters: dict[str, int] = dataclasses.field(default_factory=dict)
    marks: list[str] = dataclasses.field(default_factory=list)
    trace: str | None = None  # its enqueue span's context (W3C), when traced
    # What the handler logged during this run (dotdo.logs), sent with its outcome
    # (the queue numbers it as the run's place in the job's attempts).
    logs: list[dict] | None = None

    def report(self) -> list:
        assert self.outcome is not None, "reported only once known"
        kind, value, ran = self.outcome
        if self.logs:
            return [self.job_id, self.uid, self.lease, kind, value, ran, self.logs]
        return [self.job_id, self.uid, self.lease, kind, value, ran]


class _JobRun:
    """What ``dotdo.progress``, ``dotdo.cancelled``, the durable waits and friends see
    of a running job."""

    __slots__ = ("_held", "_worker", "job_id", "queue", "attempt", "parents", "uid")

    def __init__(self, held: _Held, worker: Worker) -> None:
        self._held, self._worker = held, worker
        self.job_id, self.queue, self.attempt = held.job_id, held.queue, held.attempt
        self.parents, self.uid = held.parents, held.uid

    def next_key(self, kind: str) -> str:
        n = self._held.counters[kind] = self._held.counters.get(kind, 0) + 1
        return f"{kind}#{n}"

    async def point(self, key: str, kind: str, arg: dict[str, Any]) -> dict[str, Any]:
        """Meet point ``key`` at the queue; raises Parked when the job parks there."""
        held = self._held
        if not held.queue:
            raise RuntimeError("durable waits need a job from a queue, not Worker.process")
        known = held.answers.get(key)
        if known is not None:  # it ended before this run: its answer came with the claim
            held.reached.append(key)
            return known
        queue = dotdo.Queue(held.queue)
        await _send_marks(held, self._worker)
        answer = await queue.point(self._worker.id, held.job_id, held.uid, held.lease, key,
                                   kind, arg)
        if answer.get("lost"):
            raise _QueueSteps(held, self._worker)._lost()
        held.reached.append(key)
        if "parked" in answer:
            held.parked = True
            missing = _unmet(held)
            if missing:
                raise dotdo.ReplayError(_replay_error(held, missing))
            raise Parked(f"job {held.job_id!r} parked at {key}")
        return answer

    def patched(self, name: str) -> bool:
        held = self._held
        key = f"patch:{name}"
        if key in held.journaled:
            held.reached.append(key)
            return True
        seen = set(held.reached)
        if any(k not in seen for k in held.journaled):
            return False  # the run went past this place before, without the patch
        held.reached.append(key)
        held.marks.append(name)
        return True

    @property
    def fence(self) -> int:
        return self._held.lease  # the queue's claim number: a later claim's is larger

    def steps(self) -> _QueueSteps | None:
        # A job from a queue: its named steps are the queue's. One run directly
        # (Worker.process) has no queue: they are the worker's own.
        return _QueueSteps(self._held, self._worker) if self._held.queue else None

    def report_progress(self, value: float, message: str | None) -> None:
        self._held.progress = (value, message)
        # Sync handlers call this from a pool thread: the loop takes it from here.
        self._worker._event_loop.call_soon_threadsafe(self._worker._progress_made, self._held)

    def cancel_requested(self) -> bool:
        return self._held.interrupt is not None


class _QueueSteps:
    """The journal of a job handler's named steps: its queue's (``actors/steps.py``),
    asked on behalf of the run holding the job's lease."""

    __slots__ = ("_held", "_worker")

    def __init__(self, held: _Held, worker: Worker) -> None:
        self._held, self._worker = held, worker

    def _who(self) -> tuple[str, str, str | None, int]:
        held = self._held
        return self._worker.id, held.job_id, held.uid, held.lease

    def _lost(self) -> dotdo.LeaseLostError:
        self._held.lost = True
        return dotdo.LeaseLostError(
            f"job {self._held.job_id!r} no longer holds its lease on worker "
            f"{self._worker.id!r} (it went to another worker): this run stops")

    async def lookup(self, step_id: str) -> tuple[bool, Any]:
        queue = dotdo.Queue(self._held.queue)
        await _send_marks(self._held, self._worker)
        while True:
            if self._held.lost:
                raise self._lost()
            answer = await queue.step_begin(*self._who(), step_id)
            if "done" in answer:
                self._held.reached.append(f"step:{step_id}")
                return True, codec.decode(answer["done"])
            if answer.get("lost"):
                raise self._lost()
            if answer.get("run"):
                return False, None
            # busy: another run holds the step; ask again (its end wakes us)

    async def attempt(self, step_id: str, n: int, started: float, finished: float,
                      error: str) -> None:
        await dotdo.Queue(self._held.queue).step_attempt(
            *self._who(), step_id, n, started, finished, error, False)

    async def finish(self, step_id: str, encoded: bytes, n: int, started: float,
                     finished: float) -> tuple[bool, Any]:
        stored = await dotdo.Queue(self._held.queue).step_finish(
            *self._who(), step_id, encoded, n, started, finished)
        self._held.reached.append(f"step:{step_id}")
        return (False, None) if stored == encoded else (True, codec.decode(stored))

    def abandon(self, step_id: str) -> None:
        now = self._worker.storage.now()
        dotdo.Queue(self._held.queue).step_attempt(
            *self._who(), step_id, 0, now, now, None, True)  # sent; nobody waits


async def _send_marks(held: _Held, worker: Worker) -> None:
    """The patch markers a run met go to the queue before its next point or step."""
    if held.marks:
        names, held.marks = held.marks, []
        await dotdo.Queue(held.queue).mark(worker.id, held.job_id, held.uid, held.lease, names)


def _unmet(held: _Held) -> list[str]:
    """Points of the job's earlier runs that this run has not met (yet)."""
    seen = set(held.reached)
    return [k for k in held.journaled if k not in seen]


def _replay_error(held: _Held, missing: list[str]) -> str:
    return (f"job {held.job_id!r} resumed under code that no longer reaches "
            f"{missing[0]!r}, which an earlier run of it passed (its journal holds "
            f"{', '.join(missing)} that this run did not meet): the handler changed under "
            "a run in flight. Guard the change with dotdo.patched('name'), or let runs "
            "finish before such a deploy")


class _Interrupted(Exception):
    """An attempt stopped because its job was cancelled or its worker stops."""


class _Speed:
    """How long a sync handler takes, to run the quick ones on the event loop: handing
    a job to a pool thread and back costs more than a job of a hundred microseconds
    (a cache or database write). A handler runs on the loop while the median of its
    last runs there is under ``QUICK`` and none took over ``SLOW``. In the pool, once
    its fastest run since the last try was under ``QUICK`` (pool times are upper
    bounds: they include waiting for the GIL), it is *tried* on the loop: its runs go
    there, and once the pool's runs ended (while they run, they hold the GIL and
    inflate the loop's times as well) three of its clean runs there decide. A failed
    try doubles the runs until the next (from ``PROBE_EVERY`` to ``MAX_PROBE_EVERY``).
    So a handler that waits on I/O for milliseconds stays in the pool, where such
    waits overlap, and one that blocks for long does so on the loop at most once
    before it goes back to the pool. Heartbeats come from their own thread: leases
    hold meanwhile."""

    QUICK = 0.001
    SLOW = 0.05
    PROBE_EVERY = 50
    MAX_PROBE_EVERY = 50 * 64
    DECIDE = 3  # clean runs on the loop of a try that agree decide it
    DIRTY = 20  # runs of a try the pool kept busy, after which they count as clean

    __slots__ = ("recent", "quick", "pooled_min", "runs", "next_try", "every", "trying",
                 "dirty", "coroutine")

    def __init__(self, handler) -> None:
        self.recent: collections.deque[float] = collections.deque(maxlen=15)  # on the loop
        self.quick = 0  # how many of recent are under QUICK: their median is, past half
        self.pooled_min: float | None = None  # the fastest pool run since the last try
        self.runs = 0
        self.every = self.PROBE_EVERY
        self.next_try = self.every
        self.trying = False
        self.dirty = 0
        self.coroutine = inspect.iscoroutinefunction(handler)

    def inline(self) -> bool:
        self.runs += 1
        if self.trying:
            return True
        if self.quick > len(self.recent) // 2:  # the median of recent is under QUICK
            return True
        if (self.runs >= self.next_try and self.pooled_min is not None
                and self.pooled_min < self.QUICK):
            self.trying, self.dirty, self.pooled_min = True, 0, None
            self._forget()
            return True
        return False

    def timed(self, handler, payload, on_loop: bool = False, clean: bool = True) -> Any:
        """``handler(payload)``, timed: on the loop (``clean``: no pool run beside
        it), or in a pool thread."""
        began = time.perf_counter()
        try:
            return handler(payload)
        finally:
            seconds = time.perf_counter() - began
            if not on_loop:
                if self.pooled_min is None or seconds < self.pooled_min:
                    self.pooled_min = seconds
            elif seconds > self.SLOW:
                self._forget()  # back to the pool, to prove itself again
                self._tried(False)
            elif not self.trying:
                self._note(seconds)
            elif clean or self.dirty >= self.DIRTY:
                self._note(seconds)
                if self.quick >= self.DECIDE:
                    self._tried(True)
                elif len(self.recent) - self.quick >= self.DECIDE:
                    self._tried(False)
            else:
                self.dirty += 1

    def _note(self, seconds: float) -> None:
        recent = self.recent
        if len(recent) == recent.maxlen and recent[0] < self.QUICK:
            self.quick -= 1  # about to drop out
        recent.append(seconds)
        if seconds < self.QUICK:
            self.quick += 1

    def _forget(self) -> None:
        self.recent.clear()
        self.quick = 0

    def _tried(self, quick: bool) -> None:
        if self.trying:
            self.every = self.PROBE_EVERY if quick else min(2 * self.every, self.MAX_PROBE_EVERY)
        self.trying = False
        self.next_try = self.runs + self.every


async def _within(awaitable, timeout: float) -> Any:
    """Await a handler's coroutine in the current task (no task per job), cancelling it
    at ``timeout``; if it ignores the cancellation, this waits for it (it is stuck)."""
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            return await awaitable
    except TimeoutError:
        if limit.expired():
            raise TimeoutError(f"the attempt ran past its timeout of {timeout:g} s") from None
        raise


_WHY = {"cancel": "Cancelled: the job was cancelled while it ran",
        "stop": "WorkerStopped: its worker stopped while it ran",
        "lost": "LeaseLost: its lease went to another worker while it ran"}


@functools.lru_cache(maxsize=256)
def _policy(max_retries: int, backoff: float) -> dotdo.RetryPolicy:
    """One policy per setting, not one per job (building one checks every field)."""
    return dotdo.RetryPolicy(max_retries=max_retries, backoff=backoff)


_ONE_ATTEMPT = dotdo.RetryPolicy(max_retries=0)  # retries go back through the queue
# Outputs that cannot be awaitables: most are, and isawaitable is slow to say no.
_PLAIN = frozenset({type(None), bool, int, float, str, bytes, dict, list, tuple})


def _label(job_type: str) -> str:
    # Enqueuers choose types: only registered ones become metric series.
    return job_type if job_handlers.handler_for(job_type) else "(unregistered)"


class _Unstorable(Exception):
    """A job's output that cannot be kept: it does not encode, or is over the limit."""


def _output(value: Any) -> bytes:
    """A job's output, encoded as the queue stores it, or :class:`_Unstorable`."""
    try:
        encoded = codec.encode(value)
    except dotdo.EncodeError as exc:
        raise _Unstorable(f"EncodeError: the job's output cannot be stored: {exc}") from None
    if len(encoded) > MAX_OUTPUT:
        raise _Unstorable(
            f"LimitError: the job's output is {len(encoded):,} bytes encoded, over the "
            f"limit of {MAX_OUTPUT:,}: store big results elsewhere (a file, an object's "
            "storage) and return their key")
    return encoded


def _traced_outcome(span: Any, outcome: list, retries_left: bool) -> None:
    """An attempt's outcome on its span: completed, retrying, failed, parked or released."""
    kind, value = outcome[0], outcome[1]
    if kind == "ok":
        tracing.outcome(span, "completed")
    elif kind == "failed":
        retrying = retries_left and not value["final"]
        tracing.outcome(span, "retrying" if retrying else "failed", value["error"])
    else:
        tracing.outcome(span, kind)


def _record(queue: str, job_type: str, outcome: str, started: float) -> None:
    # Only a type with a handler here gets here with its own label (see _label).
    label = job_type if outcome != "unknown_type" else _label(job_type)
    metrics.job_ended(queue, label, outcome, time.monotonic() - started)


# Frames in these files are dotdo's, the worker's and asyncio's own (the thread pool's
# too): a job's trace folds them, so that it begins at the handler's frame.
_OWN_CODE = (*(os.path.dirname(m.__file__ or "") + os.sep
                for m in (dotdo, asyncio, concurrent.futures)),
             os.path.dirname(os.path.abspath(__file__)) + os.sep, threading.__file__)


class _Folded(traceback.StackSummary):
    """The user's frames of a traceback; the first line says how many were folded."""

    folded = 0

    def __bool__(self) -> bool:  # "Traceback ..." and the folded line, even with no frame left
        return bool(self.folded) or len(self) > 0

    def format(self) -> list[str]:
        lines = super().format()
        if self.folded:
            lines.insert(0, f"  [{self.folded} frame{'s' * (self.folded != 1)} of dotdo "
                            "and asyncio folded]\n")
        return lines


def _user_trace(exc: BaseException) -> str:
    """``exc``'s traceback, as ``traceback.format_exception`` has it, with the frames of
    :data:`_OWN_CODE` folded (in each exception of its chain): the exception's lines
    and the user's frames stay."""
    shown = traceback.TracebackException.from_exception(exc)
    todo, seen = [shown], set()
    while todo:
        one = todo.pop()
        if id(one) in seen:
            continue
        seen.add(id(one))
        kept = _Folded(f for f in one.stack
                       if not os.path.abspath(f.filename).startswith(_OWN_CODE))
        kept.folded = len(one.stack) - len(kept)
        one.stack = kept
        todo += [t for t in (one.__cause__, one.__context__, *(one.exceptions or ()))
                 if t is not None]
    return "".join(shown.format())


class Worker(dotdo.DurableObject, own_process=True):
    """Pulls and runs jobs; see the module docstring. Each worker is a process of its
    own (also when the default hosting is pooled): the jobs running in a process that
    dies are the only suspects."""

    # A job's step is needed only until its queue has the outcome: keep it a week
    # (for operators reading the journal), then let it go.
    retain_steps = 7 * 86_400.0

    def __init__(self) -> None:
        self.storage.migrate("worker", MIGRATIONS)
        self._config: dict[str, Any] | None = self.storage.get("config")
        self._loop_task: asyncio.Task | None = None
        self._modules: asyncio.Task | None = None
        self._modules_at = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._speed: dict[Any, _Speed] = {}  # handler -> how quick it has been
        self._pooled_now = 0  # sync runs in the thread pool now (see _Speed)
        self._in_process = dotdo.current_settings().in_process
        self._lease_timeout = 30.0
        self._reporting = asyncio.Lock()
        self._held: dict[str, _Held] = {}
        self._zombies: set[_Held] = set()  # lost runs still running: their slots stay taken
        self._crashed: list[_Held] = []
        self._released: list[str] = []  # steps reported, rows not yet deleted
        self._commits = 0  # group commits of outcomes since the process started (info())
        self._write_due = False  # a group commit is due at the loop's next turn
        self._written = 0  # outcomes those commits wrote
        self._event_loop = asyncio.get_running_loop()
        self._progressed: set[_Held] = set()  # progress not yet sent
        self._progress_task: asyncio.Task | None = None
        self._closing = False  # SIGTERM: hand the running jobs back, take no new ones
        if not self._in_process:  # in a Ray worker process of its own
            signals.on_terminate(self._on_sigterm)
        self._rebuild()
        if self._config or self._held or self._crashed:
            self._start_loop()

    def _rebuild(self) -> None:
        """What this worker held when its process last died: finished jobs are
        reported from the journal, the others were running at that moment."""
        for step, queue, job_id, uid, lease, outcome in self.storage.sql.execute(SELECT_HELD):
            held = _Held(step, queue, job_id, uid, lease)
            if outcome is not None:
                held.outcome = codec.decode(outcome)
            else:
                output = self.storage.journal.step_result(step)
                if output is None:
                    self._crashed.append(held)
                    continue
                held.outcome = ["ok", output, 1]
            self._held[step] = held
        # A job that died alone is taken to have killed the process (the queue counts it),
        # unless the worker ended its process itself (a hung attempt: see _hung).
        if self.storage.get("replaced"):
            self.storage.delete("replaced")
        elif len(self._crashed) == 1:
            self._crashed[0].alone = True

    # -- the API ----------------------------------------------------------------------

    async def start(self, queue: str, concurrency: int = 8, backoff: float = 1.0) -> dict:
        """Work for ``queue`` from now on (also after restarts) until ``stop()``."""
        if not is_int(concurrency) or concurrency < 1:
            raise ValueError(f"concurrency is an int >= 1, not {concurrency!r}")
        dotdo.RetryPolicy(backoff=backoff)  # checks it
        previous = self._config
        # Set before registering: a queue activated by this very call asks its workers
        # whether they serve it, and must hear yes from this one.
        self._config = {"queue": queue, "concurrency": concurrency, "backoff": backoff}
        try:
            await dotdo.Queue(queue).register_worker(self.id)
        except BaseException:
            self._config = previous
            raise
        self.storage.put("config", self._config)
        self._start_loop()
        return self._config

    def serves(self, queue: str) -> bool:
        """Whether this worker still works for ``queue`` (calling it activates the
        worker: a queue wakes its workers this way after a restart)."""
        return bool((self._config and self._config["queue"] == queue)
                    or any(h.queue == queue for h in [*self._held.values(), *self._crashed]))

    async def stop(self, drain: bool = True, timeout: float | None = None) -> dict[str, Any]:
        """Stop taking jobs. ``drain=True`` (the default): the running jobs finish, for
        at most ``timeout`` s if given; ``drain=False`` is ``timeout=0``. Jobs still
        running then are interrupted and go back to the queue at once, as they were
        (``released``, not failed, no retry counted): an async handler is cancelled; a
        sync one, which Python cannot interrupt, sees ``dotdo.cancelled()`` and its job
        goes back when it returns (or completes, if it does); ``stop`` does not wait for
        it past ``timeout``. Outcomes are reported; if the queue is away they stay in this
        worker's file and are sent once it is back. Returns ``{"finished": n,
        "returned": [job ids], "running": [job ids of sync handlers still running]}``."""
        if not isinstance(drain, bool):
            raise ValueError(f"drain is True or False, not {drain!r}")
        if timeout is not None and (not is_finite(timeout) or timeout < 0):
            raise ValueError(f"timeout is None or seconds >= 0, not {timeout!r}")
        queue = self._config["queue"] if self._config else None
        self._config = None
        self.storage.delete("config")
        limit = timeout if drain else 0.0
        running = self._running()
        if running and limit != 0:
            await asyncio.wait(running, timeout=limit)
        # With a time limit, interrupted async handlers get a moment to end; sync ones
        # are not waited for (their jobs go back when they return).
        await self._stop_running(None if limit is None else _UNWIND)
        ended = [(h.job_id, h.outcome[0]) for h in self._held.values() if h.outcome is not None]
        returned = [job_id for job_id, kind in ended if kind == "released"]
        still = [h.job_id for h in self._held.values() if h.outcome is None]
        try:
            await self._report()
            if queue is not None:
                await dotdo.Queue(queue).unregister_worker(self.id)
        except Exception:  # noqa: BLE001 - kept in the file; the pull loop sends them
            log.warning("dotdo: worker %s keeps its outcomes until its queue is back", self.id)
        return {"finished": len(ended) - len(returned), "returned": returned, "running": still}

    def cancel_job(self, queue: str, job_id: str) -> bool:
        """Ask a job this worker runs to stop (``Queue.cancel`` sends this); False if
        it does not run it."""
        for held in self._held.values():
            if held.queue == queue and held.job_id == job_id and held.outcome is None:
                self._interrupt(held, "cancel")
                return True
        return False

    def _interrupt(self, held: _Held, why: str) -> None:
        if held.interrupt is None:
            held.interrupt = why
            if held.cancellable and held.task is not None:
                held.task.cancel()  # an async handler: cancelled where it awaits

    async def _stop_running(self, wait: float | None = None) -> None:
        """Interrupt every job still running (it goes back to its queue) and wait for
        each to end (at once for async handlers, when they return for sync ones), for
        at most ``wait`` s if given."""
        for held in list(self._held.values()):
            if held.outcome is None and held.task is not None and not held.task.done():
                self._interrupt(held, "stop")
        deadline = None if wait is None else time.monotonic() + wait
        while running := [h.task for h in self._held.values() if h.outcome is None
                          and h.task is not None and not h.task.done()]:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            await asyncio.wait(running, timeout=left)

    def _on_sigterm(self) -> concurrent.futures.Future:
        """The process got SIGTERM: Ray's handler waits for this before it exits."""
        return asyncio.run_coroutine_threadsafe(self._give_back(), self._event_loop)

    async def _give_back(self) -> None:
        """Like ``stop(drain=False)``, but the assignment stays, so the restarted
        worker goes on working: the running jobs go back to their queue now."""
        if not self._closing:
            self._closing = True
            log.warning("dotdo: worker %s got SIGTERM: its running jobs go back to their queue",
                        self.id)
        await self._stop_running(_GIVE_BACK_WAIT)
        try:
            await self._report()
        except Exception:  # noqa: BLE001 - the restarted worker reports them from its file
            pass

    def info(self) -> dict[str, Any]:
        """What operators see of this worker: ``{"id", "queue", "concurrency", "node",
        "pid", "running": [job ids], "closing", "commits": {"batches", "outcomes"}}``
        (``queue`` None once stopped; ``commits``: the group commits of outcomes since
        the process started, and how many outcomes they wrote)."""
        config = self._config or {}
        return {"id": self.id, "queue": config.get("queue"), "concurrency": config.get("concurrency"),
                "node": socket.gethostname(), "pid": os.getpid(),
                "running": [h.job_id for h in self._held.values() if h.outcome is None],
                "closing": self._closing,
                "commits": {"batches": self._commits, "outcomes": self._written}}

    def forget_steps(self, steps: list[str]) -> int:
        """Forget the journaled steps of jobs their queue purged (not one it holds)."""
        return self.storage.journal.forget_steps([s for s in steps if s not in self._held])

    async def process(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run one Job Thing now, with its retries here (replayed if it ran before);
        returns its Result."""
        held = _Held(f"job-{job['$id']}", "", job["$id"], None, 0)
        policy = _policy(job.get("maxRetries", 3), 1.0)
        kind, value, _ = await self._run(job, held, policy, backoff=1.0)
        metrics.flush()
        if held.ran is not None:  # one job, one commit
            try:
                self.storage.journal.finish_step(held.step, value, *held.ran)
            except dotdo.StorageError as exc:  # the result is returned all the same
                log.warning("dotdo: worker %s could not journal job %r's step: %s", self.id,
                            held.job_id, exc)
        if kind != "ok":
            raise dotdo.JobError(value["error"] if isinstance(value, dict) else value)
        return result_thing(job["$id"], codec.decode(value), self.storage.now())

    # -- running jobs ------------------------------------------------------------------

    def _running(self, held_only: bool = False) -> list[asyncio.Task]:
        """Tasks of runs not ended: of held jobs, and (unless ``held_only``) of runs
        that lost their lease but have not returned yet (their slots stay taken)."""
        runs = list(self._held.values()) + ([] if held_only else list(self._zombies))
        return [h.task for h in runs if h.task is not None and not h.task.done()]

    def _threads(self, size: int) -> ThreadPoolExecutor:
        if self._pool is None or self._pool_size < size:
            if self._pool is not None:
                self._pool.shutdown(wait=False)  # its threads finish what they run
            self._pool = ThreadPoolExecutor(size, thread_name_prefix=f"dotdo-{self.id}")
            self._pool_size = size
        return self._pool

    async def _load_handler_modules(self) -> None:
        """Import the modules the App knows, where the drivers' job handlers live.
        Concurrent jobs wait for the same load; a type still unknown afterwards asks
        again, at most once a second (its module may have reached the App since)."""
        stale = self._modules is not None and self._modules.done() and (
            time.monotonic() - self._modules_at > _RELOAD_AFTER)
        if self._modules is None or stale:
            self._modules_at = time.monotonic()
            self._modules = asyncio.get_running_loop().create_task(self._import_modules())
        await self._modules

    async def _import_modules(self) -> None:
        import_modules(await dotdo.App(dotdo.DEFAULT_APP).module_list(), f"Worker {self.id!r}")

    async def _attempt(self, handler, payload: Any, timeout: float, held: _Held) -> Any:
        """One attempt under ``timeout``; never returns while the handler still runs
        (but for a sync one hung past ``HUNG_AFTER`` timeouts: see ``_hung``)."""
        if held.interrupt is not None:  # asked to stop before it started
            raise _Interrupted(_WHY[held.interrupt])
        held.deadline = time.monotonic() + timeout
        token = job_handlers.running.set(_JobRun(held, self))
        try:
            speed = self._speed.get(handler)
            if speed is None:
                speed = self._speed[handler] = _Speed(handler)
            if speed.coroutine:
                held.cancellable = True
                return await _within(handler(payload), timeout)
            # In process, the loop is every object's: a handler there waiting on a
            # call (``.result()``) would wait for itself.
            if not self._in_process and speed.inline():
                # Quick every time lately: run it here, no thread hand-off (see _Speed).
                result = speed.timed(handler, payload, on_loop=True, clean=not self._pooled_now)
                if time.monotonic() > held.deadline:  # as for a run in the pool
                    raise TimeoutError(f"the attempt ran past its timeout of {timeout:g} s")
            else:
                # Sync code runs off the loop, seeing this object as the current one.
                size = self._config["concurrency"] if self._config else 1
                call = contextvars.copy_context().run
                running = asyncio.wrap_future(
                    self._threads(size).submit(call, speed.timed, handler, payload))
                self._pooled_now += 1
                running.add_done_callback(self._pool_run_ended)
                done, _ = await asyncio.wait({running}, timeout=timeout)
                if not done:
                    # A thread cannot be interrupted: until it returns, this job's slot
                    # stays taken (heartbeats say "stuck"), and no other attempt runs;
                    # one that will not return is given up with its process.
                    done, _ = await asyncio.wait({running}, timeout=(HUNG_AFTER - 1) * timeout)
                    if not done:
                        await self._hung(held, timeout)
                        await asyncio.wait({running})
                    raise TimeoutError(f"the attempt ran past its timeout of {timeout:g} s")
                result = running.result()
            if type(result) not in _PLAIN and inspect.isawaitable(result):
                # a sync function that returned a coroutine
                result = await _within(result, max(held.deadline - time.monotonic(), 0.001))
            return result
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                if held.interrupt is None:
                    raise  # the worker itself is going away
                current.uncancel()
                raise _Interrupted(_WHY[held.interrupt]) from None
            raise dotdo.HandlerError(f"the handler raised CancelledError: {exc}") from None
        except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
            # Caught here, in the job's own task: out of a task these stop the loop.
            raise dotdo.HandlerError(f"the handler raised {type(exc).__name__}: {exc}") from None
        finally:
            held.deadline = None
            held.cancellable = False
            job_handlers.running.reset(token)

    def _pool_run_ended(self, _run: asyncio.Future) -> None:
        self._pooled_now -= 1

    async def _hung(self, held: _Held, timeout: float) -> None:
        """A sync attempt still running at ``HUNG_AFTER`` times its timeout: Python
        cannot stop its thread, so the worker gives the job up with its process. The
        attempt fails (written down, so the restarted worker reports it; retried as
        any timeout is), the other jobs go back to the queue, and the process exits:
        Ray starts a new one, which blames no job for the exit. In process there is
        no process of the worker's own to replace: the job stays stuck."""
        error = (f"HungAttempt: the attempt ran past {HUNG_AFTER} times its timeout of "
                 f"{timeout:g} s and did not stop (sync code cannot be interrupted): "
                 f"worker {self.id!r} replaced its process to end it")
        if self._in_process:
            log.error("dotdo: %s; in-process hosting has no process to replace: job %r "
                      "stays stuck until its handler returns", error, held.job_id)
            return
        log.error("dotdo: job %r: %s", held.job_id, error)
        outcome = ["failed", {"error": error, "trace": None, "final": False,
                              "backoff": self._config["backoff"] if self._config else 1.0}, 1]
        with contextlib.suppress(Exception):  # the disk may be the trouble: the queue still hears
            self.storage.put("replaced", True)
            self.storage.sql.execute(SETTLE, (codec.encode(outcome), held.step))
        held.outcome = outcome
        self._closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._give_back(), _GIVE_BACK_WAIT)
        os._exit(70)  # EX_SOFTWARE; Ray restarts the actor

    async def _run(self, job: dict[str, Any], held: _Held, policy: dotdo.RetryPolicy,
                   backoff: float, payload: bytes | None = None) -> list:
        """``[kind, value, ran]`` for one job: ``ok`` and the output (encoded), ``failed``
        and ``{"error", "trace", "final", "backoff"}``, or ``released`` (not run for a
        reason of the worker's: the App away while handlers load, or the worker
        stopping). ``payload``: the job's as the queue stores it (decoded here, once
        the handlers' modules are in); None: ``job["payload"]``. A run that finished
        here before (its step journaled) is not run again."""
        job_type = job["type"]
        handler = job_handlers.handler_for(job_type)
        if handler is None:
            try:
                await self._load_handler_modules()
            except Exception as exc:  # noqa: BLE001 - not the job's fault: back to the queue
                log.warning("dotdo: worker %s cannot load job handlers: %r", self.id, exc)
                await asyncio.sleep(_RETRY_AFTER)  # its slot stays taken: no fast loop
                return ["released", None, 0]
            handler = job_handlers.handler_for(job_type)
        started = time.monotonic()
        if handler is None:
            _record(held.queue, job_type, "unknown_type", started)
            return ["failed", {"error": f"no handler registered for job type {job_type!r}",
                               "trace": None, "final": True, "backoff": backoff}, 0]
        done = held.replay if held.looked_up else self.storage.journal.step_result(held.step)
        if done is not None:  # it ran to the end here before: its output, not a new run
            _record(held.queue, job_type, "completed", started)
            return ["ok", done, 1]
        try:
            if payload is not None:
                job = {**job, "payload": codec.decode(payload)}
            held.parents = {k: codec.decode(v) for k, v in held.parents.items()}
        except Exception as exc:  # noqa: BLE001 - this job alone fails, at once
            _record(held.queue, job_type, "undecodable", started)
            return ["failed", {"error": f"DecodeError: the payload of job {held.job_id!r} "
                               f"cannot be decoded in worker {self.id!r}: {exc}",
                               "trace": None, "final": True, "backoff": backoff}, 0]
        calls = 0
        timeout = job.get("timeout") or DEFAULT_TIMEOUT
        began = self.storage.now()

        async def attempt():
            nonlocal calls
            calls += 1
            return await self._attempt(handler, job["payload"], timeout, held)

        try:
            # Retries here only for process(). A queue's job gets one attempt a claim,
            # called as it is: dotdo.do would note on its error that it "gave up after
            # 1 attempt", which is not the job's count (the queue retries it).
            output = _output(await (attempt() if policy is _ONE_ATTEMPT
                                    else dotdo.do(attempt, policy=policy)))
            missing = _unmet(held)
            if missing:  # it ended without meeting steps it had passed: not silently
                raise dotdo.ReplayError(_replay_error(held, missing))
        except Parked:  # the job waits in its queue, holding nothing here
            _record(held.queue, job_type, "parked", started)
            return ["parked", None, 0]
        except Exception as exc:  # noqa: BLE001 - the job failed, the worker goes on
            if held.interrupt == "stop":
                _record(held.queue, job_type, "released", started)
                return ["released", f"WorkerStopped: worker {self.id!r} stopped while it ran", 0]
            _record(held.queue, job_type, "failed", started)
            return ["failed", {"error": str(exc) if isinstance(exc, (_Interrupted, _Unstorable))
                               else f"{type(exc).__name__}: {exc}",
                               "trace": _user_trace(exc),
                               "final": isinstance(exc, (dotdo.TerminalError, _Unstorable,
                                                         dotdo.ReplayError))
                               or bool(held.interrupt),
                               "backoff": backoff}, 1]
        # Journaled by the caller: a queue's job with others in one commit (_write_down).
        held.ran = (calls, began, self.storage.now())
        _record(held.queue, job_type, "completed", started)
        return ["ok", output, 1]

    async def _run_held(self, held: _Held, job: dict[str, Any], payload: bytes,
                        backoff: float) -> None:
        try:
            with tracing.consumer(held.trace, held.queue, held.job_id, job["type"], held.attempt,
                                  held.lease, self.id) as span, \
                    logs.job_scope(held.queue, held.job_id, held.attempt) as lines:
                outcome = await self._run(job, held, _ONE_ATTEMPT, backoff, payload)
                if span is not None:
                    _traced_outcome(span, outcome, held.attempt <= job.get("maxRetries", 0))
            held.logs = lines or None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if held.interrupt is None or current is None:
                raise  # the worker itself is going away
            current.uncancel()  # interrupted outside the handler (loading it, say)
            outcome = (["released", f"WorkerStopped: worker {self.id!r} stopped", 0]
                       if held.interrupt == "stop" else
                       ["failed", {"error": "Cancelled: cancelled before it started",
                                   "trace": None, "final": True, "backoff": backoff}, 0])
        if held.lost:  # the job went to another worker: this run's outcome counts for nothing
            return
        # Written down with the other outcomes of its batch, before the report (_report);
        # until then the job is in flight: if the process dies, it runs again.
        # (a parked job has nothing to write: the queue parked it in its own commit)
        held.unwritten = outcome[0] not in ("ok", "parked") or held.ran is not None
        held.outcome = outcome
        if held.unwritten and not self._write_due:
            # Written down at the loop's next turn, with every other outcome of this one:
            # the in-flight window stays that short whatever the report waits for (a
            # queue away, a long-poll claim).
            self._write_due = True
            asyncio.get_running_loop().call_soon(self._write_now)

    def _write_now(self) -> None:
        """The group commit of the outcomes that ended in the last turn of the loop."""
        self._write_due = False
        self._write_down(self._unwritten())

    def _hold(self, queue: str, grants: list[dict[str, Any]], backoff: float) -> list[list]:
        """Write the claimed jobs down, then start them (or hand them back, if this
        worker was stopped while it claimed). Memory follows the commit: if the write
        fails, nothing is held, and the reports returned hand every grant back. The
        outcomes that finished meanwhile join this commit (one fsync fewer: the next
        report only sends them)."""
        forgotten = list(self._released)
        done = self._unwritten()
        try:
            # One read for the batch: which of them finished here before (not run again).
            replays = self.storage.journal.step_results(
                [g["step"] for g in grants if g["step"] not in self._held])
            try:
                fresh, renewed = self._write_claim(queue, grants, forgotten, done)
            except Exception:  # the outcomes may be what did not fit
                if not done:
                    raise
                done = []  # the claim alone; the outcomes go with the report
                fresh, renewed = self._write_claim(queue, grants, forgotten, done)
        except Exception as exc:  # noqa: BLE001 - the disk refused: the queue has them back
            log.warning("dotdo: worker %s could not write down %d claimed job(s), which go "
                        "back to the queue: %s", self.id, len(grants), exc)
            why = f"StorageError: worker {self.id!r} could not write down its claim: {exc}"
            return [[g["job"]["$id"], g["uid"], g["lease"], "released", why, 0] for g in grants]
        del self._released[:len(forgotten)]
        self._written_down(done)
        for grant in renewed:
            self._held[grant["step"]].lease = grant["lease"]
        loop = asyncio.get_running_loop()
        for grant in fresh:
            job = grant["job"]
            held = self._held[grant["step"]] = _Held(
                grant["step"], queue, job["$id"], grant["uid"], grant["lease"],
                alone=grant["alone"], attempt=job["attempts"] + 1,
                parents=dict(grant.get("parents") or {}),
                replay=replays.get(grant["step"]), looked_up=True,
                journaled=list(grant.get("points") or ()),
                answers=dict(grant.get("answers") or {}), trace=grant.get("trace"))
            if self._config is None or self._closing:  # stopped, or SIGTERM came
                held.outcome = ["released", None, 0]
            else:
                held.task = loop.create_task(self._run_held(held, job, grant["payload"], backoff))
        return []

    def _write_claim(self, queue: str, grants: list[dict[str, Any]], forgotten: list[str],
                     done: list[_Held]) -> tuple[list[dict], list[dict]]:
        """One transaction: the rows of jobs let go, of the claimed ones, and the
        outcomes ``done``; returns the grants new here and those renewed."""
        fresh: list[dict] = []
        renewed: list[dict] = []
        for grant in grants:
            # ours again after a silence: it runs (or ran) here
            (renewed if grant["step"] in self._held else fresh).append(grant)
        with self.storage.transaction():
            self._each(RELEASE, [(step,) for step in forgotten])
            self._each(RENEW, [(g["lease"], g["step"]) for g in renewed])
            self._each(HOLD, [(g["step"], queue, g["job"]["$id"], g["uid"], g["lease"])
                              for g in fresh])
            self._write_outcomes(done)
        return fresh, renewed

    def _each(self, statement: str, rows: list[tuple]) -> None:
        """``statement`` for each of ``rows``, in the open transaction: one call into
        SQLite for a batch, not one per job."""
        if rows:
            self.storage.sql.conn.executemany(statement, rows)

    def _lose(self, queue: str, runs: list) -> None:
        """The queue says these runs (``[job id, lease]``) no longer hold their jobs:
        stop each at once; whatever it returns is discarded. One that ended already,
        its outcome not yet reported, is reported as usual (a success from a past
        holder counts: the job did run to the end)."""
        lost = {(job_id, lease) for job_id, lease in runs}
        for held in list(self._held.values()):
            if (held.queue != queue or (held.job_id, held.lease) not in lost
                    or held.outcome is not None or held.parked):
                continue  # (a parked run's job is the queue's, not another worker's)
            log.warning("dotdo: worker %s lost the lease of job %r (it went to another "
                        "worker): its run stops, its outcome is discarded", self.id, held.job_id)
            held.lost = True
            del self._held[held.step]
            self._released.append(held.step)  # its row goes with the next write
            if held.task is not None and not held.task.done():
                self._zombies.add(held)
                held.task.add_done_callback(functools.partial(self._buried, held))
                self._interrupt(held, "lost")

    def _buried(self, held: _Held, _task: asyncio.Task) -> None:
        """A lost run ended: its slot is free."""
        self._zombies.discard(held)

    async def _report(self) -> None:
        """Write finished jobs' outcomes down in one commit, then send them to their
        queues, one call per queue, and let go of them; raises (keeping them) if a
        queue is away."""
        async with self._reporting:
            metrics.flush()
            finished = [h for h in self._held.values() if h.outcome is not None]
            self._write_down(finished)
            by_queue: dict[str, list[_Held]] = {}
            for held in finished:
                by_queue.setdefault(held.queue, []).append(held)
            for queue, done in by_queue.items():
                await dotdo.Queue(queue).complete(self.id, [h.report() for h in done])
                self._let_go(done)

    def _write_down(self, finished: list[_Held]) -> None:
        """The group commit: every outcome of ``finished`` not yet in the file (a
        success as its step, a failure in its row), with the rows of jobs let go, in
        one transaction, one fsync, before any of them is reported. If the disk
        refuses, they are reported from memory all the same (the queue's commit keeps
        them; if this process dies first, they run again) and the write is tried again
        at each report while they are held."""
        fresh = [h for h in finished if h.unwritten]
        if not fresh:
            return
        forgotten = list(self._released)
        try:
            with self.storage.transaction():
                self._write_outcomes(fresh)
                self._each(RELEASE, [(step,) for step in forgotten])
        except Exception as exc:  # noqa: BLE001 - reported from memory all the same
            log.warning("dotdo: worker %s could not write down %d outcome(s), reported from "
                        "memory (if its process dies before the queue has them, they run "
                        "again): %s", self.id, len(fresh), exc)
            return
        del self._released[:len(forgotten)]
        self._written_down(fresh)

    def _unwritten(self) -> list[_Held]:
        """Held jobs whose outcome is known but not yet in the file."""
        return [h for h in self._held.values() if h.unwritten and h.outcome is not None]

    def _write_outcomes(self, done: list[_Held]) -> None:
        """Inside a transaction: each success of ``done`` as its step (a run that lost
        its lease is never here: it left ``_held``), each other outcome in its row."""
        if not done:
            return
        self.storage.journal.finish_steps(
            [(h.step, h.outcome[1], *h.ran) for h in done
             if h.ran is not None and h.outcome is not None])
        self._each(SETTLE, [(codec.encode(h.outcome), h.step) for h in done if h.ran is None])

    def _written_down(self, done: list[_Held]) -> None:
        """``done``'s outcomes committed: reports may send them."""
        if done:
            for held in done:
                held.unwritten = False
            self._commits += 1
            self._written += len(done)

    def _progress_made(self, held: _Held) -> None:
        """A handler reported progress: send it soon, with any others (on the loop)."""
        self._progressed.add(held)
        if self._progress_task is None or self._progress_task.done():
            with tracing.detached():  # sent for every running job, not the one that called
                self._progress_task = self._event_loop.create_task(self._send_progress())

    async def _send_progress(self) -> None:
        """Send the latest progress of each job, at most every ``_PROGRESS_EVERY`` s."""
        while self._progressed:
            due, self._progressed = self._progressed, set()
            by_queue: dict[str, list[list]] = {}
            for held in due:
                if held.outcome is None and held.progress is not None:
                    by_queue.setdefault(held.queue, []).append(
                        [held.job_id, held.uid, held.lease, *held.progress])
            for queue, updates in by_queue.items():
                try:
                    await dotdo.Queue(queue).progress(self.id, updates)
                except Exception:  # noqa: BLE001 - progress is a hint: the next one will do
                    pass
            await asyncio.sleep(_PROGRESS_EVERY)

    def _let_go(self, done: list[_Held]) -> None:
        """The queue has these: forget them. Their rows go in the next write (one
        commit fewer per batch); a crash before it only means they are reported
        again, and a queue ignores a report it has."""
        for held in done:
            self._released.append(held.step)
            if self._held.get(held.step) is held:
                del self._held[held.step]

    def _forget_released(self) -> None:
        """Delete the rows of jobs let go, in one commit (kept for the next write, if
        this one fails)."""
        forgotten = list(self._released)
        with self.storage.transaction():
            self._each(RELEASE, [(step,) for step in forgotten])
        del self._released[:len(forgotten)]

    async def _recover(self) -> None:
        """Settle accounts with every queue this worker deals with: outcomes first,
        then the jobs that were running when the process died, and leases whose
        claim answer never arrived go back."""
        await self._report()
        queues = {h.queue for h in [*self._held.values(), *self._crashed]}
        if self._config:
            queues.add(self._config["queue"])
        for queue in queues:
            crashed = [h for h in self._crashed if h.queue == queue]
            holding = [h.job_id for h in self._held.values() if h.queue == queue]
            await dotdo.Queue(queue).recover(
                self.id, [[h.job_id, h.uid, h.lease, h.alone] for h in crashed], holding)
            self._let_go(crashed)
            self._crashed = [h for h in self._crashed if h.queue != queue]
        self._forget_released()  # at once: a stale crash must not count again

    def _start_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            with tracing.detached():  # its claims and reports are not the start call's
                self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        beats = _Heartbeats(self)
        beats.start()
        recover = True
        try:
            while True:
                config = None if self._closing else self._config
                try:
                    if recover:
                        await self._recover()
                        recover = False
                    running = self._running()
                    if config is None:  # stopped: the running jobs finish and report
                        await self._report()
                        if not running:
                            if self._config is not None and not self._closing:
                                continue  # started again while this loop reported
                            self._forget_released()
                            return
                        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    alone = any(h.alone for h in self._held.values() if h.outcome is None)
                    room = 0 if alone else config["concurrency"] - len(running)
                    if room > 0:
                        # The outcomes go first (their latency is the jobs'), the claim
                        # right behind them, overlapping their round trip. Long-poll
                        # only with nothing running.
                        reported = asyncio.ensure_future(self._report())
                        await asyncio.sleep(0)  # the report is sent
                        claimed = dotdo.Queue(config["queue"]).claim(
                            self.id, room, wait=0.0 if running else 1.0, idle=not running)
                        await reported
                        grant = await claimed
                        self._lease_timeout = grant["lease_timeout"]
                        unheld = self._hold(config["queue"], grant["jobs"], config["backoff"])
                        if unheld:  # not written down: back to the queue, not run
                            await dotdo.Queue(config["queue"]).complete(self.id, unheld)
                            await asyncio.sleep(_RETRY_AFTER)  # the disk: no fast loop
                    else:
                        await self._report()
                    running = self._running()
                    if running and not any(h.outcome for h in self._held.values()):
                        await asyncio.wait(running, timeout=_FLUSH_EVERY,
                                           return_when=asyncio.FIRST_COMPLETED)
                except Exception:
                    log.warning("dotdo: worker %s lost its queue for a moment", self.id,
                                exc_info=True)
                    # A claim may have leased jobs whose answer was lost: give them back.
                    recover = True
                    await asyncio.sleep(_RETRY_AFTER)
        finally:
            beats.stop()


class _Heartbeats(threading.Thread):
    """Renews the leases of the jobs a worker holds, from a thread: nothing a handler
    does on the event loop (or in the thread pool) can hold it up."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name=f"dotdo-heartbeat-{worker.id}", daemon=True)
        self._worker = worker
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()

    def run(self) -> None:
        worker = self._worker
        beaten = time.monotonic()
        # Short naps, so that a shorter lease learnt from a claim applies at once.
        while not self._done.wait(min(worker._lease_timeout / 3, 0.5)):
            if time.monotonic() - beaten >= worker._lease_timeout / 3:
                beaten = time.monotonic()
                self._beat(worker)

    @staticmethod
    def _beat(worker: Worker) -> None:
        now = time.monotonic()
        by_queue: dict[str, tuple[list[list], list[str]]] = {}
        for held in list(worker._held.values()):  # one step under the GIL
            runs, stuck = by_queue.setdefault(held.queue, ([], []))
            runs.append([held.job_id, held.lease])
            deadline = held.deadline
            if deadline is not None and now > deadline:
                stuck.append(held.job_id)
        for queue, (runs, stuck) in by_queue.items():
            try:
                # A future, not ray.get: blocking is what this thread is for.
                beat = dotdo.Queue(queue).heartbeat(worker.id, runs, stuck).ref.future()
                answer = beat.result(timeout=worker._lease_timeout)
            except Exception:  # noqa: BLE001 - the queue is away: beat again soon
                continue
            worker._lease_timeout = answer["lease_timeout"]
            loop = worker._event_loop
            if answer.get("lost"):  # runs that lost their lease: they stop now
                loop.call_soon_threadsafe(worker._lose, queue, answer["lost"])
            if answer["cancel"]:  # cancel requests the queue's own call did not deliver
                for job_id in answer["cancel"]:
                    loop.call_soon_threadsafe(worker.cancel_job, queue, job_id)
