"""What a pooled host does besides running calls: evicting idle objects and waking
sleeping ones.

A pooled host holds many objects. Objects idle for the pool's ``idle_timeout`` leave
memory (see :meth:`ObjectTable.evictable`). A per-host
:class:`~dotdo.storage.directory.Directory` lists the objects the host must wake by itself:
those with background work when it died, and evicted ones at their alarm or next
tick. After a burst of evictions the freed memory goes back to the OS, so the host's
size follows its live objects.
"""

from __future__ import annotations

import ctypes
import heapq
import logging
import time

from dotdo.host import Key, ObjectTable
from dotdo.object import DurableObject
from dotdo.storage.directory import Directory

__all__ = ["PoolKeeper"]

_TRIM_AFTER = 256  # evictions
_log = logging.getLogger("dotdo")


class PoolKeeper:
    """Evicts ``table``'s idle objects and wakes its sleeping ones; see the module
    docstring. ``idle_timeout`` None never evicts by itself."""

    def __init__(self, table: ObjectTable, directory: Directory,
                 idle_timeout: float | None) -> None:
        self.table = table
        self.directory = directory
        self.idle_timeout = idle_timeout
        self._wake_at: dict[Key, float] = {}
        self._wakes: list[tuple[float, Key]] = []
        self._trimmed_at = 0
        table.compact = True
        table.on_busy = self._mark_live
        table.on_activate = self._activated
        for key, at in directory.rows():
            self._wake_later(key, at)

    def _activated(self, key: Key, obj: DurableObject) -> None:
        self._wake_at.pop(key, None)  # awake: no need to wake it

    @property
    def sleeping(self) -> int:
        """Objects out of memory that this host will wake by itself."""
        return len(self._wake_at)

    def _mark_live(self, obj: DurableObject) -> None:
        """``obj`` has background work: a host that dies must bring it back."""
        if not obj._dotdo_live:
            obj._dotdo_live = True
            self.directory.live((type(obj).__name__, obj.id))

    def _wake_later(self, key: Key, at: float) -> None:
        self._wake_at[key] = at
        heapq.heappush(self._wakes, (at, key))

    async def tend(self) -> None:
        """Evict and wake, a few times per ``idle_timeout``, for ever."""
        timeout = self.idle_timeout
        tick = 1.0 if timeout is None else min(1.0, max(0.05, timeout / 4))
        while True:
            try:
                self._wake_due()
                if timeout is not None:
                    self._evict_idle(time.monotonic() - timeout)
            except Exception:  # noqa: BLE001 - housekeeping must go on
                _log.exception("dotdo: pooled host housekeeping failed")
            await self.table.clock.sleep(tick)

    def _wake_due(self) -> None:
        now = self.table.clock.now()
        while self._wakes and self._wakes[0][0] <= now:
            at, key = heapq.heappop(self._wakes)
            if self._wake_at.get(key) != at or key in self.table.objects:
                continue  # superseded, or awake already
            try:
                self.table.activate(key)
            except Exception:  # noqa: BLE001 - its next call reports it to the caller
                self._wake_at.pop(key, None)
                _log.exception("dotdo: cannot wake %s/%s", *key)

    def _evict_idle(self, cutoff: float) -> None:
        asleep: list[tuple[Key, float | None]] = []
        now = time.monotonic()
        idle_since = self.table.idle_since
        while idle_since:
            key, since = next(iter(idle_since.items()))
            if since > cutoff:
                break
            del idle_since[key]
            obj = self.table.objects.get(key)
            if obj is None:
                continue
            if not self.table.evictable(key, obj):
                idle_since[key] = now  # busy by itself: look again later
                continue
            row = self.release(key, obj)
            if row is not None:
                asleep.append(row)
        if asleep:
            self.directory.asleep_many(asleep)
        if self.table.released - self._trimmed_at >= _TRIM_AFTER and not idle_since:
            # A burst of evictions is over: give the freed memory back to the OS, so
            # the host's size follows its live objects, not its busiest moment.
            self._trimmed_at = self.table.released
            _malloc_trim()

    def release(self, key: Key, obj: DurableObject) -> tuple[Key, float | None] | None:
        """Take ``obj`` out of memory; returns its directory row ``(key, wake_at)`` when
        the directory must learn of it (it was live, or must wake by itself)."""
        wake_at = self.table.release(key, obj)
        if wake_at is not None:
            self._wake_later(key, wake_at)
        if not (obj._dotdo_live or wake_at is not None):
            return None
        return key, wake_at

    def forget(self, key: Key) -> None:
        """Stop waking ``key`` by itself until its next call."""
        self._wake_at.pop(key, None)
        self.directory.asleep(key, None)


def _malloc_trim() -> None:
    """Return free heap pages to the OS (glibc only; elsewhere a no-op)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
