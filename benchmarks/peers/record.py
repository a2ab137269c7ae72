"""The durable record of completion every peer's job writes (Redis, append-only)."""

import os
import time

import redis

_client = None


def client():
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client


def record(job_id: str) -> None:
    pipe = client().pipeline(transaction=False)
    pipe.hsetnx("bench:done_at", job_id, time.time())
    pipe.hincrby("bench:count", job_id, 1)
    pipe.execute()
