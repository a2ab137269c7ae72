"""The host core: a table of live durable objects and the calls that run on them.

An *object* is a ``DurableObject`` instance keyed by ``(class name, id)``. The table
activates an object on its first call (its ``__init__`` rebuilds it from its SQLite
file), runs each call after the earlier calls of the same caller (the
:class:`~dotdo.sequencer.Sequencer`), and knows which objects are idle: nothing in
flight, no event queued or handler running, no asyncio task of their own (counted
through the event loop's task factory). Releasing an idle object closes its file.

Nothing here touches Ray: :mod:`dotdo.runtime` wraps a table in a Ray actor, and
:mod:`dotdo.pool` adds what a pooled host does besides (evicting idle objects,
waking sleeping ones).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from dotdo import aio, tracing
from dotdo.background import Activity
from dotdo.clock import Clock
from dotdo.current import acting_for, current_object, restore
from dotdo.errors import MethodNotFoundError, ObjectError
from dotdo.ids import storage_path
from dotdo.object import DurableObject, lookup, public_methods
from dotdo.promise import Later, Local, Promise, settled, unpack_args
from dotdo.sequencer import Sequencer
from dotdo.storage.kv import Storage

__all__ = ["Call", "ObjectTable", "Key", "TURN_WAIT"]

Key = tuple[str, str]  # (class name, object id)
# Class names a host shares between its streams' keys; beyond this it starts over.
MAX_INTERNED = 1024
_MAX_STREAMS = 2_000  # callers' streams a host remembers while they are idle
# Seconds a batch that came before the call ahead of it waits, with no call of its
# caller starting meanwhile, before its calls go on each alone (Ray delivers the one
# ahead within milliseconds, unless the caller holds it back for its promise arguments).
TURN_WAIT = 0.05
# Results that are surely not awaitable: no need to ask inspect.
PLAIN_RESULTS = frozenset({type(None), dict, list, str, int, float, bool, bytes, tuple})


class Call(NamedTuple):
    """One call as it travels to a host (as a plain list: Ray sends lists through
    msgpack, cheaper than the pickle it uses for tuples). ``deferred`` and ``more``
    are the caller's earlier calls still held back (see :meth:`Sequencer.arrive`);
    ``stream`` and ``seq`` the caller's line and this call's number on it; ``local``
    the promise arguments made by calls on this host (:class:`~dotdo.promise.Local`);
    ``trace`` the caller's span (W3C ``traceparent``) when the call is traced."""

    class_name: str
    object_id: str
    method: str | None  # None: cancelled before it was sent
    args: list
    kwargs: dict
    deferred: list[int] | None
    more: bool
    stream: str
    seq: int
    local: list[Local] | None = None
    trace: str | None = None


class Results:
    """The outcomes of this host's recent calls, for calls here that take them as
    arguments (:class:`~dotdo.promise.Local`): by ``(stream, seq)``, every one still
    running or awaited, and finished ones while they are among the last ``keep`` and
    younger than ``max_age`` seconds (results can be big; a call taking one later gets
    it from its caller's copy)."""

    def __init__(self, keep: int = 256, max_age: float = 5.0) -> None:
        self.keep = keep
        self.max_age = max_age
        # Running calls apart from finished ones: trimming looks only at finished ones,
        # oldest first, so it costs nothing per call however many calls are running
        # (a scan past 5,000 running enqueues at every arrival stalled hosts for seconds).
        self._futures: dict[tuple[str, int], asyncio.Future] = {}
        # A call run at once keeps its outcome as (ok, value): a future is made only if
        # a call here asks for it, which few do.
        self._finished: OrderedDict[tuple[str, int],
                                    tuple[asyncio.Future | tuple[bool, Any], float]] = OrderedDict()
        self._arrived: set[tuple[str, int]] = set()

    def arrive(self, key: tuple[str, int]) -> asyncio.Future:
        """The future a call here fills with its outcome."""
        self._arrived.add(key)
        return self._future(key)

    def record(self, key: tuple[str, int], ok: bool, value: Any) -> None:
        """A call here ended at once with this outcome (``ok``: its result, else its error)."""
        self._arrived.add(key)
        fut = self._futures.get(key)
        if fut is not None:  # a call here waits for it already
            Results.settle_outcome(fut, ok, value)
            return
        now = time.monotonic()
        self._finished[key] = ((ok, value), now)
        self._trim(now)

    def _future(self, key: tuple[str, int]) -> asyncio.Future:
        fut = self._futures.get(key)
        if fut is None:
            finished = self._finished.get(key)
            if finished is not None:
                held, ended = finished
                if isinstance(held, asyncio.Future):
                    return held
                fut = asyncio.get_running_loop().create_future()
                Results.settle_outcome(fut, *held)
                self._finished[key] = (fut, ended)
                return fut
            fut = self._futures[key] = asyncio.get_running_loop().create_future()
            fut.add_done_callback(self._ended(key))
        return fut

    def _ended(self, key: tuple[str, int]) -> Callable[[asyncio.Future], None]:
        def ended(fut: asyncio.Future) -> None:
            if self._futures.get(key) is fut:
                del self._futures[key]
                now = time.monotonic()
                self._finished[key] = (fut, now)
                self._trim(now)
        return ended

    def _trim(self, now: float) -> None:
        """Forget finished outcomes beyond the newest ``keep`` or older than ``max_age``."""
        while self._finished:
            key, (_, ended) = next(iter(self._finished.items()))
            if len(self._finished) <= self.keep and now - ended < self.max_age:
                return  # the oldest is young enough: so are the rest
            del self._finished[key]
            self._arrived.discard(key)

    @staticmethod
    def settle(fut: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
        """Record a call's outcome."""
        if fut.done():
            return
        if error is None:
            fut.set_result(result)
        elif isinstance(error, asyncio.CancelledError):
            fut.cancel()  # the calls taking its value are cancelled too
        else:
            fut.set_exception(error)
            fut.exception()  # retrieved: a failure nobody takes here is the caller's

    @staticmethod
    def settle_outcome(fut: asyncio.Future, ok: bool, value: Any) -> None:
        """Record an outcome given as ``(ok, result or error)``."""
        if ok:
            Results.settle(fut, value)
        else:
            Results.settle(fut, error=value)

    async def value(self, local: Local) -> Any:
        """The outcome of the call ``local`` names: once it ends here, or, if it never
        came here (a previous incarnation of this host took it), its caller's copy."""
        key = (local.stream, local.seq)
        fut = self._future(key)
        if fut.done() or key in self._arrived or local.source is None:
            return await asyncio.shield(fut)
        # Not here yet: it may still come (Ray starts an async actor's tasks in any
        # order), or it went to a host that died; the caller's copy says which.
        fallback = asyncio.ensure_future(_await_ref(local.source))
        try:
            done, _ = await asyncio.wait((fut, fallback), return_when=asyncio.FIRST_COMPLETED)
            return (fut if fut in done else fallback).result()
        finally:
            if not fallback.done():
                fallback.cancel()
            if not fut.done() and key not in self._arrived:
                self._futures.pop(key, None)  # never came here: nobody will fill it


def _called(call: Call) -> tuple[str, str, str]:
    """What a call's span names: its class, method and object."""
    return call.class_name, call.method or "", call.object_id


async def _await_ref(ref: Any) -> Any:
    return await settled(await ref)


def _nothing(*_: Any) -> None:
    return None


class ObjectTable:
    """The live objects of one host and the calls on them; see the module docstring.

    ``on_activate(key, obj)`` and ``on_busy(obj)`` (an object started background work
    of its own) let a pool keeper follow objects; they do nothing by default.
    """

    def __init__(self, classes: dict[str, type[DurableObject]], storage_root: str, *,
                 fresh: bool, deferred_timeout: float, compact: bool = False,
                 durability: str = "full", max_live: int | None = None) -> None:
        self.classes = dict(classes)
        # At most this many objects in memory (each holds open files): past it, an
        # activation first lets go of the longest-idle ones that have no work of their
        # own (see trim). None: a pool keeper, or nothing, decides.
        self.max_live = max_live
        self.storage_root = storage_root
        self.durability = durability  # of the objects' files (dotdo.storage.connection)
        self.compact = compact  # small pages for new files: many objects per process
        self.objects: dict[Key, DurableObject] = {}
        self.clock = Clock()
        self.sequencer = Sequencer(fresh=fresh, max_streams=_MAX_STREAMS,
                                   deferred_timeout=deferred_timeout)
        # Live objects with nothing in flight, oldest first: the eviction candidates.
        self.idle_since: OrderedDict[Key, float] = OrderedDict()
        self.released = 0
        self.on_activate: Callable[[Key, DurableObject], None] = _nothing
        self.on_busy: Callable[[DurableObject], None] = _nothing
        self._methods: dict[type, frozenset[str]] = {}
        self._calls: dict[Key, int] = {}
        self._inflight: dict[Key, int] = {}
        self._interned: dict[str, str] = {}
        self.results = Results()
        self.local_args = 0  # promise arguments taken from calls on this host
        self.admitted = 0  # calls that got their turn: the host's progress, for batches
        self.started: set[tuple[str, int]] = set()  # (stream, seq) of calls running now
        self.turn_waits = 0  # batches that came before the call ahead of them
        self._sync_methods: dict[tuple[str, str], bool] = {}

    def count_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count the asyncio tasks objects start on ``loop``: a task of an object's
        own keeps it in memory."""
        previous = loop.get_task_factory()

        def factory(loop, coro, **kwargs):
            task = previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)
            obj = current_object()
            if obj is not None:
                tasks = obj.__dict__.setdefault("_dotdo_tasks", set())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.on_busy(obj)
            return task

        loop.set_task_factory(factory)

    # -- objects ------------------------------------------------------------------------

    def _class(self, name: str) -> type[DurableObject]:
        cls = self.classes.get(name) or lookup(name)
        if cls is None:
            raise ObjectError(
                f"this host has no durable object class {name!r}: define it in a module "
                "the Ray workers can import"
            )
        return cls

    def activate(self, key: Key) -> DurableObject:
        """Bring object ``key`` into memory from its file and start its background work."""
        cls = self._class(key[0])
        path = storage_path(self.storage_root, key[0], key[1])
        storage = Storage(path, key[0], key[1], compact=self.compact, durability=self.durability)
        obj = cls.__new__(cls)
        obj.id, obj.storage = key[1], storage
        obj._dotdo_live = False
        activity = obj._dotdo_activity = Activity(obj, self.clock)
        storage.now = self.clock.now
        storage.on_alarm_change = activity.alarm_changed
        activity.on_busy = lambda: self.on_busy(obj)
        token = acting_for(obj)  # so that __init__ may subscribe handlers itself
        try:
            with tracing.detached():  # the loops it starts are the object's, not a call's
                cls.__init__(obj)
        except BaseException:
            storage.close()
            raise
        finally:
            restore(token)
        self.objects[key] = obj
        if not self._inflight.get(key):
            self.idle_since[key] = time.monotonic()
        self.on_activate(key, obj)
        with tracing.detached():
            activity.start()
        if self.max_live is not None and len(self.objects) > self.max_live:
            self.trim(keep=key)
        return obj

    def trim(self, keep: Key) -> None:
        """Let go of idle objects, longest idle first, until at most ``max_live`` are
        in memory. Only objects that would not need to wake by themselves leave (no
        call in flight, no queued event, no task of their own, no schedule or alarm):
        they come back from their files at their next call."""
        assert self.max_live is not None
        for key, _ in list(self.idle_since.items()):
            if len(self.objects) <= self.max_live:
                return
            obj = self.objects.get(key)
            if key == keep or obj is None:
                continue
            if self.evictable(key, obj) and not obj._dotdo_live \
                    and obj._dotdo_activity.next_wake() is None:
                self.release(key, obj)

    def evictable(self, key: Key, obj: DurableObject) -> bool:
        """Whether ``obj`` may leave memory: nothing in flight, no background work."""
        return (not self._inflight.get(key) and obj._dotdo_activity.idle
                and not obj.__dict__.get("_dotdo_tasks"))

    def release(self, key: Key, obj: DurableObject) -> float | None:
        """Take ``obj`` out of memory (its own tasks are cancelled); returns when it
        must wake by itself (its alarm or next tick), or None."""
        activity = obj._dotdo_activity
        wake_at = activity.next_wake()
        activity.stop()
        for task in list(obj.__dict__.get("_dotdo_tasks", ())):
            task.cancel()
        obj.storage.close()
        del self.objects[key]
        self.idle_since.pop(key, None)
        self._calls.pop(key, None)
        self.released += 1
        return wake_at

    def _method(self, obj: DurableObject, name: str):
        cls = type(obj)
        names = self._methods.get(cls)
        if names is None:
            names = self._methods[cls] = frozenset(public_methods(cls))
        if name not in names:
            raise MethodNotFoundError(
                f"{cls.__name__} has no public method {name!r}; its methods are: "
                f"{', '.join(sorted(names)) or '(none)'}"
            )
        return getattr(obj, name)

    # -- calls --------------------------------------------------------------------------

    async def call(self, message: list, deps: tuple, admission: Awaitable[None] | None = None
                   ) -> Any:
        """Run one :class:`Call` (as a list) after the earlier calls of its caller;
        ``deps`` are the values of its promise arguments. ``admission``: the wait for its
        turn that :meth:`turn` began (the call has arrived at the sequencer already)."""
        call = Call._make(message)
        key = (intern(self._interned, call.class_name), call.object_id)
        turn = (key, call.stream)
        outcome = self.results.arrive((call.stream, call.seq))
        if call.method is None:  # cancelled by its caller before it was sent
            self.sequencer.skip(turn, call.seq)
            outcome.cancel()
            raise asyncio.CancelledError
        self._inflight[key] = self._inflight.get(key, 0) + 1
        self.idle_since.pop(key, None)
        try:
            try:  # however this ends (cancelled too), the caller's next call goes on
                admitted = admission if admission is not None else self.sequencer.arrive(
                    turn, call.seq, call.deferred, call.more)
                if admitted is not None:
                    await admitted
                obj, fn = self._target(key, call.method)
                if any(type(dep) is Later for dep in deps):  # batched calls' outcomes to come
                    deps = tuple([await settled(dep) for dep in deps])
                if call.local:  # in its turn, as Ray holds back a call for its arguments
                    deps = (*deps, *[await self.results.value(x) for x in call.local])
                    self.local_args += len(call.local)
            finally:
                self.sequencer.leave(turn, call.seq)
            self.admitted += 1
            self.started.add((call.stream, call.seq))
            args, kwargs = unpack_args(call.args, call.kwargs, deps)
            token = acting_for(obj)
            try:
                if call.trace is None:
                    running = aio.call(fn, *args, **kwargs)
                    return await _settle(running, outcome)
                with tracing.server_span(call.trace, *_called(call)):
                    running = aio.call(fn, *args, **kwargs)
                    return await _settle(running, outcome)
            finally:
                restore(token)
        except BaseException as exc:
            Results.settle(outcome, error=exc)  # one that failed before it ran
            raise
        finally:
            self.started.discard((call.stream, call.seq))
            self._done_with(key)

    def _done_with(self, key: Key) -> None:
        """A call on ``key`` ended: with none other in flight, it is idle from now."""
        left = self._inflight.pop(key) - 1
        if left:
            self._inflight[key] = left
        elif key in self.objects:
            self.idle_since[key] = time.monotonic()

    def run_now(self, messages: list, admitted: bool = False) -> list[tuple[bool, Any]]:
        """Run at once, in order, the leading calls of a batch that need no waiting:
        sync methods without promise arguments whose turn it is. Returns ``(ok,
        result or error)`` for each call run (a prefix of ``messages``); the caller
        waits for the next one's turn (:meth:`turn`) or runs the rest with :meth:`call`.
        ``admitted``: the first call got its turn already (from :meth:`turn`).

        Consecutive calls on one object share one commit: nothing else runs on this
        loop until it is made and none of their results leaves this host before it
        (the batch's reply does), and each call's own ``storage.transaction()`` is a
        savepoint of it, so a call that fails undoes only its own writes, as alone.
        A call whose sync method returns an awaitable ends the run after it: its
        outcome is ``(True, awaitable)`` wrapped by :meth:`finish`."""
        out: list[tuple[bool, Any]] = []
        names: list[tuple[str, int]] = []  # (stream, seq) of the calls run, but an awaitable's
        group: tuple[Key, Any, int] | None = None  # (object, open transaction, first index)
        try:
            for message in messages:
                call = Call._make(message)
                if call.method is None or call.local or not self._sync(call.class_name, call.method):
                    break
                key = (intern(self._interned, call.class_name), call.object_id)
                turn = (key, call.stream)
                if admitted:
                    admitted = False  # it arrived at the sequencer when it began to wait
                elif self.sequencer.can_start(turn, call.seq):
                    self.sequencer.arrive(turn, call.seq, call.deferred, call.more)
                else:
                    break
                names.append((call.stream, call.seq))
                self._inflight[key] = self._inflight.get(key, 0) + 1
                self.idle_since.pop(key, None)
                try:
                    try:
                        obj, fn = self._target(key, call.method)
                    finally:
                        self.sequencer.leave(turn, call.seq)
                    self.admitted += 1
                    if group is None or group[0] != key:
                        if group is not None:
                            self._commit(group, out)
                            group = None
                        tx = obj.storage.transaction()
                        tx.__enter__()
                        group = (key, tx, len(out))
                    token = acting_for(obj)
                    try:
                        if call.trace is None:
                            result = fn(*call.args, **call.kwargs)
                        else:
                            with tracing.server_span(call.trace, *_called(call)):
                                result = fn(*call.args, **call.kwargs)
                    finally:
                        restore(token)
                except BaseException as exc:  # noqa: BLE001 - the call's outcome, as alone
                    out.append((False, exc))
                    continue
                finally:
                    self._done_with(key)
                if type(result) not in PLAIN_RESULTS and inspect.isawaitable(result):
                    outcome = self.results.arrive(names.pop())
                    out.append((True, self.finish(result, outcome, key)))
                    break
                out.append((True, result))
        finally:
            if group is not None:
                self._commit(group, out)
            # After the commit, so that a call here taking an outcome sees the caller's.
            for name, (ok, value) in zip(names, out):
                self.results.record(name, ok, value)
        return out

    async def run_leading(self, messages: list
                          ) -> tuple[list[tuple[bool, Any]], asyncio.Future | None]:
        """Run a batch's leading calls as :meth:`run_now` does; when the next one's turn
        has not come (the call ahead of it is not here yet: Ray starts an async actor's
        tasks in any order), wait for it while calls of its caller keep starting (or
        ``TURN_WAIT``), and go on the same way, in one commit, rather than leave the
        batch's calls to run each alone (a commit each) behind it. Returns the
        outcomes of the calls run and, if the next one is still waiting for its turn,
        that wait (its ``admission`` for :meth:`call`). A batch cancelled meanwhile
        drops the calls it did not run."""
        now: list[tuple[bool, Any]] = []
        waiting: asyncio.Future | None = None
        try:
            while True:
                rest = messages[len(now):]
                ran = self.run_now(rest, admitted=waiting is not None)
                now += ran
                waiting = None
                if len(ran) == len(rest) or (ran and ran[-1][0] and inspect.isawaitable(ran[-1][1])):
                    return now, None
                if not self.waits_turn(rest[len(ran)]):
                    return now, None  # an async call, or one with promise arguments
                self.turn_waits += 1
                waiting = self.turn(rest[len(ran)])
                stream = self._turn_of(rest[len(ran)])
                seen = self.sequencer.position(stream)
                while not waiting.done():
                    await asyncio.wait((waiting,), timeout=TURN_WAIT)
                    moved = self.sequencer.position(stream)
                    if not waiting.done() and (moved is None or moved == seen):
                        return now, waiting  # no call of its caller started meanwhile
                    seen = moved
        except asyncio.CancelledError:
            if waiting is not None:
                waiting.cancel()
            self.drop(messages[len(now):])
            for ok, value in now:
                if ok and inspect.iscoroutine(value):
                    value.close()  # a finish() that will never run
            raise

    def _turn_of(self, message: list) -> tuple[Key, str]:
        """The sequencer's stream of call ``message``: its object and its caller's line."""
        return ((intern(self._interned, message[0]), message[1]), message[7])

    def waits_turn(self, message: list) -> bool:
        """Whether :meth:`run_now` would run call ``message`` but for its turn: an
        earlier call of its caller has not started here yet (Ray starts an async
        actor's tasks in any order, so a batch may come before the call ahead of it)."""
        call = Call._make(message)
        if call.method is None or call.local or not self._sync(call.class_name, call.method):
            return False
        return not self.sequencer.can_start(self._turn_of(message), call.seq)

    def turn(self, message: list) -> asyncio.Future:
        """Begin waiting for call ``message``'s turn (it arrives at the sequencer):
        once the future is done, it is admitted, and runs by :meth:`run_now` with
        ``admitted=True`` or :meth:`call` with the future as its ``admission``. If
        the waiting is given up, :meth:`drop` the call."""
        call = Call._make(message)
        admitted = self.sequencer.arrive(self._turn_of(message), call.seq, call.deferred,
                                         call.more)
        if admitted is None:  # its turn came meanwhile
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return asyncio.ensure_future(admitted)

    def drop(self, messages: list) -> None:
        """These calls of a cancelled batch will not run: their outcomes are
        cancelled and their numbers skipped, so that later calls go on."""
        for message in messages:
            turn, seq = self._turn_of(message), message[8]
            self.results.arrive((message[7], seq)).cancel()
            self.sequencer.leave(turn, seq)  # one waiting for its turn
            self.sequencer.skip(turn, seq)

    def _target(self, key: Key, method: str) -> tuple[DurableObject, Callable[..., Any]]:
        """The object (activated if need be) and its method a call runs, counted."""
        obj = self.objects.get(key) or self.activate(key)
        self._calls[key] = self._calls.get(key, 0) + 1
        return obj, self._method(obj, method)

    def _commit(self, group: tuple[Key, Any, int], out: list[tuple[bool, Any]]) -> None:
        """End a run's shared transaction; if the commit fails, so do its calls."""
        try:
            group[1].__exit__(None, None, None)
        except BaseException as exc:  # noqa: BLE001 - their writes are gone: they failed
            for i in range(group[2], len(out)):
                out[i] = (False, exc)

    async def finish(self, awaitable: Any, outcome: asyncio.Future, key: Key) -> Any:
        """The rest of a call :meth:`run_now` started whose method returned an awaitable."""
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            return await _settle(awaitable, outcome)
        finally:
            self._done_with(key)

    def _sync(self, class_name: str, method: str) -> bool:
        """Whether ``method`` of the class is a plain function (known, public, not async)."""
        known = self._sync_methods.get((class_name, method))
        if known is None:
            cls = self.classes.get(class_name) or lookup(class_name)
            known = bool(cls is not None and method in public_methods(cls)
                         and not inspect.iscoroutinefunction(getattr(cls, method)))
            if len(self._sync_methods) < MAX_INTERNED:
                self._sync_methods[(class_name, method)] = known
        return known

    def skip(self, class_name: str, object_id: str, stream: str, seq: int) -> None:
        """Call ``seq`` of ``stream`` will never arrive: its caller saw an argument fail."""
        self.sequencer.skip(((class_name, object_id), stream), seq)

    def keep(self, streams: list) -> None:
        """Callers still hold back these calls: ``[class, id, stream, deferred,
        upto]`` each (see :meth:`Sequencer.keep`)."""
        for class_name, object_id, stream, deferred, upto in streams:
            self.sequencer.keep(((class_name, object_id), stream), deferred, upto)

    def streams_started(self, streams: list) -> list[bool]:
        """For each ``[class, id, stream, upto]``: whether every call of that caller's
        stream up to ``upto`` has started here (see :meth:`Sequencer.started_all`)."""
        return [self.sequencer.started_all(((class_name, object_id), stream), upto)
                for class_name, object_id, stream, upto in streams]

    def stats(self) -> dict[str, Any]:
        """Objects in memory, calls per object in memory, calls waiting for their
        turn, gaps skipped, objects released."""
        return {
            "objects": sorted(self.objects),
            "calls": {f"{c}/{i}": n for (c, i), n in self._calls.items()},
            "gaps_skipped": self.sequencer.skipped,
            "waiting": self.sequencer.waiting(),
            "evicted": self.released,
            "local_args": self.local_args,
            "turn_waits": self.turn_waits,
        }


async def _settle(running: Any, outcome: asyncio.Future) -> Any:
    """Await a call's method and record its outcome; a method returning a promise
    returns that promise's value."""
    try:
        result = await running
        if isinstance(result, Promise):
            result = await result
    except BaseException as exc:
        Results.settle(outcome, error=exc)
        raise
    Results.settle(outcome, result)
    return result


def intern(table: dict[str, str], name: str) -> str:
    """``name``, or the equal string met before: every stream key parked in the
    sequencer holds its class name, so share one copy. Starting over past
    ``MAX_INTERNED`` names only costs copies."""
    if len(table) >= MAX_INTERNED and name not in table:
        table.clear()
    return table.setdefault(name, name)
