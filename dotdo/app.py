"""``App``: the object that module-level handlers and schedules belong to.

Driver code's ``send`` and ``do`` act for ``App("default")``. The App imports the
modules that registered handlers (the driver ships their names the first time it
calls into dotdo, or at :func:`dotdo.deploy`), remembers them in its storage, and
imports them again whenever it reactivates, so its schedules keep ticking with no
driver attached.

What it keeps is limited to what drivers registered: a module name or the absolute
path of an existing ``.py`` script, kept only if importing it registered a handler,
schedule, error callback or job handler for that App; a kept module that no longer
exists (the module is gone, the script deleted) is dropped at the next activation.

``App("default")`` also matches events against the jobs waiting for them
(``dotdo.wait_for_event``; the tables and the rules: :mod:`dotdo.watches`). Queues
register waits (``watch_event``); every event the App journals (``emit``,
``emit_many``, and ``send`` in its handlers) is matched in the transaction that
journals it, and events sent in other objects come through ``observe``. A match is a
delivery, kept in the App's file until the job's queue took it: a task of the App
sends deliveries (retrying, with backoff, a queue that does not answer), also those
left over when the App restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import sys
from typing import Any

from dotdo import connect, context, registry
from dotdo.current import acting_for, restore
from dotdo.errors import ConfigError, ObjectError
from dotdo.events import check_event_type
from dotdo.object import DurableObject, lookup
from dotdo.registry import DEFAULT_APP, check_spec, module_name
from dotdo.retry import RetryPolicy
from dotdo.stub import Stub
from dotdo.watches import Delivery, EventWaits

__all__ = ["App", "deploy", "import_modules"]

log = logging.getLogger("dotdo")
DELIVERY_BATCH = 500  # deliveries sent at once (they go to their queues as one task each)
# A queue that did not take its deliveries is tried again after this.
DELIVERY_RETRY = RetryPolicy(max_retries=1_000_000, backoff=0.5, max_backoff=30.0)
_SHIPPED = "dotdo.objects"  # entry-point group of the installed object classes (Queue)


def _gone(spec: tuple[str, str], exc: Exception) -> bool:
    """Whether ``exc`` says the module itself no longer exists (not a passing fault)."""
    kind, target = spec
    if kind == "script":
        return not os.path.isfile(target)
    return isinstance(exc, ModuleNotFoundError) and exc.name is not None and (
        target == exc.name or target.startswith(exc.name + "."))


def _import(spec: tuple[str, str]) -> None:
    kind, target = spec
    if kind == "module":
        importlib.import_module(target)
        return
    name = module_name(spec)
    if name in sys.modules:
        return
    module_spec = importlib.util.spec_from_file_location(name, target)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import the script {target}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    # No other process can import this module by name: send its classes by value,
    # as the driver does for its __main__, when an object here calls one of them.
    connect.pickle_by_value(module)


def import_modules(specs: list, importer: str) -> list[list[str]]:
    """Import modules shipped by drivers; their module-level registrations go to the
    process-wide registry, never to the object that happens to be importing. Returns
    the specs whose module no longer exists."""
    gone = []
    token = acting_for(None)
    try:
        for stored in specs:
            try:
                spec = check_spec(stored)
            except ValueError as exc:  # a script deleted, or kept by an older dotdo
                gone.append(stored)
                log.warning("dotdo: %s drops %r: %s", importer, stored, exc)
                continue
            try:
                _import(spec)
            except Exception as exc:
                if _gone(spec, exc):
                    gone.append(stored)
                    log.warning("dotdo: %s drops %s: it no longer exists", importer, spec)
                else:
                    log.exception("dotdo: %s could not import %s", importer, spec)
    finally:
        restore(token)
    return gone


def _queue_class() -> type[DurableObject]:
    """The Queue class (shipped by an installed package, found by name)."""
    cls = lookup("Queue")
    if cls is None:
        for entry in importlib.metadata.entry_points(group=_SHIPPED, name="Queue"):
            entry.load()
        cls = lookup("Queue")
    if cls is None:
        raise ConfigError("App cannot reach the queues of waiting jobs: no Queue class is "
                          "installed (install dotdo with its actors package)")
    return cls


class App(DurableObject):
    """Home of module-level handlers, schedules and driver-side steps; the default
    App also matches events for the jobs waiting for them."""

    def __init__(self) -> None:
        self.modules: list[list[str]] = self.storage.get("modules", [])
        gone = self._load(self.modules)
        if gone:
            self.modules = [s for s in self.modules if s not in gone]
            self.storage.put("modules", self.modules)
        self._waits: EventWaits | None = None
        if self.id == DEFAULT_APP:
            self._start_waits()

    def _load(self, specs: list) -> list[list[str]]:
        gone = import_modules(specs, f"App {self.id!r}")
        self._dotdo_activity.merge(registry.app_registrations(self.id))
        return gone

    # -- jobs waiting for events ----------------------------------------------------------

    def _start_waits(self) -> None:
        self._waits = EventWaits(self.storage)
        self._last_now = 0.0
        self._owed = asyncio.Event()  # set when a delivery is written
        self._sender: asyncio.Task | None = None
        activity = self._dotdo_activity
        activity.observer = None  # this is where events are matched
        activity.on_emit = self._journaled
        activity.more_work = lambda: self._waits is not None and self._waits.owed
        if self._waits.owed:  # deliveries a previous life left unsent
            activity.busy()
            self._send_soon()

    def _here(self) -> EventWaits:
        if self._waits is None:
            raise ObjectError(f"App {self.id!r} keeps no event waits: jobs wait for events "
                              f"in App({DEFAULT_APP!r}), where every event is matched")
        return self._waits

    def _now(self) -> float:
        # Never back (a wall clock stepping back): an answer to ``observe`` promises
        # that no wait begins at or before its time.
        self._last_now = max(self._last_now, self.storage.now())
        return self._last_now

    def watch_event(self, event_type: str, match: dict | None, queue: str, job_id: str,
                    uid: str | None, key: str) -> None:
        """Register a job's wait for an event (its queue calls this before the job
        parks): from now on, an event ``event_type`` whose data holds every item of
        ``match`` goes to ``Queue(queue).deliver(job_id, uid, key, ...)``; one sent
        before does not. Registering the same (queue, uid, key) again keeps the wait
        and when it began."""
        check_event_type(event_type)
        if match is not None and not isinstance(match, dict):
            raise ValueError(f"match is a dict of the event data's items, not {match!r}")
        self._here().watch(event_type, dict(match or {}), queue, job_id, uid, key,
                           self._now())

    def unwatch_event(self, queue: str, uid: str | None, key: str) -> bool:
        """Forget a wait (it timed out); False if it is not here (an event matched it,
        or it was never registered)."""
        return self._here().unwatch(queue, uid, key)

    def event_waits(self, limit: int = 100) -> list[dict[str, Any]]:
        """The jobs waiting for events, oldest wait first: ``{"queue", "jobId", "key",
        "type", "match", "since"}`` each."""
        return self._here().waits(max(0, int(limit)))

    def observe(self, events: list) -> list:
        """Match events sent in other objects (``[id, type, data encoded, created]``
        each) against the waits that began at or before each was sent; nothing else
        is done with them (the App's handlers do not see them). Returns ``[now, the
        types jobs wait for]`` (None instead of the list when there are too many):
        the sender need not send an event sent before ``now`` of a type not listed."""
        waits = self._here()
        matched = 0
        with self.storage.transaction():
            for event_id, event_type, encoded, created in events:
                matched += waits.match(event_id, event_type, encoded, created, created)
        if matched:
            self._owe()
        return [self._now(), waits.watched()]

    def _journaled(self, event_id: str, event_type: str, encoded: bytes, created: float) -> None:
        """An event the App journals, in that transaction: matched against every wait
        there is now (each began before it came)."""
        assert self._waits is not None, "set as on_emit by _start_waits"
        if self._waits.match(event_id, event_type, encoded, created, math.inf):
            self._owe()

    def _owe(self) -> None:
        self._dotdo_activity.busy()
        self._dotdo_activity.soon(self._send_soon)

    def _send_soon(self) -> None:
        """Have the sender send what is owed (starting it if it ended: it ends once
        nothing is owed, so that an idle App holds no task)."""
        self._owed.set()
        if self._sender is None or self._sender.done():
            token = acting_for(self)  # the App's own task: it keeps the App in memory
            try:
                self._sender = asyncio.get_running_loop().create_task(self._send_deliveries())
            finally:
                restore(token)

    async def _send_deliveries(self) -> None:
        """Send deliveries to their queues, oldest first, and forget each once its
        queue took it (its answer, True or False: a point ends once). A queue that
        fails is tried again after a growing wait; the others go on meanwhile."""
        waits = self._here()
        loop = asyncio.get_running_loop()
        away: dict[str, tuple[int, float]] = {}  # queue -> (failures in a row, retry at)
        troubles = 0  # rounds in a row whose reads or writes failed
        while not self.storage.closed:
            self._owed.clear()
            now = loop.time()
            skip = [queue for queue, (_, at) in away.items() if at > now]
            try:
                rows = waits.deliveries(DELIVERY_BATCH, skip)
                if not rows:
                    if not skip:
                        waits.owed = False
                        return
                    wait = min(away[queue][1] for queue in skip) - now
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._owed.wait(), wait)
                    continue
                outcomes = await asyncio.gather(*(self._deliver(row) for row in rows),
                                                return_exceptions=True)
                waits.delivered([row[0] for row, out in zip(rows, outcomes)
                                 if not isinstance(out, BaseException)])
            except Exception:
                if self.storage.closed:
                    return
                # The tables could not be read or written (a write the disk refused):
                # what was sent may go again, which its queue ignores.
                troubles += 1
                log.warning("dotdo: App %r could not keep track of its deliveries to waiting "
                            "jobs (%d in a row); trying again", self.id, troubles,
                            exc_info=True)
                await asyncio.sleep(DELIVERY_RETRY.delay(troubles))
                continue
            troubles = 0
            failed: dict[str, list[BaseException]] = {}
            for row, out in zip(rows, outcomes):
                errors = failed.setdefault(row[1], [])
                if isinstance(out, BaseException):
                    errors.append(out)
            for queue, errors in failed.items():
                if not errors:
                    away.pop(queue, None)
                    continue
                n = away.get(queue, (0, 0.0))[0] + 1
                away[queue] = (n, loop.time() + DELIVERY_RETRY.delay(n))
                log.warning("dotdo: App %r could not wake %d jobs waiting for events in "
                            "queue %r (%d in a row): %r; trying again", self.id, len(errors),
                            queue, n, errors[0])

    async def _deliver(self, row: Delivery) -> bool:
        _, queue, job_id, uid, key, value = row
        return await Stub(_queue_class(), queue).deliver(job_id, uid, key, "done", value)

    def keep_modules(self, specs: list) -> list:
        """Import these modules (``[kind, name]``) now, and keep those that registered
        something, to import them at every reactivation; returns the modules kept.
        A spec that is not a module name or an existing script is refused."""
        new: list[list[str]] = []
        for spec in [list(check_spec(s)) for s in specs]:  # all checked before any import
            if spec not in self.modules and spec not in new:
                new.append(spec)
        if new:
            self._load(new)
            kept = [s for s in new
                    if registry.has_registrations(module_name((s[0], s[1])), self.id)]
            for spec in new:
                if spec not in kept:
                    log.warning("dotdo: App %r does not keep %s: importing it registered "
                                "no handler, schedule or job", self.id, spec)
            if kept:
                self.modules = self.modules + kept
                self.storage.put("modules", self.modules)
        return self.modules

    def emit(self, event_type: str, data: Any = None) -> None:
        """``dotdo.send`` from driver code lands here."""
        context.send(event_type, data)

    def emit_many(self, events: list) -> int:
        """Events other objects forward in batches, ``[type, data, id]`` each. The
        sender's ids make a repeated batch harmless: an id seen before is dropped.
        Returns how many were new."""
        return sum(context.send_once(event_type, data, event_id) is not None
                   for event_type, data, event_id in events)

    def listens(self, noun: str) -> bool:
        """Whether any handler here would receive events of ``noun``, or any job waits
        for one (senders that forward many events skip the work when nobody listens)."""
        if self._waits is not None and noun in self._waits.watched_nouns():
            return True
        return any(pattern.partition(".")[0] in ("*", noun)
                   for pattern, _ in self._dotdo_activity.handlers)

    def module_list(self) -> list:
        """The modules this App imports: workers import them too, for job handlers."""
        return self.modules

    def step(self, step_id: str) -> tuple[bool, Any]:
        return self.storage.journal.step(step_id)

    def step_attempt(self, step_id: str, n: int, started: float, finished: float, error: str) -> None:
        self.storage.journal.record_attempt(step_id, n, started, finished, error)

    def step_finish(self, step_id: str, encoded: bytes, n: int, started: float, finished: float) -> None:
        self.storage.journal.finish_step(step_id, encoded, n, started, finished)

    def attempts(self, step_id: str) -> list[dict[str, Any]]:
        """The journaled attempts of a driver-side step, for inspection."""
        return self.storage.journal.attempts(step_id)


def deploy(app: str = DEFAULT_APP) -> list:
    """Ship this driver's module-level handlers and schedules to ``App(app)`` and
    wait until it runs them; from then on they run with no driver attached."""
    return Stub(App, app).keep_modules([]).result()
