"""The first round of a fresh process, as a new user measures it: no warm-up counted.

    python benchmarks/first_round.py [--runs 5] [--rounds 20] [--peer-rounds 5] [--jobs 5000]
                                     [--only dotdo,huey-redis]

A cluster is started with ``ray start --head`` (its own temp dir and port, stopped at
the end without touching any other Ray on the machine). Then, for every run, a new
Python process joins it and issues ``--jobs`` single enqueues, then gathers them
(dotdo's ``Queue.enqueue`` issued without waiting; each peer's ordinary one-job call),
``--rounds`` times over (``--peer-rounds`` for the peers): the first round is what a
program that enqueues a batch and exits sees; the slowest round against the median
says whether anything stalls.
No workers run: the enqueue alone is measured.

Side by side, in the same run:
  * ``dotdo``: a queue that exists already (a program run before created it), on
    durable commits (the default); ``dotdo-new-queue``: a queue the run creates (its
    host's start counts in the first round);
  * ``dotdo-in-process``: ``dotdo.init(in_process=True)``, no Ray at all;
  * ``raw-ray``: a raw Ray async actor doing the same SQLite insert (fsync per commit,
    as dotdo's durable default), one ``.remote()`` per job;
  * the peers (Huey on Redis, Celery, RQ, Dramatiq) on the settings of
    ``benchmarks/queue_throughput.py``, against a throwaway Redis.

Results: ``benchmarks/results/first_round.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks._results import write_results  # noqa: E402
from benchmarks.queue_throughput import _free_port  # noqa: E402

console = Console()
PEERS = ("huey-redis", "celery", "rq", "dramatiq")
SYSTEMS = ("dotdo", "dotdo-new-queue", "dotdo-in-process", "raw-ray", *PEERS)


# -- the fresh process ------------------------------------------------------------------


class _RawInsert:
    """A raw Ray async actor inserting a job row as dotdo's durable default does (WAL,
    synchronous=FULL, a commit per job)."""

    def __init__(self, path: str) -> None:
        import sqlite3

        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, payload BLOB, "
                        "status TEXT, created REAL)")

    async def insert(self, job_id: str, payload: bytes) -> dict:
        self.db.execute("BEGIN")
        self.db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, 'pending', ?)",
                        (job_id, payload, time.time()))
        self.db.execute("COMMIT")
        return {"$id": job_id, "status": "pending"}


def child(system: str, jobs: int, rounds: int, conf: dict) -> dict:
    """One fresh process: ``rounds`` rounds of ``jobs`` single enqueues, each timed."""
    began = time.perf_counter()
    issue, gather, host_stats = _enqueuer(system, conf)
    ready = time.perf_counter() - began
    times, cpu, hosts = [], [], []
    for r in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        pending = issue([f"{os.getpid()}-{r}-{i}" for i in range(jobs)])
        gather(pending)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        hosts.append(host_stats())
    return {"ready_s": ready, "rounds_s": times, "driver_cpu_s": cpu, "host": hosts}


def _enqueuer(system: str, conf: dict):
    """``(issue(ids) -> pending, gather(pending), host_stats())`` for ``system``, set up
    in this process; ``host_stats`` says how dotdo's host took the calls so far."""
    if system.startswith("dotdo"):
        import dotdo
        from dotdo import client

        if system == "dotdo-in-process":
            # A root of its own: the cluster's objects (its App) hold theirs open.
            dotdo.init(in_process=True, storage=conf["storage"] + "-in-process")
        else:
            dotdo.init(address=conf["address"], storage=conf["storage"])
        name = conf["queue"] if system == "dotdo" else f"new-{os.getpid()}"
        queue = dotdo.Queue(name)

        def host_stats() -> dict:
            stats = dotdo.get(client.actor_handle(queue).stats.remote())
            return {k: stats.get(k) for k in ("batches", "batched_calls", "turn_waits",
                                              "late_calls", "gaps_skipped")}

        return ((lambda ids: [queue.enqueue("work", i, job_id=i) for i in ids]), dotdo.get,
                host_stats)
    if system == "raw-ray":
        import ray

        ray.init(address=conf["address"], logging_level="error")
        actor = ray.get_actor("raw-insert", namespace="bench")
        return ((lambda ids: [actor.insert.remote(i, b"\xc0") for i in ids]), ray.get, dict)
    from benchmarks import queue_throughput as qt

    cls = {"celery": qt.CeleryPeer, "rq": qt.RQPeer, "dramatiq": qt.DramatiqPeer,
           "huey-redis": qt.HueyRedisPeer}[system]
    peer = cls(conf["redis"], conf["broker"], conf["tmp"])
    return peer.enqueue, (lambda _: None), dict


# -- the run ----------------------------------------------------------------------------


def _fresh(system: str, jobs: int, rounds: int, conf: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": conf["auth"],
           "BENCH_REDIS_URL": conf["redis"], "BENCH_BROKER_URL": conf["broker"],
           "BENCH_HUEY_DB": os.path.join(conf["tmp"], "huey.db"), "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", system, "--jobs", str(jobs),
                           "--rounds", str(rounds), "--conf", json.dumps(conf)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if os.environ.get("BENCH_CHILD_LOG"):
        with open(os.environ["BENCH_CHILD_LOG"], "a") as log:
            log.write(f"--- {system}\n{done.stderr}")
    if done.returncode != 0:
        raise RuntimeError(f"{system}: {done.stderr.strip().splitlines()[-1:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - started
    return out


def _start_cluster(tmp: str) -> tuple[subprocess.Popen, str, str]:
    port = _free_port()
    temp_dir = os.path.join(tmp, "ray")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
         "--num-cpus=2", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.2)
    # Token authentication is on by default: a driver given an address presents it.
    return head, address, "token" if os.path.exists(os.path.expanduser("~/.ray/auth_token")) \
        else os.environ.get("RAY_AUTH_MODE", "disabled")


def _stop(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _setup(conf: dict) -> None:
    """What a program run before made: the queue (its host up), the raw actor."""
    import ray

    import dotdo

    dotdo.init(address=conf["address"], storage=conf["storage"])
    dotdo.Queue(conf["queue"]).enqueue("work", "setup", job_id="setup").result()
    raw = ray.remote(num_cpus=0)(_RawInsert).options(
        name="raw-insert", namespace="bench", lifetime="detached").remote(
        os.path.join(conf["storage"], "raw.db"))
    ray.get(raw.insert.remote("setup", b""))
    dotdo.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per system")
    parser.add_argument("--rounds", type=int, default=20, help="rounds in each process")
    parser.add_argument("--peer-rounds", type=int, default=5,
                        help="rounds in each peer's process (their enqueue is synchronous)")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--only", default=",".join(SYSTEMS))
    parser.add_argument("--child")
    parser.add_argument("--conf")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.jobs, args.rounds, json.loads(args.conf))))
        return
    wanted = [s for s in args.only.split(",") if s]
    tmp = tempfile.mkdtemp(prefix="dotdo-first-round-")
    redis_proc = None
    redis_server = shutil.which("redis-server")
    redis_port = _free_port()
    if redis_server:
        redis_proc = subprocess.Popen(
            [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    head, address, auth = _start_cluster(tmp)
    conf = {"address": address, "auth": auth, "storage": os.path.join(tmp, "store"),
            "queue": "first-round", "tmp": tmp,
            "redis": f"redis://127.0.0.1:{redis_port}/0",
            "broker": f"redis://127.0.0.1:{redis_port}/1"}
    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    try:
        made = subprocess.run(
            [sys.executable, "-c", "import json, sys; from benchmarks.first_round "
             "import _setup; _setup(json.loads(sys.argv[1]))", json.dumps(conf)],
            # In the environment, not set by _setup: Ray reads it once, at its import.
            env={**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": conf["auth"]},
            cwd=ROOT, capture_output=True,
            text=True, timeout=300)
        if made.returncode:
            raise RuntimeError(f"setting up the cluster failed:\n{made.stderr[-3000:]}")
        # Runs alternate between systems, so that noise on the machine hits each alike.
        for run in range(args.runs):
            for system in wanted:
                if system in skipped:
                    continue
                if system in PEERS and not redis_server:
                    skipped[system] = "redis-server is not installed (apt-get install redis-server)"
                    continue
                console.print(f"run {run + 1}/{args.runs}: {system}", highlight=False)
                try:
                    out = _fresh(system, args.jobs,
                                 args.peer_rounds if system in PEERS else args.rounds, conf)
                except Exception as exc:  # noqa: BLE001 - report it, go on with the others
                    skipped[system] = f"failed: {exc}"
                    continue
                results.setdefault(system, {"runs": []})["runs"].append(out)
    finally:
        _stop(head)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    table = Table(title=f"a fresh process: {args.jobs:,} single enqueues per round, "
                        f"{args.runs} processes x {args.rounds} rounds, no workers")
    for col in ("system", "first round, median", "first round, worst", "first round, range",
                "later rounds, median", "slowest round / median", "process start"):
        table.add_column(col, justify="right")
    for system, r in results.items():
        firsts = [args.jobs / run["rounds_s"][0] for run in r["runs"]]
        later = [args.jobs / t for run in r["runs"] for t in run["rounds_s"][1:]]
        # Within each process: its slowest round against its median round (a stall).
        spread = [max(run["rounds_s"]) / statistics.median(run["rounds_s"]) for run in r["runs"]]
        r.update(first_round_median_per_s=statistics.median(firsts),
                 first_round_worst_per_s=min(firsts), first_round_best_per_s=max(firsts),
                 later_rounds_median_per_s=statistics.median(later) if later else None,
                 slowest_over_median_worst=max(spread),
                 ready_s_median=statistics.median(run["ready_s"] for run in r["runs"]))
        table.add_row(system, f"{r['first_round_median_per_s']:,.0f}/s",
                      f"{r['first_round_worst_per_s']:,.0f}/s",
                      f"{min(firsts):,.0f}-{max(firsts):,.0f}/s",
                      f"{r['later_rounds_median_per_s']:,.0f}/s" if later else "",
                      f"{r['slowest_over_median_worst']:.2f}x",
                      f"{r['ready_s_median']:.2f} s")
    console.print(table)
    for system, why in skipped.items():
        console.print(f"skipped {system}: {why}")
    ratios: dict[str, float] = {}
    d = results.get("dotdo")
    peers = {k: v for k, v in results.items() if k in PEERS}
    if d is not None:
        checks = Table(title="dotdo against its targets")
        for col in ("figure", "dotdo", "against", "target"):
            checks.add_column(col)
        met = d["first_round_worst_per_s"] >= 10_000
        checks.add_row("first round of a fresh process (worst of the runs)",
                       f"{d['first_round_worst_per_s']:,.0f}/s", "",
                       f">= 10,000/s: {'met' if met else 'not met'}")
        spread = d["slowest_over_median_worst"]
        checks.add_row(f"slowest of {args.rounds} rounds / median (worst process)",
                       f"{spread:.2f}x", "", f"<= 2x: {'met' if spread <= 2 else 'not met'}")
        if peers:
            best = max(peers.items(), key=lambda kv: kv[1]["first_round_median_per_s"])
            ratios["first_round_vs_best_peer"] = (d["first_round_median_per_s"]
                                                  / best[1]["first_round_median_per_s"])
            checks.add_row("first round vs the best peer (medians)",
                           f"{ratios['first_round_vs_best_peer']:.2f}x",
                           f"{best[0]} {best[1]['first_round_median_per_s']:,.0f}/s", "(reported)")
        local = results.get("dotdo-in-process")
        if local is not None:
            ratios["in_process_vs_ray"] = (local["first_round_median_per_s"]
                                           / d["first_round_median_per_s"])
            checks.add_row("in-process vs on Ray (first-round medians)",
                           f"{ratios['in_process_vs_ray']:.2f}x", "",
                           f">= 1x: {'met' if ratios['in_process_vs_ray'] >= 1 else 'not met'}")
        console.print(checks)
    write_results("first_round", console, jobs=args.jobs, runs=args.runs, rounds=args.rounds,
                  results=results, skipped=skipped, ratios=ratios)


if __name__ == "__main__":
    main()
