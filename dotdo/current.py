"""The current object: which durable object the running code acts for.

The host sets it around every call, handler, tick and alarm of an object (and the
tasks they start inherit it); ``send``, ``do`` and ``on`` read it to act for that
object. ``None`` means driver code.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dotdo.object import DurableObject

__all__ = ["current_object", "acting_for", "restore"]

_current: contextvars.ContextVar[DurableObject | None] = contextvars.ContextVar(
    "dotdo_current_object", default=None
)


def current_object() -> DurableObject | None:
    """The object whose method, handler or tick is running; None in driver code."""
    return _current.get()


def acting_for(obj: DurableObject | None) -> contextvars.Token:
    """Make ``obj`` the current object (None: nobody's); undo with :func:`restore`."""
    return _current.set(obj)


def restore(token: contextvars.Token) -> None:
    """Undo the :func:`acting_for` that returned ``token``."""
    _current.reset(token)
