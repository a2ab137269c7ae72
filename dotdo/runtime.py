"""The Ray side: starting or joining Ray, and the host actor that runs objects.

A *host* is a Ray actor; an *object* is a ``DurableObject`` instance living in a
host, keyed by ``(class name, id)``. Today every object gets a dedicated host, the
detached actor ``"<Class>/<id>"`` in namespace ``dotdo`` (get-if-exists, restarted
without limit); the host itself already keeps a table of objects so that pooled
hosting can put many objects in one actor.

A host is an asyncio actor: calls to one object run on one event loop, one at a
time, interleaving only at ``await``, as in Durable Objects. It is restarted by Ray
after a crash and rebuilds each object from its SQLite file on the next call.
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import os
from typing import Any

import ray

from dotdo.errors import ConfigError, MethodNotFoundError, ObjectError
from dotdo.ids import actor_name, storage_path
from dotdo.journal import Storage
from dotdo.object import DurableObject, lookup, public_methods
from dotdo.stub import Promise, unpack_args

__all__ = ["init", "shutdown", "submit", "Settings", "settings", "current_object"]

DEFAULT_NAMESPACE = "dotdo"
# Enough concurrent calls that a slow call never holds up the rest of the host.
_HOST_CONCURRENCY = 1000


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where objects keep their files and which Ray namespace holds their actors."""

    storage: str
    namespace: str = DEFAULT_NAMESPACE


_settings: Settings | None = None
_handles: dict[str, Any] = {}
_current: contextvars.ContextVar[DurableObject | None] = contextvars.ContextVar(
    "dotdo_current_object", default=None
)


def _default_storage() -> str:
    return os.path.abspath(os.environ.get("DOTDO_STORAGE") or ".dotdo")


def init(
    address: str | None = None,
    *,
    storage: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    **ray_kwargs: Any,
) -> Settings:
    """Start or join Ray and choose where objects store their files.

    With no ``address`` and no Ray running, a local Ray starts (dashboard off); with
    ``address="auto"``, ``"host:port"`` or ``"ray://..."`` this driver joins that
    cluster. ``storage`` defaults to ``$DOTDO_STORAGE`` or ``./.dotdo``; on a cluster it
    must be a path every node sees. Extra keyword arguments go to ``ray.init``.
    Calling it is optional: the first call on a stub does it with the defaults.
    """
    global _settings
    wanted = Settings(os.path.abspath(storage) if storage else _default_storage(), namespace)
    if not namespace or not isinstance(namespace, str):
        raise ConfigError("namespace must be a non-empty string")
    if ray.is_initialized():
        if address is not None and _settings is not None:
            raise ConfigError(
                "Ray is already initialised in this process: call dotdo.shutdown() "
                "before dotdo.init(address=...) to join another cluster"
            )
    else:
        if address not in (None, "local") and "RAY_AUTH_MODE" not in os.environ:
            # A driver joining a token-protected cluster must say so, or Ray
            # refuses it with InvalidAuthToken.
            if os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(
                os.path.expanduser("~/.ray/auth_token")
            ):
                os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray_kwargs.setdefault("include_dashboard", False)
        ray_kwargs.setdefault("logging_level", "warning")
        ray.init(address=address, **ray_kwargs)
        _handles.clear()
    os.makedirs(wanted.storage, exist_ok=True)
    _settings = wanted
    return wanted


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
        init()
    assert _settings is not None
    return _settings


def current_object() -> DurableObject | None:
    """The object whose method or handler is running, or None in driver code."""
    return _current.get()


def _host_handle(cls: type[DurableObject], object_id: str):
    name = actor_name(cls.__name__, object_id)
    handle = _handles.get(name)
    if handle is None:
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
        ).remote({cls.__name__: cls}, conf)
        _handles[name] = handle
    return handle


def submit(
    cls: type[DurableObject], object_id: str, method: str, args: tuple, kwargs: dict, deps: list
) -> ray.ObjectRef:
    """Send one call to an object's host; returns the ``ObjectRef`` of its result."""
    if not ray.is_initialized():
        _handles.clear()
    handle = _host_handle(cls, object_id)
    return handle.call.remote((cls.__name__, object_id), method, args, kwargs, *deps)


def actor_handle(stub) -> Any:
    """The Ray actor handle hosting ``stub``'s object (for tests and operators)."""
    return _host_handle(stub._cls, stub._id)


class _HostActor:
    """Runs durable objects; see the module docstring."""

    def __init__(self, classes: dict[str, type[DurableObject]], conf: Settings) -> None:
        global _settings
        # Stubs used inside objects need the same settings as the driver that made us.
        _settings = conf
        self._classes = dict(classes)
        self._conf = conf
        self._objects: dict[tuple[str, str], DurableObject] = {}
        self._methods: dict[type, frozenset[str]] = {}
        self._calls: dict[tuple[str, str], int] = {}

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
        try:
            obj.__init__()
        except BaseException:
            storage.close()
            raise
        self._objects[key] = obj
        return obj

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

    async def call(self, key: tuple[str, str], method: str, args, kwargs, *deps) -> Any:
        obj = self._objects.get(key) or self._activate(key)
        self._calls[key] = self._calls.get(key, 0) + 1
        fn = self._method(obj, method)
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

    async def stats(self) -> dict[str, Any]:
        """Process id, objects held and calls received per object (tests use this)."""
        return {
            "pid": os.getpid(),
            "objects": sorted(self._objects),
            "calls": {f"{c}/{i}": n for (c, i), n in self._calls.items()},
        }


_Host = ray.remote(_HostActor)
