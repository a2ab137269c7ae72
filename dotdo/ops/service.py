"""``Service``: every fact and action the ``dotdo`` command, the HTTP API and the
dashboard offer, in one place, so the three show the same facts.

Live state (queues, jobs, workers) comes from the objects themselves, through stubs,
as any driver would call them. What is in files and needs no live object (which
objects exist, an object's keys, tables, schedules and step journal) is read from
the files, read only (:mod:`dotdo.storage.reader`): looking never wakes an object. A file
whose object is live is read by its host, on the node that writes it
(:mod:`dotdo.reads`): SQLite's WAL is not safe for readers on other machines.

A queue or object that has no file yet is unknown (``NotFoundError``), never created
by looking at it: a typo must not leave an empty queue behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Unpack

import dotdo
from dotdo import connect, reads
from dotdo.errors import NotExposed, NotFoundError, StorageError
from dotdo.events import check_event_type
from dotdo.ids import check_id, storage_path
from dotdo.jobmodel import FINISHED, Job, JobOptions, JobStatus
from dotdo.object import exposed, lookup, public_methods
from dotdo.ops import timeline
from dotdo.storage import reader
from dotdo.waits import parse_token

_log = logging.getLogger("dotdo")

__all__ = ["Service", "STATES", "TRACE_URL", "trace_url", "trace_link"]

# Every state a job can be in, as the queue reports them (Metrics fields).
STATES: tuple[str, ...] = tuple(state.value for state in JobStatus)
_QUEUE = "Queue"
_WORKER = "Worker"
_RESULT_POLL = 0.25  # seconds between looks while a caller long-polls a result
_MAX_WAIT = 60.0
_MAX_LOGS = 10_000  # log lines of one job in one answer
# Where a job's trace id links to (a trace viewer's page): `{trace_id}` stands for the id.
TRACE_URL = "DOTDO_TRACE_URL"
_TRACE_ID = "{trace_id}"


def trace_url() -> str | None:
    """The trace viewer's address template (``$DOTDO_TRACE_URL``, e.g.
    ``http://jaeger:16686/trace/{trace_id}``), read when asked; None if not set."""
    return os.environ.get(TRACE_URL, "").strip() or None


def trace_link(trace_id: str | None, template: str | None = None) -> str | None:
    """The address of trace ``trace_id`` in the trace viewer (``template``, default
    :func:`trace_url`): ``{trace_id}`` replaced by it, or the id appended if the
    template has no ``{trace_id}``. None without an id or a template."""
    template = template if template is not None else trace_url()
    if not trace_id or not template:
        return None
    return template.replace(_TRACE_ID, trace_id) if _TRACE_ID in template else template + trace_id


def _counts(metrics: Any) -> dict[str, int]:
    return {state: getattr(metrics, state) for state in STATES}


class Service:
    """Operations on the objects under one storage root (``storage``, default the
    root of the settings in force). ``events``: the nouns whose events ``emit`` may
    send (``["Signup"]`` allows ``Signup.created``); none by default."""

    def __init__(self, storage: str | None = None, events: list[str] | tuple[str, ...] = ()
                 ) -> None:
        self._storage = os.path.abspath(storage) if storage else None
        for noun in events:
            if not isinstance(noun, str) or not noun or "." in noun:
                raise ValueError(f"events names nouns such as \"Signup\", not {noun!r}")
        self.exposed_events = tuple(events)

    @property
    def root(self) -> str:
        """The storage root whose objects this service shows."""
        return self._storage or dotdo.current_settings().root

    # -- discovery: files only ---------------------------------------------------------

    def _has_file(self, class_name: str, object_id: str) -> bool:
        return os.path.exists(storage_path(self.root, class_name, check_id(object_id)))

    async def classes(self) -> dict[str, int]:
        """Class name -> number of objects (files) under the root."""
        return reader.classes(self.root)

    async def objects(self, cls: str, limit: int = 100, cursor: str | None = None
                      ) -> dict[str, Any]:
        """The objects of ``cls``, ``limit`` at a time: ``{"objects": [{"class", "id",
        "size", "modified"}], "cursor"}``; pass ``cursor`` back for the next page."""
        start = int(cursor or 0)
        if limit < 1 or start < 0:
            raise ValueError(f"limit >= 1 and a cursor from a previous page, not {limit!r}, "
                             f"{cursor!r}")
        found = list(reader.files(self.root, cls))
        if not found:
            known = reader.classes(self.root)
            if cls not in known:
                raise NotFoundError(f"no objects of class {cls!r} under {self.root} "
                                    f"(classes there: {', '.join(known) or 'none'})")
        page = found[start:start + limit]
        ids = await self._read_files(page, "id")
        out = [{"class": cls, "id": value if ok else f"<unreadable: {value}>",
                "size": info.size, "modified": info.modified}
               for info, (ok, value) in zip(page, ids)]
        more = start + limit < len(found)
        return {"objects": out, "cursor": str(start + limit) if more else None}

    async def queue_ids(self) -> list[str]:
        """The ids of every queue under the root."""
        return await self._queue_names()

    # -- status and queues -------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """Ray (nodes), objects by class, queues with counts, workers online, and the
        trace viewer's address template (``traceUrl``: :func:`trace_url`)."""
        settings = dotdo.current_settings()
        queues = await self.queues()
        workers = await self.workers()
        return {"storage": self.root, "namespace": settings.namespace,
                "ray": connect.cluster(), "classes": reader.classes(self.root),
                "queues": queues,
                "workers": {"online": sum(1 for w in workers if w["online"]),
                            "total": len(workers)},
                "traceUrl": trace_url()}

    async def _queue(self, q: str) -> Any:
        """The stub of queue ``q``, which must exist."""
        if not isinstance(q, str) or not q or not self._has_file(_QUEUE, q):
            raise NotFoundError(f"no queue {q!r} under {self.root}: queues there are "
                                f"{', '.join(await self._queue_names()) or 'none'}")
        return dotdo.Queue(q)

    async def _queue_names(self) -> list[str]:
        answers = await self._read_files(reader.files(self.root, _QUEUE), "id")
        # An unreadable file is left out: `dotdo objects ls Queue` shows it.
        return sorted(value for ok, value in answers if ok)

    async def _read_files(self, infos: Iterable[reader.FileInfo], op: str) -> list[list]:
        """Read ``op`` of each file: ``[ok, value or error]`` each, in order."""
        return await reads.read(self.root, [[reader.relative(self.root, info.path), op, []]
                                            for info in infos])

    async def _read_one(self, rel: str, op: str, *args: Any) -> Any:
        """One read of the file ``rel`` (from :func:`reader.object_file`)."""
        [(ok, value)] = await reads.read(self.root, [[rel, op, list(args)]])
        if not ok:
            raise value
        return value

    async def _summary(self, q: str) -> dict[str, Any]:
        queue = await self._queue(q)
        metrics, workers, age = await asyncio.gather(
            queue.get_metrics(), queue.workers(), queue.oldest_pending_age())
        return {"id": q, "paused": metrics.paused, "concurrency": metrics.concurrency,
                "counts": _counts(metrics),
                "workers": sum(1 for w in workers if w["registered"]),
                "oldestPendingAge": age}

    async def queues(self) -> list[dict[str, Any]]:
        """Every queue: ``{"id", "paused", "concurrency", "counts", "workers",
        "oldestPendingAge"}``. A queue that cannot be opened (a file a newer dotdo
        wrote, a full disk) is left out with a warning, not the whole answer: its own
        page (``queue(q)``) gives the error."""
        ids = await self.queue_ids()
        answers = await asyncio.gather(*(self._summary(q) for q in ids), return_exceptions=True)
        shown = []
        for q, answer in zip(ids, answers):
            if isinstance(answer, StorageError):
                _log.warning("dotdo: queue %r left out of the list: %s", q, answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                shown.append(answer)
        return shown

    async def queue(self, q: str) -> dict[str, Any]:
        """One queue: its summary, settings, stats and counts by type."""
        summary = await self._summary(q)
        queue = dotdo.Queue(q)
        settings, stats, types = await asyncio.gather(queue.settings(), queue.stats(),
                                                      queue.counts())
        return {**summary, "settings": settings, "stats": stats, "types": types}

    async def stats(self, q: str, window: float = 3600.0, bucket: float = 60.0) -> dict[str, Any]:
        """Throughput and failures over time, p50/p95 duration and wait, oldest
        pending age and outcome totals (see ``Queue.stats``)."""
        return await (await self._queue(q)).stats(window, bucket)

    async def pause(self, q: str) -> dict[str, Any]:
        await (await self._queue(q)).pause()
        return await self._summary(q)

    async def resume(self, q: str) -> dict[str, Any]:
        await (await self._queue(q)).resume()
        return await self._summary(q)

    async def configure(self, q: str, **settings: Any) -> dict[str, Any]:
        """Set the queue's limits (``Queue.configure``); returns them all."""
        return await (await self._queue(q)).configure(**settings)

    async def purge(self, q: str, status: str | None = None, older_than: float | None = None
                    ) -> int:
        return await (await self._queue(q)).purge(status, older_than)

    # -- jobs --------------------------------------------------------------------------

    async def jobs(self, q: str, status: str | None = None, type: str | None = None,
                   since: float | None = None, limit: int = 50, cursor: int | None = None
                   ) -> dict[str, Any]:
        """A page of jobs in enqueue order: ``{"jobs", "cursor"}``."""
        return await (await self._queue(q)).list(status=status, type=type, limit=limit, cursor=cursor,
                                         since=since)

    async def count(self, q: str, status: str | None = None, type: str | None = None,
                    since: float | None = None) -> int:
        return await (await self._queue(q)).count(status=status, type=type, since=since)

    async def job(self, q: str, job_id: str) -> dict[str, Any]:
        """A job with every attempt and its result: the Job Thing plus ``queue``,
        ``attemptCount``, ``attempts`` (list), ``result``, and what its runs met:
        ``points`` (in order), ``awakeables`` (with their tokens) and ``children``."""
        queue = await self._queue(q)
        thing = await queue.get(job_id)
        if thing is None:
            raise NotFoundError(f"no job {job_id!r} in queue {q!r}")
        attempts, result, points, awakeables, children = await asyncio.gather(
            queue.attempts(job_id), queue.result(job_id), queue.points(job_id),
            queue.awakeables(job_id), queue.children(job_id))
        return {**thing, "queue": q, "attemptCount": thing["attempts"], "attempts": attempts,
                "result": None if result is None else result["output"], "points": points,
                "awakeables": awakeables, "children": children}

    async def timeline(self, q: str, job_id: str) -> dict[str, Any]:
        """The job's life as a waterfall from the queue's records: its wait to its first
        run, every attempt, the durable calls its runs met, its end
        (:func:`dotdo.ops.timeline.build`)."""
        return timeline.build(await self.job(q, job_id), time.time())

    async def logs(self, q: str, job_id: str, limit: int = 1_000) -> list[dict[str, Any]]:
        """The log records emitted while the job's attempts ran, oldest first (at most
        ``limit``): ``{"attempt", "t", "level", "logger", "message", "worker",
        "traceId", "spanId"}`` (``Queue.logs``)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LOGS:
            raise ValueError(f"limit is a number of lines from 1 to {_MAX_LOGS:,}, not {limit!r}")
        return await (await self._queue(q)).logs(job_id, limit)  # NotFoundError: no such job

    async def find_job(self, job_id: str) -> str:
        """The queue that holds ``job_id``."""
        names = await self.queue_ids()
        found = await asyncio.gather(*(dotdo.Queue(q).get(job_id) for q in names))
        for q, thing in zip(names, found):
            if thing is not None:
                return q
        raise NotFoundError(f"no job {job_id!r} in any queue under {self.root} "
                            f"({', '.join(names) or 'no queues'})")

    async def enqueue(self, q: str, type: str, payload: Any = None, create: bool = False,
                      **options: Unpack[JobOptions]) -> Job:
        """Enqueue one job (``JobOptions``, as ``Queue.enqueue``); the queue must exist unless
        ``create``. The Job has ``enqueued``: ``added``, ``existing``, ..."""
        queue = dotdo.Queue(check_id(q)) if create else await self._queue(q)
        return await queue.enqueue(type, payload, **options)

    async def result(self, q: str, job_id: str, wait: float = 0.0) -> dict[str, Any]:
        """The job's outcome, waiting up to ``wait`` s (at most 60) for it to finish:
        ``{"id", "status", "done", "output"?, "error"?}``."""
        if not isinstance(wait, (int, float)) or wait < 0:
            raise ValueError(f"wait is seconds >= 0, not {wait!r}")
        queue = await self._queue(q)
        deadline = time.monotonic() + min(float(wait), _MAX_WAIT)
        while True:
            thing = await queue.get(job_id)
            if thing is None:
                raise NotFoundError(f"no job {job_id!r} in queue {q!r}")
            done = thing["status"] in FINISHED
            if done or time.monotonic() >= deadline:
                break
            await asyncio.sleep(_RESULT_POLL)
        out: dict[str, Any] = {"id": job_id, "status": thing["status"], "done": done}
        if thing["status"] == JobStatus.COMPLETED:
            result = await queue.result(job_id)
            out["output"] = None if result is None else result["output"]
        elif thing["error"] is not None:
            out["error"] = thing["error"]
        return out

    async def resolve(self, token: str, value: Any = None) -> dict[str, Any]:
        """Resolve the awakeable ``token`` with ``value`` (``dotdo.resolve``): its job
        goes on with it. ``{"token", "queue", "job", "awakeable", "settled"}``."""
        return await self._settle(token, lambda: dotdo.resolve(token, value), "resolved")

    async def reject(self, token: str, reason: str) -> dict[str, Any]:
        """Reject the awakeable ``token`` (``dotdo.reject``): ``await dotdo.wait`` raises
        ``RejectedError(reason)`` in its job."""
        return await self._settle(token, lambda: dotdo.reject(token, reason), "rejected")

    async def _settle(self, token: str, settle: Callable[[], Awaitable[None]], settled: str
                      ) -> dict[str, Any]:
        """Settle an awakeable of a queue that exists (looking up a token must not
        create its queue). An awakeable that is not there is NotFoundError; one
        settled before ``dotdo.AwakeableError``."""
        q, job_id, _, key = parse_token(token)
        await self._queue(q)
        await settle()
        return {"token": token, "queue": q, "job": job_id, "awakeable": key, "settled": settled}

    async def retry(self, q: str, job_ids: list[str]) -> list[dict[str, Any]]:
        """Send failed jobs back to the queue with fresh retries."""
        queue = await self._queue(q)
        return [await queue.retry(job_id) for job_id in job_ids]

    async def cancel(self, q: str, job_ids: list[str]) -> list[dict[str, Any]]:
        """Cancel unfinished jobs (running ones are asked to stop)."""
        queue = await self._queue(q)
        return [await queue.cancel(job_id) for job_id in job_ids]

    async def retry_all(self, q: str, since: float | None = None, type: str | None = None) -> int:
        """Retry every failed job (of ``type``, enqueued since ``since``)."""
        return await (await self._queue(q)).retry_all(type=type, since=since)

    async def cancel_all(self, q: str, status: str, since: float | None = None,
                         type: str | None = None) -> int:
        """Cancel every job in ``status`` (of ``type``, enqueued since ``since``)."""
        return await (await self._queue(q)).cancel_all(status, type=type, since=since)

    async def dead_letters(self, q: str, limit: int = 50) -> list[dict[str, Any]]:
        """Failed jobs grouped by error: ``{"error", "count", "types", "lastAt", "jobs"}``."""
        return await (await self._queue(q)).dead_letters(limit)

    async def events(self, cursor: dict[str, Any] | None = None
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Job events across queues since ``cursor`` (None: from now on), and the
        cursor for the next call: ``[{"queue", "type", "at", "data"}]``. Each queue
        keeps its latest 1,000 events in memory; a restarted queue starts afresh."""
        cursor = dict(cursor or {})
        names = await self.queue_ids()
        answers = await asyncio.gather(
            *(dotdo.Queue(q).recent_events(cursor.get(q, [None, 0])[1]) for q in names),
            return_exceptions=True)
        out: list[dict[str, Any]] = []
        for q, answer in zip(names, answers):
            if isinstance(answer, BaseException):
                continue  # the queue is restarting: its events come next time
            instance, after = cursor.get(q, [None, None])
            if after is not None and instance != answer["instance"]:
                # A new process since the last look: everything it has is new.
                answer = await dotdo.Queue(q).recent_events(0)
            if after is not None:  # a queue seen for the first time starts from now
                out += [{"queue": q, **e} for e in answer["events"]]
            cursor[q] = [answer["instance"], answer["next"]]
        out.sort(key=lambda e: e["at"])
        for event in out:
            event.pop("n", None)
        return out, cursor

    # -- workers and schedules ---------------------------------------------------------

    async def workers(self, q: str | None = None) -> list[dict[str, Any]]:
        """Workers of every queue (or of ``q``): ``{"id", "queue", "node", "pid",
        "concurrency", "running", "lastSeen", "online", "completed", "failed"}``.
        ``online``: seen by its queue within two lease timeouts."""
        names = [q] if q is not None else await self.queue_ids()
        if q is not None:
            await self._queue(q)
        views = await asyncio.gather(*(dotdo.Queue(n).workers() for n in names))
        settings = await asyncio.gather(*(dotdo.Queue(n).settings() for n in names))
        rows: list[dict[str, Any]] = []
        now = time.time()
        for name, view, conf in zip(names, views, settings):
            for w in view:
                if not w["registered"] and not w["running"]:
                    continue  # ran jobs here once; now elsewhere or gone
                seen = w["lastSeen"]
                rows.append({"id": w["worker"], "queue": name, "node": None, "pid": None,
                             "concurrency": None, "running": [], "lastSeen": seen,
                             "online": seen is not None and now - seen < 2 * conf["lease_timeout"],
                             "completed": w["completed"], "failed": w["failed"],
                             "registered": w["registered"]})
        infos = await asyncio.gather(*(self._worker_info(r["id"]) for r in rows))
        for row, info in zip(rows, infos):
            if info is not None:
                row.update(node=info["node"], pid=info["pid"], concurrency=info["concurrency"],
                           running=info["running"])
        return rows

    async def _worker_info(self, worker: str) -> dict[str, Any] | None:
        if not self._has_file(_WORKER, worker):
            return None
        try:
            return await dotdo.Worker(worker).info()
        except Exception:  # noqa: BLE001 - a worker restarting: shown without its process
            return None

    async def schedules(self) -> list[dict[str, Any]]:
        """Every schedule of every object: ``{"class", "id", "name", "spec", "nextRun",
        "lastRun", "ticks", "lastError"}``, soonest first."""
        out: list[dict[str, Any]] = []
        answers = await self._read_files(reader.files(self.root), "schedules")
        for ok, value in answers:
            if ok:  # an unreadable file is left out: `dotdo objects ls` shows it
                out += [{"class": value["class"], "id": value["id"], **s}
                        for s in value["schedules"]]
        return sorted(out, key=lambda s: s["nextRun"])

    # -- one object's file -------------------------------------------------------------

    async def object(self, cls: str, object_id: str) -> dict[str, Any]:
        """An object as its file holds it: keys (the first 100), its own tables,
        alarm, schedules and number of journaled steps; ``path`` is relative to the root."""
        rel = reader.object_file(self.root, cls, object_id)
        found = await self._read_one(rel, "object")
        return {"class": cls, "id": object_id, "path": rel,
                **{k: v for k, v in found.items() if k not in ("class", "id")}}

    async def steps(self, cls: str, object_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The object's step journal, newest first, with failed attempts."""
        return await self._read_one(reader.object_file(self.root, cls, object_id), "steps", limit)

    async def sql(self, cls: str, object_id: str, query: str, limit: int = 1_000,
                  deadline: float = reader.QUERY_DEADLINE) -> dict[str, Any]:
        """One read-only statement on the object's own file, stopped at ``deadline`` s."""
        return await self._read_one(reader.object_file(self.root, cls, object_id), "sql", query,
                                    limit, deadline)

    # -- exposed objects and events ----------------------------------------------------

    async def call(self, cls: str, object_id: str, method: str, args: list | tuple = (),
                   kwargs: dict[str, Any] | None = None) -> Any:
        """Call ``method`` on an object of an exposed class (``expose=`` on the class)."""
        klass = _lookup(cls)
        if klass is None:
            raise NotFoundError(f"no durable object class {cls!r} is known to this server: "
                                "import the module that defines it (dotdo serve -m module)")
        allowed = exposed(klass)
        if not allowed:
            raise NotExposed(f"class {cls} is not exposed over HTTP: define it with "
                             f"`class {cls}(dotdo.DurableObject, expose=True)` or a list of methods")
        if method not in public_methods(klass):
            raise NotFoundError(f"{cls} has no method {method!r} (exposed: "
                                f"{', '.join(sorted(allowed))})")
        if method not in allowed:
            raise NotExposed(f"{cls}.{method} is not exposed (exposed: {', '.join(sorted(allowed))}): "
                             f"add it to the class's expose=[...]")
        return await getattr(dotdo.stub(klass, check_id(object_id)), method)(*args, **(kwargs or {}))

    async def emit(self, event_type: str, data: Any = None) -> None:
        """Send an event (as ``dotdo.send`` does) whose noun the server exposes."""
        check_event_type(event_type)
        noun = event_type.partition(".")[0]
        if noun not in self.exposed_events:
            raise NotExposed(f"events of {noun!r} are not exposed over HTTP: start the server "
                             f"with events for {noun!r} (dotdo serve --events {noun})")
        dotdo.send(event_type, data)

    # -- metrics -----------------------------------------------------------------------

    async def metrics(self) -> list[dict[str, Any]]:
        """Per queue, what Prometheus scrapes: ``{"queue", "counts", "totals",
        "duration", "wait", "oldestPendingAge", "workers", "paused"}``."""
        names = await self.queue_ids()

        async def one(q: str) -> dict[str, Any]:
            summary, stats = await asyncio.gather(self._summary(q),
                                                  dotdo.Queue(q).stats(300.0, 60.0))
            return {"queue": q, "counts": summary["counts"], "totals": stats["totals"],
                    "duration": stats["duration"], "wait": stats["wait"],
                    "oldestPendingAge": summary["oldestPendingAge"],
                    "workers": summary["workers"], "paused": summary["paused"]}

        return list(await asyncio.gather(*(one(q) for q in names)))


def _lookup(name: str) -> type[dotdo.DurableObject] | None:
    """The class named ``name``: registered here, or shipped by an installed package."""
    try:
        return lookup(name) or dotdo.stub(name, "_")._cls
    except AttributeError:
        return None
