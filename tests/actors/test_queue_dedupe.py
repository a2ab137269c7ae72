"""Debounce and uniqueness windows: what enqueue returns says what happened."""

import time

import pytest

from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests.actors.conftest import claim, report
from tests.conftest import wait_for


def test_debounce_replaces_the_pending_job_and_pushes_its_run_time(queue):
    # Given a debounced job
    first = queue.enqueue("echo", 1, dedupe_key="reindex-42", debounce=60).result()
    assert (first["enqueued"], first["status"]) == ("added", "delayed")
    # When another with the same key comes within the window
    second = queue.enqueue("echo", 2, dedupe_key="reindex-42", debounce=60).result()
    # Then it replaced the pending one: one job, the new payload, a later run time
    assert (second["enqueued"], second["$id"], second["payload"]) == ("debounced", first["$id"], 2)
    assert second["runAt"] > first["runAt"]
    assert queue.get_metrics().delayed.result() == 1
    # Another key is another job
    other = queue.enqueue("echo", 3, dedupe_key="reindex-43", debounce=60).result()
    assert other["enqueued"] == "added" and other["$id"] != first["$id"]


def test_a_debounced_job_that_started_is_not_replaced(queue):
    first = queue.enqueue("echo", 1, dedupe_key="k", debounce=0.2).result()
    wait_for(lambda: queue.get(first["$id"]).result()["status"] == "pending")
    (grant,) = claim(queue, "w")
    again = queue.enqueue("echo", 2, dedupe_key="k", debounce=0.2).result()
    assert again["enqueued"] == "added" and again["$id"] != first["$id"]
    assert report(queue, "w", grant, "ok", "done") == 1
    assert queue.get(first["$id"]).result()["payload"] == 1


def test_unique_for_outlives_completion(queue):
    # Given a job unique for a minute that has already completed
    first = queue.enqueue("echo", {"user": 7}, unique_for=60).result()
    (grant,) = claim(queue, "w")
    report(queue, "w", grant, "ok", "sent")
    # When the same job (type and payload) comes again within the minute
    again = queue.enqueue("echo", {"user": 7}, unique_for=60).result()
    # Then nothing is added: the completed one is returned, saying so
    assert (again["enqueued"], again["$id"], again["status"]) == ("duplicate", first["$id"], "completed")
    # A different payload, or an explicit key, is another job
    assert queue.enqueue("echo", {"user": 8}, unique_for=60).result()["enqueued"] == "added"
    keyed = queue.enqueue("echo", {"user": 7}, unique_for=60, dedupe_key="welcome-7").result()
    assert keyed["enqueued"] == "added"
    assert queue.enqueue("echo", None, unique_for=60, dedupe_key="welcome-7").result()["enqueued"] == "duplicate"


def test_unique_for_ends_with_its_window_and_ignores_cancelled_jobs(queue):
    first = queue.enqueue("echo", 1, unique_for=0.3).result()
    time.sleep(0.35)
    assert queue.enqueue("echo", 1, unique_for=0.3).result()["enqueued"] == "added"
    last = queue.enqueue("echo", 5, unique_for=60).result()
    queue.cancel(last["$id"]).result()
    assert queue.enqueue("echo", 5, unique_for=60).result()["enqueued"] == "added"
    assert first["enqueued"] == "added"


def test_dedupe_works_within_one_enqueue_many(queue):
    jobs = queue.enqueue_many([{"type": "echo", "payload": i, "dedupe_key": "k", "debounce": 60}
                               for i in range(3)]).result()
    assert [j["enqueued"] for j in jobs] == ["added", "debounced", "debounced"]
    assert queue.get(jobs[0]["$id"]).result()["payload"] == 2


@pytest.mark.parametrize("options, match", [
    ({"debounce": 5}, "needs dedupe_key"),
    ({"unique_for": "soon"}, "unique_for must be"),
    ({"dedupe_key": 5, "unique_for": 1}, "dedupe_key is a non-empty str"),
])
def test_bad_dedupe_options_write_nothing(queue, options, match):
    with pytest.raises(ValueError, match=match):
        queue.enqueue("echo", 1, **options).result()
    assert queue.list().result()["jobs"] == []
