"""In-process hosting: every object in this process, on one event loop, with no Ray.

``dotdo.init(in_process=True)`` (or ``$DOTDO_IN_PROCESS=1``) runs the same host core
as a Ray actor does (:class:`~dotdo.endpoints.Endpoints` over an
:class:`~dotdo.host.ObjectTable`) on an event loop in a thread of this process: calls
keep their order per caller, objects keep their SQLite files, promises pipeline, and
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
import resource
import threading
from typing import Any

from ray import cloudpickle

from dotdo import settings as _conf
from dotdo.endpoints import Endpoints
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

    def remote(self, *args: Any) -> LocalRef:
        if self._name == "call":
            # Copied as Ray copies it, so that a call here behaves as one there: what
            # cannot be sent fails at once, and neither side sees the other's changes.
            message, *deps = args
            try:
                args = (cloudpickle.dumps(message), *deps)
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
        self._endpoints = Endpoints(ObjectTable(
            {}, storage_root, fresh=True, deferred_timeout=_conf.deferred_timeout(),
            durability=durability, max_live=max_live()))
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

    async def serve(self, name: str, args: tuple) -> Any:
        """Run endpoint ``name``; a call's promise arguments (``LocalRef`` s) are
        awaited first, and a failed one fails the call undelivered, as Ray does."""
        if name == "call":
            sent, *deps = args
            values = [await dep for dep in deps]
            message = cloudpickle.loads(sent)
            result = await self._endpoints.call(message, *values)
            try:
                return cloudpickle.loads(cloudpickle.dumps(result))
            except Exception as exc:  # noqa: BLE001 - any pickling failure
                raise EncodeError(f"cannot return the result of {message[0]}.{message[2]}(): "
                                  f"{type(exc).__name__}: {exc}") from None
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
