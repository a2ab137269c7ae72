"""Calls from one caller start in the order the caller made them.

Ray runs an asyncio actor's tasks out of order (2.60 refuses in-order execution for
async actors), so a host puts them back in order itself. Every caller numbers its
calls to each object 1, 2, 3, ... on its own *stream*; the host admits call ``n``
of a stream only after call ``n - 1`` has started.

Two cases have no predecessor to wait for, and are handled without blocking forever:

* A stream a *restarted* host meets mid-way (its first call here is not number 1),
  or one it forgot: it waits ``settle`` seconds for stragglers, then
  starts from the lowest number that arrived. A host in its first life knows every
  stream starts at 1, and waits for call 1 however late it arrives.
* A gap that never fills (the missing call died with a previous incarnation of the
  host): after ``gap_timeout`` seconds the waiting calls go on, lowest first.

Idle streams beyond ``max_streams`` are *parked*: only their next number is kept
(a few hundred bytes, so a pooled host can remember the callers of 100,000 evicted
objects); a parked stream resumes exactly where it was. Beyond ``max_parked`` the
oldest are forgotten.

A call whose promise arguments are not ready yet is held back by Ray on the
caller's side; the caller lists it as *deferred* in its later calls, so the host
waits for it however long that takes, and tells the host to :meth:`~Sequencer.skip`
it if one of those arguments fails (Ray then never delivers the call).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Hashable, Iterable

__all__ = ["Sequencer"]


class _Stream:
    __slots__ = ("next", "busy", "waiting", "skipped", "deferred", "deferred_from")

    def __init__(self, next_seq: int | None) -> None:
        self.next = next_seq  # None while settling
        self.busy = False  # call ``next`` admitted and not yet started
        self.waiting: dict[int, asyncio.Future] = {}
        self.skipped: set[int] = set()  # calls that will never come
        self.deferred: frozenset[int] = frozenset()  # calls held back by their caller
        self.deferred_from = 0


class Sequencer:
    """Admits each stream's calls in number order; see the module docstring."""

    def __init__(
        self, *, fresh: bool = False, settle: float = 0.5, gap_timeout: float = 5.0,
        max_streams: int = 10_000, max_parked: int = 2_000_000,
    ) -> None:
        # A host's first life has seen every stream from its call 1: however late
        # call 1 arrives, it is coming. Only a restarted host (or one that forgot a
        # stream) must guess where a stream it meets mid-way starts.
        self.fresh = fresh
        self.settle = settle
        self.gap_timeout = gap_timeout
        self.max_streams = max_streams
        self.max_parked = max_parked
        self._streams: OrderedDict[Hashable, _Stream] = OrderedDict()
        self._parked: dict[Hashable, int] = {}  # insertion order = age
        self._forgot = False
        self.skipped = 0  # gaps given up on, for stats

    def _stream(self, stream: Hashable, seq: int) -> _Stream:
        st = self._streams.get(stream)
        if st is None:
            parked = self._parked.pop(stream, None)
            known_start = seq == 1 or (self.fresh and not self._forgot)
            st = self._streams[stream] = _Stream(parked or (1 if known_start else None))
            self._forget_idle()
            if st.next is None:
                asyncio.get_running_loop().call_later(self.settle, self._settled, stream)
        else:
            self._streams.move_to_end(stream)
        return st

    def arrive(
        self, stream: Hashable, seq: int, deferred: Iterable[int] | None = None
    ) -> Awaitable[None] | None:
        """None if call ``seq`` may start now, else an awaitable to wait on first.

        ``deferred`` lists earlier calls of the stream that their caller is still
        holding back (waiting for their arguments): gaps there are waited out, never
        skipped. Once admitted, the call must report :meth:`started` (also when it
        fails).
        """
        st = self._stream(stream, seq)
        if deferred is not None and seq > st.deferred_from:
            st.deferred, st.deferred_from = frozenset(deferred), seq
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
        self._advance(st)

    def skip(self, stream: Hashable, seq: int) -> None:
        """Call ``seq`` will never come (its caller knows it failed before sending)."""
        st = self._stream(stream, seq)
        if st.next is None or seq >= st.next:
            st.skipped.add(seq)
            self._advance(st)

    def has_started(self, stream: Hashable, seq: int) -> bool:
        """Whether call ``seq`` of ``stream`` is known to have started already."""
        st = self._streams.get(stream)
        if st is None or st.next is None:
            return False
        return seq < st.next or (seq == st.next and st.busy)

    @staticmethod
    def _advance(st: _Stream) -> None:
        while st.next is not None and not st.busy:
            if st.next in st.skipped:
                st.skipped.discard(st.next)
                st.next += 1
                continue
            fut = st.waiting.pop(st.next, None)
            if fut is not None:
                st.busy = True
                fut.set_result(None)
            return

    async def _wait(self, st: _Stream, fut: asyncio.Future) -> None:
        while not fut.done():
            try:
                await asyncio.wait_for(asyncio.shield(fut), self.gap_timeout)
            except asyncio.TimeoutError:
                if fut.done() or st.busy or not st.waiting or st.next in st.deferred:
                    continue
                # The gap will not fill: go on from the lowest waiting call.
                self.skipped += 1
                st.next = min(st.waiting)
                self._advance(st)

    def _settled(self, stream: Hashable) -> None:
        st = self._streams.get(stream)
        if st is not None and st.next is None:
            if st.waiting or st.skipped:
                st.next = min(st.waiting.keys() | st.skipped)
                self._advance(st)
            else:
                del self._streams[stream]

    def _forget_idle(self) -> None:
        while len(self._streams) > self.max_streams:
            key, st = next(iter(self._streams.items()))
            if st.waiting or st.busy or st.next is None:
                self._streams.move_to_end(key)
                return
            del self._streams[key]
            if st.skipped:  # rare: cannot be told in one number; settle if it returns
                self._forgot = True
                continue
            self._parked[key] = st.next
            while len(self._parked) > self.max_parked:
                del self._parked[next(iter(self._parked))]
                self._forgot = True
