"""What operators read from a queue: stats over time, totals that survive retention
and retries, workers as the queue sees them, dead letters, live events, counts and
bulk actions."""

import time

import pytest

from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests.actors.conftest import claim, report


def _fail(queue, worker, grant, error="ValueError: bad input\nmore detail"):
    report(queue, worker, grant, "failed", {"error": error, "trace": "tb", "final": True})


def test_stats_counts_finished_jobs_per_bucket_with_percentiles(queue):
    # Given three jobs that complete and one that fails
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(4)]).result()
    grants = claim(queue, "w", n=4)
    for grant in grants[:3]:
        report(queue, "w", grant, "ok", 1)
    _fail(queue, "w", grants[3])
    # When an operator reads the last ten minutes by minute
    stats = queue.stats(600, 60).result()
    # Then the series sums to what happened, and rates and percentiles follow
    assert len(stats["series"]) == 10
    assert sum(b["completed"] for b in stats["series"]) == 3
    assert sum(b["failed"] for b in stats["series"]) == 1
    assert stats["series"][-1]["t"] <= time.time() < stats["series"][-1]["t"] + 60
    assert stats["failureRate"] == 0.25
    assert stats["throughput"] == 3 / 600
    assert stats["duration"]["n"] == 3 and stats["duration"]["p50"] >= 0
    assert stats["wait"]["n"] == 4
    assert stats["totals"] == {"completed": 3, "failed": 1, "cancelled": 0}


def test_oldest_pending_age_is_the_longest_wait_of_a_ready_job(queue):
    assert queue.oldest_pending_age().result() is None
    queue.enqueue("echo", 1).result()
    queue.enqueue("echo", 2, delay=3600).result()  # delayed: not waiting yet
    time.sleep(0.05)
    age = queue.oldest_pending_age().result()
    assert 0.05 <= age < 3600


def test_totals_only_grow_through_purges_and_retries(queue):
    # Given a completed, a failed and a cancelled job
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(2)]).result()
    ok, bad = claim(queue, "w", n=2)
    report(queue, "w", ok, "ok", 1)
    _fail(queue, "w", bad)
    queue.cancel(queue.enqueue("echo", 3).result()["$id"]).result()
    assert queue.totals().result() == {"completed": 1, "failed": 1, "cancelled": 1}
    # When the failed job is retried and everything finished is purged
    queue.retry(bad["job"]["$id"]).result()
    assert queue.purge().result() == 2
    # Then the totals still count what happened (a counter never goes down)
    assert queue.totals().result() == {"completed": 1, "failed": 1, "cancelled": 1}
    (again,) = claim(queue, "w")
    report(queue, "w", again, "ok", 2)
    assert queue.totals().result() == {"completed": 2, "failed": 1, "cancelled": 1}


def test_workers_shows_registration_last_contact_and_counts(queue):
    # (registered after activation: a queue that activates drops workers that do not
    # serve it, and "w1" here is only a name)
    assert queue.workers().result() == []
    queue.register_worker("w1").result()
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(3)]).result()
    a, b, c = claim(queue, "w1", n=3)
    report(queue, "w1", a, "ok", 1)
    _fail(queue, "w1", b)
    (view,) = queue.workers().result()
    assert view["worker"] == "w1" and view["registered"]
    assert (view["running"], view["completed"], view["failed"]) == (1, 1, 1)
    assert time.time() - view["lastSeen"] < 60


def test_dead_letters_group_failed_jobs_by_the_first_line_of_their_error(queue):
    queue.enqueue_many([{"type": t, "payload": i} for i, t in
                        enumerate(["a", "b", "a", "c"])]).result()
    grants = claim(queue, "w", n=4)
    for grant in grants[:3]:
        _fail(queue, "w", grant, f"ValueError: bad input\nat row {grant['job']['payload']}")
    _fail(queue, "w", grants[3], "KeyError: 'x'")
    groups = queue.dead_letters().result()
    assert [(g["error"], g["count"], g["types"]) for g in groups] == [
        ("ValueError: bad input", 3, ["a", "b"]), ("KeyError: 'x'", 1, ["c"])]
    assert set(groups[0]["jobs"]) == {g["job"]["$id"] for g in grants[:3]}


def test_recent_events_are_kept_for_live_views_even_with_no_listener(queue):
    start = queue.recent_events(0).result()
    job_id = queue.enqueue("echo", 1).result()["$id"]
    (grant,) = claim(queue, "w")
    report(queue, "w", grant, "ok", 5)
    later = queue.recent_events(start["next"]).result()
    assert later["instance"] == start["instance"]
    assert [e["type"] for e in later["events"]] == ["Job.enqueued", "Job.completed"]
    assert later["events"][0]["data"]["$id"] == job_id
    assert queue.recent_events(later["next"]).result()["events"] == []


def test_count_and_list_filter_by_status_type_and_since(queue):
    queue.enqueue_many([{"type": "a", "payload": 1}, {"type": "b", "payload": 2}]).result()
    cut = time.time()
    time.sleep(0.01)
    queue.enqueue("a", 3).result()
    assert queue.count().result() == 3
    assert queue.count(type="a").result() == 2
    assert queue.count(status="pending", since=cut).result() == 1
    assert [j["payload"] for j in queue.list(since=cut).result()["jobs"]] == [3]
    with pytest.raises(ValueError, match="since"):
        queue.count(since="yesterday").result()


def test_retry_all_and_cancel_all_act_on_every_matching_job(queue):
    queue.enqueue_many([{"type": "echo", "payload": i, "max_retries": 0} for i in range(5)]).result()
    grants = claim(queue, "w", n=3)
    for grant in grants:
        _fail(queue, "w", grant)
    assert queue.retry_all().result() == 3
    assert queue.count(status="failed").result() == 0
    assert queue.cancel_all("pending").result() == 5
    assert queue.count(status="cancelled").result() == 5
    with pytest.raises(ValueError, match="finished"):
        queue.cancel_all("completed").result()


def test_settings_reads_what_configure_set_without_changing_it(queue):
    queue.configure(concurrency=4, rate="10/s").result()
    settings = queue.settings().result()
    assert settings["concurrency"] == 4 and settings["rate"] == "10/s"
    assert settings == queue.configure().result()


def test_stats_refuses_a_bad_window(queue):
    with pytest.raises(ValueError, match="bucket"):
        queue.stats(60, 0).result()
    with pytest.raises(ValueError, match="buckets"):
        queue.stats(86_400 * 30, 1).result()
