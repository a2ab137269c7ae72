"""Retention: finished jobs beyond keep_completed / keep_failed go, in the background,
with their attempts and their workers' steps."""

import pytest

from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests.actors.conftest import claim, drained, report
from tests.conftest import journaled_steps, wait_for


def test_keep_completed_keeps_the_newest_count(queue):
    queue.configure(keep_completed=3).result()
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(10)]).result()
    for grant in claim(queue, "w", n=10):
        report(queue, "w", grant, "ok", grant["job"]["payload"])
    wait_for(lambda: queue.get_metrics().completed.result() == 3)
    kept = [j["payload"] for j in queue.list(status="completed").result()["jobs"]]
    assert kept == [7, 8, 9]


def test_keep_failed_by_age_takes_failed_and_cancelled_with_their_attempts(queue):
    queue.configure(keep_failed={"age": 0.3}).result()
    failed = queue.enqueue("echo", 1, max_retries=0).result()["$id"]
    (grant,) = claim(queue, "w")
    report(queue, "w", grant, "failed", {"error": "ValueError: x", "final": True})
    assert len(queue.attempts(failed).result()) == 1
    cancelled = queue.enqueue("echo", 2).result()["$id"]
    queue.cancel(cancelled).result()
    kept = queue.enqueue("echo", 3).result()["$id"]  # pending: never purged
    wait_for(lambda: queue.get(failed).result() is None and queue.get(cancelled).result() is None)
    assert queue.get(kept).result()["status"] == "pending"


def test_the_defaults_are_bounded(queue):
    config = queue.configure().result()
    assert config["keep_completed"] == {"count": 10_000, "age": 7 * 86_400.0}
    assert config["keep_failed"] == {"count": 100_000, "age": 30 * 86_400.0}


def test_purged_jobs_steps_leave_their_workers_journals(setup, unique, local_root):
    queue, _, start = setup
    queue.configure(keep_completed=0).result()
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(5)]).result()
    start(1)
    wait_for(lambda: drained(queue))
    wait_for(lambda: queue.get_metrics().completed.result() == 0)
    wait_for(lambda: journaled_steps(str(local_root), [f"{unique}-w0"]) == [])


@pytest.mark.parametrize("option, value", [
    ("keep_completed", -1), ("keep_failed", {"count": 1.5}), ("keep_completed", "all"),
    ("rate", "fast"), ("key_rate", "0/s"), ("group_concurrency", 0),
])
def test_bad_settings_name_the_option_and_change_nothing(queue, option, value):
    before = queue.configure().result()
    with pytest.raises(ValueError, match=option):
        queue.configure(concurrency=3, **{option: value}).result()
    assert queue.configure().result() == before
