"""Named steps of job handlers are steps of the queue: one step however many jobs,
workers and runs reach it (actors/steps.py)."""

import dotdo
from dotdo import codec
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests import objects  # noqa: F401
from tests.actors.conftest import claim, drained
from tests.conftest import wait_for


def test_a_named_step_charges_each_user_once_across_two_workers(setup, unique):
    # Given 10 users with 3 jobs each, every job charging its user under one step id
    queue, _, start = setup
    ledger = f"{unique}-ledger"
    emails = [f"user{n}@example.com" for n in range(10)]
    ids = [j["$id"] for j in queue.enqueue_many(
        [{"type": "charge_card", "payload": {"ledger": ledger, "email": e}}
         for _ in range(3) for e in emails]).result()]
    # When two workers run them side by side
    start(2, concurrency=8)
    assert wait_for(lambda: drained(queue)).completed == 30
    # Then the ledger outside dotdo saw each user charged once, and every job got the
    # one charge's result
    charges = dotdo.Recorder(ledger).notes("charges").result()
    assert sorted(charges) == sorted(emails)
    assert {queue.result(i).result()["output"] for i in ids} == {
        f"charge-of-{e}" for e in emails}


def _step(queue, worker, grant, step="charge-a", **kwargs):
    job = grant["job"]
    return queue.step_begin(worker, job["$id"], grant["uid"], grant["lease"], step,
                            **kwargs).result()


def _finish(queue, worker, grant, result, step="charge-a"):
    job = grant["job"]
    return queue.step_finish(worker, job["$id"], grant["uid"], grant["lease"], step,
                             codec.encode(result), 1, 0.0, 0.0).result()


def test_a_finished_step_is_not_run_again_by_the_run_that_took_its_job_over(queue):
    # Given a run that finished a step, then went silent past its lease
    queue.configure(lease_timeout=0.5).result()
    job_id = queue.enqueue("echo", 1).result()["$id"]
    (old,) = claim(queue, "a")
    assert _step(queue, "a", old) == {"run": True}
    assert codec.decode(_finish(queue, "a", old, "ch_1")) == "ch_1"
    wait_for(lambda: queue.get(job_id).result()["status"] == "pending")
    # When another worker runs the job again, it gets the step's result, not a run
    (new,) = claim(queue, "b")
    assert new["lease"] > old["lease"]  # the fence grew
    assert codec.decode(_step(queue, "b", new)["done"]) == "ch_1"
    # And the stale run is told that it lost its job
    assert _step(queue, "a", old, step="charge-b") == {"lost": True}


def test_a_step_held_by_a_run_that_lost_its_lease_goes_to_the_next_run(queue):
    queue.configure(lease_timeout=0.5).result()
    job_id = queue.enqueue("echo", 1).result()["$id"]
    (old,) = claim(queue, "a")
    assert _step(queue, "a", old) == {"run": True}  # a froze mid-step
    wait_for(lambda: queue.get(job_id).result()["status"] == "pending")
    (new,) = claim(queue, "b")
    assert _step(queue, "b", new, wait=0) == {"run": True}  # a's hold no longer counts
    # The first result journaled wins, also when the stale run finishes later
    assert codec.decode(_finish(queue, "b", new, "from b")) == "from b"
    assert codec.decode(_finish(queue, "a", old, "from a")) == "from b"


def test_a_held_step_waits_for_its_holder_then_returns_its_result(queue):
    # Two jobs of the queue reach one step: the second waits while the first holds it
    first, second = (queue.enqueue("echo", i).result()["$id"] for i in range(2))
    grants = {g["job"]["$id"]: g for g in claim(queue, "a", n=2)}
    assert _step(queue, "a", grants[first]) == {"run": True}
    waiting = queue.step_begin("a", second, grants[second]["uid"], grants[second]["lease"],
                               "charge-a", wait=10)
    assert _step(queue, "a", grants[second], wait=0) == {"busy": True}
    _finish(queue, "a", grants[first], {"charged": 1})
    assert codec.decode(waiting.result()["done"]) == {"charged": 1}
