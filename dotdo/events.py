"""Events: their names, their records, and the ``on`` builder that subscribes to them.

An event type is ``Noun.verb``: a noun starting with a capital letter, a dot, a
verb starting with a lower-case letter (``Job.enqueued``, ``Metrics.recorded``).
Handlers subscribe with ``on.Job.enqueued``, ``on["*"].created`` (any noun),
``on.Job["*"]`` (any verb of ``Job``) or ``on["*"]["*"]`` (everything).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from dotdo.registry import Kind, register

__all__ = ["Event", "ErrorInfo", "check_event_type", "matches", "on", "on_error"]

_NOUN = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
_VERB = re.compile(r"^[a-z][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Event:
    """One event as a handler receives it; ``id`` is stable across redeliveries."""

    id: str
    type: str
    data: Any
    created: float


@dataclasses.dataclass(frozen=True)
class ErrorInfo:
    """What an ``on_error`` callback receives when a handler or a tick fails."""

    event_type: str
    event_id: str | None
    data: Any
    error: BaseException
    handler: str = ""


def check_event_type(event_type: object) -> str:
    """Return ``event_type`` if it is ``Noun.verb``, else raise ``ValueError`` saying why."""
    if not isinstance(event_type, str):
        raise ValueError(f"an event type is a str like 'Job.enqueued', not {event_type!r}")
    noun, dot, verb = event_type.partition(".")
    if not dot:
        raise ValueError(f"event type {event_type!r} has no verb: write 'Noun.verb', "
                         "for example 'Job.enqueued'")
    if not _NOUN.match(noun):
        raise ValueError(f"event type {event_type!r}: the noun {noun!r} must start with a "
                         "capital letter and hold only letters, digits and _ (like 'Job')")
    if not _VERB.match(verb):
        raise ValueError(f"event type {event_type!r}: the verb {verb!r} must start with a "
                         "lower-case letter and hold only letters, digits and _ "
                         "(like 'enqueued')")
    return event_type


def matches(pattern: str, event_type: str) -> bool:
    """Whether a subscription pattern (``Job.enqueued``, ``*.created``, ``Job.*``) matches."""
    p_noun, _, p_verb = pattern.partition(".")
    noun, _, verb = event_type.partition(".")
    return p_noun in ("*", noun) and p_verb in ("*", verb)


class _Noun:
    def __init__(self, noun: str) -> None:
        self._noun = noun

    def __getattr__(self, verb: str) -> _Subscription:
        if verb.startswith("__"):
            raise AttributeError(verb)
        return _Subscription(f"{self._noun}.{verb}")

    def __getitem__(self, verb: str) -> _Subscription:
        return _Subscription(f"{self._noun}.{verb}")


class _Subscription:
    """``on.Job.enqueued``: call it with a handler, or use it as a decorator."""

    def __init__(self, pattern: str) -> None:
        noun, _, verb = pattern.partition(".")
        if noun != "*":
            check_event_type(f"{noun}.{'x' if verb == '*' else verb}")
        elif verb != "*":
            check_event_type(f"X.{verb}")
        self.pattern = pattern

    def __call__(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        return register(Kind.ON, self.pattern, handler)

    def __repr__(self) -> str:
        return f"<on {self.pattern}>"


class _On:
    """The ``on`` builder: ``on.Noun.verb``, ``on["*"].verb``, ``on.Noun["*"]``."""

    def __getattr__(self, noun: str) -> _Noun:
        if noun.startswith("__"):
            raise AttributeError(noun)
        return _Noun(noun)

    def __getitem__(self, noun: str) -> _Noun:
        return _Noun(noun)


on = _On()


def on_error(callback: Callable[[ErrorInfo], Any]) -> Callable[[ErrorInfo], Any]:
    """Register ``callback`` for every failed handler or schedule tick
    (``$.onError``); usable as a decorator, at module level or on methods."""
    return register(Kind.ON_ERROR, None, callback)
