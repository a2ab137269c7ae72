"""Fixtures of the queue and worker tests: a queue, workers on it, and a way to tell
when the queue has nothing left to do."""

import pytest

import dotdo
from dotdo import codec


@pytest.fixture
def queue(make_local, unique):
    """A queue in this process: most of its API is logic, not Ray."""
    return make_local("Queue", unique)


@pytest.fixture
def ray_queue(make_object, unique):
    """A queue on Ray, for tests that restart its process or measure it."""
    return make_object("Queue", unique)


def claim(queue, worker, n=1, idle=True):
    """Lease up to ``n`` jobs to ``worker`` now, as a worker's pull loop would; the
    payloads, which the queue hands over encoded, decoded into the jobs as a worker
    does."""
    grants = queue.claim(worker, n, wait=0.0, idle=idle).result()["jobs"]
    for grant in grants:
        grant["job"]["payload"] = codec.decode(grant["payload"])
    return grants


def report(queue, worker, grant, kind, value=None, attempts=1):
    """Report one claimed job's outcome, as a worker would."""
    job = grant["job"]
    if kind == "ok":  # a worker sends the output encoded: the queue never decodes it
        value = codec.encode(value)
    return queue.complete(worker, [[job["$id"], grant["uid"], grant["lease"], kind, value,
                                    attempts]]).result()


def drained(queue):
    m = queue.get_metrics().result()
    idle = (m.pending, m.running, m.stuck, m.delayed, m.retrying, m.waiting) == (0,) * 6
    return idle and m


def _setup(make, unique):
    queue = make("Queue", unique)
    witness = make("Recorder", f"{unique}-witness")

    def start(n: int = 1, concurrency: int = 8, backoff: float = 0.05):
        workers = [make("Worker", f"{unique}-w{i}") for i in range(n)]
        dotdo.get([w.start(unique, concurrency=concurrency, backoff=backoff) for w in workers])
        return workers

    return queue, witness, start


@pytest.fixture
def setup(make_local, unique):
    """A queue, a witness, and a way to start workers on the queue, all in this
    process: what a worker does with jobs is logic."""
    return _setup(make_local, unique)


@pytest.fixture
def ray_setup(make_object, unique):
    """The same on Ray, for what is about processes: kills, restarts, leases of a
    worker whose process is busy, Ray's metrics."""
    return _setup(make_object, unique)


