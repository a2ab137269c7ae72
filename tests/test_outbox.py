"""Adaptive call batching and same-host pipelining are invisible but for speed.

Most tests hold queued calls back (``HOLD`` of 10 s) so that the calls after the
first go out together, in one Ray task, only when somebody needs one: what they
check then does not depend on how fast this machine issues calls.
"""

import asyncio
import threading

import pytest
import ray

import dotdo
from dotdo import client, outbox
from dotdo.promise import Slot
from tests import objects  # noqa: F401  (registers Pipe, Recorder, Counter)
from tests.conftest import kill_and_wait, wait_for


@pytest.fixture
def held(monkeypatch):
    """Queued calls wait for somebody to need them (or 10 s)."""
    monkeypatch.setattr(outbox, "HOLD", 10.0)


def _stats(stub) -> dict:
    return ray.get(client.actor_handle(stub).stats.remote())


def _batched(promise) -> bool:
    ref = promise._ref
    return type(ref) is Slot and ref.batched


def test_calls_issued_together_go_as_one_task_in_their_order(make_object, unique, held):
    recorder = make_object("Recorder", unique)
    recorder.notes("log").result()  # sent just now: the next calls queue
    before = _stats(recorder)
    # Given 200 calls issued without waiting
    promises = [recorder.note("log", i) for i in range(200)]
    # When they are gathered
    dotdo.get(promises)
    # Then they ran in the order they were issued, in one Ray task
    assert recorder.notes("log").result() == list(range(200))
    after = _stats(recorder)
    assert after["batches"] - before["batches"] == 1
    assert after["batched_calls"] - before["batched_calls"] == 200
    assert all(_batched(p) for p in promises)


def test_a_failing_call_in_a_batch_fails_alone(make_object, unique, held):
    pipe, other = make_object("Pipe", unique), make_object("Pipe", unique + "-other")
    pipe.echo("up").result()
    first, failing, last = pipe.echo(1), pipe.fail("boom"), pipe.echo(3)
    assert dotdo.get([first, last]) == [{"args": [1], "kwargs": {}}, {"args": [3], "kwargs": {}}]
    assert _batched(failing)
    # Its own error, with the remote traceback, through every way of reading it
    with pytest.raises(ValueError, match="boom") as raised:
        failing.result()
    assert any("raised remotely" in note for note in raised.value.__notes__)
    with pytest.raises(ValueError, match="boom"):
        ray.get(failing.ref)
    # ...and a call taking it as an argument fails with it, as for a call sent alone
    with pytest.raises(ValueError, match="boom"):
        other.use(failing).result()
    assert pipe.echo("next").result() == {"args": ["next"], "kwargs": {}}


def test_sync_calls_of_a_batch_share_a_commit_but_a_failing_one_undoes_only_its_own(
    make_object, unique, held
):
    recorder = make_object("Recorder", unique)
    recorder.notes("log").result()
    # Given sync calls sent together, one failing after writing in its transaction
    calls = [recorder.note("log", "a"), recorder.note_then_fail("log", "b"),
             recorder.note("log", "c")]
    with pytest.raises(ValueError, match="failed after noting 'b'"):
        calls[1].result()
    # Then its write is undone and the others' are kept, durably (a new process reads them)
    dotdo.get([calls[0], calls[2]])
    kill_and_wait(recorder)
    assert recorder.notes("log").result() == ["a", "c"]


def test_a_queued_call_that_cannot_be_sent_fails_at_once_and_takes_no_turn(
    make_object, unique, held
):
    pipe = make_object("Pipe", unique)
    pipe.echo("up").result()
    sent = pipe.echo("queued")
    with pytest.raises(dotdo.EncodeError, match="Pipe.echo"):
        pipe.echo(threading.Lock())
    assert dotdo.get([sent, pipe.echo("after")]) == [
        {"args": ["queued"], "kwargs": {}}, {"args": ["after"], "kwargs": {}}]


def test_a_slow_call_does_not_hold_up_the_quick_calls_sent_with_it(make_object, unique, held):
    pipe, other = make_object("Pipe", unique), make_object("Pipe", unique + "-other")
    pipe.echo("up").result()
    late_before = _stats(pipe).get("late_calls", 0)
    # Given a batch of two slow calls (one fails in the end) and a quick one
    slow, failing, quick = (pipe.slow(0.5, "slow"), pipe.fail_later(0.5, "late boom"),
                            pipe.echo("quick"))
    # Then the quick one returns first, and the slow ones' outcomes follow
    assert quick.result(timeout=60) == {"args": ["quick"], "kwargs": {}}
    assert not slow.done()
    assert _stats(pipe)["late_calls"] - late_before == 2
    assert slow.result(timeout=60) == "slow"
    with pytest.raises(ValueError, match="late boom"):
        failing.result(timeout=60)
    with pytest.raises(ValueError, match="late boom"):
        ray.get(failing.ref)
    with pytest.raises(ValueError, match="late boom"):
        other.use(failing).result(timeout=60)
    assert other.use(slow).result(timeout=60) == f"{unique}-other used 'slow'"

    async def awaited():
        return await slow

    assert asyncio.run(awaited()) == "slow"


def test_a_batch_that_comes_before_the_call_ahead_of_it_waits_for_it(make_object, unique, held):
    recorder, pipe = make_object("Recorder", unique), make_object("Pipe", unique + "-pipe")
    recorder.notes("log").result()
    pipe.echo("up").result()
    before = _stats(recorder)
    # Given a call that Ray holds back for its argument (ready in 0.5 s), then a batch
    first = recorder.note("log", pipe.slow(0.5, "first"))
    batch = [recorder.note("log", i) for i in range(50)]
    # When the batch reaches the host before that call
    dotdo.get(batch)
    first.result()
    # Then it waited for its turn, and every call ran in the order issued
    assert _stats(recorder)["turn_waits"] - before["turn_waits"] >= 1
    assert recorder.notes("log").result() == ["first", *range(50)]


def test_cancelling_one_call_of_a_batch_leaves_the_others(make_object, unique, held):
    pipe = make_object("Pipe", unique)
    pipe.echo("up").result()
    # Given a batch of a long call and a quick one, both started
    slow, quick = pipe.slow(3600, "never"), pipe.echo("quick")
    assert quick.result(timeout=60) == {"args": ["quick"], "kwargs": {}}
    assert _batched(slow)
    # When the long one is cancelled
    slow.cancel()
    # Then it alone ends, cancelled, and the object goes on
    with pytest.raises(ray.exceptions.TaskCancelledError):
        slow.result(timeout=60)
    assert pipe.echo("later").result() == {"args": ["later"], "kwargs": {}}


def test_a_call_cancelled_while_queued_never_runs(make_object, unique, held):
    recorder = make_object("Recorder", unique)
    recorder.notes("log").result()
    kept, cancelled = recorder.note("log", "kept"), recorder.note("log", "cancelled")
    assert type(cancelled._ref) is Slot and cancelled._ref.ref is None
    cancelled.cancel()
    with pytest.raises(ray.exceptions.TaskCancelledError):
        cancelled.result(timeout=60)
    kept.result(timeout=60)
    recorder.note("log", "after").result(timeout=60)
    assert recorder.notes("log").result() == ["kept", "after"]


def test_promise_arguments_work_across_batches_and_hosts(make_object, unique, held):
    pipe, other = make_object("Pipe", unique), make_object("Pipe", unique + "-b")
    pipe.echo("up").result()
    made = pipe.record()  # queued
    # The same object (same host), another object (a host or not), in later batches
    here = pipe.use(made.field)
    dotdo.get([here])
    there = other.use(made["items"][1])
    assert here.result() == f"{unique} used 'made-by-{unique}'"
    assert there.result() == f"{unique}-b used 20"
    assert _batched(made) and _batched(here)


def test_a_local_argument_from_a_previous_life_of_the_host_comes_from_the_caller(
    make_object, unique
):
    pipe = make_object("Pipe", unique)
    made = pipe.record()
    assert made.result()["field"] == f"made-by-{unique}"
    # Given a host that forgot the call that made the value (it died since)
    kill_and_wait(pipe)
    # Then a call on it taking that value gets it from this caller's copy
    assert pipe.use(made.field).result() == f"{unique} used 'made-by-{unique}'"


@pytest.mark.dedicated_pass("kills the host of its own pooled class, whatever the default")
def test_a_batch_in_flight_when_its_host_dies_fails_each_call_as_one_would(
    make_object, unique, held
):
    pipe = make_object("Pipe", unique)
    pipe.echo("up").result()
    calls = [pipe.slow(3600, i) for i in range(3)]
    calls[0].done()  # send them
    assert all(_batched(c) for c in calls[1:])
    wait_for(lambda: _stats(pipe)["calls"].get(f"Pipe/{unique}", 0) >= 4)
    kill_and_wait(pipe)
    for call in calls:
        with pytest.raises(ray.exceptions.RayActorError):
            call.result(timeout=60)
    assert pipe.echo("back").result() == {"args": ["back"], "kwargs": {}}


def test_a_chain_on_one_pooled_host_resolves_there_and_equals_the_awaited_chain(
    make_object, unique, held
):
    hops = [make_object("PooledHop", f"{unique}-{i}") for i in range(20)]
    dotdo.get([h.hop(0) for h in hops])  # all up
    before = _stats(hops[0])["local_args"]
    # Given a chain of 20 calls, each taking the one before as its argument
    value = 0
    for h in hops:
        value = h.hop(value)
    pipelined = value.result(timeout=60)
    awaited = 0
    for h in hops:
        awaited = h.hop(awaited).result()
    # Then it returns what the awaited chain returns, every hop resolved in the host
    assert pipelined == awaited == 20
    assert _stats(hops[0])["local_args"] - before == 19


def test_the_results_a_host_keeps_for_local_arguments_are_bounded():
    from dotdo.host import Results
    from dotdo.promise import Local

    async def main():
        results = Results(keep=3, max_age=60.0)
        long_call = results.arrive(("s", 0))  # a call running all along
        for seq in range(1, 50):
            Results.settle(results.arrive(("s", seq)), seq)
        await asyncio.sleep(0)  # the futures' done callbacks
        kept = len(results._futures) + len(results._finished)
        Results.settle(long_call, "done at last")
        # a call that finished long ago comes from the caller's copy (here: a future)
        loop = asyncio.get_running_loop()
        copy = loop.create_future()
        copy.set_result("from the caller")
        early = await results.value(Local("s", 1, copy))
        late = await results.value(Local("s", 49, None))
        return kept, early, late

    kept, early, late = asyncio.run(main())
    assert kept <= 4  # the 3 newest finished ones, and the running one
    assert (early, late) == ("from the caller", 49)
