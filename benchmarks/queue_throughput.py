"""The job queue against Celery, RQ, Dramatiq and Huey: the same work, one run.

    python benchmarks/queue_throughput.py [--jobs 5000] [--quick] [--only dotdo,celery]

Every system runs the same job body, one blocking call to a local Redis that records
the job's completion (peers), or that plus the queue's own durable record of the
result (dotdo, a plain sync handler), in two worker processes in all, with the peers
on their most reliable settings: Celery ``task_acks_late``,
``task_reject_on_worker_lost``, prefetch 1, a 10 s ``visibility_timeout``; Dramatiq's
Redis broker with a 10 s heartbeat timeout; RQ with ``Retry`` and a 10 s
``--worker-ttl``; Huey as it is, with SQLite and with Redis.

Measured, per system: the single-job enqueue (each system's ordinary one-job call;
dotdo's ``Queue.enqueue`` issued without waiting, then gathered) while the workers
run; steady jobs per second (completions between 10 and 90 percent, from the
durable record's own times); p50/p99 from enqueue to completion under that load;
the enqueue-to-result latency of a single job on idle workers; CPU per job, every
process on the machine from the first enqueue to the last completion (``/proc/stat``:
run it on a quiet machine). For dotdo also: the time from enqueue to the result in the
caller's hands (``enqueue`` then ``wait``), the
single enqueue awaited one at a time against a raw Ray async actor doing the same
SQLite insert, ``enqueue_many``, and the time from ``Worker.start()`` returning to
the first job done; and ``dotdo-normal``, the same with ``durability="normal"``, so the
run shows what durable commits (the default) cost; and ``dotdo-in-process``, the queue
and both workers in the driver's process with no Ray (``dotdo.init(in_process=True)``,
no kill -9 run). The kill -9 variant SIGKILLs every
worker process once at about 30 percent, restarts them (dotdo: Ray does), and counts lost and duplicated jobs
after a grace period.

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

import ray  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks._results import write_results  # noqa: E402

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
        self.enqueue_one("warm-up")
        redis = _redis(self.redis_url)
        deadline = time.monotonic() + 120
        while not redis.hexists("bench:count", "warm-up"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} workers did not start")
            time.sleep(0.05)
        redis.delete("bench:count", "bench:done_at")

    def enqueue_one(self, job_id: str) -> None:
        """The system's ordinary single-job enqueue."""
        raise NotImplementedError

    def enqueue(self, ids: list[str]) -> None:
        for job_id in ids:
            self.enqueue_one(job_id)

    def done_at(self, job_id: str) -> float | None:
        """When ``job_id`` was done (its result recorded), or None yet."""
        value = _redis(self.redis_url).hget("bench:done_at", job_id)
        return None if value is None else float(value)

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

    def enqueue_one(self, job_id):
        from benchmarks.peers.celery_app import noop

        noop.delay(job_id)


class RQPeer(Peer):
    name, module = "rq", "rq"

    def commands(self):
        return [[str(BIN / "rq"), "worker", "--url", self.broker_url, "--quiet",
                 "--worker-ttl", "10", "bench"] for _ in range(2)]

    def enqueue_one(self, job_id):
        from redis import Redis
        from rq import Queue, Retry

        if getattr(self, "_queue", None) is None:
            self._queue = Queue("bench", connection=Redis.from_url(self.broker_url))
        self._queue.enqueue("benchmarks.peers.rq_tasks.noop", job_id, retry=Retry(max=3))


class DramatiqPeer(Peer):
    name, module = "dramatiq", "dramatiq"

    def commands(self):
        return [[str(BIN / "dramatiq"), "benchmarks.peers.dramatiq_tasks", "--processes", "2",
                 "--threads", "8"]]

    def enqueue_one(self, job_id):
        from benchmarks.peers.dramatiq_tasks import noop

        noop.send(job_id)


class HueyPeer(Peer):
    name, module = "huey", "huey"
    instance, task = "sqlite_huey", "noop"

    def commands(self):
        return [[str(BIN / "huey_consumer"), f"benchmarks.peers.huey_tasks.{self.instance}",
                 "-w", "2", "-k", "process", "-q"]]

    def start_workers(self):
        from benchmarks.peers import huey_tasks

        if not self.procs:  # a new run, not a restart after kill -9: start empty
            getattr(huey_tasks, self.instance).flush()
        super().start_workers()

    def enqueue_one(self, job_id):
        from benchmarks.peers import huey_tasks

        getattr(huey_tasks, self.task)(job_id)


class HueyRedisPeer(HueyPeer):
    name = "huey-redis"
    instance, task = "redis_huey", "noop_redis"


# -- dotdo ------------------------------------------------------------------------------


class DotdoSystem:
    """dotdo's Queue with two Worker objects (two processes), on a local Ray, its
    files ``durability="full"`` (the default: every commit on disk before it is
    acknowledged) or ``"normal"`` (``dotdo-normal``: survives a process's death only)."""

    name = "dotdo"

    def __init__(self, storage: str, redis_url: str, durability: str = "full",
                 in_process: bool = False) -> None:
        import dotdo

        self.dotdo = dotdo
        self.durability = durability
        self.in_process = in_process
        os.environ["BENCH_REDIS_URL"] = redis_url
        if in_process:  # the queue and both workers in this process, no Ray
            dotdo.init(in_process=True, storage=storage, durability=durability)
        else:
            dotdo.init(address="local", storage=storage, durability=durability,
                       runtime_env={"env_vars": {"PYTHONPATH": str(ROOT),
                                                 "BENCH_REDIS_URL": redis_url}})
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
        self.queue.enqueue("work", "warm-up", job_id="warm-up").result()
        while (job := self.queue.get("warm-up").result())["status"] not in ("completed", "failed"):
            time.sleep(0.05)
        if job["status"] == "failed":
            raise RuntimeError(f"dotdo warm-up job failed: {job['error']}")
        self.queue.purge().result()

    def enqueue(self, ids: list[str]) -> None:
        """Single-job enqueues, issued without waiting, then gathered."""
        self.dotdo.get([self.queue.enqueue("work", i, job_id=i) for i in ids])

    def enqueue_one(self, job_id: str) -> None:
        self.queue.enqueue("work", job_id, job_id=job_id).result()

    def enqueue_and_wait(self, job_id: str) -> None:
        """Enqueue one job and wait for its result (``Queue.wait``: no polling), the
        wait sent right behind the enqueue."""
        self.queue.enqueue("work", job_id, job_id=job_id)
        self.queue.wait(job_id, timeout=30).result()

    def done_at(self, job_id: str) -> float | None:
        job = self.queue.get(job_id).result()
        return job["finishedAt"] if job and job["status"] == "completed" else None

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

    def extras(self, n: int) -> dict:
        """dotdo's own figures: the awaited enqueue against a raw Ray actor doing the
        same insert, enqueue_many, and Worker.start() to the first job done."""
        k = min(n, 1000)
        raw = _RawInsert.remote(os.path.join(self.dotdo.connect.settings().storage, "raw.db"),
                                self.durability)
        ray.get(raw.insert.remote("warm-up", b""))
        # A queue of its own, with no workers: only the enqueue on the machine.
        side = self.dotdo.Queue(f"{self.queue.id}-enqueue")
        side.enqueue("work", "w", job_id="awaited-warm").result()
        sides: dict[str, list[float]] = {"dotdo": [], "raw": []}
        for r in range(5):  # alternate, so that noise hits both
            t = time.perf_counter()
            for i in range(k // 5):
                side.enqueue("work", f"awaited-{r}-{i}", job_id=f"awaited-{r}-{i}").result()
            sides["dotdo"].append((time.perf_counter() - t) / (k // 5))
            t = time.perf_counter()
            for i in range(k // 5):
                ray.get(raw.insert.remote(f"raw-{r}-{i}", b"\xc0"))
            sides["raw"].append((time.perf_counter() - t) / (k // 5))
        ray.kill(raw)
        t = time.perf_counter()
        for start in range(0, n, 1000):
            side.enqueue_many([{"type": "work", "payload": f"many-{i}", "job_id": f"many-{i}"}
                               for i in range(start, min(start + 1000, n))]).result()
        many_per_s = n / (time.perf_counter() - t)
        # From Worker.start() returning to the first job done, with jobs waiting.
        self.stop_workers()
        self.queue.purge().result()
        self.queue.enqueue_many([{"type": "work", "payload": f"first-{i}", "job_id": f"first-{i}"}
                                 for i in range(100)]).result()
        self.dotdo.get([w.start(self.queue.id, concurrency=64) for w in self.workers])
        started = time.time()
        _wait(lambda: self.done_count() >= 100, 60, "first jobs", 100, self.done_count)
        first = min(v[0] for v in self.completions().values())
        return {
            "awaited_enqueue_ms": statistics.median(sides["dotdo"]) * 1e3,
            "raw_ray_insert_ms": statistics.median(sides["raw"]) * 1e3,
            "awaited_enqueue_vs_raw_ray": statistics.median(sides["dotdo"]) / statistics.median(sides["raw"]),
            "enqueue_many_per_s": many_per_s,
            "start_to_first_job_ms": (first - started) * 1e3,
        }

    def duplicates(self) -> int:
        """Steps journaled more than once across the workers (a handler run twice)."""
        import glob
        import sqlite3

        seen: dict[str, int] = {}
        for path in glob.glob(os.path.join(self.dotdo.connect.settings().storage, "Worker", "*", "*.sqlite3")):
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


@ray.remote(num_cpus=0)
class _RawInsert:
    """A raw Ray async actor inserting a job row into SQLite, as dotdo's journal is set
    up (WAL; ``synchronous=FULL`` for durable commits, the default, ``NORMAL`` for
    ``durability="normal"``): the floor under an awaited enqueue."""

    def __init__(self, path: str, durability: str = "full") -> None:
        import sqlite3

        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        self.db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, payload BLOB, "
                        "status TEXT, created REAL)")

    async def insert(self, job_id: str, payload: bytes) -> dict:
        self.db.execute("BEGIN")
        self.db.execute("INSERT OR IGNORE INTO jobs VALUES (?, ?, 'pending', ?)",
                        (job_id, payload, time.time()))
        self.db.execute("COMMIT")
        return {"$id": job_id, "status": "pending"}


# -- one run ----------------------------------------------------------------------------


def idle_latency(system, count: int = 30) -> list[float]:
    """Enqueue-to-result seconds of single jobs on idle workers, one at a time."""
    out = []
    for i in range(count):
        job_id = f"idle-{i}"
        time.sleep(0.1)  # idle: the workers are waiting for work
        start = time.time()
        system.enqueue_one(job_id)
        deadline = time.monotonic() + 30
        while (done := system.done_at(job_id)) is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if done is not None:
            out.append(done - start)
    return out


def machine_cpu() -> float:
    """Seconds of CPU every process on this machine has used (``/proc/stat``): over a
    run, the CPU a system's jobs cost in all its processes (and whatever else runs)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def wait_latency(system, count: int = 200) -> list[float]:
    """Seconds from enqueue to the result in the caller's hands (``enqueue`` then
    ``wait``), single jobs on idle workers, 20 ms apart (dotdo only)."""
    out = []
    for i in range(count):
        time.sleep(0.02)
        start = time.perf_counter()
        system.enqueue_and_wait(f"wait-{i}")
        out.append(time.perf_counter() - start)
    return out


def run_once(system, n: int, kill: bool, timeout: float) -> dict:
    ids = [f"job-{i}" for i in range(n)]
    system.start_workers()
    system.warm_up()
    enqueued_at: dict[str, float] = {}
    cpu_start = machine_cpu()
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
    cpu_s = machine_cpu() - cpu_start
    if not finished and kill:
        end_s = float("nan")
    done = system.completions()
    latencies = [done[j][0] - enqueued_at[j] for j in ids if j in done]
    # The rate of the jobs that did complete, from the durable record's own times:
    # comparable also for a run that lost jobs and so never "finished".
    times = sorted(done[j][0] for j in ids if j in done)
    last = times[-1] if times else wall_start
    completed_rate = len(times) / max(last - wall_start, 1e-9)
    # Steady: between the 10th and 90th percentile completions, past start-up and tail.
    lo, hi = int(len(times) * 0.1), int(len(times) * 0.9)
    steady = (hi - lo) / max(times[hi] - times[lo], 1e-9) if hi > lo + 1 else float("nan")
    p50, p99 = _percentiles(latencies)
    duplicates = (system.duplicates() if isinstance(system, DotdoSystem)
                  else sum(1 for j in ids if j in done and done[j][1] > 1))
    result = {
        "jobs": n,
        "killed_at_30_percent": killed,
        "finished": finished,
        "enqueue_per_s": n / enqueue_s,
        "end_to_end_per_s": (n / end_s) if finished else None,
        "completed_per_s": completed_rate,
        "steady_per_s": steady,
        "p50_s": p50,
        "p99_s": p99,
        "cpu_per_job_us": cpu_s / n * 1e6,  # every process on the machine, enqueue to end
        "lost": sum(1 for j in ids if j not in done),
        "duplicated": duplicates,
        "wall_clock_start": wall_start,
    }
    if not kill:
        idle = idle_latency(system)
        result["idle_latency_p50_ms"] = statistics.median(idle) * 1e3 if idle else None
        if isinstance(system, DotdoSystem):
            waited = wait_latency(system)
            result["wait_p50_ms"], result["wait_p99_ms"] = (x * 1e3 for x in _percentiles(waited))
            if not system.in_process:  # the extras compare against Ray actors
                result.update(system.extras(n))
    system.stop_workers()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="1,000 jobs")
    everyone = "dotdo,dotdo-normal,dotdo-in-process,celery,rq,dramatiq,huey-redis,huey"
    parser.add_argument("--only", default=everyone)
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 runs")
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
            for kill in (False,) if args.no_kill else (False, True):
                label = f"{name}{' kill -9' if kill else ''}"
                console.print(f"[bold]{label}[/bold]: {n} jobs")
                if not redis_server:
                    skipped[name] = "redis-server is not installed (apt-get install redis-server)"
                    break
                _redis(f"redis://127.0.0.1:{port}/0").flushall()
                if name == "dotdo-in-process" and kill:
                    break  # one process: a kill -9 ends the benchmark with it
                if name in ("dotdo", "dotdo-normal", "dotdo-in-process"):
                    system = DotdoSystem(os.path.join(tmp, f"{name}-{int(kill)}"),
                                         f"redis://127.0.0.1:{port}/0",
                                         "normal" if name == "dotdo-normal" else "full",
                                         in_process=name == "dotdo-in-process")
                else:
                    if not redis_server:
                        skipped[name] = "redis-server is not installed (apt-get install redis-server)"
                        break
                    cls = {"celery": CeleryPeer, "rq": RQPeer, "dramatiq": DramatiqPeer,
                           "huey": HueyPeer, "huey-redis": HueyRedisPeer}[name]
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

    table = Table(title=f"job queues on this machine: {n} jobs (one blocking Redis call each), "
                        "two worker processes")
    for col in ("system", "single enqueue/s", "steady jobs/s", "completed jobs/s", "p50", "p99",
                "idle p50", "CPU/job", "lost", "duplicated"):
        table.add_column(col, justify="right")
    for label, r in results.items():
        idle = r.get("idle_latency_p50_ms")
        table.add_row(label, f"{r['enqueue_per_s']:,.0f}", f"{r['steady_per_s']:,.0f}",
                      f"{r['completed_per_s']:,.0f}",
                      f"{r['p50_s'] * 1e3:,.0f} ms", f"{r['p99_s'] * 1e3:,.0f} ms",
                      f"{idle:,.1f} ms" if idle is not None else "",
                      f"{r['cpu_per_job_us']:,.0f} us", str(r["lost"]), str(r["duplicated"]))
    console.print(table)
    for label, reason in skipped.items():
        console.print(f"skipped {label}: {reason}")
    # Against each peer's figures in its plain run (not the kill -9 one).
    peers = {k: r for k, r in results.items() if not k.startswith("dotdo") and "kill" not in k}
    # What durable commits cost: the default (synchronous=FULL) against "normal"
    full, normal = results.get("dotdo"), results.get("dotdo-normal")
    ratios: dict[str, float | None] = {}
    checks = Table(title="dotdo against its targets")
    for col in ("figure", "dotdo", "against", "ratio", "target"):
        checks.add_column(col)
    d = results.get("dotdo")
    if d is not None:
        if peers:
            best_enqueue = max(peers.items(), key=lambda kv: kv[1]["enqueue_per_s"])
            best_steady = max(peers.items(), key=lambda kv: kv[1]["steady_per_s"])
            ratios["enqueue_vs_best_peer"] = d["enqueue_per_s"] / best_enqueue[1]["enqueue_per_s"]
            ratios["steady_vs_best_peer"] = d["steady_per_s"] / best_steady[1]["steady_per_s"]
            checks.add_row("single enqueue, issued then gathered", f"{d['enqueue_per_s']:,.0f}/s",
                           f"{best_enqueue[0]} {best_enqueue[1]['enqueue_per_s']:,.0f}/s",
                           f"{ratios['enqueue_vs_best_peer']:.2f}x", ">= 10,000/s and >= 2x")
            checks.add_row("steady jobs/s", f"{d['steady_per_s']:,.0f}/s",
                           f"{best_steady[0]} {best_steady[1]['steady_per_s']:,.0f}/s",
                           f"{ratios['steady_vs_best_peer']:.2f}x", ">= 2x")
        if "awaited_enqueue_ms" in d:
            ratios["awaited_enqueue_vs_raw_ray"] = d["awaited_enqueue_vs_raw_ray"]
            checks.add_row("single enqueue, awaited", f"{d['awaited_enqueue_ms']:.2f} ms",
                           f"raw Ray async actor insert {d['raw_ray_insert_ms']:.2f} ms",
                           f"{d['awaited_enqueue_vs_raw_ray']:.2f}x", "<= 1.1x")
            checks.add_row("enqueue_many (1,000 per call)", f"{d['enqueue_many_per_s']:,.0f}/s",
                           "", "", "(reported)")
            checks.add_row("Worker.start() to first job done",
                           f"{d['start_to_first_job_ms']:.0f} ms", "", "", "<= 100 ms")
        if d.get("idle_latency_p50_ms") is not None:
            checks.add_row("idle enqueue to result recorded, p50",
                           f"{d['idle_latency_p50_ms']:.1f} ms", "", "", "(reported)")
        if d.get("wait_p50_ms") is not None:
            checks.add_row("idle enqueue + wait, result in hand, p50 / p99",
                           f"{d['wait_p50_ms']:.1f} / {d['wait_p99_ms']:.1f} ms", "", "",
                           "<= 3 ms / <= 10 ms")
        if normal is not None and full is not None:
            for key, what in (("enqueue_per_s", "single enqueue/s"),
                              ("steady_per_s", "steady jobs/s")):
                ratios[f"durable_{key}_full_vs_normal"] = full[key] / normal[key]
                checks.add_row(f"{what}, durable commits (full) vs normal",
                               f"{full[key]:,.0f}/s", f"normal {normal[key]:,.0f}/s",
                               f"{full[key] / normal[key]:.2f}x", "(the cost of durability)")
        local = results.get("dotdo-in-process")
        if local is not None:
            for key, what in (("enqueue_per_s", "single enqueue/s"),
                              ("steady_per_s", "steady jobs/s")):
                ratios[f"in_process_{key}_vs_ray"] = local[key] / d[key]
                checks.add_row(f"{what}, in process vs on Ray", f"{local[key]:,.0f}/s",
                               f"on Ray {d[key]:,.0f}/s", f"{local[key] / d[key]:.2f}x", ">= 1x")
        console.print(checks)
    # A run of some systems only does not replace the full run's file
    name = "queue_throughput" if args.only == everyone and not args.no_kill else \
        f"queue_throughput.{'+'.join(wanted)}{'.no-kill' if args.no_kill else ''}"
    write_results(name, console, jobs=n, results=results, skipped=skipped,
                  ratios=ratios)


if __name__ == "__main__":
    main()
