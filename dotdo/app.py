"""``App``: the object that module-level handlers and schedules belong to.

Driver code's ``send`` and ``do`` act for ``App("default")``. The App imports the
modules that registered handlers (the driver ships their names the first time it
calls into dotdo, or at :func:`dotdo.deploy`), remembers them in its storage, and
imports them again whenever it reactivates, so its schedules keep ticking with no
driver attached.

What it keeps is limited to what drivers registered: a module name or the absolute
path of an existing ``.py`` script, kept only if importing it registered a handler,
schedule, error callback or job handler for that App; a kept module that no longer
exists (the module is gone, the script deleted) is dropped at the next activation.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from typing import Any

from dotdo import connect, context, registry
from dotdo.current import acting_for, restore
from dotdo.object import DurableObject
from dotdo.registry import DEFAULT_APP, check_spec, module_name
from dotdo.stub import Stub

__all__ = ["App", "deploy", "import_modules"]

log = logging.getLogger("dotdo")


def _gone(spec: tuple[str, str], exc: Exception) -> bool:
    """Whether ``exc`` says the module itself no longer exists (not a passing fault)."""
    kind, target = spec
    if kind == "script":
        return not os.path.isfile(target)
    return isinstance(exc, ModuleNotFoundError) and exc.name is not None and (
        target == exc.name or target.startswith(exc.name + "."))


def _import(spec: tuple[str, str]) -> None:
    kind, target = spec
    if kind == "module":
        importlib.import_module(target)
        return
    name = module_name(spec)
    if name in sys.modules:
        return
    module_spec = importlib.util.spec_from_file_location(name, target)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import the script {target}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    # No other process can import this module by name: send its classes by value,
    # as the driver does for its __main__, when an object here calls one of them.
    connect.pickle_by_value(module)


def import_modules(specs: list, importer: str) -> list[list[str]]:
    """Import modules shipped by drivers; their module-level registrations go to the
    process-wide registry, never to the object that happens to be importing. Returns
    the specs whose module no longer exists."""
    gone = []
    token = acting_for(None)
    try:
        for stored in specs:
            try:
                spec = check_spec(stored)
            except ValueError as exc:  # a script deleted, or kept by an older dotdo
                gone.append(stored)
                log.warning("dotdo: %s drops %r: %s", importer, stored, exc)
                continue
            try:
                _import(spec)
            except Exception as exc:
                if _gone(spec, exc):
                    gone.append(stored)
                    log.warning("dotdo: %s drops %s: it no longer exists", importer, spec)
                else:
                    log.exception("dotdo: %s could not import %s", importer, spec)
    finally:
        restore(token)
    return gone


class App(DurableObject):
    """Home of module-level handlers, schedules and driver-side steps."""

    def __init__(self) -> None:
        self.modules: list[list[str]] = self.storage.get("modules", [])
        gone = self._load(self.modules)
        if gone:
            self.modules = [s for s in self.modules if s not in gone]
            self.storage.put("modules", self.modules)

    def _load(self, specs: list) -> list[list[str]]:
        gone = import_modules(specs, f"App {self.id!r}")
        self._dotdo_activity.merge(registry.app_registrations(self.id))
        return gone

    def keep_modules(self, specs: list) -> list:
        """Import these modules (``[kind, name]``) now, and keep those that registered
        something, to import them at every reactivation; returns the modules kept.
        A spec that is not a module name or an existing script is refused."""
        new: list[list[str]] = []
        for spec in [list(check_spec(s)) for s in specs]:  # all checked before any import
            if spec not in self.modules and spec not in new:
                new.append(spec)
        if new:
            self._load(new)
            kept = [s for s in new
                    if registry.has_registrations(module_name((s[0], s[1])), self.id)]
            for spec in new:
                if spec not in kept:
                    log.warning("dotdo: App %r does not keep %s: importing it registered "
                                "no handler, schedule or job", self.id, spec)
            if kept:
                self.modules = self.modules + kept
                self.storage.put("modules", self.modules)
        return self.modules

    def emit(self, event_type: str, data: Any = None) -> None:
        """``dotdo.send`` from driver code lands here."""
        context.send(event_type, data)

    def emit_many(self, events: list) -> int:
        """Events other objects forward in batches, ``[type, data, id]`` each. The
        sender's ids make a repeated batch harmless: an id seen before is dropped.
        Returns how many were new."""
        return sum(context.send_once(event_type, data, event_id) is not None
                   for event_type, data, event_id in events)

    def listens(self, noun: str) -> bool:
        """Whether any handler here would receive events of ``noun`` (senders that
        forward many events skip the work when nobody listens)."""
        return any(pattern.partition(".")[0] in ("*", noun)
                   for pattern, _ in self._dotdo_activity.handlers)

    def module_list(self) -> list:
        """The modules this App imports: workers import them too, for job handlers."""
        return self.modules

    def step(self, step_id: str) -> tuple[bool, Any]:
        return self.storage.journal.step(step_id)

    def step_attempt(self, step_id: str, n: int, started: float, finished: float, error: str) -> None:
        self.storage.journal.record_attempt(step_id, n, started, finished, error)

    def step_finish(self, step_id: str, encoded: bytes, n: int, started: float, finished: float) -> None:
        self.storage.journal.finish_step(step_id, encoded, n, started, finished)

    def attempts(self, step_id: str) -> list[dict[str, Any]]:
        """The journaled attempts of a driver-side step, for inspection."""
        return self.storage.journal.attempts(step_id)


def deploy(app: str = DEFAULT_APP) -> list:
    """Ship this driver's module-level handlers and schedules to ``App(app)`` and
    wait until it runs them; from then on they run with no driver attached."""
    return Stub(App, app).keep_modules([]).result()
