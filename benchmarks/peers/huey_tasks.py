"""Huey with its SQLite storage."""

import os

from huey import SqliteHuey

from benchmarks.peers.record import record

huey = SqliteHuey("bench", filename=os.environ.get("BENCH_HUEY_DB", "/tmp/bench-huey.db"))


@huey.task()
def noop(job_id):
    record(job_id)
