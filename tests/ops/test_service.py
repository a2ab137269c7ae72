"""The one service behind the CLI, the HTTP API and the dashboard, on objects in this
process (real SQLite files): it never creates what it looks at, reads files without
waking objects, and reaches only what classes expose."""

import asyncio
import os
import time

import pytest

import dotdo
from dotdo import client
from dotdo.errors import NotExposed
from dotdo.ids import storage_path
from dotdo.ops.service import Service
from dotdo.waits import awakeable_token
from tests import job_handlers, objects  # noqa: F401  (handlers; Ticker)
from tests.conftest import wait_for
from tests.ops.parked_jobs import parked


class Shop(dotdo.DurableObject, expose=["order"]):
    """Exposed for one method only."""

    def order(self, item: str, n: int = 1) -> dict:
        self.storage.put(item, self.storage.get(item, 0) + n)
        return {"item": item, "total": self.storage.get(item)}

    def refund(self, item: str) -> None:
        self.storage.delete(item)


class Hidden(dotdo.DurableObject):
    def peek(self) -> int:
        return 1


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def service(local_session):
    return Service()


@pytest.fixture
def worked(make_local, unique, start_worker):
    """A queue with one in-process worker on it; the worker stops at the end."""
    queue = make_local("Queue", unique)
    start_worker(unique)
    return queue


def test_an_unknown_queue_is_not_found_and_not_created(service, local_root):
    with pytest.raises(dotdo.NotFoundError, match="no queue 'nope'"):
        run(service.queue("nope"))
    with pytest.raises(dotdo.NotFoundError):
        run(service.enqueue("nope", "echo", 1))
    assert not os.path.exists(storage_path(str(local_root), "Queue", "nope"))
    job = run(service.enqueue("nope-created", "echo", 1, create=True))
    assert job["enqueued"] == "added"
    assert "nope-created" in run(service.queue_ids())


def test_a_job_shows_every_attempt_and_its_result(service, worked, unique):
    ok = worked.enqueue("echo", {"a": 1}).result()["$id"]
    bad = worked.enqueue("doomed", None, max_retries=1, backoff=0.01).result()["$id"]
    assert run(service.result(unique, ok, wait=30))["output"] == {"echo": {"a": 1}}
    outcome = run(service.result(unique, bad, wait=30))
    assert outcome["status"] == "failed" and outcome["done"] and "error" in outcome
    job = run(service.job(unique, bad))
    assert job["queue"] == unique and job["attemptCount"] == 2
    assert [a["outcome"] for a in job["attempts"]] == ["failed", "failed"]
    assert all(a["trace"] and a["worker"] == f"{unique}-w1" for a in job["attempts"])
    assert run(service.job(unique, ok))["result"] == {"echo": {"a": 1}}
    assert run(service.find_job(bad)) == unique
    with pytest.raises(dotdo.NotFoundError):
        run(service.job(unique, "ghost"))


def test_result_without_wait_answers_at_once(service, make_local, unique):
    queue = make_local("Queue", unique)
    job_id = queue.enqueue("echo", 1).result()["$id"]
    assert run(service.result(unique, job_id)) == {"id": job_id, "status": "pending",
                                                  "done": False}
    with pytest.raises(ValueError, match="wait"):
        run(service.result(unique, job_id, wait=-1))


def test_events_start_from_now_and_carry_the_queue(service, make_local, unique):
    queue = make_local("Queue", unique)
    queue.enqueue("echo", 0).result()
    events, cursor = run(service.events(None))
    assert events == []
    job_id = queue.enqueue("echo", 1).result()["$id"]
    events, cursor = run(service.events(cursor))
    assert [(e["queue"], e["type"], e["data"]["$id"]) for e in events] == [
        (unique, "Job.enqueued", job_id)]
    assert run(service.events(cursor))[0] == []


def test_a_parked_parent_and_child_show_their_points_and_the_child_is_resolved_once(
        service, worked, unique):
    # Given a parent job waiting for its child, which waits for its awakeable
    parent_id = worked.enqueue("ops-parent", None).result()["$id"]
    child_id = f"{parent_id}.child1"
    wait_for(lambda: parked(worked, parent_id) and parked(worked, child_id))
    parent, child = run(service.job(unique, parent_id)), run(service.job(unique, child_id))
    # Then the parent shows its child and the point it waits at, the child its parent
    # and its awakeable's token
    assert (parent["status"], parent["waitingFor"], "wakeAt" in parent) == ("waiting", "child#1", False)
    assert parent["children"] == [{"queue": unique, "id": child_id, "type": "ops-approve",
                                   "point": "child#1"}]
    assert [(p["key"], p["state"]) for p in parent["points"]] == [("child#1", "open")]
    assert parent["awakeables"] == [] and "parent" not in parent
    assert child["parent"] == {"queue": unique, "id": parent_id} and child["children"] == []
    assert [(p["key"], p["state"]) for p in child["points"]] == [("awakeable#1", "open"),
                                                                 ("wait#1", "open")]
    (awakeable,) = child["awakeables"]
    assert awakeable["state"] == "open" and awakeable["key"] == "awakeable#1"
    # When it is resolved, then both go on; a second settle is refused as settled before
    settled = run(service.resolve(awakeable["token"], 7))
    assert settled == {"token": awakeable["token"], "queue": unique, "job": child_id,
                       "awakeable": "awakeable#1", "settled": "resolved"}
    assert run(service.result(unique, parent_id, wait=30))["output"] == {
        "child": {"approved": 7}}
    with pytest.raises(dotdo.AwakeableError, match="settled before"):
        run(service.reject(awakeable["token"], "too late"))
    assert [p["state"] for p in run(service.job(unique, child_id))["points"]] == ["done", "done"]
    # An awakeable that is not there is not found; one of a queue that is not there
    # creates no queue
    with pytest.raises(dotdo.NotFoundError, match="no awakeable"):
        run(service.resolve(awakeable_token(unique, "ghost", None, "awakeable#1")))
    with pytest.raises(dotdo.NotFoundError, match="no queue"):
        run(service.resolve(awakeable_token(f"{unique}-ghost", "x", None, "awakeable#1")))
    assert f"{unique}-ghost" not in run(service.queue_ids())
    with pytest.raises(ValueError, match="not an awakeable's id"):
        run(service.resolve("nonsense"))


def test_workers_and_status_show_a_live_worker(service, worked, unique):
    worked.enqueue("echo", 1).result()
    wait_for(lambda: worked.get_metrics().result().completed == 1)
    (worker,) = run(service.workers(unique))
    assert worker["id"] == f"{unique}-w1" and worker["queue"] == unique
    assert worker["online"] and worker["pid"] == os.getpid() and worker["concurrency"] == 2
    assert worker["completed"] == 1 and worker["running"] == []
    status = run(service.status())
    assert status["ray"]["nodes"] == [] and status["classes"]["Queue"] >= 1
    assert unique in [q["id"] for q in status["queues"]]
    assert status["workers"]["online"] >= 1


def test_bulk_actions_and_dead_letters(service, worked, unique):
    ids = [worked.enqueue("doomed", i, max_retries=0).result()["$id"] for i in range(3)]
    wait_for(lambda: worked.get_metrics().result().failed == 3)
    (group,) = run(service.dead_letters(unique))
    assert group["count"] == 3 and sorted(group["jobs"]) == sorted(ids)
    assert run(service.count(unique, status="failed")) == 3
    assert run(service.retry_all(unique)) == 3
    wait_for(lambda: worked.get_metrics().result().failed == 3)  # they fail again
    retried = run(service.retry(unique, ids[:1]))
    assert retried[0]["status"] in ("pending", "running", "failed")


def test_schedules_of_every_object_are_read_from_files(service, make_local, unique):
    ticker = make_local("Ticker", unique)
    wait_for(lambda: ticker.seen("long").result())
    wait_for(lambda: any(s["lastError"] for s in run(service.schedules())
                         if s["id"] == unique))
    mine = {s["name"]: s for s in run(service.schedules()) if s["id"] == unique}
    failing = next(s for name, s in mine.items() if "failing_tick" in name)
    hourly = next(s for name, s in mine.items() if "hourly" in name)
    assert failing["lastError"].startswith("ValueError: tick") and failing["class"] == "Ticker"
    assert hourly["spec"] == "every 3600s"
    assert hourly["nextRun"] > time.time() and hourly["ticks"] == 0


def test_objects_are_listed_and_read_without_waking_them(service, make_local, unique):
    shop = make_local("Shop", unique)
    shop.order("tea", 2).result()
    listing = run(service.objects("Shop"))
    assert unique in [o["id"] for o in listing["objects"]]
    view = run(service.object("Shop", unique))
    assert view["kv"] == {"tea": 2} and view["steps"] == 0
    assert run(service.sql("Shop", unique, "select key from _dotdo_kv"))["rows"] == [["tea"]]
    with pytest.raises(ValueError, match="read only"):
        run(service.sql("Shop", unique, "delete from _dotdo_kv"))
    with pytest.raises(dotdo.NotFoundError, match="no objects of class"):
        run(service.objects("Nothing"))


def test_only_exposed_classes_and_methods_are_callable(service, unique):
    assert run(service.call("Shop", unique, "order", ["tea"], {"n": 3})) == {
        "item": "tea", "total": 3}
    with pytest.raises(NotExposed, match="refund is not exposed"):
        run(service.call("Shop", unique, "refund", ["tea"]))
    with pytest.raises(NotExposed, match="expose=True"):
        run(service.call("Hidden", unique, "peek"))
    with pytest.raises(dotdo.NotFoundError, match="no method"):
        run(service.call("Shop", unique, "nothing"))
    with pytest.raises(dotdo.NotFoundError, match="no durable object class"):
        run(service.call("Nowhere", unique, "x"))


def test_events_are_sent_only_for_exposed_nouns(local_session):
    with pytest.raises(NotExposed, match="--events Signup"):
        run(Service().emit("Signup.created", {"a": 1}))
    open_service = Service(events=["Signup"])
    run(open_service.emit("Signup.created", {"a": 1}))
    with pytest.raises(ValueError):
        run(open_service.emit("not an event", None))
    with pytest.raises(ValueError, match="nouns"):
        Service(events=["Signup.created"])


def test_events_of_a_restarted_queue_are_all_new(service, make_local, unique):
    # Given a live view that has seen a queue's first events
    queue = make_local("Queue", unique)
    queue.enqueue("echo", 1).result()
    _, cursor = run(service.events(None))
    # When the queue's process goes and a new one numbers its events from 1 again
    dotdo.get(client.actor_handle(queue).evict.remote("Queue", unique, True))
    job_id = queue.enqueue("echo", 2).result()["$id"]
    # Then the view still gets the new process's event
    events, _ = run(service.events(cursor))
    assert [(e["type"], e["data"]["$id"]) for e in events] == [("Job.enqueued", job_id)]


def test_a_queue_that_cannot_open_is_left_out_of_the_list_not_the_whole_answer(
        service, local_root, make_local, unique, caplog):
    # Given a good queue, and a queue file a newer dotdo wrote (its tables at version 99)
    import sqlite3

    make_local("Queue", f"{unique}-good").get_metrics().result()
    path = storage_path(str(local_root), "Queue", f"{unique}-newer")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE _dotdo_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.executemany("INSERT INTO _dotdo_meta VALUES (?, ?)", [
            ("class", "Queue"), ("id", f"{unique}-newer"), ("schema.queue", "99")])
    conn.close()
    try:
        # When the queues are listed, the good one is there and the other is named in a warning
        ids = [q["id"] for q in run(service.queues())]
        assert f"{unique}-good" in ids and f"{unique}-newer" not in ids
        assert any(f"{unique}-newer" in r.getMessage() and "newer dotdo" in r.getMessage()
                   for r in caplog.records)
        # and its own page gives the error
        with pytest.raises(dotdo.StorageError, match="newer dotdo"):
            run(service.queue(f"{unique}-newer"))
    finally:
        os.remove(path)
