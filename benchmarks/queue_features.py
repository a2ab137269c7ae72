"""What the queue's features cost when used: each against the plain queue, one run.

    python benchmarks/queue_features.py [--jobs 5000] [--quick] [--rounds 5]
                                        [--only features|waits] [--parked 100000] [--due 10000]

Every figure sets a feature against the same queue without it, measured side by side
in the same run, in rounds that alternate the variants (each round starts at another
one) so that machine noise hits all of them; the figures are medians over rounds
(twice as many rounds for the enqueue, which takes a fraction of a second each).
Limits are configured so generously that they never bind (``key_rate="1000000/s"``,
``group_concurrency=100000``): what is measured is the bookkeeping, not the limit.

(1) Single ``enqueue``, N calls issued without waiting, then gathered with
    ``dotdo.get`` (as ``queue_throughput.py`` measures it), into one queue per
    variant that no worker serves (it grows by N jobs a round): plain; with
    ``group`` (20 groups) and ``rate_key`` (50 keys); with a ``dedupe_key`` (one per
    job) and ``unique_for``; ``depends_on`` a completed parent.
(2) End to end: N jobs enqueued with ``enqueue_many`` beforehand, then two workers
    (concurrency 16 each) started on the queue, timed from ``Worker.start`` to the
    queue's ``completed`` reaching N (``get_metrics`` polled every 50 ms), with a
    sync no-op handler: plain; jobs in 20 groups with ``group_concurrency`` set; jobs
    with 50 rate keys and ``key_rate`` set; a handler calling ``dotdo.progress`` once.

In (2) every variant of every round has a fresh queue; the same two workers serve
them all, one after another (``stop``, then ``start`` on the next queue).

(3) Durable waits, on the same two workers, each part on a fresh queue:
    (a) ``--parked`` jobs (100,000) whose handler awaits ``dotdo.sleep(3600)``,
        enqueued with ``enqueue_many`` while the workers serve the queue, timed to the
        queue's ``sleeping`` count reaching them all (polled every second); the
        processes of this Ray (the driver's descendants, from ``/proc``) and the
        queue's file (its content, and on disk with its WAL) before and after; its
        growth per parked job, by table, against a queue of as many plain pending jobs
        (same payloads, no worker);
    (b) ``--due`` jobs (10,000) that ``sleep_until`` one common time, set far enough
        ahead that they are all parked before it: from that time until the last one
        completed, and the p50/p99 of each job's completion (``finishedAt``, on the
        queue's clock, the machine's) minus the due time; against as many plain jobs
        run through the same workers, from ``Worker.start`` to all completed.

Results go to ``benchmarks/results/queue_features.json`` (``--only`` one section:
``queue_features.<section>.json``, so a partial run does not replace the full one).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

import dotdo  # noqa: E402
from benchmarks._results import write_results  # noqa: E402
from dotdo.ids import storage_path  # noqa: E402

console = Console()

GROUPS = 20
KEYS = 50
WORKERS = 2
CONCURRENCY = 16
UNBOUND = {"key_rate": "1000000/s", "group_concurrency": 100_000}  # never binds
MAX_JOBS = 10_000  # one enqueue_many; and a queue keeps 10,000 completed jobs by default
PARENT = "parent"
SECTIONS = ("features", "waits")
SLEEP_S = 3600  # (3a): parked for an hour, far past the measurement
PARKED_MAX_BYTES = 4096  # (3a) target: "at most a few KB" per parked job
RESUMED_WITHIN_S = 10.0  # (3b) target: "all resume within seconds" of their due time


# -- the handlers (module level: the workers import this file for them) -------------------


@dotdo.job("noop")
def noop(payload):
    return None


@dotdo.job("noop-progress")
def noop_progress(payload):
    dotdo.progress(0.5, "halfway")
    return None


@dotdo.job("sleep-hour")
async def sleep_hour(payload):
    await dotdo.sleep(SLEEP_S)  # parks the job: no worker slot, no process
    return None


@dotdo.job("sleep-until")
async def sleep_until(payload):
    await dotdo.sleep_until(payload["due"])
    return None


# -- the variants ---------------------------------------------------------------------------


class Variant:
    """A way to use the queue: the job type, each job's options, the queue's config."""

    def __init__(self, name: str, options: Callable[[int], dict[str, Any]] | None = None,
                 configure: dict[str, Any] | None = None, job_type: str = "noop",
                 parent: bool = False) -> None:
        self.name, self.job_type, self.parent = name, job_type, parent
        self.options = options or (lambda i: {})
        self.configure = configure or {}


ENQUEUE = [
    Variant("plain"),
    Variant(f"group + rate_key ({GROUPS}, {KEYS})",
            lambda i: {"group": f"tenant-{i % GROUPS}", "rate_key": f"customer-{i % KEYS}"},
            UNBOUND),
    Variant("dedupe_key + unique_for",
            lambda i: {"dedupe_key": f"key-{i}", "unique_for": 3600}),
    Variant("depends_on (completed parent)", lambda i: {"depends_on": [PARENT]}, parent=True),
]

END_TO_END = [
    Variant("plain"),
    Variant(f"group ({GROUPS}) + group_concurrency",
            lambda i: {"group": f"tenant-{i % GROUPS}"},
            {"group_concurrency": UNBOUND["group_concurrency"]}),
    Variant(f"rate_key ({KEYS}) + key_rate",
            lambda i: {"rate_key": f"customer-{i % KEYS}"}, {"key_rate": UNBOUND["key_rate"]}),
    Variant("dotdo.progress per job", job_type="noop-progress"),
]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _git_commit() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


# -- the bench --------------------------------------------------------------------------------


class Bench:
    def __init__(self, run: str, n: int, progress: Progress) -> None:
        self.run, self.n, self.progress = run, n, progress
        self.workers = [dotdo.Worker(f"{run}-worker-{i}") for i in range(WORKERS)]

    def queue(self, phase: str, variant: Variant, r: int):
        queue = dotdo.Queue(f"{self.run}-{phase}-{_slug(variant.name)}-{r}")
        if variant.configure:
            queue.configure(**variant.configure).result()
        else:
            queue.get_metrics().result()  # its actor up before any clock starts
        return queue

    def start(self, queue) -> None:
        dotdo.get([w.start(queue.id, concurrency=CONCURRENCY) for w in self.workers])

    def stop(self) -> None:
        dotdo.get([w.stop() for w in self.workers])
        # A stopped worker's loop ends once its last claim, an idle long-poll of up to
        # 1 s, returns; a start before that goes on in that loop after it returns, and
        # the wait would count against whichever variant comes next.
        time.sleep(1.5)

    def until_completed(self, queue, count: int, timeout: float, task=None) -> tuple[bool, Any]:
        """Poll the queue's metrics every 50 ms until ``count`` jobs completed (or
        every job finished, some failed); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            m = queue.get_metrics().result()
            if task is not None:
                self.progress.update(task, completed=m.completed)
            if m.completed >= count or m.completed + m.failed >= count:
                return True, m
            if time.monotonic() > deadline:
                return False, m
            time.sleep(0.05)

    def warm_up(self) -> None:
        """The handlers run on both workers before any clock starts: the workers'
        processes up, the handler module imported, their timings of the handlers; and
        a few jobs park and wake (the durable waits' path)."""
        queue = dotdo.Queue(f"{self.run}-warm-up")
        jobs: list[dict[str, Any]] = [{"type": t, "payload": i}
                                      for t in ("noop", "noop-progress") for i in range(300)]
        due = time.time() + 2  # and the path of a durable wait: park, wake, replay
        jobs += [{"type": "sleep-until", "payload": {"due": due}} for _ in range(50)]
        queue.enqueue_many(jobs).result()
        self.start(queue)
        ok, m = self.until_completed(queue, len(jobs), 120)
        self.stop()
        if not ok or m.failed:
            raise RuntimeError(f"warm-up: {m.completed} of {len(jobs)} jobs completed, "
                               f"{m.failed} failed: do the workers start?")

    # (1) single enqueue, issued then gathered

    def prepare_enqueue(self, variant: Variant):
        queue = self.queue("enqueue", variant, 0)
        if variant.parent:  # the parent completed, and no worker serving the queue after
            queue.enqueue("noop", "parent", job_id=PARENT).result()
            self.start(queue)
            ok, m = self.until_completed(queue, 1, 60)
            self.stop()
            if not ok or m.failed:
                raise RuntimeError("the parent job for depends_on did not complete")
        return queue

    def enqueue(self, variant: Variant, queue, r: int) -> float:
        """Round ``r``'s N enqueues (jobs r*N to (r+1)*N: dedupe keys stay unique)."""
        numbers = range(r * self.n, (r + 1) * self.n)
        options = [variant.options(i) for i in numbers]
        start = time.perf_counter()
        jobs = dotdo.get([queue.enqueue(variant.job_type, i, **o) for i, o in zip(numbers, options)])
        elapsed = time.perf_counter() - start
        wrong = [j for j in jobs if j["enqueued"] != "added" or j["status"] != "pending"]
        if wrong:
            raise RuntimeError(f"{variant.name}: {len(wrong)} enqueues did not add a pending job, "
                               f"e.g. {wrong[0]['enqueued']} {wrong[0]['status']}")
        return self.n / elapsed

    # (2) end to end through two workers

    def prepare_end_to_end(self, variant: Variant, r: int):
        queue = self.queue("e2e", variant, r)
        jobs = [{"type": variant.job_type, "payload": i, **variant.options(i)} for i in range(self.n)]
        queue.enqueue_many(jobs).result()
        pending = queue.get_metrics().result().pending
        if pending != self.n:
            raise RuntimeError(f"{variant.name}: {pending} pending jobs after enqueue_many, not {self.n}")
        return queue

    def end_to_end(self, variant: Variant, queue, timeout: float) -> tuple[float | None, int]:
        task = self.progress.add_task(f"  {variant.name}", total=self.n)
        start = time.perf_counter()
        self.start(queue)
        ok, m = self.until_completed(queue, self.n, timeout, task)
        elapsed = time.perf_counter() - start
        self.stop()
        self.progress.remove_task(task)
        if not ok:
            console.print(f"[red]{variant.name}: {m.completed}/{self.n} completed in {timeout:.0f} s")
            return None, m.failed
        if m.failed:
            console.print(f"[red]{variant.name}: {m.failed} jobs failed")
        return self.n / elapsed, m.failed


# -- (3) durable waits --------------------------------------------------------------------


def _ray_processes() -> dict[str, Any]:
    """The processes of this Ray, from ``/proc``: the driver's descendants (the GCS, the
    raylet, its workers and actors); of them those named ``ray::<name>`` (dotdo's
    hosts, ``ray::_HostActor``, and Ray's own agents), idle workers (``ray::IDLE``, a
    pool Ray keeps by itself) apart, and how many of each name."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                names[int(entry)] = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        # The name in stat may hold spaces and parentheses: the parent's pid is the
        # second field after its last ')'.
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    mine: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - mine
        mine |= frontier
    named = collections.Counter(names[pid].split(".")[0] for pid in mine
                                if names.get(pid, "").startswith("ray::"))
    idle = named.pop("ray::IDLE", 0)
    return {"processes": len(mine), "actor_processes": sum(named.values()),
            "idle_workers": idle, "by_name": dict(named)}


def _file_bytes(path: str) -> dict[str, Any]:
    """A SQLite file's size: on disk (the file and its write-ahead log, which holds
    pages not yet copied back and is reused, not shrunk, after that), and its content
    (``page_count`` x ``page_size`` as a reader sees it, the log's pages included),
    with the bytes of each table and index (``dbstat``). Read through a read-only
    connection, as operators' tools read a live object's file."""
    def size(p: str) -> int:
        return os.path.getsize(p) if os.path.exists(p) else 0

    main, wal = size(path), size(path + "-wal")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        tables = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    finally:
        conn.close()
    return {"file": main, "wal": wal, "on_disk": main + wal, "content": pages * page_size,
            "tables": tables}


def _growth(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, Any]:
    """Bytes per job added between two ``_file_bytes``, in all and by table."""
    tables = {name: (size - before["tables"].get(name, 0)) / n
              for name, size in after["tables"].items()}
    return {"bytes_per_job": (after["content"] - before["content"]) / n,
            "disk_bytes_per_job": (after["on_disk"] - before["on_disk"]) / n,
            "by_table": {k: v for k, v in sorted(tables.items(), key=lambda kv: -kv[1]) if v}}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Waits:
    """(3): what durable waits cost at scale, on the bench's two workers."""

    def __init__(self, bench: Bench, objects_root: str) -> None:
        self.bench, self.root = bench, objects_root

    def queue(self, name: str):
        queue = dotdo.Queue(f"{self.bench.run}-waits-{name}")
        queue.get_metrics().result()  # its actor up and its file made before any measure
        return queue

    def path(self, queue) -> str:
        return storage_path(self.root, "Queue", queue.id)

    @staticmethod
    def fill(queue, jobs: list[dict[str, Any]]) -> float:
        """Enqueue ``jobs`` in calls of at most MAX_JOBS; the seconds it took."""
        start = time.perf_counter()
        for i in range(0, len(jobs), MAX_JOBS):
            queue.enqueue_many(jobs[i:i + MAX_JOBS]).result()
        return time.perf_counter() - start

    def until(self, queue, figure: str, count: int, timeout: float, task=None,
              poll: float = 0.05) -> tuple[bool, Any]:
        """Poll the metrics every ``poll`` s until ``figure`` reaches ``count``; False on
        timeout. A failed job stops the bench: its error is the news. (Counting scans
        the queue's jobs: at 100,000 of them a poll every 50 ms would take a good part
        of the queue's time from what is measured.)"""
        deadline = time.monotonic() + timeout
        while True:
            m = queue.get_metrics().result()
            if task is not None:
                self.bench.progress.update(task, completed=getattr(m, figure))
            if m.failed:
                job = queue.list(status="failed", limit=1).result()["jobs"][0]
                raise RuntimeError(f"{queue.id}: {m.failed} jobs failed, e.g. {job['error']}")
            if getattr(m, figure) >= count:
                return True, m
            if time.monotonic() > deadline:
                return False, m
            time.sleep(poll)

    def pending(self, n: int) -> dict[str, Any]:
        """The reference: as many plain pending jobs (same payloads), no worker."""
        queue = self.queue("pending")
        before = _file_bytes(self.path(queue))
        enqueue_s = self.fill(queue, [{"type": "noop", "payload": i} for i in range(n)])
        after = _file_bytes(self.path(queue))
        return {"jobs": n, "enqueue_s": enqueue_s, "enqueued_per_s": n / enqueue_s,
                "file_before": before, "file_after": after, **_growth(before, after, n)}

    def parked(self, n: int, timeout: float) -> dict[str, Any]:
        """(3a) n jobs that each sleep an hour: enqueued, run to their sleep, parked."""
        queue = self.queue("parked")
        time.sleep(2)  # Ray's pool of idle workers settles after the queue's actor started
        processes_before = _ray_processes()
        file_before = _file_bytes(self.path(queue))
        self.bench.start(queue)
        task = self.bench.progress.add_task(f"(3a) {n:,} jobs parking in dotdo.sleep({SLEEP_S})",
                                            total=n)
        start = time.perf_counter()
        enqueue_s = self.fill(queue, [{"type": "sleep-hour", "payload": i} for i in range(n)])
        ok, m = self.until(queue, "sleeping", n, timeout, task, poll=1.0)
        elapsed = time.perf_counter() - start
        self.bench.progress.remove_task(task)
        if not ok:
            raise RuntimeError(f"(3a): {m.sleeping:,} of {n:,} jobs parked in {timeout:.0f} s")
        time.sleep(2)  # as before: the same settling, so the two counts compare
        processes_after = _ray_processes()
        file_after = _file_bytes(self.path(queue))
        metrics = {"sleeping": m.sleeping, "running": m.running, "pending": m.pending}
        self.bench.stop()
        return {"jobs": n, "sleep_s": SLEEP_S, "enqueue_s": enqueue_s,
                "enqueue_and_park_s": elapsed, "parked_per_s": n / elapsed, "metrics": metrics,
                "processes_before": processes_before, "processes_after": processes_after,
                "file_before": file_before, "file_after": file_after,
                **_growth(file_before, file_after, n)}

    def plain(self, n: int, timeout: float) -> dict[str, Any]:
        """(3b)'s reference: n plain no-op jobs through the same workers."""
        queue = self.queue("plain")
        self.fill(queue, [{"type": "noop", "payload": i} for i in range(n)])
        task = self.bench.progress.add_task(f"(3b) {n:,} plain jobs, for comparison", total=n)
        start = time.perf_counter()
        self.bench.start(queue)
        ok, _ = self.until(queue, "completed", n, timeout, task)
        elapsed = time.perf_counter() - start
        self.bench.stop()
        self.bench.progress.remove_task(task)
        if not ok:
            raise RuntimeError(f"(3b): {n:,} plain jobs not completed in {timeout:.0f} s")
        return {"jobs": n, "seconds": elapsed, "per_s": n / elapsed}

    def due(self, n: int, park_rate: float, timeout: float) -> dict[str, Any]:
        """(3b) n jobs due in the same second: parked first, then all woken at once."""
        queue = self.queue("due")
        # Far enough ahead that all park first, at half the rate (3a) measured.
        margin = max(5.0, 3.0 + 2.0 * n / park_rate)
        due = time.time() + margin
        self.bench.start(queue)
        task = self.bench.progress.add_task(f"(3b) {n:,} jobs parking until one time", total=n)
        self.fill(queue, [{"type": "sleep-until", "payload": {"due": due, "n": i}} for i in range(n)])
        ok, m = self.until(queue, "sleeping", n, max(0.0, due - time.time() - 0.5), task, poll=0.5)
        parked_ahead = due - time.time()
        self.bench.progress.remove_task(task)
        if not ok:
            raise RuntimeError(f"(3b): {m.sleeping:,} of {n:,} jobs parked by their due time "
                               f"({margin:.0f} s ahead): the machine is slower than (3a) said")
        task = self.bench.progress.add_task(f"(3b) {n:,} jobs due at once, resuming", total=n)
        time.sleep(max(0.0, due - time.time()))
        ok, m = self.until(queue, "completed", n, timeout, task, poll=0.1)
        polled = time.time() - due
        self.bench.progress.remove_task(task)
        self.bench.stop()
        if not ok:
            raise RuntimeError(f"(3b): {m.completed:,} of {n:,} due jobs completed "
                               f"{timeout:.0f} s after their due time")
        late: list[float] = []
        cursor = None
        while True:
            page = queue.list(status="completed", limit=1000, cursor=cursor).result()
            late += [job["finishedAt"] - due for job in page["jobs"]]
            cursor = page.get("cursor")
            if not page["jobs"] or cursor is None:
                break
        if len(late) != n:
            raise RuntimeError(f"(3b): {len(late):,} completed jobs listed, not {n:,}")
        return {"jobs": n, "margin_s": margin, "parked_ahead_of_due_s": parked_ahead,
                "all_completed_after_due_s": max(late), "polled_after_due_s": polled,
                "first_completed_after_due_s": min(late),
                "p50_s": _percentile(late, 0.50), "p99_s": _percentile(late, 0.99),
                "resumed_per_s": n / max(late)}

    def run(self, parked: int, due: int) -> dict[str, Any]:
        timeout = max(600.0, parked / 50)
        pending = self.pending(parked)
        a = self.parked(parked, timeout)
        a["pending"] = pending
        a["vs_pending"] = a["bytes_per_job"] / pending["bytes_per_job"]
        a["processes_added"] = a["processes_after"]["processes"] - a["processes_before"]["processes"]
        a["met"] = {"no_process": a["processes_added"] <= 0
                    and a["processes_after"]["actor_processes"] <= a["processes_before"]["actor_processes"],
                    "bytes": a["bytes_per_job"] <= PARKED_MAX_BYTES}
        plain = self.plain(due, max(120.0, due / 50))
        b = self.due(due, a["parked_per_s"], max(120.0, due / 50))
        b["plain"] = plain
        b["vs_plain"] = b["all_completed_after_due_s"] / plain["seconds"]
        b["met"] = {"within_s": b["all_completed_after_due_s"] <= RESUMED_WITHIN_S}
        return {"parked": a, "due": b,
                "targets": {"parked_bytes_at_most": PARKED_MAX_BYTES,
                            "parked_processes_added_at_most": 0,
                            "due_all_completed_within_s": RESUMED_WITHIN_S}}


def _print_waits(w: dict[str, Any]) -> None:
    a, b = w["parked"], w["due"]

    def met(ok: bool) -> str:
        return "met" if ok else "[bold red]not met[/]"

    pb, pa = a["processes_before"], a["processes_after"]
    table = Table(title=f"durable waits: {a['jobs']:,} parked jobs, {b['jobs']:,} due at once",
                  caption=f"{WORKERS} workers x {CONCURRENCY}; (3a) each job awaits "
                          f"dotdo.sleep({SLEEP_S}); (3b) each awaits sleep_until(one time); "
                          "sizes are of the queue file's content (page_count x page_size)")
    for col in ("figure", "value", "against", "ratio", "target"):
        table.add_column(col, justify="left" if col in ("figure", "against", "target") else "right")
    table.add_row("(3a) enqueue + park, all", f"{a['enqueue_and_park_s']:,.1f} s "
                  f"({a['parked_per_s']:,.0f}/s)",
                  f"enqueue alone {a['enqueue_s']:,.1f} s", "", "")
    table.add_row("(3a) Ray processes, before -> after", f"{pb['processes']} -> {pa['processes']}",
                  f"ray:: (hosts, Ray's agents) {pb['actor_processes']} -> "
                  f"{pa['actor_processes']}, idle {pb['idle_workers']} -> {pa['idle_workers']}", "",
                  f"no process added: {met(a['met']['no_process'])}")
    table.add_row("(3a) queue file, before -> after",
                  f"{a['file_before']['content'] / 1e6:,.1f} -> {a['file_after']['content'] / 1e6:,.1f} MB",
                  f"on disk with the WAL {a['file_before']['on_disk'] / 1e6:,.1f} -> "
                  f"{a['file_after']['on_disk'] / 1e6:,.1f} MB", "", "")
    table.add_row("(3a) bytes per parked job", f"{a['bytes_per_job']:,.0f} B",
                  f"a plain pending job: {a['pending']['bytes_per_job']:,.0f} B",
                  f"{a['vs_pending']:.2f}x",
                  f"<= {PARKED_MAX_BYTES:,} B: {met(a['met']['bytes'])}")
    top = ", ".join(f"{name} {size:,.0f}" for name, size in list(a["by_table"].items())[:4])
    table.add_row("(3a) ... by table and index", top, "", "", "")
    table.add_section()
    table.add_row("(3b) due time to the last completion", f"{b['all_completed_after_due_s']:,.2f} s",
                  f"{b['plain']['jobs']:,} plain jobs from Worker.start: {b['plain']['seconds']:,.2f} s",
                  f"{b['vs_plain']:.2f}x",
                  f"<= {RESUMED_WITHIN_S:.0f} s: {met(b['met']['within_s'])}")
    table.add_row("(3b) completion - due, p50 / p99", f"{b['p50_s']:,.2f} / {b['p99_s']:,.2f} s",
                  f"first {b['first_completed_after_due_s']:,.2f} s", "", "")
    console.print(table)


def _rotated(variants: list[Variant], r: int) -> list[Variant]:
    k = r % len(variants)
    return variants[k:] + variants[:k]


def _summary(samples: dict[str, list[float | None]]) -> dict[str, dict[str, Any]]:
    """Medians over rounds and the ratio of each to the plain variant's."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        done = [v for v in values if v is not None]
        out[name] = {"per_s": statistics.median(done) if done else None,
                     "min_per_s": min(done) if done else None, "max_per_s": max(done) if done else None,
                     "rounds_per_s": values}
    plain = out["plain"]["per_s"]
    for figures in out.values():
        per_s = figures["per_s"]
        figures["vs_plain"] = per_s / plain if per_s is not None and plain else None
    return out


def _each(progress: Progress, label: str, calls: dict) -> dict:
    """``{key: fn(*args)}`` for ``{key: (fn, *args)}``, with a progress bar."""
    task = progress.add_task(label, total=len(calls))
    out = {}
    for key, (fn, *args) in calls.items():
        out[key] = fn(*args)
        progress.advance(task)
    progress.remove_task(task)
    return out


def _features(bench: Bench, progress: Progress, n: int, rounds: int, timeout: float
              ) -> tuple[dict, dict]:
    """(1) and (2): each feature against the plain queue, in alternating rounds."""
    enqueue_rounds = 2 * rounds
    enqueue_samples: dict[str, list[float | None]] = {v.name: [] for v in ENQUEUE}
    e2e_samples: dict[str, list[float | None]] = {v.name: [] for v in END_TO_END}
    failed: dict[str, int] = {v.name: 0 for v in END_TO_END}
    prepared = _each(progress, "(1) preparing the enqueue queues",
                     {v.name: (bench.prepare_enqueue, v) for v in ENQUEUE})
    task = progress.add_task(f"(1) {n:,} single enqueues, issued then gathered",
                             total=enqueue_rounds * len(ENQUEUE))
    for r in range(enqueue_rounds):
        for v in _rotated(ENQUEUE, r):
            enqueue_samples[v.name].append(bench.enqueue(v, prepared[v.name], r))
            progress.advance(task)
    progress.remove_task(task)

    queues = _each(progress, "(2) preparing the end-to-end queues",
                   {(v.name, r): (bench.prepare_end_to_end, v, r)
                    for r in range(rounds) for v in END_TO_END})
    task = progress.add_task(f"(2) {n:,} jobs through {WORKERS} workers",
                             total=rounds * len(END_TO_END))
    for r in range(rounds):
        for v in _rotated(END_TO_END, r):
            per_s, lost = bench.end_to_end(v, queues[v.name, r], timeout)
            e2e_samples[v.name].append(per_s)
            failed[v.name] += lost
            progress.advance(task)
    progress.remove_task(task)
    enqueue = _summary(enqueue_samples)
    e2e = _summary(e2e_samples)
    for name, count in failed.items():
        e2e[name]["failed_jobs"] = count
    return enqueue, e2e


def _print_features(n: int, rounds: int, enqueue: dict, e2e: dict) -> None:
    table = Table(title=f"queue features against the plain queue: {n:,} jobs, medians over rounds",
                  caption=f"(1) {2 * rounds} rounds of single enqueues issued, then gathered; "
                          f"(2) {rounds} rounds, enqueued beforehand, from "
                          f"Worker.start to all completed, {WORKERS} workers x {CONCURRENCY}, "
                          "a sync no-op handler")
    for col in ("measure", "variant", "jobs/s", "rounds", "vs plain"):
        table.add_column(col, justify="left" if col in ("measure", "variant") else "right")
    for measure, figures in (("(1) enqueue", enqueue), ("(2) end to end", e2e)):
        for i, (name, f) in enumerate(figures.items()):
            if f["per_s"] is None:
                table.add_row(measure if i == 0 else "", name, "unfinished", "", "")
                continue
            table.add_row(measure if i == 0 else "", name, f"{f['per_s']:,.0f}",
                          f"{f['min_per_s']:,.0f} - {f['max_per_s']:,.0f}",
                          "1.00x" if name == "plain" else
                          (f"{f['vs_plain']:.2f}x" if f["vs_plain"] is not None else ""))
        table.add_section()
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help=f"jobs per variant (at most {MAX_JOBS:,})")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 jobs, 2 rounds; 10,000 parked, 2,000 due")
    parser.add_argument("--rounds", type=int, default=None,
                        help="end-to-end rounds of every variant, twice as many for the enqueue (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds an end-to-end run may take before it counts as unfinished")
    parser.add_argument("--only", choices=SECTIONS, default=None,
                        help="one section: features ((1) and (2)) or waits ((3))")
    parser.add_argument("--parked", type=int, default=None, help="(3a) parked jobs (default 100,000)")
    parser.add_argument("--due", type=int, default=None,
                        help=f"(3b) jobs due at once (default 10,000, at most {MAX_JOBS:,})")
    args = parser.parse_args()
    n = 1000 if args.quick else args.jobs
    rounds = args.rounds or (2 if args.quick else 5)
    parked = args.parked or (10_000 if args.quick else 100_000)
    due = args.due or (2_000 if args.quick else 10_000)
    sections = SECTIONS if args.only is None else (args.only,)
    if not 1 <= n <= MAX_JOBS:
        parser.error(f"--jobs is 1 to {MAX_JOBS:,}: one enqueue_many, and no completed job "
                     "purged by the queue's default retention before it is counted")
    if parked < 1 or not 1 <= due <= MAX_JOBS:
        parser.error(f"--parked is at least 1; --due is 1 to {MAX_JOBS:,}: no completed job "
                     "purged by the queue's default retention before it is read")

    storage = tempfile.mkdtemp(prefix="dotdo-qfbench-")
    settings = dotdo.init(address="local", storage=storage)
    run = f"qf-{time.time_ns()}"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    enqueue = e2e = waits = None
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            bench = Bench(run, n, progress)
            task = progress.add_task(f"starting {WORKERS} workers, warming up", total=None)
            bench.warm_up()
            progress.remove_task(task)
            if "features" in sections:
                enqueue, e2e = _features(bench, progress, n, rounds, args.timeout)
            if "waits" in sections:
                waits = Waits(bench, settings.root).run(parked, due)
    finally:
        dotdo.shutdown()
        shutil.rmtree(storage, ignore_errors=True)

    fields: dict[str, Any] = {"git": _git_commit(), "load_average": os.getloadavg()}
    if enqueue is not None and e2e is not None:
        _print_features(n, rounds, enqueue, e2e)
        fields.update(jobs=n, rounds={"enqueue": 2 * rounds, "end_to_end": rounds},
                      setup={"workers": WORKERS, "concurrency": CONCURRENCY, "groups": GROUPS,
                             "rate_keys": KEYS, "limits": UNBOUND, "poll_s": 0.05},
                      enqueue=enqueue, end_to_end=e2e)
    if waits is not None:
        _print_waits(waits)
        fields["durable_waits"] = {"setup": {"workers": WORKERS, "concurrency": CONCURRENCY,
                                             "poll_s": 0.05}, **waits}
    # A run of one section does not replace the full run's file.
    write_results("queue_features" if args.only is None else f"queue_features.{args.only}",
                  console, **fields)


if __name__ == "__main__":
    main()
