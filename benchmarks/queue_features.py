"""What the queue's features cost when used: each against the plain queue, one run.

    python benchmarks/queue_features.py [--jobs 5000] [--quick] [--rounds 5]

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
them all, one after another (``stop``, then ``start`` on the next queue). Results go to
``benchmarks/results/queue_features.json``.
"""

from __future__ import annotations

import argparse
import shutil
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

console = Console()

GROUPS = 20
KEYS = 50
WORKERS = 2
CONCURRENCY = 16
UNBOUND = {"key_rate": "1000000/s", "group_concurrency": 100_000}  # never binds
MAX_JOBS = 10_000  # one enqueue_many; and a queue keeps 10,000 completed jobs by default
PARENT = "parent"


# -- the handlers (module level: the workers import this file for them) -------------------


@dotdo.job("noop")
def noop(payload):
    return None


@dotdo.job("noop-progress")
def noop_progress(payload):
    dotdo.progress(0.5, "halfway")
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
        """Both handlers run on both workers before any clock starts: the workers'
        processes up, the handler module imported, their timings of the handlers."""
        queue = dotdo.Queue(f"{self.run}-warm-up")
        jobs = [{"type": t, "payload": i} for t in ("noop", "noop-progress") for i in range(300)]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help=f"jobs per variant (at most {MAX_JOBS:,})")
    parser.add_argument("--quick", action="store_true", help="1,000 jobs, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None,
                        help="end-to-end rounds of every variant, twice as many for the enqueue (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds an end-to-end run may take before it counts as unfinished")
    args = parser.parse_args()
    n = 1000 if args.quick else args.jobs
    rounds = args.rounds or (2 if args.quick else 5)
    enqueue_rounds = 2 * rounds
    if not 1 <= n <= MAX_JOBS:
        parser.error(f"--jobs is 1 to {MAX_JOBS:,}: one enqueue_many, and no completed job "
                     "purged by the queue's default retention before it is counted")

    storage = tempfile.mkdtemp(prefix="dotdo-qfbench-")
    dotdo.init(address="local", storage=storage)
    run = f"qf-{time.time_ns()}"
    enqueue_samples: dict[str, list[float | None]] = {v.name: [] for v in ENQUEUE}
    e2e_samples: dict[str, list[float | None]] = {v.name: [] for v in END_TO_END}
    failed: dict[str, int] = {v.name: 0 for v in END_TO_END}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            bench = Bench(run, n, progress)
            task = progress.add_task(f"starting {WORKERS} workers, warming up", total=None)
            bench.warm_up()
            progress.remove_task(task)

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
                    per_s, lost = bench.end_to_end(v, queues[v.name, r], args.timeout)
                    e2e_samples[v.name].append(per_s)
                    failed[v.name] += lost
                    progress.advance(task)
            progress.remove_task(task)
    finally:
        dotdo.shutdown()
        shutil.rmtree(storage, ignore_errors=True)

    enqueue = _summary(enqueue_samples)
    e2e = _summary(e2e_samples)
    for name, count in failed.items():
        e2e[name]["failed_jobs"] = count

    table = Table(title=f"queue features against the plain queue: {n:,} jobs, medians over rounds",
                  caption=f"(1) {enqueue_rounds} rounds of single enqueues issued, then gathered; "
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

    write_results("queue_features", console, jobs=n, rounds={"enqueue": enqueue_rounds, "end_to_end": rounds},
                  git=_git_commit(),
                  setup={"workers": WORKERS, "concurrency": CONCURRENCY, "groups": GROUPS,
                         "rate_keys": KEYS, "limits": UNBOUND, "poll_s": 0.05},
                  enqueue=enqueue, end_to_end=e2e)


if __name__ == "__main__":
    main()
