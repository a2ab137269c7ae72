"""Huey as it is, with its SQLite storage and with Redis: one task each."""

import os

from huey import RedisHuey, SqliteHuey

from benchmarks.peers.record import record

sqlite_huey = SqliteHuey("bench", filename=os.environ.get("BENCH_HUEY_DB", "/tmp/bench-huey.db"))
redis_huey = RedisHuey("bench", url=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/1"))


@sqlite_huey.task(name="noop")
def noop(job_id):
    record(job_id)


@redis_huey.task(name="noop")
def noop_redis(job_id):
    record(job_id)
