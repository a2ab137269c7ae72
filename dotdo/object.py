"""``DurableObject``, the base class, and the registry that maps class names to classes.

Subclassing registers the class by its ``__name__``; ``dotdo.<Name>(id)`` then returns
a stub for the object with that id. Instances are made by the runtime, never by
user code: ``id`` and ``storage`` are set before ``__init__`` runs, so ``__init__``
can rebuild the object's in-memory state from its storage after every restart.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Self

from dotdo.errors import ConfigError
from dotdo.hosting import Hosting, Pooled, check

if TYPE_CHECKING:
    from dotdo.background import Activity
    from dotdo.storage.kv import Storage
    from dotdo.stub import Stub

__all__ = ["DurableObject", "lookup", "known_names", "public_methods", "exposed",
           "set_stub_class"]

_registry: dict[str, type[DurableObject]] = {}
# What DurableObject.stub makes: dotdo.stub.Stub, which sits layers above this module
# and names itself here when it loads (dotdo imports it, so it always has).
_stub_class: type[Stub[Any]] | None = None


class DurableObject:
    """Base class of durable objects.

    ``self.id`` is the object's id; ``self.storage`` its :class:`~dotdo.storage.kv.Storage`.
    Public methods (names not starting with ``_``), sync or ``async``, are callable
    through stubs; calls to one object run one at a time and interleave only at
    ``await``. ``class Room(DurableObject, hosting=dotdo.Pooled())`` chooses how its
    objects map to Ray actors (see :mod:`dotdo.hosting`); ``own_process=True`` keeps
    each of its objects in a process of its own whatever the default hosting says
    (a ``Worker`` needs it: when a process dies, the jobs running in it are to blame).
    ``expose=True`` (or a list of method names) lets the HTTP API (``dotdo serve``)
    call its public methods (or those listed); by default it calls none.
    """

    id: str
    storage: Storage
    #: Seconds the journal keeps handled events, and finished steps with their
    #: attempts; None keeps them for ever (a finished step then never runs again).
    retain_events: ClassVar[float | None] = 86_400.0
    retain_steps: ClassVar[float | None] = None
    _dotdo_abstract: ClassVar[bool] = True
    # None: the default of dotdo.init() / $DOTDO_HOSTING.
    _dotdo_hosting: ClassVar[Hosting | None] = None
    _dotdo_own_process: ClassVar[bool] = False
    # Methods the HTTP API may call: none unless the class says expose=...
    _dotdo_exposed: ClassVar[frozenset[str]] = frozenset()
    # Run in the caller's process on each call before it is sent: (method, args,
    # kwargs) -> (args, kwargs), a staticmethod. A class uses it to send values already
    # encoded (the Queue its payloads, so that its process never rebuilds them). None:
    # calls go as they are. (Any: mypy would take a Callable class variable for a method.)
    _dotdo_outgoing: ClassVar[Any] = None
    # (kind, key, method name) of methods marked by @on / @every / @on_error
    _dotdo_subscriptions: ClassVar[list[tuple[Any, Any, str]]] = []
    # Set by the host on each live object: its background work, and whether a pooled
    # host must bring it back after a crash.
    _dotdo_activity: Activity
    _dotdo_live: bool

    def __init_subclass__(cls, hosting: Hosting | None = None, own_process: bool | None = None,
                          expose: bool | list[str] | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._dotdo_abstract = False
        if hosting is not None:
            cls._dotdo_hosting = check(hosting, f"class {cls.__name__}")
        if own_process is not None:
            cls._dotdo_own_process = bool(own_process)
        if cls._dotdo_own_process and isinstance(cls._dotdo_hosting, Pooled):
            raise ConfigError(f"class {cls.__name__}: own_process=True and a Pooled hosting "
                              "contradict each other: give it Dedicated(...) or no hosting")
        if expose is not None:
            cls._dotdo_exposed = _exposed(cls, expose)
        if "stub" in vars(cls):
            raise ConfigError(f"class {cls.__name__}: `stub` is DurableObject's own "
                              f"({cls.__name__}.stub(id) makes a stub): give the method "
                              "another name")
        # Methods marked by @on / @every / @on_error: every object subscribes them.
        cls._dotdo_subscriptions = [
            (kind, key, name)
            for name, attr in _members(cls)
            for kind, key in getattr(attr, "_dotdo_marks", ())
        ]
        previous = _registry.get(cls.__name__)
        if previous is not None and previous is not cls and _origin(previous) != _origin(cls):
            warnings.warn(
                f"durable object class {cls.__name__} from {cls.__module__} replaces the "
                f"one from {previous.__module__}: objects are addressed by class name, so "
                "give one of them another name",
                stacklevel=2,
            )
        _registry[cls.__name__] = cls

    @classmethod
    def stub(cls, object_id: str) -> Stub[Self]:
        """``Account.stub("alice")``: the stub of the object ``"alice"``, typed
        ``Stub[Account]`` (the stub ``dotdo.Account("alice")`` gives, untyped)."""
        assert _stub_class is not None, "dotdo.stub names its Stub when dotdo is imported"
        return _stub_class(cls, object_id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'id', '?')!r}>"


def _exposed(cls: type, expose: object) -> frozenset[str]:
    """The methods ``expose=`` names, checked: True is every public method."""
    methods = public_methods(cls)
    if expose is True or expose is False:
        return frozenset(methods if expose else ())
    if not isinstance(expose, (list, tuple, set, frozenset)) or not all(
            isinstance(m, str) for m in expose):
        raise ConfigError(f"class {cls.__name__}: expose is True, False or a list of method "
                          f"names, not {expose!r}")
    unknown = sorted(set(expose) - set(methods))
    if unknown:
        raise ConfigError(f"class {cls.__name__}: expose names {unknown}, which are not its "
                          f"public methods ({', '.join(methods) or 'none'})")
    return frozenset(expose)


def exposed(cls: type[DurableObject]) -> frozenset[str]:
    """The methods of ``cls`` the HTTP API may call (``expose=`` of the class)."""
    return cls._dotdo_exposed


def _members(cls: type):
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, attr in vars(klass).items():
            if name not in seen:
                seen.add(name)
                yield name, attr


def _origin(cls: type) -> str:
    # A script's classes exist as __main__ in its driver and as __dotdo_script__ in
    # the App that imports it: the same class.
    module = "__main__" if cls.__module__.startswith("__dotdo_script__") else cls.__module__
    return f"{module}:{cls.__qualname__}"


def set_stub_class(stub_class: type[Stub[Any]]) -> None:
    """Called by :mod:`dotdo.stub` as it loads: the class :meth:`DurableObject.stub` makes."""
    global _stub_class
    _stub_class = stub_class


def lookup(name: str) -> type[DurableObject] | None:
    """The registered class named ``name``, or None."""
    return _registry.get(name)


def known_names() -> list[str]:
    """Names of every registered durable object class, sorted."""
    return sorted(_registry)


def public_methods(cls: type) -> list[str]:
    """Names a stub may call on objects of ``cls``."""
    base = set(dir(DurableObject))
    return sorted(
        name
        for name in dir(cls)
        if not name.startswith("_") and name not in base and callable(getattr(cls, name, None))
    )
