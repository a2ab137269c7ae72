"""``Queue.wait``: a job's result without polling, its failure as ``JobError``, a
timeout, an unknown id, and no future left behind by a waiter that went away."""

import pytest
import ray

import dotdo
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests import objects  # noqa: F401
from tests.conftest import kill_and_wait, wait_for


def _quiet(queue):
    """No wait() call waits on the queue's process any more."""
    waiting = queue.waiters().result()
    return (waiting["calls"], waiting["jobs"]) == (0, 0)


# -- on Ray -----------------------------------------------------------------------------


def test_wait_answers_a_completed_job_with_its_result_and_a_failed_one_with_its_error(
        ray_setup):
    queue, _, start = ray_setup
    # Given waits sent before any worker runs the jobs
    ok = queue.enqueue("echo", 7, job_id="ok").result()["$id"]
    bad = queue.enqueue("doomed", None, job_id="bad", max_retries=1).result()["$id"]
    waits = [queue.wait(ok, timeout=120), queue.wait(bad, timeout=120)]
    wait_for(lambda: queue.waiters().result()["calls"] == 2)
    # When a worker runs them
    start(1, backoff=0.01)
    # Then the completed one answers with its Result, as result() gives it
    result = waits[0].result()
    assert result == queue.result(ok).result()
    assert (result["$type"], result["jobId"], result["output"]) == ("Result", ok, {"echo": 7})
    # And the failed one, after its retry, raises JobError with its error
    with pytest.raises(dotdo.JobError, match="ValueError: by design") as failed:
        waits[1].result()
    assert (failed.value.job_id, failed.value.status) == (bad, "failed")
    assert type(failed.value) is dotdo.JobError  # its error names no JobError subclass
    assert queue.get(bad).result()["attempts"] == 2
    # And jobs that ended answer at once, also without time to wait
    assert queue.wait(ok, timeout=0).result() == result
    with pytest.raises(dotdo.JobError, match="by design"):
        queue.wait(bad, timeout=0).result()
    assert _quiet(queue)


def test_many_waiters_on_many_jobs_are_all_answered(ray_setup):
    queue, _, start = ray_setup
    ids = [j["$id"] for j in queue.enqueue_many(
        [{"type": "echo", "payload": i} for i in range(50)]).result()]
    # Two waiters on each of 50 jobs, all waiting before a worker starts
    waits = [queue.wait(job_id) for job_id in ids for _ in range(2)]
    wait_for(lambda: queue.waiters().result()["calls"] == 100)
    assert queue.waiters().result()["jobs"] == 50
    start(1)
    outputs = [r["output"] for r in dotdo.get(waits, timeout=120)]
    assert outputs == [{"echo": i} for i in range(50) for _ in range(2)]
    assert _quiet(queue)


def test_a_cancelled_wait_leaves_no_future_behind(ray_queue):
    queue = ray_queue
    job_id = queue.enqueue("echo", 1).result()["$id"]  # no worker: it stays pending
    waiting = queue.wait(job_id)
    wait_for(lambda: queue.waiters().result()["calls"] == 1)
    assert queue.waiters().result()["jobs"] == 1
    waiting.cancel()
    with pytest.raises(ray.exceptions.TaskCancelledError):
        waiting.result(timeout=60)
    wait_for(lambda: _quiet(queue))
    # And a wait that timed out leaves none either
    with pytest.raises(TimeoutError, match=r"did not end within 0.05 s \(it is pending\)"):
        queue.wait(job_id, timeout=0.05).result()
    assert _quiet(queue)


def test_wait_refuses_an_unknown_job_and_a_bad_timeout_and_a_cancelled_job_raises(ray_queue):
    queue = ray_queue
    with pytest.raises(dotdo.NotFoundError, match="no job 'nope' in queue"):
        queue.wait("nope").result()
    job_id = queue.enqueue("echo", 1).result()["$id"]
    for bad in (-1, "soon", float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"timeout must be a finite number >= 0.*or None"):
            queue.wait(job_id, timeout=bad).result()
    with pytest.raises(ValueError, match="takes a job id"):
        queue.wait(["a list"]).result()
    # A job cancelled while a wait is on it: the wait raises JobCancelledError (a
    # JobError), status cancelled
    waiting = queue.wait(job_id, timeout=120)
    wait_for(lambda: queue.waiters().result()["calls"] == 1)
    queue.cancel(job_id).result()
    with pytest.raises(dotdo.JobCancelledError, match="cancelled") as cancelled:
        waiting.result()
    assert (cancelled.value.job_id, cancelled.value.status) == (job_id, "cancelled")
    assert _quiet(queue)


@pytest.mark.dedicated_pass("a restart of the queue's process is the same in both")
def test_a_wait_in_flight_when_the_queue_dies_fails_and_a_new_one_answers(ray_queue):
    queue = ray_queue
    job_id = queue.enqueue("echo", 1).result()["$id"]
    waiting = queue.wait(job_id)
    wait_for(lambda: queue.waiters().result()["calls"] == 1)
    kill_and_wait(queue)
    # The call was lost with the process, as any call in flight is
    with pytest.raises(ray.exceptions.RayActorError):
        waiting.result(timeout=60)
    # The new process holds no future of it; a new wait reads the table
    assert _quiet(queue)
    with pytest.raises(TimeoutError):
        queue.wait(job_id, timeout=0).result()


# -- in process -------------------------------------------------------------------------


def test_an_enqueue_hands_its_job_to_a_waiting_claim_in_its_own_commit(queue):
    # Given an idle worker's long-poll claim, waiting
    claim = queue.claim("w1", 4, wait=60.0, idle=True)
    wait_for(lambda: queue.waiters().result()["claims"] == 1)
    # When a job is enqueued
    queue.enqueue("echo", 1, job_id="handed").result()
    # Then the claim answers with it, leased in the enqueue's own transaction
    grants = claim.result(timeout=60)["jobs"]
    assert [g["job"]["$id"] for g in grants] == ["handed"]
    job = queue.get("handed").result()
    assert (job["status"], job["worker"], job["claims"]) == ("running", "w1", grants[0]["lease"])
    assert job["startedAt"] == job["createdAt"]  # one time: one write
    assert queue.waiters().result()["claims"] == 0


def test_wait_in_process_follows_a_parent_failure_and_a_cancel(setup):
    queue, _, start = setup
    parent = queue.enqueue("doomed", None, job_id="parent", max_retries=0).result()["$id"]
    child = queue.enqueue("echo", 1, job_id="child", depends_on=[parent],
                          on_parent_failure="cancel").result()["$id"]
    other = queue.enqueue("echo", 2, job_id="other", delay=3600).result()["$id"]
    waits = {job_id: queue.wait(job_id, timeout=120) for job_id in (parent, child, other)}
    wait_for(lambda: queue.waiters().result()["calls"] == 3)
    start(1)
    with pytest.raises(dotdo.JobError, match="by design") as failed:
        waits[parent].result()
    assert failed.value.status == "failed" and type(failed.value) is dotdo.JobError
    # The child, cancelled by its parent's failure, wakes its waiter too
    with pytest.raises(dotdo.ParentFailedError,
                       match="ParentFailed: parent job 'parent' ended failed") as followed:
        waits[child].result()
    assert (followed.value.job_id, followed.value.status) == (child, "cancelled")
    # A delayed job cancelled by cancel_all
    assert queue.cancel_all("delayed").result() == 1
    with pytest.raises(dotdo.JobCancelledError, match="Cancelled: job 'other' was cancelled"):
        waits[other].result()
    assert _quiet(queue)
    # A finished job purged: wait says it is not there
    assert queue.purge().result() == 3
    with pytest.raises(dotdo.NotFoundError, match="no job 'parent'"):
        queue.wait(parent).result()


def test_wait_in_process_answers_a_completed_job(setup):
    queue, _, start = setup
    job_id = queue.enqueue("echo", "hi").result()["$id"]
    waiting = queue.wait(job_id)
    start(1)
    assert waiting.result()["output"] == {"echo": "hi"}
    assert queue.wait(job_id, timeout=0).result() == queue.result(job_id).result()
    assert _quiet(queue)


def test_a_queue_takes_at_most_max_waiters_waiting_calls(queue):
    from actors.queue import MAX_WAITERS

    job_id = queue.enqueue("echo", 1).result()["$id"]  # no worker: it stays pending
    waits = [queue.wait(job_id) for _ in range(MAX_WAITERS)]
    wait_for(lambda: queue.waiters().result()["calls"] == MAX_WAITERS)
    with pytest.raises(dotdo.LimitError, match=rf"{MAX_WAITERS} wait\(\) calls waiting already"):
        queue.wait(job_id).result()
    queue.cancel(job_id).result()
    for waiting in waits:
        with pytest.raises(dotdo.JobError):
            waiting.result()
    assert _quiet(queue)
