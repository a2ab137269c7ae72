"""Calls from one caller start in the order the caller made them.

Ray runs an asyncio actor's tasks out of order (2.60 refuses in-order execution for
async actors), so a host puts them back in order itself. Every caller numbers its
calls to each object 1, 2, 3, ... on its own *stream*; the host admits call ``n``
of a stream only after call ``n - 1`` has started.

Two cases have no predecessor to wait for, and are handled without blocking forever:

* A stream the host has not seen, whose first call is not number 1 (the host
  restarted, or forgot an idle stream): it waits ``settle`` seconds for stragglers,
  then starts from the lowest number that arrived.
* A gap that never fills (the missing call died with a previous incarnation of the
  host): after ``gap_timeout`` seconds the waiting calls go on, lowest first.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Hashable

__all__ = ["Sequencer"]


class _Stream:
    __slots__ = ("next", "busy", "waiting")

    def __init__(self, next_seq: int | None) -> None:
        self.next = next_seq  # None while settling
        self.busy = False  # call ``next`` admitted and not yet started
        self.waiting: dict[int, asyncio.Future] = {}


class Sequencer:
    """Admits each stream's calls in number order; see the module docstring."""

    def __init__(
        self, *, settle: float = 0.05, gap_timeout: float = 5.0, max_streams: int = 10_000
    ) -> None:
        self.settle = settle
        self.gap_timeout = gap_timeout
        self.max_streams = max_streams
        self._streams: OrderedDict[Hashable, _Stream] = OrderedDict()
        self.skipped = 0  # gaps given up on, for stats

    def arrive(self, stream: Hashable, seq: int) -> Awaitable[None] | None:
        """None if call ``seq`` may start now, else an awaitable to wait on first.

        Once admitted, the call must report :meth:`started` (also when it fails).
        """
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = _Stream(1 if seq == 1 else None)
            self._forget_idle()
            if st.next is None:
                asyncio.get_running_loop().call_later(self.settle, self._settled, stream)
        else:
            self._streams.move_to_end(stream)
        if st.next is not None:
            if seq < st.next:
                return None  # a straggler from before a skipped gap: run it now
            if seq == st.next and not st.busy:
                st.busy = True
                return None
        fut = asyncio.get_running_loop().create_future()
        st.waiting[seq] = fut
        return self._wait(st, fut)

    def started(self, stream: Hashable, seq: int) -> None:
        """Call ``seq`` has started: let the next one of its stream in."""
        st = self._streams.get(stream)
        if st is None or not st.busy or st.next != seq:
            return
        st.next, st.busy = seq + 1, False
        self._release(st)

    @staticmethod
    def _release(st: _Stream) -> None:
        fut = st.waiting.pop(st.next, None)
        if fut is not None:
            st.busy = True
            fut.set_result(None)

    async def _wait(self, st: _Stream, fut: asyncio.Future) -> None:
        while not fut.done():
            try:
                await asyncio.wait_for(asyncio.shield(fut), self.gap_timeout)
            except asyncio.TimeoutError:
                if not fut.done() and not st.busy and st.waiting:
                    # The gap will not fill: go on from the lowest waiting call.
                    self.skipped += 1
                    st.next = min(st.waiting)
                    self._release(st)

    def _settled(self, stream: Hashable) -> None:
        st = self._streams.get(stream)
        if st is not None and st.next is None:
            if st.waiting:
                st.next = min(st.waiting)
                self._release(st)
            else:
                del self._streams[stream]

    def _forget_idle(self) -> None:
        while len(self._streams) > self.max_streams:
            key, st = next(iter(self._streams.items()))
            if st.waiting or st.busy:
                self._streams.move_to_end(key)
                return
            del self._streams[key]
