"""Job handlers of the fault suite, and the ledger they keep outside dotdo.

Every run of a handler writes a ``start`` row before it does anything and an ``end``
row (its outcome) when it is done, in a plain SQLite file named by
``$DOTDO_FAULT_LEDGER``: real executions, counted by something dotdo does not
control. The App's ``Job.failed`` handler writes each failure report it gets.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import uuid

import dotdo

LEDGER_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs (run TEXT PRIMARY KEY, job TEXT NOT NULL, "
    "kind TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL, ended REAL, outcome TEXT)",
    "CREATE TABLE IF NOT EXISTS failure_reports (event TEXT NOT NULL, job TEXT NOT NULL, "
    "error TEXT, PRIMARY KEY (event, job))",
)

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
        _write("INSERT INTO runs (run, job, kind, pid, started) VALUES (?, ?, ?, ?, ?)",
               (self.id, self.job, kind, os.getpid(), time.time()))

    def end(self, outcome: str) -> None:
        _write("UPDATE runs SET ended = ?, outcome = ? WHERE run = ?",
               (time.time(), outcome, self.id))

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


@dotdo.on.Job.failed
def failure_reported(event):
    _write("INSERT OR IGNORE INTO failure_reports (event, job, error) VALUES (?, ?, ?)",
           (event.id, event.data["$id"], event.data["error"]))
