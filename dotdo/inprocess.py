"""In-process hosting: every object in this process, on one event loop, with no Ray.

``dotdo.init(in_process=True)`` (or ``$DOTDO_IN_PROCESS=1``) runs the same host core
as a Ray actor does (:class:`~dotdo.endpoints.Endpoints` over an
:class:`~dotdo.host.ObjectTable`) on an event loop in a thread of this process: calls
keep their order per caller and go in batches (one commit for the sync calls of a
batch on one object, as on Ray), objects keep their SQLite files, promises pipeline, and
``send``/``do``/schedules/alarms work, as huey's immediate mode or dramatiq's
``StubBroker`` do for their queues. Objects live only while this process runs: an
object's background work resumes when it is next called (there is no restart, no
other process, no cluster). For tests of logic, and for scripts that need no Ray.
At most :func:`max_live` objects stay in memory, from the open-file limit: past it,
the longest-idle ones with no work of their own (no queued event, schedule or alarm)
close their files, and come back from them at their next call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import pickle
import resource
import threading
from typing import Any

from ray import cloudpickle

from dotdo import clock
from dotdo import settings as _conf
from dotdo.endpoints import Endpoints, outcome_of
from dotdo.errors import EncodeError
from dotdo.host import ObjectTable
from dotdo.promise import LocalRef

__all__ = ["LocalHost"]


class _Method:
    """``host.<endpoint>``: ``.remote(*args)`` runs it on the host's loop, as a Ray
    actor handle's method does, and returns a :class:`~dotdo.promise.LocalRef`."""

    __slots__ = ("_host", "_name")

    def __init__(self, host: LocalHost, name: str) -> None:
        self._host, self._name = host, name

    def options(self, **_: Any) -> _Method:
        """As a Ray actor method's ``options``: a batch gets one ref per call anyway."""
        return self

    def remote(self, *args: Any) -> Any:
        if self._name == "calls":
            return self._host.send_batch(args[0])
        if self._name == "call":
            # Copied as Ray copies it, so that a call here behaves as one there: what
            # cannot be sent fails at once, and neither side sees the other's changes.
            message, *deps = args
            try:
                args = (_dumps(message), *deps)
            except Exception as exc:  # noqa: BLE001 - any pickling failure: as Ray says it
                raise TypeError(f"Could not serialize the argument: {exc}") from None
        return LocalRef.spawn(self._host.loop, self._host.serve(self._name, args))


_FILES_PER_OBJECT = 8  # its file, the WAL, the shared memory, its lock, with room to spare


def max_live() -> int:
    """How many objects in-process hosting keeps in memory: what this process's
    open-file limit allows (a quarter of it, for everything else), 16 to 1,024."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 16
    return max(16, min(1024, soft * 3 // 4 // _FILES_PER_OBJECT))


class LocalHost:
    """The host of every object in in-process mode; see the module docstring. Its
    endpoints have the shape of a Ray actor handle's: ``host.call.remote(...)``."""

    def __init__(self, storage_root: str, durability: str = "full") -> None:
        self.loop = asyncio.new_event_loop()
        self.table = ObjectTable(
            {}, storage_root, fresh=True, deferred_timeout=_conf.deferred_timeout(),
            durability=durability, max_live=max_live())
        self.table.clock = clock.installed() or self.table.clock  # dotdo.testing's, if any
        self._endpoints = Endpoints(self.table)
        self._thread = threading.Thread(target=self._run, name="dotdo-host", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def on_loop(self) -> bool:
        """Whether the caller runs on this host's loop (an object's code)."""
        return self._thread.ident == threading.get_ident()

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    def send_batch(self, messages: list) -> list[LocalRef]:
        """Start a batch of calls (as the outbox sends one to a Ray actor): the leading
        sync ones run at once in one commit per object, as on a Ray host. Returns one
        :class:`LocalRef` per call."""
        try:  # copied as Ray copies it (see _Method.remote)
            sent = _dumps(messages)
        except Exception as exc:  # noqa: BLE001 - any pickling failure: as Ray says it
            raise TypeError(f"Could not serialize the argument: {exc}") from None
        futures: list[concurrent.futures.Future] = [concurrent.futures.Future() for _ in messages]
        LocalRef.spawn(self.loop, self._serve_batch(sent, futures))
        return [LocalRef(future, self.loop) for future in futures]

    async def _serve_batch(self, sent: bytes, futures: list[concurrent.futures.Future]) -> None:
        try:
            messages = pickle.loads(sent)
            now, tasks = await self._endpoints.start_batch(messages)
        except BaseException as exc:  # nothing ran: each call fails with it
            for future in futures:
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                elif not future.done():
                    future.set_exception(exc)
            raise
        for (ok, value), future, message in zip(now, futures, messages):
            _hand_over(future, message, ok, value)
        for task, future, message in zip(tasks, futures[len(now):], messages[len(now):]):
            task.add_done_callback(functools.partial(_ended, future, message))

    async def serve(self, name: str, args: tuple) -> Any:
        """Run endpoint ``name``; a call's promise arguments (``LocalRef`` s) are
        awaited first, and a failed one fails the call undelivered, as Ray does."""
        if name == "call":
            sent, *deps = args
            values = [await dep for dep in deps]
            message = pickle.loads(sent)
            return _copied(await self._endpoints.call(message, *values), message)
        return await getattr(self._endpoints, name)(*args)

    def close(self) -> None:
        """Stop the objects (their files are closed) and the loop's thread."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._stop(), self.loop)
        try:
            future.result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)
            if not self._thread.is_alive():
                self.loop.close()

    async def _stop(self) -> None:
        self._endpoints.release_all()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _dumps(value: Any) -> bytes:
    """``value`` pickled for a copy in this process. The C pickler first: it is several
    times quicker than cloudpickle's for the small values calls carry, and by-reference
    pickling is a faithful copy where both ends are this process. What it cannot pickle
    (a lambda, a class made at run time) goes by value through cloudpickle, as on Ray."""
    try:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any pickling failure: cloudpickle decides
        return cloudpickle.dumps(value)


def _copied(result: Any, message: list) -> Any:
    """A call's result as its caller gets it: a copy, as Ray's would be."""
    try:
        return pickle.loads(_dumps(result))
    except Exception as exc:  # noqa: BLE001 - any pickling failure
        raise EncodeError(f"cannot return the result of {message[0]}.{message[2]}(): "
                          f"{type(exc).__name__}: {exc}") from None


def _hand_over(future: concurrent.futures.Future, message: list, ok: bool, value: Any) -> None:
    """One call of a batch ended: its caller's future gets the outcome."""
    if ok:
        try:
            future.set_result(_copied(value, message))
            return
        except EncodeError as exc:
            value = exc
    if isinstance(value, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(value)


def _ended(future: concurrent.futures.Future, message: list, task: asyncio.Future) -> None:
    _hand_over(future, message, *outcome_of(task))
