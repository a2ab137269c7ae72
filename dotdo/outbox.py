"""Adaptive call batching: calls to one host issued close together go as one Ray task.

Every process keeps one :class:`Outbox` per host it calls. A call goes to the host
at once, as a Ray task of its own, when nothing went to that host in the last
``HOLD`` seconds (a lone call: no timer, no added latency). A call issued within
``HOLD`` of the last send is *queued*; the queue goes out as one Ray task (the host's
``calls``, with ``num_returns`` = one ``ObjectRef`` per call) as soon as
anybody needs one of its results (an ``await``, ``dotdo.get``, ``promise.ref``, an
argument to another host), when it reaches ``MAX_BATCH`` calls, and otherwise
``HOLD`` after its first call was queued, by a flusher thread. So a loop issuing a
thousand calls sends a few tasks, not a thousand, and no call waits more than
``HOLD`` unless its caller is busy issuing more.

Each call keeps everything it has alone: its own ``ObjectRef`` and promise, its
own error (the host returns a failed call's error as Ray would have raised it, so
``ray.get``, ``await`` and dependent calls raise it for that call only), its order
(one queue per host, sent in order, numbered per caller as before), its
cancellation (:meth:`Outbox.cancel`), and a host that dies fails each call of a
batch in flight as it fails a single call. Calls with promise arguments from
other hosts go alone: Ray holds them back until those exist.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import ray
from ray import cloudpickle

from dotdo.promise import LocalRef, Slot
from dotdo.runtime import encodable

__all__ = ["Outbox", "HOLD", "MAX_BATCH", "check_encodable"]

HOLD = 0.001  # seconds a queued call waits at most while its caller issues no more
MAX_BATCH = 500  # calls in one task: bounds the task's arguments and replies
_log = logging.getLogger("dotdo")


class Outbox:
    """This process's calls to one host (a Ray actor handle, or the in-process host,
    which takes every call alone); see the module docstring."""

    __slots__ = ("handle", "batching", "lock", "queued", "last_sent", "__weakref__")

    def __init__(self, handle: Any, batching: bool = True) -> None:
        self.handle = handle
        self.batching = batching
        self.lock = threading.Lock()
        self.queued: list[tuple[list, Slot]] = []
        self.last_sent = -1.0

    def send(self, message: list, deps: list, batchable: bool) -> Any:
        """Send one call (``message`` a :class:`~dotdo.host.Call` as a list) or queue
        it; returns its ``ObjectRef`` or a :class:`Slot`. Raises ``TypeError`` if Ray
        cannot serialise it (at once, queued or not)."""
        with self.lock:
            now = time.monotonic()
            if not (self.batching and batchable) or (
                    not self.queued and now - self.last_sent >= HOLD):
                self._flush_locked()  # the calls before it go first
                ref = self.handle.call.remote(message, *deps)
                self.last_sent = now
                return ref
            check_encodable(message)
            slot = Slot(self)
            self.queued.append((message, slot))
            if len(self.queued) >= MAX_BATCH:
                self._flush_locked()
            elif len(self.queued) == 1:
                _flusher().due(self, now + HOLD)
            return slot

    def send_queued(self, slot: Slot, alone: bool) -> None:
        """Send the queue now: somebody needs ``slot`` 's ref (``alone``: that call in a
        task of its own, after the calls before it; the calls after it stay queued)."""
        with self.lock:
            if slot.ref is not None:
                return
            if not alone:
                self._flush_locked()
                return
            at = next(i for i, (_, s) in enumerate(self.queued) if s is slot)
            queued = self.queued
            for part in (queued[:at], queued[at:at + 1]):  # those before, then it alone
                self.queued = part
                self._flush_locked()
            later = self.queued = queued[at + 1:]
            if later:
                _flusher().due(self, time.monotonic() + HOLD)

    def cancel(self, ref: Any, stream: str, seq: int) -> None:
        """Cancel call ``seq`` of ``stream`` (whose result is ``ref``, or a Slot): a
        queued call is sent as cancelled (it never runs), a call in a task of its own
        is cancelled by ``ray.cancel``, one of a batch by its host."""
        if type(ref) is Slot:
            with self.lock:
                queued = next((m for m, s in self.queued if s is ref), None)
                if queued is not None:
                    queued[2] = None  # no method: the host skips its number, runs nothing
            if queued is not None:
                ref.real()
                return
            if ref.batched:
                self.handle.cancel_call.remote(stream, seq)
                return
            ref = ref.ref
        if type(ref) is LocalRef:
            ref.future().cancel()
        else:
            ray.cancel(ref)

    def flush(self) -> None:
        """Send whatever is queued (the flusher thread, at the deadline)."""
        with self.lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        batch = self.queued
        if not batch:
            return
        self.queued = []
        self.last_sent = time.monotonic()
        if len(batch) == 1:
            batch[0][1].ref = self.handle.call.remote(batch[0][0])
            return
        refs = self.handle.calls.options(num_returns=len(batch)).remote([m for m, _ in batch])
        for (_, slot), ref in zip(batch, refs):
            slot.ref, slot.batched = ref, True


def check_encodable(message: list) -> None:
    """Raise ``TypeError`` now if Ray could not send ``message``: a queued call is
    serialised later, with others, and must not fail them then. Only its arguments
    can fail (the rest is dotdo's own; its ``Local`` s hold refs, not for pickling here)."""
    arguments = [message[3], message[4]]  # Call.args, Call.kwargs
    if not encodable(arguments):
        try:
            cloudpickle.dumps(arguments)
        except Exception as exc:  # noqa: BLE001 - any pickling failure, as Ray says it
            raise TypeError(f"Could not serialize the argument: {exc}") from None


class _Flusher:
    """One thread per process sending queues whose first call has waited ``HOLD``."""

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[tuple[float, Outbox]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="dotdo-flush", daemon=True).start()

    def due(self, outbox: Outbox, when: float) -> None:
        self._inbox.put((when, outbox))

    def _run(self) -> None:
        waiting: list[tuple[float, Outbox]] = []
        while True:
            timeout = max(waiting[0][0] - time.monotonic(), 0.0) if waiting else None
            try:
                waiting.append(self._inbox.get(timeout=timeout))
                while True:
                    waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                pass
            waiting.sort(key=lambda entry: entry[0])
            now = time.monotonic()
            while waiting and waiting[0][0] <= now:
                _, outbox = waiting.pop(0)
                try:
                    outbox.flush()
                except Exception:  # noqa: BLE001 - Ray shut down: the calls fail on await
                    _log.debug("dotdo: cannot send queued calls", exc_info=True)


_the_flusher: _Flusher | None = None
_start_lock = threading.Lock()


def _flusher() -> _Flusher:
    global _the_flusher
    if _the_flusher is None:
        with _start_lock:
            if _the_flusher is None:
                _the_flusher = _Flusher()
    return _the_flusher
