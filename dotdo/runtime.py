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
import logging
import os
import threading
import time
import warnings
from typing import Any

import ray

from dotdo import settings as _conf
from dotdo.host import ObjectTable
from dotdo.ids import storage_path
from dotdo.journal import Directory
from dotdo.object import DurableObject
from dotdo.pool import PoolKeeper
from dotdo.settings import Settings

__all__ = ["Host"]

_log = logging.getLogger("dotdo")


class _HostActor:
    """Runs durable objects; see the module docstring."""

    def __init__(
        self,
        classes: dict[str, type[DurableObject]],
        conf: Settings,
        key: tuple[str, str] | None = None,
        pool: tuple[str, float | None] | None = None,
    ) -> None:
        _conf.use(conf)  # stubs called inside objects use the settings of their creator
        self._table = ObjectTable(classes, conf.storage, fresh=not _restarted(),
                                  deferred_timeout=_conf.deferred_timeout())
        self._keeper: PoolKeeper | None = None
        if pool is not None:
            directory = Directory(storage_path(conf.storage, "_dotdo_hosts", pool[0]))
            self._keeper = PoolKeeper(self._table, directory, pool[1])
        self._ready = False
        self._tending: asyncio.Task | None = None
        # Start now, not at the next call: after a restart, objects' pending events,
        # schedules and alarms must resume with nobody calling.
        _wake_self(list(key) if key else None)

    def _setup(self) -> None:
        """First thing on the actor's event loop: count the tasks objects start, and
        start a pooled host's round of evictions and wake-ups."""
        self._ready = True
        loop = asyncio.get_running_loop()
        self._table.count_tasks(loop)
        if self._keeper is not None:
            self._tending = loop.create_task(self._keeper.tend())  # kept: held weakly

    async def call(self, message: list, *deps: Any) -> Any:
        """Run one call (a :class:`~dotdo.host.Call` as a list); ``deps`` are the
        values of its promise arguments, resolved by Ray."""
        if not self._ready:
            self._setup()
        return await self._table.call(message, deps)

    async def skip(self, class_name: str, object_id: str, stream: str, seq: int) -> None:
        """Call ``seq`` of ``stream`` will never arrive: its caller saw an argument fail."""
        self._table.skip(class_name, object_id, stream, seq)

    async def keep(self, streams: list) -> None:
        """Callers still hold back these calls (see :meth:`ObjectTable.keep`)."""
        self._table.keep(streams)

    async def wake(self, key: list | None) -> None:
        """Activate an object now (its background work resumes)."""
        if not self._ready:
            self._setup()
        if key is None:
            return
        obj_key = (key[0], key[1])
        if obj_key not in self._table.objects:
            try:
                self._table.activate(obj_key)
            except Exception:  # noqa: BLE001 - the next call reports it to its caller
                _log.exception("dotdo: cannot activate %s/%s", *obj_key)

    async def evict(self, class_name: str, object_id: str, forget: bool = False) -> bool:
        """Take an idle object out of memory now (tests, operators); False if it is
        busy or not in memory. ``forget`` retires it even if busy (its own tasks are
        cancelled) and stops waking it for its alarm or schedules until its next call."""
        key = (class_name, object_id)
        obj = self._table.objects.get(key)
        keeper = self._keeper
        if obj is None or not (forget or self._table.evictable(key, obj)):
            if forget and keeper is not None:
                keeper.forget(key)
            return False
        if keeper is None:
            self._table.release(key, obj)
            return True
        row = keeper.release(key, obj)
        if forget:
            keeper.forget(key)
        elif row is not None:
            keeper.directory.asleep(*row)
        return True

    async def shift_clock(self, seconds: float) -> float:
        """Move this host's clock (tests: 'three hours pass'); returns its offset."""
        self._table.clock.shift(seconds)
        return self._table.clock.offset

    async def stats(self) -> dict[str, Any]:
        """Process id, node, objects in memory, calls per object in memory, calls
        waiting for their turn, evictions (tests and operators use this)."""
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            **self._table.stats(),
            "sleeping": self._keeper.sleeping if self._keeper is not None else 0,
        }


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
