"""Operating running jobs: progress, cancelling a running job, and stopping a worker
gracefully (drain, or return the unfinished at once)."""

import time

import pytest

import dotdo
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests.actors.conftest import drained
from tests.conftest import wait_for


def _runs(witness) -> list:
    return witness.notes("runs").result()


def test_progress_shows_in_get_list_and_an_event(setup, unique):
    from tests import app_handlers

    queue, witness, start = setup
    job_id = queue.enqueue("progressive", {"witness": f"{unique}-witness"}).result()["$id"]
    start(1)
    job = wait_for(lambda: (j := queue.get(job_id).result())["progress"] == 0.4 and j)
    assert (job["status"], job["progressMessage"]) == ("running", "parsed 4,000 rows")
    assert queue.list(status="running").result()["jobs"][0]["progress"] == 0.4
    events = dotdo.Recorder(app_handlers.WITNESS)
    wait_for(lambda: [job_id, 0.4, "parsed 4,000 rows"] in events.notes("job-progress").result())
    witness.hit("go").result()
    wait_for(lambda: drained(queue))


def test_progress_and_friends_refuse_bad_input_and_work_only_in_handlers():
    with pytest.raises(RuntimeError, match="inside a job handler"):
        dotdo.progress(0.5)
    with pytest.raises(RuntimeError, match="inside a job handler"):
        dotdo.current_job()
    for bad in (1.5, -0.1, float("nan"), "half"):
        with pytest.raises(ValueError, match="progress is a fraction from 0 to 1"):
            dotdo.progress(bad)


@pytest.mark.parametrize("job_type", ["long_async", "long_sync"])
def test_cancel_of_a_running_job_stops_its_handler_and_records_cancelled(setup, unique, job_type):
    from tests import app_handlers

    queue, witness, start = setup
    job_id = queue.enqueue(job_type, {"witness": f"{unique}-witness", "n": 1}).result()["$id"]
    start(1)
    wait_for(lambda: ["start", 1] in _runs(witness))
    # When it is cancelled while it runs
    asked = queue.cancel(job_id).result()
    assert asked["status"] == "running" and asked["cancelRequestedAt"] > 0
    # Then the handler stops (async: cancelled; sync: it saw dotdo.cancelled()) and the
    # job ends cancelled, not retried
    job = wait_for(lambda: (j := queue.get(job_id).result())["status"] == "cancelled" and j)
    assert (["cancelled", 1] if job_type == "long_async" else ["stopped", 1]) in _runs(witness)
    assert ["end", 1] not in _runs(witness)
    assert [a["outcome"] for a in queue.attempts(job_id).result()] == ["cancelled"]
    wait_for(lambda: job_id in dotdo.Recorder(app_handlers.WITNESS).notes("job-cancelled").result())


def test_stop_drains_running_jobs_by_default(setup, unique):
    queue, witness, start = setup
    ids = [j["$id"] for j in queue.enqueue_many(
        [{"type": "long_async", "payload": {"witness": f"{unique}-witness", "n": n, "seconds": 0.5}}
         for n in range(2)]).result()]
    (worker,) = start(1)
    wait_for(lambda: len(_runs(witness)) == 2)
    summary = worker.stop().result()
    assert summary == {"finished": 2, "returned": [], "running": []}
    assert [queue.get(i).result()["status"] for i in ids] == ["completed"] * 2
    queue.enqueue("echo", "after stop").result()
    time.sleep(0.3)
    assert queue.get_metrics().pending.result() == 1  # a stopped worker takes nothing


@pytest.mark.parametrize("job_type", ["long_async", "long_sync"])
def test_stop_with_a_timeout_returns_the_unfinished_to_the_queue_at_once(setup, unique, job_type):
    queue, witness, start = setup
    queue.configure(lease_timeout=600).result()  # a lease expiry would take ten minutes
    job_id = queue.enqueue(job_type, {"witness": f"{unique}-witness", "n": 1}).result()["$id"]
    (worker,) = start(1)
    wait_for(lambda: ["start", 1] in _runs(witness))
    summary = worker.stop(timeout=0.2).result()
    # Then the job is back in the queue as it was: pending, no attempt counted
    assert summary == {"finished": 0, "returned": [job_id], "running": []}
    job = queue.get(job_id).result()
    assert (job["status"], job["attempts"], job["worker"]) == ("pending", 0, None)
    assert [a["outcome"] for a in queue.attempts(job_id).result()] == ["released"]
    # And its handler was interrupted, not left running beside a next attempt
    assert ["stopped" if job_type == "long_sync" else "cancelled", 1] in _runs(witness)


def test_stop_refuses_bad_arguments(setup):
    _, _, start = setup
    (worker,) = start(1)
    for kwargs, match in (({"timeout": -1}, "timeout is None or seconds"),
                          ({"timeout": float("inf")}, "timeout is None or seconds"),
                          ({"drain": "yes"}, "drain is True or False")):
        with pytest.raises(ValueError, match=match):
            worker.stop(**kwargs).result()
    assert worker.serves(worker.id.rsplit("-w", 1)[0]).result()


@pytest.mark.dedicated_pass("a worker has a process of its own in both passes")
def test_sigterm_hands_the_running_jobs_back_at_once(ray_setup, unique):
    import os
    import signal

    from tests.conftest import host_pid

    queue, witness, start = ray_setup
    queue.configure(lease_timeout=600).result()  # a lease expiry would take ten minutes
    job_id = queue.enqueue("long_async", {"witness": f"{unique}-witness", "n": 1,
                                          "seconds": 1.0}).result()["$id"]
    (worker,) = start(1)
    wait_for(lambda: ["start", 1] in _runs(witness))
    # When its worker's process gets SIGTERM (as from Kubernetes or systemd)
    os.kill(host_pid(worker), signal.SIGTERM)
    # Then the job is back in the queue at once, as it was: not a crash, not a lost lease
    job = wait_for(lambda: (j := queue.get(job_id).result())["status"] == "pending" and j)
    assert (job["attempts"], job["crashes"]) == (0, 0)
    assert ["cancelled", 1] in _runs(witness)  # its handler did not run on
    # And another worker runs it to the end
    other = dotdo.Worker(f"{unique}-w1")
    other.start(queue.id, concurrency=1).result()
    try:
        wait_for(lambda: queue.get(job_id).result()["status"] == "completed")
        assert [a["outcome"] for a in queue.attempts(job_id).result()] == ["released", "completed"]
    finally:
        other.stop().result()
