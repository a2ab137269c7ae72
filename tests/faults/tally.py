"""What the fault drivers share: reading a queue's jobs and the handlers' ledger, and
checking the promise against the ledger (nothing lost, nothing stuck, no two runs of
a job at once beyond what a fault excuses, every failure reported once, no stale
fenced write accepted)."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import ray

from dotdo import client

SELECT_RUNS = ("SELECT run, job, kind, pid, started, ended, outcome, fence FROM runs "
               "ORDER BY started")
SELECT_REPORTS = "SELECT job, count(DISTINCT event) FROM failure_reports GROUP BY job"
SELECT_WRITES = "SELECT seq, job, run, fence, pid, at, accepted FROM writes ORDER BY seq"
UNFINISHED = ("pending", "delayed", "retrying", "running", "stuck", "waiting")


def log(*args: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def pid_of(stub, wait: float = 120.0) -> int:
    """The process of ``stub``'s object, waiting while it restarts."""
    deadline = time.time() + wait
    while True:
        try:
            return ray.get(client.actor_handle(stub).stats.remote(), timeout=20)["pid"]
        except Exception:  # noqa: BLE001 - restarting right now: ask again
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def read_jobs(queue) -> dict[str, dict]:
    """Every job of ``queue``, by id."""
    jobs, cursor = {}, None
    while True:
        page = queue.list(limit=1000, cursor=cursor).result()
        jobs.update({j["$id"]: j for j in page["jobs"]})
        if (cursor := page["cursor"]) is None:
            return jobs


def outcome(job: dict) -> str:
    """``completed``, another status, or a failed job's error class."""
    if job["status"] != "failed":
        return job["status"]
    return (job["error"] or "").split(":", 1)[0]


@dataclasses.dataclass
class Run:
    """One execution of a handler, as the ledger saw it."""

    run: str
    job: str
    kind: str
    pid: int
    started: float
    ended: float | None
    outcome: str | None
    fence: int | None


@dataclasses.dataclass
class Ledger:
    runs: list[Run]
    reports: dict[str, int]  # job -> failure reports
    writes: list[tuple]  # (seq, job, run, fence, pid, at, accepted)


def read_ledger(path: str) -> Ledger:
    conn = sqlite3.connect(path)
    try:
        runs = [Run(*row) for row in conn.execute(SELECT_RUNS).fetchall()]
        reports = dict(conn.execute(SELECT_REPORTS).fetchall())
        writes = conn.execute(SELECT_WRITES).fetchall()
    finally:
        conn.close()
    return Ledger(runs, reports, writes)


# excuse(earlier, later) -> why two runs of a job overlapped, or None if nothing does
Excuse = Callable[[Run, Run], "str | None"]
# excuse_extra_ok(run) -> why a run that returned ok is not the one that counted, or None
ExtraOk = Callable[[Run], "str | None"]


def check(jobs: dict[str, dict], expected: dict[str, str], ledger: Ledger,
          overlap_excuse: Excuse | None = None, extra_ok_excuse: ExtraOk | None = None
          ) -> dict[str, Any]:
    """The counts of the promise: see the module docstring. ``expected``: job id ->
    the outcome it must end with (``completed`` or an error class). No process is
    killed in a run checked here, so every run must have ended."""
    wrong = {j: (outcome(jobs[j]) if j in jobs else "missing", want)
             for j, want in expected.items() if j not in jobs or outcome(jobs[j]) != want}
    by_job: dict[str, list[Run]] = {}
    for run in ledger.runs:
        by_job.setdefault(run.job, []).append(run)
    overlaps: dict[str, int] = {}
    excused_overlaps: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    excused_duplicates: dict[str, int] = {}
    fences_shared = 0
    for job, runs in by_job.items():
        for i, a in enumerate(runs):
            for b in runs[i + 1:]:
                a_end = float("inf") if a.ended is None else a.ended
                if b.started < a_end:  # b started while a still ran
                    why = overlap_excuse(a, b) if overlap_excuse else None
                    if why is None:
                        overlaps[job] = overlaps.get(job, 0) + 1
                    else:
                        excused_overlaps[why] = excused_overlaps.get(why, 0) + 1
        oks = [r for r in runs if r.outcome == "ok"]
        extra = len(oks) - 1
        for run in oks:
            if extra <= 0:
                break
            why = extra_ok_excuse(run) if extra_ok_excuse else None
            if why is not None:
                excused_duplicates[why] = excused_duplicates.get(why, 0) + 1
                extra -= 1
        if extra > 0:
            duplicates[job] = len(oks)
        fenced = [r.fence for r in runs if r.fence is not None]
        fences_shared += len(fenced) - len(set(fenced))
    # Fenced writes: the ledger refuses a smaller fence than it saw; check from its log
    # that no write it accepted came after one with a larger fence.
    largest: dict[str, int] = {}
    stale_accepted = stale_refused = 0
    for _seq, job, _run, fence, _pid, _at, accepted in ledger.writes:
        stale = fence < largest.get(job, fence)
        stale_accepted += bool(stale and accepted)
        stale_refused += not accepted
        largest[job] = max(largest.get(job, fence), fence)
    failed = {j for j, job in jobs.items() if job["status"] == "failed"}
    reported = ledger.reports
    return {
        "jobs": len(expected),
        "completed": sum(1 for j in jobs.values() if j["status"] == "completed"),
        "failed": len(failed),
        "lost_or_wrong": wrong,
        "still_running": sum(1 for j in jobs.values() if j["status"] in UNFINISHED),
        "runs": len(ledger.runs),
        "unended_runs": sum(1 for r in ledger.runs if r.ended is None),
        "duplicate_executions": duplicates,
        "excused_duplicates": excused_duplicates,
        "overlapping_runs": overlaps,
        "excused_overlaps": excused_overlaps,
        "failures_reported_once": sum(1 for j in failed if reported.get(j) == 1),
        "failure_reports_wrong": {j: n for j, n in reported.items()
                                  if n != 1 or j not in failed},
        "fences_shared_by_two_runs": fences_shared,
        "fenced_writes": len(ledger.writes),
        "stale_writes_refused": stale_refused,
        "stale_writes_accepted": stale_accepted,
    }
