"""How objects map to Ray actors: one actor each, or a pool of actors shared by many.

* :class:`Dedicated` (the default) gives each object its own actor,
  ``"<Class>/<id>"``: full isolation, but an actor is a process (~1 s and ~60 MB to
  start on 2 cores, docs/hosting.md), so a machine holds a few hundred such objects.
* :class:`Pooled` spreads a class's objects over ``hosts`` actors named
  ``"<pool>[<i>/<hosts>]"``; an object goes to host ``hash(class, id) % hosts``, the
  same on every machine and in every run. Each object keeps its own SQLite file and
  its own turn discipline; objects idle for ``idle_timeout`` seconds are evicted
  (their connection closed) and come back on their next call, alarm or schedule tick.

A class picks its hosting with ``class Room(dotdo.DurableObject, hosting=dotdo.Pooled())``;
a class that does not gets the default of :func:`dotdo.init` (``hosting=``), else of
``$DOTDO_HOSTING`` (``dedicated``, ``pooled`` or ``pooled:<hosts>``).

A process that gives many objects of one class an actor each by default (more than
:data:`CROWDED_PER_CPU` times the cluster's CPUs) logs one warning for that class,
naming :class:`Pooled`: an object per user should not cost a process per user by
surprise. Classes that chose their hosting (or ``own_process=True``) never warn.

Changing ``hosts`` of a class moves its objects to other actors: stop the old pool
first (a new namespace, or ``ray.kill`` of its actors). An object is never live in two
actors (its storage holds a lock on its file); the second gets a ``StorageError``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from dotdo.checks import is_int, is_real
from dotdo.errors import ConfigError
from dotdo.ids import actor_name

__all__ = ["Dedicated", "Pooled", "Hosting", "from_env", "check", "host_name",
           "CROWDED_PER_CPU", "Crowding", "note_dedicated"]

_log = logging.getLogger("dotdo")


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


# Dedicated actors of one class, per CPU of the cluster, past which a process warns.
# Why 4: an idle actor uses no CPU (hosts ask for num_cpus=0), so a few per core (a
# queue, its workers, some singletons) is what dedicated hosting is for; but each is a
# process, ~1 s of a core to start and ~60 MB (docs/hosting.md), so by 4x the cores a
# class's objects cost seconds of start-up per core and ~250 MB per core, and a class
# that got there (an object per user, per order) keeps growing. Ray's own warning on
# many workers fires sooner, for every kind of worker, and names no fix.
CROWDED_PER_CPU = 4


class Crowding:
    """Counts, per class, the objects this process gave an actor each by default, and
    logs one warning per class once they outnumber ``per_cpu`` times the cluster's
    CPUs (read once, from ``resources()`` at the first count, unless ``cpus`` is given)."""

    def __init__(self, per_cpu: float | None = None, cpus: float | None = None) -> None:
        self.per_cpu = CROWDED_PER_CPU if per_cpu is None else per_cpu
        self.cpus = cpus
        self._lock = threading.Lock()
        # class -> ids seen, until it warns; then None, so memory stays bounded by the
        # threshold however many objects follow
        self._seen: dict[str, set[str] | None] = {}

    def note(self, class_name: str, object_id: str,
             resources: Callable[[], Mapping[str, float]]) -> bool:
        """Count one object of ``class_name`` given its own actor; True if this warned."""
        with self._lock:
            seen = self._seen.setdefault(class_name, set())
            if seen is None or object_id in seen:
                return False
            if self.cpus is None:
                try:
                    self.cpus = float(resources().get("CPU", 0))
                except Exception:  # noqa: BLE001 - a warning must never fail a call; count later
                    return False
            seen.add(object_id)
            if len(seen) <= self.per_cpu * max(self.cpus, 1.0):
                return False
            self._seen[class_name] = None
        _log.warning(
            "dotdo: this process has given %d objects of class %s an actor each, on a "
            "cluster of %g CPUs: each is a process of its own (~1 s and ~60 MB to "
            "start), as dedicated hosting, the default, does. For an object per user, "
            "order or room, pool them: class %s(dotdo.DurableObject, hosting=dotdo.Pooled()), "
            "or for every class dotdo.init(hosting=dotdo.Pooled()) or DOTDO_HOSTING=pooled. "
            "To keep an actor per object on purpose, give the class hosting=dotdo.Dedicated() "
            "(docs/hosting.md; this warning comes once per class)",
            len(seen), class_name, self.cpus, class_name)
        return True


crowding = Crowding()  # this process's count; tests put in one with a small threshold


def note_dedicated(class_name: str, object_id: str,
                   resources: Callable[[], Mapping[str, float]]) -> bool:
    """Count an object of a class that did not choose its hosting, about to get an
    actor of its own (see :class:`Crowding`); ``resources`` gives the cluster's, e.g.
    ``ray.cluster_resources``."""
    return crowding.note(class_name, object_id, resources)
