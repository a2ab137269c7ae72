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

import threading
import time
import warnings
from typing import Any

import ray

from dotdo import settings as _conf
from dotdo.endpoints import Endpoints
from dotdo.host import ObjectTable
from dotdo.ids import storage_path
from dotdo.journal import Directory
from dotdo.object import DurableObject
from dotdo.pool import PoolKeeper
from dotdo.settings import Settings

__all__ = ["Host"]


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
        table = ObjectTable(classes, conf.storage, fresh=not _restarted(),
                            deferred_timeout=_conf.deferred_timeout())
        keeper = None
        if pool is not None:
            directory = Directory(storage_path(conf.storage, "_dotdo_hosts", pool[0]))
            keeper = PoolKeeper(table, directory, pool[1])
        super().__init__(table, keeper)
        # Start now, not at the next call: after a restart, objects' pending events,
        # schedules and alarms must resume with nobody calling.
        _wake_self(list(key) if key else None)

    async def stats(self) -> dict[str, Any]:
        """As :meth:`Endpoints.stats`, with the Ray node this host runs on."""
        return {**await super().stats(), "node": ray.get_runtime_context().get_node_id()}


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
