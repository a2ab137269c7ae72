"""Tests that skip time: your objects and jobs in this process, on a clock you move.

``with dotdo.testing.local() as env:`` runs every object in this process (in-process
hosting, no Ray), with a temporary storage root and a test clock that stands still
until the test moves it:

* ``env.advance(seconds)`` moves the clock and runs what falls due on the way, in
  order, before it returns: schedules (``dotdo.every``), alarms and their retries,
  backoffs of ``dotdo.do`` in objects. Delayed jobs and jobs waiting out a retry
  backoff are ready in their queue once it returns.
* ``env.drain(queue)`` runs the queue's ready jobs with an in-process worker until
  none is ready, and returns a :class:`Drained` summary (which jobs completed,
  failed, were retried, and when the next one left is due).

``advance`` and ``drain`` also exist as functions of the active ``local()``, and the
pytest plugin (``dotdo.testing.plugin``, registered by entry point) gives the
``dotdo_local``, ``dotdo_advance`` and ``dotdo_drain`` fixtures. When ``local()``
exits, its objects stop, the real clock is back and the settings from before are
restored. See ``docs/testing.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator

import ray

import dotdo
from dotdo import client, connect, context, jobs
from dotdo import clock as clocks
from dotdo import settings as _conf
from dotdo.clock import Clock, ManualClock
from dotdo.errors import ConfigError, DotdoError
from dotdo.host import ObjectTable
from dotdo.inprocess import LocalHost
from dotdo.registry import DEFAULT_APP
from dotdo.stub import Stub

__all__ = ["local", "Local", "advance", "drain", "Drained", "NotSettled", "START"]

START = 1_700_000_000.0  # the test clock's first reading (epoch seconds: 2023-11-14)
SETTLE_TIMEOUT = 30.0  # real seconds advance() waits for woken work to end
DRAIN_TIMEOUT = 60.0  # real seconds drain() runs jobs by default
DRAIN_WORKER = "dotdo.testing.drain"  # the Worker drain() runs jobs with
_TURNS = 20  # turns of the host's loop per look: a woken sleep reaches its work in ~4
_PAUSE = 0.002  # real seconds between looks: longer than a queued call is held (outbox.HOLD)
_PAGE = 1_000


class NotSettled(DotdoError, TimeoutError):
    """``advance`` or ``drain`` waited its time out for work that did not end."""


@dataclasses.dataclass(frozen=True)
class Drained:
    """What :meth:`Local.drain` did to a queue, job ids in the order it happened, and
    what it left."""

    completed: list[str]  # ended completed
    failed: list[str]  # ended failed: retries spent, a TerminalError, no handler
    cancelled: list[str]
    retried: list[str]  # failed an attempt and wait out their backoff (once per attempt)
    ready: int  # still ready: the queue is paused
    later: int  # not due yet: delayed, waiting out a backoff, or parked until a time
    next_at: float | None  # clock time (``now()``) the first of those is due


class _DriverClock(Clock):
    """The clock ``dotdo.do`` reads in test code (``context.use_clock``): the test
    clock, where a backoff's sleep moves it, since nobody else would while the test
    waits."""

    def __init__(self, env: Local) -> None:
        super().__init__()
        self._env = env

    def now(self) -> float:
        return self._env.clock.now()

    def monotonic(self) -> float:
        return self._env.clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.to_thread(self._env.advance, seconds)


def _job_asleep() -> tuple[str, str] | None:
    """What a sleep on the test clock is kept with: the job it runs in, if any."""
    run = jobs.running.get()
    return None if run is None else (run.queue, run.job_id)


async def _look(table: ObjectTable) -> tuple[tuple[tuple[str, str], ...], int]:
    """On the host's loop, after letting woken sleeps reach their work: the objects
    whose handlers, ticks or alarm run, or whose events wait, and how many calls the
    host has admitted so far (its progress)."""
    for _ in range(_TURNS):
        await asyncio.sleep(0)
    # Every live object has an Activity (set by ObjectTable.activate).
    busy = tuple(key for key, obj in list(table.objects.items())
                 if not obj._dotdo_activity.idle)
    return busy, table.admitted


class Local:
    """A running :func:`local`: its test clock, storage root, ``advance`` and
    ``drain``."""

    def __init__(self, clock: ManualClock, storage: str) -> None:
        self.clock = clock
        self.storage = storage
        self._host: LocalHost | None = None
        self._open = False

    def now(self) -> float:
        """The test clock's wall time (epoch seconds), as objects read it."""
        return self.clock.now()

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward, stopping at each wake-up on the way
        (a schedule's tick, an alarm, a backoff's end) until what woke there has run,
        as if the time had passed; returns ``now()``. Jobs that fell due are ready
        in their queue (``drain`` runs them; a worker of your own claims them within
        its next long-poll, a second)."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"advance() takes a finite number of seconds >= 0, not {seconds!r}")
        self._usable("advance")
        self._advance_to(self.clock.monotonic() + seconds)
        return self.clock.now()

    def _advance_to(self, end: float) -> None:
        # First what earlier calls set going: a sleep they start must begin before
        # the clock moves (it would end that much later).
        self._settle()
        while (wake := self.clock.next_wake()) is not None and wake <= end:
            self.clock.advance_to(wake)
            self._settle()
        self.clock.advance_to(end)
        self._settle()

    def _settle(self) -> None:
        """Wait until the work the clock woke has run: two looks in a row (a moment
        apart) find no object busy and no call admitted in between."""
        host = self._host
        assert host is not None, "set by local()"
        deadline = time.monotonic() + SETTLE_TIMEOUT
        seen = None
        while True:
            look = asyncio.run_coroutine_threadsafe(_look(host.table), host.loop).result(SETTLE_TIMEOUT)
            if not look[0] and look == seen:
                return
            seen = look
            if time.monotonic() > deadline:
                what = (f"objects {', '.join(f'{c}({i!r})' for c, i in look[0])} were still busy"
                        if look[0] else "calls to the objects kept coming")
                raise NotSettled(
                    f"advance(): {what} {SETTLE_TIMEOUT:g} s after the clock woke them (a "
                    "handler, tick or alarm that does not end, or a loop of calls): make "
                    "them end, or test that work without the test clock")
            time.sleep(_PAUSE)

    def drain(self, queue: Stub | str, *, timeout: float = DRAIN_TIMEOUT) -> Drained:
        """Run ``queue``'s ready jobs (a ``dotdo.Queue`` stub or its id) with an
        in-process worker until none is ready and none runs; returns what happened.
        Jobs a failure sent back to wait out their backoff, and delayed ones, are left
        for ``advance``. A running job that sleeps on the test clock (a ``dotdo.do``
        backoff in its handler) has the clock moved to its wake-up, as if the time
        passed. Raises :class:`NotSettled` if jobs still run after ``timeout`` real
        seconds."""
        self._usable("drain")
        q = _queue(queue)
        events = _Events(q)
        worker = dotdo.Worker(DRAIN_WORKER)
        worker.start(q.id, concurrency=16).result()
        deadline = time.monotonic() + timeout
        idle = 0  # polls in a row that found nothing ready or running
        try:
            while True:
                events.collect()
                m = q.get_metrics().result()
                # Ready: pending and due, a retry whose backoff is over included.
                ready = q.oldest_pending_age().result() is not None
                # Two reads, not one state (a claim may come between them): done only
                # once two polls in a row say so.
                idle = idle + 1 if m.running + m.stuck == 0 and (not ready or m.paused) else 0
                if idle == 2:
                    break
                if not ready and self._skip_to_sleeping_jobs(q):
                    continue
                if time.monotonic() > deadline:
                    raise NotSettled(
                        f"drain(): queue {q.id!r} still has jobs {'ready and ' if ready else ''}"
                        f"running ({m.running + m.stuck}) after {timeout:g} s: a handler that "
                        "does not end, or a rate limit (its windows are real time); give a "
                        "longer timeout, or make the handler end")
                time.sleep(_PAUSE)
        finally:  # a job still running past the deadline goes back to the queue
            worker.stop(timeout=max(deadline - time.monotonic(), 0.0) + 1.0).result()
        events.collect()
        m = q.get_metrics().result()
        now = self.clock.now()
        due = _run_times(q)
        return Drained(completed=events.ids["Job.completed"], failed=events.ids["Job.failed"],
                       cancelled=events.ids["Job.cancelled"], retried=events.ids["Job.retrying"],
                       ready=m.pending + sum(1 for t in due if t <= now),
                       later=sum(1 for t in due if t > now),
                       next_at=min((t for t in due if t > now), default=None))

    def _skip_to_sleeping_jobs(self, q: Stub) -> bool:
        """If every job running in ``q`` sleeps on the test clock, move the clock to
        the first of their wake-ups (and through what falls due before it)."""
        running = {job["$id"] for status in ("running", "stuck")
                   for job in q.list(status=status, limit=_PAGE).result()["jobs"]}
        asleep: dict[str, float] = {}
        for until, label in self.clock.sleepers():
            if isinstance(label, tuple) and label[0] == q.id:
                asleep.setdefault(label[1], until)
        if not running or not running <= asleep.keys():
            return False
        self._advance_to(min(asleep[job_id] for job_id in running))
        return True

    def _usable(self, what: str) -> None:
        if not self._open:
            raise ConfigError(f"{what}() belongs to a dotdo.testing.local() that has exited: "
                              "call it inside the `with` block (or use the fixture's)")
        if self._host is not None and self._host.on_loop():
            raise ConfigError(f"dotdo.testing.{what}() is for test code, not for code inside "
                              "an object (it waits for the objects' loop)")


class _Events:
    """A queue's Job events since a point, kept by kind (job ids, in order)."""

    def __init__(self, q: Stub) -> None:
        self._q = q
        first = q.recent_events(sys.maxsize).result()  # nothing: where the numbers are now
        self._instance, self._after = first["instance"], first["next"]
        self.ids: dict[str, list[str]] = {kind: [] for kind in (
            "Job.completed", "Job.failed", "Job.cancelled", "Job.retrying")}

    def collect(self) -> None:
        page = self._q.recent_events(self._after).result()
        if page["instance"] != self._instance:  # the queue came back from its file
            self._instance, self._after = page["instance"], 0
            page = self._q.recent_events(0).result()
        events = page["events"]
        if events and events[0]["n"] > self._after + 1:
            raise NotSettled(f"drain(): queue {self._q.id!r} made more than a thousand Job "
                             "events between two looks, and the summary lost some: drain "
                             "fewer jobs at a time")
        for event in events:
            kind, data = event["type"], event["data"]
            if kind in self.ids:
                self.ids[kind].append(data["jobId"] if kind == "Job.completed" else data["$id"])
        self._after = page["next"]


def _queue(queue: Stub | str) -> Stub:
    if isinstance(queue, str):
        return dotdo.Queue(queue)
    if isinstance(queue, Stub) and queue.class_name == "Queue":
        return queue
    raise TypeError(f"drain() takes a dotdo.Queue stub or a queue's id, not {queue!r}")


def _run_times(q: Stub) -> list[float]:
    """When each job of ``q`` that is delayed, backing off or parked until a time (a
    sleep's end, a wait's timeout) is (or was) due."""
    times: list[float] = []
    for status in ("delayed", "retrying", "sleeping", "waiting"):
        cursor = None
        while True:
            page = q.list(status=status, limit=_PAGE, cursor=cursor).result()
            times += [job["wakeAt"] if "waitingFor" in job else job["runAt"]
                      for job in page["jobs"] if status != "waiting" or "wakeAt" in job]
            cursor = page["cursor"]
            if cursor is None:
                break
    return times


_active: Local | None = None


@contextlib.contextmanager
def local(storage: str | os.PathLike[str] | None = None, *, start: float = START,
          durability: str = "normal") -> Iterator[Local]:
    """Run every object in this process (no Ray) on a test clock that reads
    ``start`` until it is advanced, with files under ``storage`` (default: a
    temporary folder, deleted at the end). ``durability`` is the objects' (default
    ``"normal"``: a test's files need not survive a power cut). On exit the objects
    stop, the real clock is back, and the settings from before are restored.
    One at a time."""
    global _active
    if _active is not None:
        raise ConfigError("dotdo.testing.local() is active already: one at a time (leave "
                          "the first `with` block before entering another)")
    previous = _conf.current()
    if storage is not None and previous is not None and previous.in_process \
            and os.path.abspath(storage) == previous.storage:
        raise ConfigError(f"dotdo.testing.local(storage={os.fspath(storage)!r}): objects under "
                          "that storage run in this process already, on the real clock: give "
                          "local() a folder of its own (or none, for a temporary one)")
    made = storage is None
    root = tempfile.mkdtemp(prefix="dotdo-test-") if storage is None else os.fspath(storage)
    test_clock = ManualClock(start, label=_job_asleep)
    env = Local(test_clock, os.path.abspath(root))
    before = clocks.install(test_clock)
    token = context.use_clock(_DriverClock(env))
    _active = env
    try:
        connect.init(in_process=True, storage=env.storage, durability=durability)
        app = dotdo.App(DEFAULT_APP)
        host = client.actor_handle(app)
        assert isinstance(host, LocalHost) and host.table.clock is test_clock, \
            "a new in-process host, started on the test clock"
        env._host, env._open = host, True
        app.module_list().result()  # the App starts: module-level schedules tick from now
        yield env
    finally:
        env._open = False
        _active = None
        try:
            _restore(previous)  # stops this process's objects
        finally:
            _reset(token)
            clocks.install(before)
            if made:
                shutil.rmtree(root, ignore_errors=True)


def _reset(token: contextvars.Token) -> None:
    """Driver code's clock back to what it was."""
    try:
        token.var.reset(token)
    except ValueError:  # left in another context than it was entered in
        token.var.set(None if token.old_value is contextvars.Token.MISSING else token.old_value)


def _restore(previous: _conf.Settings | None) -> None:
    """Back to the settings from before ``local()`` (stopping its in-process host)."""
    if previous is not None and (previous.in_process or ray.is_initialized()):
        connect.init(storage=previous.storage, namespace=previous.namespace,
                    hosting=previous.hosting, in_process=previous.in_process,
                    durability=previous.durability)
    elif ray.is_initialized():  # Ray up, dotdo not set up: leave it so
        connect.init(storage=_conf.current().storage)  # type: ignore[union-attr]
        _conf.use(None)
    else:
        connect.shutdown()


def _current(what: str) -> Local:
    if _active is None:
        raise ConfigError(f"dotdo.testing.{what}() needs an active dotdo.testing.local(): "
                          "call it inside `with dotdo.testing.local():`, or use the "
                          "dotdo_local fixture")
    return _active


def advance(seconds: float) -> float:
    """:meth:`Local.advance` of the active :func:`local`."""
    return _current("advance").advance(seconds)


def drain(queue: Stub | str, *, timeout: float = DRAIN_TIMEOUT) -> Drained:
    """:meth:`Local.drain` of the active :func:`local`."""
    return _current("drain").drain(queue, timeout=timeout)

