"""Promise pipelining: dotdo against raw Ray, pipelined against awaited, in one run.

    python benchmarks/pipelining.py [--quick]

(a) a dotdo call against a raw Ray actor call doing the same work, sequential and
    issued-then-gathered (raw actors of both kinds: asyncio, as dotdo's host is, and
    plain sync);
(b) 1,000 calls fanned out and gathered against 1,000 awaited one by one;
(c) a chain of 20 dependent calls across 20 objects, pipelined against awaited: on
    dedicated hosts (one process each), against raw Ray passing ObjectRefs, and on
    objects sharing one pooled host;
(d) ``B.use(A.make().field)`` against awaiting ``make()`` and then calling ``use``,
    on dedicated hosts and on a pooled host;
(e) 1,000 calls to one object issued then gathered, against raw Ray's 1,000
    ``.remote()`` and one ``ray.get`` on an actor of the same kind (asyncio).

Rounds alternate the two sides of each comparison so machine noise hits both; the
figures are medians over rounds. Results go to ``benchmarks/results/pipelining.json``.
"""

from __future__ import annotations

import argparse
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

console = Console()


class BenchObject(dotdo.DurableObject):
    """The same work as the raw actors below."""

    def work(self, x: int) -> int:
        return x + 1

    def make(self) -> dict:
        return {"field": self.id, "rest": list(range(20))}

    def use(self, value) -> int:
        return len(value)


class PooledBench(BenchObject, hosting=dotdo.Pooled(hosts=1, idle_timeout=None)):
    """The same object, all of them on one pooled host."""


@ray.remote(num_cpus=0)
class RawSync:
    def work(self, x: int) -> int:
        return x + 1


@ray.remote(num_cpus=0)
class RawAsync:
    async def work(self, x: int) -> int:
        return x + 1

    async def make(self) -> dict:
        return {"field": "raw", "rest": list(range(20))}

    async def use(self, value) -> int:
        return len(value)


@ray.remote(num_cpus=0)
def _field(record: dict):
    return record["field"]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(progress, label: str, sides: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each side, measured in alternating rounds."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    task = progress.add_task(label, total=rounds * len(sides))
    for _ in range(rounds):
        for name, fn in sides.items():
            samples[name].append(timed(fn))
            progress.advance(task)
    return {name: statistics.median(v) for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    seq_n, batch_n, fan_n, chain_reps, proj_reps = (
        (200, 2000, 1000, 5, 50) if args.quick else (500, 5000, 1000, 20, 200)
    )

    storage = tempfile.mkdtemp(prefix="dotdo-bench-")
    dotdo.init(address="local", storage=storage)
    objs = [dotdo.BenchObject(f"b{i}") for i in range(20)]
    pooled = [dotdo.PooledBench(f"p{i}") for i in range(20)]
    raw_sync, raw_async = RawSync.remote(), RawAsync.remote()
    raws = [RawAsync.remote() for _ in range(20)]  # raw Ray's own pipelining, for scale
    console.print("starting 43 actors ...")
    dotdo.get([o.work(0) for o in objs + pooled])
    ray.get([raw_sync.work.remote(0), raw_async.work.remote(0)] + [r.work.remote(0) for r in raws])
    one = objs[0]
    figures: dict[str, dict] = {}

    with Progress(console=console, transient=True) as progress:
        # (a) the cost of a dotdo call over a raw Ray actor call.
        seq = compare(progress, f"(a) {seq_n} sequential calls", {
            "dotdo": lambda: [one.work(i).result() for i in range(seq_n)],
            "raw_async": lambda: [ray.get(raw_async.work.remote(i)) for i in range(seq_n)],
            "raw_sync": lambda: [ray.get(raw_sync.work.remote(i)) for i in range(seq_n)],
        }, rounds)
        batch = compare(progress, f"(a) {batch_n} calls issued then gathered", {
            "dotdo": lambda: dotdo.get([one.work(i) for i in range(batch_n)]),
            "raw_async": lambda: ray.get([raw_async.work.remote(i) for i in range(batch_n)]),
            "raw_sync": lambda: ray.get([raw_sync.work.remote(i) for i in range(batch_n)]),
        }, rounds)
        for mode, res, n in (("sequential", seq, seq_n), ("batched", batch, batch_n)):
            figures[f"a_{mode}"] = {
                "calls": n,
                "dotdo_per_s": n / res["dotdo"],
                "raw_async_per_s": n / res["raw_async"],
                "raw_sync_per_s": n / res["raw_sync"],
                "cost_vs_raw_async": res["dotdo"] / res["raw_async"],
                "cost_vs_raw_sync": res["dotdo"] / res["raw_sync"],
                "target_max_cost": 1.15 if mode == "sequential" else None,
            }

        # (e) 1,000 calls to one object issued, then gathered.
        gathered = compare(progress, "(e) 1,000 calls issued then gathered", {
            "dotdo": lambda: dotdo.get([one.work(i) for i in range(1000)]),
            "raw_async": lambda: ray.get([raw_async.work.remote(i) for i in range(1000)]),
        }, rounds * 3)
        figures["e_issued_then_gathered"] = {
            "calls": 1000,
            "dotdo_ms": gathered["dotdo"] * 1e3,
            "raw_async_ms": gathered["raw_async"] * 1e3,
            "speedup_vs_raw_async": gathered["raw_async"] / gathered["dotdo"],
            "target_min_speedup": 3.0,
        }

        # (b) fan-out and gather against awaiting each call.
        fan = compare(progress, f"(b) {fan_n} calls fanned out vs awaited", {
            "fanned": lambda: dotdo.get([objs[i % 4].work(i) for i in range(fan_n)]),
            "awaited": lambda: [objs[i % 4].work(i).result() for i in range(fan_n)],
        }, rounds)
        figures["b_fan_out"] = {
            "calls": fan_n,
            "fanned_s": fan["fanned"],
            "awaited_s": fan["awaited"],
            "speedup": fan["awaited"] / fan["fanned"],
            "target_min_speedup": 2.0,
        }

        # (c) 20 dependent calls across 20 objects.
        def chain_pipelined(chain=objs):
            for _ in range(chain_reps):
                p = 0
                for o in chain:
                    p = o.work(p)
                assert p.result() == len(chain)

        def chain_awaited(chain=objs):
            for _ in range(chain_reps):
                v = 0
                for o in chain:
                    v = o.work(v).result()
                assert v == len(chain)

        def raw_chain_pipelined():
            for _ in range(chain_reps):
                ref = 0
                for r in raws:
                    ref = r.work.remote(ref)
                assert ray.get(ref) == len(raws)

        def raw_chain_awaited():
            for _ in range(chain_reps):
                v = 0
                for r in raws:
                    v = ray.get(r.work.remote(v))
                assert v == len(raws)

        chain = compare(progress, "(c) 20-hop chain", {
            "pipelined": chain_pipelined, "awaited": chain_awaited,
            "raw_pipelined": raw_chain_pipelined, "raw_awaited": raw_chain_awaited,
            "pooled_pipelined": lambda: chain_pipelined(pooled),
            "pooled_awaited": lambda: chain_awaited(pooled),
        }, rounds)
        raw_ratio = chain["raw_awaited"] / chain["raw_pipelined"]
        figures["c_chain"] = {
            "hops": len(objs),
            "pipelined_ms_per_chain": chain["pipelined"] / chain_reps * 1e3,
            "awaited_ms_per_chain": chain["awaited"] / chain_reps * 1e3,
            "speedup": chain["awaited"] / chain["pipelined"],
            "raw_ray_speedup": raw_ratio,
            "target_min_speedup": raw_ratio,
        }
        figures["c_chain_pooled"] = {
            "hops": len(pooled),
            "pipelined_ms_per_chain": chain["pooled_pipelined"] / chain_reps * 1e3,
            "awaited_ms_per_chain": chain["pooled_awaited"] / chain_reps * 1e3,
            "speedup": chain["pooled_awaited"] / chain["pooled_pipelined"],
            "target_min_speedup": 5.0,
        }

        # (d) a projection passed on, against awaiting it in the driver.
        def projected(a=objs[0], b=objs[1]):
            for _ in range(proj_reps):
                assert b.use(a.make().field).result() == 2

        def awaited(a=objs[0], b=objs[1]):
            for _ in range(proj_reps):
                assert b.use(a.make().result()["field"]).result() == 2

        ra, rb = raws[0], raws[1]

        def raw_projected():  # raw Ray has no projections: a task extracts the field
            for _ in range(proj_reps):
                assert ray.get(rb.use.remote(_field.remote(ra.make.remote()))) == 3

        def raw_awaited():
            for _ in range(proj_reps):
                assert ray.get(rb.use.remote(ray.get(ra.make.remote())["field"])) == 3

        proj = compare(progress, "(d) projection passed on", {
            "pipelined": projected, "awaited": awaited,
            "raw_pipelined": raw_projected, "raw_awaited": raw_awaited,
            "pooled_pipelined": lambda: projected(pooled[0], pooled[1]),
            "pooled_awaited": lambda: awaited(pooled[0], pooled[1]),
        }, rounds)
        figures["d_projection"] = {
            "pipelined_ms": proj["pipelined"] / proj_reps * 1e3,
            "awaited_ms": proj["awaited"] / proj_reps * 1e3,
            "speedup": proj["awaited"] / proj["pipelined"],
            "raw_ray_speedup": proj["raw_awaited"] / proj["raw_pipelined"],
            "target_min_speedup": 1.3,
        }
        figures["d_projection_pooled"] = {
            "pipelined_ms": proj["pooled_pipelined"] / proj_reps * 1e3,
            "awaited_ms": proj["pooled_awaited"] / proj_reps * 1e3,
            "speedup": proj["pooled_awaited"] / proj["pooled_pipelined"],
            "target_min_speedup": 1.3,
        }

    table = Table(title="dotdo pipelining (medians)")
    for col in ("comparison", "figure", "ratio", "target"):
        table.add_column(col)
    for mode in ("sequential", "batched"):
        f = figures[f"a_{mode}"]
        shown = "sequential" if mode == "sequential" else "issued then gathered"
        table.add_row(
            f"(a) {shown}: dotdo vs raw async actor",
            f"{f['dotdo_per_s']:,.0f}/s vs {f['raw_async_per_s']:,.0f}/s",
            f"{f['cost_vs_raw_async']:.2f}x cost",
            "<= 1.15x" if mode == "sequential" else "(see e)",
        )
        table.add_row(
            f"(a) {mode}: dotdo vs raw sync actor",
            f"{f['dotdo_per_s']:,.0f}/s vs {f['raw_sync_per_s']:,.0f}/s",
            f"{f['cost_vs_raw_sync']:.2f}x cost", "(reference)",
        )
    f = figures["b_fan_out"]
    table.add_row("(b) 1,000 fanned vs awaited", f"{f['fanned_s']:.3f}s vs {f['awaited_s']:.3f}s",
                  f"{f['speedup']:.2f}x faster", ">= 2x")
    f = figures["c_chain_pooled"]
    table.add_row("(c) 20-hop chain, one pooled host: pipelined vs awaited",
                  f"{f['pipelined_ms_per_chain']:.1f}ms vs {f['awaited_ms_per_chain']:.1f}ms",
                  f"{f['speedup']:.2f}x faster", ">= 5x")
    f = figures["c_chain"]
    table.add_row("(c) 20-hop chain, dedicated hosts: pipelined vs awaited",
                  f"{f['pipelined_ms_per_chain']:.1f}ms vs {f['awaited_ms_per_chain']:.1f}ms",
                  f"{f['speedup']:.2f}x faster", f">= raw Ray's {f['raw_ray_speedup']:.2f}x")
    table.add_row("(c) same chain in raw Ray (ObjectRef args)", "",
                  f"{f['raw_ray_speedup']:.2f}x faster", "(reference)")
    for key, where in (("d_projection_pooled", "one pooled host"),
                       ("d_projection", "dedicated hosts")):
        f = figures[key]
        table.add_row(f"(d) projection passed on vs awaited, {where}",
                      f"{f['pipelined_ms']:.2f}ms vs {f['awaited_ms']:.2f}ms",
                      f"{f['speedup']:.2f}x faster", ">= 1.3x")
    table.add_row("(d) same in raw Ray (task extracts the field)", "",
                  f"{f['raw_ray_speedup']:.2f}x faster", "(reference)")
    f = figures["e_issued_then_gathered"]
    table.add_row("(e) 1,000 calls issued then gathered vs raw Ray",
                  f"{f['dotdo_ms']:.1f}ms vs {f['raw_async_ms']:.1f}ms",
                  f"{f['speedup_vs_raw_async']:.2f}x faster", ">= 3x")
    console.print(table)

    write_results("pipelining", console, rounds=rounds, figures=figures)
    dotdo.shutdown()


if __name__ == "__main__":
    main()
