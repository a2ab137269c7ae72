"""A traced program (OpenTelemetry over OTLP/HTTP, from the standard ``OTEL_*``
variables) joining the test session's Ray: a job that fails once, then is SIGKILLed
with its worker, then completes on a retry; another job; an event. Prints the ids
the test looks for in the spans its receiver got (tests/test_tracing.py).

    python -m tests.tracing_driver <ray address> <storage> <namespace>
"""

from __future__ import annotations

import json
import os
import signal
import sys

import ray

import dotdo
from dotdo import client, tracing
from tests import trace_handlers  # noqa: F401  (registers the job types and the handler)
from tests.conftest import host_pid, wait_for


def main(address: str, storage: str, namespace: str) -> dict:
    dotdo.init(address=address, storage=storage, namespace=namespace)
    assert tracing.enabled(), "the OTEL_* variables turn tracing on"
    queue, witness = dotdo.Queue("traced"), dotdo.Recorder("trace-witness")
    workers = [dotdo.Worker(f"traced-w{i}") for i in (1, 2)]
    dotdo.get([w.start("traced", concurrency=1, backoff=0.05) for w in workers])
    job = queue.enqueue("traced", {"witness": witness.id}, max_retries=3, backoff=0.05).result()
    # Try 2 runs (on one worker, which holds it): the other worker takes the plain job
    (pid,) = wait_for(lambda: witness.notes("running").result(), timeout=120)
    plain = queue.enqueue("plain", None).result()
    plain_pid = dotdo.get(queue.wait(plain["$id"], timeout=120))["output"]
    os.kill(pid, signal.SIGKILL)
    done = dotdo.get(queue.wait(job["$id"], timeout=120))
    # Calls issued together travel in one batch (one Ray task), each with its context
    before = ray.get(client.actor_handle(witness).stats.remote())["batched_calls"]
    dotdo.get([witness.hit("batched") for _ in range(20)])
    batched = ray.get(client.actor_handle(witness).stats.remote())["batched_calls"] - before
    dotdo.send("Trace.sent", {"witness": witness.id})
    wait_for(lambda: witness.notes("handled").result(), timeout=120)
    stored = queue.get(job["$id"]).result()
    pids = {w.id: host_pid(w) for w in workers}
    for w in workers:
        w.stop().result()
    tracing.flush()
    return {"job": job["$id"], "trace_id": stored.get("traceId"), "output": done["output"],
            "killed": pid, "plain": plain["$id"], "plain_pid": plain_pid, "driver": os.getpid(),
            "workers": pids, "batched": batched}


if __name__ == "__main__":
    print("OUTCOME " + json.dumps(main(*sys.argv[1:4])), flush=True)
