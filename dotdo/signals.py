"""SIGTERM in an actor's process: objects hand their work back before it exits.

Ray installs a SIGTERM handler in every worker process that exits it; being a Python
handler, it runs on the main thread, at once while the process waits for tasks, or
once the task running there ends. :mod:`dotdo.runtime` makes it first call the
callbacks registered here (``on_terminate``) and wait, up to a grace period, for the
hand-overs they start (a ``Worker`` returns its running jobs to their queue).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait

__all__ = ["on_terminate", "terminate", "wait_for_handover"]

log = logging.getLogger("dotdo")

_callbacks: list[Callable[[], Future | None]] = []
_lock = threading.Lock()
_handovers: list[Future] | None = None  # once SIGTERM came: what the callbacks started


def on_terminate(callback: Callable[[], Future | None]) -> None:
    """Call ``callback()`` once, on the process's main thread, when the process gets
    SIGTERM; it may return a future that ends when its hand-over is done."""
    with _lock:
        _callbacks.append(callback)


def terminate() -> list[Future]:
    """Run the callbacks (the first time only); the futures of their hand-overs."""
    global _handovers
    with _lock:
        if _handovers is None:
            _handovers = []
            for callback in _callbacks:
                try:
                    started = callback()
                except Exception:  # one object's failure is not the others'
                    log.exception("dotdo: a SIGTERM callback failed")
                    continue
                if started is not None:
                    _handovers.append(started)
        return list(_handovers)


def wait_for_handover(timeout: float) -> None:
    """Run the callbacks if they have not run, and wait up to ``timeout`` s for them."""
    wait(terminate(), timeout=timeout)
