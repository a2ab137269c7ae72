"""``App``: the object that module-level handlers and schedules belong to.

Driver code's ``send`` and ``do`` act for ``App("default")``. The App imports the
modules that registered handlers (the driver ships their names the first time it
calls into dotdo, or at :func:`dotdo.deploy`), remembers them in its storage, and
imports them again whenever it reactivates, so its schedules keep ticking with no
driver attached.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from typing import Any

from dotdo import context, registry
from dotdo.object import DurableObject

__all__ = ["App"]

log = logging.getLogger("dotdo")


def _import(spec: tuple[str, str]) -> None:
    kind, target = spec
    if kind == "module":
        importlib.import_module(target)
        return
    # A script the driver ran as __main__: load it under another name, so that its
    # `if __name__ == "__main__":` block does not run here.
    name = registry.SCRIPT_MODULE + hashlib.sha1(target.encode()).hexdigest()[:12]
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
    from dotdo import runtime

    runtime.pickle_by_value(module)


def import_modules(specs: list, importer: str) -> None:
    """Import modules shipped by drivers; their module-level registrations go to the
    process-wide registry, never to the object that happens to be importing."""
    token = context._current.set(None)
    try:
        for spec in specs:
            try:
                _import(tuple(spec))
            except Exception:  # noqa: BLE001 - one broken module must not stop the importer
                log.exception("dotdo: %s could not import %s", importer, spec)
    finally:
        context._current.reset(token)


class App(DurableObject):
    """Home of module-level handlers, schedules and driver-side steps."""

    def __init__(self) -> None:
        self.modules: list[list[str]] = self.storage.get("modules", [])
        self._load(self.modules)

    def _load(self, specs: list) -> None:
        import_modules(specs, f"App {self.id!r}")
        self._dotdo_activity.merge(registry.app_registrations(self.id))

    def adopt(self, specs: list) -> list:
        """Import these modules (``[kind, name]``) now and at every reactivation."""
        new = [list(s) for s in specs if list(s) not in self.modules]
        if new:
            self.modules = self.modules + new
            self.storage.put("modules", self.modules)
            self._load(new)
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
