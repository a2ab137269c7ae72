"""Where this process's objects run: Ray started or joined (or, in in-process mode,
this process's one host), and the :class:`~dotdo.settings.Settings` in force.

:func:`init` checks the address before Ray sees it (Ray hangs for minutes on one where
nothing answers), presents a cluster's auth token, starts or joins Ray and warms up its
serialisation; :func:`settings` initialises with the defaults when nothing did.
Whenever the hosts this process called may have changed (Ray started or left, other
storage, hosting or mode), what the client keeps of them is dropped
(:func:`on_hosts_change`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import ray

from dotdo import registry
from dotdo import settings as _conf
from dotdo.errors import ConfigError
from dotdo.hosting import Hosting
from dotdo.hosting import check as check_hosting
from dotdo.inprocess import LocalHost
from dotdo.settings import Settings

__all__ = ["init", "shutdown", "settings", "cluster", "running_cluster", "in_ray_worker",
           "pickle_by_value", "on_hosts_change", "local_host", "in_process_host"]

_PROBE_TIMEOUT = 3.0  # seconds for a Ray address to accept a TCP connection
_log = logging.getLogger("dotdo")
_local: LocalHost | None = None  # the host of every object in in-process mode
# Called when the hosts may have changed: the client's forget_handles.
_forgetters: list[Callable[[], None]] = []


def on_hosts_change(forget: Callable[[], None]) -> None:
    """Have ``forget`` called whenever the hosts this process called may have changed:
    Ray started, joined or shut down, or settings that move objects to other hosts."""
    _forgetters.append(forget)


def _forget_handles() -> None:
    """Drop what the client keeps of the hosts (its lines and outboxes)."""
    for forget in _forgetters:
        forget()


def init(
    address: str | None = None,
    *,
    storage: str | None = None,
    namespace: str | None = None,
    hosting: Hosting | None = None,
    in_process: bool | None = None,
    durability: str | None = None,
    **ray_kwargs: Any,
) -> Settings:
    """Start or join Ray and choose where objects store their files.

    With no ``address`` (nor ``$RAY_ADDRESS``) this driver joins the cluster ``ray
    start`` recorded on this machine, else starts a local Ray (dashboard off), as
    it does, with a warning, when the recorded cluster is gone; with
    ``address="auto"``, ``"host:port"`` or ``"ray://..."`` it joins that cluster, and
    raises ``ConfigError`` if nothing answers there. ``storage`` defaults to
    ``$DOTDO_STORAGE`` or ``./.dotdo`` (created readable by this user only); on a
    cluster it must be a path every node sees. ``namespace`` (default ``$DOTDO_NAMESPACE`` or
    ``"dotdo"``) is the Ray namespace of the objects' actors: objects of the same
    class and id in two namespaces are two objects, with two files: a namespace other
    than ``"dotdo"`` keeps its files under ``<storage>/@<namespace>``. ``hosting`` (default
    ``$DOTDO_HOSTING`` or dedicated) applies to classes that do not choose their own.
    Extra keyword arguments go to ``ray.init``. ``in_process=True`` (default
    ``$DOTDO_IN_PROCESS``) runs every object in this process with no Ray at all (see
    :mod:`dotdo.inprocess`): for tests and scripts; ``address`` and hosting then do not apply.
    ``durability`` (default ``$DOTDO_DURABILITY`` or ``"full"``): ``"full"`` puts every
    commit on disk before it is acknowledged (it survives a power cut); ``"normal"``
    is faster and survives the death of a process, not of the machine.
    Calling it is optional: the first call on a stub does it with the defaults.
    """
    previous = _conf.current()
    in_process = _conf.default_in_process() if in_process is None else bool(in_process)
    namespace = _conf.default_namespace() if namespace is None else namespace
    namespace = _conf.check_namespace(namespace)
    hosting = _conf.default_hosting() if hosting is None else check_hosting(hosting, "dotdo.init")
    durability = (_conf.default_durability() if durability is None
                  else _conf.check_durability(durability, "dotdo.init"))
    wanted = Settings(os.path.abspath(storage) if storage else _conf.default_storage(), namespace,
                      hosting, in_process, durability)
    if in_process:
        if address is not None or ray_kwargs:
            raise ConfigError("dotdo.init(in_process=True) runs objects in this process: "
                              "give no address or Ray options (or drop in_process to use Ray)")
        return _use(wanted, previous)
    _stop_local()
    if ray.is_initialized():
        if in_ray_worker():
            raise ConfigError(
                "dotdo.init() ran inside a Ray worker: a module with handlers was imported "
                "there (by an App or a Worker) and its driver code ran too. Put driver "
                "code under `if __name__ == \"__main__\":`."
            )
        if address is not None and previous is not None:
            raise ConfigError(
                "Ray is already initialised in this process: call dotdo.shutdown() "
                "before dotdo.init(address=...) to join another cluster"
            )
    else:
        address = _address_to_join(address, ray_kwargs.get("_temp_dir"))
        if address not in (None, "local"):
            _use_auth_token_if_present()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray_kwargs.setdefault("include_dashboard", False)
        ray_kwargs.setdefault("logging_level", "warning")
        ray.init(address=address, **ray_kwargs)
        _warm_up()
        _forget_handles()
    return _use(wanted, previous)


def _warm_up() -> None:
    """Pay now what Ray pays at this process's first call: building its serialisation
    context imports pydantic and starlette when they are installed (~0.1 s), which
    would otherwise land in the first round of calls a program makes."""
    try:
        ray._private.worker.global_worker.get_serialization_context()
    except Exception:  # noqa: BLE001 - only an optimisation: the first call builds it
        _log.debug("dotdo: could not build Ray's serialisation context early", exc_info=True)


def _use(wanted: Settings, previous: Settings | None) -> Settings:
    # Only this user: the files hold every object's payloads and errors.
    os.makedirs(wanted.root, mode=0o700, exist_ok=True)
    if previous is not None and (wanted.hosting, wanted.in_process, wanted.root) != (
            previous.hosting, previous.in_process, previous.root):
        _forget_handles()  # objects may now live on other hosts
        _stop_local()
    if wanted != previous:
        registry.ship_again()  # this cluster's or storage's Apps know nothing yet
    _conf.use(wanted)
    return wanted


def _stop_local() -> None:
    """End in-process hosting, if this process had it."""
    global _local
    if _local is not None:
        local, _local = _local, None
        _forget_handles()
        local.close()


def _address_to_join(address: str | None, temp_dir: str | None) -> str | None:
    """The address ``ray.init`` should get, as Ray would pick it (the argument, else
    ``$RAY_ADDRESS``, else the cluster ``ray start`` recorded in Ray's temp dir), but
    checked first: Ray hangs for minutes on an address where no GCS answers.

    A recorded cluster that does not answer is stale (its head was killed without
    ``ray stop``): with no address asked for, start a local Ray of our own instead.
    """
    if address in (None, "auto"):
        address = os.environ.get("RAY_ADDRESS") or address
    if address not in (None, "auto"):
        if address != "local" and not _answers(address):
            raise ConfigError(
                f"no Ray cluster answers at {address} (given as dotdo.init's address or "
                "$RAY_ADDRESS): start it (ray start --head), or fix or unset the address "
                "to start a local Ray"
            )
        return address
    path = ray._private.utils.get_ray_address_file(temp_dir)
    recorded = ray._private.utils.read_ray_address(temp_dir)
    if not recorded or _answers(recorded):
        return recorded or address
    if address == "auto":
        raise ConfigError(
            f"address='auto' names the Ray cluster recorded in {path}, {recorded}, and "
            f"nothing answers there: start it again (ray start --head), or run `ray stop` "
            f"(or delete {path}) and call dotdo.init() to start a local Ray"
        )
    _log.warning(
        "dotdo: %s records a Ray cluster at %s that does not answer (its head was "
        "stopped without `ray stop`); starting a local Ray instead. Run `ray stop` or "
        "delete %s to silence this.", path, recorded, path,
    )
    return "local"


def running_cluster() -> str | None:
    """The Ray cluster ``init()`` with no address would join: ``$RAY_ADDRESS`` (``init``
    says if nothing answers there), else the one ``ray start`` recorded on this machine
    if it answers; None when ``init()`` would start a Ray of its own (which ends with
    this process)."""
    address = os.environ.get("RAY_ADDRESS")
    if address:
        return address
    recorded = ray._private.utils.read_ray_address(None)
    return recorded if recorded and _answers(recorded) else None


def _answers(address: str) -> bool:
    """Whether ``host:port`` accepts a TCP connection; True for other forms
    (``ray://...``), which Ray checks itself."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return True
    try:
        with socket.create_connection((host.strip("[]"), int(port)), _PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def pickle_by_value(module: Any) -> None:
    """Have Ray send the classes and functions of ``module`` by value (for modules no
    other process can import, like a script an App loaded from its file)."""
    ray.cloudpickle.register_pickle_by_value(module)


def _use_auth_token_if_present() -> None:
    """A driver joining a token-protected cluster must present the token, or Ray
    refuses it with ``InvalidAuthToken``; Ray only does this by itself for clusters
    it starts. Ray caches ``RAY_AUTH_MODE`` at import, so use its own switch."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication import authentication_token_setup as auth
    except ImportError:  # a Ray without token authentication
        return
    auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def shutdown() -> None:
    """Disconnect from Ray (stopping it if this process started it), or stop the
    objects of in-process hosting. Objects' files stay; the next call starts or joins
    Ray again."""
    _forget_handles()
    _stop_local()
    _conf.use(None)
    if ray.is_initialized():
        ray.shutdown()


def settings() -> Settings:
    """The settings in force, initialising with the defaults if needed."""
    conf = _conf.current()
    if conf is None or not (conf.in_process or ray.is_initialized()):
        if ray.is_initialized() and in_ray_worker():
            # A Ray task or actor of the user's calling a stub: Ray is up already.
            _conf.use(_conf.defaults())
        else:
            init()
        conf = _conf.current()
    assert conf is not None
    return conf


def cluster() -> dict[str, Any]:
    """The Ray cluster this process is on, for operators: ``{"address", "nodes":
    [{"id", "address", "alive", "cpus", "memory"}]}`` (no nodes in process)."""
    if settings().in_process:
        return {"address": None, "nodes": []}
    nodes = [{"id": n["NodeID"], "address": n.get("NodeManagerAddress"), "alive": bool(n["Alive"]),
              "cpus": n.get("Resources", {}).get("CPU", 0),
              "memory": n.get("Resources", {}).get("memory", 0)} for n in ray.nodes()]
    return {"address": ray.get_runtime_context().gcs_address, "nodes": nodes}


def in_ray_worker() -> bool:
    """Whether this process is a Ray worker (a host, a task), not a driver."""
    return ray.is_initialized() and ray._private.worker.global_worker.mode != ray.SCRIPT_MODE


def local_host() -> LocalHost | None:
    """The in-process host, if one runs in this process."""
    return _local


def in_process_host(conf: Settings) -> LocalHost:
    """This process's one host in in-process mode, started at its first call."""
    global _local
    if _local is None:
        _local = LocalHost(conf.root, conf.durability)
    return _local
