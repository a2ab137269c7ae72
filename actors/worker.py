"""``Worker``: runs jobs of a queue, each under ``do(step_id=f"job-{id}")``.

``dotdo.Worker("w1").start("emails", concurrency=16)`` makes the worker pull batches
of jobs from ``dotdo.Queue("emails")`` and run up to ``concurrency`` at once, with
each job's retries and timeout; outcomes go back to the queue in batches. The
assignment is stored, so after a crash the restarted worker resumes by itself: it
first takes back the jobs it was running, and the step journal returns the result of
any it had finished, so no finished job runs twice.

``dotdo.Worker(id).process(job)`` runs one Job Thing directly (the seed's pattern).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import dotdo
from actors import metrics
from actors.jobs import result_thing
from dotdo import jobs as job_handlers
from dotdo.app import import_modules

__all__ = ["Worker"]


def _record(tags: dict[str, str], outcome: str, started: float) -> None:
    metrics.JOBS.inc(tags={**tags, "outcome": outcome})
    metrics.DURATION.observe(time.monotonic() - started, tags=tags)

log = logging.getLogger("dotdo")
_HEARTBEAT = 5.0
_FLUSH_EVERY = 0.05
_RELOAD_AFTER = 1.0


class Worker(dotdo.DurableObject):
    """Pulls and runs jobs; see the module docstring."""

    def __init__(self) -> None:
        self._config: dict[str, Any] | None = self.storage.get("config")
        self._loop_task: asyncio.Task | None = None
        self._modules: asyncio.Task | None = None
        self._modules_at = 0.0
        if self._config:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    # -- the API ----------------------------------------------------------------------

    async def start(self, queue: str, concurrency: int = 8, backoff: float = 1.0) -> dict:
        """Work for ``queue`` from now on (also after restarts) until ``stop()``."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency is an int >= 1, not {concurrency!r}")
        dotdo.Queue(queue)  # checks the id
        self._config = {"queue": queue, "concurrency": concurrency, "backoff": backoff}
        self.storage.put("config", self._config)
        await dotdo.Queue(queue).register_worker(self.id)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())
        return self._config

    def resume(self) -> bool:
        """A no-op call that activates the worker (its queue calls it after a restart)."""
        return self._config is not None

    async def stop(self) -> None:
        """Stop pulling jobs; the ones running finish first."""
        self._config = None
        self.storage.delete("config")
        if self._loop_task is not None:
            await self._loop_task

    async def process(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run one Job Thing now (replayed if it ran before); returns its Result."""
        job_id, ok, value, _ = await self._run(job, backoff=1.0)
        if not ok:
            raise RuntimeError(value)
        return result_thing(job_id, value, time.time())

    # -- running jobs ------------------------------------------------------------------

    async def _load_handler_modules(self) -> None:
        """Import the modules the App knows, where the drivers' job handlers live.
        Concurrent jobs wait for the same load; a type still unknown afterwards asks
        again, at most once a second (its module may have reached the App since)."""
        stale = self._modules is not None and self._modules.done() and (
            time.monotonic() - self._modules_at > _RELOAD_AFTER)
        if self._modules is None or stale:
            self._modules_at = time.monotonic()
            self._modules = asyncio.get_running_loop().create_task(self._import_modules())
        await self._modules

    async def _import_modules(self) -> None:
        import_modules(await dotdo.App("default").module_list(), f"Worker {self.id!r}")

    async def _run(self, job: dict[str, Any], backoff: float) -> list:
        """``[job_id, ok, output_or_error, attempts]`` for one job."""
        job_id, job_type = job["$id"], job["type"]
        handler = job_handlers.handler_for(job_type)
        if handler is None:
            await self._load_handler_modules()
            handler = job_handlers.handler_for(job_type)
        if handler is None:
            _record({"queue": (self._config or {}).get("queue", ""), "type": job_type},
                    "unknown_type", time.monotonic())
            return [job_id, False, f"no handler registered for job type {job_type!r}", 0]
        calls = 0
        timeout = job.get("timeout")

        async def attempt():
            nonlocal calls
            calls += 1
            if timeout:
                return await dotdo.try_(handler, job["payload"], timeout=timeout)
            return await dotdo.try_(handler, job["payload"])

        step_id = f"job-{job_id}"
        started = time.monotonic()
        tags = {"queue": (self._config or {}).get("queue", ""), "type": job_type}
        try:
            output = await dotdo.do(attempt, step_id=step_id,
                                    max_retries=job.get("maxRetries", 3), backoff=backoff)
        except Exception as exc:  # noqa: BLE001 - the job failed, the worker goes on
            _record(tags, "failed", started)
            return [job_id, False, f"{type(exc).__name__}: {exc}", getattr(exc, "attempts", calls)]
        if calls == 0:  # replayed from the journal: it ran in a previous life
            calls = len(self.storage.journal.attempts(step_id))
        _record(tags, "completed", started)
        return [job_id, True, output, calls]

    async def _loop(self) -> None:
        fresh = True
        running: set[asyncio.Task] = set()
        active: set[str] = set()  # ids of the jobs running here or not yet reported
        outcomes: list = []
        last_beat = time.monotonic()
        queue_name = self._config["queue"] if self._config else None
        while True:
            config = self._config
            if config is None:  # stopped: let the running jobs finish and report
                if running:
                    await asyncio.wait(running)
                if queue_name is not None:
                    await self._report(queue_name, outcomes)
                return
            queue_name = config["queue"]
            queue = dotdo.Queue(queue_name)
            try:
                if outcomes:
                    reported = [outcome[0] for outcome in outcomes]
                    await self._report(queue_name, outcomes)
                    active.difference_update(reported)  # finished and known to the queue
                room = config["concurrency"] - len(running)
                if room > 0:
                    jobs = await queue.claim(self.id, room, wait=0.0 if running else 1.0,
                                             fresh=fresh)
                    fresh = False
                    for job in jobs:
                        if job["$id"] in active:
                            continue  # re-claimed after a lost answer: running already
                        active.add(job["$id"])
                        task = asyncio.get_running_loop().create_task(
                            self._run(job, config["backoff"]))
                        running.add(task)
                        task.add_done_callback(lambda t: outcomes.append(t.result()))
                if running and (room <= 0 or not outcomes):
                    done, _ = await asyncio.wait(running, timeout=_FLUSH_EVERY,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    running -= done
                running = {t for t in running if not t.done()}
                if time.monotonic() - last_beat > _HEARTBEAT:
                    queue.heartbeat(self.id)
                    last_beat = time.monotonic()
            except Exception:  # noqa: BLE001 - the queue is restarting: try again
                log.warning("dotdo: worker %s lost its queue for a moment", self.id, exc_info=True)
                # A claim may have leased jobs whose answer was lost with the queue:
                # claim this worker's own running jobs again (those not running here).
                fresh = True
                await asyncio.sleep(0.5)

    async def _report(self, queue: str, outcomes: list) -> None:
        """Send finished jobs' outcomes in one call; keep them if the queue is away."""
        if outcomes:
            batch = list(outcomes)
            await dotdo.Queue(queue).complete(self.id, batch)
            del outcomes[: len(batch)]
