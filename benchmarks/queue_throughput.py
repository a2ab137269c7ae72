"""The job queue against Celery, RQ, Dramatiq and Huey: the same work, one run.

    python benchmarks/queue_throughput.py [--jobs 5000] [--quick] [--only dotdo,celery]

For every system: two worker processes in all are started and idle; N no-op jobs are
enqueued; each job records its completion durably (dotdo: the queue's SQLite; peers:
a Redis hash written with appendfsync everysec); the run ends when all N are
recorded. Reported: enqueue rate, end-to-end jobs per second, p50 and p99 time from
enqueue to completion. The kill -9 variant SIGKILLs every worker process once at
about 30 percent, restarts them (dotdo: Ray does), and counts lost and duplicated
jobs after a grace period.

Peers come from the optional ``bench`` extra (``pip install -e .[bench]``) and need
``redis-server`` on PATH (Debian: ``apt-get install redis-server``); the script
starts a throwaway one on 127.0.0.1 and skips, saying why, any peer it cannot run.
Results go to ``benchmarks/results/queue_throughput.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._results import write_results  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

BIN = Path(sys.executable).parent
console = Console()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        return (latencies[0] if latencies else float("nan"),) * 2
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49], q[98]


def _wait(predicate, timeout: float, label: str, total: int, done) -> bool:
    """Poll until ``predicate()``; show progress; False on timeout."""
    deadline = time.monotonic() + timeout
    last = 0.0
    while time.monotonic() < deadline:
        if predicate():
            return True
        if time.monotonic() - last > 2:
            console.print(f"  {label}: {done()}/{total}", highlight=False)
            last = time.monotonic()
        time.sleep(0.05)
    return False


# -- peers ------------------------------------------------------------------------------


class Peer:
    """A queue system run in its own worker processes, recording into Redis."""

    name = ""
    module = ""

    def __init__(self, redis_url: str, broker_url: str, tmp: str) -> None:
        self.redis_url, self.broker_url, self.tmp = redis_url, broker_url, tmp
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_REDIS_URL": redis_url,
                    "BENCH_BROKER_URL": broker_url, "BENCH_HUEY_DB": os.path.join(tmp, "huey.db")}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("BENCH_")})
        self.procs: list[subprocess.Popen] = []

    def available(self) -> str | None:
        return None if importlib.util.find_spec(self.module) else f"{self.module} not installed"

    def commands(self) -> list[list[str]]:
        raise NotImplementedError

    def start_workers(self) -> None:
        self.procs = [subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
                      for cmd in self.commands()]

    def kill_workers(self) -> None:
        for p in self.procs:  # the whole process group: worker and its children
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait()

    def stop_workers(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def warm_up(self) -> None:
        """Run one job so that the workers are up before the clock starts."""
        self.enqueue(["warm-up"])
        redis = _redis(self.redis_url)
        deadline = time.monotonic() + 120
        while not redis.hexists("bench:count", "warm-up"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} workers did not start")
            time.sleep(0.05)
        redis.delete("bench:count", "bench:done_at")

    def enqueue(self, ids: list[str]) -> None:
        raise NotImplementedError

    def completions(self) -> dict[str, tuple[float, int]]:
        redis = _redis(self.redis_url)
        done_at = redis.hgetall("bench:done_at")
        counts = redis.hgetall("bench:count")
        return {k.decode(): (float(done_at[k]), int(counts.get(k, 0))) for k in done_at}

    def done_count(self) -> int:
        return _redis(self.redis_url).hlen("bench:done_at")


def _redis(url: str):
    import redis

    return redis.Redis.from_url(url)


class CeleryPeer(Peer):
    name, module = "celery", "celery"

    def commands(self):
        return [[str(BIN / "celery"), "-A", "benchmarks.peers.celery_app", "worker",
                 "--concurrency=2", "--pool=prefork", "--loglevel=WARNING", "--without-gossip",
                 "--without-mingle", "--without-heartbeat"]]

    def enqueue(self, ids):
        from benchmarks.peers.celery_app import noop

        for job_id in ids:
            noop.delay(job_id)


class RQPeer(Peer):
    name, module = "rq", "rq"

    def commands(self):
        return [[str(BIN / "rq"), "worker", "--url", self.broker_url, "--quiet", "bench"]
                for _ in range(2)]

    def enqueue(self, ids):
        from redis import Redis
        from rq import Queue

        queue = Queue("bench", connection=Redis.from_url(self.broker_url))
        for start in range(0, len(ids), 1000):
            queue.enqueue_many([Queue.prepare_data("benchmarks.peers.rq_tasks.noop", (i,))
                                for i in ids[start:start + 1000]])


class DramatiqPeer(Peer):
    name, module = "dramatiq", "dramatiq"

    def commands(self):
        return [[str(BIN / "dramatiq"), "benchmarks.peers.dramatiq_tasks", "--processes", "2",
                 "--threads", "8"]]

    def enqueue(self, ids):
        from benchmarks.peers.dramatiq_tasks import noop

        for job_id in ids:
            noop.send(job_id)


class HueyPeer(Peer):
    name, module = "huey", "huey"

    def commands(self):
        return [[str(BIN / "huey_consumer"), "benchmarks.peers.huey_tasks.huey", "-w", "2",
                 "-k", "process", "-q"]]

    def start_workers(self):
        from benchmarks.peers import huey_tasks

        if not self.procs:  # a new run, not a restart after kill -9: start empty
            huey_tasks.huey.flush()
        super().start_workers()

    def enqueue(self, ids):
        from benchmarks.peers import huey_tasks

        for job_id in ids:
            huey_tasks.noop(job_id)


# -- dotdo ------------------------------------------------------------------------------


class DotdoSystem:
    """dotdo's Queue with two Worker objects (two processes), on a local Ray."""

    name = "dotdo"

    def __init__(self, storage: str) -> None:
        import dotdo

        self.dotdo = dotdo
        dotdo.init(address="local", storage=storage,
                   runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        from benchmarks.peers import dotdo_jobs  # noqa: F401  (registers the handler)

        run = f"{time.time_ns()}"
        self.queue = dotdo.Queue(f"bench-{run}")
        self.workers = [dotdo.Worker(f"bench-{run}-{i}") for i in range(2)]

    def available(self) -> str | None:
        return None

    def start_workers(self) -> None:
        self.queue.get_metrics().result()
        self.dotdo.get([w.start(self.queue.id, concurrency=64) for w in self.workers])

    def warm_up(self) -> None:
        self.queue.enqueue("noop", None, job_id="warm-up").result()
        while not (job := self.queue.get("warm-up").result())["status"] in ("completed", "failed"):
            time.sleep(0.05)
        if job["status"] == "failed":
            raise RuntimeError(f"dotdo warm-up job failed: {job['error']}")
        self.queue.purge().result()

    def enqueue(self, ids: list[str]) -> None:
        for start in range(0, len(ids), 1000):
            self.queue.enqueue_many([{"type": "noop", "payload": None, "job_id": i}
                                     for i in ids[start:start + 1000]]).result()

    def done_count(self) -> int:
        m = self.queue.get_metrics().result()
        return m.completed + m.failed

    def completions(self) -> dict[str, tuple[float, int]]:
        out, cursor = {}, None
        while True:
            page = self.queue.list(status="completed", limit=1000, cursor=cursor).result()
            for job in page["jobs"]:
                out[job["$id"]] = (job["finishedAt"], 1)
            cursor = page["cursor"]
            if cursor is None:
                return out

    def duplicates(self) -> int:
        """Steps journaled more than once across the workers (a handler run twice)."""
        import glob
        import sqlite3

        seen: dict[str, int] = {}
        for path in glob.glob(os.path.join(self.dotdo.client.settings().storage, "Worker", "*", "*.sqlite3")):
            conn = sqlite3.connect(path)
            owner = conn.execute("SELECT value FROM _dotdo_meta WHERE key = 'id'").fetchone()[0]
            if owner in {w.id for w in self.workers}:
                for (step,) in conn.execute("SELECT step_id FROM _dotdo_steps"):
                    seen[step] = seen.get(step, 0) + 1
            conn.close()
        return sum(1 for n in seen.values() if n > 1)

    def kill_workers(self) -> None:
        import ray

        from dotdo import client

        for w in self.workers:
            pid = ray.get(client.actor_handle(w).stats.remote())["pid"]
            os.kill(pid, signal.SIGKILL)

    def stop_workers(self) -> None:
        self.dotdo.get([w.stop() for w in self.workers])

    def shutdown(self) -> None:
        self.dotdo.shutdown()


# -- one run ----------------------------------------------------------------------------


def run_once(system, n: int, kill: bool, timeout: float) -> dict:
    ids = [f"job-{i}" for i in range(n)]
    system.start_workers()
    system.warm_up()
    enqueued_at: dict[str, float] = {}
    start = time.perf_counter()
    wall_start = time.time()
    chunk = max(n // 20, 1)
    for i in range(0, n, chunk):
        part = ids[i:i + chunk]
        now = time.time()
        system.enqueue(part)
        enqueued_at.update((j, now) for j in part)
    enqueue_s = time.perf_counter() - start
    killed = False
    if kill:
        _wait(lambda: system.done_count() >= n * 0.3, timeout, f"{system.name} to 30%", n,
              system.done_count)
        system.kill_workers()
        killed = True
        if not isinstance(system, DotdoSystem):
            system.start_workers()  # the operator restarts them; Ray does it for dotdo
    finished = _wait(lambda: system.done_count() >= n, timeout, system.name, n, system.done_count)
    end_s = time.perf_counter() - start
    if not finished and kill:
        end_s = float("nan")
    done = system.completions()
    latencies = [done[j][0] - enqueued_at[j] for j in ids if j in done]
    # The rate of the jobs that did complete, from the durable record's own times:
    # comparable also for a run that lost jobs and so never "finished".
    last = max((done[j][0] for j in ids if j in done), default=wall_start)
    completed_rate = sum(1 for j in ids if j in done) / max(last - wall_start, 1e-9)
    p50, p99 = _percentiles(latencies)
    duplicates = (system.duplicates() if isinstance(system, DotdoSystem)
                  else sum(1 for j in ids if j in done and done[j][1] > 1))
    system.stop_workers()
    return {
        "jobs": n,
        "killed_at_30_percent": killed,
        "finished": finished,
        "enqueue_per_s": n / enqueue_s,
        "end_to_end_per_s": (n / end_s) if finished else None,
        "completed_per_s": completed_rate,
        "p50_s": p50,
        "p99_s": p99,
        "lost": sum(1 for j in ids if j not in done),
        "duplicated": duplicates,
        "wall_clock_start": wall_start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="1,000 jobs")
    parser.add_argument("--only", default="dotdo,celery,rq,dramatiq,huey")
    parser.add_argument("--timeout", type=float, default=90.0,
                        help="seconds a run may take before its missing jobs count as lost")
    args = parser.parse_args()
    n = 1000 if args.quick else args.jobs
    wanted = args.only.split(",")
    tmp = tempfile.mkdtemp(prefix="dotdo-qbench-")
    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}

    redis_server = shutil.which("redis-server")
    redis_proc = None
    if redis_server:
        port = _free_port()
        redis_proc = subprocess.Popen(
            [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    try:
        for name in wanted:
            for kill in (False, True):
                label = f"{name}{' kill -9' if kill else ''}"
                console.print(f"[bold]{label}[/bold]: {n} jobs")
                if name == "dotdo":
                    system = DotdoSystem(os.path.join(tmp, f"dotdo-{int(kill)}"))
                else:
                    if not redis_server:
                        skipped[name] = "redis-server is not installed (apt-get install redis-server)"
                        break
                    cls = {"celery": CeleryPeer, "rq": RQPeer, "dramatiq": DramatiqPeer,
                           "huey": HueyPeer}[name]
                    _redis(f"redis://127.0.0.1:{port}/0").flushall()
                    system = cls(f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1", tmp)
                    reason = system.available()
                    if reason:
                        skipped[name] = reason
                        break
                try:
                    results[label] = run_once(system, n, kill, args.timeout)
                except Exception as exc:  # noqa: BLE001 - report and go on with the others
                    skipped[label] = f"failed: {type(exc).__name__}: {exc}"
                    try:
                        system.stop_workers()
                    except Exception:  # noqa: BLE001
                        pass
                finally:
                    if isinstance(system, DotdoSystem):
                        system.shutdown()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()

    table = Table(title=f"job queues on this machine: {n} no-op jobs, two worker processes")
    for col in ("system", "enqueue/s", "end-to-end jobs/s", "completed jobs/s", "p50", "p99",
                "lost", "duplicated"):
        table.add_column(col, justify="right")
    for label, r in results.items():
        e2e = f"{r['end_to_end_per_s']:,.0f}" if r["end_to_end_per_s"] else "did not finish"
        table.add_row(label, f"{r['enqueue_per_s']:,.0f}", e2e, f"{r['completed_per_s']:,.0f}",
                      f"{r['p50_s'] * 1e3:,.0f} ms", f"{r['p99_s'] * 1e3:,.0f} ms",
                      str(r["lost"]), str(r["duplicated"]))
    console.print(table)
    for label, reason in skipped.items():
        console.print(f"skipped {label}: {reason}")
    # Against each peer's rate over the jobs it completed, so that a peer that lost a
    # job in a plain run is not left out of the comparison.
    peers = [r["completed_per_s"] for k, r in results.items()
             if not k.startswith("dotdo") and "kill" not in k]
    ratio = None
    if "dotdo" in results and peers and results["dotdo"]["end_to_end_per_s"]:
        ratio = results["dotdo"]["end_to_end_per_s"] / max(peers)
        console.print(f"dotdo end-to-end vs the best peer's completed jobs/s: {ratio:.2f}x "
                      "(target >= 2x)")
    write_results("queue_throughput", console, jobs=n, results=results, skipped=skipped,
                  dotdo_vs_best_peer=ratio)


if __name__ == "__main__":
    main()
