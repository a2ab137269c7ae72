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
* Jobs may wait for events sent anywhere (``dotdo.wait_for_event``); ``App("default")``
  matches them (:mod:`dotdo.watches`). So each event also goes to that App's
  ``observe``, in batches, as the dispatcher reads it from the journal (its handlers
  run meanwhile), and it is marked handled only once the App has it too (a crash in
  between sends it again: the App is told at least once). Each answer says which
  event types jobs wait for, as of the App's time then: an event sent before that
  time, of a type nobody waited for, is not sent (a wait that begins later cannot
  match it), so an object sending many events while no job waits makes about one
  call per burst. The App itself matches events as it journals them (``on_emit``).
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
import math
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dotdo import aio, codec, tracing
from dotdo.current import acting_for, restore
from dotdo.errors import DecodeError, HandlerError
from dotdo.events import ErrorInfo, Event, matches
from dotdo.object import lookup
from dotdo.registry import APP_CLASS, DEFAULT_APP, Kind, Registrations
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
# Sending events on to the App (for jobs waiting for them): retried with this while
# the App is away; at most this many events (and bytes of their data) in one call, and
# at most this many handled events waiting for theirs before handling pauses.
FORWARD_RETRY = RetryPolicy(max_retries=1_000_000, backoff=0.5, max_backoff=30.0)
FORWARD_BATCH = 500
FORWARD_BYTES = 4 << 20
FORWARD_BACKLOG = 5_000
# Real seconds between two calls of one object that are not full: a steady stream of
# events makes a call per moment, not one per event (the first after a quiet time goes
# at once, and so do full calls).
FORWARD_GATHER = 0.05
_LOOP_HEALTHY = 60.0  # seconds a loop ran well after which its failures count from one


def _name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _schedule_name(schedule: Any, fn: Callable[..., Any]) -> str:
    """A schedule's key in the journal."""
    return f"{_name(fn)}@{schedule.spec}"


# (id, type, data encoded, created) of an event handled here.
Sent = tuple[str, str, bytes, float]


def observe_in_app(events: list[list[Any]]) -> Awaitable[Any]:
    """Send events to ``App("default")`` for the jobs waiting for them (looked up by
    name: the App class is built on this module); its answer is ``[its time, the
    types jobs wait for (None: too many to list)]``."""
    cls = lookup(APP_CLASS)
    assert cls is not None, "dotdo.app defines App and dotdo imports it"
    return cls.stub(DEFAULT_APP).observe(events)


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
        self._unmarked: list[Sent] = []  # handled events not yet marked in the journal
        self.on_busy: Callable[[], None] | None = None
        # Where handled events go on to (None: nowhere; the App matches its own in
        # on_emit, called with each event it journals, in the same transaction).
        self.observer: Callable[[list[list[Any]]], Awaitable[Any]] | None = observe_in_app
        self.on_emit: Callable[[str, str, bytes, float], None] | None = None
        # Work of the object's own that keeps it busy (the App's deliveries owed).
        self.more_work: Callable[[], bool] | None = None
        # The types jobs waited for at the App's time _view_at (None: not known).
        self._view: frozenset[str] | None = None
        self._view_at = -math.inf
        # Events read from the journal that the App has not taken yet (their ids: also
        # those of the call in flight), and handled ones waiting for that to be marked.
        self._unsent: collections.deque[Sent] = collections.deque()
        self._unsent_ids: set[str] = set()
        # Traced sends' contexts by event id, until handled: the handlers' spans link
        # to them (kept in memory: after a restart, a handler's span has no link).
        self._sent_in: dict[str, str] = {}
        self._alarm_set_in: str | None = None  # the span that last set the alarm, if traced
        self._held: list[Sent] = []
        self._unsent_came = asyncio.Event()
        self._held_less = asyncio.Event()
        self._forwarding = False
        self._forwarded_at = -math.inf  # loop time of the last call to the App
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
        if self._unsent or self._held:  # started again after a stop, with events to send
            self._start_forwarding()

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
        self._forwarding = False

    @property
    def idle(self) -> bool:
        """Nothing running or waiting: no handler, tick or alarm call, no event queued
        or waiting to go to the App, no work of the object's own (``more_work``)."""
        return (not self._running and not self._buffer and not self._more.is_set()
                and not self._unmarked and not self._unsent and not self._held
                and not (self.more_work is not None and self.more_work()))

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

    def busy(self) -> None:
        """The object has work of its own queued (``more_work``): the host keeps it,
        and brings it back if its process dies."""
        self._busy()

    def soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the object's loop: now if called there, else next (from a
        thread: a sync job handler)."""
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _spawn(self, coro) -> None:
        # Created outside the object's context: the host counts tasks the object
        # starts itself (they keep it in memory), not the Activity's own.
        token = acting_for(None)
        try:
            with tracing.detached():  # an object's own work, whichever call started it
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
        if self.on_emit is None:
            if not self.journal.append_event(event_id, event_type, encoded, created):
                return None
        else:
            with self.obj.storage.transaction():
                if not self.journal.append_event(event_id, event_type, encoded, created):
                    return None
                self.on_emit(event_id, event_type, encoded, created)
        if tracing.enabled():
            carrier = tracing.sent(event_type, event_id, repr(self.obj))
            if carrier is not None:
                self._sent_in[event_id] = carrier
        self.soon(self._deliver)
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
                self._to_app(page)
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
                # those events are handled again (at-least-once, as promised). Those
                # the App has not taken yet are marked once it has (_forward_loop).
                waiting = [sent for sent in handled if sent[0] in self._unsent_ids]
                ready = [sent[0] for sent in handled if sent[0] not in self._unsent_ids]
                if ready:
                    self.journal.events_handled(ready, self.clock.now())
                self._held += waiting
                handled.clear()
                while len(self._held) >= FORWARD_BACKLOG:  # the App is away: wait for it
                    self._held_less.clear()
                    await self._held_less.wait()
            _, event_id, event_type, encoded, created = await self._next_event()
            sent = (event_id, event_type, encoded, created)
            try:
                data = codec.decode(encoded)
            except DecodeError as exc:  # this event only: reported, and not tried again
                await self.report(ErrorInfo(event_type, event_id, None, exc, "(decoding)"))
                handled.append(sent)
                continue
            event = Event(event_id, event_type, data, created)
            sent_in = self._sent_in.pop(event_id, None)
            for pattern, handler in list(self.handlers):
                if not matches(pattern, event_type):
                    continue
                with tracing.root_span(f"handle {event_type}", links=[sent_in], attributes={
                        "messaging.system": "dotdo", "messaging.operation.type": "process",
                        "messaging.destination.name": event_type,
                        "messaging.message.id": event_id, "dotdo.handler": _name(handler),
                        "dotdo.object": repr(self.obj)}):
                    try:
                        await self._run(handler, event)
                    except Exception as exc:  # noqa: BLE001 - goes to on_error, not the sender
                        await self.report(ErrorInfo(event_type, event_id, data, exc,
                                                    _name(handler)))
            handled.append(sent)

    # -- events jobs wait for -----------------------------------------------------------

    def _spared(self, sent: Sent) -> bool:
        """Whether the App need not see ``sent``: it was sent before the time of the
        App's last answer, which said no job waited for its type then (a wait that
        begins later, at that time or after, matches only events sent since)."""
        return (self._view is not None and sent[3] < self._view_at
                and sent[1] not in self._view)

    def _to_app(self, page: list[tuple[int, str, str, bytes, float]]) -> None:
        """Events just read: those the App may match go to it (before their handlers
        end, so that a slow handler holds up no waiting job)."""
        if self.observer is None:
            return
        due = [sent for sent in ((i, t, d, c) for _, i, t, d, c in page)
               if not self._spared(sent)]
        if due:
            self._unsent.extend(due)
            self._unsent_ids.update(sent[0] for sent in due)
            self._unsent_came.set()
            self._start_forwarding()

    def _start_forwarding(self) -> None:
        if not self._forwarding:  # at the first event to send: most objects never need it
            self._forwarding = True
            self._spawn(self._kept("event delivery", self._forward_loop))

    def _mark_forwarded(self) -> None:
        """Mark the handled events the App has taken since."""
        done = [sent[0] for sent in self._held if sent[0] not in self._unsent_ids]
        if done:
            self.journal.events_handled(done, self.clock.now())
            self._held = [sent for sent in self._held if sent[0] in self._unsent_ids]
            self._held_less.set()

    async def _forward_loop(self) -> None:
        """Send events to the App, many per call (at most one call per FORWARD_GATHER
        that is not full), trying again with backoff while it is away, and mark the
        handled ones it took. Events of a type the last answer did not list, sent
        since, are held back a call: its answer, given after they were sent, spares
        them, unless their type is waited for by then (they go in the next call)."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self._mark_forwarded()
            if not self._unsent:
                self._unsent_came.clear()
                await self._unsent_came.wait()
                continue
            batch: list[Sent] = []
            size = 0
            for sent in self._unsent:
                if batch and (len(batch) >= FORWARD_BATCH or size + len(sent[2]) > FORWARD_BYTES):
                    break
                batch.append(sent)
                size += len(sent[2])
            # An answer that came since they were read may spare some.
            events = [sent for sent in batch if not self._spared(sent)]
            view = self._view
            send = events if view is None else [sent for sent in events if sent[1] in view]
            if events and self.observer is not None:
                pause = self._forwarded_at + FORWARD_GATHER - loop.time()
                if pause > 0 and len(batch) < FORWARD_BATCH and size <= FORWARD_BYTES:
                    await asyncio.sleep(pause)  # then take what came meanwhile too
                    continue
                self._forwarded_at = loop.time()
                try:
                    at, types = await self.observer([list(sent) for sent in send])
                except Exception:
                    if self.obj.storage.closed:
                        return
                    failures += 1
                    log.warning("dotdo: %s %r could not send %d events to App %r for the "
                                "jobs waiting for events (%d in a row); trying again",
                                type(self.obj).__name__, self.obj.id, len(send),
                                DEFAULT_APP, failures, exc_info=failures == 1)
                    await asyncio.sleep(FORWARD_RETRY.delay(failures))
                    continue
                failures = 0
                self._view = None if types is None else frozenset(types)
                self._view_at = float(at)
            # Those held back were sent before the App gave this answer: if it lists
            # their type, they go next; if not, no wait that begins later may see them.
            taken = {id(sent) for sent in send}
            later = [sent for sent in events if id(sent) not in taken
                     and (self._view is None or sent[1] in self._view)]
            for _ in batch:
                self._unsent_ids.discard(self._unsent.popleft()[0])
            self._unsent.extendleft(reversed(later))
            self._unsent_ids.update(sent[0] for sent in later)

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
            with tracing.root_span(f"schedule {name}", attributes={
                    "dotdo.schedule": name, "dotdo.schedule.spec": schedule.spec,
                    "dotdo.object": repr(self.obj)}) as span:
                try:
                    await self._run(fn)
                except Exception as exc:  # noqa: BLE001 - the schedule goes on
                    error = f"{type(exc).__name__}: {exc}"
                    tracing.failed(span, exc)
                    await self.report(ErrorInfo("Schedule.ticked", None, name, exc, _name(fn)))
            # Missed ticks collapse into the one that just ran: next is after now.
            self.journal.record_tick(name, fired, schedule.next_after(max(self.clock.now(), fired)),
                                     error)

    # -- alarm --------------------------------------------------------------------------

    def alarm_changed(self) -> None:
        self._busy()
        if tracing.enabled():  # the alarm's span links to the one that set it
            self._alarm_set_in = tracing.current_carrier()
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
                with tracing.root_span("alarm", links=[self._alarm_set_in], attributes={
                        "dotdo.object": repr(self.obj), "dotdo.alarm.at": fire_at,
                        "dotdo.alarm.retry": failures}):
                    await self._run(self.obj.alarm)  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                failures += 1
                await self.report(ErrorInfo("Alarm.failed", None, fire_at, exc, "alarm"))
                await self.clock.sleep(ALARM_RETRY.delay(failures))
                continue
            failures = 0
            self.journal.alarm_done(fire_at)
