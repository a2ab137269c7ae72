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
* ``p.method(...)`` calls a method on the value once it exists (on a promised stub
  this calls that object), in a small Ray task, so it runs even if nobody awaits.
* A failed promise fails everything derived from it with the same exception.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import ray
from ray.exceptions import ActorDiedError, GetTimeoutError, RayTaskError

from dotdo import settings as _conf
from dotdo.errors import ObjectError

__all__ = ["Promise", "get", "follow", "pack_args", "unpack_args"]

Path = tuple[tuple[str, Any], ...]


# -- promises -----------------------------------------------------------------------


class Promise:
    """The future result of a call. Await it, or ``result()`` it in sync code."""

    __slots__ = ("_ref", "_path", "_projected")

    def __init__(self, ref: ray.ObjectRef, path: Path = ()) -> None:
        self._ref = ref
        self._path = path
        self._projected: ray.ObjectRef | None = None

    @property
    def ref(self) -> ray.ObjectRef:
        """A Ray ``ObjectRef`` of this promise's value, for any Ray API that takes one."""
        if not self._path:
            return self._ref
        if self._projected is None:
            self._projected = _project.remote(self._ref, self._path)
        return self._projected

    def __await__(self):
        return self._resolve().__await__()

    async def _resolve(self) -> Any:
        try:
            value = await self._ref
        except (RayTaskError, ActorDiedError) as exc:
            raise _raised(exc) from exc.__cause__
        return follow(value, self._path)

    def result(self, timeout: float | None = None) -> Any:
        """Block until the value exists and return it; ``TimeoutError`` after ``timeout`` s."""
        return get(self, timeout=timeout)

    def done(self) -> bool:
        """True once the call has finished, successfully or not."""
        ready, _ = ray.wait([self._ref], timeout=0)
        return bool(ready)

    def __getattr__(self, name: str) -> Promise:
        if name.startswith("_"):
            raise AttributeError(name)
        return Promise(self._ref, (*self._path, ("attr", name)))

    def __getitem__(self, key: Any) -> Promise:
        return Promise(self._ref, (*self._path, ("item", key)))

    def __call__(self, *args: Any, **kwargs: Any) -> Promise:
        path, name = self._path, None
        if path and path[-1][0] == "attr":
            path, name = path[:-1], path[-1][1]
        args, kwargs, deps = pack_args(args, kwargs)
        conf = _conf.current() or _conf.defaults()  # a promise exists: Ray is up
        return Promise(_call_on.remote(conf, self._ref, path, name, args, kwargs, *deps))

    def __reduce__(self):
        return (Promise, (self._ref, self._path))

    def __repr__(self) -> str:
        shown = "".join(f".{k}" if kind == "attr" else f"[{k!r}]" for kind, k in self._path)
        return f"<Promise {self._ref.hex()[:12]}{shown}>"

    def __bool__(self) -> bool:
        raise TypeError("a Promise has no truth value yet: await it or call .result() first")


def get(promises: Promise | Iterable[Promise], timeout: float | None = None) -> Any:
    """Resolve one promise or a list of them from sync code (``Promise.all`` for lists)."""
    single = isinstance(promises, (Promise, ray.ObjectRef))
    items = [promises] if single else list(promises)
    refs: list[Any] = [p._ref if isinstance(p, Promise) else p for p in items]
    try:
        values = ray.get(refs, timeout=timeout)
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
    return follow(value, path)


@ray.remote(num_cpus=0, max_retries=0)
def _call_on(conf, value, path, name, args, kwargs, *deps):
    _conf.use(conf)  # stubs called here must use the caller's storage root
    target = follow(value, path)
    args, kwargs = unpack_args(args, kwargs, deps)
    result = (getattr(target, name) if name is not None else target)(*args, **kwargs)
    if inspect.isawaitable(result) and not isinstance(result, Promise):
        result = asyncio.run(_await(result))
    return result.result() if isinstance(result, Promise) else result


async def _await(awaitable):
    return await awaitable


# -- arguments: promises travel as top-level Ray dependencies ------------------------


class _Dep:
    """Stands in an argument for ``deps[index]`` with ``path`` applied."""

    __slots__ = ("index", "path")

    def __init__(self, index: int, path: Path) -> None:
        self.index, self.path = index, path

    def __reduce__(self):
        return (_Dep, (self.index, self.path))


def _has_promise(obj: Any) -> bool:
    t = type(obj)
    if t is Promise or t is ray.ObjectRef:
        return True
    if t is list or t is tuple:
        return any(_has_promise(x) for x in obj)
    if t is dict:
        return any(_has_promise(x) for x in obj.values())
    return False


def _swap(obj: Any, deps: list) -> Any:
    t = type(obj)
    if t is Promise:
        deps.append(obj._ref)
        return _Dep(len(deps) - 1, obj._path)
    if t is ray.ObjectRef:
        deps.append(obj)
        return _Dep(len(deps) - 1, ())
    if t is list or t is tuple:
        return t(_swap(x, deps) for x in obj)
    if t is dict:
        return {k: _swap(v, deps) for k, v in obj.items()}
    return obj


def pack_args(args: tuple, kwargs: dict) -> tuple[tuple, dict, list]:
    """Move promises out of ``args``/``kwargs`` into a list of refs Ray resolves first."""
    if not (_has_promise(args) or _has_promise(kwargs)):
        return args, kwargs, []
    deps: list = []
    return _swap(args, deps), _swap(kwargs, deps), deps


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
