"""dotdo's job for the queue benchmark: the same body as every peer's (one blocking
call to Redis, recording the job's completion), in a plain sync handler."""

import dotdo
from benchmarks.peers.record import record


@dotdo.job("work")
def work(payload):
    record(payload)
