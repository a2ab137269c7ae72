"""Promises and pipelining: their logic in process, what touches Ray on real Ray."""

import asyncio

import pytest
import ray

import dotdo
from dotdo import client
from tests.objects import Counter, Metrics, Pipe, Room, Stepping


def calls(stub) -> int:
    stats = dotdo.get(client.actor_handle(stub).stats.remote())
    return stats["calls"].get(f"{stub.class_name}/{stub.id}", 0)


def test_call_returns_a_promise_that_resolves(ray_session):
    p = dotdo.Pipe("p1").echo(1, k="v")
    assert isinstance(p, dotdo.Promise)
    assert p.result() == {"args": [1], "kwargs": {"k": "v"}}
    assert asyncio.run(_await(p)) == {"args": [1], "kwargs": {"k": "v"}}
    assert ray.get(p.ref) == {"args": [1], "kwargs": {"k": "v"}}


async def _await(p):
    return await p


def test_get_resolves_lists_in_order(local_session):
    pipe = dotdo.Pipe("p1")
    assert dotdo.get([pipe.hop(i) for i in range(50)]) == list(range(1, 51))


def test_projection_costs_one_actor_call(local_session):
    pipe = dotdo.Pipe("p-proj")
    pipe.echo().result()  # activate
    before = calls(pipe)
    assert asyncio.run(_await(pipe.metrics().pending)) == 7
    assert calls(pipe) == before + 1
    record = pipe.record()
    assert record.items[2].result() == 30
    assert record["field"].result() == "made-by-p-proj"
    assert calls(pipe) == before + 2


def test_projection_ref_is_a_real_object_ref(ray_session):
    p = dotdo.Pipe("p1").record().items[1]
    assert ray.get(p.ref) == 20


def test_promise_argument_is_resolved_on_the_receiving_side(ray_session):
    a, b = dotdo.Pipe("p1"), dotdo.Pipe("p2")
    source = a.slow(1.5, Metrics(pending=3, done=0))
    dependent = b.use(source.pending)
    # Given the dependent call was submitted, the source is still running: the
    # caller did not wait for it.
    ready, _ = ray.wait([source.ref], timeout=0)
    assert ready == []
    assert dependent.result() == "p2 used 3"


def test_promises_nested_in_arguments(local_session):
    a, b = dotdo.Pipe("p1"), dotdo.Pipe("p2")
    out = b.echo([a.hop(1), {"x": a.record()["field"]}], k=(a.hop(2),)).result()
    assert out == {"args": [[2, {"x": "made-by-p1"}]], "kwargs": {"k": (3,)}}


def test_raw_object_ref_is_accepted_as_argument(ray_session):
    ref = ray.put(41)
    assert dotdo.Pipe("p1").hop(ref).result() == 42


def test_method_call_on_a_promised_stub(local_session, unique):
    counter = dotdo.Pipe("p1").peer(unique)  # a promise of a stub
    assert counter.incr(5).result() == 5
    assert dotdo.Counter(unique).get().result() == 5


def test_method_call_on_promise_runs_without_await(ray_session, unique):
    dotdo.Pipe("p1").peer(unique).incr(2)  # fire and forget
    counter = dotdo.Counter(unique)
    for _ in range(200):
        if counter.get().result() == 2:
            break
        ray.wait([dotdo.Pipe("p1").slow(0.05).ref])
    assert counter.get().result() == 2


def test_stub_passed_into_object_is_called_there(local_session, unique):
    assert dotdo.Pipe("p1").call_peer(dotdo.Counter(unique), 3).result() == 3
    assert dotdo.Counter(unique).get().result() == 3


def test_failure_propagates_to_everything_derived(local_session):
    a, b = dotdo.Pipe("p1"), dotdo.Pipe("p2")
    bad = a.fail("no such order")
    derived = [bad, bad.pending, bad["k"], b.use(bad), b.echo([bad.x]), bad.upper()]
    for p in derived:
        with pytest.raises(ValueError, match="no such order"):
            p.result()
    with pytest.raises(ValueError, match="no such order"):
        asyncio.run(_await(b.use(bad.field)))


def test_calls_from_one_caller_arrive_in_order(local_session, unique):
    counter = dotdo.Counter(unique)
    slow = dotdo.Pipe("p1").slow(0.5, "late")
    ps = [counter.append(i) for i in range(100)] + [counter.append(slow)]
    ps += [counter.append(i) for i in range(100, 150)]
    dotdo.get(ps)
    assert counter.seen().result() == list(range(100)) + ["late"] + list(range(100, 150))


def test_result_timeout(local_session):
    with pytest.raises(TimeoutError):
        dotdo.Pipe("p1").slow(2).result(timeout=0.1)


def test_unknown_method_names_the_known_ones(local_session):
    with pytest.raises(dotdo.MethodNotFoundError, match="no public method 'nope'.*echo"):
        dotdo.Pipe("p1").nope().result()
    with pytest.raises(AttributeError, match="public methods only"):
        dotdo.Pipe("p1")._private()


def test_promise_has_no_truth_value(local_session):
    with pytest.raises(TypeError, match="await it"):
        bool(dotdo.Pipe("p1").hop(1))


def test_failed_argument_does_not_hold_up_later_calls(ray_session, unique):
    counter = dotdo.Counter(unique)
    bad = dotdo.Pipe("p1").fail_later(0.3, "upstream broke")
    ps = [counter.append(1), counter.append(bad), counter.append(3)]
    with pytest.raises(ValueError, match="upstream broke"):
        ps[1].result()
    assert dotdo.get([ps[0], ps[2]], timeout=60) == [1, 2]
    assert counter.seen().result() == [1, 3]
    # The caller told the host to skip the failed call: no gap was waited out.
    assert ray.get(client.actor_handle(counter).stats.remote())["gaps_skipped"] == 0


def test_typed_stubs_are_the_stubs_of_the_short_form(local_session, unique):
    stub = Counter.stub(unique)
    assert stub == dotdo.stub(Counter, unique) == dotdo.Counter(unique)
    assert (stub.class_name, stub.id) == ("Counter", unique)
    with pytest.raises(dotdo.ConfigError, match="`stub` is DurableObject's own"):
        type("Shadowing", (dotdo.DurableObject,), {"stub": lambda self: None})


def test_call_submits_the_method_by_name(ray_session, unique):
    counter = Counter.stub(unique)
    p = counter.call(Counter.incr, 2)
    assert isinstance(p, dotdo.Promise)
    assert p.result() == 2
    assert counter.call(Counter.incr, by=3).result() == 5
    assert counter.incr(1).result() == 6  # the short form calls the same object
    assert counter.call(Counter.get).result() == 6
    # An async method: what it returns, awaited.
    assert asyncio.run(_await(Pipe.stub("p1").call(Pipe.slow, 0.01, "late"))) == "late"
    assert dotdo.get(Pipe.stub("p1").call(Pipe.record)["items"]) == [10, 20, 30]


def test_call_takes_inherited_methods(local_session, unique):
    room = Room.stub(unique)
    assert room.call(Stepping.step, "s1").result() == 1
    assert room.call(Stepping.runs, "s1").result() == 1


def test_call_takes_only_public_methods_of_the_stubs_class(local_session, unique):
    counter = Counter.stub(unique)
    # Room.incr has the name of Counter.incr, but is another class's method.
    for wrong in (Room.incr, Pipe.hop, Counter.__init__, "incr", len):
        with pytest.raises(dotdo.MethodNotFoundError, match="a public method of Counter"):
            counter.call(wrong, 1)
    assert counter.get().result() == 0  # nothing was sent
