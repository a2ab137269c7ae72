"""Durable steps and events inside one object, against the bare SQLite they need.

    python benchmarks/durable_steps.py [--quick]

(1) journaled ``do`` steps per second in one object, against one INSERT and COMMIT
    per step on a plain SQLite file in WAL mode (the bare cost of the same writes),
    both timed inside the object's process; the journal should cost at most 2x;
(2) ``send`` to a no-op handler: events sent and handled per second, inside an
    object, and sent from a driver to ``App("default")``.

Rounds alternate the sides; figures are medians. Results go to
``benchmarks/results/durable_steps.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

import dotdo  # noqa: E402
from benchmarks._results import write_results  # noqa: E402

console = Console()


def _noop() -> None:
    return None


class StepBench(dotdo.DurableObject):
    """Times its own work, so that the Ray hop is not part of the figures."""

    def __init__(self) -> None:
        self.handled = 0
        self.target = 0
        self.done: asyncio.Event | None = None

    async def steps(self, n: int, prefix: str) -> float:
        start = time.perf_counter()
        for i in range(n):
            await dotdo.do(_noop, step_id=f"{prefix}-{i}")
        return time.perf_counter() - start

    def bare(self, n: int, prefix: str) -> float:
        path = os.path.join(os.path.dirname(self.storage.path), f"bare-{self.id}.sqlite3")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")
        start = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"{prefix}-{i}", b"\xc0"))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed

    @dotdo.on.Bench.pinged
    def pinged(self, event) -> None:
        self.handled += 1
        if self.handled >= self.target and self.done is not None:
            self.done.set()

    async def events(self, n: int) -> list[float]:
        self.handled, self.target, self.done = 0, n, asyncio.Event()
        start = time.perf_counter()
        for i in range(n):
            dotdo.send("Bench.pinged", i)
        sent = time.perf_counter() - start
        await self.done.wait()
        return [sent, time.perf_counter() - start]


class Sink(dotdo.DurableObject):
    def count(self) -> int:
        return self.storage.get("n", 0)

    def add(self, k: int) -> None:
        self.storage.put("n", self.storage.get("n", 0) + k)


@dotdo.on.Bench.driven
async def driven(event) -> None:
    if event.data["last"]:
        await dotdo.Sink("driver-events").add(event.data["n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()
    rounds, n_steps, n_events, n_driver = (3, 500, 1000, 500) if args.quick else (7, 2000, 5000, 2000)

    dotdo.init(address="local", storage=tempfile.mkdtemp(prefix="dotdo-bench-"))
    bench = dotdo.StepBench("b")
    bench.bare(10, "warm").result()
    bench.steps(10, "warm").result()
    samples: dict[str, list] = {"journal": [], "bare": [], "events": [], "driver": []}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("steps, bare writes, events", total=rounds)
        for r in range(rounds):
            samples["journal"].append(bench.steps(n_steps, f"r{r}").result())
            samples["bare"].append(bench.bare(n_steps, f"r{r}").result())
            samples["events"].append(bench.events(n_events).result())
            sink = dotdo.Sink("driver-events")
            before = sink.count().result()
            start = time.perf_counter()
            for i in range(n_driver):
                dotdo.send("Bench.driven", {"n": n_driver, "last": i == n_driver - 1})
            sent = time.perf_counter() - start
            while sink.count().result() < before + n_driver:
                time.sleep(0.01)
            samples["driver"].append([sent, time.perf_counter() - start])
            progress.advance(task)

    journal = statistics.median(samples["journal"])
    bare = statistics.median(samples["bare"])
    ev_sent = statistics.median(s[0] for s in samples["events"])
    ev_all = statistics.median(s[1] for s in samples["events"])
    dr_sent = statistics.median(s[0] for s in samples["driver"])
    dr_all = statistics.median(s[1] for s in samples["driver"])
    figures = {
        "steps": {
            "steps": n_steps,
            "journaled_steps_per_s": n_steps / journal,
            "bare_commits_per_s": n_steps / bare,
            "journal_cost_vs_bare": journal / bare,
            "target_max_cost": 2.0,
        },
        "events_in_object": {
            "events": n_events,
            "sent_per_s": n_events / ev_sent,
            "handled_per_s": n_events / ev_all,
        },
        "events_from_driver": {
            "events": n_driver,
            "sent_per_s": n_driver / dr_sent,
            "handled_per_s": n_driver / dr_all,
        },
    }
    table = Table(title="durable steps and events (medians)")
    for col in ("measure", "figure", "ratio / target"):
        table.add_column(col)
    f = figures["steps"]
    table.add_row(f"do(step_id=...) in one object, {n_steps} steps",
                  f"{f['journaled_steps_per_s']:,.0f} steps/s vs {f['bare_commits_per_s']:,.0f} bare commits/s",
                  f"{f['journal_cost_vs_bare']:.2f}x cost (<= 2x)")
    f = figures["events_in_object"]
    table.add_row(f"send -> no-op handler, in one object, {n_events} events",
                  f"sent {f['sent_per_s']:,.0f}/s, handled {f['handled_per_s']:,.0f}/s", "")
    f = figures["events_from_driver"]
    table.add_row(f"dotdo.send from a driver to App('default'), {n_driver} events",
                  f"sent {f['sent_per_s']:,.0f}/s, handled {f['handled_per_s']:,.0f}/s", "")
    console.print(table)
    write_results("durable_steps", console, rounds=rounds, figures=figures)
    dotdo.shutdown()


if __name__ == "__main__":
    main()
