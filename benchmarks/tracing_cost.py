"""What OpenTelemetry tracing costs the queue: off, on and sampled, side by side in one run.

    python benchmarks/tracing_cost.py [--jobs 5000] [--rounds 5] [--processes 4] [--quick]

A cluster is started with ``ray start --head`` (its own temp dir and port, stopped at
the end without touching any other Ray on the machine), and an OTLP/HTTP receiver is
run by this script (``http.server`` on 127.0.0.1: it answers 200 to
``POST /v1/traces``, counts requests and bytes, and keeps the bodies, decoded only
after the timed runs). Each mode has a namespace of its own, whose hosts a driver of
that mode started (a setup step per mode, in that mode's environment, creates the
queues and starts two workers, concurrency 16 each): ``off`` has no ``OTEL_*``
variable; ``on`` sets ``OTEL_EXPORTER_OTLP_ENDPOINT`` to the receiver (dotdo's and the
SDK's defaults otherwise: a batch span processor, 5 s delay, a queue of 32,768 spans,
batches of 2,048); ``sampled`` is ``on`` with ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``
and ``OTEL_TRACES_SAMPLER_ARG=0.01``: 1% of the traces a driver starts are recorded,
the other calls and jobs carry a context marked not sampled, and the hosts, sampling
by their parent, record nothing for them. Each traced mode also sets
``OTEL_RESOURCE_ATTRIBUTES=benchmark.mode=<mode>`` (every span says which mode made
it; the resource is sent once per export).

Measured as a user would, in fresh processes whose first round counts, alternating
the modes process by process (off, on, sampled, off, on, sampled, ...),
``--processes`` per mode and measure, ``--rounds`` rounds in each:

  * ``enqueue``: ``--jobs`` single ``Queue.enqueue`` calls issued without waiting,
    then gathered (as ``first_round.py``), into a queue no worker serves;
  * ``end to end``: ``--jobs`` jobs of a sync no-op handler
    (``benchmarks/_trace_jobs.py``) enqueued with ``enqueue_many`` in batches of
    1,000, issued together, then ``Queue.wait`` on the last and ``get_metrics``
    until the two workers completed them all: jobs per second (the completed jobs
    are purged after each round, untimed).

With each round: the driver's CPU, and the hosts' (the queue, and for end to end the
two workers too: ``/proc/<pid>/stat`` of the pids their ``stats`` give), per job. The
rounds of ``off`` among themselves are the noise band: the tables say whether ``on``
and ``sampled`` fall inside it, for the rate and for the hosts' CPU per job (steadier
on a shared machine). Also: each tracing function's own CPU per call, off (in this
process), on and sampled (in fresh processes exporting to the receiver); the spans
received, by mode, process and name, per job; whether the sampled hosts sample (their
spans against on's, the traces recorded against the calls made) and whether each
recorded trace is whole (every span's parent arrived, every client span has its
server span); and whether idle hosts (workers polling, queue timers) export anything.

Results: ``benchmarks/results/tracing_cost.json`` (``--quick``: ``tracing_cost.quick.json``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.server
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks._results import write_results  # noqa: E402
from benchmarks.queue_throughput import _free_port  # noqa: E402

console = Console()
MODES = ("off", "on", "sampled")
TRACED = ("on", "sampled")
# The standard switches of 1% sampling, by trace, decided where a trace starts.
SAMPLER = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
SAMPLED_RATIO = float(SAMPLER["OTEL_TRACES_SAMPLER_ARG"])
MEASURES = ("enqueue", "e2e")
TITLES = {"enqueue": "single enqueue, issued then gathered", "e2e": "end to end, 2 workers x 16"}
QUEUES = {"enqueue": "tc-enqueue", "e2e": "tc-e2e"}
JOB_TYPE = "trace-noop"  # benchmarks/_trace_jobs.py
WORKERS, CONCURRENCY, BATCH = 2, 16, 1000
# Every switch a program could inherit from this shell: the script sets them per mode.
_SWITCHES = ("OTEL_", "DOTDO_TRACING")


# -- the OTLP/HTTP receiver ---------------------------------------------------------------


class Receiver:
    """An OTLP/HTTP endpoint on 127.0.0.1: 200 to every ``POST /v1/traces``; counts
    requests, bytes and its own CPU, and appends each body to a file (decoded later,
    so that decoding takes no CPU from the timed runs)."""

    def __init__(self, path: str) -> None:
        self.path, self.lock = path, threading.Lock()
        self.requests = self.bytes = 0
        self.cpu_s = 0.0
        self.last_at = time.monotonic()
        self.file = open(path, "ab")  # open for the receiver's life
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a collector: one connection per exporter

            def do_POST(self) -> None:  # http.server's name for it
                began = time.thread_time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = self.path == "/v1/traces"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse
                self.end_headers()
                if ok:
                    receiver.add(body, time.thread_time() - began)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, body: bytes, cpu_s: float) -> None:
        with self.lock:
            self.file.write(struct.pack("<I", len(body)) + body)
            self.requests += 1
            self.bytes += len(body)
            self.cpu_s += cpu_s
            self.last_at = time.monotonic()

    def snapshot(self) -> dict:
        with self.lock:
            return {"requests": self.requests, "bytes": self.bytes, "receiver_cpu_s": self.cpu_s}

    def quiet(self, for_s: float, at_most_s: float) -> float:
        """Wait until nothing came for ``for_s`` (the exporters' 5 s delay has passed
        since their last span), at most ``at_most_s``; returns the seconds waited."""
        began = time.monotonic()
        while time.monotonic() - began < at_most_s and time.monotonic() - self.last_at < for_s:
            time.sleep(0.2)
        return time.monotonic() - began

    def bodies(self, start: int = 0) -> list[bytes]:
        """The bodies received, from the ``start``-th on."""
        with self.lock:
            self.file.flush()
        out = []
        with open(self.path, "rb") as f:
            while head := f.read(4):
                out.append(f.read(struct.unpack("<I", head)[0]))
        return out[start:]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.file.close()


def spans_in(bodies: list[bytes]) -> tuple[list[dict], dict]:
    """Spans counted by (mode, process, name, kind, object), from OTLP request bodies;
    and, per mode, whether its traces are whole: the traces by their root span's name,
    the spans whose parent never arrived, the client spans with no server span."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    kinds = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
             5: "consumer"}
    counts: dict[tuple[str, str, str, str, str], int] = {}
    # Per mode: every span id, each span's parent, the client spans, the server spans'
    # parents, the roots by name (span ids are random 64 bits: one set per mode).
    ids: dict[str, set[bytes]] = {}
    parents: dict[str, list[bytes]] = {}
    clients: dict[str, set[bytes]] = {}
    served: dict[str, set[bytes]] = {}
    roots: dict[str, dict[str, int]] = {}
    for body in bodies:
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            who = attrs.get("dotdo.host") or "driver"
            # The micro processes' spans (no Ray, no server for a client span) apart.
            mode = attrs.get("benchmark.mode", "?") + (" micro" if "benchmark.micro" in attrs else "")
            mode_ids, mode_parents = ids.setdefault(mode, set()), parents.setdefault(mode, [])
            mode_clients, mode_served = clients.setdefault(mode, set()), served.setdefault(mode, set())
            mode_roots = roots.setdefault(mode, {})
            for ss in rs.scope_spans:
                for span in ss.spans:
                    about = next((a.value.string_value for a in span.attributes if a.key in (
                        "dotdo.object.id", "messaging.destination.name")), "")
                    kind = kinds.get(span.kind, str(span.kind))
                    key = (mode, who, span.name, kind, about)
                    counts[key] = counts.get(key, 0) + 1
                    mode_ids.add(span.span_id)
                    if span.parent_span_id:
                        mode_parents.append(span.parent_span_id)
                        if kind == "server":
                            mode_served.add(span.parent_span_id)
                    else:
                        mode_roots[span.name] = mode_roots.get(span.name, 0) + 1
                    if kind == "client":
                        mode_clients.add(span.span_id)
    rows = [{"mode": k[0], "process": k[1], "name": k[2], "kind": k[3], "object": k[4],
             "spans": n} for k, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    whole = {mode: {"spans": len(ids[mode]),
                    "traces_by_root": dict(sorted(roots[mode].items(), key=lambda kv: -kv[1])),
                    "orphans": sum(1 for p in parents[mode] if p not in ids[mode]),
                    "clients_without_server": len(clients[mode] - served[mode])}
             for mode in ids}
    return rows, whole


# -- the fresh processes -----------------------------------------------------------------


def _cpu(pids: list[int]) -> float:
    """Seconds of CPU (user + system, all threads) the processes ``pids`` used so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _joined(mode: str, conf: dict):
    """``dotdo``, joined to the cluster in ``mode``'s namespace, its tracing checked."""
    import dotdo
    from dotdo import tracing

    dotdo.init(address=conf["address"], storage=conf["storage"], namespace=conf["namespaces"][mode])
    if tracing.enabled() != (mode in TRACED):
        raise RuntimeError(f"tracing is {'on' if tracing.enabled() else 'off'} in a process of "
                           f"mode {mode!r}: check the OTEL_* variables of this shell")
    return dotdo


def setup(mode: str, conf: dict) -> dict:
    """What a program of ``mode`` run before made: both queues (their hosts up), two
    workers serving the end to end one (a job run on each mode's workers); returns the
    hosts' pids."""
    from benchmarks import _trace_jobs  # noqa: F401 - its handler: the workers import it via the App

    dotdo = _joined(mode, conf)
    from dotdo import client, tracing

    def pid(stub) -> int:
        return dotdo.get(client.actor_handle(stub).stats.remote())["pid"]

    idle = dotdo.Queue(QUEUES["enqueue"])
    idle.get_metrics().result()
    queue = dotdo.Queue(QUEUES["e2e"])
    workers = [dotdo.Worker(f"tc-worker-{i}") for i in range(WORKERS)]
    dotdo.get([w.start(queue.id, concurrency=CONCURRENCY) for w in workers])
    dotdo.get([queue.enqueue(JOB_TYPE, i, job_id=f"warm-up-{i}") for i in range(2 * CONCURRENCY)])
    dotdo.get([queue.wait(f"warm-up-{i}", timeout=conf["timeout"]) for i in range(2 * CONCURRENCY)])
    queue.purge().result()
    out = {"enqueue": [pid(idle)], "e2e": [pid(queue), *(pid(w) for w in workers)],
           "app": pid(dotdo.App(dotdo.DEFAULT_APP))}
    tracing.flush()
    return out


def child(mode: str, measure: str, jobs: int, rounds: int, conf: dict) -> dict:
    """One fresh process of ``mode``: ``rounds`` rounds of ``measure``, each timed with
    the driver's and the hosts' CPU."""
    began = time.perf_counter()
    dotdo = _joined(mode, conf)
    from dotdo import tracing

    queue = dotdo.Queue(QUEUES[measure])
    pids = conf["pids"][mode][measure]
    ready = time.perf_counter() - began
    out: list[dict] = []
    for r in range(rounds):
        ids = [f"{mode}-{os.getpid()}-{r}-{i}" for i in range(jobs)]
        if measure == "e2e":
            metrics = queue.get_metrics().result()
            target = metrics.completed + metrics.failed + jobs
        host, t, c = _cpu(pids), time.perf_counter(), time.process_time()
        if measure == "enqueue":
            dotdo.get([queue.enqueue(JOB_TYPE, i, job_id=i) for i in ids])
        else:
            dotdo.get([queue.enqueue_many([{"type": JOB_TYPE, "payload": i, "job_id": i}
                                           for i in ids[s:s + BATCH]])
                       for s in range(0, jobs, BATCH)])
            enqueued = time.perf_counter() - t
            queue.wait(ids[-1], timeout=conf["timeout"]).result()
            deadline = time.monotonic() + conf["timeout"]
            while (m := queue.get_metrics().result()).completed + m.failed < target:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{target - m.completed - m.failed} jobs not done after "
                                       f"{conf['timeout']} s: are the workers of {mode!r} up?")
                time.sleep(0.01)
        wall = time.perf_counter() - t
        out.append({"s": wall, "driver_cpu_s": time.process_time() - c,
                    "host_cpu_s": _cpu(pids) - host,
                    **({"enqueue_s": enqueued} if measure == "e2e" else {})})
        if measure == "e2e":
            # Untimed: every round finds the files as small, and retention (10,000
            # completed jobs kept) never deletes jobs the count above waits for.
            queue.purge().result()
    t = time.perf_counter()
    tracing.flush(30.0)
    return {"ready_s": ready, "rounds": out, "flush_s": time.perf_counter() - t}


def micro(n: int) -> dict:
    """Each tracing function dotdo calls per call or job, microseconds per call, in
    this process as it is (off, or on: then also the export's cost per span; sampled:
    the spans that start a trace are sampled as the sampler says, the others get the
    context of a trace not sampled, as 99% of calls and jobs do)."""
    from dotdo import tracing

    def client() -> None:
        span, _ = tracing.client_span("Queue", "enqueue", "tc-micro")
        tracing.end_call(span)

    carrier = None
    if tracing.enabled():
        sampling = bool(os.environ.get("OTEL_TRACES_SAMPLER"))
        for _ in range(1000):  # the W3C flags end the traceparent: -01 sampled, -00 not
            span, carrier = tracing.client_span("Queue", "enqueue", "tc-micro")
            tracing.end_call(span)
            if not sampling or (carrier or "").endswith("-00"):
                break

    def server() -> None:
        with tracing.server_span(carrier, "Queue", "enqueue", "tc-micro"):
            pass

    def consumer() -> None:
        with tracing.consumer(carrier, "tc-micro", "j", JOB_TYPE, 1, 1, "w") as span:
            tracing.outcome(span, "completed")

    calls = {"client span (the driver, per call)": client,
             "server span (the host, per traced call)": server,
             "producer span (the queue, per job enqueued)":
                 lambda: tracing.producer("tc-micro", "j", JOB_TYPE),
             "consumer span + outcome (the worker, per attempt)": consumer}
    out: dict[str, dict] = {}
    # CPU of this thread, not wall time: on a shared machine the wall is others' too.
    clock = time.thread_time
    for label, fn in calls.items():
        tracing.flush()
        made = export = 0.0
        c = time.process_time()
        # In chunks of 500, under the span processor's batch (2,048, at which its own
        # thread would export them; its queue holds 32,768): flush() exports them in
        # this thread.
        for _ in range(max(n // 500, 1)):
            made += timeit.timeit(fn, number=500, timer=clock)
            t = clock()
            tracing.flush()
            export += clock() - t
        count = max(n // 500, 1) * 500
        out[label] = {"us_per_call": made / count * 1e6,
                      "export_us_per_span": export / count * 1e6 if tracing.enabled() else 0.0,
                      "process_cpu_us_per_call": (time.process_time() - c) / count * 1e6}
    return out


def _env(mode: str, conf: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SWITCHES)}
    env.update(PYTHONPATH=str(ROOT), RAY_AUTH_MODE=conf["auth"], RAY_USAGE_STATS_ENABLED="0")
    if mode in TRACED:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = conf["endpoint"]
        env["OTEL_RESOURCE_ATTRIBUTES"] = f"benchmark.mode={mode}"
    if mode == "sampled":
        env.update(SAMPLER)
    return env


def _fresh(mode: str, argv: list[str], conf: dict, timeout: float = 900) -> dict:
    """Run this script with ``argv`` in a fresh process of ``mode``; its last line's JSON."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, *argv, "--conf", json.dumps(conf)],
                          env=_env(mode, conf), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if os.environ.get("BENCH_CHILD_LOG"):
        with open(os.environ["BENCH_CHILD_LOG"], "a") as log:
            log.write(f"--- {mode} {argv}\n{done.stderr}")
    if done.returncode != 0:
        raise RuntimeError(f"{mode} {argv[:2]} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - started
    out["stderr_warnings"] = [line for line in done.stderr.splitlines()
                              if "WARNING" in line or "dropping" in line.lower()][:5]
    return out


# -- figures ------------------------------------------------------------------------------


def _summary(runs: list[dict], jobs: int, per_host: int) -> dict:
    """The figures of one mode's runs of one measure (rates in jobs/s)."""
    firsts = [jobs / run["rounds"][0]["s"] for run in runs]
    every = [jobs / r["s"] for run in runs for r in run["rounds"]]
    rounds = [r for run in runs for r in run["rounds"]]
    return {
        "first_round_median_per_s": statistics.median(firsts),
        "first_round_worst_per_s": min(firsts),
        "rounds_median_per_s": statistics.median(every),
        "rounds_worst_per_s": min(every),
        "rounds_best_per_s": max(every),
        "rounds_per_s": every,
        # Within each process: its slowest round against its median round (a stall).
        "slowest_over_median_worst": max(max(r["s"] for r in run["rounds"])
                                         / statistics.median(r["s"] for r in run["rounds"])
                                         for run in runs),
        "driver_cpu_us_per_job": statistics.median(r["driver_cpu_s"] for r in rounds) / jobs * 1e6,
        "host_cpu_us_per_job": statistics.median(r["host_cpu_s"] for r in rounds) / jobs * 1e6,
        "host_cpu_us_per_round": [r["host_cpu_s"] / jobs * 1e6 for r in rounds],
        "hosts_measured": per_host,
        "ready_s_median": statistics.median(run["ready_s"] for run in runs),
        "process_s_median": statistics.median(run["process_s"] for run in runs),
        "flush_s_median": statistics.median(run["flush_s"] for run in runs),
    }


def _noise(off: dict, traced: dict) -> dict:
    """The off rounds' spread (the noise band) against a traced mode's rounds."""
    band = (off["rounds_worst_per_s"], off["rounds_best_per_s"])
    spread = (traced["rounds_worst_per_s"], traced["rounds_best_per_s"])
    off_cpu, cpu = off["host_cpu_us_per_round"], traced["host_cpu_us_per_round"]
    return {
        "off_band_per_s": band,
        "off_band_vs_median": (band[0] / off["rounds_median_per_s"],
                               band[1] / off["rounds_median_per_s"]),
        "range_per_s": spread,
        "ranges_overlap": spread[1] >= band[0] and spread[0] <= band[1],
        "median_inside_off_band": band[0] <= traced["rounds_median_per_s"] <= band[1],
        "over_off_median": traced["rounds_median_per_s"] / off["rounds_median_per_s"],
        "over_off_first_round": traced["first_round_median_per_s"] / off["first_round_median_per_s"],
        "over_off_worst": traced["rounds_worst_per_s"] / off["rounds_worst_per_s"],
        # CPU per job is steadier than the rate on a loaded machine: its band too.
        "off_host_cpu_band_us": (min(off_cpu), max(off_cpu)),
        "host_cpu_range_us": (min(cpu), max(cpu)),
        "host_cpu_ranges_overlap": min(cpu) <= max(off_cpu) and max(cpu) >= min(off_cpu),
        "driver_cpu_over_off": traced["driver_cpu_us_per_job"] / max(off["driver_cpu_us_per_job"], 1e-9),
        "host_cpu_over_off": traced["host_cpu_us_per_job"] / max(off["host_cpu_us_per_job"], 1e-9),
    }


def _tables(results: dict, noise: dict, jobs: int, args: argparse.Namespace) -> None:
    rows = (("first round, median", "first_round_median_per_s", "{:,.0f}/s"),
            ("first round, worst", "first_round_worst_per_s", "{:,.0f}/s"),
            ("all rounds, median", "rounds_median_per_s", "{:,.0f}/s"),
            ("all rounds, worst", "rounds_worst_per_s", "{:,.0f}/s"),
            ("slowest round / median, worst process", "slowest_over_median_worst", "{:.2f}x"),
            ("driver CPU per job", "driver_cpu_us_per_job", "{:,.0f} us"),
            ("hosts' CPU per job", "host_cpu_us_per_job", "{:,.0f} us"),
            ("import + dotdo.init", "ready_s_median", "{:.2f} s"),
            ("tracing.flush() at the end", "flush_s_median", "{:.3f} s"),
            ("the whole process", "process_s_median", "{:.1f} s"))
    for measure in MEASURES:
        r = results[measure]
        hosts = "the queue" if measure == "enqueue" else "the queue + 2 workers"
        table = Table(title=f"{TITLES[measure]}: {jobs:,} jobs a round, {args.processes} fresh "
                            f"processes x {args.rounds} rounds per mode; hosts: {hosts}")
        for col in ("", *MODES, *(f"{mode} / off" for mode in TRACED)):
            table.add_column(col, justify="right")
        for label, key, form in rows:
            off = r["off"][key]
            table.add_row(label, *(form.format(r[mode][key]) for mode in MODES),
                          *(f"{r[mode][key] / off:.2f}x" if off > 0.01 else "" for mode in TRACED))
        console.print(table)
        for mode in TRACED:
            d = noise[measure][mode]
            lo, hi = d["off_band_per_s"]
            console.print(
                f"  {mode}: noise band (the off rounds) {lo:,.0f}-{hi:,.0f}/s "
                f"({d['off_band_vs_median'][0]:.2f}x-{d['off_band_vs_median'][1]:.2f}x their "
                f"median); {mode} rounds {d['range_per_s'][0]:,.0f}-{d['range_per_s'][1]:,.0f}/s: "
                f"{'overlap' if d['ranges_overlap'] else 'no overlap'}, {mode}'s median "
                f"{'inside' if d['median_inside_off_band'] else 'outside'} the band", highlight=False)
            lo, hi = d["off_host_cpu_band_us"]
            console.print(
                f"  {mode}: hosts' CPU per job, off rounds {lo:,.0f}-{hi:,.0f} us, {mode} rounds "
                f"{d['host_cpu_range_us'][0]:,.0f}-{d['host_cpu_range_us'][1]:,.0f} us: "
                f"{'overlap' if d['host_cpu_ranges_overlap'] else 'no overlap'}", highlight=False)


# -- the run ------------------------------------------------------------------------------


def _cluster(tmp: str) -> tuple[subprocess.Popen, str, str]:
    """A cluster as ``first_round``'s (``ray start --head``, its own port and temp dir),
    up once ``ray start`` recorded its address; its output in ``<tmp>/ray-start-N.log``.
    Again on another port if it fails (its GCS may lose the race for its port), up to 3
    times; on a loaded machine starting takes tens of seconds."""
    import ray

    for attempt in range(3):
        port = _free_port()
        temp_dir = os.path.join(tmp, f"ray-{attempt}")
        log_path = os.path.join(tmp, f"ray-start-{attempt}.log")
        with open(log_path, "w") as log:
            head = subprocess.Popen(
                [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                 f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
                 "--num-cpus=2", "--disable-usage-stats"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        recorded = ray._private.utils.get_ray_address_file(temp_dir)
        deadline = time.monotonic() + 180
        while head.poll() is None and time.monotonic() < deadline and not os.path.exists(recorded):
            time.sleep(0.2)
        if head.poll() is None and os.path.exists(recorded):
            # Token authentication is on by default: a driver given an address presents it.
            auth = "token" if os.path.exists(os.path.expanduser("~/.ray/auth_token")) \
                else os.environ.get("RAY_AUTH_MODE", "disabled")
            return head, f"127.0.0.1:{port}", auth
        _stop_cluster(head)
        with open(log_path) as log:
            said = [line.strip() for line in log if line.strip()][-3:]
        console.print(f"ray start --head on port {port} failed ({' / '.join(said)[-300:]}); "
                      "again on another port", highlight=False)
    raise RuntimeError("ray start --head failed 3 times: its output and logs are in the temp "
                       "dir when run with --keep")


def _stop_cluster(head: subprocess.Popen) -> None:
    """End the cluster: ``ray start``'s process group (its GCS, raylet, workers), nothing
    else; SIGKILL after 5 s (its files go with the temp dir)."""
    import signal

    try:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _measure(args: argparse.Namespace, tmp: str, receiver: Receiver) -> dict:
    """The cluster, the setups and every timed process; what they measured."""
    from dotdo import tracing

    micro_n = 2000 if args.quick else 20000
    assert not tracing.enabled(), "this process runs off: its children set their own switches"
    got: dict = {"micro": {"off": micro(micro_n)}, "seen": {}, "phases_s": {}}
    began = time.perf_counter()
    head, address, auth = _cluster(tmp)
    got["phases_s"]["cluster"] = time.perf_counter() - began
    conf = {"address": address, "auth": auth, "storage": os.path.join(tmp, "store"),
            "endpoint": receiver.endpoint, "timeout": args.timeout,
            "namespaces": {mode: f"tracing-{mode}" for mode in MODES}, "pids": {}}
    runs: dict[str, dict[str, list[dict]]] = {m: {mode: [] for mode in MODES} for m in MEASURES}
    try:
        t = time.perf_counter()
        for mode in TRACED:
            done = _fresh(mode, ["--micro", str(micro_n)], conf)
            got["micro"][mode] = {k: v for k, v in done.items()
                                  if k not in ("process_s", "stderr_warnings")}
        got["seen"]["micro"] = receiver.snapshot()
        console.print(f"setting up the {len(MODES)} modes at once: each its queues and {WORKERS} workers, "
                      f"in namespaces {', '.join(conf['namespaces'].values())}", highlight=False)
        with concurrent.futures.ThreadPoolExecutor(len(MODES)) as pool:
            made = {mode: pool.submit(_fresh, mode, ["--setup", mode], conf, 300) for mode in MODES}
            conf["pids"] = {mode: done.result() for mode, done in made.items()}
        got["seen"]["setup"] = receiver.snapshot()
        got["phases_s"]["setup"] = time.perf_counter() - t
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("runs", total=len(MEASURES) * args.processes * len(MODES))
            for measure in MEASURES:
                t = time.perf_counter()
                for p in range(args.processes):
                    for mode in MODES:  # alternating: machine noise hits every mode alike
                        progress.update(task, description=f"{measure}, {mode}, process "
                                                          f"{p + 1}/{args.processes}")
                        out = _fresh(mode, ["--child", mode, measure, "--jobs", str(args.jobs),
                                            "--rounds", str(args.rounds)], conf)
                        runs[measure][mode].append(out)
                        rates = ", ".join(f"{args.jobs / r['s']:,.0f}" for r in out["rounds"])
                        progress.console.print(
                            f"  {measure:>7} {mode:>7} #{p + 1}: {rates} /s (init "
                            f"{out['ready_s']:.2f} s, process {out['process_s']:.1f} s)",
                            highlight=False)
                        for line in out["stderr_warnings"]:
                            progress.console.print(f"    {mode} process said: {line[:200]}",
                                                   highlight=False)
                        progress.advance(task)
                got["seen"][measure] = receiver.snapshot()
                got["phases_s"][measure] = time.perf_counter() - t
        # Spans still in the hosts' processors (5 s delay) arrive before the count.
        t = time.perf_counter()
        receiver.quiet(6.0, 30.0)
        # Idle: the hosts' own loops (claims, heartbeats, timers) should export nothing.
        # Spans made in the window are exported within 5 s of it: counted too.
        idle_from = len(receiver.bodies())
        idle_s = 0.0 if args.quick else 15.0  # a smoke run skips it
        if idle_s:
            console.print(f"the hosts idle for {idle_s:.0f} s (+5 s): do they export spans?")
            time.sleep(idle_s + 5.5)
        got["idle"] = {"seconds": idle_s, "spans": spans_in(receiver.bodies(idle_from))[0]}
        got["seen"]["idle"] = receiver.snapshot()
        got["phases_s"]["spans settled, idle"] = time.perf_counter() - t
    finally:
        _stop_cluster(head)
    got["runs"] = runs
    got["total_s"] = time.perf_counter() - began
    return got


def _of(row: dict) -> str | None:
    """The measure a span row belongs to: the one whose queue it names, if any."""
    return next((m for m in MEASURES if QUEUES[m] in (row["object"], row["process"].split("/")[-1])
                 or row["name"].startswith(QUEUES[m] + " ")), None)


def _sampling(spans: list[dict], whole: dict, jobs: int) -> dict:
    """Whether ``sampled``'s processes sample: per measure and process, its spans
    against on's (1% expected: on's workload, 1% of its traces); the traces each mode
    recorded, by root span, against on's (the calls it started); and whether each
    recorded trace is whole."""
    by: dict[str, dict[str, dict[str, int]]] = {m: {} for m in MEASURES}
    for row in spans:
        if row["mode"] in TRACED and (of := _of(row)):
            counts = by[of].setdefault(row["process"].split("/")[0], dict.fromkeys(TRACED, 0))
            counts[row["mode"]] += row["spans"]
    spans_ratio = {m: {who: {**c, "sampled_over_on": c["sampled"] / max(c["on"], 1)}
                       for who, c in by[m].items()} for m in MEASURES}
    for m in MEASURES:
        on, sampled = (sum(c[mode] for c in by[m].values()) for mode in TRACED)
        spans_ratio[m]["all"] = {"on": on, "sampled": sampled, "sampled_over_on": sampled / max(on, 1)}
    on_roots = whole.get("on", {}).get("traces_by_root", {})
    sampled_roots = whole.get("sampled", {}).get("traces_by_root", {})
    traces = {name: {"on": n, "sampled": sampled_roots.get(name, 0),
                     "sampled_over_on": sampled_roots.get(name, 0) / n}
              for name, n in on_roots.items()}
    # The enqueue measure starts a trace per job: the count that says the ratio.
    return {"ratio_asked": SAMPLED_RATIO, "spans": spans_ratio, "traces_by_root": traces,
            "whole": whole, "jobs_per_mode": jobs}


def _report(args: argparse.Namespace, got: dict, spans: list[dict], whole: dict,
            load_before: tuple) -> None:
    """Print the tables and write the results."""
    results: dict[str, dict] = {}
    noise: dict[str, dict] = {}
    for measure in MEASURES:
        hosts = 1 if measure == "enqueue" else 1 + WORKERS
        results[measure] = {mode: {**_summary(got["runs"][measure][mode], args.jobs, hosts),
                                   "runs": got["runs"][measure][mode]} for mode in MODES}
        noise[measure] = {mode: _noise(results[measure]["off"], results[measure][mode])
                          for mode in TRACED}
    _tables(results, noise, args.jobs, args)

    micro_table = Table(title="each tracing function, CPU per call (one process, no Ray; "
                              "sampled: a context not sampled)")
    for col in ("function", "off", "on: making the span", "on: exporting it", "on: the process",
                "sampled: making it", "sampled: the process"):
        micro_table.add_column(col, justify="right")
    for label, off in got["micro"]["off"].items():
        on, sampled = got["micro"]["on"][label], got["micro"]["sampled"][label]
        micro_table.add_row(label, f"{off['us_per_call'] * 1e3:,.0f} ns",
                            f"{on['us_per_call']:.1f} us", f"{on['export_us_per_span']:.1f} us",
                            f"{on['process_cpu_us_per_call']:.1f} us",
                            f"{sampled['us_per_call']:.1f} us",
                            f"{sampled['process_cpu_us_per_call']:.1f} us")
    console.print(micro_table)

    # Spans per job of each measure: the spans naming its queue, over the jobs run in
    # that mode (each mode ran as many).
    mode_jobs = args.jobs * args.rounds * args.processes
    per_job: dict[str, dict[str, dict[str, float]]] = {
        mode: {m: {} for m in MEASURES} for mode in TRACED}
    span_table = Table(title="spans received (the whole run), by mode, process and name")
    for col in ("mode", "process", "span", "kind", "object", "spans", "per job"):
        span_table.add_column(col, justify="right")
    for row in spans:
        of = _of(row)
        share = row["spans"] / mode_jobs if of else None
        if of and share is not None and row["mode"] in per_job:
            key = f"{row['process'].split('/')[0]}: {row['name']} ({row['kind']})"
            per_job[row["mode"]][of][key] = per_job[row["mode"]][of].get(key, 0.0) + share
        span_table.add_row(row["mode"], row["process"], row["name"], row["kind"], row["object"],
                           f"{row['spans']:,}", f"{share:.4f}" if share is not None else "")
    console.print(span_table)
    last = got["seen"]["idle"]
    received = {"requests": last["requests"], "bytes": last["bytes"],
                "spans": sum(r["spans"] for r in spans), "receiver_cpu_s": last["receiver_cpu_s"],
                "spans_by_mode": {mode: sum(r["spans"] for r in spans if r["mode"] == mode)
                                  for mode in TRACED}}
    received["bytes_per_span"] = received["bytes"] / max(received["spans"], 1)
    for measure in MEASURES:
        console.print(f"{TITLES[measure]}: " + ", ".join(
            f"{sum(per_job[mode][measure].values()):.4f} spans per job {mode}" for mode in TRACED),
            highlight=False)
    console.print(f"received {received['spans']:,} spans in {received['requests']:,} requests, "
                  f"{received['bytes'] / 1e6:,.1f} MB ({received['bytes_per_span']:.0f} B a span); "
                  f"the receiver's CPU {received['receiver_cpu_s']:.2f} s", highlight=False)

    sampling = _sampling(spans, whole, mode_jobs)
    for measure in MEASURES:
        said = ", ".join(f"{who} {c['sampled']:,}/{c['on']:,} = {c['sampled_over_on']:.2%}"
                         for who, c in sampling["spans"][measure].items())
        console.print(f"sampled: spans against on's, {TITLES[measure]}: {said}", highlight=False)
    said = ", ".join(f"{name} {c['sampled']:,}/{c['on']:,} = {c['sampled_over_on']:.2%}"
                     for name, c in list(sampling["traces_by_root"].items())[:6])
    console.print(f"sampled: traces recorded against on's, by root span: {said}", highlight=False)
    for mode, w in whole.items():
        console.print(f"{mode}: {w['spans']:,} spans; {w['orphans']:,} whose parent never arrived, "
                      f"{w['clients_without_server']:,} client spans without their server span",
                      highlight=False)
    idle = got["idle"]
    if idle["seconds"]:
        named = ", ".join(f"{r['mode']} {r['process']} {r['name']} x{r['spans']}"
                          for r in idle["spans"][:5])
        console.print(f"idle hosts exported {sum(r['spans'] for r in idle['spans'])} spans in "
                      f"{idle['seconds']:.0f} s{': ' + named if named else ''}", highlight=False)
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in got["phases_s"].items())
    console.print(f"the whole run: {got['total_s']:.0f} s ({phases})", highlight=False)
    # A smoke run does not replace the full run's file.
    write_results("tracing_cost.quick" if args.quick else "tracing_cost", console,
                  jobs=args.jobs, rounds=args.rounds, processes=args.processes,
                  quick=args.quick, workers=WORKERS, concurrency=CONCURRENCY, batch=BATCH,
                  sampler=SAMPLER, results=results, noise=noise, micro=got["micro"],
                  spans=spans, spans_per_job=per_job, sampling=sampling, received=received,
                  received_by_phase=got["seen"], idle=idle,
                  loadavg={"before": load_before, "after": os.getloadavg()},
                  total_s=got["total_s"], phases_s=got["phases_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds in each process")
    parser.add_argument("--processes", type=int, default=4,
                        help="fresh processes per mode and measure")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1,000 jobs, 1 process per mode and measure, 2 rounds")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds a round may wait for its jobs")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (the cluster's logs, the files, the spans)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "MEASURE"), help=argparse.SUPPRESS)
    parser.add_argument("--setup", metavar="MODE", help=argparse.SUPPRESS)
    parser.add_argument("--micro", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--conf", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.processes, args.rounds = 1000, 1, 2
    if args.child or args.setup or args.micro:
        conf = json.loads(args.conf)
        if args.child:
            mode, measure = args.child
            out = child(mode, measure, args.jobs, args.rounds, conf)
        elif args.setup:
            out = setup(args.setup, conf)
        else:
            from dotdo import tracing

            os.environ["OTEL_RESOURCE_ATTRIBUTES"] += ",benchmark.micro=1"  # its spans apart
            tracing.setup(tracing.switches(True))
            out = micro(args.micro)
        print(json.dumps(out))
        return

    inherited = sorted(k for k in os.environ if k.startswith(_SWITCHES))
    for key in inherited:  # this process and the cluster: each mode sets its own
        del os.environ[key]
    if inherited:
        console.print(f"ignoring {', '.join(inherited)} of this shell: each mode sets its own")
    # The cluster's workers inherit it from `ray start`: the App imports the handler module.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="dotdo-tracing-cost-")
    receiver = Receiver(os.path.join(tmp, "otlp.bin"))
    try:
        got = _measure(args, tmp, receiver)
        spans, whole = spans_in(receiver.bodies())
    finally:
        receiver.close()
        if args.keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    _report(args, got, spans, whole, load_before)


if __name__ == "__main__":
    main()
