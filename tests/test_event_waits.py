"""Jobs waiting for events (``dotdo.wait_for_event``): App("default") matches every
event sent (from the driver, a job handler, an object) against the waits its queues
registered (dotdo/watches.py), and wakes each job through its queue. In process, on
the test clock, but for one test on Ray."""

from __future__ import annotations

import asyncio

import pytest

import dotdo
from dotdo import client, codec
from dotdo.current import acting_for, restore
from tests.conftest import kill_and_wait, live_object, wait_for

PAYMENT = "Payment.received"


@dotdo.job("evwait-payment")
async def wait_for_payment(payload: dict) -> dict:
    try:
        event = await dotdo.wait_for_event(PAYMENT, match=payload.get("match"),
                                           timeout=payload.get("timeout"))
    except TimeoutError:
        return {"timed_out": True}
    return {"id": event.id, "type": event.type, "data": event.data}


@dotdo.job("evwait-pay")
async def pay(payload: dict) -> None:
    dotdo.send(PAYMENT, payload)  # inside a job handler: the worker's own event


@dotdo.job("evwait-pay-sync")
def pay_sync(payload: dict) -> None:
    dotdo.send(PAYMENT, payload)  # a sync handler (in the worker's pool, or on its loop)


class EvwaitShop(dotdo.DurableObject):
    """Sends payments from inside an object."""

    def pay(self, order: int, amount: int = 1) -> None:
        dotdo.send(PAYMENT, {"order": order, "amount": amount})

    def chatter(self, n: int, event_type: str = "Order.viewed") -> None:
        for i in range(n):
            dotdo.send(event_type, {"order": i})


def _app():
    return dotdo.App(dotdo.DEFAULT_APP)


def _park(env, queue, match: dict | None, **payload) -> str:
    """Enqueue a job waiting for a payment, run it until it parks; its id."""
    job_id = queue.enqueue("evwait-payment", {"match": match, **payload}).result()["$id"]
    env.drain(queue)
    job = queue.get(job_id).result()
    assert (job["status"], job["waitingFor"]) == ("waiting", "event#1"), job
    return job_id


def _woken(env, queue) -> list[str]:
    """Let what was sent reach the App and the queue, then run the ready jobs."""
    env.advance(0)
    return env.drain(queue).completed


def test_a_job_wakes_for_the_event_it_matches_and_gets_it(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    job_id = _park(dotdo_local, queue, {"order": 7})
    other = _park(dotdo_local, queue, {"order": 7, "currency": "EUR"})
    assert {w["jobId"]: w["match"] for w in _app().event_waits().result()} == {
        job_id: {"order": 7}, other: {"order": 7, "currency": "EUR"}}
    dotdo.send(PAYMENT, {"order": 8, "amount": 10})  # another order: nobody wakes
    dotdo.send("Payment.refunded", {"order": 7})  # another type
    assert _woken(dotdo_local, queue) == []
    assert queue.get(job_id).result()["status"] == "waiting"
    dotdo.send(PAYMENT, {"order": 7.0, "amount": 12})  # 7.0 is 7; "currency" is missing
    assert _woken(dotdo_local, queue) == [job_id]
    out = queue.result(job_id).result()["output"]
    assert out["type"] == PAYMENT and out["data"] == {"order": 7, "amount": 12}
    assert isinstance(out["id"], str) and out["id"]
    assert [w["jobId"] for w in _app().event_waits().result()] == [other]
    dotdo.send(PAYMENT, {"order": 7, "currency": "EUR"})
    assert _woken(dotdo_local, queue) == [other]
    assert _app().event_waits().result() == []


def test_an_empty_match_takes_any_event_of_the_type(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    job_id = _park(dotdo_local, queue, None)
    dotdo.send(PAYMENT, "not even a dict")
    assert _woken(dotdo_local, queue) == [job_id]
    assert queue.result(job_id).result()["output"]["data"] == "not even a dict"


def test_events_sent_in_job_handlers_and_objects_wake_waiting_jobs(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    payers = dotdo.Queue(f"{unique}-payers")
    by_job = _park(dotdo_local, queue, {"order": 1})
    by_sync_job = _park(dotdo_local, queue, {"order": 2})
    by_object = _park(dotdo_local, queue, {"order": 3})
    payers.enqueue("evwait-pay", {"order": 1, "amount": 5}).result()
    payers.enqueue("evwait-pay-sync", {"order": 2, "amount": 6}).result()
    assert len(dotdo_local.drain(payers).completed) == 2
    assert sorted(_woken(dotdo_local, queue)) == sorted([by_job, by_sync_job])
    shop = dotdo.EvwaitShop(unique)
    shop.pay(3, 7).result()
    assert _woken(dotdo_local, queue) == [by_object]
    # Events nobody waits for, sent at the very time of the App's last answer (the
    # test clock stands still): one more answer spares them, and the object settles.
    shop.chatter(3).result()
    dotdo_local.advance(0)
    assert live_object(shop)._dotdo_activity.idle
    outputs = {j: queue.result(j).result()["output"]["data"] for j in (by_job, by_sync_job, by_object)}
    assert outputs == {by_job: {"order": 1, "amount": 5}, by_sync_job: {"order": 2, "amount": 6},
                       by_object: {"order": 3, "amount": 7}}


def test_an_event_sent_before_the_wait_began_does_not_wake_it(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    dotdo.send(PAYMENT, {"order": 7})  # from the driver, then from an object
    dotdo.EvwaitShop(unique).pay(7).result()
    dotdo_local.advance(1)
    job_id = _park(dotdo_local, queue, {"order": 7})
    # An object's event reaches the App a moment after it was sent: one sent before
    # the wait began does not match it even when it arrives after, one sent after does.
    began = _app().event_waits().result()[0]["since"]
    late = [["late-1", PAYMENT, codec.encode({"order": 7}), began - 0.5]]
    assert _app().observe(late).result()[1] == [PAYMENT]
    assert _woken(dotdo_local, queue) == []
    assert queue.get(job_id).result()["status"] == "waiting"
    after = [["after-1", PAYMENT, codec.encode({"order": 7}), began]]
    _app().observe(after).result()
    _app().observe(after).result()  # sent again (a forward repeated): matches nothing now
    assert _woken(dotdo_local, queue) == [job_id]
    assert queue.result(job_id).result()["output"]["id"] == "after-1"


def test_a_wait_registered_again_is_kept_once_and_queues_hear_of_its_noun(dotdo_local, unique):
    app = _app()
    app.watch_event(PAYMENT, {"order": 7}, unique, "j1", "u1", "event#1").result()
    began = app.event_waits().result()[0]["since"]
    dotdo_local.advance(5)
    app.watch_event(PAYMENT, {"order": 7}, unique, "j1", "u1", "event#1").result()  # again
    assert [(w["jobId"], w["since"]) for w in app.event_waits().result()] == [("j1", began)]
    # A queue sends its Job events only while someone listens: a job waiting for one does
    assert app.listens("Payment").result() and not app.listens("Invoice").result()
    assert app.unwatch_event(unique, "u1", "event#1").result() is True
    assert app.unwatch_event(unique, "u1", "event#1").result() is False
    assert not app.listens("Payment").result()
    with pytest.raises(ValueError, match="has no verb"):
        app.watch_event("paid", {}, unique, "j2", "u2", "event#1").result()
    with pytest.raises(dotdo.ObjectError, match="keeps no event waits"):
        dotdo.App(f"{unique}-other").event_waits().result()


def test_a_wait_times_out_and_a_late_event_changes_nothing(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    job_id = _park(dotdo_local, queue, {"order": 7}, timeout=3600)
    assert queue.get(job_id).result()["wakeAt"] == dotdo_local.now() + 3600
    dotdo_local.advance(3600)
    assert dotdo_local.drain(queue).completed == [job_id]
    assert queue.result(job_id).result()["output"] == {"timed_out": True}
    dotdo_local.advance(0)
    assert _app().event_waits().result() == []  # the queue dropped the wait
    # A late match (an App that had not heard of the timeout yet) reaches the queue,
    # which ignores it: the point ended.
    assert queue.deliver(job_id, None, "event#1", "done", codec.encode({})).result() is False
    dotdo.send(PAYMENT, {"order": 7})
    dotdo_local.advance(0)
    assert queue.result(job_id).result()["output"] == {"timed_out": True}


def _send_then_stop_the_app(event_type: str, data) -> None:
    """On the host's loop, in one go: the App journals an event (a delivery owed for
    it), then leaves memory before its sender ran, as a crash would leave it."""
    app = _app()
    host = client.actor_handle(app)
    table = host._endpoints._table
    key = (app.class_name, app.id)

    async def run() -> None:
        obj = table.objects[key]
        token = acting_for(obj)
        try:
            obj.emit(event_type, data)
        finally:
            restore(token)
        table.release(key, obj)

    asyncio.run_coroutine_threadsafe(run(), host.loop).result(timeout=30)
    assert key not in table.objects


def test_a_delivery_owed_when_the_app_stopped_is_sent_when_it_is_back(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    job_id = _park(dotdo_local, queue, {"order": 7})
    _send_then_stop_the_app(PAYMENT, {"order": 7})
    dotdo_local.advance(0)
    assert dotdo_local.drain(queue).completed == []  # the App is down: nothing was sent
    assert queue.get(job_id).result()["status"] == "waiting"
    assert _app().event_waits().result() == []  # the App is back; the match was kept
    assert _woken(dotdo_local, queue) == [job_id]
    assert queue.result(job_id).result()["output"]["data"] == {"order": 7}


def _counting(activity) -> list[int]:
    """Count the object's calls to the App (each call's events), wrapping the real one."""
    calls: list[int] = []
    real = activity.observer

    def observe(events):
        calls.append(len(events))
        return real(events)

    activity.observer = observe
    return calls


def test_an_object_sending_many_events_calls_the_app_about_once_a_burst(make_local, unique):
    # On the real clock (the App's answer spares the events sent before it, and the
    # test clock stands still)
    shop = make_local("EvwaitShop", unique)
    shop.chatter(0).result()  # active
    activity = live_object(shop)._dotdo_activity
    calls = _counting(activity)
    shop.chatter(2_000).result()
    wait_for(lambda: activity.idle)
    assert len(calls) == 1  # its answer spared every event not in that call
    # While a job waits for payments, each burst still costs one call
    queue = make_local("Queue", unique)
    make_local("Worker", f"{unique}-w").start(unique).result()
    job_id = queue.enqueue("evwait-payment", {"match": {"order": 1}}).result()["$id"]
    wait_for(lambda: queue.get(job_id).result()["status"] == "waiting")
    shop.chatter(500).result()
    shop.chatter(3, PAYMENT).result()
    assert queue.wait(job_id, timeout=60).result()["output"]["data"] == {"order": 1}
    wait_for(lambda: activity.idle)
    assert len(calls) <= 3, calls  # a call for each burst, no more


@pytest.mark.dedicated_pass("the App's actor is killed: how objects are hosted does not matter")
def test_on_ray_a_wait_outlives_a_restart_of_the_app(make_object, unique):
    queue = make_object("Queue", unique)
    worker = make_object("Worker", f"{unique}-w")
    shop = make_object("EvwaitShop", unique)
    worker.start(unique, concurrency=2).result()
    job_id = queue.enqueue("evwait-payment", {"match": {"order": 7}}).result()["$id"]
    wait_for(lambda: queue.get(job_id).result()["status"] == "waiting")
    kill_and_wait(_app(), "ray.kill")
    shop.pay(8).result()
    shop.pay(7, 9).result()
    done = queue.wait(job_id, timeout=60).result()
    assert done["output"]["data"] == {"order": 7, "amount": 9}


def test_a_job_cancelled_while_it_waits_for_an_event_is_forgotten_by_the_app(
        dotdo_local, unique):
    queue = dotdo.Queue(unique)
    job_id = _park(dotdo_local, queue, {"order": 9})
    assert len(_app().event_waits().result()) == 1
    queue.cancel(job_id).result()
    dotdo_local.advance(0)
    assert _app().event_waits().result() == []
    assert queue.get(job_id).result()["status"] == "cancelled"
