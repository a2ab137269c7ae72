"""Scale: many objects on one machine, pooled against dedicated against bare SQLite.

    python benchmarks/scale.py [--quick]

In one run:

* bare: one process creating SQLite files with dotdo's tables and one row each (the
  substrate's floor, per file);
* pooled, evicting (``idle_timeout=0``): N = 100, 1,000, 10,000 and 100,000 objects
  each created and called once to store a value: seconds, objects/s, cost per object
  against bare, and the hosts' resident memory left per evicted object;
* pooled, live (never evicted): N up to 10,000, the memory each live object holds;
  (memory is the hosts' private resident memory after minus before, per object,
  after a warm-up of 2,000 objects per pool);
* dedicated: N = 100 objects, one actor each;
* one pooled object against one raw Ray actor (asyncio and sync), 2,000 calls in
  flight at a time, rounds alternating.

Results go to ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ray  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

import dotdo  # noqa: E402
from benchmarks._results import write_results  # noqa: E402
from benchmarks.pipelining import RawAsync, RawSync  # noqa: E402  (the same raw actors)
from dotdo import client, journal  # noqa: E402
from dotdo.ids import storage_path  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 120)
HOSTS = 4
CHUNK = 2_000  # calls in flight at once


class Evicting(dotdo.DurableObject, hosting=dotdo.Pooled(hosts=HOSTS, idle_timeout=0)):
    """Stores one value; leaves memory as soon as it is idle."""

    def put(self, value: int) -> None:
        self.storage.put("value", value)

    def work(self, x: int) -> int:
        return x + 1


class Live(dotdo.DurableObject, hosting=dotdo.Pooled(hosts=HOSTS, idle_timeout=None)):
    """Stores one value; stays in memory."""

    def put(self, value: int) -> None:
        self.storage.put("value", value)


class Single(dotdo.DurableObject, hosting=dotdo.Dedicated()):
    """Stores one value in an actor of its own."""

    def put(self, value: int) -> None:
        self.storage.put("value", value)


def rss(pid: int) -> int:
    """Private resident bytes of a process on this machine (shared libraries left out:
    they are paid once per machine, not per object)."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def bare_per_file(root: str, n: int) -> float:
    """Seconds to create one SQLite file with dotdo's tables and write one row."""
    start = time.perf_counter()
    for i in range(n):
        path = storage_path(root, "Bare", f"b{i}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        for pragma in journal.COMPACT_FILE_PRAGMAS + journal.CACHE_PRAGMAS + journal.PRAGMAS:
            conn.execute(pragma)
        conn.execute("BEGIN IMMEDIATE")
        for ddl in journal.SCHEMA:
            conn.execute(ddl)
        conn.execute(journal.UPSERT_VALUE, ("value", b"\x01"))
        conn.execute("COMMIT")
        conn.close()
    return (time.perf_counter() - start) / n


def host_handles(cls: type, prefix: str) -> list:
    """One handle per host of ``cls``'s pool (by asking for ids until all are seen)."""
    pool = cls._dotdo_hosting
    seen: dict[int, object] = {}
    i = 0
    while len(seen) < pool.hosts:
        index = pool.index(cls.__name__, f"{prefix}{i}")
        if index not in seen:
            seen[index] = client.actor_handle(dotdo.stub(cls, f"{prefix}{i}"))
        i += 1
    return list(seen.values())


def host_stats(handles: list) -> list[dict]:
    return ray.get([h.stats.remote() for h in handles])


def create(progress, cls: type, prefix: str, n: int, label: str) -> float:
    """Create and call ``n`` objects, ``CHUNK`` calls in flight; returns seconds."""
    task = progress.add_task(label, total=n)
    start = time.perf_counter()
    for low in range(0, n, CHUNK):
        dotdo.get([dotdo.stub(cls, f"{prefix}{i}").put(i) for i in range(low, min(n, low + CHUNK))])
        progress.update(task, completed=min(n, low + CHUNK))
    return time.perf_counter() - start


def wait_until(predicate, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("the hosts did not settle")
        time.sleep(0.2)


def pooled_run(progress, cls: type, prefix: str, n: int, bare: float) -> dict:
    handles = host_handles(cls, prefix)
    if cls._dotdo_hosting.idle_timeout is not None:
        wait_until(lambda: not any(s["objects"] for s in host_stats(handles)))
    time.sleep(1.0)
    before = sum(rss(s["pid"]) for s in host_stats(handles))
    seconds = create(progress, cls, prefix, n, f"{cls.__name__} x {n:,}")
    if cls._dotdo_hosting.idle_timeout is not None:
        wait_until(lambda: not any(s["objects"] for s in host_stats(handles)))
    else:
        stats = host_stats(handles)
        assert sum(len(s["objects"]) for s in stats) >= n, "live objects went missing"
    time.sleep(1.0)  # let the hosts' allocators settle before reading memory
    after = sum(rss(s["pid"]) for s in host_stats(handles))
    return {
        "mode": "pooled, evicting" if cls is Evicting else "pooled, live",
        "n": n, "hosts": HOSTS, "seconds": seconds, "objects_per_s": n / seconds,
        "seconds_per_object": seconds / n, "vs_bare": seconds / n / bare,
        "memory_per_object_bytes": max(after - before, 0) / n,
    }


def dedicated_run(progress, n: int, bare: float) -> dict:
    seconds = create(progress, Single, "d", n, f"Single x {n} (an actor each)")
    pids = {s["pid"] for s in ray.get(
        [client.actor_handle(dotdo.Single(f"d{i}")).stats.remote() for i in range(n)])}
    memory = sum(rss(pid) for pid in pids)
    for i in range(n):
        ray.kill(client.actor_handle(dotdo.Single(f"d{i}")), no_restart=True)
    return {"mode": "dedicated", "n": n, "hosts": len(pids), "seconds": seconds,
            "objects_per_s": n / seconds, "seconds_per_object": seconds / n,
            "vs_bare": seconds / n / bare, "memory_per_object_bytes": memory / n}


def call_rates(progress, rounds: int, calls: int) -> dict:
    """Batched calls to one pooled object against one raw actor of each kind."""
    target = dotdo.Evicting("hot")
    target.work(0).result()
    raw_async, raw_sync = RawAsync.remote(), RawSync.remote()
    ray.get([raw_async.work.remote(0), raw_sync.work.remote(0)])
    sides = {
        "dotdo pooled object": lambda: dotdo.get([target.work(i) for i in range(calls)]),
        "raw Ray asyncio actor": lambda: ray.get([raw_async.work.remote(i) for i in range(calls)]),
        "raw Ray sync actor": lambda: ray.get([raw_sync.work.remote(i) for i in range(calls)]),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    task = progress.add_task(f"calls to one object, {calls:,} in flight", total=rounds)
    for _ in range(rounds):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        progress.advance(task)
    return {name: calls / statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N, for a smoke run")
    args = parser.parse_args()
    sizes = [100, 1_000] if args.quick else [100, 1_000, 10_000, 100_000]
    live_sizes = [s for s in sizes if s <= 10_000]
    root = tempfile.mkdtemp(prefix="dotdo-scale-")
    try:
        dotdo.init(storage=os.path.join(root, "objects"), num_cpus=2)
        bare = bare_per_file(os.path.join(root, "bare"), 200 if args.quick else 2_000)
        rows = []
        with Progress(console=console, transient=True) as progress:
            # Warm up: start the hosts and let them import, cache and grow their heaps
            # once, so that memory per object is what each object adds.
            create(progress, Evicting, "warm-e", 2_000, "warming up the evicting pool")
            create(progress, Live, "warm-l", 2_000, "warming up the live pool")
            for n in sizes:
                rows.append(pooled_run(progress, Evicting, f"e{n}-", n, bare))
            for n in live_sizes:
                rows.append(pooled_run(progress, Live, f"l{n}-", n, bare))
            rows.append(dedicated_run(progress, 20 if args.quick else 100, bare))
            rates = call_rates(progress, 3 if args.quick else 7, CHUNK)
        report(rows, bare, rates)
        write_results("scale", console, bare_seconds_per_file=bare, runs=rows,
                      calls_per_s_one_object=rates,
                      pooled_vs_raw_async=rates["dotdo pooled object"] / rates["raw Ray asyncio actor"],
                      pooled_vs_raw_sync=rates["dotdo pooled object"] / rates["raw Ray sync actor"])
    finally:
        dotdo.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def report(rows: list[dict], bare: float, rates: dict) -> None:
    table = Table(title=f"Creating and calling N objects (bare SQLite file: {bare * 1e3:.2f} ms)")
    for column in ("mode", "N", "hosts", "seconds", "objects/s", "ms/object", "x bare",
                   "memory/object"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for r in rows:
        table.add_row(r["mode"], f"{r['n']:,}", str(r["hosts"]), f"{r['seconds']:.1f}",
                      f"{r['objects_per_s']:,.0f}", f"{r['seconds_per_object'] * 1e3:.2f}",
                      f"{r['vs_bare']:.2f}x", _bytes(r["memory_per_object_bytes"]))
    console.print(table)
    calls = Table(title="Batched calls to one object")
    calls.add_column("target")
    calls.add_column("calls/s", justify="right")
    calls.add_column("dotdo / this", justify="right")
    ours = rates["dotdo pooled object"]
    for name, rate in rates.items():
        calls.add_row(name, f"{rate:,.0f}", f"{ours / rate:.2f}x")
    console.print(calls)


def _bytes(n: float) -> str:
    return f"{n / 1024:,.1f} KB" if n >= 1024 else f"{n:,.0f} B"


if __name__ == "__main__":
    main()
