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
caller's side; the caller lists it as *deferred* in its later calls (the lowest few
hundred numbers, saying when there are more: every number above the highest listed
is then taken as deferred), and tells the host to :meth:`~Sequencer.skip` it if one
of those arguments fails (Ray then never delivers the call). The host waits for a
deferred call as long as its caller keeps saying so, by a later call or a
:meth:`~Sequencer.keep` ping. A caller that died can no longer send the call, so
once ``deferred_timeout`` seconds pass without news, the gap is given up on like
any other: later calls go on, and the deferred call, should it come after all,
runs at once as a straggler.

A call leaves admission through :meth:`~Sequencer.leave`, whatever happened to it:
started, failed, or cancelled while waiting for its turn (then its number counts as
skipped). So no call, however it ends, holds up the calls after it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable

__all__ = ["Sequencer"]


class _Stream:
    __slots__ = ("next", "busy", "waiting", "skipped", "deferred", "deferred_above",
                 "deferred_from", "deferred_at")

    def __init__(self, next_seq: int | None) -> None:
        self.next = next_seq  # None while settling
        self.busy = False  # call ``next`` admitted and not yet started
        self.waiting: dict[int, asyncio.Future] = {}
        self.skipped: set[int] = set()  # calls that will never come
        self.deferred: frozenset[int] = frozenset()  # calls held back by their caller
        self.deferred_above = math.inf  # a cut list: every number above may be too
        self.deferred_from = 0  # the call (or ping) that said so: newer ones replace it
        self.deferred_at = -math.inf  # when the caller last said so


class Sequencer:
    """Admits each stream's calls in number order; see the module docstring."""

    def __init__(
        self, *, fresh: bool = False, settle: float = 0.5, gap_timeout: float = 5.0,
        deferred_timeout: float = 30.0, max_streams: int = 10_000,
        max_parked: int = 2_000_000, now: Callable[[], float] = time.monotonic,
    ) -> None:
        # A host's first life has seen every stream from its call 1: however late
        # call 1 arrives, it is coming. Only a restarted host (or one that forgot a
        # stream) must guess where a stream it meets mid-way starts.
        self.fresh = fresh
        self.settle = settle
        self.gap_timeout = gap_timeout
        self.deferred_timeout = deferred_timeout
        self.now = now
        self.max_streams = max_streams
        self.max_parked = max_parked
        self._streams: OrderedDict[Hashable, _Stream] = OrderedDict()
        self._parked: dict[Hashable, int] = {}  # insertion order = age
        self._forgot = False
        self.skipped = 0  # gaps given up on, for stats

    def _stream(self, stream: Hashable, seq: int) -> _Stream:
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = _Stream(self._start(stream, seq))
            self._parked.pop(stream, None)
            self._forget_idle()
            if st.next is None:
                asyncio.get_running_loop().call_later(self.settle, self._settled, stream)
        else:
            self._streams.move_to_end(stream)
        return st

    def arrive(
        self, stream: Hashable, seq: int, deferred: Iterable[int] | None = None,
        more: bool = False,
    ) -> Awaitable[None] | None:
        """None if call ``seq`` may start now, else an awaitable to wait on first.

        ``deferred`` lists earlier calls of the stream that their caller is still
        holding back (waiting for their arguments): gaps there are waited out while
        the caller keeps saying so. ``more``: the list was cut, and every number above
        its highest may be held back too. Whatever then happens to the call, admitted
        or not, it must report :meth:`leave` (in a ``finally``).
        """
        st = self._stream(stream, seq)
        if deferred is not None:
            self._defer(st, seq, deferred, more)
        if st.next is not None:
            if seq < st.next:
                return None  # a straggler from before a skipped gap: run it now
            if seq == st.next and not st.busy:
                st.busy = True
                return None
        fut = asyncio.get_running_loop().create_future()
        st.waiting[seq] = fut
        return self._wait(st, fut)

    def can_start(self, stream: Hashable, seq: int) -> bool:
        """Whether :meth:`arrive` would let call ``seq`` start at once (it changes
        nothing: the caller then calls ``arrive``)."""
        st = self._streams.get(stream)
        if st is None:
            start = self._start(stream, seq)
            return start is not None and seq <= start
        if st.next is None:
            return False
        return seq < st.next or (seq == st.next and not st.busy)

    def _start(self, stream: Hashable, seq: int) -> int | None:
        """Where a stream new here (met at call ``seq``) starts: where it was parked,
        at 1 if that is sure, else None (it settles first)."""
        known_start = seq == 1 or (self.fresh and not self._forgot)
        return self._parked.get(stream) or (1 if known_start else None)

    def leave(self, stream: Hashable, seq: int) -> None:
        """Call ``seq`` is past admission: started, failed or cancelled. An admitted
        call lets the next one in; one still waiting is forgotten and its number
        skipped, so that the calls after it are not held up."""
        st = self._streams.get(stream)
        if st is None:
            return
        fut = st.waiting.pop(seq, None)
        if fut is not None:
            fut.cancel()  # its caller is gone: nobody may admit it any more
            if st.next is None or seq >= st.next:
                st.skipped.add(seq)
        elif st.busy and st.next == seq:
            st.next, st.busy = seq + 1, False
        else:
            return  # a straggler, or left already
        self._advance(st)

    def skip(self, stream: Hashable, seq: int) -> None:
        """Call ``seq`` will never come (its caller knows it failed before sending)."""
        st = self._stream(stream, seq)
        if st.next is None or seq >= st.next:
            st.skipped.add(seq)
            self._advance(st)

    def keep(self, stream: Hashable, deferred: Iterable[int], upto: int) -> None:
        """The caller of ``stream`` is alive and still holds back calls ``deferred``
        (all of them, among its calls below ``upto``): keep waiting for them."""
        st = self._streams.get(stream)
        if st is not None:  # a stream with nothing here to hold up needs no news
            self._defer(st, upto, deferred, False)

    def position(self, stream: Hashable) -> int | None:
        """The number of the call ``stream`` admits next (None: unknown or settling):
        while it moves, the stream is making progress."""
        st = self._streams.get(stream)
        return None if st is None else st.next

    def waiting(self) -> int:
        """Calls waiting for their turn, over all streams (for stats)."""
        return sum(len(st.waiting) for st in self._streams.values())

    def _defer(self, st: _Stream, upto: int, deferred: Iterable[int], more: bool) -> None:
        if upto < st.deferred_from:
            return  # older news than what the stream has: Ray delivered it late
        st.deferred = frozenset(deferred)
        st.deferred_above = max(st.deferred) if more and st.deferred else math.inf
        st.deferred_from, st.deferred_at = upto, self.now()

    def _held_back(self, st: _Stream, seq: int | None) -> bool:
        """Whether call ``seq`` may still be held back by its live caller."""
        if seq is None or self.now() - st.deferred_at > self.deferred_timeout:
            return False  # no news for too long: the caller died, or forgot it
        return seq in st.deferred or seq > st.deferred_above

    def has_started(self, stream: Hashable, seq: int) -> bool:
        """Whether call ``seq`` of ``stream`` is known to have started already."""
        st = self._streams.get(stream)
        if st is None or st.next is None:
            return False
        return seq < st.next or (seq == st.next and st.busy)

    def started_all(self, stream: Hashable, upto: int) -> bool:
        """Whether every call of ``stream`` up to number ``upto`` is known to have
        started (here, or before the stream was parked): its caller may then drop the
        stream and start a new one, and none of these calls can be overtaken."""
        if self.has_started(stream, upto):
            return True
        parked = self._parked.get(stream)
        return parked is not None and upto < parked

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
        # asyncio.wait, not wait_for: wait_for (3.11) swallows a cancellation that
        # lands as ``fut`` completes, and the cancelled call would run after all.
        while not fut.done():
            await asyncio.wait((fut,), timeout=self.gap_timeout)
            if fut.done() or st.busy or not st.waiting or self._held_back(st, st.next):
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
