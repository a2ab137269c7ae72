"""Celery with Redis, configured as a crash-safe Celery is: acks_late and
task_reject_on_worker_lost, so a killed worker's task is delivered again, one task
prefetched per process, and a short visibility timeout."""

import os

from celery import Celery

from benchmarks.peers.record import record

app = Celery("bench", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/1"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_transport_options={"visibility_timeout": 10},
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(job_id):
    record(job_id)
