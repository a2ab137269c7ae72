"""The Ray actor that hosts durable objects: a thin facade over the host core.

A *host* is a Ray actor holding an :class:`~dotdo.host.ObjectTable`; it is a detached
actor in namespace ``dotdo`` (get-if-exists, restarted without limit), named as
:mod:`dotdo.hosting` says: one per object (dedicated) or a pool shared by many
objects (pooled, with a :class:`~dotdo.pool.PoolKeeper`).

A host is an asyncio actor: calls to one object run on one event loop, one at a
time, interleaving only at ``await``, as in Durable Objects. Ray starts an async
actor's tasks out of order, so each caller numbers its calls and the table's
:class:`~dotdo.sequencer.Sequencer` starts them in that order. A host is restarted
by Ray after a crash and rebuilds each object from its SQLite file on the next call;
it wakes by itself at once, so objects' pending events, schedules and alarms resume
with nobody calling.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
import warnings
from typing import Any

import ray
from ray import cloudpickle
from ray.exceptions import RayTaskError, TaskCancelledError

from dotdo import logs, signals, tracing
from dotdo import settings as _conf
from dotdo.endpoints import Endpoints, outcome_of
from dotdo.errors import EncodeError
from dotdo.host import TURN_WAIT, ObjectTable
from dotdo.ids import storage_path
from dotdo.object import DurableObject
from dotdo.pool import PoolKeeper
from dotdo.promise import SCALARS, Later
from dotdo.settings import Settings
from dotdo.storage.directory import Directory

__all__ = ["Host", "encodable", "STRAGGLE", "HANDOVER_GRACE"]

# How long a process that got SIGTERM waits for its objects to hand their work back.
HANDOVER_GRACE = 10.0

# Seconds a batch waits, with none of its calls ending and no call of the host
# getting its turn, before it goes back without the calls still running (their
# outcomes follow).
STRAGGLE = 0.002
LATER_KEPT = 30.0  # seconds a late call's outcome stays referenced here once it ends


class _HostActor(Endpoints):
    """Runs durable objects; see the module docstring."""

    def __init__(
        self,
        classes: dict[str, type[DurableObject]],
        conf: Settings,
        key: tuple[str, str] | None = None,
        pool: tuple[str, float | None] | None = None,
    ) -> None:
        _conf.use(conf)  # stubs called inside objects use the settings of their creator
        name = pool[0] if pool is not None else "/".join(key) if key else "host"
        tracing.setup(conf.tracing, host=name)  # as its creator: spans to the same place
        logs.configure(name)
        table = ObjectTable(classes, conf.root, fresh=not _restarted(),
                            deferred_timeout=_conf.deferred_timeout(), durability=conf.durability)
        keeper = None
        if pool is not None:
            directory = Directory(storage_path(conf.root, "_dotdo_hosts", pool[0]),
                                  conf.durability)
            keeper = PoolKeeper(table, directory, pool[1])
        super().__init__(table, keeper)
        self._detached: dict[tuple[str, int], asyncio.Future] = {}  # outlasted their batch
        # The refs of those calls' outcomes, kept here a while after they end: the
        # caller got each inside its batch's reply, and Ray (2.60) can free an
        # owner's ref nested in a multi-return reply before the caller's borrow is
        # counted (seen as ReferenceCountingAssertionError after a node was lost).
        self._later_refs: dict[tuple[str, int], Any] = {}
        self._batches = self._batched_calls = self._late = 0
        self._reachable = False  # a call to itself has got through (see wake)
        # Start now, not at the next call: after a restart, objects' pending events,
        # schedules and alarms must resume with nobody calling.
        _wake_self(list(key) if key else None)

    async def stats(self) -> dict[str, Any]:
        """As :meth:`Endpoints.stats`, with the Ray node this host runs on."""
        return {**await super().stats(), "node": ray.get_runtime_context().get_node_id(),
                "batches": self._batches, "batched_calls": self._batched_calls,
                "late_calls": self._late}

    async def calls(self, messages: list) -> Any:
        """Run a batch of calls (see :meth:`Endpoints.start_batch`). Returns one
        outcome per call (the caller asked for one ``ObjectRef`` each); a failed call's
        outcome is the error Ray would have raised for it, which fails that call's
        ``ObjectRef`` alone. Once ``STRAGGLE`` seconds pass with no call of the batch
        ending and no call of this host getting its turn (``TURN_WAIT`` if some are
        still waiting for their own turn), and once this host can call itself, the
        batch goes back and each call still running returns a
        :class:`~dotdo.promise.Later`: the ref of its outcome, which this
        host sends when it ends (:meth:`outcome`)."""
        loop = asyncio.get_running_loop()
        self._batches += 1
        self._batched_calls += len(messages)
        now, tasks = await self.start_batch(messages)
        running = messages[len(now):]
        names = [(m[7], m[8]) for m in running]  # the callers' streams, the calls' numbers
        pending = {task for task in tasks if not task.done()}
        name_of = dict(zip(tasks, names))
        # One callback per call, once: waiting on the whole set every STRAGGLE seconds
        # would cost a batch of n running calls O(n) each time.
        changed = loop.create_future()

        def ended(task: asyncio.Future) -> None:
            pending.discard(task)
            if not changed.done():
                changed.set_result(None)

        for task in pending:
            task.add_done_callback(ended)
        quiet = 0.0  # seconds with no call of this batch ending and none admitted here
        try:
            while pending:
                admitted = self._table.admitted
                await asyncio.wait((changed,), timeout=STRAGGLE)
                if changed.done():
                    changed = loop.create_future()
                    quiet = 0.0
                    continue
                if self._table.admitted != admitted:
                    quiet = 0.0
                    continue
                quiet += STRAGGLE
                # The started ones are slow. One still waiting for its turn is most
                # likely behind a call Ray has not delivered yet (it starts an async
                # actor's tasks in any order): give it TURN_WAIT before going back.
                started = self._table.started
                if self._reachable and (
                        quiet >= TURN_WAIT or all(name_of[t] in started for t in pending)):
                    break
        except asyncio.CancelledError:  # ray.cancel of the batch: of every call in it
            for task in tasks:
                task.cancel()
            raise
        outcomes = [_outcome(ok, value, message) for (ok, value), message in zip(now, messages)]
        outcomes += [self._later(task, name) if task in pending else _outcome(*outcome_of(task), message)
                     for task, message, name in zip(tasks, running, names)]
        return outcomes[0] if len(outcomes) == 1 else tuple(outcomes)

    async def wake(self, key: list | None) -> None:
        """As :meth:`Endpoints.wake`; that this call, sent by this host to itself, got
        through also means later calls to itself will (``_later``): until then, right
        after a restart, Ray may refuse them with "the actor is restarting"."""
        self._reachable = True
        await super().wake(key)

    def _later(self, task: asyncio.Future, name: tuple[str, int]) -> Later:
        self._detached[name] = task
        self._late += 1
        ref = self._later_refs[name] = ray.get_runtime_context().current_actor.outcome.remote(*name)
        return Later(ref)

    async def outcome(self, stream: str, seq: int) -> Any:
        """The outcome of call ``seq`` of ``stream``, which outlasted its batch."""
        task = self._detached.pop((stream, seq))
        try:
            return await task
        finally:
            asyncio.get_running_loop().call_later(
                LATER_KEPT, self._later_refs.pop, (stream, seq), None)

def _outcome(ok: bool, value: Any, message: list) -> Any:
    """What one call of a batch returns: its result, or its error as Ray makes it."""
    if ok:
        if type(value) in SCALARS or encodable(value):
            return value
        error: BaseException = EncodeError(
            f"cannot return the result of {message[0]}.{message[2]}(): "
            f"{type(value).__name__} cannot be serialised")
    elif isinstance(value, asyncio.CancelledError):
        return TaskCancelledError()
    else:
        error = value
    return RayTaskError(f"{message[0]}.{message[2]}",
                        "".join(traceback.format_exception(error)), error)


def encodable(value: Any) -> bool:
    """Whether Ray can serialise ``value`` (a quick look at plain data first): a
    batch's outcomes travel in one reply, and one that cannot would fail them all."""
    if _plain(value, 0):
        return True
    try:
        cloudpickle.dumps(value)
    except Exception:  # noqa: BLE001 - any pickling failure
        return False
    return True


def _plain(obj: Any, depth: int) -> bool:
    # Loops, not all() over generators: this runs on every call sent and answered.
    t = type(obj)
    if t in SCALARS:
        return True
    if depth > 8:
        return False
    if t is list or t is tuple:
        for x in obj:
            if type(x) not in SCALARS and not _plain(x, depth + 1):
                return False
        return True
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str or (type(v) not in SCALARS and not _plain(v, depth + 1)):
                return False
        return True
    return False


def _wake_self(key: list | None) -> None:
    """Have this actor call its own ``wake`` once it serves calls. A call sent from
    the constructor of a restarting actor can fail with "the actor is restarting"
    (Ray sees it mid-restart): a thread keeps trying until the call is taken."""
    handle = ray.get_runtime_context().current_actor

    def send() -> None:
        for attempt in range(100):
            try:
                # A future, not ray.get: this thread is made for blocking.
                handle.wake.remote(key).future().result(timeout=60)
                return
            except (ray.exceptions.ActorUnavailableError, TimeoutError):
                time.sleep(min(0.05 * 2 ** attempt, 2.0))
            except ray.exceptions.RayActorError:
                return  # this actor is gone for good

    threading.Thread(target=send, name="dotdo-wake", daemon=True).start()


def _restarted() -> bool:
    """Whether this actor is a restart (Ray's check warns about its own deprecated
    ``actor_id``; the warning is Ray's business, not our users')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


Host = ray.remote(_HostActor)



def _hand_over_on_sigterm() -> None:
    """Make Ray's SIGTERM handler (``worker.main_loop``'s, which exits the process)
    wait for the objects' hand-over first (see :mod:`dotdo.signals`). Done once per
    process, at import: a module attribute, so any thread may set it."""
    module = ray._private.worker
    ray_exit = getattr(module, "raise_sys_exit_with_custom_error_message", None)
    if ray_exit is None or getattr(ray_exit, "_dotdo", False):
        return  # another Ray, or done already

    def exit_after_handover(*args: Any, **kwargs: Any) -> None:
        signals.wait_for_handover(HANDOVER_GRACE)
        ray_exit(*args, **kwargs)

    exit_after_handover._dotdo = True  # type: ignore[attr-defined]
    module.raise_sys_exit_with_custom_error_message = exit_after_handover


_hand_over_on_sigterm()
