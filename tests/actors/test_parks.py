"""Durable waits (actors/parks.py, dotdo/waits.py): jobs that sleep, wait for an
awakeable or a child job, holding no worker, and replay their steps when they resume.
On the test clock (dotdo.testing): days pass in a call."""

from __future__ import annotations

import asyncio

import pytest

import dotdo
from dotdo import codec
from tests.conftest import wait_for

RUNS: dict[str, int] = {}  # handler runs by job id (this process: in-process hosting)
TOKENS: dict[str, str] = {}  # awakeables' ids by job id, as a handler hands them out
STEPS: dict[str, int] = {}  # step runs by step id


def _count(table: dict[str, int], key: str) -> int:
    table[key] = table.get(key, 0) + 1
    return table[key]


def _step(key: str):
    def run() -> str:
        _count(STEPS, key)
        return f"{key} done"
    return run


@dotdo.job("parks-sleeper")
async def sleeper(payload: dict) -> dict:
    job = dotdo.current_job()["id"]
    _count(RUNS, job)
    before = await dotdo.do(_step(f"{job}-before"), step_id=f"{job}-before")
    await dotdo.sleep(payload["seconds"])
    after = await dotdo.do(_step(f"{job}-after"), step_id=f"{job}-after")
    return {"before": before, "after": after}


@dotdo.job("parks-approval")
async def approval(payload: dict) -> dict:
    job = dotdo.current_job()["id"]
    _count(RUNS, job)
    token = await dotdo.awakeable()
    TOKENS[job] = token
    try:
        value = await dotdo.wait(token, timeout=payload.get("timeout"))
    except dotdo.RejectedError as exc:
        return {"rejected": str(exc)}
    except TimeoutError:
        return {"timed_out": True}
    return {"approved": value}


@dotdo.job("parks-token")
async def token_of(payload: dict) -> str:
    """Hands its awakeable's id out, then waits for it."""
    job = dotdo.current_job()["id"]
    token = await dotdo.awakeable()
    TOKENS[job] = token  # as an email with the link would carry it
    return await dotdo.wait(token)


@dotdo.job("parks-early")
async def early(payload: None) -> str:
    """Its awakeable is resolved while it sleeps, before it waits."""
    job = dotdo.current_job()["id"]
    _count(RUNS, job)
    token = await dotdo.awakeable()
    TOKENS[job] = token
    await dotdo.sleep(86_400)
    return await dotdo.wait(token)


@dotdo.job("parks-child")
async def child(payload: int) -> int:
    if payload < 0:
        raise dotdo.TerminalError("negative")
    return payload * 2


@dotdo.job("parks-parent")
async def parent(payload: int) -> dict:
    doubled = await dotdo.run_job("parks-child", payload)
    try:
        await dotdo.run_job("parks-child", -1)
    except dotdo.JobError as exc:
        return {"doubled": doubled, "child_error": str(exc)}
    return {"doubled": doubled}


def test_a_sleeping_job_holds_nothing_and_resumes_replaying_its_steps(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    start = dotdo_local.now()
    job_id = queue.enqueue("parks-sleeper", {"seconds": 3 * 86_400}).result()["$id"]
    first = dotdo_local.drain(queue)
    assert (first.completed, first.later, first.next_at) == ([], 1, start + 3 * 86_400)
    job = queue.get(job_id).result()
    assert job["status"] == "sleeping"
    assert job["wakeAt"] == start + 3 * 86_400 and job["waitingFor"] == "sleep#1"
    assert job["worker"] is None
    assert queue.get_metrics().result().sleeping == 1
    dotdo_local.advance(3 * 86_400 - 1)
    assert dotdo_local.drain(queue).completed == []
    dotdo_local.advance(1)
    assert dotdo_local.drain(queue).completed == [job_id]
    assert queue.result(job_id).result()["output"] == {"before": f"{job_id}-before done",
                                                       "after": f"{job_id}-after done"}
    assert RUNS[job_id] == 2  # run once, parked, run again
    assert STEPS[f"{job_id}-before"] == 1  # replayed, not run again
    assert STEPS[f"{job_id}-after"] == 1


def test_an_awakeable_resolved_before_the_wait_is_kept_and_a_second_resolve_is_refused(
        dotdo_local, unique):
    queue = dotdo.Queue(unique)
    job_id = queue.enqueue("parks-token").result()["$id"]
    dotdo_local.drain(queue)
    job = queue.get(job_id).result()
    assert (job["status"], job["waitingFor"]) == ("waiting", "wait#1")
    points = {p["key"]: p["state"] for p in queue.points(job_id).result()}
    assert points == {"awakeable#1": "open", "wait#1": "open"}
    dotdo.resolve(TOKENS[job_id], {"ok": True}).result()
    with pytest.raises(dotdo.AwakeableError, match="settled before"):
        dotdo.resolve(TOKENS[job_id], {"ok": False}).result()
    with pytest.raises(dotdo.AwakeableError, match="settled before"):
        dotdo.reject(TOKENS[job_id], "too late").result()
    assert dotdo_local.drain(queue).completed == [job_id]
    assert queue.result(job_id).result()["output"] == {"ok": True}


def test_a_resolve_that_comes_before_the_wait_is_kept(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    job_id = queue.enqueue("parks-early").result()["$id"]
    dotdo_local.drain(queue)  # the run makes its awakeable, then sleeps a day
    assert queue.get(job_id).result()["status"] == "sleeping"
    dotdo.resolve(TOKENS[job_id], "early").result()
    dotdo_local.advance(86_400)
    assert dotdo_local.drain(queue).completed == [job_id]
    assert queue.result(job_id).result()["output"] == "early"
    assert RUNS[job_id] == 2  # the wait did not park: its value was there


def test_a_rejected_awakeable_raises_in_the_job_and_a_wait_can_time_out(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    rejected = queue.enqueue("parks-approval", {}).result()["$id"]
    timed = queue.enqueue("parks-approval", {"timeout": 3600}).result()["$id"]
    dotdo_local.drain(queue)
    dotdo.reject(TOKENS[rejected], "refund refused").result()
    assert dotdo_local.drain(queue).completed == [rejected]
    assert queue.result(rejected).result()["output"] == {"rejected": "refund refused"}
    assert queue.get(timed).result()["wakeAt"] == dotdo_local.now() + 3600
    dotdo_local.advance(3600)
    assert dotdo_local.drain(queue).completed == [timed]
    assert queue.result(timed).result()["output"] == {"timed_out": True}


def test_bad_tokens_and_waits_outside_a_job_are_refused_clearly(dotdo_local):
    with pytest.raises(ValueError, match="not an awakeable's id"):
        dotdo.resolve("nonsense", 1)
    with pytest.raises(ValueError, match="damaged or cut short"):
        dotdo.resolve("awk_%%%", 1)
    with pytest.raises(ValueError, match="a rejection has a reason"):
        dotdo.reject("awk_x", "")
    with pytest.raises(RuntimeError, match="inside an async job handler"):
        asyncio.run(dotdo.sleep(1))
    with pytest.raises(ValueError, match="seconds"):
        asyncio.run(dotdo.sleep(-1))


def test_a_parent_job_waits_for_its_children_and_gets_their_results_and_errors(
        dotdo_local, unique):
    queue = dotdo.Queue(unique)
    job_id = queue.enqueue("parks-parent", 21).result()["$id"]
    for _ in range(6):
        dotdo_local.drain(queue)
    job = queue.get(job_id).result()
    assert job["status"] == "completed", job
    out = queue.result(job_id).result()["output"]
    assert out["doubled"] == 42
    assert "negative" in out["child_error"]
    first_child = queue.get(f"{job_id}.child1").result()
    assert first_child["parent"] == {"queue": unique, "id": job_id}


CODE = {"version": 1}  # the handler's code as deployed: a test "deploys" by changing it


@dotdo.job("parks-deploy")
async def deployed(payload: None) -> list:
    job = dotdo.current_job()["id"]
    done = [await dotdo.do(_step(f"{job}-a"), step_id=f"{job}-a")]
    if CODE["version"] >= 2 and dotdo.patched("extra"):
        done.append(await dotdo.do(_step(f"{job}-extra"), step_id=f"{job}-extra"))
    await dotdo.sleep(60)
    if CODE["version"] < 3:
        done.append(await dotdo.do(_step(f"{job}-b"), step_id=f"{job}-b"))
    return done


@pytest.fixture
def code():
    yield CODE
    CODE["version"] = 1


def test_a_patch_deployed_while_a_run_sleeps_keeps_that_run_on_its_old_path(
        dotdo_local, unique, code):
    queue = dotdo.Queue(unique)
    old = queue.enqueue("parks-deploy").result()["$id"]
    dotdo_local.drain(queue)  # step a, then asleep under version 1
    code["version"] = 2  # the deploy: a step added before the sleep, under a patch
    new = queue.enqueue("parks-deploy").result()["$id"]
    dotdo_local.drain(queue)  # the new run takes the patch, then sleeps
    dotdo_local.advance(60)
    assert sorted(dotdo_local.drain(queue).completed) == sorted([old, new])
    # The run that slept past the patch's place goes on without it; the new one took it
    assert queue.result(old).result()["output"] == [f"{old}-a done", f"{old}-b done"]
    assert queue.result(new).result()["output"] == [
        f"{new}-a done", f"{new}-extra done", f"{new}-b done"]
    assert f"{old}-extra" not in STEPS and STEPS[f"{new}-extra"] == 1


def test_a_run_resumed_under_code_that_lost_a_step_it_passed_fails_naming_the_step(
        dotdo_local, unique, code):
    queue = dotdo.Queue(unique)
    job_id = queue.enqueue("parks-deploy").result()["$id"]
    dotdo_local.drain(queue)
    dotdo_local.advance(60)
    dotdo_local.drain(queue)  # version 1 to the end: steps a, sleep, b
    assert queue.get(job_id).result()["status"] == "completed"
    again = queue.enqueue("parks-deploy").result()["$id"]
    dotdo_local.drain(queue)  # parked after step a ...
    code["version"] = 3  # ... and the deploy removes step b; nothing is lost yet
    dotdo_local.advance(60)
    assert dotdo_local.drain(queue).completed == [again]  # b was never passed: fine
    # A run that had passed b before its worker went away, resumed without b, fails
    code["version"] = 1
    third = queue.enqueue("parks-deploy").result()["$id"]
    dotdo_local.drain(queue)
    dotdo_local.advance(60)
    RUNS.pop(third, None)
    (grant,) = queue.claim("w-old", 1, wait=0.0, idle=True).result()["jobs"]
    queue.step_begin("w-old", third, grant["uid"], grant["lease"], f"{third}-b").result()
    queue.step_finish("w-old", third, grant["uid"], grant["lease"], f"{third}-b",
                      codec.encode("b by the old code"), 1, 0.0, 0.0).result()
    # its worker hands the job back (it stopped) before the run ends
    queue.complete("w-old", [[third, grant["uid"], grant["lease"], "released", None, 0]]).result()
    code["version"] = 3
    drained = dotdo_local.drain(queue)
    assert drained.failed == [third]
    job = queue.get(third).result()
    assert job["error"].startswith("ReplayError: ")
    assert f"step:{third}-b" in job["error"] and "dotdo.patched" in job["error"]
    assert job["attempts"] >= 1


def test_cancelling_a_parent_cancels_its_unfinished_children(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    parent_id = queue.enqueue("parks-parent-of-sleeper").result()["$id"]
    dotdo_local.drain(queue)
    child_id = f"{parent_id}.child1"
    assert queue.get(parent_id).result()["status"] == "waiting"
    assert queue.get(child_id).result()["status"] == "sleeping"
    assert queue.children(parent_id).result() == [
        {"queue": unique, "id": child_id, "type": "parks-sleeper", "point": "child#1"}]
    queue.cancel(parent_id).result()
    assert queue.get(parent_id).result()["status"] == "cancelled"
    assert queue.get(child_id).result()["status"] == "cancelled"


@dotdo.job("parks-parent-of-sleeper")
async def parent_of_sleeper(payload: None) -> dict:
    return await dotdo.run_job("parks-sleeper", {"seconds": 3600})


@dotdo.job("parks-parent-elsewhere")
async def parent_elsewhere(payload: dict) -> int:
    return await dotdo.run_job("parks-child", payload["n"], queue=payload["queue"])


def test_a_child_in_another_queue_reports_its_end_to_its_parent(dotdo_local, unique):
    parents, children = dotdo.Queue(f"{unique}-a"), dotdo.Queue(f"{unique}-b")
    job_id = parents.enqueue("parks-parent-elsewhere",
                             {"n": 5, "queue": children.id}).result()["$id"]
    dotdo_local.drain(parents)
    child_id = f"{job_id}.child1"
    assert children.get(child_id).result()["parent"] == {"queue": parents.id, "id": job_id}
    assert dotdo_local.drain(children).completed == [child_id]
    # the child's end travels to the parent's queue (a notice, kept until it is taken)
    assert wait_for(lambda: parents.get(job_id).result()["status"] == "pending")
    assert dotdo_local.drain(parents).completed == [job_id]
    assert parents.result(job_id).result()["output"] == 10


def test_a_wait_ended_before_its_point_was_written_is_found_by_the_next_run(
        dotdo_local, unique):
    # A run registered where its answer would come from, then died before writing its
    # point: what came meanwhile is kept for the run that comes next
    queue = dotdo.Queue(unique)
    job_id = queue.enqueue("parks-token").result()["$id"]
    (grant,) = queue.claim("w-gone", 1, wait=0.0, idle=True).result()["jobs"]
    assert queue.deliver(job_id, grant["uid"], "wait#1", "done", codec.encode("came")).result()
    assert not queue.deliver(job_id, grant["uid"], "wait#1", "done", codec.encode("again")).result()
    queue.complete("w-gone", [[job_id, grant["uid"], grant["lease"], "released", None, 0]]).result()
    assert dotdo_local.drain(queue).completed == [job_id]
    assert queue.result(job_id).result()["output"] == "came"
    assert not queue.deliver("no-such-job", None, "wait#1", "done", codec.encode(1)).result()
