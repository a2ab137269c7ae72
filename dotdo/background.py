"""What an object does on its own: handling its events, ticking its schedules,
firing its alarm. One :class:`Activity` per active object, on its host's loop.

* Events are journaled by ``send`` before it returns; a dispatcher task hands them to
  the matching handlers one event at a time, in order, and marks each handled once
  all its handlers ran. An event not yet marked when the process dies is handled
  again after the restart (at-least-once; ``event.id`` is stable for dedupe).
* Each schedule is one task: it sleeps until the next fire time kept in SQLite, runs
  the tick (so ticks of one schedule never overlap), and stores the next time. A tick
  missed while the object was down fires once on recovery, not once per miss.
* The alarm task waits for the stored alarm time, calls ``alarm()``, retries it with
  backoff while it raises, and clears the alarm only once it succeeded.
* Failures of handlers and ticks go to the ``on_error`` callbacks, never up.
* Handled events, and finished steps if the class says so, are pruned from the
  journal after the class's ``retain_events`` / ``retain_steps`` seconds, at each
  activation and every hour.

A pooled host asks an Activity whether it is :attr:`~Activity.idle` before evicting
its object, and when it must be woken again (:meth:`~Activity.next_wake`); the
``on_busy`` hook tells the host the moment the object has background work, so that a
host that dies brings the object back.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dotdo import aio, codec
from dotdo.current import acting_for, restore
from dotdo.errors import DecodeError, HandlerError
from dotdo.events import ErrorInfo, Event, matches
from dotdo.registry import Kind, Registrations
from dotdo.retry import RetryPolicy

if TYPE_CHECKING:
    from dotdo.clock import Clock
    from dotdo.object import DurableObject

__all__ = ["Activity"]

log = logging.getLogger("dotdo")
_MARK_BATCH = 256
_PRUNE_EVERY = 3600.0
ALARM_RETRY = RetryPolicy(max_retries=1_000_000, backoff=1.0, max_backoff=60.0)
# A loop whose own bookkeeping failed (a write the disk refused) starts again after this.
LOOP_RETRY = RetryPolicy(max_retries=1_000_000, backoff=0.1, max_backoff=5.0)
EVENT_PAGE = 100  # pending events read into memory at once
_LOOP_HEALTHY = 60.0  # seconds a loop ran well after which its failures count from one


def _name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _schedule_name(schedule: Any, fn: Callable[..., Any]) -> str:
    """A schedule's key in the journal."""
    return f"{_name(fn)}@{schedule.spec}"


class Activity:
    """The background work of one object; see the module docstring."""

    def __init__(self, obj: DurableObject, clock: Clock) -> None:
        self.obj = obj
        self.clock = clock
        self.journal = obj.storage.journal
        self.handlers: list[tuple[str, Callable[..., Any]]] = []
        self.schedules: list[tuple[Any, Callable[..., Any]]] = []
        self.errors: list[Callable[..., Any]] = []
        # Pending events stay in the journal; at most a page of them is in memory at
        # once, read in order as the handlers drain it (``_loaded``: the last read).
        self._buffer: collections.deque[tuple[int, str, str, bytes, float]] = collections.deque()
        self._loaded = 0
        self._more = asyncio.Event()  # set when the journal may hold unread events
        self._tasks: list[asyncio.Task] = []
        self._started = False
        self._alarm_changed = asyncio.Event()
        self._running = 0  # handlers, ticks and alarms running now
        self._unmarked: list[str] = []  # handled events not yet marked in the journal
        self.on_busy: Callable[[], None] | None = None
        # emit() may be called from a thread (a sync job handler): hand over to the loop.
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for kind, key, name in getattr(type(obj), "_dotdo_subscriptions", ()):
            self.add(kind, key, getattr(obj, name))

    # -- registration -------------------------------------------------------------------

    def add(self, kind: Kind | str, key: Any, fn: Callable[..., Any]) -> None:
        kind = Kind(kind)
        if kind is Kind.ON:
            self.handlers.append((key, fn))
        elif kind is Kind.EVERY:
            self.schedules.append((key, fn))
            if self._started:
                self._spawn(self._schedule_loop(key, fn))
        else:
            self.errors.append(fn)

    def merge(self, regs: Registrations) -> None:
        """Take on module-level registrations not taken yet (an App's)."""
        have = {id(fn) for _, fn in self.handlers} | {id(fn) for _, fn in self.schedules}
        have |= {id(fn) for fn in self.errors}
        for pattern, fn in regs.handlers:
            if id(fn) not in have:
                self.add(Kind.ON, pattern, fn)
        for schedule, fn in regs.schedules:
            if id(fn) not in have:
                self.add(Kind.EVERY, schedule, fn)
        for fn in regs.errors:
            if id(fn) not in have:
                self.add(Kind.ON_ERROR, None, fn)

    # -- life ---------------------------------------------------------------------------

    def start(self) -> None:
        """Resume journaled work: pending events, schedules, the alarm."""
        if self._started:
            return
        self._started = True
        if self.journal.pending_page(0, 1):  # events from before: read them at once
            self._more.set()
        if self.schedules or self._more.is_set() or self.journal.alarm() is not None:
            self._busy()
        self._spawn(self._kept("event delivery", self._dispatch_loop))
        self._spawn(self._kept("journal pruning", self._prune_loop))
        for schedule, fn in self.schedules:
            self._spawn(self._kept(f"schedule {_schedule_name(schedule, fn)}",
                                   functools.partial(self._schedule_loop, schedule, fn)))
        if hasattr(type(self.obj), "alarm"):
            self._spawn(self._kept("alarm", self._alarm_loop))

    async def _kept(self, what: str, loop: Callable[[], Any]) -> None:
        """Run ``loop`` for the object's life: if it raises (its own journal write
        failed: a full disk, an I/O error), log it, wait (growing, at most 5 s) and
        start it again from its journaled state, so that one failed write never ends
        a schedule, the alarm or event delivery until the object restarts. What was
        running when it failed may run again (at-least-once, as after a crash)."""
        failures = 0
        while True:
            began = asyncio.get_running_loop().time()
            try:
                await loop()
                return
            except Exception:
                if self.obj.storage.closed:
                    return  # the object left memory
                if asyncio.get_running_loop().time() - began > _LOOP_HEALTHY:
                    failures = 0
                failures += 1
                log.warning("dotdo: %s %r: its %s failed (%d in a row); starting it again",
                            type(self.obj).__name__, self.obj.id, what, failures,
                            exc_info=True)
                await asyncio.sleep(LOOP_RETRY.delay(failures))

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._started = False

    @property
    def idle(self) -> bool:
        """Nothing running or waiting: no handler, tick or alarm call, no event queued."""
        return (not self._running and not self._buffer and not self._more.is_set()
                and not self._unmarked)

    def next_wake(self) -> float | None:
        """When the object must be active again by itself: its alarm or next tick."""
        times = [row[0] for row in [self.journal.alarm()] if row is not None]
        for schedule, fn in self.schedules:
            row = self.journal.schedule(_schedule_name(schedule, fn))
            times.append(self.clock.now() if row is None else row[1])
        return min(times, default=None)

    def _busy(self) -> None:
        if self.on_busy is not None:
            self.on_busy()

    def _spawn(self, coro) -> None:
        # Created outside the object's context: the host counts tasks the object
        # starts itself (they keep it in memory), not the Activity's own.
        token = acting_for(None)
        try:
            task = asyncio.get_running_loop().create_task(coro)
        finally:
            restore(token)
        self._tasks.append(task)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        token = acting_for(self.obj)
        self._running += 1
        try:
            return await aio.call(fn, *args)
        except (SystemExit, KeyboardInterrupt) as exc:
            # Out of a task these would stop the host's event loop: a failure instead.
            raise HandlerError(f"{_name(fn)} raised {type(exc).__name__}: {exc}") from None
        finally:
            self._running -= 1
            restore(token)

    async def report(self, info: ErrorInfo) -> None:
        """Give a failure to every ``on_error`` callback (or the log, if none)."""
        if not self.errors:
            log.error("dotdo: %s failed in %r: %r", info.event_type, self.obj, info.error)
        for callback in self.errors:
            try:
                await self._run(callback, info)
            except Exception:
                log.exception("dotdo: on_error callback %s failed", _name(callback))

    # -- events -------------------------------------------------------------------------

    def emit(self, event_type: str, encoded: bytes, event_id: str | None = None) -> str | None:
        """Journal an event (already checked and encoded) and queue it; returns its id,
        or None if an event with the given ``event_id`` was journaled before (a
        sender repeating itself after a crash)."""
        event_id = event_id or uuid.uuid4().hex
        created = self.clock.now()
        if not self.journal.append_event(event_id, event_type, encoded, created):
            return None
        if threading.get_ident() == self._loop_thread:
            self._deliver()
        else:
            self._loop.call_soon_threadsafe(self._deliver)
        return event_id

    def _deliver(self) -> None:
        self._busy()
        self._more.set()

    async def _next_event(self) -> tuple[int, str, str, bytes, float]:
        """The next pending event, in order, read from the journal a page at a time."""
        while not self._buffer:
            page = self.journal.pending_page(self._loaded, EVENT_PAGE)
            if page:
                self._buffer.extend(page)
                self._loaded = page[-1][0]
            elif self._more.is_set():
                self._more.clear()  # read again once: an event may have come meanwhile
            else:
                await self._more.wait()
        return self._buffer.popleft()

    async def _dispatch_loop(self) -> None:
        handled = self._unmarked
        while True:
            if handled and (not self._buffer or len(handled) >= _MARK_BATCH):
                # One commit marks a run of events: a crash before it only means
                # those events are handled again (at-least-once, as promised).
                self.journal.events_handled(handled, self.clock.now())
                handled.clear()
            _, event_id, event_type, encoded, created = await self._next_event()
            try:
                data = codec.decode(encoded)
            except DecodeError as exc:  # this event only: reported, and not tried again
                await self.report(ErrorInfo(event_type, event_id, None, exc, "(decoding)"))
                handled.append(event_id)
                continue
            event = Event(event_id, event_type, data, created)
            for pattern, handler in list(self.handlers):
                if not matches(pattern, event_type):
                    continue
                try:
                    await self._run(handler, event)
                except Exception as exc:  # noqa: BLE001 - goes to on_error, not the sender
                    await self.report(ErrorInfo(event_type, event_id, data, exc, _name(handler)))
            handled.append(event_id)

    async def _prune_loop(self) -> None:
        cls = type(self.obj)
        while True:
            now = self.clock.now()
            self.journal.prune(None if cls.retain_events is None else now - cls.retain_events,
                               None if cls.retain_steps is None else now - cls.retain_steps)
            await self.clock.sleep(_PRUNE_EVERY)

    # -- schedules ----------------------------------------------------------------------

    async def _schedule_loop(self, schedule: Any, fn: Callable[..., Any]) -> None:
        name = _schedule_name(schedule, fn)
        row = self.journal.schedule(name)
        if row is None or row[0] != schedule.spec:
            self.journal.set_schedule(name, schedule.spec, schedule.next_after(self.clock.now()))
        while True:
            row = self.journal.schedule(name)
            assert row is not None, "set above, and only this loop removes it"
            _, next_fire, _ = row
            wait = next_fire - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
                if self.clock.now() < next_fire:
                    continue  # woke early (the clock moved): check again
            fired = self.clock.now()
            error = None
            try:
                await self._run(fn)
            except Exception as exc:  # noqa: BLE001 - the schedule goes on
                error = f"{type(exc).__name__}: {exc}"
                await self.report(ErrorInfo("Schedule.ticked", None, name, exc, _name(fn)))
            # Missed ticks collapse into the one that just ran: next is after now.
            self.journal.record_tick(name, fired, schedule.next_after(max(self.clock.now(), fired)),
                                     error)

    # -- alarm --------------------------------------------------------------------------

    def alarm_changed(self) -> None:
        self._busy()
        self._alarm_changed.set()

    async def _alarm_loop(self) -> None:
        failures = 0
        while True:
            self._alarm_changed.clear()
            row = self.journal.alarm()
            if row is None:
                await self._alarm_changed.wait()
                continue
            fire_at, _ = row
            wait = fire_at - self.clock.now()
            if wait > 0:
                sleeper = asyncio.ensure_future(self.clock.sleep(wait))
                changed = asyncio.ensure_future(self._alarm_changed.wait())
                try:
                    await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when the object is evicted while waiting
                    sleeper.cancel()
                    changed.cancel()
                continue  # re-read: it may have moved, or it is due now
            self.journal.count_alarm_attempt()
            try:
                await self._run(self.obj.alarm)  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                failures += 1
                await self.report(ErrorInfo("Alarm.failed", None, fire_at, exc, "alarm"))
                await self.clock.sleep(ALARM_RETRY.delay(failures))
                continue
            failures = 0
            self.journal.alarm_done(fire_at)
