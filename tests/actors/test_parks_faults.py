"""Durable waits under faults, on Ray: a worker SIGKILLed while its job sleeps, a
queue killed while jobs wait, a job that resumes on another worker. Nothing parked
holds a worker; every finished step is replayed, never run again."""

import os
import signal

import pytest

import dotdo
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests import objects  # noqa: F401
from tests.conftest import host_pid, kill_and_wait, wait_for


def _status(queue, job_id):
    return queue.get(job_id).result()["status"]


@pytest.mark.dedicated_pass("workers have processes of their own in either pass")
def test_a_job_sleeping_when_its_worker_is_killed_resumes_on_another_replaying_its_steps(
        ray_setup, unique):
    queue, witness, start = ray_setup
    first, second = start(2, concurrency=4)
    job_id = queue.enqueue("nap", {"witness": witness.id, "seconds": 2.0}).result()["$id"]
    assert wait_for(lambda: _status(queue, job_id) == "sleeping")
    job = queue.get(job_id).result()
    assert job["worker"] is None and job["waitingFor"] == "sleep#1"  # it holds no worker
    # The worker that ran it so far stops taking jobs, and its process is SIGKILLed
    # while the job sleeps: only the other one can resume the job
    (parked_on,) = witness.notes("parking").result()
    ran_on = first if host_pid(first) == parked_on else second
    other = second if ran_on is first else first
    ran_on.stop().result()
    os.kill(parked_on, signal.SIGKILL)
    assert _status(queue, job_id) == "sleeping"
    assert wait_for(lambda: _status(queue, job_id) == "completed")
    out = queue.result(job_id).result()["output"]
    assert out["before"] == f"before on {parked_on}"  # replayed from the journal
    assert out["after"] == f"after on {host_pid(other)}"
    assert witness.hits(f"run:{job_id}").result() == 2  # parked once, resumed once
    assert witness.hits(f"before:{job_id}").result() == 1  # not run again
    assert witness.hits(f"after:{job_id}").result() == 1


@pytest.mark.dedicated_pass("the queue's process is killed the same way in either pass")
def test_jobs_waiting_for_a_person_survive_their_queue_being_killed(ray_setup, unique):
    queue, witness, start = ray_setup
    start(1, concurrency=4)
    ids = [j["$id"] for j in queue.enqueue_many(
        [{"type": "approve", "payload": {"witness": witness.id}} for _ in range(3)]).result()]
    assert wait_for(lambda: all(_status(queue, i) == "waiting" for i in ids))
    assert wait_for(lambda: len(witness.notes("tokens").result()) == 3)
    kill_and_wait(queue, "ray.kill")
    assert [_status(queue, i) for i in ids] == ["waiting"] * 3  # still there, holding nothing
    tokens = witness.notes("tokens").result()
    dotdo.get([dotdo.resolve(t, n) for n, t in enumerate(tokens)])
    assert wait_for(lambda: all(_status(queue, i) == "completed" for i in ids))
    outputs = sorted(queue.result(i).result()["output"] for i in ids)
    assert outputs == [0, 1, 2]
    assert len(witness.notes("tokens").result()) == 3  # each mail step ran once
