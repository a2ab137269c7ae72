"""Promises: the results of calls, and how they pipeline without waiting.

``stub.incr(2)`` submits the call at once and returns a :class:`Promise` over the
Ray ``ObjectRef`` of its result (see :mod:`dotdo.stub`).

Pipelining rules, all without a round trip to the caller:

* ``p.attr`` and ``p["key"]`` are *projections*: new promises over the same
  ``ObjectRef`` plus a path, applied wherever the value is finally read. So
  ``await dotdo.Queue(q).get_metrics().pending`` is one actor call.
* A promise (or a raw ``ObjectRef``) anywhere in the arguments of another call is
  sent as a top-level Ray dependency: Ray's core (C++, on the caller's side) pushes
  the call as soon as the value exists, and the receiving host applies the
  projection. The caller never blocks, and no Python runs in between.
* A promise argument made by a call to the *same host* as the call it goes to is
  not waited for at all: the call goes at once, naming the call that makes the
  value (:class:`Local`), and the host hands the value over itself when that call
  ends. A chain across objects of one pooled host needs no round trip per hop.
* ``p.method(...)`` calls a method on the value once it exists (on a promised stub
  this calls that object), in a small Ray task, so it runs even if nobody awaits.
* A failed promise fails everything derived from it with the same exception.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
import time
from collections.abc import Coroutine, Generator, Iterable, Mapping
from typing import Any, Generic, TypeVar, overload

import ray
from ray.exceptions import ActorDiedError, GetTimeoutError, OwnerDiedError, RayTaskError

from dotdo import settings as _conf
from dotdo.errors import ObjectError

__all__ = ["Promise", "LocalRef", "Slot", "Local", "Later", "settled", "get", "follow",
           "pack_args", "unpack_args", "SCALARS"]

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T_co = TypeVar("T_co", covariant=True)

Path = tuple[tuple[str, Any], ...]
# Values that hold no promise and that Ray always serialises.
SCALARS = frozenset((str, int, float, bool, bytes, type(None)))


# -- the results of calls run in this process -------------------------------------------


class LocalRef:
    """The result of a call run in this process (in-process hosting): what a Ray
    ``ObjectRef`` is for a call run by a Ray actor. ``future()`` gives it as a
    ``concurrent.futures.Future``; awaiting it works on any event loop."""

    __slots__ = ("_future", "_loop")

    def __init__(self, future: concurrent.futures.Future, loop: asyncio.AbstractEventLoop) -> None:
        self._future = future
        self._loop = loop

    @classmethod
    def spawn(cls, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> LocalRef:
        """Run ``coro`` on ``loop`` (from any thread, as nobody's code: no current
        object) and return its result to come."""
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, loop)
        return cls(future, loop)

    def future(self) -> concurrent.futures.Future:
        """The result as a ``concurrent.futures.Future``."""
        return self._future

    def hex(self) -> str:
        """An identifier for display, as ``ObjectRef.hex()``."""
        return f"{id(self._future):016x}"

    def _on_completed(self, callback: Any) -> None:
        """Call ``callback`` with the value, or the exception, once there is one (as
        Ray's ``ObjectRef._on_completed``)."""
        def done(future: concurrent.futures.Future) -> None:
            error = future.exception()
            callback(error if error is not None else future.result())

        self._future.add_done_callback(done)

    def __await__(self):
        return asyncio.wrap_future(self._future).__await__()

    def value(self, timeout: float | None) -> Any:
        """Block until the result exists (never on the loop that makes it)."""
        if not self._future.done() and _on_loop(self._loop):
            raise ObjectError(
                "Promise.result() would wait for the event loop it blocks: inside an "
                "object, `await` the promise instead"
            )
        return self._future.result(timeout)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    # asyncio keeps the running thread's id privately; absent, the loop is not running.
    return getattr(loop, "_thread_id", None) == threading.get_ident()


class Slot:
    """The result of a call still queued to go to its host with others in one Ray
    task (see :mod:`dotdo.outbox`): its ``ObjectRef`` once sent. Whoever needs the
    ref sends the queue at once (:meth:`real`)."""

    __slots__ = ("ref", "outbox", "batched")

    def __init__(self, outbox: Any) -> None:
        self.ref: Any = None
        self.outbox = outbox  # has send_queued(slot, alone)
        self.batched = False  # sent with other calls in one task

    def real(self, alone: bool = False) -> Any:
        """The call's ``ObjectRef``, sending it now if it is still queued (``alone``:
        in a Ray task of its own, so that ``ray.cancel`` of it cancels it alone)."""
        if self.ref is None:
            self.outbox.send_queued(self, alone)
            if self.ref is None:  # its batch could not be sent
                raise ObjectError("this call could not be sent to its host (Ray shut down "
                                  "while it was queued): call again")
        return self.ref


class Later:
    """What a batched call returns when its batch went back before it ended (so that
    the batch's quick calls are not held up by a slow one): the ``ObjectRef`` of
    its outcome, to come from its host. Readers of values see through it."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def __reduce__(self):
        return (Later, (self.ref,))


async def settled(value: Any) -> Any:
    """``value``, or what it stands for if it is a :class:`Later`."""
    if type(value) is not Later:
        return value
    try:
        return await value.ref
    except OwnerDiedError as exc:
        raise _host_died(exc) from exc


def _settled_now(value: Any) -> Any:
    if type(value) is not Later:
        return value
    try:
        return ray.get(value.ref)
    except OwnerDiedError as exc:
        raise _host_died(exc) from exc


def _host_died(exc: OwnerDiedError) -> ActorDiedError:
    """A call that outlasted its batch whose host died: as for a call sent alone."""
    error = ActorDiedError()
    error.__cause__ = exc
    return error


Ref = Any  # a Ray ObjectRef, a LocalRef, or a Slot


def _real(ref: Ref) -> Any:
    return ref.real() if type(ref) is Slot else ref


# -- promises -----------------------------------------------------------------------


class Promise(Generic[T_co]):
    """The future result of a call. Await it, or ``result()`` it in sync code.

    ``Promise[int]`` is the promise of an ``int`` (``stub.call(Account.deposit, 10)``
    gives one); projections and calls on it (``p.x``, ``p["k"]``, ``p.m()``) are
    ``Promise[Any]``."""

    __slots__ = ("_ref", "_path", "_projected", "_origin")

    def __init__(self, ref: Ref, path: Path = (), origin: Origin | None = None) -> None:
        self._ref = ref
        self._path = path
        self._projected: Ref | None = None
        # (outbox of the host, stream, seq) of the call that makes the value: a call
        # to that same host takes it there (see Local).
        self._origin = origin

    @property
    def ref(self) -> Ref:
        """A Ray ``ObjectRef`` of this promise's value, for any Ray API that takes one
        (in-process hosting: a :class:`LocalRef`). Taking it sends a still-queued call
        in a Ray task of its own, so ``ray.cancel(promise.ref)`` cancels that call alone;
        for a call already sent with others it is the ref of a small task that reads the
        call's value (cancel such a call with :meth:`cancel`)."""
        ref = self._ref.real(alone=True) if type(self._ref) is Slot else self._ref
        if not self._path and not (type(self._ref) is Slot and self._ref.batched):
            return ref
        if self._projected is None:
            if type(ref) is LocalRef:
                self._projected = LocalRef.spawn(ref._loop, _project_local(ref, self._path))
            else:
                self._projected = _project.remote(ref, self._path)
        return self._projected

    def __await__(self) -> Generator[Any, None, T_co]:
        return self._resolve().__await__()

    async def _resolve(self) -> T_co:
        try:
            value = await settled(await _real(self._ref))
        except (RayTaskError, ActorDiedError) as exc:
            raise _raised(exc) from exc.__cause__
        return follow(value, self._path)

    def result(self, timeout: float | None = None) -> T_co:
        """Block until the value exists and return it; ``TimeoutError`` after ``timeout`` s."""
        return get(self, timeout=timeout)

    def done(self) -> bool:
        """True once the call has finished, successfully or not."""
        ref = _real(self._ref)
        if type(ref) is LocalRef:
            return ref._future.done()
        ready, _ = ray.wait([ref], timeout=0)
        if ready and type(self._ref) is Slot and self._ref.batched:
            try:
                value = ray.get(ref)
            except Exception:  # noqa: BLE001 - it failed: it is done
                return True
            if type(value) is Later:  # it outlasted its batch
                ready, _ = ray.wait([value.ref], timeout=0)
        return bool(ready)

    def cancel(self) -> None:
        """Cancel the call, as ``ray.cancel`` cancels a Ray task: a call that has not
        started never runs, a running async method gets ``CancelledError``; awaiting
        the promise then raises ``TaskCancelledError``. Calls sent together with it
        go on."""
        origin = self._origin
        if origin is not None:
            origin[0].cancel(self._ref, origin[1], origin[2])
        elif type(self._ref) is LocalRef:
            self._ref.future().cancel()
        else:
            ray.cancel(_real(self._ref))

    def __getattr__(self, name: str) -> Promise[Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return Promise(self._ref, (*self._path, ("attr", name)), self._origin)

    def __getitem__(self, key: Any) -> Promise[Any]:
        return Promise(self._ref, (*self._path, ("item", key)), self._origin)

    def __call__(self, *args: Any, **kwargs: Any) -> Promise[Any]:
        path, name = self._path, None
        if path and path[-1][0] == "attr":
            path, name = path[:-1], path[-1][1]
        args, kwargs, deps, _ = pack_args(args, kwargs)
        ref = _real(self._ref)
        if type(ref) is LocalRef:
            return Promise(LocalRef.spawn(ref._loop, _call_on_local(
                ref, path, name, args, kwargs, deps)))
        conf = _conf.current() or _conf.defaults()  # a promise exists: Ray is up
        return Promise(_call_on.remote(conf, ref, path, name, args, kwargs, *deps))

    def __reduce__(self):
        return (Promise, (_real(self._ref), self._path))

    def __repr__(self) -> str:
        shown = "".join(f".{k}" if kind == "attr" else f"[{k!r}]" for kind, k in self._path)
        ref = self._ref
        name = "(queued)" if type(ref) is Slot and ref.ref is None else _real(ref).hex()[:12]
        return f"<Promise {name}{shown}>"

    def __bool__(self) -> bool:
        raise TypeError("a Promise has no truth value yet: await it or call .result() first")


@overload
def get(promises: Promise[T] | ray.ObjectRef[T], timeout: float | None = None) -> T: ...
@overload
def get(promises: tuple[Promise[T1], Promise[T2]], timeout: float | None = None
        ) -> list[T1 | T2]: ...
@overload
def get(promises: tuple[Promise[T1], Promise[T2], Promise[T3]], timeout: float | None = None
        ) -> list[T1 | T2 | T3]: ...
@overload
def get(promises: Iterable[Promise[T] | ray.ObjectRef[T]], timeout: float | None = None
        ) -> list[T]: ...


def get(promises: Any, timeout: float | None = None) -> Any:
    """Resolve one promise or a list of them from sync code (``Promise.all`` for lists).

    One promise gives its value; a list or tuple of them gives a list of their values
    in order (a tuple of promises of different types: a list of any of those types)."""
    single = isinstance(promises, (Promise, ray.ObjectRef, LocalRef))
    items = [promises] if single else list(promises)
    refs: list[Any] = [_real(p._ref) if isinstance(p, Promise) else p for p in items]
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        if refs and all(type(r) is LocalRef for r in refs):
            values = _get_local(refs, timeout)
        else:
            values = ray.get(refs, timeout=timeout)
            later = [i for i, v in enumerate(values) if type(v) is Later]
            if later:  # calls that outlasted their batch: their outcomes come apart
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                try:
                    outcomes = ray.get([values[i].ref for i in later], timeout=left)
                except OwnerDiedError as exc:
                    raise _host_died(exc) from exc
                for i, value in zip(later, outcomes):
                    values[i] = value
    except (RayTaskError, ActorDiedError) as exc:
        raise _raised(exc) from exc.__cause__
    except GetTimeoutError:
        raise TimeoutError(f"not resolved within {timeout} s") from None
    out = [follow(v, p._path) if isinstance(p, Promise) else v for v, p in zip(values, items)]
    return out[0] if single else out


def _raised(exc: RayTaskError | ActorDiedError) -> BaseException:
    """What a caller should see for an error Ray reports."""
    if isinstance(exc, ActorDiedError):
        if "creation task" not in str(exc):
            return exc  # a crash mid-call: the object restarts, the call is lost
        # The host could not even start: say why, and what usually fixes it.
        reason = next(
            (line.strip() for line in reversed(str(exc).splitlines()) if "Error" in line),
            str(exc).splitlines()[0],
        )
        error = ObjectError(
            f"the host of this object could not start: {reason}. Ray workers import "
            "durable object classes by module name, so define the class in a module "
            "every worker can import (run from the project root, install the package, "
            "or pass runtime_env= to dotdo.init), or in the script you run."
        )
        error.__cause__ = exc
        return error
    return _cause(exc)


def _cause(exc: RayTaskError) -> BaseException:
    """The user's own exception out of Ray's wrapper, remote traceback as a note."""
    cause = exc.cause if isinstance(exc.cause, BaseException) else exc
    note = f"raised remotely, traceback:\n{getattr(exc, 'traceback_str', exc)}"
    if cause is not exc and note not in getattr(cause, "__notes__", ()):
        cause.add_note(note)
    return cause


def follow(value: Any, path: Path) -> Any:
    """Apply a projection path; on a mapping ``.name`` reads the key ``"name"``."""
    for kind, key in path:
        if kind == "item" or (isinstance(value, Mapping) and key in value):
            value = value[key]
        else:
            value = getattr(value, key)
    return value


@ray.remote(num_cpus=0, max_retries=0)
def _project(value: Any, path: Path) -> Any:
    return follow(_settled_now(value), path)


def _get_local(refs: list[LocalRef], timeout: float | None) -> list[Any]:
    """The values of calls run in this process, waiting at most ``timeout`` in all."""
    deadline = None if timeout is None else time.monotonic() + timeout
    values = []
    for ref in refs:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            values.append(ref.value(left))
        except TimeoutError:
            if ref.future().done():
                raise  # the call itself raised it
            raise TimeoutError(f"not resolved within {timeout} s") from None
    return values


async def _project_local(ref: LocalRef, path: Path) -> Any:
    return follow(await ref, path)


async def _call_on_local(ref: LocalRef, path: Path, name: str | None, args: Any, kwargs: dict,
                         deps: list) -> Any:
    """``Promise.__call__`` in this process: call on the value once it exists."""
    result = _invoke(await ref, path, name, args, kwargs, [await dep for dep in deps])
    while inspect.isawaitable(result):
        result = await result
    return result


@ray.remote(num_cpus=0, max_retries=0)
def _call_on(conf, value, path, name, args, kwargs, *deps):
    _conf.use(conf)  # stubs called here must use the caller's storage root
    result = _invoke(_settled_now(value), path, name, args, kwargs,
                     [_settled_now(dep) for dep in deps])
    if inspect.isawaitable(result) and not isinstance(result, Promise):
        result = asyncio.run(_await(result))
    return result.result() if isinstance(result, Promise) else result


async def _await(awaitable):
    return await awaitable


def _invoke(value: Any, path: Path, name: str | None, args: Any, kwargs: dict,
            deps: tuple | list) -> Any:
    """``Promise.__call__``'s call, once the value and the arguments exist: method
    ``name`` of the projected value (or the value itself, called)."""
    target = follow(value, path)
    args, kwargs = unpack_args(args, kwargs, deps)
    return (getattr(target, name) if name is not None else target)(*args, **kwargs)


# -- arguments: promises travel as top-level Ray dependencies ------------------------


class _Dep:
    """Stands in an argument for ``deps[index]`` with ``path`` applied."""

    __slots__ = ("index", "path")

    def __init__(self, index: int, path: Path) -> None:
        self.index, self.path = index, path

    def __reduce__(self):
        return (_Dep, (self.index, self.path))


class Local:
    """A promise argument made by call ``seq`` of ``stream`` on the host the call goes
    to: the host takes the value there. ``source`` is that call's ref (or
    :class:`Slot`), sent along for when the host has not seen the call (it went to a
    previous incarnation of the host): the host then waits for the caller's copy."""

    __slots__ = ("stream", "seq", "source")

    def __init__(self, stream: str, seq: int, source: Any) -> None:
        self.stream, self.seq, self.source = stream, seq, source

    def __reduce__(self):
        source = self.source
        if type(source) is Slot:
            source = source.ref  # None: queued with the call that takes it, in one task
        return (Local, (self.stream, self.seq, source))


Origin = tuple[Any, str, int]  # (outbox of the host, stream, seq) of a call


def _has_promise(obj: Any) -> bool:
    # Loops, not any() over generators: this runs on every call.
    t = type(obj)
    if t is Promise or t is ray.ObjectRef or t is LocalRef:
        return True
    if t is list or t is tuple:
        for x in obj:
            if type(x) not in SCALARS and _has_promise(x):
                return True
        return False
    if t is dict:
        for x in obj.values():
            if type(x) not in SCALARS and _has_promise(x):
                return True
        return False
    return False



def _swap(obj: Any, deps: list, here: Any, local: list, marks: list) -> Any:
    t = type(obj)
    if t is Promise:
        origin = obj._origin
        if here is not None and origin is not None and origin[0] is here:
            local.append(Local(origin[1], origin[2], obj._ref))
            marks.append(_Dep(len(local) - 1, obj._path))
            return marks[-1]
        deps.append(_real(obj._ref))
        return _Dep(len(deps) - 1, obj._path)
    if t is ray.ObjectRef or t is LocalRef:
        deps.append(obj)
        return _Dep(len(deps) - 1, ())
    if t is list or t is tuple:
        return t(_swap(x, deps, here, local, marks) for x in obj)
    if t is dict:
        return {k: _swap(v, deps, here, local, marks) for k, v in obj.items()}
    return obj


def pack_args(args: tuple, kwargs: dict, here: Any = None
              ) -> tuple[tuple, dict, list, list[Local]]:
    """Move promises out of ``args``/``kwargs``: into a list of refs Ray resolves
    first, or, for promises made on the host the call goes to (its outbox ``here``),
    into a list of :class:`Local` s that host resolves. The receiver sees the values
    as ``deps`` followed by the local values (:func:`unpack_args`)."""
    if not (_has_promise(args) or _has_promise(kwargs)):
        return args, kwargs, [], []
    deps: list = []
    local: list[Local] = []
    marks: list[_Dep] = []
    args, kwargs = _swap(args, deps, here, local, marks), _swap(kwargs, deps, here, local, marks)
    for mark in marks:  # local values come after the Ray dependencies
        mark.index += len(deps)
    return args, kwargs, deps, local


def _fill(obj: Any, deps: tuple | list) -> Any:
    t = type(obj)
    if t is _Dep:
        return follow(deps[obj.index], obj.path)
    if t is list or t is tuple:
        return t(_fill(x, deps) for x in obj)
    if t is dict:
        return {k: _fill(v, deps) for k, v in obj.items()}
    return obj


def unpack_args(args: Any, kwargs: dict, deps: tuple | list) -> tuple[Any, dict]:
    """The receiving side of :func:`pack_args`: put the resolved values back."""
    if not deps:
        return args, kwargs
    return _fill(args, deps), _fill(kwargs, deps)
