"""Fault classes beyond kills, each in a Ray of its own:

    python -m tests.faults.classes <work dir> <class> [storage dir]

``class`` is one of :data:`CLASSES`: ``freeze`` (SIGSTOP a Worker, then the Queue,
for longer than the lease), ``clock`` (the queue's wall clock stepped by an hour, both
ways), ``disk_full`` (the storage, a small tmpfs given as ``storage dir``, filled and
freed), ``corruption`` (a second queue's file overwritten while it is live) and
``poison`` (payloads holding stubs of classes the queue's process never imported,
across queue restarts). Each runs a few dozen jobs of ``tests.faults.handlers`` on one
queue and two workers while the fault happens, then checks the handlers' ledger
(``tests.faults.tally``) and prints the counts as one ``OUTCOME {json}`` line.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from typing import Any

import ray

import dotdo
from dotdo import client
from dotdo.ids import storage_path
from tests.faults import probe
from tests.faults.driver_only import FaultDriverOnly
from tests.faults.poison_defs import Box, FaultRef
from tests.faults.tally import Run, check, log, pid_of, read_jobs, read_ledger

QUEUE = "fc"
WORKERS = ("fw0", "fw1")
LEASE = 2.0  # seconds: the queue's lease timeout in every class
FREEZE = 6.0  # seconds a process stays SIGSTOPped: three leases
# A thawed worker beats at once (its heartbeat is a third of the lease late at most)
# and its lost runs stop on the answer: a full lease is the time it has to learn.
LEARN = LEASE
MOMENT = 0.5  # a run that returned this soon before a freeze may not have been reported
CONCURRENCY = 3
# kind -> (count, options, payload, the outcome it must end with)
BASE_MIX: dict[str, tuple[int, dict, dict, str]] = {
    "f.quick": (16, {}, {"seconds": 0.02}, "completed"),
    "f.quick_sync": (8, {}, {"seconds": 0.02}, "completed"),
    "f.flaky": (4, {"max_retries": 4}, {"fail": 2}, "completed"),
    "f.doomed": (3, {"max_retries": 1}, {}, "ValueError"),
}


def fenced(seconds: float, n: int = 3) -> dict[str, tuple[int, dict, dict, str]]:
    """Long jobs writing to the ledger with their fence, async and sync."""
    return {"f.fenced": (n, {}, {"seconds": seconds}, "completed"),
            "f.fenced_sync": (n, {}, {"seconds": seconds}, "completed")}


class Session:
    """One queue, two workers and the ledger, on a Ray of this process's own."""

    def __init__(self, work: str, storage: str) -> None:
        self.storage = storage
        self.ledger = os.path.join(work, "ledger.sqlite3")
        os.environ["DOTDO_FAULT_LEDGER"] = self.ledger  # Ray's workers inherit it
        from tests.faults import handlers

        handlers.ledger(self.ledger)
        dotdo.init(address="local", storage=storage, num_cpus=2)
        self.queue = dotdo.Queue(QUEUE)
        self.queue.configure(lease_timeout=LEASE).result()
        self.expected: dict[str, str] = {}
        self.batches = 0

    def specs(self, mix: dict, payload: dict | None = None) -> list[dict]:
        """Jobs of ``mix`` with ids new to this run, the long ones first, async and
        sync in turn (so that each worker runs both when a fault comes)."""
        self.batches += 1
        kinds = []
        for kind, (count, options, extra, _) in mix.items():
            kinds.append([{"type": kind, "job_id": f"{kind}-{self.batches}-{i}",
                           "payload": {**extra, **(payload or {}),
                                       "job": f"{kind}-{self.batches}-{i}"}, **options}
                          for i in range(count)])
        long = [k for k in kinds if k and k[0]["type"].startswith("f.fenced")]
        turns = [spec for i in range(max(map(len, long), default=0)) for k in long
                 if i < len(k) for spec in [k[i]]]
        return turns + [spec for k in kinds if k not in long for spec in k]

    def expect(self, specs: list[dict], mix: dict) -> None:
        for spec in specs:
            self.expected[spec["job_id"]] = mix[spec["type"]][3]

    def enqueue(self, mix: dict) -> list[dict]:
        specs = self.specs(mix)
        self.queue.enqueue_many(specs).result()
        self.expect(specs, mix)
        return specs

    def start_workers(self) -> dict[str, int]:
        workers = [dotdo.Worker(w) for w in WORKERS]
        dotdo.get([w.start(QUEUE, concurrency=CONCURRENCY, backoff=0.2) for w in workers])
        return {w: pid_of(dotdo.Worker(w)) for w in WORKERS}

    def running(self, pids: set[int], kinds: tuple[str, ...]) -> int:
        """Runs of ``kinds`` the ledger shows running now in one of ``pids``."""
        conn = sqlite3.connect(self.ledger)
        try:
            return sum(1 for pid, kind in conn.execute(
                "SELECT pid, kind FROM runs WHERE ended IS NULL").fetchall()
                if pid in pids and kind in kinds)
        finally:
            conn.close()

    def wait_running(self, pids: set[int], kinds: tuple[str, ...], at_least: int = 1,
                     wait: float = 60.0) -> int:
        deadline = time.time() + wait
        while (n := self.running(pids, kinds)) < at_least and time.time() < deadline:
            time.sleep(0.05)
        return n

    def wait_done(self, wait: float = 240.0) -> None:
        deadline = time.time() + wait
        said = ""
        while time.time() < deadline:
            try:
                m = self.queue.get_metrics().result(timeout=30)
            except Exception as exc:  # noqa: BLE001 - the queue is coming back
                log(f"metrics: {type(exc).__name__}: {exc}")
                time.sleep(1)
                continue
            if (m.pending + m.running + m.stuck + m.delayed + m.retrying + m.waiting == 0
                    and m.completed + m.failed >= len(self.expected)):
                break
            now = (f"pending {m.pending} delayed {m.delayed} retrying {m.retrying} running "
                   f"{m.running} stuck {m.stuck} completed {m.completed} failed {m.failed}")
            if now != said:  # progress, once a change
                log(now)
                said = now
            time.sleep(0.2)
        time.sleep(3)  # the last Job.failed events reach the App's handler

    def attempts(self) -> dict[str, list[dict]]:
        """Every job's attempts, as the queue recorded them."""
        ids = list(self.expected)
        answers = dotdo.get([self.queue.attempts(j) for j in ids])
        return dict(zip(ids, answers))

    def tally(self, **excuses: Any) -> dict[str, Any]:
        return check(read_jobs(self.queue), self.expected, read_ledger(self.ledger),
                     **excuses)


def freeze_process(pid: int, seconds: float) -> tuple[float, float]:
    """SIGSTOP ``pid`` for ``seconds``; returns when it stopped and when it went on."""
    stopped = time.time()  # before the signal, and the thaw after ``went_on``
    os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    went_on = time.time()
    os.kill(pid, signal.SIGCONT)
    return stopped, went_on


# -- the classes ------------------------------------------------------------------------

def freeze(work: str, storage: str) -> dict[str, Any]:
    """A Worker frozen (SIGSTOP) for three leases while it runs fenced jobs, then the
    Queue. The worker's runs lose their leases and go to the other worker; once
    thawed, the frozen one hears so in its next heartbeat's answer and stops them
    (async ones cancelled, sync ones see ``dotdo.cancelled()``), their outcomes
    discarded; their fenced writes after that are refused by the ledger. A frozen
    queue gives every lease back the time it was frozen: nothing expires."""
    s = Session(work, storage)
    mix = {**BASE_MIX, **fenced(4.0)}
    s.enqueue(mix)
    pids = s.start_workers()
    long_kinds = ("fenced", "fenced_sync")
    frozen_worker = pids[WORKERS[0]]
    # Frozen while it runs both an async and a sync fenced job
    s.wait_running({frozen_worker}, ("fenced",))
    s.wait_running({frozen_worker}, ("fenced_sync",))
    held = s.running({frozen_worker}, long_kinds)
    log(f"SIGSTOP worker {WORKERS[0]} (pid {frozen_worker}), running {held} fenced jobs")
    w_stop, w_cont = freeze_process(frozen_worker, FREEZE)
    log("SIGCONT worker")
    more = fenced(4.0)
    s.enqueue(more)
    queue_pid = pid_of(s.queue)
    held_q = s.wait_running(set(pids.values()), long_kinds, at_least=2)
    log(f"SIGSTOP queue (pid {queue_pid}), {held_q} fenced jobs running")
    q_stop, q_cont = freeze_process(queue_pid, FREEZE)
    log("SIGCONT queue")
    s.wait_done()

    def thawed_late(run: Run) -> bool:  # a run of the frozen worker, caught by the freeze
        return run.pid == frozen_worker and run.started < w_stop and (
            run.ended is None or run.ended > w_stop)

    def overlap_excuse(a: Run, b: Run) -> str | None:
        if thawed_late(a) and a.ended is not None and a.ended <= w_cont + LEARN:
            return "a frozen worker's run, ended within its time to learn after the thaw"
        return None

    def extra_ok_excuse(run: Run) -> str | None:
        if (run.pid == frozen_worker and run.ended is not None
                and w_stop - MOMENT <= run.ended <= w_cont + LEARN):
            return ("a frozen worker's run that returned just before the freeze or "
                    "within its time to learn after the thaw")
        return None

    out = s.tally(overlap_excuse=overlap_excuse, extra_ok_excuse=extra_ok_excuse)
    ledger = read_ledger(s.ledger)
    caught = [r for r in ledger.runs if thawed_late(r)]
    stopped = [r for r in caught if r.outcome != "ok"]
    ran_after = [r.ended - w_cont for r in caught if r.ended is not None]
    attempts = s.attempts()
    lost = [(a["finishedAt"], a["worker"]) for tries in attempts.values() for a in tries
            if a["outcome"] == "lost"]
    # An outcome of a run that lost its lease must never reach the queue as an attempt
    discarded_reached = [a for tries in attempts.values() for a in tries
                         if a["outcome"] in ("failed", "cancelled")
                         and any(w in (a["error"] or "") for w in
                                 ("LeaseLost", "CancelledError", "Stopped"))]
    # Writes the frozen worker's runs tried after the thaw, before they learnt
    stale_after_thaw = sum(1 for _, _, _, _, pid, at, ok in ledger.writes
                           if pid == frozen_worker and at >= w_stop and not ok)
    out.update({
        "worker_frozen_s": round(w_cont - w_stop, 2),
        "queue_frozen_s": round(q_cont - q_stop, 2),
        # Running when the queue froze: their leases ran out meanwhile, on its clock
        "runs_caught_by_queue_freeze": sum(1 for r in ledger.runs if r.started < q_stop
                                           and r.ended is not None and r.ended > q_stop),
        "frozen_runs": len(caught),
        "frozen_runs_ended": {f"{k}: {o}": sum(1 for r in caught if (r.kind, r.outcome) == (k, o))
                              for k, o in sorted({(r.kind, r.outcome) for r in caught})},
        "frozen_runs_stopped_after_thaw": len(stopped),
        "frozen_runs_ran_past_learning": sum(1 for r in caught if r.ended is None
                                             or r.ended > w_cont + LEARN),
        "longest_run_after_thaw_s": round(max(ran_after, default=0.0), 2),
        "leases_expired_in_worker_freeze": sum(1 for at, _ in lost
                                               if w_stop <= at <= w_cont + LEARN),
        "leases_expired_elsewhere": sum(1 for at, _ in lost
                                        if not w_stop <= at <= w_cont + LEARN),
        "lost_runs_outcomes_recorded": len(discarded_reached),
        "stale_writes_refused_after_thaw": stale_after_thaw,
    })
    return out


def clock(work: str, storage: str) -> dict[str, Any]:
    """The queue's wall clock stepped an hour forward, back, back again and forward
    (the host's clock seam, ``shift_clock``) while jobs run and more are enqueued in
    each window. Leases are on the queue's monotonic clock: none expires, nothing runs
    twice, and jobs enqueued or retrying across a step run without waiting an hour."""
    s = Session(work, storage)
    s.enqueue({**BASE_MIX, **fenced(3.0)})
    s.start_workers()
    handle = client.actor_handle(s.queue)
    offsets = []
    for step in (3600, -3600, -3600, 3600):
        time.sleep(1.5)
        offsets.append(ray.get(handle.shift_clock.remote(step)))
        log(f"queue clock stepped {step:+d} s: offset {offsets[-1]:+.0f} s")
        s.enqueue({"f.quick": (4, {}, {"seconds": 0.02}, "completed"),
                   "f.flaky": (2, {"max_retries": 4}, {"fail": 2}, "completed"),
                   **fenced(2.0, 1)})
    s.wait_done(wait=120)
    out = s.tally()
    attempts = s.attempts()
    out.update({
        "clock_offsets": offsets,
        "leases_expired": sum(1 for tries in attempts.values() for a in tries
                              if a["outcome"] == "lost"),
    })
    return out


def fill(directory: str) -> str:
    """Fill the disk of ``directory`` with a file of zeros; returns its path."""
    filler = os.path.join(directory, "filler")
    for bs in ("1M", "4k"):  # then what a megabyte block leaves
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", f"bs={bs}", "oflag=append",
                        "conv=notrunc"], capture_output=True)
    return filler


def disk_full(work: str, storage: str) -> dict[str, Any]:
    """The storage (a small tmpfs) filled mid-run, then freed. While full, an enqueue
    fails at once with ``StorageFullError`` (nothing of it written); nothing
    acknowledged is lost, and once space is back every job finishes."""
    s = Session(work, storage)
    s.enqueue({**BASE_MIX, **fenced(2.0, 2)})
    s.start_workers()
    time.sleep(1.5)
    filler = fill(storage)
    full = time.time()
    free = os.statvfs(storage)
    log(f"disk full: {free.f_bavail * free.f_frsize} bytes left")
    refused: list[dict] = []
    accepted: list[str] = []
    blob = "x" * 200_000  # new pages for every try: the log's old ones do not last
    for _ in range(60):
        mix = {"f.quick": (1, {}, {"seconds": 0.02, "blob": blob}, "completed")}
        specs = s.specs(mix)
        began = time.time()
        try:
            s.queue.enqueue_many(specs).result(timeout=60)
        except Exception as exc:  # noqa: BLE001 - counted: what it is, how soon
            refused.append({"job": specs[0]["job_id"], "seconds": time.time() - began,
                            "full": isinstance(exc, dotdo.StorageFullError)
                            and isinstance(exc, dotdo.StorageError)
                            and "full" in str(exc),
                            "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            if len(refused) >= 5:
                break
        else:
            s.expect(specs, mix)
            accepted.append(specs[0]["job_id"])
        time.sleep(0.05)
    time.sleep(4.0)  # the workers, the queue and the App meet the full disk too
    freed = time.time()
    os.remove(filler)
    log(f"disk freed after {len(refused)} refused and {len(accepted)} acknowledged enqueues")
    s.enqueue(BASE_MIX)
    s.wait_done()
    out = s.tally()
    jobs = read_jobs(s.queue)
    outcomes: dict[str, int] = {}
    for tries in s.attempts().values():
        for a in tries:
            key = a["outcome"] + (f" ({a['error'].split(':', 1)[0]})" if a["error"] else "")
            outcomes[key] = outcomes.get(key, 0) + 1
    out.update({
        "full_for_s": round(freed - full, 1),
        "runs_while_full": sum(1 for r in read_ledger(s.ledger).runs
                               if r.started < freed and (r.ended or freed) > full),
        "attempts": outcomes,
        "enqueues_refused": len(refused),
        "refused_as_storage_full": sum(1 for r in refused if r["full"]),
        "refused_otherwise": [r["error"] for r in refused if not r["full"]],
        "refused_but_written": sum(1 for r in refused if r["job"] in jobs),
        "slowest_refusal_s": round(max((r["seconds"] for r in refused), default=0.0), 3),
        "first_refusal": refused[0]["error"] if refused else None,
        "acknowledged_while_full": len(accepted),
    })
    return out


def corruption(work: str, storage: str) -> dict[str, Any]:
    """A second queue's file overwritten with garbage while it is live: calls to it
    fail with ``CorruptStorageError`` naming its file (now, and after its process
    restarts); the main queue and its workers are not touched."""
    s = Session(work, storage)
    victim = dotdo.Queue("victim")
    # Many times the connection's page cache, and more than SQLite's log holds before
    # it checkpoints: the file itself holds the jobs, and reading them all reads it.
    for batch in range(8):
        victim.enqueue_many([{"type": "f.quick", "job_id": f"v-{batch}-{i}",
                              "payload": {"job": f"v-{batch}-{i}", "blob": "v" * 16_000}}
                             for i in range(40)]).result()
    path = storage_path(storage, "Queue", "victim")
    s.enqueue({**BASE_MIX, **fenced(2.0, 2)})
    s.start_workers()
    time.sleep(1.0)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # every page, the header first
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    log(f"overwrote {path} ({size} bytes) with garbage")
    live: list[Exception] = []
    served = 0  # calls answered from pages the damage did not reach (cached, in the log)
    for i in range(30):
        try:
            read_jobs(victim)
            victim.enqueue("f.quick", {"job": f"v-late-{i}"}).result(timeout=60)
            served += 1
        except Exception as exc:  # noqa: BLE001 - counted
            live.append(exc)
            if len(live) >= 3:
                break
        time.sleep(0.1)
    os.kill(pid_of(victim), signal.SIGKILL)  # it comes back: to the same damaged file
    pid_of(victim)
    restarted: Exception | None = None
    try:
        victim.count().result(timeout=60)
    except Exception as exc:  # noqa: BLE001 - counted
        restarted = exc
    s.wait_done()
    out = s.tally()

    def named(exc: Exception | None) -> bool:
        return (isinstance(exc, dotdo.CorruptStorageError) and path in str(exc)
                and getattr(exc, "path", None) == path)

    out.update({
        "damaged_file_bytes": size,
        "live_calls_served": served,
        "live_calls_failed": len(live),
        "live_errors_corrupt_naming_file": sum(1 for e in live if named(e)),
        "live_errors": sorted({f"{type(e).__name__}: {str(e)[:200]}" for e in live}),
        "after_restart_corrupt_naming_file": named(restarted),
        "after_restart_error": None if restarted is None
        else f"{type(restarted).__name__}: {str(restarted)[:200]}",
    })
    return out


POISON_MODULES = ["tests.faults.poison_defs", "tests.faults.driver_only",
                  "tests.faults.handlers"]


def poison(work: str, storage: str) -> dict[str, Any]:
    """Payloads holding a stub of a class (and a dataclass) the queue's process never
    imported, the queue SIGKILLed after they were enqueued and again mid-run. The
    queue never decodes them: claims go on, ``get``/``list`` show them without
    importing anything, they run on workers that import their module, a payload no
    worker can decode fails with a ``DecodeError``, and the other jobs are unaffected."""
    s = Session(work, storage)
    s.enqueue({**BASE_MIX, **fenced(2.0, 2)})
    refs = {"f.ref": (5, {}, {}, "completed")}
    ref_specs = s.specs(refs)
    for i, spec in enumerate(ref_specs):
        stub = dotdo.stub(FaultRef, f"r{i}")
        spec["payload"].update(ref=stub, box=Box(ref=stub, note=f"box {i}"))
    orphans = {"f.ref": (2, {}, {}, "DecodeError")}
    orphan_specs = s.specs(orphans)
    for i, spec in enumerate(orphan_specs):
        spec["payload"].update(ref=dotdo.stub(FaultDriverOnly, f"o{i}"), box=None)
    answered = s.queue.enqueue_many(ref_specs + orphan_specs).result()
    s.expect(ref_specs, refs)
    s.expect(orphan_specs, orphans)
    handle = lambda: client.actor_handle(s.queue)  # noqa: E731 - a new one per restart
    # The live queue got the payloads encoded: it imported nothing to take them
    imported_live = ray.get(handle().__ray_call__.remote(probe.imported, POISON_MODULES))
    old = pid_of(s.queue)
    os.kill(old, signal.SIGKILL)
    log(f"SIGKILL queue (pid {old}) after the enqueue")
    while pid_of(s.queue) == old:
        time.sleep(0.2)
    imported_fresh = ray.get(handle().__ray_call__.remote(probe.imported, POISON_MODULES))
    shown = s.queue.get(ref_specs[0]["job_id"]).result()
    listed = read_jobs(s.queue)
    orphan_shown = s.queue.get(orphan_specs[0]["job_id"]).result()
    imported_after_reads = ray.get(handle().__ray_call__.remote(probe.imported,
                                                                 POISON_MODULES))
    s.start_workers()
    time.sleep(1.0)
    mid = pid_of(s.queue)
    os.kill(mid, signal.SIGKILL)
    log(f"SIGKILL queue (pid {mid}) mid-run")
    s.wait_done()
    imported_at_end = ray.get(handle().__ray_call__.remote(probe.imported, POISON_MODULES))
    out = s.tally()
    results = {spec["job_id"]: s.queue.result(spec["job_id"]).result() for spec in ref_specs}
    right = sum(1 for spec in ref_specs if results[spec["job_id"]] is not None
                and results[spec["job_id"]]["output"]["ref"] == spec["payload"]["ref"])
    jobs = read_jobs(s.queue)
    out.update({
        "queue_restarts": 2,
        "queue_imported_live": imported_live,
        "enqueue_answer_shows_box": isinstance(answered[0]["payload"]["box"], Box)
        and answered[0]["payload"]["box"] == ref_specs[0]["payload"]["box"],
        "queue_imported_after_restart": imported_fresh,
        "queue_imported_after_get_and_list": imported_after_reads,
        "queue_imported_at_end": imported_at_end,
        "get_shows_stub": shown is not None and shown["payload"]["ref"]
        == ref_specs[0]["payload"]["ref"],
        "get_shows_orphan_stub": orphan_shown is not None and orphan_shown["payload"]["ref"]
        == orphan_specs[0]["payload"]["ref"],
        "listed_poison_jobs": sum(1 for spec in ref_specs + orphan_specs
                                  if spec["job_id"] in listed),
        "poison_jobs": len(ref_specs) + len(orphan_specs),
        "poison_completed_with_their_stub": right,
        "undecodable_errors": [jobs[spec["job_id"]]["error"][:300] for spec in orphan_specs
                               if jobs.get(spec["job_id"], {}).get("error")],
    })
    return out


CLASSES = {"freeze": freeze, "clock": clock, "disk_full": disk_full,
           "corruption": corruption, "poison": poison}


if __name__ == "__main__":
    work, name = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    storage = sys.argv[3] if len(sys.argv) > 3 else os.path.join(work, "store")
    log(f"fault class {name}: storage {storage}")
    began = time.time()
    try:
        outcome = CLASSES[name](work, storage)
    finally:
        dotdo.shutdown()
    print("OUTCOME " + json.dumps({"class": name, "seconds": round(time.time() - began, 1),
                                   **outcome}, default=str), flush=True)
