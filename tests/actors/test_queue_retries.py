"""Retries the queue can see: a failed attempt goes back to the queue as ``retrying``,
holds no worker slot while it waits, and every attempt stays inspectable."""

import itertools
import time

import dotdo
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests.actors.conftest import drained
from tests.conftest import wait_for


def test_a_failed_attempt_waits_in_the_queue_as_retrying_and_holds_no_slot(setup, unique):
    from tests import app_handlers

    queue, _, start = setup
    # Given a job that fails once, with an hour's backoff, and a worker with one slot
    flaky = queue.enqueue("flaky", {"witness": f"{unique}-witness", "key": "r", "fail": 1},
                          backoff=3600, job_id=f"{unique}-flaky").result()["$id"]
    start(1, concurrency=1)
    # When its first attempt fails
    job = wait_for(lambda: (j := queue.get(flaky).result())["status"] == "retrying" and j)
    # Then it waits in the queue with its attempt count, error, traceback and next run
    assert (job["attempts"], job["error"]) == (1, "ConnectionError: try 1 failed")
    assert "Traceback" in job["trace"] and "raise ConnectionError" in job["trace"]
    assert job["runAt"] > time.time() + 3000 and job["worker"] is None
    assert [j["$id"] for j in queue.list(status="retrying").result()["jobs"]] == [flaky]
    metrics = queue.get_metrics().result()
    assert (metrics.retrying, metrics.pending, metrics.delayed, metrics.running) == (1, 0, 0, 0)
    # And it holds no slot: another job runs on the worker's only one meanwhile
    other = queue.enqueue("echo", "meanwhile").result()["$id"]
    wait_for(lambda: queue.get(other).result()["status"] == "completed")
    # And the failed attempt is kept, with its worker and times
    (attempt,) = queue.attempts(flaky).result()
    assert (attempt["attempt"], attempt["outcome"], attempt["worker"]) == (1, "failed", f"{unique}-w0")
    assert attempt["error"] == "ConnectionError: try 1 failed" and "Traceback" in attempt["trace"]
    assert attempt["startedAt"] <= attempt["finishedAt"]
    # And a Job.retrying event went out
    witness = dotdo.Recorder(app_handlers.WITNESS)
    wait_for(lambda: [flaky, 1] in witness.notes("job-retrying").result())


def test_every_attempt_is_inspectable_after_success(dotdo_local, unique):
    # On the test clock (dotdo.testing): each backoff passes at advance, exactly
    queue = dotdo.Queue(unique)
    job_id = queue.enqueue("flaky", {"witness": f"{unique}-witness", "key": "s", "fail": 2},
                           backoff=[60]).result()["$id"]
    for _ in range(2):
        assert dotdo_local.drain(queue).retried == [job_id]
        dotdo_local.advance(60)
    assert dotdo_local.drain(queue).completed == [job_id]
    attempts = queue.attempts(job_id).result()
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "completed"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["error"] for a in attempts] == ["ConnectionError: try 1 failed",
                                              "ConnectionError: try 2 failed", None]
    job = queue.get(job_id).result()
    assert (job["status"], job["attempts"], job["error"], job.get("trace")) == ("completed", 3, None, None)
    # Each attempt waited out its backoff in the queue, after the one before ended
    assert [a["startedAt"] - b["finishedAt"] for b, a in itertools.pairwise(attempts)] == [60, 60]


def test_spent_retries_keep_every_attempt_and_a_terminal_error_stops_at_once(setup):
    queue, _, start = setup
    spent = queue.enqueue("fail_with_trace", "key", max_retries=5).result()["$id"]
    terminal = queue.enqueue("terminal", "x", max_retries=5).result()["$id"]
    start(1)
    wait_for(lambda: drained(queue))
    job = queue.get(spent).result()
    assert (job["status"], job["attempts"]) == ("failed", 6)  # five retries, six attempts
    assert [a["outcome"] for a in queue.attempts(spent).result()] == ["failed"] * 6
    assert "KeyError" in job["trace"]
    job = queue.get(terminal).result()
    assert (job["status"], job["attempts"]) == ("failed", 1)
    assert job["error"] == "TerminalError: refused x: retrying will not help"


def test_a_job_asked_to_cancel_that_comes_back_unfinished_ends_cancelled(queue):
    from tests.actors.conftest import claim, report

    job_id = queue.enqueue("echo", 1).result()["$id"]
    (grant,) = claim(queue, "w")
    assert queue.cancel(job_id).result()["status"] == "running"  # asked; "w" is not a real worker
    # Its worker stops (or dies) before the handler ends: the job is not run again
    assert report(queue, "w", grant, "released", "WorkerStopped: stopped") == 1
    assert queue.get(job_id).result()["status"] == "cancelled"
    assert claim(queue, "w2") == []
