"""The fault run: a long mix of jobs while processes die at random moments.

    python -m tests.faults.driver <work dir> [seed]

Starts a Ray of its own (so it may kill and restart it), enqueues jobs of every
kind in ``tests.faults.handlers`` (sync and async, quick and 30-60 s, flaky, always
failing, one that kills its worker, one that hangs, one that overruns its timeout),
runs them on two Workers, and meanwhile SIGKILLs Worker, Queue and App processes at
random moments and restarts the whole of Ray once. Then it reads the queue and the
handlers' ledger and prints the counts as one ``OUTCOME {json}`` line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import sys
import time

import dotdo
from tests.faults.tally import log, outcome, pid_of, read_jobs

QUEUE = "faults"
WORKERS = ["fw0", "fw1"]
# kind -> (count, options, payload, the outcome it must end with)
MIX = {
    "f.quick": (240, {}, {"seconds": 0.02}, "completed"),
    "f.quick_sync": (160, {}, {"seconds": 0.02}, "completed"),
    "f.long": (1, {"max_retries": 6}, {}, "completed"),  # 30-35 s each
    "f.long_sync": (1, {"max_retries": 6, "timeout": 120}, {}, "completed"),
    "f.flaky": (40, {"max_retries": 4}, {"fail": 2}, "completed"),
    "f.doomed": (20, {"max_retries": 1}, {}, "ValueError"),
    "f.poison": (1, {"max_retries": 1}, {}, "WorkerCrashError"),
    # Retries enough that our random kills (which count against a job running alone,
    # as a crash of its own would) do not use them up before its timeouts do: more than
    # the 4 worker kills and the Ray restart, since a kill between a claim and the
    # handler's first ledger line counts at the queue but cannot be seen here
    "f.hang": (1, {"max_retries": 5, "timeout": 2}, {}, "TimeoutError"),
    "f.overrun": (1, {"max_retries": 5, "timeout": 2}, {"seconds": 4}, "TimeoutError"),
}
KILL_WINDOW = (3.0, 28.0)  # seconds after the start: when processes die
KILLS = {"Worker": 4, "Queue": 2, "App": 2}
RESTART_AT = 15.0  # the whole of Ray, once


def start_ray(storage: str) -> None:
    dotdo.init(address="local", storage=storage, num_cpus=2)


def run(work: str, seed: int) -> dict:
    storage, ledger_path = os.path.join(work, "store"), os.path.join(work, "ledger.sqlite3")
    os.environ["DOTDO_FAULT_LEDGER"] = ledger_path  # Ray's workers inherit it
    from tests.faults import handlers

    handlers.ledger(ledger_path)
    start_ray(storage)
    rng = random.Random(seed)
    queue = dotdo.Queue(QUEUE)
    queue.configure(lease_timeout=6.0).result()
    specs, expected, retries = [], {}, {}
    for kind, (count, options, payload, outcome) in MIX.items():
        for i in range(count):
            job = f"{kind}-{i}"
            extra = {"seconds": rng.uniform(30, 35)} if kind.startswith("f.long") else {}
            specs.append({"type": kind, "job_id": job, "payload": {**payload, **extra, "job": job},
                          **options})
            expected[job], retries[job] = outcome, options.get("max_retries", 3)
    rng.shuffle(specs)
    queue.enqueue_many(specs[: len(specs) // 2]).result()
    workers = [dotdo.Worker(w) for w in WORKERS]
    dotdo.get([w.start(QUEUE, concurrency=8, backoff=0.2) for w in workers])
    started = time.time()

    # Kills at random moments, and one restart of the whole of Ray
    plan = sorted([(rng.uniform(*KILL_WINDOW), target) for target, n in KILLS.items()
                   for _ in range(n)] + [(RESTART_AT, "Ray")])
    kills, restarts = [], []
    second_half = False
    for at, target in plan:
        time.sleep(max(0.0, started + at - time.time()))
        if not second_half and at > 8:
            queue.enqueue_many(specs[len(specs) // 2:]).result()  # more work, mid-run
            second_half = True
        if target == "Ray":
            log("restarting Ray")
            begun = time.time()
            dotdo.shutdown()
            # [begun, ended]: the old Ray's processes may start runs until it has
            # stopped (seconds on a loaded machine), and all are gone after
            restarts.append([begun, time.time()])
            start_ray(storage)
            queue.get_metrics().result()  # the first call: the queue wakes its workers
            continue
        stub = dotdo.stub(target, rng.choice(WORKERS) if target == "Worker" else
                          QUEUE if target == "Queue" else "default")
        pid = pid_of(stub)
        log(f"SIGKILL {target} {stub.id} (pid {pid})")
        kills.append([target, pid, time.time()])
        os.kill(pid, signal.SIGKILL)

    # Wait for every job to end, with progress
    deadline = time.time() + 300
    said = ""
    while True:
        try:
            m = queue.get_metrics().result(timeout=30)
        except Exception:  # noqa: BLE001 - the queue is coming back
            time.sleep(1)
            continue
        if (m.pending + m.running + m.stuck + m.delayed + m.retrying == 0
                and m.completed + m.failed == len(specs)):
            break
        if time.time() > deadline:
            break
        now = (f"pending {m.pending} running {m.running} stuck {m.stuck} "
               f"completed {m.completed} failed {m.failed}")
        if now != said:  # progress, once a change
            log(now)
            said = now
        time.sleep(0.2)
    time.sleep(3)  # let the last Job.failed events reach the App's handler
    return tally(queue, expected, retries, ledger_path, kills, restarts)


def tally(queue, expected: dict, retries: dict, ledger_path: str, kills: list,
          restarts: list) -> dict:
    jobs = read_jobs(queue)
    conn = sqlite3.connect(ledger_path)
    runs = conn.execute("SELECT run, job, kind, pid, started, ended, outcome FROM runs "
                        "ORDER BY started").fetchall()
    reports = conn.execute("SELECT job, count(DISTINCT event) FROM failure_reports "
                           "GROUP BY job").fetchall()
    conn.close()

    wrong = {j: (outcome(jobs[j]) if j in jobs else "missing", want)
             for j, want in expected.items() if j not in jobs or outcome(jobs[j]) != want}
    # When each process died: killed by us, by a Ray restart, or by a poison job in it
    died, born, last, outside = {}, {}, {}, set()
    for run_id, job, kind, pid, start, ended, result in runs:
        born[pid] = min(born.get(pid, start), start)
        last[pid] = max(last.get(pid, 0.0), ended or start)  # alive then, at least
    for _, pid, t in kills:
        died[pid], _ = t, outside.add(pid)
    for pid, first in born.items():
        restart = next((begun for begun, ended in restarts if ended > first), None)
        if restart is not None and restart < died.get(pid, float("inf")):
            # It went down during the restart: at its last ledger line or later (a
            # process finishes what it runs for a moment after the driver asks)
            died[pid], _ = max(restart, last[pid]), outside.add(pid)
    for run_id, job, kind, pid, start, ended, result in runs:
        if kind == "poison" and start + 0.2 < died.get(pid, float("inf")):
            died[pid], _ = max(start + 0.2, last[pid]), outside.discard(pid)
    by_job: dict[str, list] = {}
    interrupted = unexplained = 0
    for run_id, job, kind, pid, start, ended, result in runs:
        if ended is None:
            end = died.get(pid)
            if end is None:
                unexplained += 1  # a run that neither ended nor lost its process
                end = float("inf")
            interrupted += 1
        else:
            end = ended
        by_job.setdefault(job, []).append((start, end, result, pid))
    duplicates, overlaps, rerun = {}, {}, 0
    for job, spans in by_job.items():
        spans.sort()
        if not job.startswith("f.overrun"):  # its timed-out attempts return, ignored
            oks = [(end, pid) for _, end, result, pid in spans if result == "ok"]
            # A run that returned moments before its process died was in flight: its
            # step was not journaled yet, so it runs again (at-least-once, by design)
            settled = [end for end, pid in oks if not 0 <= died.get(pid, -1e9) - end < 1.0]
            rerun += len(oks) > 1 and len(settled) <= 1
            if len(settled) > 1:
                duplicates[job] = len(oks)
        if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
            overlaps[job] = spans
    # A job whose worker we killed while it ran alone, max_retries + 1 times, fails
    # with WorkerCrashError by design: a kill from outside looks like one from inside
    unfinished = {}  # pid -> runs that never ended there (all died with it)
    for run_id, job, kind, pid, start, ended, result in runs:
        if ended is None:
            unfinished[pid] = unfinished.get(pid, 0) + 1
    killed_alone = {}
    for job, (got, want) in list(wrong.items()):
        alone_kills = sum(1 for _, _, result, pid in by_job.get(job, ())
                          if result is None and pid in outside and unfinished[pid] == 1)
        if got == "WorkerCrashError" and alone_kills > retries[job]:
            del wrong[job]
            killed_alone[job] = alone_kills
    failed = {j for j, job in jobs.items() if job["status"] == "failed"}
    reported = dict(reports)
    return {
        "jobs": len(expected),
        "completed": sum(1 for j in jobs.values() if j["status"] == "completed"),
        "failed_by_design": len(failed) - sum(1 for j in wrong if j in failed),
        "poison": {j: jobs[j]["error"] for j in jobs if j.startswith("f.poison")},
        "lost_or_wrong": wrong,
        "failed_after_we_killed_their_worker_alone": killed_alone,
        "still_running": sum(1 for j in jobs.values()
                             if j["status"] in ("pending", "delayed", "running", "stuck")),
        "runs": len(runs),
        "interrupted_runs": interrupted,
        "rerun_after_returning_moments_before_a_kill": rerun,
        "unexplained_runs": unexplained,
        "duplicate_executions": duplicates,
        "overlapping_runs": {j: len(s) for j, s in overlaps.items()},
        "failures_reported_once": sum(1 for j in failed if reported.get(j) == 1),
        "failures": len(failed),
        "failure_reports_wrong": {j: n for j, n in reported.items()
                                  if n != 1 or j not in failed},
        "kills": {t: sum(1 for k in kills if k[0] == t) for t in KILLS},
        "ray_restarts": len(restarts),
    }


if __name__ == "__main__":
    work = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else random.randrange(1 << 30)
    log(f"seed {seed}")
    os.makedirs(work, exist_ok=True)
    try:
        outcome = run(work, seed)
    finally:
        dotdo.shutdown()
    print("OUTCOME " + json.dumps({"seed": seed, **outcome}), flush=True)
