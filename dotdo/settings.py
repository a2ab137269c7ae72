"""``Settings``: where objects keep their files, which Ray namespace holds their
actors, and the default hosting; the settings this process uses; their defaults
from the environment.

A driver's settings come from :func:`dotdo.init`; a host receives its creator's and
uses them (so stubs called inside objects reach the same storage and namespace).
"""

from __future__ import annotations

import dataclasses
import os
import re

from dotdo import tracing
from dotdo.errors import ConfigError
from dotdo.hosting import Dedicated, Hosting, from_env

__all__ = ["Settings", "DEFAULT_NAMESPACE", "DURABILITIES", "current", "use", "defaults",
           "deferred_timeout", "check_durability", "check_namespace", "objects_root"]

DEFAULT_NAMESPACE = "dotdo"
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_DEFERRED_TIMEOUT = 30.0  # seconds; see deferred_timeout()


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where objects keep their files, which Ray namespace holds their actors, and
    the hosting of classes that do not choose their own."""

    storage: str
    namespace: str = DEFAULT_NAMESPACE
    hosting: Hosting = dataclasses.field(default_factory=Dedicated)
    in_process: bool = False  # every object in this process, no Ray (dotdo.inprocess)
    # "full": a commit is on disk when acknowledged; "normal": survives a process's death
    # only (see dotdo.storage.connection). The objects' hosts use their creator's.
    durability: str = "full"
    # The OpenTelemetry switches of the driver (dotdo.tracing.switches): its hosts
    # export spans as it does; empty: tracing is off.
    tracing: tuple[tuple[str, str], ...] = ()

    @property
    def root(self) -> str:
        """Where the objects of this namespace keep their files (:func:`objects_root`)."""
        return objects_root(self.storage, self.namespace)


def objects_root(storage: str, namespace: str) -> str:
    """The folder of a namespace's object files under ``storage``: ``storage`` itself
    for the default namespace (so its files stay where they always were), else
    ``storage/@<namespace>``. Two namespaces are two sets of objects, also on disk."""
    return storage if namespace == DEFAULT_NAMESPACE else os.path.join(storage, f"@{namespace}")


def check_namespace(namespace: object) -> str:
    """``namespace`` if it can name a Ray namespace and a folder, else ConfigError."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace) \
            or namespace in (".", ".."):
        raise ConfigError(f"a namespace is 1-64 letters, digits, '_', '-' or '.' (it names "
                          f"a folder of the storage root too), not {namespace!r}")
    return namespace


_settings: Settings | None = None


def current() -> Settings | None:
    """The settings this process uses, or None before :func:`use`."""
    return _settings


def use(conf: Settings | None) -> None:
    """Use ``conf`` in this process from now on (None: none yet)."""
    global _settings
    _settings = conf


def default_storage() -> str:
    """``$DOTDO_STORAGE`` or ``./.dotdo``, absolute."""
    return os.path.abspath(os.environ.get("DOTDO_STORAGE") or ".dotdo")


def default_namespace() -> str:
    """``$DOTDO_NAMESPACE`` or ``dotdo``."""
    return os.environ.get("DOTDO_NAMESPACE") or DEFAULT_NAMESPACE


def default_hosting() -> Hosting:
    """``$DOTDO_HOSTING`` parsed, or dedicated."""
    return from_env(os.environ.get("DOTDO_HOSTING"))


def default_in_process() -> bool:
    """``$DOTDO_IN_PROCESS`` set to ``1``, ``true`` or ``yes``."""
    return os.environ.get("DOTDO_IN_PROCESS", "").lower() in ("1", "true", "yes")


DURABILITIES = ("full", "normal")


def check_durability(value: object, where: str) -> str:
    """``value`` if it is a durability setting, else :class:`ConfigError`."""
    if value not in DURABILITIES:
        raise ConfigError(
            f"{where}: durability is 'full' (every commit on disk before it is "
            f"acknowledged: survives a power cut) or 'normal' (survives the death of a "
            f"process, not of the machine), not {value!r}")
    return str(value)


def default_durability() -> str:
    """``$DOTDO_DURABILITY`` (``full`` or ``normal``), or ``full``."""
    return check_durability(os.environ.get("DOTDO_DURABILITY") or "full", "DOTDO_DURABILITY")


def defaults() -> Settings:
    """The settings the environment asks for."""
    return Settings(default_storage(), default_namespace(), default_hosting(),
                    default_in_process(), default_durability(), tracing.switches(None))


def deferred_timeout() -> float:
    """Seconds a host waits for a caller's deferred call with no news of it from the
    caller (``$DOTDO_DEFERRED_TIMEOUT``, default 30); callers ping six times as often.
    Hosts read it when they start, from the environment Ray gives its workers."""
    raw = os.environ.get("DOTDO_DEFERRED_TIMEOUT")
    try:
        value = float(raw) if raw else DEFAULT_DEFERRED_TIMEOUT
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(
            f"DOTDO_DEFERRED_TIMEOUT must be a number of seconds above 0, got {raw!r}: "
            "set it so, or unset it for the default of 30"
        )
    return value
