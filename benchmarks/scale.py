"""Scale: many objects on one machine, pooled against dedicated against bare SQLite.

    python benchmarks/scale.py [--quick]
    python benchmarks/scale.py --costs [--rounds 3]

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

``--costs`` instead measures what one object costs in each hosting (dedicated, pooled
over 2 hosts, in process), rounds alternating the three so the machine's noise hits
each: the first object's first call (its host starting), objects started together
(seconds per object), memory per object (Pss and private bytes from
``/proc/<pid>/smaps_rollup``: of each actor, dedicated; of the hosts or the driver,
after minus before, otherwise), and batched calls to one object and spread over many.
Results go to ``benchmarks/results/scale_costs.json``.
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
from dotdo import client  # noqa: E402
from dotdo.ids import storage_path  # noqa: E402
from dotdo.storage import connection, kv, schema  # noqa: E402

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


def memory(pid: int) -> dict[str, int]:
    """``{"pss", "private"}`` bytes of a process: Pss splits shared pages among the
    processes mapping them; private is what only this process holds."""
    fields = {"Pss:": 0, "Private_Clean:": 0, "Private_Dirty:": 0}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key = line.split(maxsplit=1)[0]
            if key in fields:
                fields[key] = int(line.split()[1]) * 1024
    return {"pss": fields["Pss:"], "private": fields["Private_Clean:"] + fields["Private_Dirty:"]}


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
        for pragma in connection.COMPACT_FILE_PRAGMAS + connection.CACHE_PRAGMAS + connection.PRAGMAS:
            conn.execute(pragma)
        conn.execute("BEGIN IMMEDIATE")
        for ddl in schema.SCHEMA:
            conn.execute(ddl)
        conn.execute(kv.UPSERT_VALUE, ("value", b"\x01"))
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


# -- --costs: what one object costs in each hosting -----------------------------------

COST_N = {"dedicated": 16, "pooled": 1_000, "in process": 1_000}  # objects per round
COST_HOSTS = 2


class _Cost:
    """The methods of the objects of --costs (a class per hosting and round)."""

    def put(self, value: int) -> None:
        self.storage.put("value", value)

    def work(self, x: int) -> int:
        return x + 1


def cost_class(kind: str, r: int) -> type:
    """A new class per round, so each round starts its own actors from nothing."""
    hosting = (dotdo.Pooled(hosts=COST_HOSTS, idle_timeout=None) if kind == "pooled"
               else dotdo.Dedicated())  # chosen: the count of dotdo.hosting stays quiet
    name = f"Cost{kind.title().replace(' ', '')}{r}"
    return type(name, (_Cost, dotdo.DurableObject), {"__module__": __name__}, hosting=hosting)


def _rate(fn, calls: int, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return calls / statistics.median(times)


def cost_round(kind: str, r: int, root: str, storage: str) -> dict:
    n = COST_N[kind]
    if kind == "in process":
        dotdo.init(in_process=True, storage=os.path.join(root, f"local{r}"))
    else:
        dotdo.init(storage=storage)
    cls = cost_class(kind, r)
    stubs = [dotdo.stub(cls, f"o{i}") for i in range(n)]
    # The first object's first call: for dedicated and pooled, an actor starting
    start = time.perf_counter()
    stubs[0].put(0).result()
    first = time.perf_counter() - start
    if kind == "pooled":
        handles = host_handles(cls, "o")  # starts the other host too, so `before` has it
        dotdo.get([s.put(0) for s in stubs[:COST_HOSTS * 20]])  # and warms each one
        stubs = stubs[COST_HOSTS * 20:]
        pids = [s["pid"] for s in host_stats(handles)]
    elif kind == "in process":
        pids = [os.getpid()]
    else:
        stubs = stubs[1:]
    time.sleep(1.0)
    before = [memory(pid) for pid in pids] if kind != "dedicated" else []
    start = time.perf_counter()
    dotdo.get([s.put(i) for i, s in enumerate(stubs)])
    together = (time.perf_counter() - start) / len(stubs)
    time.sleep(1.0)  # let the allocators settle before reading memory
    if kind == "dedicated":
        handles = [client.actor_handle(s) for s in stubs]
        pids = sorted({st["pid"] for st in ray.get([h.stats.remote() for h in handles])})
        assert len(pids) == len(stubs), "dedicated objects shared a process"
        used = [memory(pid) for pid in pids]
        per = {k: sum(u[k] for u in used) / len(stubs) for k in ("pss", "private")}
    else:
        after = [memory(pid) for pid in pids]
        per = {k: max(sum(a[k] for a in after) - sum(b[k] for b in before), 0) / len(stubs)
               for k in ("pss", "private")}
    one = stubs[0]
    one.work(0).result()
    calls = CHUNK
    row = {
        "hosting": kind, "round": r, "n": len(stubs) + (1 if kind == "dedicated" else 0),
        "first_call_s": first, "start_s_per_object": together,
        "pss_per_object_bytes": per["pss"], "private_per_object_bytes": per["private"],
        "calls_per_s_one_object": _rate(lambda: dotdo.get([one.work(i) for i in range(calls)]), calls),
        "calls_per_s_many_objects": _rate(
            lambda: dotdo.get([stubs[i % len(stubs)].work(i) for i in range(calls)]), calls),
        "many_objects": len(stubs),
    }
    if kind == "dedicated":
        for h in [client.actor_handle(dotdo.stub(cls, "o0")), *handles]:
            ray.kill(h, no_restart=True)
    elif kind == "pooled":
        for h in handles:
            ray.kill(h, no_restart=True)
    return row


def costs_main(rounds: int) -> None:
    root = tempfile.mkdtemp(prefix="dotdo-costs-")
    storage = os.path.join(root, "objects")
    rows: list[dict] = []
    try:
        dotdo.init(address="local", storage=storage, num_cpus=2)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("dedicated, pooled, in process", total=rounds * 3)
            for r in range(rounds):
                for kind in ("dedicated", "pooled", "in process"):
                    rows.append(cost_round(kind, r, root, storage))
                    progress.advance(task)
        summary = costs_report(rows)
        write_results("scale_costs", console, rounds=rows, summary=summary,
                      objects_per_round=COST_N, pool_hosts=COST_HOSTS, calls_in_flight=CHUNK)
    finally:
        dotdo.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def costs_report(rows: list[dict]) -> dict:
    """Median and range of each figure per hosting; printed as a table."""
    keys = ("first_call_s", "start_s_per_object", "pss_per_object_bytes",
            "private_per_object_bytes", "calls_per_s_one_object", "calls_per_s_many_objects")
    summary: dict = {}
    for kind in COST_N:
        mine = [r for r in rows if r["hosting"] == kind]
        summary[kind] = {k: {"median": statistics.median(r[k] for r in mine),
                             "min": min(r[k] for r in mine), "max": max(r[k] for r in mine)}
                         for k in keys}
    table = Table(title=f"What one object costs ({len(rows) // 3} rounds: median, range)")
    for column in ("hosting", "first call", "start/object", "Pss/object", "private/object",
                   "calls/s one object", "calls/s many objects"):
        table.add_column(column, justify="left" if column == "hosting" else "right")

    def cell(kind: str, key: str, fmt) -> str:
        s = summary[kind][key]
        return f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"

    def ms(x: float) -> str:
        return f"{x * 1e3:,.1f} ms"

    def rate(x: float) -> str:
        return f"{x:,.0f}"

    for kind in COST_N:
        table.add_row(f"{kind} (n={COST_N[kind]:,})", cell(kind, "first_call_s", ms),
                      cell(kind, "start_s_per_object", ms),
                      cell(kind, "pss_per_object_bytes", _bytes),
                      cell(kind, "private_per_object_bytes", _bytes),
                      cell(kind, "calls_per_s_one_object", rate),
                      cell(kind, "calls_per_s_many_objects", rate))
    console.print(table)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N, for a smoke run")
    parser.add_argument("--costs", action="store_true",
                        help="what one object costs in each hosting (see above)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --costs")
    args = parser.parse_args()
    if args.costs:
        costs_main(args.rounds)
        return
    sizes = [100, 1_000] if args.quick else [100, 1_000, 10_000, 100_000]
    live_sizes = [s for s in sizes if s <= 10_000]
    root = tempfile.mkdtemp(prefix="dotdo-scale-")
    try:
        dotdo.init(address="local", storage=os.path.join(root, "objects"), num_cpus=2)
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
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:,.1f} MB"
    return f"{n / 1024:,.1f} KB" if n >= 1024 else f"{n:,.0f} B"


if __name__ == "__main__":
    main()
