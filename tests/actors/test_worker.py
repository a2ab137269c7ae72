"""Workers running a queue's jobs on real Ray: retries, dead letters, ordering,
limits, and crashes that lose nothing."""

import os
import signal
import time

import pytest
import ray

import dotdo
from dotdo import runtime
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests import objects  # noqa: F401
from tests.conftest import host_pid, journaled_steps, wait_for



def drained(queue):
    m = queue.get_metrics().result()
    return m.pending == 0 and m.running == 0 and m.delayed == 0 and m


@pytest.fixture
def setup(make_object, unique):
    """A queue, a witness, and a way to start workers on the queue."""
    queue = make_object("Queue", unique)
    witness = make_object("Recorder", f"{unique}-witness")

    def start(n: int = 1, concurrency: int = 8, backoff: float = 0.05):
        workers = [make_object("Worker", f"{unique}-w{i}") for i in range(n)]
        dotdo.get([w.start(unique, concurrency=concurrency, backoff=backoff) for w in workers])
        return workers

    return queue, witness, start


def test_jobs_run_and_results_are_things(setup):
    queue, _, start = setup
    ids = [j["$id"] for j in queue.enqueue_many(
        [{"type": "echo", "payload": i} for i in range(20)]).result()]
    start(2)
    metrics = wait_for(lambda: drained(queue))
    assert metrics.completed == 20 and metrics.failed == 0
    result = queue.result(ids[3]).result()
    assert result["$type"] == "Result" and result["jobId"] == ids[3]
    assert result["output"] == {"echo": 3} and result["completedAt"] > 0
    assert queue.get(ids[3]).result()["status"] == "completed"


def test_retries_with_backoff_then_success(setup, unique):
    queue, witness, start = setup
    job = queue.enqueue("flaky", {"witness": f"{unique}-witness", "key": "a", "fail": 2}).result()
    start(1, backoff=0.05)
    wait_for(lambda: drained(queue))
    done = queue.get(job["$id"]).result()
    assert (done["status"], done["attempts"]) == ("completed", 3)
    assert queue.get_metrics().retries.result() == 2
    assert witness.hits("flaky:a").result() == 3


def test_spent_retries_go_to_dead_letter_and_retry_brings_them_back(setup, unique):
    queue, witness, start = setup
    job_id = queue.enqueue("flaky", {"witness": f"{unique}-witness", "key": "b", "fail": 3},
                           max_retries=1).result()["$id"]
    start(1)
    wait_for(lambda: drained(queue))
    dead = queue.list(status="failed").result()["jobs"]
    assert [j["$id"] for j in dead] == [job_id]
    assert dead[0]["attempts"] == 2 and dead[0]["error"] == "ConnectionError: try 2 failed"
    # The third try (after `retry`) succeeds.
    assert queue.retry(job_id).result()["status"] in ("pending", "running")
    wait_for(lambda: queue.get(job_id).result()["status"] == "completed")
    assert queue.purge(status="completed").result() == 1
    assert queue.get(job_id).result() is None


def test_unknown_type_fails_at_once_without_retries(setup):
    queue, _, start = setup
    job_id = queue.enqueue("no-such-type", {}).result()["$id"]
    start(1)
    wait_for(lambda: drained(queue))
    job = queue.get(job_id).result()
    assert (job["status"], job["attempts"]) == ("failed", 0)
    assert job["error"] == "no handler registered for job type 'no-such-type'"


def test_handler_from_a_dict_and_timeout(setup):
    queue, _, start = setup
    doomed = queue.enqueue("doomed", None, max_retries=0).result()["$id"]
    sleepy = queue.enqueue("sleepy", {"seconds": 5}, timeout=0.1, max_retries=1).result()["$id"]
    start(1)
    wait_for(lambda: drained(queue))
    assert queue.get(doomed).result()["error"] == "ValueError: by design"
    late = queue.get(sleepy).result()
    assert late["status"] == "failed" and late["error"].startswith("TimeoutError")
    assert late["attempts"] == 2


def test_priority_order_and_pause(setup, unique):
    queue, witness, start = setup
    queue.pause().result()
    start(1, concurrency=1)
    queue.enqueue_many([{"type": "ordered", "payload": {"witness": f"{unique}-witness", "n": n},
                         "priority": p} for n, p in [(1, 0), (2, 5), (3, 1), (4, 5)]]).result()
    time.sleep(1.0)
    assert witness.notes("order").result() == []  # paused: nothing ran
    queue.resume().result()
    wait_for(lambda: drained(queue))
    assert witness.notes("order").result() == [2, 4, 3, 1]


def test_delay_holds_a_job_back(setup):
    queue, _, start = setup
    start(1)
    job_id = queue.enqueue("echo", "later", delay=1.5).result()["$id"]
    time.sleep(0.7)
    assert queue.get(job_id).result()["status"] == "delayed"
    wait_for(lambda: queue.get(job_id).result()["status"] == "completed")


def test_concurrency_limit_holds_across_workers(setup, unique):
    queue, witness, start = setup
    queue.configure(concurrency=2).result()
    queue.enqueue_many([{"type": "gated", "payload": {"witness": f"{unique}-witness", "n": n}}
                        for n in range(16)]).result()
    start(2, concurrency=8)
    wait_for(lambda: drained(queue))
    inside, most = 0, 0
    for kind, _ in witness.notes("events").result():
        inside += 1 if kind == "in" else -1
        most = max(most, inside)
    assert most == 2 and inside == 0


def test_process_runs_one_job_directly(make_object, unique):
    worker = make_object("Worker", unique)
    job = {"$type": "Job", "$id": f"{unique}-direct", "type": "echo", "payload": "hi"}
    result = worker.process(job).result()
    assert result["jobId"] == job["$id"] and result["output"] == {"echo": "hi"}


def test_crashes_lose_no_job_and_redo_no_finished_step(setup, unique, ray_session):
    queue, witness, start = setup
    n = 500
    queue.enqueue_many([{"type": "slow", "payload": {"witness": f"{unique}-witness", "n": i,
                                                      "seconds": 0.08}} for i in range(n)]).result()
    queue.enqueue_many([{"type": "doomed", "payload": None, "max_retries": 0} for _ in range(10)]).result()
    workers = start(2, concurrency=8)

    def completed():
        return queue.get_metrics().completed.result()

    # Two SIGKILLs of worker processes and one kill of the queue actor, mid-run.
    wait_for(lambda: completed() >= n * 0.2)
    os.kill(host_pid(workers[0]), signal.SIGKILL)
    wait_for(lambda: completed() >= n * 0.4)
    ray.kill(runtime.actor_handle(queue), no_restart=False)
    wait_for(lambda: completed() >= n * 0.6, timeout=120)
    os.kill(host_pid(workers[1]), signal.SIGKILL)

    metrics = wait_for(lambda: drained(queue), timeout=180)
    assert metrics.completed == n, metrics  # zero lost
    assert metrics.failed == 10  # the doomed ones, by design
    statuses = {j["status"] for page in [queue.list(limit=1000).result()] for j in page["jobs"]}
    assert statuses == {"completed", "failed"}
    # No finished step ran twice: each job's step is journaled once, in one worker.
    steps = journaled_steps(ray_session.storage, [w.id for w in workers])
    slow_steps = [s for s in steps if s.startswith("job-")]
    assert len(slow_steps) == len(set(slow_steps)) == n
    # Every job's handler started at least once (some twice: unfinished when killed).
    starts = [witness.hits(f"start:{i}") for i in range(n)]
    assert min(dotdo.get(starts)) >= 1


def test_metrics_reach_rays_prometheus_endpoint(setup, unique):
    import urllib.request

    queue, _, start = setup
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(5)]).result()
    queue.enqueue("doomed", None, max_retries=0).result()
    start(1)
    wait_for(lambda: drained(queue))
    node = ray._private.worker.global_worker.node
    url = f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"

    def scraped():
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        lines = [line for line in text.splitlines() if f'queue="{unique}"' in line]
        return lines if any("dotdo_jobs_total" in line and 'outcome="failed"' in line
                            for line in lines) else None

    lines = wait_for(scraped, timeout=90)
    completed = [line for line in lines
                 if line.startswith("ray_dotdo_jobs_total") and 'outcome="completed"' in line]
    assert completed and float(completed[0].rsplit(" ", 1)[1]) == 5.0
    assert any(line.startswith("ray_dotdo_job_duration_seconds") for line in lines)


def test_queue_events_reach_user_handlers(setup, unique):
    from tests import app_handlers

    queue, _, start = setup
    ok = queue.enqueue("echo", 1, job_id=f"{unique}-ok").result()["$id"]
    bad = queue.enqueue("doomed", None, job_id=f"{unique}-bad", max_retries=0).result()["$id"]
    start(1)
    witness = dotdo.Recorder(app_handlers.WITNESS)
    wait_for(lambda: bad in witness.notes("job-failed").result())
    wait_for(lambda: ok in witness.notes("job-completed").result())


def test_full_ray_restart_mid_run_finishes_the_rest(setup, unique, ray_session, storage_root):
    from tests.conftest import start_ray

    queue, _, start = setup
    n = 200
    queue.enqueue_many([{"type": "slow", "payload": {"witness": f"{unique}-witness", "n": i,
                                                      "seconds": 0.05}} for i in range(n)]).result()
    workers = start(2, concurrency=4)
    wait_for(lambda: queue.get_metrics().completed.result() >= n * 0.2)
    # The whole of Ray goes away mid-run; the files stay.
    dotdo.shutdown()
    start_ray(storage_root)
    # The first call activates the queue, which wakes its workers.
    metrics = wait_for(lambda: drained(queue), timeout=180)
    assert metrics.completed == n and metrics.failed == 0
    steps = [s for s in journaled_steps(ray_session.storage, [w.id for w in workers])]
    assert len(steps) == len(set(steps)) == n
