"""What a host answers, whatever runs it: a Ray actor (:mod:`dotdo.runtime`) or a
thread of the driver's own process (:mod:`dotdo.inprocess`).

:class:`Endpoints` holds a host's :class:`~dotdo.host.ObjectTable` and, on a pooled
host, its :class:`~dotdo.pool.PoolKeeper`, and serves the calls every host takes:
``call``, ``start_batch``, ``cancel_call``, ``skip``, ``keep``, ``streams_started``,
``wake``, ``evict``, ``shift_clock``, ``stats``, and the reads of its objects' files
(``held``, ``read``) that operators' tools send to the host rather than open a live
object's file from another machine.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
from typing import Any

from dotdo.host import ObjectTable
from dotdo.ids import storage_path
from dotdo.pool import PoolKeeper
from dotdo.storage import reader

__all__ = ["Endpoints", "outcome_of"]

_log = logging.getLogger("dotdo")


class Endpoints:
    """The calls a host serves, on the event loop that runs its objects."""

    def __init__(self, table: ObjectTable, keeper: PoolKeeper | None = None) -> None:
        self._table = table
        self._keeper = keeper
        self._ready = False
        self._tending: asyncio.Task | None = None
        self._batched: dict[tuple[str, int], asyncio.Future] = {}  # running calls of batches

    def _setup(self) -> None:
        """First thing on the host's event loop: count the tasks objects start, and
        start a pooled host's round of evictions and wake-ups."""
        self._ready = True
        loop = asyncio.get_running_loop()
        self._table.count_tasks(loop)
        if self._keeper is not None:
            self._tending = loop.create_task(self._keeper.tend())  # kept: held weakly

    async def call(self, message: list, *deps: Any) -> Any:
        """Run one call (a :class:`~dotdo.host.Call` as a list); ``deps`` are the
        values of its promise arguments."""
        if not self._ready:
            self._setup()
        return await self._table.call(message, deps)

    async def start_batch(self, messages: list
                          ) -> tuple[list[tuple[bool, Any]], list[asyncio.Future]]:
        """Start a batch of calls (see :mod:`dotdo.outbox`): the leading sync ones at
        once, in one commit per object, even when the batch came before the call ahead
        of it (:meth:`ObjectTable.run_leading`); the rest each as a task, started in
        order. Returns ``(ok, result or error)`` of the calls run at once (the first
        ones), and a future for each of the rest; :meth:`cancel_call` cancels one."""
        if not self._ready:
            self._setup()
        loop = asyncio.get_running_loop()
        now, waiting = await self._table.run_leading(messages)
        tasks: list[asyncio.Future] = []
        if now and now[-1][0] and inspect.isawaitable(now[-1][1]):  # its method returned one
            tasks.append(asyncio.ensure_future(now.pop()[1]))
        for i in range(len(now) + len(tasks), len(messages)):
            message = messages[i]
            if i == len(now) and waiting is not None:  # it waits for its turn already
                tasks.append(loop.create_task(self._table.call(message, (), admission=waiting)))
            else:
                tasks.append(loop.create_task(self._table.call(message, ())))
        for message, task in zip(messages[len(now):], tasks):
            name = (message[7], message[8])  # the caller's stream, the call's number
            self._batched[name] = task
            task.add_done_callback(functools.partial(self._forget_batched, name))
        return now, tasks

    def _forget_batched(self, name: tuple[str, int], task: asyncio.Future) -> None:
        if self._batched.get(name) is task:
            del self._batched[name]

    async def cancel_call(self, stream: str, seq: int) -> bool:
        """Cancel call ``seq`` of ``stream``, sent in a batch; False once it has ended."""
        task = self._batched.get((stream, seq))
        if task is None:
            return False
        task.cancel()
        return True

    async def skip(self, class_name: str, object_id: str, stream: str, seq: int) -> None:
        """Call ``seq`` of ``stream`` will never arrive: its caller saw an argument fail."""
        self._table.skip(class_name, object_id, stream, seq)

    async def keep(self, streams: list) -> None:
        """Callers still hold back these calls (see :meth:`ObjectTable.keep`)."""
        self._table.keep(streams)

    async def streams_started(self, streams: list) -> list[bool]:
        """Whether callers' streams have started every call they sent (see
        :meth:`ObjectTable.streams_started`): a caller asks before it drops a stream."""
        return self._table.streams_started(streams)

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

    def release_all(self) -> None:
        """Take every object out of memory (the host is closing; files stay)."""
        for key, obj in list(self._table.objects.items()):
            self._table.release(key, obj)

    async def shift_clock(self, seconds: float) -> float:
        """Move this host's clock (tests: 'three hours pass'); returns its offset."""
        self._table.clock.shift(seconds)
        return self._table.clock.offset

    def _mine(self, root: str) -> bool:
        return os.path.abspath(root) == os.path.abspath(self._table.storage_root)

    async def held(self, root: str) -> list[str] | None:
        """The files (relative to ``root``) of the objects live here, whose reads
        must be made on this host's node; None if this host keeps its objects under
        another root (none of them are files there)."""
        if not self._mine(root):
            return None
        return [reader.relative(root, storage_path(root, c, i)) for c, i in self._table.objects]

    async def read(self, root: str, requests: list) -> list[list] | None:
        """Run reads (see :func:`dotdo.storage.reader.answer`) on files under ``root`` here, on
        the node where this host writes them: SQLite's WAL is safe only for readers on
        the writer's machine. In a thread, so the objects' calls go on meanwhile (a
        read has its own read-only connection). None if ``root`` is not this host's."""
        if not self._mine(root):
            return None
        return await asyncio.to_thread(reader.answer, root, requests)

    async def stats(self) -> dict[str, Any]:
        """Process id, objects in memory, calls per object in memory, calls waiting
        for their turn, evictions (tests and operators use this)."""
        return {
            "pid": os.getpid(),
            **self._table.stats(),
            "sleeping": self._keeper.sleeping if self._keeper is not None else 0,
        }


def outcome_of(task: asyncio.Future) -> tuple[bool, Any]:
    """A finished call's outcome as ``(ok, result or error)``, as
    :meth:`Endpoints.start_batch` gives those run at once."""
    if task.cancelled():
        return False, asyncio.CancelledError()
    error = task.exception()
    return (True, task.result()) if error is None else (False, error)
