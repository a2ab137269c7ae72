"""Job handlers of the fault suite, and the ledger they keep outside dotdo.

Every run of a handler writes a ``start`` row before it does anything and an ``end``
row (its outcome) when it is done, in a plain SQLite file named by
``$DOTDO_FAULT_LEDGER``: real executions, counted by something dotdo does not
control. The App's ``Job.failed`` handler writes each failure report it gets.

The ledger is also an outside system that fences its writers: each run records the
fence of its claim (``dotdo.current_job()["fence"]``), and a fenced write carrying a
smaller fence than the largest the ledger has seen for that job is refused (and
written down as refused), as a store guarding against a stale worker would.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import uuid

import dotdo
from tests.faults.poison_defs import Box, FaultRef

LEDGER_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs (run TEXT PRIMARY KEY, job TEXT NOT NULL, "
    "kind TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL, ended REAL, "
    "outcome TEXT, fence INTEGER)",
    "CREATE TABLE IF NOT EXISTS failure_reports (event TEXT NOT NULL, job TEXT NOT NULL, "
    "error TEXT, PRIMARY KEY (event, job))",
    # The largest fence seen per job, and every fenced write tried (accepted or not)
    "CREATE TABLE IF NOT EXISTS fences (job TEXT PRIMARY KEY, fence INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS writes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "job TEXT NOT NULL, run TEXT NOT NULL, fence INTEGER NOT NULL, pid INTEGER NOT NULL, "
    "at REAL NOT NULL, accepted INTEGER NOT NULL)",
)
INSERT_RUN = ("INSERT INTO runs (run, job, kind, pid, started, fence) "
              "VALUES (?, ?, ?, ?, ?, ?)")
END_RUN = "UPDATE runs SET ended = ?, outcome = ? WHERE run = ?"
SELECT_FENCE = "SELECT fence FROM fences WHERE job = ?"
UPSERT_FENCE = "INSERT OR REPLACE INTO fences (job, fence) VALUES (?, ?)"
INSERT_WRITE = ("INSERT INTO writes (job, run, fence, pid, at, accepted) "
                "VALUES (?, ?, ?, ?, ?, ?)")

_lock = threading.Lock()
_conn: sqlite3.Connection | None = None


def ledger(path: str | None = None) -> sqlite3.Connection:
    """This process's connection to the ledger (created on first use)."""
    global _conn
    with _lock:
        if _conn is None:
            _conn = sqlite3.connect(path or os.environ["DOTDO_FAULT_LEDGER"], timeout=30,
                                    isolation_level=None, check_same_thread=False)
            _conn.execute("PRAGMA journal_mode=WAL")
            for ddl in LEDGER_SCHEMA:
                _conn.execute(ddl)
        return _conn


def _write(sql: str, params: tuple) -> None:
    conn = ledger()
    with _lock:
        conn.execute(sql, params)


class _Run:
    """One execution of a handler, as the ledger sees it."""

    def __init__(self, kind: str, payload: dict) -> None:
        self.id, self.job = uuid.uuid4().hex, payload["job"]
        self.fence = dotdo.current_job()["fence"]
        _write(INSERT_RUN, (self.id, self.job, kind, os.getpid(), time.time(), self.fence))

    def end(self, outcome: str) -> None:
        _write(END_RUN, (time.time(), outcome, self.id))

    def fenced_write(self) -> bool:
        """Write to the ledger as a fenced writer: refused if a run with a larger fence
        wrote for this job before. Returns whether it was accepted."""
        conn = ledger()
        with _lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(SELECT_FENCE, (self.job,)).fetchone()
                accepted = row is None or self.fence >= row[0]
                if accepted:
                    conn.execute(UPSERT_FENCE, (self.job, self.fence))
                conn.execute(INSERT_WRITE, (self.job, self.id, self.fence, os.getpid(),
                                            time.time(), int(accepted)))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return accepted

    def runs_before(self) -> int:
        conn = ledger()
        with _lock:  # one connection for the process's threads: one statement at a time
            return conn.execute("SELECT count(*) FROM runs WHERE job = ? AND run != ?",
                                (self.job, self.id)).fetchone()[0]


async def _async_job(kind: str, payload: dict, work) -> str:
    run = _Run(kind, payload)
    try:
        await work(run)
    except BaseException as exc:
        run.end(f"error: {type(exc).__name__}")
        raise
    run.end("ok")
    return payload["job"]


def _sync_job(kind: str, payload: dict, work) -> str:
    run = _Run(kind, payload)
    try:
        work(run)
    except BaseException as exc:
        run.end(f"error: {type(exc).__name__}")
        raise
    run.end("ok")
    return payload["job"]


@dotdo.job("f.quick")
async def quick(payload):
    return await _async_job("quick", payload, lambda run: asyncio.sleep(payload["seconds"]))


@dotdo.job("f.quick_sync")
def quick_sync(payload):
    return _sync_job("quick_sync", payload, lambda run: time.sleep(payload["seconds"]))


@dotdo.job("f.long")
async def long(payload):
    return await _async_job("long", payload, lambda run: asyncio.sleep(payload["seconds"]))


@dotdo.job("f.long_sync")
def long_sync(payload):
    def burn(run):  # computes, without yielding, for the whole time
        deadline = time.monotonic() + payload["seconds"]
        while time.monotonic() < deadline:
            sum(range(1000))
    return _sync_job("long_sync", payload, burn)


@dotdo.job("f.flaky")
async def flaky(payload):
    async def work(run):
        if run.runs_before() < payload["fail"]:
            raise ConnectionError("flaky service")
        await asyncio.sleep(0.01)
    return await _async_job("flaky", payload, work)


@dotdo.job("f.doomed")
def doomed(payload):
    def work(run):
        raise ValueError("doomed by design")
    return _sync_job("doomed", payload, work)


@dotdo.job("f.poison")
async def poison(payload):
    async def work(run):
        await asyncio.sleep(0.2)
        os._exit(3)  # as a segfault or the OOM killer would end the process
    return await _async_job("poison", payload, work)


@dotdo.job("f.hang")
async def hang(payload):
    return await _async_job("hang", payload, lambda run: asyncio.sleep(3600))


@dotdo.job("f.overrun")
def overrun(payload):
    return _sync_job("overrun", payload, lambda run: time.sleep(payload["seconds"]))


class Stopped(Exception):
    """A sync run saw ``dotdo.cancelled()``: it stops."""


TICK = 0.2  # seconds between a fenced job's writes


@dotdo.job("f.fenced")
async def fenced(payload):
    """Writes to the ledger, fenced, every ``TICK`` s for ``seconds`` of its own work
    (counted in ticks, so a run thawed after a freeze still has its work ahead)."""
    async def work(run):
        for _ in range(round(payload["seconds"] / TICK)):
            run.fenced_write()
            await asyncio.sleep(TICK)
        run.fenced_write()
    return await _async_job("fenced", payload, work)


@dotdo.job("f.fenced_sync")
def fenced_sync(payload):
    """As ``f.fenced``, in sync code, stopping once ``dotdo.cancelled()`` says so."""
    def work(run):
        for _ in range(round(payload["seconds"] / TICK)):
            if dotdo.cancelled():
                raise Stopped("dotdo.cancelled() said stop")
            run.fenced_write()
            time.sleep(TICK)
        run.fenced_write()
    return _sync_job("fenced_sync", payload, work)


@dotdo.job("f.ref")
async def ref(payload):
    """A payload holding a stub of a class (and a dataclass) of ``poison_defs``:
    decoded here, in a worker that imports it; returned in the output."""
    await _async_job("ref", payload, lambda run: asyncio.sleep(0.01))
    if not isinstance(payload["ref"], dotdo.Stub) or not isinstance(payload["box"], Box):
        raise TypeError(f"the payload came decoded wrong: {payload!r}")
    return {"job": payload["job"], "ref": payload["ref"], "box": payload["box"],
            "cls": FaultRef.__name__}


@dotdo.on.Job.failed
def failure_reported(event):
    _write("INSERT OR IGNORE INTO failure_reports (event, job, error) VALUES (?, ?, ?)",
           (event.id, event.data["$id"], event.data["error"]))
