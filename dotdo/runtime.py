"""The Ray side: starting or joining Ray, and the host actor that runs objects.

A *host* is a Ray actor; an *object* is a ``DurableObject`` instance living in a
host, keyed by ``(class name, id)``. Hosts are detached actors in namespace ``dotdo``
(get-if-exists, restarted without limit), named as :mod:`dotdo.hosting` says: one per
object (dedicated) or a pool shared by many objects (pooled).

A pooled host evicts objects idle for the pool's ``idle_timeout`` (no call in flight,
no event queued or handler running, no task of their own) and keeps a
:class:`~dotdo.journal.Directory` of the objects it must wake by itself: those with
background work when it died, and evicted ones at their alarm or next tick.

A host is an asyncio actor: calls to one object run on one event loop, one at a
time, interleaving only at ``await``, as in Durable Objects. Ray starts an async
actor's tasks out of order, so each caller numbers its calls and the host's
:class:`~dotdo.sequencer.Sequencer` starts them in that order. A host is restarted
by Ray after a crash and rebuilds each object from its SQLite file on the next call.

Promise arguments travel as top-level Ray dependencies, so Ray's core pushes a call
the moment its arguments exist. Meanwhile the caller lists the call as *deferred* in
its later calls to that object, and a keeper thread pings the host with the full list
every ``$DOTDO_DEFERRED_TIMEOUT / 6`` seconds, so the host keeps waiting for it while
the caller lives. When an argument fails, Ray fails the call without delivering it;
the caller notices (a callback on the argument) and tells the host to skip that
call's number, so the calls after it are not held up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import inspect
import itertools
import logging
import os
import socket
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from dotdo import registry
from dotdo.background import Activity
from dotdo.clock import Clock
from dotdo.context import _current, current_object
from dotdo.errors import ConfigError, EncodeError, MethodNotFoundError, ObjectError
from dotdo.hosting import Dedicated, Hosting, Pooled, from_env, host_name
from dotdo.hosting import check as check_hosting
from dotdo.ids import actor_name, storage_path
from dotdo.journal import Directory, Storage
from dotdo.object import DurableObject, lookup, public_methods
from dotdo.sequencer import Sequencer
from dotdo.stub import Promise, Stub, unpack_args

__all__ = ["init", "shutdown", "deploy", "submit", "Settings", "settings", "current_object"]

DEFAULT_NAMESPACE = "dotdo"
# Enough concurrent calls that a slow call never holds up the rest of the host.
_HOST_CONCURRENCY = 1000
DEFAULT_DEFERRED_TIMEOUT = 30.0  # seconds; see deferred_timeout()
# A call lists at most this many of its caller's deferred calls: the list travels
# with every call, and the host needs the lowest ones first.
_MAX_LISTED = 256
# Class names a host shares between its streams' keys; beyond this it starts over.
_MAX_INTERNED = 1024
_PROBE_TIMEOUT = 3.0  # seconds for a Ray address to accept a TCP connection
_SHIP_WAIT = 30.0  # seconds a driver waits for an App to import its handlers' modules
_log = logging.getLogger("dotdo")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where objects keep their files, which Ray namespace holds their actors, and
    the hosting of classes that do not choose their own."""

    storage: str
    namespace: str = DEFAULT_NAMESPACE
    hosting: Hosting = dataclasses.field(default_factory=Dedicated)


_settings: Settings | None = None


class _Line:
    """This process's numbered stream of calls to one host (see the sequencer)."""

    __slots__ = ("key", "handle", "token", "next", "lock", "deferred")

    def __init__(self, key: tuple[str, str], handle: Any) -> None:
        self.key = key
        self.handle = handle
        self.token = uuid.uuid4().hex
        self.next = 1
        self.lock = threading.Lock()
        # Calls Ray holds back until their promise arguments exist: number -> how
        # many of those arguments are still pending.
        self.deferred: dict[int, int] = {}


_handles: dict[str, _Line] = {}
_hosts: dict[str, Any] = {}  # host actor name -> handle
_notifier: ThreadPoolExecutor | None = None
_kept: set[_Line] = set()  # lines with deferred calls, pinged by the keeper thread
_kept_lock = threading.Lock()  # taken inside a line's lock, never around one
_keeper: threading.Thread | None = None


def _default_storage() -> str:
    return os.path.abspath(os.environ.get("DOTDO_STORAGE") or ".dotdo")


def _default_namespace() -> str:
    return os.environ.get("DOTDO_NAMESPACE") or DEFAULT_NAMESPACE


def _default_hosting() -> Hosting:
    return from_env(os.environ.get("DOTDO_HOSTING"))


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


def forget_handles() -> None:
    """Drop this process's actor handles and call streams (after Ray restarted)."""
    _handles.clear()
    _hosts.clear()
    with _kept_lock:
        _kept.clear()


def init(
    address: str | None = None,
    *,
    storage: str | None = None,
    namespace: str | None = None,
    hosting: Hosting | None = None,
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
    class and id in two namespaces are two objects. ``hosting`` (default
    ``$DOTDO_HOSTING`` or dedicated) applies to classes that do not choose their own.
    Extra keyword arguments go to ``ray.init``.
    Calling it is optional: the first call on a stub does it with the defaults.
    """
    global _settings
    namespace = _default_namespace() if namespace is None else namespace
    if not namespace or not isinstance(namespace, str):
        raise ConfigError(f"namespace must be a non-empty str, got {namespace!r}")
    hosting = _default_hosting() if hosting is None else check_hosting(hosting, "dotdo.init")
    wanted = Settings(os.path.abspath(storage) if storage else _default_storage(), namespace,
                      hosting)
    if ray.is_initialized():
        if ray._private.worker.global_worker.mode != ray.SCRIPT_MODE:
            raise ConfigError(
                "dotdo.init() ran inside a Ray worker: a module with handlers was imported "
                "there (by an App or a Worker) and its driver code ran too. Put driver "
                "code under `if __name__ == \"__main__\":`."
            )
        if address is not None and _settings is not None:
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
        forget_handles()
    # Only this user: the files hold every object's payloads and errors.
    os.makedirs(wanted.storage, mode=0o700, exist_ok=True)
    if _settings is not None and wanted.hosting != _settings.hosting:
        forget_handles()  # objects may now live on other actors
    if wanted != _settings:
        registry.ship_again()  # this cluster's or storage's Apps know nothing yet
    _settings = wanted
    return wanted


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
    """Disconnect from Ray (stopping it if this process started it). Objects'
    files stay; the next call starts or joins Ray again."""
    global _settings
    forget_handles()
    _settings = None
    if ray.is_initialized():
        ray.shutdown()


def settings() -> Settings:
    """The settings in force, initialising with the defaults if needed."""
    if _settings is None or not ray.is_initialized():
        if ray.is_initialized() and ray._private.worker.global_worker.mode != ray.SCRIPT_MODE:
            # A Ray task or actor of the user's calling a stub: Ray is up already.
            adopt(Settings(_default_storage(), _default_namespace(), _default_hosting()))
        else:
            init()
    assert _settings is not None
    return _settings


def adopt(conf: Settings) -> None:
    """Use ``conf`` in this Ray worker, as the driver that sent work here does."""
    global _settings
    _settings = conf


def hosting_of(cls: type[DurableObject]) -> Hosting:
    """How objects of ``cls`` are hosted: the class's choice, else the default (but
    never a pool for a class that wants a process per object)."""
    hosting = cls._dotdo_hosting or settings().hosting
    if cls._dotdo_own_process and isinstance(hosting, Pooled):
        return Dedicated()
    return hosting


def _line(cls: type[DurableObject], object_id: str) -> _Line:
    name = actor_name(cls.__name__, object_id)
    line = _handles.get(name)
    if line is None:
        conf, hosting = settings(), hosting_of(cls)
        host = host_name(cls.__name__, object_id, hosting)
        handle = _hosts.get(host)
        if handle is None:
            handle = _hosts[host] = _start_host(host, cls, object_id, hosting, conf)
        line = _handles[name] = _Line((cls.__name__, object_id), handle)
    return line


def _start_host(host: str, cls: type[DurableObject], object_id: str, hosting: Hosting,
                conf: Settings) -> Any:
    """The handle of actor ``host``, created unless it exists (get-if-exists)."""
    options = dict(
        name=host,
        namespace=conf.namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        max_concurrency=_HOST_CONCURRENCY,
    )
    options.update(hosting.actor_options)
    if isinstance(hosting, Pooled):
        return _Host.options(**options).remote(
            {cls.__name__: cls}, conf, None, (host, hosting.idle_timeout))
    return _Host.options(**options).remote({cls.__name__: cls}, conf, (cls.__name__, object_id))


def submit(
    cls: type[DurableObject], object_id: str, method: str, args: tuple, kwargs: dict, deps: list
) -> ray.ObjectRef:
    """Send one call to an object's host (arguments as :func:`~dotdo.stub.pack_args`
    leaves them); returns the ``ObjectRef`` of its result."""
    if not ray.is_initialized():
        forget_handles()
    if registry.unshipped() and any(registry.unshipped().values()):
        _ship_registrations()
    line = _line(cls, object_id)
    with line.lock:  # a number is used only by a call that was really sent
        seq = line.next
        deferred, more = _listed(line.deferred)
        # One argument of lists, dicts and scalars, plus the dependencies: Ray
        # serialises each argument on its own, and those types through msgpack,
        # cheaper than the pickle it falls back to for tuples.
        message = [cls.__name__, object_id, method, list(args), kwargs,
                   deferred, more, line.token, seq]
        try:
            ref = line.handle.call.remote(message, *deps)
        except TypeError as exc:  # Ray could not pickle an argument
            first = str(exc).splitlines()[0]
            raise EncodeError(
                f"cannot send the arguments of {cls.__name__}.{method}(): {first}"
            ) from None
        line.next = seq + 1
        if deps:
            line.deferred[seq] = len(deps)
            _keep_alive(line)
    for dep in deps:
        dep._on_completed(lambda value, line=line, seq=seq: _dep_done(line, seq, value))
    return ref


def _listed(deferred: dict[int, int]) -> tuple[list[int] | None, bool]:
    """What a call tells its host of the earlier calls Ray still holds back: at
    most ``_MAX_LISTED`` numbers, the lowest, and whether there are more."""
    if len(deferred) <= _MAX_LISTED:
        return list(deferred) or None, False
    # Keys are in call order, so the first ones are the lowest.
    return list(itertools.islice(deferred, _MAX_LISTED)), True


def _keep_alive(line: _Line) -> None:
    """Have the keeper thread ping ``line``'s host while it has deferred calls
    (called under ``line.lock``)."""
    global _keeper
    with _kept_lock:
        _kept.add(line)
        if _keeper is None:
            every = deferred_timeout() / 6  # pings a host may miss before giving up: 5
            _keeper = threading.Thread(target=_keep_pinging, args=(every,),
                                       name="dotdo-keep", daemon=True)
            _keeper.start()


def _keep_pinging(every: float) -> None:
    """Tell each host, every ``every`` seconds, which calls this process still
    holds back for it; ends when none are left."""
    global _keeper
    while True:
        time.sleep(every)
        batches: dict[int, tuple[Any, list]] = {}  # one message per host
        with _kept_lock:
            lines = list(_kept)
        for line in lines:
            with line.lock:
                if not line.deferred:
                    with _kept_lock:
                        _kept.discard(line)
                    continue
                keep = [*line.key, line.token, list(line.deferred), line.next]
            batches.setdefault(id(line.handle), (line.handle, []))[1].append(keep)
        for handle, streams in batches.values():
            try:
                handle.keep.remote(streams)
            except Exception:  # noqa: BLE001 - Ray shut down, or the host is gone
                _log.debug("dotdo: cannot ping a host about deferred calls", exc_info=True)
        with _kept_lock:
            if not _kept:
                _keeper = None
                return


def _ship_registrations() -> None:
    """Tell each App which modules registered its handlers, before any other call,
    so that the App's own process imports them (drivers only)."""
    settings()
    if ray._private.worker.global_worker.mode != ray.SCRIPT_MODE:
        registry.unshipped().clear()  # inside a host: module handlers live in its App
        return
    from dotdo.app import App

    for app, specs in list(registry.unshipped().items()):
        if specs:
            batch = set(specs)
            registry.mark_shipped(app, batch)  # first: the adopt call comes through here
            # Wait for it: until the App has them, it would tell others (a queue
            # deciding whether to send Job events) that nobody listens.
            try:
                kept = Stub(App, app).adopt(sorted(list(s) for s in batch)).result(_SHIP_WAIT)
                if missing := sorted(s for s in batch if list(s) not in kept):
                    _log.warning("dotdo: App(%r) did not keep %s: its process could not "
                                 "import them, or they registered nothing there (see the "
                                 "App's log)", app, missing)
            except TimeoutError:
                _log.warning("dotdo: App(%r) is slow to import %s; going on", app, sorted(batch))
            except ValueError as exc:  # refused: sending it again would be refused again
                _log.warning("dotdo: App(%r) refused %s: %s", app, sorted(batch), exc)
            except Exception:  # noqa: BLE001 - the App is away: tell it at the next call
                registry.unshipped().setdefault(app, set()).update(batch)
                _log.warning("dotdo: App(%r) could not take %s yet; will try again", app,
                             sorted(batch), exc_info=True)


def deploy(app: str = registry.DEFAULT_APP) -> list:
    """Ship this driver's module-level handlers and schedules to ``App(app)`` and
    wait until it runs them; from then on they run with no driver attached."""
    from dotdo.app import App

    return Stub(App, app).adopt([]).result()


def _dep_done(line: _Line, seq: int, value: Any) -> None:
    """A promise argument of call ``seq`` exists; if it failed, Ray will fail the call
    without delivering it, so tell the host to skip that number."""
    failed = isinstance(value, BaseException)
    with line.lock:
        left = line.deferred.get(seq)
        if left is None:
            return
        if failed or left == 1:
            del line.deferred[seq]
        else:
            line.deferred[seq] = left - 1
    if failed:
        global _notifier
        if _notifier is None:  # Ray runs this callback on its own thread: send elsewhere
            _notifier = ThreadPoolExecutor(1, thread_name_prefix="dotdo-skip")
        _notifier.submit(line.handle.skip.remote, *line.key, line.token, seq)


def actor_handle(stub) -> Any:
    """The Ray actor handle hosting ``stub``'s object (for tests and operators)."""
    return _line(stub._cls, stub._id).handle


class _HostActor:
    """Runs durable objects; see the module docstring."""

    def __init__(
        self,
        classes: dict[str, type[DurableObject]],
        conf: Settings,
        key: tuple[str, str] | None = None,
        pool: tuple[str, float | None] | None = None,
    ) -> None:
        adopt(conf)  # stubs called inside objects use the settings of their creator
        self._classes = dict(classes)
        self._conf = conf
        self._objects: dict[tuple[str, str], DurableObject] = {}
        self._methods: dict[type, frozenset[str]] = {}
        self._calls: dict[tuple[str, str], int] = {}
        self._inflight: dict[tuple[str, str], int] = {}
        # Live objects with nothing in flight, oldest first: the eviction candidates.
        self._idle_since: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._interned: dict[str, str] = {}
        self._sequencer = Sequencer(fresh=not _restarted(), max_streams=2_000,
                                    deferred_timeout=deferred_timeout())
        self._clock = Clock()
        self._idle_timeout = pool[1] if pool else None
        self._evicted = 0
        self._trimmed_at = 0
        self._ready = False
        self._directory: Directory | None = None
        self._wake_at: dict[tuple[str, str], float] = {}
        self._wakes: list[tuple[float, tuple[str, str]]] = []
        if pool is not None:
            self._directory = Directory(storage_path(conf.storage, "_dotdo_hosts", pool[0]))
            for obj_key, at in self._directory.rows():
                self._wake_later(obj_key, at)
        # Start now, not at the next call: after a restart, objects' pending events,
        # schedules and alarms must resume with nobody calling.
        _wake_self(list(key) if key else None)

    def _setup(self) -> None:
        """First thing on the actor's event loop: count the tasks objects start, and
        start a pooled host's round of evictions and wake-ups."""
        self._ready = True
        loop = asyncio.get_running_loop()
        previous = loop.get_task_factory()

        def factory(loop, coro, **kwargs):
            task = previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)
            obj = _current.get()
            if obj is not None:  # a task of the object's own keeps it in memory
                tasks = obj.__dict__.setdefault("_dotdo_tasks", set())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self._mark_live(obj)
            return task

        loop.set_task_factory(factory)
        if self._directory is not None:
            loop.create_task(self._tend())

    def _class(self, name: str) -> type[DurableObject]:
        cls = self._classes.get(name) or lookup(name)
        if cls is None:
            raise ObjectError(
                f"this host has no durable object class {name!r}: define it in a module "
                "the Ray workers can import"
            )
        return cls

    def _activate(self, key: tuple[str, str]) -> DurableObject:
        cls = self._class(key[0])
        path = storage_path(self._conf.storage, key[0], key[1])
        storage = Storage(path, key[0], key[1], compact=self._directory is not None)
        obj = cls.__new__(cls)
        obj.id, obj.storage = key[1], storage
        obj._dotdo_live = False
        activity = obj._dotdo_activity = Activity(obj, self._clock)
        storage.now = self._clock.now
        storage.on_alarm_change = activity.alarm_changed
        if self._directory is not None:
            activity.on_busy = lambda: self._mark_live(obj)
        token = _current.set(obj)  # so that __init__ may subscribe handlers itself
        try:
            obj.__init__()
        except BaseException:
            storage.close()
            raise
        finally:
            _current.reset(token)
        self._objects[key] = obj
        if not self._inflight.get(key):
            self._idle_since[key] = time.monotonic()
        self._wake_at.pop(key, None)
        activity.start()
        return obj

    def _mark_live(self, obj: DurableObject) -> None:
        """``obj`` has background work: a host that dies must bring it back."""
        if self._directory is not None and not obj._dotdo_live:
            obj._dotdo_live = True
            self._directory.live((type(obj).__name__, obj.id))

    # -- a pooled host's housekeeping -----------------------------------------------

    def _wake_later(self, key: tuple[str, str], at: float) -> None:
        self._wake_at[key] = at
        heapq.heappush(self._wakes, (at, key))

    async def _tend(self) -> None:
        timeout = self._idle_timeout
        tick = 1.0 if timeout is None else min(1.0, max(0.05, timeout / 4))
        while True:
            try:
                self._wake_due()
                if timeout is not None:
                    self._evict_idle(time.monotonic() - timeout)
            except Exception:  # noqa: BLE001 - housekeeping must go on
                logging.getLogger("dotdo").exception("dotdo: pooled host housekeeping failed")
            await self._clock.sleep(tick)

    def _wake_due(self) -> None:
        now = self._clock.now()
        while self._wakes and self._wakes[0][0] <= now:
            at, key = heapq.heappop(self._wakes)
            if self._wake_at.get(key) != at or key in self._objects:
                continue  # superseded, or awake already
            try:
                self._activate(key)
            except Exception:  # noqa: BLE001 - its next call reports it to the caller
                self._wake_at.pop(key, None)
                logging.getLogger("dotdo").exception("dotdo: cannot wake %s/%s", *key)

    def _evictable(self, key: tuple[str, str], obj: DurableObject) -> bool:
        return (not self._inflight.get(key) and obj._dotdo_activity.idle
                and not obj.__dict__.get("_dotdo_tasks"))

    def _evict_idle(self, cutoff: float) -> None:
        asleep: list[tuple[tuple[str, str], float | None]] = []
        now = time.monotonic()
        while self._idle_since:
            key, since = next(iter(self._idle_since.items()))
            if since > cutoff:
                break
            del self._idle_since[key]
            obj = self._objects.get(key)
            if obj is None:
                continue
            if not self._evictable(key, obj):
                self._idle_since[key] = now  # busy by itself: look again later
                continue
            row = self._release(key, obj)
            if row is not None:
                asleep.append(row)
        if asleep:
            self._directory.asleep_many(asleep)
        if self._evicted - self._trimmed_at >= _TRIM_AFTER and not self._idle_since:
            # A burst of evictions is over: give the freed memory back to the OS, so
            # the host's size follows its live objects, not its busiest moment.
            self._trimmed_at = self._evicted
            _malloc_trim()

    def _release(
        self, key: tuple[str, str], obj: DurableObject
    ) -> tuple[tuple[str, str], float | None] | None:
        """Take ``obj`` out of memory; returns its directory row ``(key, wake_at)`` when
        the directory must learn of it (it was live, or must wake by itself)."""
        activity = obj._dotdo_activity
        wake_at = activity.next_wake()
        activity.stop()
        for task in list(obj.__dict__.get("_dotdo_tasks", ())):
            task.cancel()
        obj.storage.close()
        del self._objects[key]
        self._idle_since.pop(key, None)
        self._calls.pop(key, None)
        self._evicted += 1
        if wake_at is not None:
            self._wake_later(key, wake_at)
        if self._directory is None or not (obj._dotdo_live or wake_at is not None):
            return None
        return key, wake_at

    # -- calls ------------------------------------------------------------------------

    async def wake(self, key: list | None) -> None:
        """Activate an object now (its background work resumes)."""
        if not self._ready:
            self._setup()
        if key is None:
            return
        key = tuple(key)
        if key not in self._objects:
            try:
                self._activate(key)
            except Exception:  # noqa: BLE001 - the next call reports it to its caller
                logging.getLogger("dotdo").exception("dotdo: cannot activate %s/%s", *key)

    async def evict(self, class_name: str, object_id: str, forget: bool = False) -> bool:
        """Take an idle object out of memory now (tests, operators); False if it is
        busy or not in memory. ``forget`` retires it even if busy (its own tasks are
        cancelled) and stops waking it for its alarm or schedules until its next call."""
        key = (class_name, object_id)
        obj = self._objects.get(key)
        if obj is None or not (forget or self._evictable(key, obj)):
            if forget:
                self._forget(key)
            return False
        row = self._release(key, obj)
        if forget:
            self._forget(key)
        elif row is not None:
            self._directory.asleep(*row)
        return True

    def _forget(self, key: tuple[str, str]) -> None:
        self._wake_at.pop(key, None)
        if self._directory is not None:
            self._directory.asleep(key, None)

    async def shift_clock(self, seconds: float) -> float:
        """Move this host's clock (tests: 'three hours pass'); returns its offset."""
        self._clock.shift(seconds)
        return self._clock.offset

    def _method(self, obj: DurableObject, name: str):
        cls = type(obj)
        names = self._methods.get(cls)
        if names is None:
            names = self._methods[cls] = frozenset(public_methods(cls))
        if name not in names:
            raise MethodNotFoundError(
                f"{cls.__name__} has no public method {name!r}; its methods are: "
                f"{', '.join(sorted(names)) or '(none)'}"
            )
        return getattr(obj, name)

    async def call(self, message: list, *deps: Any) -> Any:
        """Run one call ``[class, id, method, args, kwargs, deferred, more, stream,
        seq]`` on object ``(class, id)``, after the earlier calls of its caller
        (``deferred`` and ``more``: see :meth:`Sequencer.arrive`); ``deps`` are the
        values of its promise arguments, resolved by Ray."""
        class_name, object_id, method, args, kwargs, deferred, more, stream, seq = message
        if not self._ready:
            self._setup()
        key = (_intern(self._interned, class_name), object_id)
        turn = (key, stream)
        self._inflight[key] = self._inflight.get(key, 0) + 1
        self._idle_since.pop(key, None)
        try:
            try:  # however this ends (cancelled too), the caller's next call goes on
                admitted = self._sequencer.arrive(turn, seq, deferred, more)
                if admitted is not None:
                    await admitted
                obj = self._objects.get(key) or self._activate(key)
                self._calls[key] = self._calls.get(key, 0) + 1
                fn = self._method(obj, method)
            finally:
                self._sequencer.leave(turn, seq)
            args, kwargs = unpack_args(args, kwargs, deps)
            token = _current.set(obj)
            try:
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            finally:
                _current.reset(token)
            if isinstance(result, Promise):  # returning a promise returns its value
                result = await result
            return result
        finally:
            left = self._inflight.pop(key) - 1
            if left:
                self._inflight[key] = left
            elif key in self._objects:
                self._idle_since[key] = time.monotonic()

    async def skip(self, class_name: str, object_id: str, stream: str, seq: int) -> None:
        """Call ``seq`` of ``stream`` will never arrive: its caller saw an argument fail."""
        self._sequencer.skip(((class_name, object_id), stream), seq)

    async def keep(self, streams: list) -> None:
        """Callers still hold back these calls: ``[class, id, stream, deferred,
        upto]`` each (see :meth:`Sequencer.keep`)."""
        for class_name, object_id, stream, deferred, upto in streams:
            self._sequencer.keep(((class_name, object_id), stream), deferred, upto)

    async def stats(self) -> dict[str, Any]:
        """Process id, objects in memory, calls per object in memory, calls waiting
        for their turn, evictions (tests and operators use this)."""
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "objects": sorted(self._objects),
            "calls": {f"{c}/{i}": n for (c, i), n in self._calls.items()},
            "gaps_skipped": self._sequencer.skipped,
            "waiting": self._sequencer.waiting(),
            "evicted": self._evicted,
            "sleeping": len(self._wake_at),
        }


_TRIM_AFTER = 256  # evictions


def _intern(table: dict[str, str], name: str) -> str:
    """``name``, or the equal string met before: every stream key parked in the
    sequencer holds its class name, so share one copy. Starting over past
    ``_MAX_INTERNED`` names only costs copies."""
    if len(table) >= _MAX_INTERNED and name not in table:
        table.clear()
    return table.setdefault(name, name)


def _malloc_trim() -> None:
    """Return free heap pages to the OS (glibc only; elsewhere a no-op)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _wake_self(key: list | None) -> None:
    """Have this actor call its own ``wake`` once it serves calls. A call sent from
    the constructor of a restarting actor can fail with "the actor is restarting"
    (Ray sees it mid-restart): a thread keeps trying until the call is taken."""
    handle = ray.get_runtime_context().current_actor

    def send() -> None:
        for attempt in range(100):
            try:
                # A future, not ray.get: this thread is made for blocking.
                handle.wake.remote(key).future().result(timeout=60)
                return
            except (ray.exceptions.ActorUnavailableError, TimeoutError):
                time.sleep(min(0.05 * 2 ** attempt, 2.0))
            except ray.exceptions.RayActorError:
                return  # this actor is gone for good

    threading.Thread(target=send, name="dotdo-wake", daemon=True).start()


def _restarted() -> bool:
    """Whether this actor is a restart (Ray's check warns about its own deprecated
    ``actor_id``; the warning is Ray's business, not our users')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


_Host = ray.remote(_HostActor)
