"""Fixtures of the operations tests: queues with a worker, in this process."""

import pytest


@pytest.fixture
def start_worker(make_local):
    """``start_worker(queue_id)``: an in-process worker (``<queue_id>-w1``) working the
    queue, with quick retries; every worker started is stopped at the end."""
    started = []

    def start(queue_id: str, concurrency: int = 2):
        worker = make_local("Worker", f"{queue_id}-w1")
        worker.start(queue_id, concurrency=concurrency, backoff=0.01).result()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(drain=False).result()
