"""Where ``on``, ``every`` and ``on_error`` registrations go.

* Inside a running object (its ``__init__``, a method, a handler): to that object.
* On a method of a ``DurableObject`` subclass: the function is marked, and every
  object of that class subscribes when it activates.
* At module level: to the ``App`` objects (``dotdo.App("default")``). The App's actor
  must see them too, so the defining module is remembered and shipped: the App imports
  it (a script run as ``python x.py`` is imported from its file under another name,
  so its ``if __name__ == "__main__":`` block does not run there).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

from dotdo.context import current_object

__all__ = ["Registrations", "register", "app_registrations", "unshipped", "mark_shipped"]

DEFAULT_APP = "default"
SCRIPT_MODULE = "__dotdo_script__"


@dataclasses.dataclass
class Registrations:
    """Handlers, schedules and error callbacks, in the order they were registered."""

    handlers: list[tuple[str, Callable[..., Any]]] = dataclasses.field(default_factory=list)
    schedules: list[tuple[Any, Callable[..., Any]]] = dataclasses.field(default_factory=list)
    errors: list[Callable[..., Any]] = dataclasses.field(default_factory=list)

    def add(self, kind: str, key: Any, fn: Callable[..., Any]) -> None:
        if kind == "on":
            self.handlers.append((key, fn))
        elif kind == "every":
            self.schedules.append((key, fn))
        else:
            self.errors.append(fn)


_apps: dict[str, Registrations] = {}
_registering: dict[str, set[str]] = {}  # names of the modules that registered, per App
_modules: dict[str, set[tuple[str, str]]] = {}  # every module that registered, per App
_unshipped: dict[str, set[tuple[str, str]]] = {}


def _is_method(fn: Callable[..., Any]) -> bool:
    parts = getattr(fn, "__qualname__", "").split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def module_spec(fn: Callable[..., Any]) -> tuple[str, str] | None:
    """How an App's actor can import the module defining ``fn``; None if it cannot
    (no file, a ``.pyz``, a name that is no dotted identifier): the App would refuse
    that spec."""
    from dotdo.app import check_spec

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


def register(kind: str, key: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Record ``fn`` for ``kind`` (``"on"``, ``"every"``, ``"on_error"``); returns ``fn``."""
    if not callable(fn):
        raise TypeError(f"{kind} registers a function, not {type(fn).__name__}")
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
