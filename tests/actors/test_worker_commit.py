"""A worker's group commit: the outcomes of the jobs that finished since its last
report are written down in one transaction, then reported; until that commit a
finished job is in flight (its worker's death runs it again) and none is lost."""

import asyncio
import os
import signal

import pytest

import dotdo
from tests import job_handlers  # noqa: F401  (echo; ships the handlers to the App)
from tests.actors.conftest import drained
from tests.conftest import journaled_steps, live_object, wait_for
from tests.storage.test_connection import fill_disk

_GATES: dict[str, list] = {}  # per test folder: [arrived, opened], in a worker's process


def _ledger(payload, what: str) -> list[str]:
    """Append ``what`` to the job's ledger, a file outside dotdo; its lines before."""
    path = os.path.join(payload["dir"], f"job-{payload['i']}")
    before = open(path).read().split() if os.path.exists(path) else []
    with open(path, "a") as ledger:
        ledger.write(f"{what}:{os.getpid()}\n")
    return before


@dotdo.job("commit-gated")
async def gated(payload):
    """The first run of each of ``n`` jobs waits until all ``n`` run, so that they end
    together; the last to arrive kills its worker's process right after they all
    returned if ``kill``, before the worker's loop runs again (so before it can write
    their outcomes down). Later runs return at once."""
    again = _ledger(payload, "start")
    if not again:
        gate = _GATES.setdefault(payload["dir"], [0, asyncio.Event()])
        gate[0] += 1
        if gate[0] == payload["n"]:
            gate[1].set()
            if payload.get("kill"):  # runs after the other handlers return, before the loop
                asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGKILL)
        else:
            await gate[1].wait()
    _ledger(payload, "end")
    return "x" * payload.get("size", 1)


@dotdo.job("commit-held")
async def held(payload):
    """Runs until the file ``payload['open']`` exists."""
    _ledger(payload, "start")
    while not os.path.exists(payload["open"]):
        await asyncio.sleep(0.01)
    return "x" * payload["size"]


def _runs(folder, n: int) -> list[list[str]]:
    return [open(os.path.join(folder, f"job-{i}")).read().split() for i in range(n)]


def test_a_batch_of_finished_jobs_is_written_down_in_one_commit(setup, tmp_path):
    # Given 20 jobs on a worker that runs them all at once, and ends them together
    queue, _, start = setup
    n = 20
    queue.enqueue_many([{"type": "commit-gated", "payload": {"dir": str(tmp_path), "i": i, "n": n}}
                        for i in range(n)]).result()
    (worker,) = start(1, concurrency=n)
    assert wait_for(lambda: drained(queue)).completed == n
    # Then their 20 steps were journaled in one commit, before the one report
    assert worker.info().result()["commits"] == {"batches": 1, "outcomes": n}
    steps = live_object(worker).storage.sql.execute("SELECT count(*) FROM _dotdo_steps")
    assert steps.fetchone()[0] == n
    assert all(len(run) == 2 for run in _runs(tmp_path, n))  # each ran once


@pytest.mark.dedicated_pass("a worker has a process of its own in both passes")
def test_jobs_finished_but_not_yet_committed_run_again_after_a_kill(ray_setup, tmp_path,
                                                                   ray_session):
    # Given 4 jobs whose handlers all returned, their worker's process SIGKILLed before
    # its loop could write their outcomes down (the in-flight window)
    queue, _, start = ray_setup
    n = 4
    ids = [j["$id"] for j in queue.enqueue_many(
        [{"type": "commit-gated", "payload": {"dir": str(tmp_path), "i": i, "n": n, "kill": True}}
         for i in range(n)]).result()]
    (worker,) = start(1, concurrency=n)
    # Then Ray restarts it, and every one of them runs again and completes: none lost
    metrics = wait_for(lambda: drained(queue), timeout=120)
    assert (metrics.completed, metrics.failed) == (n, 0)
    for run in _runs(tmp_path, n):
        first, again = run[:2], run[2:]
        assert [w.split(":")[0] for w in run] == ["start", "end", "start", "end"]
        assert first[0].split(":")[1] == first[1].split(":")[1] != again[0].split(":")[1]
    # and each is journaled once, by the run after the restart
    steps = journaled_steps(ray_session.storage, [worker.id])
    assert len(steps) == len(set(steps)) == n
    assert all(queue.get(i).result()["status"] == "completed" for i in ids)


def test_outcomes_the_full_disk_refuses_are_reported_from_memory(setup, tmp_path, caplog):
    # Given 10 jobs running on a worker whose disk then fills up
    queue, _, start = setup
    n, opened = 10, tmp_path / "open"
    queue.enqueue_many([{"type": "commit-held", "payload": {
        "dir": str(tmp_path), "i": i, "open": str(opened), "size": 4000}} for i in range(n)]).result()
    (worker,) = start(1, concurrency=n)
    wait_for(lambda: queue.get_metrics().running.result() == n)
    storage = live_object(worker).storage
    fill_disk(storage)
    # When they finish, their outcomes cannot be written down
    opened.touch()
    # Then they go to the queue from memory all the same: none is left running, and
    # none ran twice
    assert wait_for(lambda: drained(queue)).completed == n
    assert "could not write down" in caplog.text
    assert worker.info().result()["commits"]["batches"] == 0
    assert all(len(run) == 1 for run in _runs(tmp_path, n))
    # And once there is space again, the worker goes on
    storage.sql.execute("PRAGMA max_page_count = 1073741823")
    queue.enqueue("echo", 1).result()
    assert wait_for(lambda: drained(queue)).completed == n + 1
    assert worker.info().result()["commits"]["batches"] == 1
