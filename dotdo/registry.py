"""Where ``on``, ``every`` and ``on_error`` registrations go.

* Inside a running object (its ``__init__``, a method, a handler): to that object.
* On a method of a ``DurableObject`` subclass: the function is marked, and every
  object of that class subscribes when it activates.
* At module level: to the ``App`` objects (``dotdo.App("default")``). The App's actor
  must see them too, so the defining module is remembered and shipped: the App imports
  it (a script run as ``python x.py`` is imported from its file under another name,
  so its ``if __name__ == "__main__":`` block does not run there).

A shipped module is a *spec*: ``("module", "dotted.name")`` or ``("script",
"/absolute/path.py")``; :func:`check_spec` says which specs an App accepts.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import sys
from collections.abc import Callable
from typing import Any

from dotdo.current import current_object

__all__ = ["Kind", "Registrations", "register", "app_registrations", "unshipped",
           "mark_shipped", "check_spec", "module_name", "DEFAULT_APP", "APP_CLASS"]

DEFAULT_APP = "default"  # the App driver code acts for
APP_CLASS = "App"  # the class name of Apps (defined in dotdo.app)
SCRIPT_MODULE = "__dotdo_script__"


class Kind(str, enum.Enum):
    """What a registration subscribes a function to."""

    ON = "on"  # events matching a pattern
    EVERY = "every"  # a schedule's ticks
    ON_ERROR = "on_error"  # failed handlers and ticks


def check_spec(spec: Any) -> tuple[str, str]:
    """``spec`` as ``(kind, target)`` if it names something a driver can register
    handlers in: ``["module", "dotted.name"]`` or ``["script", "/abs/path.py"]``
    (an existing file); else ``ValueError``."""
    if isinstance(spec, (list, tuple)) and len(spec) == 2 and isinstance(spec[1], str):
        kind, target = spec
        if kind == "module" and target and all(p.isidentifier() for p in target.split(".")):
            return kind, target
        if kind == "script" and os.path.isabs(target) and target.endswith(".py"):
            if os.path.isfile(target):
                return kind, target
            raise ValueError(f"the script {target} does not exist (any more): give the "
                             "path of a .py file on the App's machine")
    raise ValueError(f"{spec!r} is not a module to import: give ['module', 'dotted.name'] "
                     "or ['script', '/absolute/path/to/an/existing/file.py']")


def module_name(spec: tuple[str, str]) -> str:
    """The name ``spec`` is imported under in this process."""
    kind, target = spec
    if kind == "module":
        return target
    # A script the driver ran as __main__: loaded under another name, so that its
    # `if __name__ == "__main__":` block does not run here.
    return SCRIPT_MODULE + hashlib.sha1(target.encode()).hexdigest()[:12]


@dataclasses.dataclass
class Registrations:
    """Handlers, schedules and error callbacks, in the order they were registered."""

    handlers: list[tuple[str, Callable[..., Any]]] = dataclasses.field(default_factory=list)
    schedules: list[tuple[Any, Callable[..., Any]]] = dataclasses.field(default_factory=list)
    errors: list[Callable[..., Any]] = dataclasses.field(default_factory=list)

    def add(self, kind: Kind | str, key: Any, fn: Callable[..., Any]) -> None:
        kind = Kind(kind)
        if kind is Kind.ON:
            self.handlers.append((key, fn))
        elif kind is Kind.EVERY:
            self.schedules.append((key, fn))
        else:
            self.errors.append(fn)


_apps: dict[str, Registrations] = {}
_registering: dict[str, set[str | None]] = {}  # names of the modules that registered, per App
_modules: dict[str, set[tuple[str, str]]] = {}  # every module that registered, per App
_unshipped: dict[str, set[tuple[str, str]]] = {}


def _is_method(fn: Callable[..., Any]) -> bool:
    parts = getattr(fn, "__qualname__", "").split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def module_spec(fn: Callable[..., Any]) -> tuple[str, str] | None:
    """How an App's actor can import the module defining ``fn``; None if it cannot
    (no file, a ``.pyz``, a name that is no dotted identifier): the App would refuse
    that spec."""
    module = getattr(fn, "__module__", None)
    if module == "__main__":
        path = getattr(sys.modules["__main__"], "__file__", None)
        spec = ("script", os.path.abspath(path)) if path else None
    elif module is None or module.startswith(SCRIPT_MODULE):
        return None
    else:
        spec = ("module", module)
    try:
        return check_spec(spec)
    except ValueError:
        return None


def register(kind: Kind, key: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Record ``fn`` for ``kind`` under ``key`` (a pattern, a schedule, None); returns ``fn``."""
    if not callable(fn):
        raise TypeError(f"{kind.value} registers a function, not {type(fn).__name__}")
    obj = current_object()
    activity = getattr(obj, "_dotdo_activity", None) if obj is not None else None
    if _is_method(fn):  # a class body being run: whatever object imported the module
        fn.__dict__.setdefault("_dotdo_marks", []).append((kind, key))
    elif activity is not None:
        activity.add(kind, key, fn)
    else:
        _apps.setdefault(DEFAULT_APP, Registrations()).add(kind, key, fn)
        remember_module(fn)
    return fn


def remember_module(fn: Callable[..., Any], app: str = DEFAULT_APP) -> None:
    """Ship the module defining ``fn`` to ``app``, whose list workers import too."""
    _registering.setdefault(app, set()).add(getattr(fn, "__module__", None))
    spec = module_spec(fn)
    if spec is not None:
        _modules.setdefault(app, set()).add(spec)
        _unshipped.setdefault(app, set()).add(spec)


def has_registrations(module: str, app: str = DEFAULT_APP) -> bool:
    """Whether module ``module`` registered a handler, schedule, error callback or job
    handler for ``app`` in this process (an App keeps only such modules)."""
    return module in _registering.get(app, ())


def ship_again() -> None:
    """A new cluster or storage: its Apps have not been told anything yet."""
    for app, specs in _modules.items():
        _unshipped.setdefault(app, set()).update(specs)


def app_registrations(app: str) -> Registrations:
    """Everything registered at module level for ``app`` in this process."""
    return _apps.setdefault(app, Registrations())


def unshipped() -> dict[str, set[tuple[str, str]]]:
    """Modules with registrations that their App's actor has not been told about."""
    return _unshipped


def mark_shipped(app: str, specs: set[tuple[str, str]]) -> None:
    _unshipped.get(app, set()).difference_update(specs)
