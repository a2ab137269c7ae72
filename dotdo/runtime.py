"""The Ray side: starting or joining Ray, and the host actor that runs objects.

A *host* is a Ray actor; an *object* is a ``DurableObject`` instance living in a
host, keyed by ``(class name, id)``. Today every object gets a dedicated host, the
detached actor ``"<Class>/<id>"`` in namespace ``dotdo`` (get-if-exists, restarted
without limit); the host itself already keeps a table of objects so that pooled
hosting can put many objects in one actor.

A host is an asyncio actor: calls to one object run on one event loop, one at a
time, interleaving only at ``await``, as in Durable Objects. Ray starts an async
actor's tasks out of order, so each caller numbers its calls and the host's
:class:`~dotdo.sequencer.Sequencer` starts them in that order. A host is restarted
by Ray after a crash and rebuilds each object from its SQLite file on the next call.

Promise arguments travel as top-level Ray dependencies, so Ray's core pushes a call
the moment its arguments exist. When an argument fails, Ray fails the call without
delivering it; the caller notices (a callback on the argument) and tells the host
to skip that call's number, so the calls after it are not held up.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import threading
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from dotdo import registry
from dotdo.background import Activity
from dotdo.clock import Clock
from dotdo.context import _current, current_object
from dotdo.errors import ConfigError, EncodeError, MethodNotFoundError, ObjectError
from dotdo.ids import actor_name, storage_path
from dotdo.journal import Storage
from dotdo.object import DurableObject, lookup, public_methods
from dotdo.sequencer import Sequencer
from dotdo.stub import Promise, Stub, unpack_args

__all__ = ["init", "shutdown", "deploy", "submit", "Settings", "settings", "current_object"]

DEFAULT_NAMESPACE = "dotdo"
# Enough concurrent calls that a slow call never holds up the rest of the host.
_HOST_CONCURRENCY = 1000


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where objects keep their files and which Ray namespace holds their actors."""

    storage: str
    namespace: str = DEFAULT_NAMESPACE


_settings: Settings | None = None


class _Line:
    """This process's numbered stream of calls to one host (see the sequencer)."""

    __slots__ = ("key", "handle", "token", "next", "lock", "deferred")

    def __init__(self, key: tuple[str, str], handle: Any) -> None:
        self.key = key
        self.handle = handle
        self.token = uuid.uuid4().hex
        self.next = 1
        self.lock = threading.Lock()
        # Calls Ray holds back until their promise arguments exist: number -> how
        # many of those arguments are still pending.
        self.deferred: dict[int, int] = {}


_handles: dict[str, _Line] = {}
_notifier: ThreadPoolExecutor | None = None


def _default_storage() -> str:
    return os.path.abspath(os.environ.get("DOTDO_STORAGE") or ".dotdo")


def _default_namespace() -> str:
    return os.environ.get("DOTDO_NAMESPACE") or DEFAULT_NAMESPACE


def init(
    address: str | None = None,
    *,
    storage: str | None = None,
    namespace: str | None = None,
    **ray_kwargs: Any,
) -> Settings:
    """Start or join Ray and choose where objects store their files.

    With no ``address`` and no Ray running, a local Ray starts (dashboard off); with
    ``address="auto"``, ``"host:port"`` or ``"ray://..."`` this driver joins that
    cluster. ``storage`` defaults to ``$DOTDO_STORAGE`` or ``./.dotdo``; on a cluster it
    must be a path every node sees. ``namespace`` (default ``$DOTDO_NAMESPACE`` or
    ``"dotdo"``) is the Ray namespace of the objects' actors: objects of the same
    class and id in two namespaces are two objects. Extra keyword arguments go to
    ``ray.init``.
    Calling it is optional: the first call on a stub does it with the defaults.
    """
    global _settings
    namespace = _default_namespace() if namespace is None else namespace
    if not namespace or not isinstance(namespace, str):
        raise ConfigError(f"namespace must be a non-empty str, got {namespace!r}")
    wanted = Settings(os.path.abspath(storage) if storage else _default_storage(), namespace)
    if ray.is_initialized():
        if ray._private.worker.global_worker.mode != ray.SCRIPT_MODE:
            raise ConfigError(
                "dotdo.init() ran inside a Ray worker: a module with handlers was imported "
                "there (by an App or a Worker) and its driver code ran too. Put driver "
                "code under `if __name__ == \"__main__\":`."
            )
        if address is not None and _settings is not None:
            raise ConfigError(
                "Ray is already initialised in this process: call dotdo.shutdown() "
                "before dotdo.init(address=...) to join another cluster"
            )
    else:
        if address not in (None, "local") or (address is None and os.environ.get("RAY_ADDRESS")):
            _use_auth_token_if_present()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray_kwargs.setdefault("include_dashboard", False)
        ray_kwargs.setdefault("logging_level", "warning")
        ray.init(address=address, **ray_kwargs)
        _handles.clear()
    os.makedirs(wanted.storage, exist_ok=True)
    if wanted != _settings:
        registry.ship_again()  # this cluster's or storage's Apps know nothing yet
    _settings = wanted
    return wanted


def pickle_by_value(module: Any) -> None:
    """Have Ray send the classes and functions of ``module`` by value (for modules no
    other process can import, like a script an App loaded from its file)."""
    ray.cloudpickle.register_pickle_by_value(module)


def _use_auth_token_if_present() -> None:
    """A driver joining a token-protected cluster must present the token, or Ray
    refuses it with ``InvalidAuthToken``; Ray only does this by itself for clusters
    it starts. Ray caches ``RAY_AUTH_MODE`` at import, so use its own switch."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication import authentication_token_setup as auth
    except ImportError:  # a Ray without token authentication
        return
    auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def shutdown() -> None:
    """Disconnect from Ray (stopping it if this process started it). Objects'
    files stay; the next call starts or joins Ray again."""
    global _settings
    _handles.clear()
    _settings = None
    if ray.is_initialized():
        ray.shutdown()


def settings() -> Settings:
    """The settings in force, initialising with the defaults if needed."""
    if _settings is None or not ray.is_initialized():
        if ray.is_initialized() and ray._private.worker.global_worker.mode != ray.SCRIPT_MODE:
            # A Ray task or actor of the user's calling a stub: Ray is up already.
            adopt(Settings(_default_storage(), _default_namespace()))
        else:
            init()
    assert _settings is not None
    return _settings


def adopt(conf: Settings) -> None:
    """Use ``conf`` in this Ray worker, as the driver that sent work here does."""
    global _settings
    _settings = conf


def _line(cls: type[DurableObject], object_id: str) -> _Line:
    name = actor_name(cls.__name__, object_id)
    line = _handles.get(name)
    if line is None:
        conf = settings()
        handle = _Host.options(
            name=name,
            namespace=conf.namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=0,
            num_cpus=0,
            max_concurrency=_HOST_CONCURRENCY,
        ).remote({cls.__name__: cls}, conf, (cls.__name__, object_id))
        line = _handles[name] = _Line((cls.__name__, object_id), handle)
    return line


def submit(
    cls: type[DurableObject], object_id: str, method: str, args: tuple, kwargs: dict, deps: list
) -> ray.ObjectRef:
    """Send one call to an object's host (arguments as :func:`~dotdo.stub.pack_args`
    leaves them); returns the ``ObjectRef`` of its result."""
    if not ray.is_initialized():
        _handles.clear()
    if registry.unshipped() and any(registry.unshipped().values()):
        _ship_registrations()
    line = _line(cls, object_id)
    with line.lock:  # a number is used only by a call that was really sent
        seq = line.next
        # One argument of lists, dicts and scalars, plus the dependencies: Ray
        # serialises each argument on its own, and those types through msgpack,
        # cheaper than the pickle it falls back to for tuples.
        message = [cls.__name__, object_id, method, list(args), kwargs,
                   list(line.deferred) or None, line.token, seq]
        try:
            ref = line.handle.call.remote(message, *deps)
        except TypeError as exc:  # Ray could not pickle an argument
            first = str(exc).splitlines()[0]
            raise EncodeError(
                f"cannot send the arguments of {cls.__name__}.{method}(): {first}"
            ) from None
        line.next = seq + 1
        if deps:
            line.deferred[seq] = len(deps)
    for dep in deps:
        dep._on_completed(lambda value, line=line, seq=seq: _dep_done(line, seq, value))
    return ref


def _ship_registrations() -> None:
    """Tell each App which modules registered its handlers, before any other call,
    so that the App's own process imports them (drivers only)."""
    settings()
    if ray._private.worker.global_worker.mode != ray.SCRIPT_MODE:
        registry.unshipped().clear()  # inside a host: module handlers live in its App
        return
    from dotdo.app import App

    for app, specs in list(registry.unshipped().items()):
        if specs:
            batch = set(specs)
            registry.mark_shipped(app, batch)
            Stub(App, app).adopt(sorted(list(s) for s in batch))


def deploy(app: str = registry.DEFAULT_APP) -> list:
    """Ship this driver's module-level handlers and schedules to ``App(app)`` and
    wait until it runs them; from then on they run with no driver attached."""
    from dotdo.app import App

    return Stub(App, app).adopt([]).result()


def _dep_done(line: _Line, seq: int, value: Any) -> None:
    """A promise argument of call ``seq`` exists; if it failed, Ray will fail the call
    without delivering it, so tell the host to skip that number."""
    failed = isinstance(value, BaseException)
    with line.lock:
        left = line.deferred.get(seq)
        if left is None:
            return
        if failed or left == 1:
            del line.deferred[seq]
        else:
            line.deferred[seq] = left - 1
    if failed:
        global _notifier
        if _notifier is None:  # Ray runs this callback on its own thread: send elsewhere
            _notifier = ThreadPoolExecutor(1, thread_name_prefix="dotdo-skip")
        _notifier.submit(line.handle.skip.remote, *line.key, line.token, seq)


def actor_handle(stub) -> Any:
    """The Ray actor handle hosting ``stub``'s object (for tests and operators)."""
    return _line(stub._cls, stub._id).handle


class _HostActor:
    """Runs durable objects; see the module docstring."""

    def __init__(
        self, classes: dict[str, type[DurableObject]], conf: Settings, key: tuple[str, str] | None = None
    ) -> None:
        adopt(conf)  # stubs called inside objects use the settings of their creator
        self._classes = dict(classes)
        self._conf = conf
        self._objects: dict[tuple[str, str], DurableObject] = {}
        self._methods: dict[type, frozenset[str]] = {}
        self._calls: dict[tuple[str, str], int] = {}
        self._sequencer = Sequencer(fresh=not _restarted())
        self._clock = Clock()
        if key is not None:
            # Activate at once, not at the next call: after a restart the object's
            # pending events, schedules and alarm must resume with nobody calling.
            ray.get_runtime_context().current_actor.wake.remote(list(key))

    def _class(self, name: str) -> type[DurableObject]:
        cls = self._classes.get(name) or lookup(name)
        if cls is None:
            raise ObjectError(
                f"this host has no durable object class {name!r}: define it in a module "
                "the Ray workers can import"
            )
        return cls

    def _activate(self, key: tuple[str, str]) -> DurableObject:
        cls = self._class(key[0])
        path = storage_path(self._conf.storage, key[0], key[1])
        storage = Storage(path, key[0], key[1])
        obj = cls.__new__(cls)
        obj.id, obj.storage = key[1], storage
        activity = obj._dotdo_activity = Activity(obj, self._clock)
        storage.now = self._clock.now
        storage.on_alarm_change = activity.alarm_changed
        token = _current.set(obj)  # so that __init__ may subscribe handlers itself
        try:
            obj.__init__()
        except BaseException:
            storage.close()
            raise
        finally:
            _current.reset(token)
        self._objects[key] = obj
        activity.start()
        return obj

    async def wake(self, key: list) -> None:
        """Activate an object now (its background work resumes)."""
        key = tuple(key)
        if key not in self._objects:
            try:
                self._activate(key)
            except Exception:  # noqa: BLE001 - the next call reports it to its caller
                logging.getLogger("dotdo").exception("dotdo: cannot activate %s/%s", *key)

    async def shift_clock(self, seconds: float) -> float:
        """Move this host's clock (tests: 'three hours pass'); returns its offset."""
        self._clock.shift(seconds)
        return self._clock.offset

    def _method(self, obj: DurableObject, name: str):
        cls = type(obj)
        names = self._methods.get(cls)
        if names is None:
            names = self._methods[cls] = frozenset(public_methods(cls))
        if name not in names:
            raise MethodNotFoundError(
                f"{cls.__name__} has no public method {name!r}; its methods are: "
                f"{', '.join(sorted(names)) or '(none)'}"
            )
        return getattr(obj, name)

    async def call(self, message: list, *deps: Any) -> Any:
        """Run one call ``[class, id, method, args, kwargs, deferred, stream, seq]``
        on object ``(class, id)``, after the earlier calls of its caller; ``deps`` are
        the values of its promise arguments, resolved by Ray."""
        class_name, object_id, method, args, kwargs, deferred, stream, seq = message
        key = (class_name, object_id)
        turn = (key, stream)
        admitted = self._sequencer.arrive(turn, seq, deferred)
        if admitted is not None:
            await admitted
        try:
            obj = self._objects.get(key) or self._activate(key)
            self._calls[key] = self._calls.get(key, 0) + 1
            fn = self._method(obj, method)
        finally:
            self._sequencer.started(turn, seq)
        args, kwargs = unpack_args(args, kwargs, deps)
        token = _current.set(obj)
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        finally:
            _current.reset(token)
        if isinstance(result, Promise):  # returning a promise returns its value
            result = await result
        return result

    async def skip(self, class_name: str, object_id: str, stream: str, seq: int) -> None:
        """Call ``seq`` of ``stream`` will never arrive: its caller saw an argument fail."""
        self._sequencer.skip(((class_name, object_id), stream), seq)

    async def stats(self) -> dict[str, Any]:
        """Process id, objects held and calls received per object (tests use this)."""
        return {
            "pid": os.getpid(),
            "objects": sorted(self._objects),
            "calls": {f"{c}/{i}": n for (c, i), n in self._calls.items()},
            "gaps_skipped": self._sequencer.skipped,
        }


def _restarted() -> bool:
    """Whether this actor is a restart (Ray's check warns about its own deprecated
    ``actor_id``; the warning is Ray's business, not our users')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


_Host = ray.remote(_HostActor)
