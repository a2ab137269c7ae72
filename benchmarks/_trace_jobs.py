"""The job of ``benchmarks/tracing_cost.py``: a sync no-op, so that what its end to end
run measures is the queue's path (and, traced, its spans), not a job's work."""

import dotdo


@dotdo.job("trace-noop")
def noop(payload):
    """Do nothing (quick sync handlers run on the worker's loop)."""
    return None
