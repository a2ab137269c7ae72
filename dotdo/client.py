"""The client: sending calls to the hosts of objects.

:func:`submit` sends one call to the host of an object (started or joined by
:mod:`dotdo.connect`). Each process keeps one numbered *line* of calls per object it
calls (its calls start in that order, see :mod:`dotdo.sequencer`).

Promise arguments travel as top-level Ray dependencies, so Ray's core pushes a call
the moment its arguments exist. Meanwhile the caller lists the call as *deferred* in
its later calls to that object, and a keeper thread pings the host with the full list
every ``$DOTDO_DEFERRED_TIMEOUT / 6`` seconds, so the host keeps waiting for it while
the caller lives. When an argument fails, Ray fails the call without delivering it;
the caller notices (a callback on the argument) and tells the host to skip that
call's number, so the calls after it are not held up.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from dotdo import connect, registry, tracing
from dotdo import settings as _conf
from dotdo.errors import EncodeError
from dotdo.host import Call
from dotdo.hosting import Dedicated, Hosting, Pooled, host_name, note_dedicated
from dotdo.ids import actor_name
from dotdo.object import DurableObject, lookup
from dotdo.outbox import Outbox
from dotdo.promise import Promise, get, pack_args
from dotdo.registry import APP_CLASS
from dotdo.runtime import Host
from dotdo.settings import Settings

__all__ = ["submit", "hosting_of", "actor_handle", "forget_handles", "trim_lines"]

# Enough concurrent calls that a slow call never holds up the rest of the host.
_HOST_CONCURRENCY = 1000
# A call lists at most this many of its caller's deferred calls: the list travels
# with every call, and the host needs the lowest ones first.
_MAX_LISTED = 256
_SHIP_WAIT = 30.0  # seconds a driver waits for an App to import its handlers' modules
_log = logging.getLogger("dotdo")


class Line:
    """This process's numbered stream of calls to one host (see the sequencer)."""

    __slots__ = ("key", "outbox", "token", "next", "lock", "deferred", "used", "retired")

    def __init__(self, key: tuple[str, str], outbox: Outbox) -> None:
        self.key = key
        self.outbox = outbox  # shared by every line to the same host
        self.token = uuid.uuid4().hex
        self.next = 1
        self.lock = threading.Lock()
        self.used = time.monotonic()  # when a call last took this line
        self.retired = False  # dropped by the trimmer: a call takes a new line
        # Calls Ray holds back until their promise arguments exist: number -> how
        # many of those arguments are still pending.
        self.deferred: dict[int, int] = {}

    @property
    def handle(self) -> Any:
        """The host's actor handle (or the in-process host)."""
        return self.outbox.handle


_lines: dict[str, Line] = {}  # actor name of an object -> this process's line to it
_hosts: dict[str, Outbox] = {}  # host actor name -> this process's outbox to it
# Past MAX_LINES lines, the oldest quarter that sat idle LINE_IDLE seconds and whose
# every call has started at its host (the host says so) are dropped, with the
# outboxes no line uses: a driver touching a million objects keeps a few thousand.
MAX_LINES = 8_192
LINE_IDLE = 5.0
_ASK_TIMEOUT = 10.0  # seconds a host may take to say whether streams have started
_trimming = threading.Lock()  # one trim at a time
_notifier: ThreadPoolExecutor | None = None
_kept: set[Line] = set()  # lines with deferred calls, pinged by the keeper thread
_kept_lock = threading.Lock()  # taken inside a line's lock, never around one
_keeper: threading.Thread | None = None


def forget_handles() -> None:
    """Drop this process's actor handles and call streams (after Ray restarted)."""
    _lines.clear()
    _hosts.clear()
    with _kept_lock:
        _kept.clear()


connect.on_hosts_change(forget_handles)


def hosting_of(cls: type[DurableObject]) -> Hosting:
    """How objects of ``cls`` are hosted: the class's choice, else the default (but
    never a pool for a class that wants a process per object)."""
    hosting = cls._dotdo_hosting or connect.settings().hosting
    if cls._dotdo_own_process and isinstance(hosting, Pooled):
        return Dedicated()
    return hosting


def _line(cls: type[DurableObject], object_id: str) -> Line:
    name = actor_name(cls.__name__, object_id)
    line = _lines.get(name)
    if line is None:
        conf, hosting = connect.settings(), hosting_of(cls)
        host = host_name(cls.__name__, object_id, hosting)
        outbox = _hosts.get(host)
        if outbox is None:
            handle = _start_host(host, cls, object_id, hosting, conf)
            outbox = _hosts[host] = Outbox(handle)
        line = _lines[name] = Line((cls.__name__, object_id), outbox)
        if len(_lines) > MAX_LINES and not _trimming.locked():
            threading.Thread(target=trim_lines, name="dotdo-trim", daemon=True).start()
    return line


def trim_lines(keep: int | None = None) -> int:
    """Drop this process's lines to objects that no call needs any more: idle for
    ``LINE_IDLE`` s, no call held back, and every call they sent started at the host
    (so a new line's calls cannot overtake them), oldest first, until ``keep`` lines
    are left (default three quarters of ``MAX_LINES``); then the outboxes no line
    uses. Returns how many lines were dropped. Runs on a thread of its own."""
    if not _trimming.acquire(blocking=False):
        return 0
    try:
        keep = MAX_LINES * 3 // 4 if keep is None else keep
        now = time.monotonic()
        candidates = [(name, line, line.next) for name, line in list(_lines.items())
                      if not line.deferred and now - line.used >= LINE_IDLE]
        candidates = candidates[:max(len(_lines) - keep, 0)]
        asks: dict[int, tuple[Any, list]] = {}  # one question per host
        for item in candidates:
            name, line, upto = item
            if upto > 1:
                asks.setdefault(id(line.outbox), (line.outbox.handle, []))[1].append(item)
        started = {id(line) for _, line, upto in candidates if upto == 1}
        for handle, items in asks.values():
            try:
                answer = get(handle.streams_started.remote(
                    [[*line.key, line.token, upto - 1] for _, line, upto in items]),
                    timeout=_ASK_TIMEOUT)
            except Exception:  # noqa: BLE001 - a host away or restarting: keep its lines
                continue
            started.update(id(line) for (_, line, _), ok in zip(items, answer) if ok)
        dropped = 0
        for name, line, upto in candidates:
            if id(line) not in started:
                continue
            with line.lock:
                if line.next != upto or line.deferred or line.used > now:
                    continue  # used since it was looked at
                line.retired = True
            if _lines.get(name) is line:
                del _lines[name]
                dropped += 1
        used = {id(line.outbox) for line in list(_lines.values())}
        for host, outbox in list(_hosts.items()):
            if id(outbox) not in used and not outbox.queued:
                _hosts.pop(host, None)
        return dropped
    finally:
        _trimming.release()


def _start_host(host: str, cls: type[DurableObject], object_id: str, hosting: Hosting,
                conf: Settings) -> Any:
    """The handle of actor ``host``, created unless it exists (get-if-exists); in
    in-process mode, this process's one host."""
    if conf.in_process:
        return connect.in_process_host(conf)
    options: dict[str, Any] = dict(
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
        return Host.options(**options).remote(
            {cls.__name__: cls}, conf, None, (host, hosting.idle_timeout))
    if cls._dotdo_hosting is None and not cls._dotdo_own_process:  # chosen: no warning
        note_dedicated(cls.__name__, object_id, ray.cluster_resources)
    return Host.options(**options).remote({cls.__name__: cls}, conf, (cls.__name__, object_id))


def submit(cls: type[DurableObject], object_id: str, method: str, args: tuple,
           kwargs: dict) -> Promise:
    """Send one call to an object's host, or queue it to go with others (see
    :mod:`dotdo.outbox`); returns the promise of its result."""
    if connect.local_host() is None and not ray.is_initialized():
        forget_handles()
    if registry.unshipped() and any(registry.unshipped().values()):
        _ship_registrations()
    outgoing = cls._dotdo_outgoing
    if outgoing is not None:
        args, kwargs = outgoing(method, args, kwargs)
    while True:
        line = _line(cls, object_id)
        line.used = time.monotonic()
        outbox = line.outbox
        # In-process, every object shares the one host, which never restarts: promises
        # made there are awaited there anyway, nothing to gain.
        in_process = outbox.handle is connect.local_host()
        sent, send_kwargs, deps, local = pack_args(args, kwargs, None if in_process else outbox)
        with line.lock:  # a number is used only by a call that was really sent
            if line.retired:  # dropped meanwhile (all its calls had started): a new line
                continue
            seq = line.next
            deferred, more = _listed(line.deferred)
            # One argument of lists, dicts and scalars, plus the dependencies: Ray
            # serialises each argument on its own, and those types through msgpack,
            # cheaper than the pickle it falls back to for tuples.
            span, carrier = tracing.client_span(cls.__name__, method, object_id)
            message = list(Call(cls.__name__, object_id, method, list(sent), send_kwargs,
                                deferred, more, line.token, seq, local or None, carrier))
            try:
                ref = outbox.send(message, deps, batchable=not deps)
            except TypeError as exc:  # Ray could not pickle an argument
                tracing.end_call(span, exc)
                first = str(exc).splitlines()[0]
                raise EncodeError(
                    f"cannot send the arguments of {cls.__name__}.{method}(): {first}"
                ) from None
            # The span covers the call's sending: its run is the host's span (a
            # promise's result may be awaited much later, or never, by anyone).
            tracing.end_call(span)
            line.next = seq + 1
            if deps:
                line.deferred[seq] = len(deps)
                _keep_alive(line)
        break
    for dep in deps:
        dep._on_completed(lambda value, line=line, seq=seq: _dep_done(line, seq, value))
    return Promise(ref, (), (outbox, line.token, seq))


def _listed(deferred: dict[int, int]) -> tuple[list[int] | None, bool]:
    """What a call tells its host of the earlier calls Ray still holds back: at
    most ``_MAX_LISTED`` numbers, the lowest, and whether there are more."""
    if len(deferred) <= _MAX_LISTED:
        return list(deferred) or None, False
    # Keys are in call order, so the first ones are the lowest.
    return list(itertools.islice(deferred, _MAX_LISTED)), True


def _keep_alive(line: Line) -> None:
    """Have the keeper thread ping ``line``'s host while it has deferred calls
    (called under ``line.lock``)."""
    global _keeper
    with _kept_lock:
        _kept.add(line)
        if _keeper is None:
            every = _conf.deferred_timeout() / 6  # pings a host may miss before giving up: 5
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
    conf = connect.settings()
    if connect.in_ray_worker():
        registry.unshipped().clear()  # inside a host: module handlers live in its App
        return
    local = connect.local_host()
    if conf.in_process and local is not None and local.on_loop():
        return  # an object calling: waiting here would stop the loop; the driver ships
    app_class = lookup(APP_CLASS)
    assert app_class is not None, "dotdo.app defines App and dotdo imports it"
    for app, specs in list(registry.unshipped().items()):
        if specs:
            batch = set(specs)
            registry.mark_shipped(app, batch)  # first: that call comes through here too
            # Wait for it: until the App has them, it would tell others (a queue
            # deciding whether to send Job events) that nobody listens.
            try:
                kept = submit(app_class, app, "keep_modules",
                              (sorted(list(s) for s in batch),), {}).result(_SHIP_WAIT)
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


def _dep_done(line: Line, seq: int, value: Any) -> None:
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
        _notifier.submit(line.handle.skip.remote, line.key[0], line.key[1], line.token, seq)


def actor_handle(stub) -> Any:
    """The Ray actor handle hosting ``stub``'s object (for tests and operators)."""
    return _line(stub._cls, stub._id).handle

