"""Queue's API on real Ray: every call, its bad inputs, and nothing written by them."""

import time

import pytest

import dotdo
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests import objects  # noqa: F401


@pytest.fixture
def queue(make_object, unique):
    return make_object("Queue", unique)


def test_enqueue_returns_a_job_thing(queue):
    job = queue.enqueue("echo", {"x": 1}, priority=2, max_retries=5, timeout=3).result()
    assert job["$type"] == "Job" and job["type"] == "echo" and job["payload"] == {"x": 1}
    assert (job["status"], job["attempts"], job["error"]) == ("pending", 0, None)
    assert (job["priority"], job["maxRetries"], job["timeout"]) == (2, 5, 3)
    assert queue.get(job["$id"]).result() == job


def test_job_id_is_an_idempotency_key(queue):
    first = queue.enqueue("echo", 1, job_id="order-7").result()
    again = queue.enqueue("echo", 2, job_id="order-7").result()
    assert again == first and again["payload"] == 1
    assert queue.get_metrics().pending.result() == 1


def test_enqueue_many_is_one_call(queue):
    jobs = queue.enqueue_many([{"type": "echo", "payload": i} for i in range(100)]).result()
    assert [j["payload"] for j in jobs] == list(range(100))
    assert queue.get_metrics().result().pending == 100


def test_list_pages_are_stable_and_filtered(queue):
    queue.enqueue_many([{"type": "echo" if i % 2 else "doomed", "payload": i} for i in range(25)]).result()
    seen, cursor = [], None
    while True:
        page = queue.list(limit=10, cursor=cursor).result()
        seen += [j["payload"] for j in page["jobs"]]
        queue.enqueue("echo", "added while paging").result()  # lands after the cursor
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen[:25] == list(range(25))
    evens = queue.list(type="doomed", limit=100).result()["jobs"]
    assert [j["payload"] for j in evens] == list(range(0, 25, 2))


def test_metrics_are_attributes_and_one_call(queue):
    queue.enqueue("echo", 1).result()
    queue.enqueue("echo", 2, delay=3600).result()
    metrics = queue.get_metrics().result()
    assert (metrics.pending, metrics.delayed, metrics.running, metrics.completed,
            metrics.failed, metrics.retries) == (1, 1, 0, 0, 0, 0)
    assert queue.get_metrics().delayed.result() == 1
    assert queue.list(status="delayed").result()["jobs"][0]["status"] == "delayed"


def test_cancel_pending_and_delayed_only(queue):
    a = queue.enqueue("echo", 1).result()["$id"]
    b = queue.enqueue("echo", 2, run_at=time.time() + 600).result()["$id"]
    assert queue.cancel(a).result()["status"] == "cancelled"
    assert queue.cancel(b).result()["status"] == "cancelled"
    with pytest.raises(ValueError, match="only pending or delayed"):
        queue.cancel(a).result()
    with pytest.raises(KeyError, match="no job 'nope'"):
        queue.cancel("nope").result()
    assert queue.get_metrics().cancelled.result() == 2


def test_pause_resume_persist(queue):
    queue.pause().result()
    assert queue.get_metrics().paused.result() is True
    queue.resume().result()
    assert queue.get_metrics().paused.result() is False


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("",), {}, ValueError, "non-empty str"),
        ((None,), {}, ValueError, "non-empty str"),
        (("echo", 1), {"priority": "high"}, ValueError, "priority is an int"),
        (("echo", 1), {"delay": 5, "run_at": 10.0}, ValueError, "not both"),
        (("echo", 1), {"delay": -1}, ValueError, "delay must be a number >= 0"),
        (("echo", 1), {"max_retries": -1}, ValueError, "max_retries"),
        (("echo", 1), {"timeout": 0}, ValueError, "timeout"),
        (("echo", 1), {"colour": "red"}, TypeError, "unknown job option"),
        (("echo", {"bad": 1j}), {}, dotdo.EncodeError, "complex"),
    ],
)
def test_bad_enqueue_is_refused_and_writes_nothing(queue, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        queue.enqueue(*args, **kwargs).result()
    assert queue.list().result()["jobs"] == []


def test_one_bad_job_in_a_batch_writes_none_of_it(queue):
    with pytest.raises(dotdo.EncodeError):
        queue.enqueue_many([{"type": "echo", "payload": 1}, {"type": "echo", "payload": 1j}]).result()
    assert queue.list().result()["jobs"] == []


def test_bad_calls_name_the_fix(queue):
    job_id = queue.enqueue("echo", 1).result()["$id"]
    with pytest.raises(ValueError, match="only failed jobs can be retried"):
        queue.retry(job_id).result()
    with pytest.raises(ValueError, match="finished jobs only"):
        queue.purge(status="pending").result()
    with pytest.raises(ValueError, match="is not a valid JobStatus"):
        queue.list(status="done").result()
    assert queue.result(job_id).result() is None
