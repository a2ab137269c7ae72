"""The ``$`` API: ``send``, ``try_`` and ``do``, acting for the current object.

Inside an object's method, handler or tick, they act for that object (found through
a context variable the host sets). In driver code they act for
``dotdo.App("default")``: ``send`` delivers the event there, and ``do`` keeps its
step journal there while running ``fn`` in the driver.

| | ``send`` | ``try_`` | ``do`` |
|---|---|---|---|
| retries | no | no | yes, ``max_retries`` more attempts |
| awaitable | no: returns None at once | yes | yes |
| raises | no: handler errors go to ``on_error`` | yes | yes, after the last attempt |
| timeout | no | ``timeout=`` seconds | no |
| replay-safe | no | no | yes, with ``step_id`` |
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, overload

from dotdo import codec, tracing
from dotdo.aio import call as _call
from dotdo.checks import is_real
from dotdo.clock import Clock
from dotdo.current import current_object
from dotdo.errors import EncodeError, ObjectError, TerminalError
from dotdo.events import check_event_type
from dotdo.jobs import StepJournal, running
from dotdo.object import lookup
from dotdo.promise import Promise
from dotdo.registry import APP_CLASS, DEFAULT_APP
from dotdo.retry import RetryPolicy
from dotdo.stub import Stub

if TYPE_CHECKING:
    from dotdo.object import DurableObject

__all__ = ["send", "send_once", "try_", "do", "use_clock"]

_DEFAULT_POLICY = RetryPolicy()
R = TypeVar("R")


def _default_app() -> Stub:
    """``App("default")``, which driver code's ``send`` and ``do`` act for (looked up
    by name: the App class is built on this module)."""
    cls = lookup(APP_CLASS)
    assert cls is not None, "dotdo.app defines App and dotdo imports it"
    return Stub(cls, DEFAULT_APP)


# -- send ---------------------------------------------------------------------------


def send(event_type: str, data: Any = None) -> None:
    """Fire and forget: log ``Noun.verb`` durably and return None at once.

    Every matching handler runs once, asynchronously, in the object (or, from driver
    code, in ``App("default")``); its errors go to ``on_error``, never to the sender.
    A bad type or data that does not encode raises here, and nothing is logged.
    """
    check_event_type(event_type)
    encoded = codec.encode(data)
    obj = current_object()
    if obj is not None:
        obj._dotdo_activity.emit(event_type, encoded)
        return None
    _default_app().emit(event_type, data)  # the call is sent; nobody waits
    return None


def send_once(event_type: str, data: Any, event_id: str) -> str | None:
    """``send`` with the sender's own ``event_id``, inside an object: returns None,
    and delivers nothing, if that id was sent here before (a forward repeated)."""
    check_event_type(event_type)
    if not isinstance(event_id, str) or not event_id:
        raise ValueError(f"an event id is a non-empty str, not {event_id!r}")
    obj = current_object()
    if obj is None:
        raise ObjectError("send_once acts for the current object: call it inside one")
    return obj._dotdo_activity.emit(event_type, codec.encode(data), event_id)


# -- try_ ---------------------------------------------------------------------------


# Typed from fn's result: awaiting gives what fn returns, awaited once if it is
# awaitable (an async function's coroutine, a promise), as aio.call does (Coroutine,
# not Awaitable, as for Stub.call). The arguments go unchecked: the keyword options
# between *args and **kwargs leave no room for a ParamSpec; pass a lambda or a
# functools.partial to have them checked.
@overload
async def try_(fn: Callable[..., Coroutine[Any, Any, R]], *args: Any,
               timeout: float | None = None, **kwargs: Any) -> R: ...
@overload
async def try_(fn: Callable[..., Promise[R]], *args: Any, timeout: float | None = None,
               **kwargs: Any) -> R: ...
@overload
async def try_(fn: Callable[..., R], *args: Any, timeout: float | None = None,
               **kwargs: Any) -> R: ...


async def try_(fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
    """One attempt at ``fn(*args, **kwargs)``: no retries, no journal; raises what it
    raises, or ``TimeoutError`` after ``timeout`` seconds. Awaiting it gives what
    ``fn`` returns (awaited, for an async ``fn``).

    With a timeout, a sync ``fn`` runs in a worker thread so that the timeout can
    fire (the thread is not interrupted); async functions are cancelled.
    """
    if timeout is None:
        return await _call(fn, *args, **kwargs)
    if not is_real(timeout) or timeout <= 0:
        raise ValueError(f"timeout is seconds > 0, got {timeout!r}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        if inspect.iscoroutinefunction(fn):
            return await asyncio.wait_for(fn(*args, **kwargs), timeout)
        result = await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout)
        if inspect.isawaitable(result):  # a lambda that returns a coroutine
            result = await asyncio.wait_for(result, max(deadline - loop.time(), 0.001))
        return result
    except TimeoutError:
        raise TimeoutError(f"try_ gave up after {timeout} s") from None


# -- do -----------------------------------------------------------------------------


class _ObjectJournal:
    """Steps of the current object, in its own SQLite file."""

    def __init__(self, obj: DurableObject) -> None:
        self._j = obj.storage.journal

    async def lookup(self, step_id: str) -> tuple[bool, Any]:
        return self._j.step(step_id)

    async def attempt(self, step_id: str, n: int, started: float, finished: float, error: str) -> None:
        self._j.record_attempt(step_id, n, started, finished, error)

    async def finish(self, step_id: str, encoded: bytes, n: int, started: float,
                     finished: float) -> tuple[bool, Any]:
        self._j.finish_step(step_id, encoded, n, started, finished)
        return False, None  # one do of a step at a time here (_turns): this one is first

    def abandon(self, step_id: str) -> None:
        pass


class _AppJournal:
    """Steps of driver code, journaled in ``App("default")``."""

    def __init__(self) -> None:
        self._app = _default_app()

    async def lookup(self, step_id: str) -> tuple[bool, Any]:
        return tuple(await self._app.step(step_id))

    async def attempt(self, step_id: str, n: int, started: float, finished: float, error: str) -> None:
        await self._app.step_attempt(step_id, n, started, finished, error)

    async def finish(self, step_id: str, encoded: bytes, n: int, started: float,
                     finished: float) -> tuple[bool, Any]:
        await self._app.step_finish(step_id, encoded, n, started, finished)
        return False, None

    def abandon(self, step_id: str) -> None:
        pass


def _journal(obj: DurableObject | None) -> StepJournal:
    """Where this ``do`` journals its step: in a job handler its queue (a step id
    names one step for the whole queue), in an object the object, in driver code
    the App."""
    run = running.get()
    steps = run.steps() if run is not None else None
    if steps is not None:
        return steps
    return _ObjectJournal(obj) if obj is not None else _AppJournal()


_driver_clock: contextvars.ContextVar[Clock | None] = contextvars.ContextVar(
    "dotdo_driver_clock", default=None
)


def use_clock(clock: Clock) -> contextvars.Token:
    """Make driver code's ``do`` read ``clock`` (a :class:`~dotdo.clock.FakeClock` in
    tests); objects read their host's clock."""
    return _driver_clock.set(clock)


def _clock() -> Clock:
    obj = current_object()
    activity = getattr(obj, "_dotdo_activity", None)
    if activity is not None:
        return activity.clock
    return _driver_clock.get() or Clock()


# Steps running now, by object: step id -> a future done when that ``do`` ends.
_driver_turns: dict[tuple[int, str], asyncio.Future] = {}


def _turns(obj: DurableObject | None, step_id: str) -> tuple[dict, Any]:
    if obj is not None:
        return obj.__dict__.setdefault("_dotdo_step_turns", {}), step_id
    # driver code: per event loop (a future belongs to one)
    return _driver_turns, (id(asyncio.get_running_loop()), step_id)


@overload
async def do(fn: Callable[..., Coroutine[Any, Any, R]], *args: Any, step_id: str | None = None,
             max_retries: int | None = None, backoff: float | None = None,
             max_backoff: float | None = None, jitter: bool | None = None,
             policy: RetryPolicy | None = None, **kwargs: Any) -> R: ...
@overload
async def do(fn: Callable[..., Promise[R]], *args: Any, step_id: str | None = None,
             max_retries: int | None = None, backoff: float | None = None,
             max_backoff: float | None = None, jitter: bool | None = None,
             policy: RetryPolicy | None = None, **kwargs: Any) -> R: ...
@overload
async def do(fn: Callable[..., R], *args: Any, step_id: str | None = None,
             max_retries: int | None = None, backoff: float | None = None,
             max_backoff: float | None = None, jitter: bool | None = None,
             policy: RetryPolicy | None = None, **kwargs: Any) -> R: ...


async def do(
    fn: Callable[..., Any],
    *args: Any,
    step_id: str | None = None,
    max_retries: int | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
    jitter: bool | None = None,
    policy: RetryPolicy | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``fn(*args, **kwargs)`` durably: retried with backoff (attempt 1 at once,
    then 1 s, 2 s, 4 s ... capped at 10 s; ``max_retries=3`` allows 4 attempts).

    ``raise TerminalError`` stops at once. After the last attempt the last exception
    is raised as itself, with ``.attempts`` set and a note. With ``step_id``, the
    first successful result is journaled (msgpack) before ``do`` returns, and every
    later ``do`` with that id returns it without calling ``fn``, also after a crash
    and restart; a ``do`` of a step that is running already waits for it. Every
    attempt is journaled with its time and error. Where a ``step_id`` counts: in an
    object, that object; in driver code, the App (``App("default")``); in a job
    handler, the job's queue, across its jobs and workers (``actors/steps.py``).
    Awaiting it gives what ``fn`` returns (awaited, for an async ``fn``).
    """
    if "timeout" in kwargs:
        raise TypeError("do() has no timeout: wrap the work in "
                        "try_(fn, timeout=...) inside the step, or pass fn a partial")
    base = policy or _DEFAULT_POLICY
    overrides = {k: v for k, v in (("max_retries", max_retries), ("backoff", backoff),
                                   ("max_backoff", max_backoff), ("jitter", jitter))
                 if v is not None}
    policy = RetryPolicy(**{**vars(base), **overrides}) if overrides else base
    if step_id is not None and (not isinstance(step_id, str) or not step_id):
        raise ValueError(f"step_id is a non-empty str, got {step_id!r}")
    obj = current_object()
    if step_id is None:
        return await _traced(fn, args, kwargs, policy, None, None)
    # One do of a step at a time: a second waits for the first, then finds its result
    # in the journal instead of running fn again.
    turns, key = _turns(obj, step_id)
    while (running := turns.get(key)) is not None:
        await asyncio.wait([running])
    turns[key] = ended = asyncio.get_running_loop().create_future()
    try:
        journal = _journal(obj)
        found, value = await journal.lookup(step_id)
        if found:
            tracing.step_span(step_id, replayed=True)
            return value
        try:
            return await _traced(fn, args, kwargs, policy, step_id, journal)
        except BaseException:
            journal.abandon(step_id)
            raise
    finally:
        del turns[key]
        ended.set_result(None)


async def _traced(fn: Callable[..., Any], args: tuple, kwargs: dict, policy: RetryPolicy,
                  step_id: str | None, journal: Any) -> Any:
    """:func:`_attempts` in a step's span (a child of the span it runs in, if traced)."""
    span = tracing.step_span(step_id or str(getattr(fn, "__name__", "do")), replayed=False)
    if span is None:
        return await _attempts(fn, args, kwargs, policy, step_id, journal)
    try:
        with tracing.activate(span):
            value = await _attempts(fn, args, kwargs, policy, step_id, journal)
    except BaseException as exc:
        tracing.end_call(span, exc)
        raise
    tracing.end_call(span)
    return value


async def _attempts(fn: Callable[..., Any], args: tuple, kwargs: dict, policy: RetryPolicy,
                    step_id: str | None, journal: Any) -> Any:
    """Call ``fn`` until it succeeds or the policy gives up, journaling each attempt."""
    clock = _clock()
    attempt = 0
    while True:
        attempt += 1
        started = clock.now()
        try:
            result = await _call(fn, *args, **kwargs)
            encoded = codec.encode(result) if journal is not None else b""
        except EncodeError as exc:
            exc.add_note(f"the step {step_id!r} ran, but its result cannot be journaled")
            raise
        except Exception as exc:
            if journal is not None:
                await journal.attempt(step_id, attempt, started, clock.now(), f"{type(exc).__name__}: {exc}")
            if isinstance(exc, TerminalError) or attempt > policy.max_retries:
                _attach_attempts(exc, attempt)
                raise
            await clock.sleep(policy.delay(attempt))
            continue
        if journal is not None:
            won, other = await journal.finish(step_id, encoded, attempt, started, clock.now())
            if won:  # another run of the step journaled its result first: that one counts
                return other
        return result


def _attach_attempts(exc: BaseException, attempts: int) -> None:
    try:
        exc.attempts = attempts  # type: ignore[attr-defined]
    except AttributeError:
        pass
    exc.add_note(f"dotdo.do: gave up after {attempts} attempt{'s' * (attempts != 1)}")
