"""Durable waits: a job handler that sleeps, waits for an event or an awakeable, or
waits for a child job parks its job here, holding no worker slot, and runs again
(replaying) when its point ends.

A *point* is a durable call of a job handler that the job's next run must meet again
with the same answer: ``sleep#1`` (the run's first sleep), ``event#1``,
``awakeable#1``, ``wait#1``, ``child#1``, ``patch:<name>``, ``step:<step id>`` (a
named ``do`` step it reached). Points live in the queue's ``points`` table, keyed by
the job's enqueue (``uid``), so every worker of the queue reads the same ones.

Parking is one transaction on the queue: the point is written open and the job
becomes ``sleeping`` (a sleep) or ``waiting`` (anything else) with its lease, worker
and slot given up and ``run_at`` its wake time (a sleep's end, a wait's timeout).
The handler's run then ends (``dotdo.waits`` raises ``Parked`` through it). When the
point ends (its time comes, an event or a resolve arrives, the child ends) the job is
``pending`` again and any worker claims it; its handler runs from the top, and every
point and named step it passed answers from the journal without running again.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
from collections.abc import Callable
from typing import Any

import dotdo
from actors import queue_sql as sql
from actors.jobs import FINISHED
from actors.options import ENCODED_PAYLOAD
from actors.steps import Steps
from actors.table import LOOP_RETRY
from dotdo import codec
from dotdo.waits import awakeable_token

__all__ = ["Parks"]

log = logging.getLogger("dotdo")
_KINDS = ("sleep", "event", "awakeable", "wait", "child")
_WAKE_BATCH = 10_000  # parked jobs made ready per statement when their time comes
_NOTICE_BATCH = 500  # children's ends sent to other queues per round


def _answer(state: str, value: bytes | None) -> dict[str, Any]:
    """What a run reaching an ended point gets back."""
    if state == "done":
        return {"done": value if value is not None else codec.encode(None)}
    if state == "timeout":
        return {"timeout": True}
    return {"failed": codec.decode(value) if value is not None else "failed"}


class Parks(Steps):
    """The queue's side of durable waits (see the module docstring)."""

    _next_wake: float  # the earliest run_at of a parked job (inf: none)
    _any_points: bool  # some run has points (grants carry them)
    _any_children: bool  # some job is a child of a parked run
    _notices_ready: asyncio.Event  # a child's end waits to reach its parent's queue
    _must_row: Callable[[str], dict[str, Any]]  # Queue's
    enqueue_many: Callable[[builtins.list[Any]], builtins.list[Any]]  # Queue's
    cancel: Callable[[str], Any]  # Queue's
    _end: Callable[..., None]  # Flows'

    def _load_parks(self) -> None:
        """At start: when the first parked job wakes, and whether any run has points
        or any job a parent (else those costs are skipped on the hot path)."""
        first = self._one(sql.NEXT_WAKE)
        self._next_wake = float("inf") if first is None else float(first)
        self._any_points = self.storage.sql.execute(sql.ANY_POINTS).fetchone() is not None
        self._any_children = self.storage.sql.execute(sql.ANY_CHILD).fetchone() is not None

    def _journaled(self, uid: str | None) -> tuple[builtins.list[str], dict[str, Any]]:
        """The points journaled for a run, and the answers of those that ended (but
        named steps, which answer through step_begin): a grant carries them, so that
        the run replays them without asking."""
        keys: builtins.list[str] = []
        answers: dict[str, Any] = {}
        for key, state, value in self.storage.sql.execute(sql.SELECT_POINT_ANSWERS, (uid,)):
            keys.append(key)
            if state != "open" and not key.startswith("step:"):
                answers[key] = _answer(state, value)
        return keys, answers

    def _grant(self, row: dict[str, Any], alone: bool, now: float) -> dict[str, Any]:
        grant = super()._grant(row, alone, now)  # type: ignore[misc]
        if self._any_points:  # the run replays these: it must meet each again
            grant["points"], grant["answers"] = self._journaled(row["uid"])
        return grant

    def _lease(self, worker: str, n: int, idle: bool, now: float, mono: float) -> Any:
        self._wake_parked(now)  # parked jobs whose time came are ready for this claim
        return super()._lease(worker, n, idle, now, mono)  # type: ignore[misc]

    def _job_ended(self, job_id: str) -> None:
        super()._job_ended(job_id)  # type: ignore[misc]
        if self._any_children:
            row = self.storage.sql.execute(sql.SELECT_CHILD_END, (job_id,)).fetchone()
            if row is not None and row[4] is not None and row[1] in FINISHED:
                self._child_ended(dict(zip(("id", "status", "output", "error", "parent"), row)))

    def _ended(self, job_id: str, status: str, error: str | None, attempts: int,
               now: float) -> None:
        super()._ended(job_id, status, error, attempts, now)  # type: ignore[misc]
        if not self._any_points:
            return
        uid = self._one(sql.SELECT_UID, (job_id,))
        if status == "cancelled":
            self._cancel_children(uid)
        # A job that ended while waiting for an event: the App may forget the wait.
        for (key,) in self.storage.sql.execute(sql.OPEN_EVENT_WAITS, (uid,)).fetchall():
            self._spawn(self._unwatch_event(uid, key))

    async def point(self, worker: str, job_id: str, uid: str | None, lease: int, key: str,
                    kind: str, arg: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run of ``job_id`` held by ``worker`` under ``lease`` reaches the durable
        call ``key`` (of ``kind``: sleep, event, awakeable, wait, child). Answers
        ``{"done": encoded}``, ``{"failed": error}``, ``{"timeout": True}`` (the point
        ended before, or ends now), ``{"open": True}`` (an awakeable made: its token is
        the caller's to build), ``{"parked": status, "until": t}`` (the job is parked:
        the run stops) or ``{"lost": True}`` (this run no longer holds its job)."""
        if kind not in _KINDS:
            raise ValueError(f"unknown kind of point {kind!r}")
        arg = dict(arg or {})
        row = self.storage.sql.execute(sql.SELECT_POINT, (uid, key)).fetchone()
        if row is not None and row[0] != "open":
            return _answer(row[0], row[3])
        if not self._holds(job_id, uid, worker, lease):
            return {"lost": True}
        now = self._now()
        fresh = row is None
        if fresh:
            until = self._until(kind, arg, now)
            if kind == "event":
                await self._watch_event(job_id, uid, key, arg)
            elif kind == "child":
                await self._start_child(job_id, uid, key, arg, now)
        # One commit for all that follows: the point written, and what it comes to (its
        # end, or the job parked there).
        with self.storage.transaction():
            if fresh:
                self.storage.sql.execute(sql.INSERT_POINT, (
                    uid, key, job_id, uid, "open", until,
                    json.dumps(self._stored_arg(kind, arg)), None, now, None))
                self._any_points = True
                row = self.storage.sql.execute(sql.SELECT_POINT, (uid, key)).fetchone()
                if row[0] != "open":  # ended meanwhile (a child done at once, an answer)
                    return _answer(row[0], row[3])
            _, until, stored, _ = row
            if kind == "awakeable":
                return {"open": True}
            if until is not None and until <= now:
                return self._ended_by_time(uid, key, kind, now)
            if kind == "wait":
                target = json.loads(stored)["awakeable"]
                found = self.storage.sql.execute(sql.SELECT_POINT, (uid, target)).fetchone()
                if found is None:
                    raise ValueError(f"job {job_id!r} waits for an awakeable it never made "
                                     f"({target}): wait for tokens of the job's own awakeables")
                if found[0] != "open":
                    self._end_point(uid, key, found[0], found[3], now)
                    return _answer(found[0], found[3])
            status = "sleeping" if kind == "sleep" else "waiting"
            wake = sql.PARKED_FOREVER if until is None else until
            # the run's record first (it names its worker): it ended here, parked
            self.storage.sql.execute(sql.LOG_PARKED, (
                now, f"parked at {key}", job_id, uid, worker, lease))
            parked = self.storage.sql.execute(sql.PARK, (
                status, key, wake, job_id, uid, worker, lease)).rowcount
            if not parked and self._one(sql.CANCEL_ASKED_OF, (job_id, uid)):
                # asked to stop while it ran: it ends cancelled here, not parked
                self._end(job_id, uid, "cancelled", self._one(sql.ATTEMPTS_OF, (job_id,)),
                          f"Cancelled: job {job_id!r} was cancelled while it ran; it stopped "
                          f"at {key}", None, now)
        if not parked:
            return {"lost": True}
        self._next_wake = min(self._next_wake, wake)
        self._event("Job.parked", {"$id": job_id, "status": status, "point": key,
                                   "wakeAt": until})
        return {"parked": status, "until": until}

    def _until(self, kind: str, arg: dict[str, Any], now: float) -> float | None:
        """A new point's wake time: a sleep's end, a wait's timeout, or None."""
        if kind == "sleep":
            if arg.get("until") is not None:
                return float(arg["until"])
            return now + float(arg.get("seconds", 0.0))
        timeout = arg.get("timeout")
        return None if timeout is None else now + float(timeout)

    @staticmethod
    def _stored_arg(kind: str, arg: dict[str, Any]) -> dict[str, Any]:
        """What of a point's arguments its row keeps (small: no payloads)."""
        if kind == "event":
            return {"type": arg["type"], "match": arg.get("match") or {}}
        if kind == "wait":
            return {"awakeable": arg["awakeable"]}
        if kind == "child":
            return {"queue": arg["queue"], "id": arg["id"], "type": arg["type"]}
        return {}

    def _ended_by_time(self, uid: str | None, key: str, kind: str, now: float
                       ) -> dict[str, Any]:
        """A point whose time came: a sleep is done, a wait timed out."""
        state = "done" if kind == "sleep" else "timeout"
        self._end_point(uid, key, state, None, now)
        if kind == "event":
            self._spawn(self._unwatch_event(uid, key))
        row = self.storage.sql.execute(sql.SELECT_POINT, (uid, key)).fetchone()
        return _answer(row[0], row[3])

    def _end_point(self, uid: str | None, key: str, state: str, value: bytes | None,
                   now: float) -> bool:
        return bool(self.storage.sql.execute(
            sql.END_POINT, (state, value, now, uid, key)).rowcount)

    def deliver(self, job_id: str, uid: str | None, key: str, state: str,
                value: bytes | None) -> bool:
        """End the open point ``key`` of a run (an event that matched, a child's end):
        ``state`` done (``value`` encoded) or failed (``value``: the error, encoded),
        and make its job ready if it is parked there. False if the point had ended
        (the first end wins) or is not there."""
        if state not in ("done", "failed"):
            raise ValueError(f"a point ends done or failed, not {state!r}")
        if value is not None and not isinstance(value, bytes):
            raise TypeError("deliver takes the value encoded (bytes)")
        with self.storage.transaction():
            return self._deliver_in(job_id, uid, key, state, value, self._now())

    def _deliver_in(self, job_id: str, uid: str | None, key: str, state: str,
                    value: bytes | None, now: float) -> bool:
        """``deliver``, inside the caller's transaction. A point not yet written (its
        run registered the wait, then died before writing it) is written ended, so
        that the next run finds what came."""
        ended = self._end_point(uid, key, state, value, now)
        if not ended and self._one(sql.HAS_RUN, (job_id, uid)) and \
                self.storage.sql.execute(sql.SELECT_POINT, (uid, key)).fetchone() is None:
            self._ended_point(job_id, uid, key, state, value, now)
            ended = True
        if ended:
            self._wake_at(job_id, uid, key, now)
        return ended

    def _wake_at(self, job_id: str, uid: str | None, key: str, now: float) -> None:
        """Inside a transaction: the job parked at ``key``, if it is, is ready."""
        if self.storage.sql.execute(sql.UNPARK, (now, job_id, uid, key)).rowcount:
            self._ready.set()

    def settle_awakeable(self, job_id: str, uid: str | None, key: str, value: bytes | None,
                         error: str | None = None) -> None:
        """Resolve (``value``, encoded) or reject (``error``) an awakeable; a job waiting
        for it runs again. A second settle is refused: AwakeableError; an awakeable
        that is not there (its job purged) is a NotFoundError."""
        if value is not None and not isinstance(value, bytes):
            raise TypeError("settle_awakeable takes the value encoded (bytes)")
        row = self.storage.sql.execute(sql.SELECT_POINT, (uid, key)).fetchone()
        if row is None or not key.startswith("awakeable#"):
            raise dotdo.NotFoundError(
                f"job {job_id!r} of queue {self.id!r} has no awakeable {key!r} (the job was "
                "purged, or the id is of another queue's file)")
        if row[0] != "open":
            raise dotdo.AwakeableError(
                f"the awakeable {key!r} of job {job_id!r} was settled before "
                f"({'resolved' if row[0] == 'done' else 'rejected'}): an awakeable takes "
                "one resolve or reject, the first")
        now = self._now()
        state, stored = ("done", value) if error is None else ("failed", codec.encode(error))
        target = json.dumps({"awakeable": key})
        with self.storage.transaction():
            self._end_point(uid, key, state, stored, now)
            for (wait_key,) in self.storage.sql.execute(sql.OPEN_WAITS_FOR, (uid, target)).fetchall():
                self._end_point(uid, wait_key, state, stored, now)
                self._wake_at(job_id, uid, wait_key, now)

    def mark(self, worker: str, job_id: str, uid: str | None, lease: int,
             names: builtins.list[str]) -> None:
        """Keep the ``patched(name)`` markers a run of ``job_id`` met (sent before its
        next point or step: a later run must find them before anything after them)."""
        if not self._holds(job_id, uid, worker, lease):
            raise dotdo.LeaseLostError(f"job {job_id!r} no longer holds its lease on worker "
                                       f"{worker!r}: this run stops")
        now = self._now()
        with self.storage.transaction():
            for name in names:
                self._ended_point(job_id, uid, f"patch:{name}", "done", None, now)

    def points(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """The points of the job's latest enqueue, in the order its runs met them."""
        return self._points_of(self._must_row(job_id)["uid"])

    def _points_of(self, uid: str | None) -> builtins.list[dict[str, Any]]:
        return [{"key": key, "state": state, "until": until,
                 "arg": json.loads(arg) if arg else None, "createdAt": created,
                 "endedAt": ended}
                for key, state, until, arg, created, ended in self.storage.sql.execute(
                    sql.SELECT_POINTS, (uid,)).fetchall()]

    def awakeables(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """The awakeables the job's runs made: ``{"key", "state", "token", "createdAt",
        "endedAt"}`` each (state open until resolved or rejected)."""
        row = self._must_row(job_id)
        return [{"key": p["key"], "state": p["state"], "createdAt": p["createdAt"],
                 "endedAt": p["endedAt"],
                 "token": awakeable_token(self.id, job_id, row["uid"], p["key"])}
                for p in self._points_of(row["uid"]) if p["key"].startswith("awakeable#")]

    def children(self, job_id: str) -> builtins.list[dict[str, str]]:
        """The child jobs the job's runs started (``dotdo.run_job``), in order:
        ``{"queue", "id", "type", "point"}`` each."""
        row = self._must_row(job_id)
        return [{**json.loads(arg), "point": key} for key, arg in self.storage.sql.execute(
            sql.SELECT_CHILDREN, (row["uid"],)).fetchall()]

    def _wake_parked(self, now: float) -> None:
        """Parked jobs whose time came (a sleep's end, a wait's timeout) are ready, their
        points ended in the same commit: the claim that hands a job out carries its
        points' answers, so its next run goes past them without a call."""
        if now < self._next_wake:
            return
        woke = 0
        while True:
            due = self.storage.sql.execute(sql.DUE_PARKED, (now, _WAKE_BATCH)).fetchall()
            if not due:
                break
            with self.storage.transaction():
                self.storage.sql.conn.executemany(sql.END_POINT, [
                    ("done" if key.startswith("sleep#") else "timeout", None, now, uid, key)
                    for _, uid, key in due])
                self.storage.sql.execute(sql.WAKE_SEQS, (json.dumps([seq for seq, _, _ in due]),))
            for _, uid, key in due:
                if key.startswith("event#"):
                    self._spawn(self._unwatch_event(uid, key))
            woke += len(due)
            if len(due) < _WAKE_BATCH:
                break
        first = self._one(sql.NEXT_WAKE)
        self._next_wake = float("inf") if first is None else float(first)
        if woke:
            self._ready.set()
            self._gauge_depth()

    # -- events -----------------------------------------------------------------------

    async def _watch_event(self, job_id: str, uid: str | None, key: str,
                           arg: dict[str, Any]) -> None:
        """Register the wait where sent events are matched (``App("default")``),
        before the job parks: an event sent after this returns reaches it."""
        await dotdo.App(dotdo.DEFAULT_APP).watch_event(
            arg["type"], arg.get("match") or {}, self.id, job_id, uid, key)

    async def _unwatch_event(self, uid: str | None, key: str) -> None:
        """The wait timed out: the App may forget it (a late match is ignored here)."""
        try:
            await dotdo.App(dotdo.DEFAULT_APP).unwatch_event(self.id, uid, key)
        except Exception:
            log.debug("dotdo: queue %s could not drop the event wait %s", self.id, key,
                      exc_info=True)

    # -- child jobs ---------------------------------------------------------------------

    async def _start_child(self, job_id: str, uid: str | None, key: str,
                           arg: dict[str, Any], now: float) -> None:
        """Enqueue the child of point ``key`` (its id is fixed by the point: a run that
        replays this finds it enqueued, not a second one)."""
        parent = [self.id, job_id, uid, key]
        entry = {**arg.get("options", {}), "type": arg["type"], ENCODED_PAYLOAD: arg["payload"],
                 "job_id": arg["id"]}
        if arg["queue"] == self.id:
            self.enqueue_child(parent, entry)
        else:
            await dotdo.Queue(arg["queue"]).enqueue_child(parent, entry)

    def enqueue_child(self, parent: builtins.list, entry: dict[str, Any]) -> Any:
        """Enqueue a job as the child of a parked run (``dotdo.run_job``); its end goes
        back to the parent's queue. Enqueued again (a replay), it is the same job, and
        one already ended tells its parent again."""
        self._any_children = True
        with self.storage.transaction():
            job = self.enqueue_many([entry])[0]
            self.storage.sql.execute(sql.SET_PARENT, (json.dumps(parent), job["$id"]))
            row = self._must_row(job["$id"])
            if row["status"] in FINISHED:
                self._child_ended(row)
        return job

    def _child_ended(self, row: dict[str, Any]) -> None:
        """Inside the transaction that ends a child job: its parent's point ends too
        (here, or through the notices sent to the parent's queue)."""
        queue, job_id, uid, key = json.loads(row["parent"])
        if row["status"] == "completed":
            state, value = "done", row["output"]
        else:
            state = "failed"
            value = codec.encode({"id": row["id"], "status": row["status"],
                                  "error": row["error"] or f"the child job {row['id']!r} of "
                                  f"queue {self.id!r} ended {row['status']}"})
        if queue == self.id:
            self._deliver_in(job_id, uid, key, state, value, self._now())
            return
        self.storage.sql.execute(sql.INSERT_NOTICE, (queue, job_id, uid, key, state, value))
        self._notices_ready.set()

    async def _forward_notices(self) -> None:
        """Send children's ends to their parents' queues; a notice goes once acked (a
        repeat is harmless: a point ends once)."""
        failures = 0
        while True:
            await self._notices_ready.wait()
            self._notices_ready.clear()
            try:
                rows = self.storage.sql.execute(sql.SELECT_NOTICES, (_NOTICE_BATCH,)).fetchall()
                for seq, queue, job_id, uid, key, state, value in rows:
                    await dotdo.Queue(queue).deliver(job_id, uid, key, state, value)
                    self.storage.sql.execute(sql.DELETE_NOTICE, (seq,))
                if len(rows) == _NOTICE_BATCH:
                    self._notices_ready.set()
                failures = 0
            except Exception:
                failures += 1
                log.warning("dotdo: queue %s could not tell a parent job its child ended "
                            "(%d in a row); trying again", self.id, failures, exc_info=True)
                await asyncio.sleep(LOOP_RETRY.delay(failures))
                self._notices_ready.set()

    def _cancel_children(self, uid: str | None) -> None:
        """A parent job was cancelled: its children not yet ended are cancelled too."""
        for (arg,) in self.storage.sql.execute(sql.OPEN_CHILDREN, (uid,)).fetchall():
            child = json.loads(arg)
            if child["queue"] == self.id:
                try:
                    self.cancel(child["id"])
                except (ValueError, dotdo.NotFoundError):
                    pass  # it ended meanwhile, or was purged
            else:
                self._spawn(self._cancel_elsewhere(child["queue"], child["id"]))

    async def _cancel_elsewhere(self, queue: str, job_id: str) -> None:
        try:
            await dotdo.Queue(queue).cancel(job_id)
        except Exception:
            log.info("dotdo: queue %s could not cancel child job %r of queue %s",
                     self.id, job_id, queue, exc_info=True)
