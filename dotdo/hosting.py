"""How objects map to Ray actors: one actor each, or a pool of actors shared by many.

* :class:`Dedicated` (the default) gives each object its own actor,
  ``"<Class>/<id>"``: full isolation, but an actor is a process (~0.5 s and ~40 MB to
  start), so a machine holds a few hundred such objects.
* :class:`Pooled` spreads a class's objects over ``hosts`` actors named
  ``"<pool>[<i>/<hosts>]"``; an object goes to host ``hash(class, id) % hosts``, the
  same on every machine and in every run. Each object keeps its own SQLite file and
  its own turn discipline; objects idle for ``idle_timeout`` seconds are evicted
  (their connection closed) and come back on their next call, alarm or schedule tick.

A class picks its hosting with ``class Room(dotdo.DurableObject, hosting=dotdo.Pooled())``;
a class that does not gets the default of :func:`dotdo.init` (``hosting=``), else of
``$DOTDO_HOSTING`` (``dedicated``, ``pooled`` or ``pooled:<hosts>``).

Changing ``hosts`` of a class moves its objects to other actors: stop the old pool
first (a new namespace, or ``ray.kill`` of its actors). An object is never live in two
actors (its storage holds a lock on its file); the second gets a ``StorageError``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from dotdo.checks import is_int, is_real
from dotdo.errors import ConfigError
from dotdo.ids import actor_name

__all__ = ["Dedicated", "Pooled", "Hosting", "from_env", "check", "host_name"]


def _options_key(options: Mapping[str, Any]) -> tuple:
    """Ray options as something hashable (the dataclasses hash by value)."""
    return tuple(sorted(options.items(), key=str))


@dataclasses.dataclass(frozen=True)
class Dedicated:
    """One Ray actor per object.

    ``actor_options`` go to Ray's ``.options()`` for the object's actor, e.g.
    ``{"resources": {"zone-a": 0.001}}`` to pin it to nodes offering that resource,
    or ``{"scheduling_strategy": "SPREAD"}``.
    """

    actor_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((type(self), _options_key(self.actor_options)))


@dataclasses.dataclass(frozen=True)
class Pooled:
    """Objects share ``hosts`` Ray actors; idle ones leave memory after ``idle_timeout``.

    ``idle_timeout`` is in seconds (``None``: never evict). ``pool`` names the set of
    actors (default: the class name); classes naming the same pool share its
    actors. ``actor_options`` as for :class:`Dedicated`, applied to every host.
    """

    hosts: int = 4
    idle_timeout: float | None = 60.0
    pool: str | None = None
    actor_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_int(self.hosts) or self.hosts < 1:
            raise ConfigError(f"Pooled(hosts=) must be an int >= 1, got {self.hosts!r}")
        timeout = self.idle_timeout
        if timeout is not None and (not is_real(timeout) or timeout < 0):
            raise ConfigError(
                f"Pooled(idle_timeout=) must be seconds >= 0 or None (never evict), got {timeout!r}"
            )
        if self.pool is not None and (not isinstance(self.pool, str) or not self.pool
                                      or "[" in self.pool):
            raise ConfigError(f"Pooled(pool=) must be a non-empty str without '[', got {self.pool!r}")

    def __hash__(self) -> int:
        return hash((type(self), self.hosts, self.idle_timeout, self.pool,
                     _options_key(self.actor_options)))

    def index(self, class_name: str, object_id: str) -> int:
        """Which of the pool's hosts holds object ``(class_name, object_id)``."""
        digest = hashlib.blake2b(f"{class_name}\0{object_id}".encode("utf-8", "surrogatepass"),
                                 digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.hosts


Hosting = Dedicated | Pooled


def check(hosting: object, where: str) -> Hosting:
    """``hosting`` if it is a hosting, else a :class:`ConfigError` naming ``where``."""
    if not isinstance(hosting, (Dedicated, Pooled)):
        raise ConfigError(
            f"{where}: hosting must be dotdo.Dedicated() or dotdo.Pooled(...), got {hosting!r}"
        )
    return hosting


def from_env(value: str | None) -> Hosting:
    """Parse ``$DOTDO_HOSTING``: ``dedicated``, ``pooled``, ``pooled:<hosts>`` or
    ``pooled:<hosts>:<idle_timeout seconds>``."""
    if not value or value == "dedicated":
        return Dedicated()
    kind, *rest = value.split(":")
    try:
        if kind == "pooled" and len(rest) <= 2:
            hosts = int(rest[0]) if rest else Pooled.hosts
            idle = float(rest[1]) if len(rest) > 1 else Pooled.idle_timeout
            return Pooled(hosts=hosts, idle_timeout=idle)
    except (ValueError, ConfigError):
        pass
    raise ConfigError(
        f"DOTDO_HOSTING={value!r} is not a hosting: use dedicated, pooled, "
        "pooled:<hosts> or pooled:<hosts>:<idle seconds>"
    )


def host_name(class_name: str, object_id: str, hosting: Hosting) -> str:
    """The Ray actor name of the host of ``(class_name, object_id)``."""
    if isinstance(hosting, Dedicated):
        return actor_name(class_name, object_id)
    return f"{hosting.pool or class_name}[{hosting.index(class_name, object_id)}/{hosting.hosts}]"
