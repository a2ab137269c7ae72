"""Job handlers by type: ``@dotdo.job("email")``, or a dict of them.

Handlers are registered at module level; like module-level event handlers they
belong to the App, whose list of modules every ``Worker`` imports when it starts,
so a worker's process knows the handlers its driver defined.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dotdo import registry

__all__ = ["job", "handler_for", "handler_types"]

_handlers: dict[str, Callable[[Any], Any]] = {}


def _check_type(job_type: object) -> str:
    if not isinstance(job_type, str) or not job_type:
        raise ValueError(f"a job type is a non-empty str like 'email', not {job_type!r}")
    return job_type


def job(job_type: str | dict[str, Callable[[Any], Any]]):
    """``@job("email")`` on ``async def send_email(payload)``; or ``job({"email": f, ...})``."""
    if isinstance(job_type, dict):
        for name, fn in job_type.items():
            job(name)(fn)
        return job_type
    _check_type(job_type)

    def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if not callable(fn):
            raise TypeError(f"job({job_type!r}) registers a function, not {type(fn).__name__}")
        _handlers[job_type] = fn
        registry.remember_module(fn)
        return fn

    return register


def handler_for(job_type: str) -> Callable[[Any], Any] | None:
    """The handler registered for ``job_type`` in this process, or None."""
    return _handlers.get(job_type)


def handler_types() -> list[str]:
    return sorted(_handlers)
