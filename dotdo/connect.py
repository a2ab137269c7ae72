"""Where this process's objects run: Ray started or joined (or, in in-process mode,
this process's one host), and the :class:`~dotdo.settings.Settings` in force.

:func:`init` checks the address before Ray sees it (Ray hangs for minutes on one where
nothing answers), presents a cluster's auth token, starts or joins Ray and warms up its
serialisation; :func:`settings` initialises with the defaults when nothing did.
A process that starts a Ray of its own records its address under the storage root
(:func:`ray_record`) while it runs, so that one-off ``dotdo`` commands there join it.
Whenever the hosts this process called may have changed (Ray started or left, other
storage, hosting or mode), what the client keeps of them is dropped
(:func:`on_hosts_change`).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import shlex
import socket
import sys
from collections.abc import Callable
from typing import Any

import ray

from dotdo import logs, registry
from dotdo import settings as _conf
from dotdo.errors import ConfigError
from dotdo.hosting import Hosting
from dotdo.hosting import check as check_hosting
from dotdo.inprocess import LocalHost
from dotdo.settings import Settings
from dotdo.tracing import setup as tracing_setup
from dotdo.tracing import switches as tracing_switches

__all__ = ["init", "shutdown", "settings", "cluster", "running_cluster", "in_ray_worker",
           "pickle_by_value", "on_hosts_change", "local_host", "in_process_host", "RayRecord",
           "ray_record", "RAY_RECORD"]

_PROBE_TIMEOUT = 3.0  # seconds for a Ray address to accept a TCP connection
_log = logging.getLogger("dotdo")
_local: LocalHost | None = None  # the host of every object in in-process mode
# Called when the hosts may have changed: the client's forget_handles.
_forgetters: list[Callable[[], None]] = []
RAY_RECORD = ".ray-address"  # under the storage root: the Ray a process there started
_PROGRAM_CHARS = 80  # of the command line a record keeps, to name the program that runs
_recorded: str | None = None  # the record this process wrote, removed when its Ray ends


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
    tracing: bool | None = None,
    **ray_kwargs: Any,
) -> Settings:
    """Start or join Ray and choose where objects store their files.

    With no ``address`` (nor ``$RAY_ADDRESS``) this driver joins the cluster ``ray
    start`` recorded on this machine, else starts a local Ray (dashboard off), as
    it does, with a warning, when the recorded cluster is gone; with
    ``address="auto"``, ``"host:port"`` or ``"ray://..."`` it joins that cluster, and
    raises ``ConfigError`` if nothing answers there. A Ray it starts is recorded in
    ``<storage>/.ray-address`` until it ends, and ``dotdo`` commands run with that
    storage join it. ``storage`` defaults to
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
    ``tracing=True`` exports OpenTelemetry spans from this process and every host it
    starts (default: as the standard ``OTEL_*`` variables say; see :mod:`dotdo.tracing`).
    Calling it is optional: the first call on a stub does it with the defaults.
    """
    previous = _conf.current()
    in_process = _conf.default_in_process() if in_process is None else bool(in_process)
    namespace = _conf.default_namespace() if namespace is None else namespace
    namespace = _conf.check_namespace(namespace)
    hosting = _conf.default_hosting() if hosting is None else check_hosting(hosting, "dotdo.init")
    durability = (_conf.default_durability() if durability is None
                  else _conf.check_durability(durability, "dotdo.init"))
    switches = tracing_switches(tracing)
    tracing_setup(switches)
    logs.configure()
    wanted = Settings(os.path.abspath(storage) if storage else _conf.default_storage(), namespace,
                      hosting, in_process, durability, switches)
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
        starts = address in (None, "local")  # else it joins a running cluster
        if not starts:
            _use_auth_token_if_present()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray_kwargs.setdefault("include_dashboard", False)
        ray_kwargs.setdefault("logging_level", "warning")
        ray.init(address=address, **ray_kwargs)
        _warm_up()
        _forget_handles()
        conf = _use(wanted, previous)
        if starts:
            _record_ray(conf.storage)
        return conf
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


@dataclasses.dataclass(frozen=True)
class RayRecord:
    """A Ray that a dotdo process started for a storage root, as it recorded it there:
    its GCS ``address``, and the ``pid``, ``host`` and command line (``program``) of
    the process, whose Ray ends with it. ``path``: the record's file."""

    address: str
    pid: int
    host: str
    program: str
    path: str

    def answers(self) -> bool:
        """Whether the process still runs (when on this machine) and its Ray answers."""
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass  # another user's process: it runs
        return _answers(self.address)


def ray_record(storage: str) -> RayRecord | None:
    """The Ray recorded under the storage root ``storage``, if a record is there (it
    may be stale: its process killed; :meth:`RayRecord.answers` tells)."""
    path = os.path.join(storage, RAY_RECORD)
    try:
        with open(path) as f:
            fields = json.load(f)
        return RayRecord(str(fields["address"]), int(fields["pid"]), str(fields["host"]),
                         str(fields.get("program", "")), path)
    except (OSError, ValueError, KeyError, TypeError):  # none, or half a file from before
        return None


def _program() -> str:
    """This process's command line, its middle left out if long: ``dotdo serve --port 8765``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:  # python -m
        head = ["python", "-m", spec.name.removesuffix(".__main__")]
    else:
        head = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"]
    line = shlex.join(head + sys.argv[1:])
    if len(line) <= _PROGRAM_CHARS:
        return line
    half = (_PROGRAM_CHARS - 5) // 2  # the program and its last words: serve --port 8765
    return f"{line[:half]} ... {line[-half:]}"


def _record_ray(storage: str) -> None:
    """Record the Ray this process started under ``storage``, written whole (a reader
    never sees half of it), unless another process's Ray recorded there still answers:
    commands go on joining that one. Removed when this process's Ray ends."""
    global _recorded
    path = os.path.join(storage, RAY_RECORD)
    current = ray_record(storage)
    if current is not None and current.pid != os.getpid() and current.answers():
        return
    fields = {"address": ray.get_runtime_context().gcs_address, "pid": os.getpid(),
              "host": socket.gethostname(), "program": _program()}
    partial = f"{path}.{os.getpid()}.partial"
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(fields, f)
        os.replace(partial, path)
    except OSError as exc:  # only a convenience for commands: the program goes on
        _log.debug("dotdo: could not record this Ray's address in %s: %s", path, exc)
        return
    _recorded = path
    atexit.unregister(_forget_record)  # once, however often this process starts Ray
    atexit.register(_forget_record)  # after Ray's own, so it runs before Ray ends


def _forget_record() -> None:
    """Remove the record this process wrote, if it is still this process's."""
    global _recorded
    path, _recorded = _recorded, None
    if path is None:
        return
    record = ray_record(os.path.dirname(path))
    if record is not None and record.pid == os.getpid():
        try:
            os.remove(path)
        except OSError:
            pass  # gone already


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
    _forget_record()
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
