"""Dependencies and flows: children wait for their parents, read their results, and
follow a parent that fails."""

import pytest

import dotdo
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests.actors.conftest import drained
from tests.conftest import wait_for


def test_a_flow_runs_parents_first_and_children_read_their_results(setup, unique):
    queue, _, start = setup
    # Given a flow: a root with two children, one of which has a child of its own
    tree = queue.enqueue_flow({
        "type": "echo", "payload": "root", "job_id": f"{unique}-root", "children": [
            {"type": "parents", "job_id": f"{unique}-c1"},
            {"type": "parents", "job_id": f"{unique}-c2", "children": [
                {"type": "parents", "job_id": f"{unique}-g"}]}]}).result()
    # Then it was written at once: the root ready, the others waiting
    assert tree["job"]["status"] == "pending"
    assert [c["job"]["status"] for c in tree["children"]] == ["waiting", "waiting"]
    assert tree["children"][1]["children"][0]["job"]["waitingOn"] == 1
    assert queue.get_metrics().waiting.result() == 3
    # When a worker runs them
    start(1)
    wait_for(lambda: drained(queue))
    # Then each child saw its parent's output, and ran after it
    assert queue.result(f"{unique}-c1").result()["output"] == {
        "parents": {f"{unique}-root": {"echo": "root"}}, "me": f"{unique}-c1"}
    grandchild = queue.result(f"{unique}-g").result()["output"]
    assert grandchild["parents"] == {f"{unique}-c2": {"parents": {f"{unique}-root": {"echo": "root"}},
                                                     "me": f"{unique}-c2"}}
    root, c2, g = (queue.get(f"{unique}-{n}").result() for n in ("root", "c2", "g"))
    assert root["finishedAt"] <= c2["startedAt"] and c2["finishedAt"] <= g["startedAt"]


def test_a_job_waits_for_all_its_parents(setup, unique):
    queue, _, start = setup
    a = queue.enqueue("echo", "a", job_id=f"{unique}-a").result()["$id"]
    b = queue.enqueue("echo", "b", job_id=f"{unique}-b", delay=0.5).result()["$id"]
    child = queue.enqueue("parents", None, depends_on=[a, b]).result()
    assert (child["status"], child["waitingOn"]) == ("waiting", 2)
    start(1)
    wait_for(lambda: drained(queue))
    out = queue.result(child["$id"]).result()["output"]
    assert out["parents"] == {a: {"echo": "a"}, b: {"echo": "b"}}


def test_a_failed_parent_fails_or_cancels_its_children_by_their_option(setup, unique):
    queue, _, start = setup
    parent = queue.enqueue("doomed", None, max_retries=0, job_id=f"{unique}-p").result()["$id"]
    failing = queue.enqueue("parents", None, depends_on=[parent]).result()["$id"]
    cancelled = queue.enqueue("parents", None, depends_on=[parent],
                              on_parent_failure="cancel").result()["$id"]
    grandchild = queue.enqueue("parents", None, depends_on=[failing]).result()["$id"]
    start(1)
    wait_for(lambda: drained(queue))
    assert queue.get(failing).result()["status"] == "failed"
    assert queue.get(failing).result()["error"] == f"ParentFailed: parent job '{parent}' ended failed"
    assert queue.get(cancelled).result()["status"] == "cancelled"
    assert queue.get(grandchild).result()["status"] == "failed"  # it follows its own parent
    # A child added after its parent failed follows it at once
    late = queue.enqueue("parents", None, depends_on=[parent]).result()
    assert (late["enqueued"], late["status"]) == ("added", "failed")


def test_children_may_be_added_while_their_parent_runs(setup, unique):
    queue, _, start = setup
    parent = queue.enqueue("spawner", {"child": f"{unique}-child"}).result()["$id"]
    start(1)
    wait_for(lambda: drained(queue) and queue.get(f"{unique}-child").result())
    out = queue.result(f"{unique}-child").result()["output"]
    assert out["parents"] == {parent: "spawned"}


def test_an_unknown_parent_is_refused_and_nothing_is_written(queue):
    with pytest.raises(dotdo.NotFoundError, match="depends_on names job 'nope'"):
        queue.enqueue_many([{"type": "echo", "payload": 1},
                            {"type": "echo", "depends_on": ["nope"]}]).result()
    assert queue.list().result()["jobs"] == []
    with pytest.raises(ValueError, match="children at the root is a list"):
        queue.enqueue_flow({"type": "echo", "children": "x"}).result()


def test_cancelling_a_waiting_parent_reaches_its_children(queue):
    parent = queue.enqueue("echo", 1, delay=60).result()["$id"]
    child = queue.enqueue("echo", 2, depends_on=[parent], on_parent_failure="cancel").result()["$id"]
    queue.cancel(parent).result()
    assert queue.get(child).result()["status"] == "cancelled"
    assert queue.get_metrics().result().cancelled == 2
