"""Rate limits, fair groups and priorities, enforced by the queue across all workers."""

import pytest

from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests.actors.conftest import claim, drained, report
from tests.actors.test_limits import most_in_any_window
from tests.conftest import wait_for


def _starts(queue) -> list:
    jobs = queue.list(limit=1000).result()["jobs"]
    return sorted(j["startedAt"] for j in jobs)


def test_a_queue_rate_holds_across_workers(setup):
    # Given a queue limited to 5 starts a second, two workers and 15 quick jobs
    queue, _, start = setup
    queue.configure(rate="5/s").result()
    queue.enqueue_many([{"type": "stamp", "payload": i} for i in range(15)]).result()
    start(2, concurrency=8)
    wait_for(lambda: drained(queue))
    # Then no second held more than 5 starts (the queue's own start times)
    starts = _starts(queue)
    assert len(starts) == 15 and most_in_any_window(starts, 1.0) <= 5


def test_each_rate_key_has_its_own_limit(setup):
    queue, _, start = setup
    queue.configure(key_rate="3/s").result()
    queue.enqueue_many([{"type": "stamp", "payload": i, "rate_key": key}
                        for i in range(6) for key in ("customer-a", "customer-b")]
                       + [{"type": "stamp", "payload": "free"}] * 6).result()
    start(1, concurrency=8)
    wait_for(lambda: drained(queue))
    jobs = queue.list(limit=100).result()["jobs"]
    for key in ("customer-a", "customer-b"):
        starts = sorted(j["startedAt"] for j in jobs if j.get("rateKey") == key)
        assert len(starts) == 6 and most_in_any_window(starts, 1.0) <= 3
    assert sum("rateKey" not in j and j["status"] == "completed" for j in jobs) == 6


def test_a_spent_rate_makes_a_claim_wait_not_fail(queue):
    queue.configure(rate="2/1h").result()
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(3)]).result()
    assert len(claim(queue, "w", n=3)) == 2
    assert queue.claim("w", 1, wait=0.3).result()["jobs"] == []  # waits, gets nothing
    queue.configure(rate=None).result()
    assert len(claim(queue, "w", n=3)) == 1


def test_groups_take_turns_so_a_big_one_does_not_starve_a_small_one(queue):
    # Given a group with 10,000 jobs enqueued before a group with 10
    queue.enqueue_many([{"type": "echo", "payload": i, "group": "big"} for i in range(10_000)]).result()
    queue.enqueue_many([{"type": "echo", "payload": i, "group": "small"} for i in range(10)]).result()
    # When a worker claims 4 at a time
    groups = []
    for _ in range(5):
        groups += [g["job"]["group"] for g in claim(queue, "w", n=4)]
    # Then the groups alternate: the small group's 10 are among the first 20
    assert groups.count("small") == 10
    assert groups[:4] in (["big", "small"] * 2, ["small", "big"] * 2)


def test_group_concurrency_caps_each_group_across_claims(queue):
    queue.configure(group_concurrency=2).result()
    queue.enqueue_many([{"type": "echo", "payload": i, "group": g}
                        for g in ("a", "b") for i in range(5)]
                       + [{"type": "echo", "payload": "loose"}] * 3).result()
    first = claim(queue, "w", n=20)
    by_group = [g["job"].get("group", "") for g in first]
    assert sorted(by_group) == ["", "", "", "a", "a", "b", "b"]  # jobs without a group: no cap
    assert claim(queue, "w", n=20) == []
    # One of a's jobs ends: one more of a's may run
    done = next(g for g in first if g["job"].get("group") == "a")
    assert report(queue, "w", done, "ok", 1) == 1
    assert [g["job"]["group"] for g in claim(queue, "w", n=20)] == ["a"]


@pytest.mark.parametrize("limits", [{}, {"key_rate": "1000/s"}, {"group_concurrency": 5},
                                    {"rate": "1000/s", "concurrency": 10}])
def test_priorities_order_jobs_within_every_limit(queue, limits):
    queue.configure(**limits).result()
    queue.enqueue_many([{"type": "echo", "payload": n, "priority": p}
                        for n, p in [(1, 0), (2, 5), (3, 1), (4, 5), (5, -2)]]).result()
    order = [claim(queue, "w")[0]["job"]["payload"] for _ in range(5)]
    assert order == [2, 4, 3, 1, 5]
