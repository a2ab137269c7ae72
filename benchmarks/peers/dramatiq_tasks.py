"""Dramatiq with its Redis broker (acks after the actor returns)."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.peers.record import record

broker = RedisBroker(url=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/1"),
                     heartbeat_timeout=10_000, dead_message_ttl=3_600_000)
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def noop(job_id):
    record(job_id)
