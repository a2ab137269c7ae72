"""Workers running a queue's jobs on real Ray: retries, dead letters, ordering,
limits, and crashes that lose nothing."""

import os
import signal
import time

import pytest
import ray

import dotdo
from dotdo import client, codec
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests import objects  # noqa: F401
from tests.actors.conftest import drained
from tests.conftest import host_pid, journaled_steps, live_object, wait_for
from tests.storage.test_connection import fill_disk



# What a worker does with jobs runs in process (`setup`); what is about its process runs
# on Ray (`ray_setup`). A worker has a process of its own in both Ray passes: those
# tests run once, but those about a pooled queue coming back run in both.
WORKER_OWN_PROCESS = "a worker has a process of its own in both passes"


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


def test_what_a_handler_logs_is_kept_with_its_job_by_attempt(setup, unique):
    queue, _, start = setup
    start(1)
    job = queue.enqueue("chatty", {"witness": f"{unique}-witness", "key": "k"}, max_retries=2,
                        backoff=0.01).result()
    assert dotdo.get(queue.wait(job["$id"], timeout=30))["output"] == 2
    lines = queue.logs(job["$id"]).result()
    assert [(x["attempt"], x["level"], x["logger"], x["message"]) for x in lines] == [
        (1, "INFO", "tests.shop", "try 1 for k"), (1, "WARNING", "tests.shop", "from a thread, try 1"),
        (2, "INFO", "tests.shop", "try 2 for k"), (2, "WARNING", "tests.shop", "from a thread, try 2")]
    assert all(x["worker"] == f"{unique}-w0" and x["t"] > 0 for x in lines)
    assert queue.logs(job["$id"], limit=1).result() == lines[:1]
    with pytest.raises(dotdo.NotFoundError):
        queue.logs("no-such-job").result()


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


def test_process_runs_one_job_directly(make_local, unique):
    worker = make_local("Worker", unique)
    job = {"$type": "Job", "$id": f"{unique}-direct", "type": "echo", "payload": "hi"}
    result = worker.process(job).result()
    assert result["jobId"] == job["$id"] and result["output"] == {"echo": "hi"}


def test_crashes_lose_no_job_and_redo_no_finished_step(ray_setup, unique, ray_session):
    queue, witness, start = ray_setup
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
    ray.kill(client.actor_handle(queue), no_restart=False)
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


@pytest.mark.dedicated_pass(WORKER_OWN_PROCESS)
def test_metrics_reach_rays_prometheus_endpoint(ray_setup, unique):
    import urllib.request

    queue, _, start = ray_setup
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(5)]).result()
    queue.enqueue("doomed", None, max_retries=0).result()
    queue.enqueue(f"made-up-{unique}", None).result()  # types enqueuers invent
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
    # A type no handler knows does not become a series of its own: labels stay bounded
    assert not any("made-up-" in line for line in lines)
    wait_for(lambda: any('type="(unregistered)"' in line for line in scraped() or ()), timeout=90)


def test_queue_events_reach_user_handlers(setup, unique):
    from tests import app_handlers

    queue, _, start = setup
    ok = queue.enqueue("echo", 1, job_id=f"{unique}-ok").result()["$id"]
    bad = queue.enqueue("doomed", None, job_id=f"{unique}-bad", max_retries=0).result()["$id"]
    start(1)
    witness = dotdo.Recorder(app_handlers.WITNESS)
    wait_for(lambda: bad in witness.notes("job-failed").result())
    wait_for(lambda: ok in witness.notes("job-completed").result())


def test_full_ray_restart_mid_run_finishes_the_rest(ray_setup, unique, ray_session, storage_root):
    from tests.conftest import start_ray

    queue, _, start = ray_setup
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


# -- faults: what used to break the promise, each shown fixed ------------------------------


@pytest.mark.dedicated_pass(WORKER_OWN_PROCESS)
def test_a_job_longer_than_its_lease_runs_once_sync_or_blocking(ray_setup, unique):
    # Given a short lease (a beat every 0.5 s) and two workers that could steal jobs
    queue, witness, start = ray_setup
    queue.configure(lease_timeout=1.5).result()
    w = f"{unique}-witness"
    burn = queue.enqueue("burn", {"witness": w, "key": "burn", "seconds": 4}, max_retries=0).result()
    block = queue.enqueue("blocker", {"witness": w, "key": "block", "seconds": 4},
                          max_retries=0).result()
    start(2, concurrency=4)
    # When each runs for more than twice the lease without yielding
    wait_for(lambda: drained(queue), timeout=120)
    # Then each ran once: heartbeats went on beside them, nobody took the job over
    for job, key in ((burn, "burn"), (block, "block")):
        done = queue.get(job["$id"]).result()
        assert (done["status"], done["attempts"]) == ("completed", 1), done
        assert [kind for kind, *_ in witness.notes(key).result()] == ["start", "end"]


def test_an_attempt_past_its_timeout_is_stuck_until_it_returns_and_never_overlaps(setup, unique):
    queue, witness, start = setup
    queue.configure(lease_timeout=1.5).result()
    job_id = queue.enqueue("overrun", {"witness": f"{unique}-witness", "seconds": 3},
                           timeout=0.5, max_retries=1).result()["$id"]
    start(1)
    # The sync handler cannot be interrupted: past its timeout the job shows as stuck
    wait_for(lambda: queue.get(job_id).result()["status"] == "stuck")
    assert queue.get_metrics().stuck.result() == 1
    assert [j["$id"] for j in queue.list(status="stuck").result()["jobs"]] == [job_id]
    wait_for(lambda: drained(queue), timeout=60)
    done = queue.get(job_id).result()
    assert done["status"] == "failed" and done["error"].startswith("TimeoutError")
    assert done["attempts"] == 2
    # The second attempt started only after the first had returned
    marks = witness.notes("runs").result()
    assert [kind for kind, _ in marks] == ["start", "end", "start", "end"]
    assert marks[2][1] >= marks[1][1]


@pytest.mark.dedicated_pass(WORKER_OWN_PROCESS)
def test_a_job_that_kills_its_worker_fails_after_max_retries_and_the_rest_go_on(ray_setup, unique):
    queue, witness, start = ray_setup
    poison = queue.enqueue("suicide", {"witness": f"{unique}-witness", "key": "p"},
                           max_retries=1).result()["$id"]
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(12)]).result()
    start(1, concurrency=4)
    metrics = wait_for(lambda: drained(queue), timeout=180)
    assert (metrics.completed, metrics.failed) == (12, 1)
    job = queue.get(poison).result()
    assert job["status"] == "failed" and job["error"].startswith("WorkerCrashError")
    assert job["crashes"] == 2
    # It killed its worker once in company (no count), then twice alone
    assert 2 <= witness.hits("suicide:p").result() <= 3


def test_a_handler_raising_base_exceptions_fails_its_job_not_the_worker(setup):
    queue, _, start = setup
    ids = [queue.enqueue("base_exception", kind, max_retries=1).result()["$id"]
           for kind in ("cancelled", "exit")]
    echo = queue.enqueue("echo", "after").result()["$id"]
    start(1)
    wait_for(lambda: drained(queue))
    for job_id, raised in zip(ids, ("CancelledError", "SystemExit")):
        job = queue.get(job_id).result()
        assert job["status"] == "failed" and job["attempts"] == 2
        assert job["error"] == f"HandlerError: the handler raised {raised}: from the handler"
    assert queue.get(echo).result()["status"] == "completed"


def test_step_ids_are_scoped_by_queue_and_by_enqueue(make_local, unique):
    # Given a finished job "same" in one queue, run by a worker
    first, second = make_local("Queue", f"{unique}-a"), make_local("Queue", f"{unique}-b")
    worker = make_local("Worker", f"{unique}-w")
    first.enqueue("echo", 1, job_id="same").result()
    worker.start(first.id).result()
    wait_for(lambda: first.result("same").result())
    # When the id is used again after a purge, and in another queue
    first.purge().result()
    first.enqueue("echo", 2, job_id="same").result()
    second.enqueue("echo", 3, job_id="same").result()
    wait_for(lambda: first.result("same").result())
    worker.start(second.id).result()
    wait_for(lambda: second.result("same").result())
    # Then each ran its own handler: no stale result from the worker's journal
    assert first.result("same").result()["output"] == {"echo": 2}
    assert second.result("same").result()["output"] == {"echo": 3}


def test_stop_then_start_without_waiting_keeps_the_worker_working(setup):
    queue, _, start = setup
    worker = start(1)[0]
    worker.stop()
    worker.start(queue.id, concurrency=4).result()
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(10)]).result()
    assert wait_for(lambda: drained(queue)).completed == 10


def test_a_new_queue_mid_run_gets_its_jobs_and_the_old_one_its_outcomes(make_local, unique):
    old, new = make_local("Queue", f"{unique}-old"), make_local("Queue", f"{unique}-new")
    witness = f"{unique}-witness"
    make_local("Recorder", witness)
    worker = make_local("Worker", f"{unique}-w")
    old.enqueue_many([{"type": "slow", "payload": {"witness": witness, "n": i, "seconds": 1.0}}
                      for i in range(4)]).result()
    new.enqueue_many([{"type": "echo", "payload": i} for i in range(5)]).result()
    worker.start(old.id, concurrency=4).result()
    wait_for(lambda: old.get_metrics().running.result() == 4)
    worker.start(new.id, concurrency=4).result()
    assert wait_for(lambda: drained(old)).completed == 4
    assert wait_for(lambda: drained(new)).completed == 5


@pytest.mark.dedicated_pass(WORKER_OWN_PROCESS)
def test_stop_while_the_queue_is_away_keeps_the_outcomes_until_it_is_back(ray_setup, unique,
                                                                         ray_session):
    import fcntl

    from dotdo.ids import storage_path

    queue, witness, start = ray_setup
    queue.enqueue_many([{"type": "slow", "payload": {"witness": f"{unique}-witness", "n": i,
                                                      "seconds": 0.5}} for i in range(2)]).result()
    worker = start(1, concurrency=4)[0]
    wait_for(lambda: queue.get_metrics().running.result() == 2)
    # Given the queue's process dies and its file is held elsewhere: it cannot come back
    path = storage_path(ray_session.storage, "Queue", queue.id)
    os.kill(host_pid(queue), signal.SIGKILL)
    with open(path, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        # When the worker is stopped while its jobs finish
        worker.stop().result(timeout=120)
    # Then, once the queue is back, it has every outcome, and nothing ran twice
    metrics = wait_for(lambda: drained(queue), timeout=120)
    assert metrics.completed == 2
    assert [witness.hits(f"start:{i}").result() for i in range(2)] == [1, 1]


@pytest.mark.dedicated_pass("it counts workers' actors, whose names are the same in both")
def test_a_queue_forgets_workers_that_stopped(make_object, unique):
    from tests.conftest import kill_and_wait

    queue = make_object("Queue", unique)
    worker = make_object("Worker", f"{unique}-w")
    worker.start(queue.id).result()
    worker.stop().result()
    ray.kill(client.actor_handle(worker), no_restart=True)
    client.forget_handles()
    # When the queue restarts, it wakes only the workers still working for it
    kill_and_wait(queue, "SIGKILL")
    queue.get_metrics().result()
    time.sleep(2.0)
    names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
    assert f"Worker/{worker.id}" not in names


@pytest.mark.dedicated_pass(WORKER_OWN_PROCESS)
def test_a_job_whose_handlers_cannot_load_goes_back_to_the_queue(make_object, unique,
                                                                 ray_session):
    import fcntl

    from dotdo.ids import storage_path
    from tests import late_handlers  # noqa: F401  (only the App knows this module)

    dotdo.deploy()
    queue = make_object("Queue", unique)
    job_id = queue.enqueue("late", 1).result()["$id"]
    # Given the App (where workers learn the handlers' modules) cannot come back
    app = dotdo.App("default")
    os.kill(host_pid(app), signal.SIGKILL)
    with open(storage_path(ray_session.storage, "App", "default"), "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        # When a new worker takes the job, it cannot load its handler: the job goes
        # back to the queue, neither failed nor held for ever
        worker = make_object("Worker", f"{unique}-w")
        worker.start(queue.id).result()
        deadline = time.monotonic() + 120
        while (job := queue.get(job_id).result())["claims"] < 2:  # handed back, out again
            assert job["status"] in ("pending", "running") and job["attempts"] == 0, job
            assert time.monotonic() < deadline, f"never handed back: {job}"
            time.sleep(0.2)
    # Then, once the App is back, the job runs
    wait_for(lambda: queue.get(job_id).result()["status"] == "completed", timeout=120)
    assert queue.result(job_id).result()["output"] == {"late": 1}


@pytest.mark.dedicated_pass(WORKER_OWN_PROCESS)
def test_quick_sync_handlers_run_on_the_loop_and_slow_ones_go_back_to_threads(ray_setup, unique):
    queue, _, start = ray_setup
    start(1, concurrency=8)
    pool_prefix = f"dotdo-{unique}-w0"

    def threads(jobs):
        ids = [j["$id"] for j in queue.enqueue_many(jobs).result()]
        wait_for(lambda: drained(queue))
        return [queue.result(i).result()["output"] for i in ids]

    # Given a quick sync handler: it starts in the thread pool, then runs on the loop
    quick = threads([{"type": "thread_name", "payload": {}} for _ in range(200)])
    assert quick[0].startswith(pool_prefix)
    assert not quick[-1].startswith(pool_prefix)
    # When it turns slow (past _Speed.SLOW), at most one run blocks the loop
    slow = threads([{"type": "thread_name", "payload": {"sleep": 0.1}} for _ in range(6)])
    assert sum(not name.startswith(pool_prefix) for name in slow) <= 1
    assert slow[-1].startswith(pool_prefix)


# -- time, fences, lost leases, hung handlers, undecodable payloads ----------------------


def test_the_fence_grows_with_every_claim_of_a_job(setup, unique):
    queue, witness, start = setup
    job_id = queue.enqueue("fenced", {"witness": f"{unique}-witness", "fail": 2},
                           max_retries=3).result()["$id"]
    start(1, backoff=0.01)
    wait_for(lambda: drained(queue))
    fences = witness.notes("fences").result()
    assert len(fences) == 3 and fences == sorted(set(fences))  # each claim a larger one
    assert queue.result(job_id).result()["output"] == fences[-1]


def test_a_wall_clock_step_either_way_expires_no_lease(setup, unique):
    # Given a job running for twice its lease
    queue, witness, start = setup
    queue.configure(lease_timeout=1.0).result()
    job_id = queue.enqueue("long_async", {"witness": f"{unique}-witness", "n": 1,
                                          "seconds": 2.5}).result()["$id"]
    start(1)
    wait_for(lambda: ["start", 1] in witness.notes("runs").result())
    # When the wall clock steps an hour forward, then back
    host = client.actor_handle(queue)
    dotdo.get(host.shift_clock.remote(3600))
    time.sleep(0.6)
    dotdo.get(host.shift_clock.remote(-3600))
    # Then the job ran once, to the end, on its first lease
    wait_for(lambda: drained(queue))
    assert witness.notes("runs").result() == [["start", 1], ["end", 1]]
    job = queue.get(job_id).result()
    assert (job["status"], job["attempts"], job["crashes"]) == ("completed", 1, 0)


def test_a_payload_no_process_can_decode_fails_its_job_alone_and_the_queue_goes_on(setup):
    # Given a payload holding a value of a type nothing here knows (a newer dotdo's,
    # or a class the queue's process has not imported)
    queue, _, start = setup
    alien = codec.Undecoded(29, b"\x91\x01", "test")
    job_id = queue.enqueue("echo", {"x": alien}, max_retries=3).result()["$id"]
    others = [j["$id"] for j in queue.enqueue_many(
        [{"type": "echo", "payload": i} for i in range(5)]).result()]
    # The queue keeps it and shows it as it is, without decoding it
    shown = queue.get(job_id).result()
    assert isinstance(shown["payload"]["x"], codec.Undecoded)
    assert [j["$id"] for j in queue.list().result()["jobs"]].count(job_id) == 1
    # When a worker runs it, the job fails at once with why; the others complete
    start(1)
    metrics = wait_for(lambda: drained(queue))
    assert (metrics.completed, metrics.failed) == (5, 1)
    job = queue.get(job_id).result()
    assert job["attempts"] == 0 and job["error"].startswith("DecodeError")  # never ran
    assert "extension code 29" in job["error"]
    assert all(queue.get(i).result()["status"] == "completed" for i in others)


def test_stop_with_a_timeout_returns_beside_a_sync_handler_that_will_not_stop(setup, unique):
    queue, witness, start = setup
    job_id = queue.enqueue("overrun", {"witness": f"{unique}-witness", "seconds": 2}
                           ).result()["$id"]
    (worker,) = start(1)
    wait_for(lambda: witness.notes("runs").result())
    summary = worker.stop(timeout=0.3).result()  # the handler sleeps on: it cannot see it
    assert summary == {"finished": 0, "returned": [], "running": [job_id]}
    # Its outcome counts once the handler returns (it ran to the end); no second run
    wait_for(lambda: queue.get(job_id).result()["status"] == "completed")
    assert [kind for kind, _ in witness.notes("runs").result()] == ["start", "end"]


@pytest.mark.dedicated_pass(WORKER_OWN_PROCESS)
def test_a_frozen_worker_stops_its_run_once_it_learns_it_lost_the_lease(ray_setup, unique):
    # Given a job running on a worker whose process then freezes past its lease
    queue, witness, start = ray_setup
    queue.configure(lease_timeout=1.0).result()
    job_id = queue.enqueue("long_async", {"witness": f"{unique}-witness", "n": 1,
                                          "seconds": 6}).result()["$id"]
    (frozen,) = start(1)
    wait_for(lambda: ["start", 1] in witness.notes("runs").result())
    pid = host_pid(frozen)
    os.kill(pid, signal.SIGSTOP)
    try:
        # When another worker takes the job over meanwhile
        start_other = dotdo.Worker(f"{unique}-w1")
        start_other.start(queue.id, concurrency=1).result()
        wait_for(lambda: witness.notes("runs").result().count(["start", 1]) == 2, timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    # Then, thawed, the first run is cancelled at its first heartbeat, its outcome
    # discarded; the job completes once, by the second run
    try:
        wait_for(lambda: ["cancelled", 1] in witness.notes("runs").result(), timeout=30)
        wait_for(lambda: queue.get(job_id).result()["status"] == "completed", timeout=60)
        assert witness.notes("runs").result().count(["end", 1]) == 1
        assert [a["outcome"] for a in queue.attempts(job_id).result()][-1] == "completed"
    finally:
        dotdo.get(start_other.stop(drain=False))


@pytest.mark.dedicated_pass(WORKER_OWN_PROCESS)
def test_a_hung_sync_handler_is_given_up_with_its_process(ray_setup, unique):
    # Given a sync handler that sleeps far past its timeout
    queue, witness, start = ray_setup
    job_id = queue.enqueue("overrun", {"witness": f"{unique}-witness", "seconds": 600},
                           timeout=1.0, max_retries=0).result()["$id"]
    (worker,) = start(1)
    pid = wait_for(lambda: witness.notes("runs").result() and host_pid(worker))
    # Then after three timeouts the attempt fails, the process is replaced, and the
    # worker goes on with other jobs
    job = wait_for(lambda: (j := queue.get(job_id).result())["status"] == "failed" and j,
                   timeout=60)
    assert job["error"].startswith("HungAttempt") and job["crashes"] == 0
    after = queue.enqueue("echo", "after").result()["$id"]
    wait_for(lambda: queue.get(after).result()["status"] == "completed", timeout=60)
    assert host_pid(worker) != pid


def test_a_worker_whose_disk_is_full_holds_nothing_it_could_not_write_down(setup, unique,
                                                                          caplog):
    # Given a worker whose file can take no page more (its disk is full)
    queue, witness, start = setup
    (worker,) = start(1, concurrency=64)
    storage = live_object(worker).storage
    fill_disk(storage)
    w = f"{unique}-witness"
    # (enough at once that writing their claims down needs pages the file cannot get)
    ids = [j["$id"] for j in queue.enqueue_many(
        [{"type": "slow", "payload": {"witness": w, "n": n, "seconds": 0.2}}
         for n in range(100)]).result()]
    # While it is full, its claims go back to the queue: nothing is held that is not
    # written down
    wait_for(lambda: "could not write down" in caplog.text)
    time.sleep(0.5)
    assert queue.get_metrics().completed.result() == 0
    # When space is back, every job completes, each run once
    storage.sql.execute("PRAGMA max_page_count = 1073741823")
    metrics = wait_for(lambda: drained(queue))
    assert (metrics.completed, metrics.failed) == (100, 0)
    assert [witness.hits(f"start:{n}").result() for n in range(100)] == [1] * 100
    assert all(queue.get(i).result()["status"] == "completed" for i in ids)


def test_outputs_and_progress_messages_have_a_size_limit(setup):
    from actors.options import MAX_OUTPUT
    from dotdo.jobs import MAX_PROGRESS_MESSAGE

    queue, _, start = setup
    big = queue.enqueue("huge_output", {"size": MAX_OUTPUT + 1}, max_retries=2).result()["$id"]
    fits = queue.enqueue("huge_output", {"size": 1000}).result()["$id"]
    chatty = queue.enqueue("long_progress", {"size": MAX_PROGRESS_MESSAGE + 1},
                           max_retries=0).result()["$id"]
    start(1)
    wait_for(lambda: drained(queue))
    job = queue.get(big).result()
    # Too big an output fails its job at once (running it again would not shrink it)
    assert (job["status"], job["attempts"]) == ("failed", 1)
    assert job["error"].startswith("LimitError") and f"{MAX_OUTPUT:,}" in job["error"]
    assert queue.get(fits).result()["status"] == "completed"
    job = queue.get(chatty).result()
    assert job["status"] == "failed" and "progress message holds at most" in job["error"]
