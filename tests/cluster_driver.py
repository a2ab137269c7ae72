"""A driver that builds a real three-node Ray cluster on this machine, spreads objects
and a job queue over it, kills a node holding objects mid-run, and counts what
survived. ``tests/test_cluster.py`` runs it in its own process (a process has one Ray)
and checks the counts it prints as JSON.

    python -m tests.cluster_driver <shared storage dir>
"""

from __future__ import annotations

import json
import sys

import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import dotdo
from dotdo import client
from tests.conftest import journaled_steps, wait_for

N_OBJECTS = 36
N_JOBS = 300
# Detect a dead node in about two seconds rather than Ray's default thirty.
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                      "health_check_failure_threshold": 4}


def stats(stub) -> dict:
    return ray.get(client.actor_handle(stub).stats.remote(), timeout=60)


def main(storage: str) -> dict:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS})
    try:
        return run(cluster, storage)
    finally:  # stop every process of this cluster, or later drivers could join it
        dotdo.shutdown()
        cluster.shutdown()


def prefer(node_id: str) -> dict:
    """Actor options: start on ``node_id``, anywhere else once it is gone (soft). Ray
    2.60 ignores soft affinity for an actor that requests no resource at all (hosts
    ask for num_cpus=0), hence a one-byte memory request."""
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=True), "memory": 1}


def run(cluster: Cluster, storage: str) -> dict:
    victim, survivor = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    # The queue, its workers, the witness and the App start on the node that will die.
    dotdo.init(address=cluster.address, storage=storage, hosting=dotdo.Dedicated(prefer(victim.node_id)))
    from tests import job_handlers  # noqa: F401  (registers the job types)
    from tests.objects import Stepping

    # Given pooled objects on both worker nodes, each with a finished step
    class Near(Stepping, dotdo.DurableObject, hosting=dotdo.Pooled(
            hosts=3, idle_timeout=None, actor_options=prefer(victim.node_id))):
        def put(self, value) -> None:
            self.storage.put("value", value)

        def read(self):
            return self.storage.get("value")

    class Far(Near, hosting=dotdo.Pooled(hosts=3, idle_timeout=None,
                                         actor_options=prefer(survivor.node_id))):
        pass

    spread = [dotdo.stub(Near if i % 2 else Far, f"s{i}") for i in range(N_OBJECTS)]
    dotdo.get([s.put(i) for i, s in enumerate(spread)])
    assert dotdo.get([s.step("before") for s in spread]) == [1] * N_OBJECTS
    node_of = {s.id: stats(s)["node"] for s in spread}

    # and a queue with workers on the nodes, running slow jobs
    queue = dotdo.Queue("cluster-jobs")
    witness = dotdo.Recorder("cluster-witness")
    queue.enqueue_many([{"type": "slow", "payload": {"witness": "cluster-witness", "n": i,
                                                      "seconds": 0.05}} for i in range(N_JOBS)]).result()
    workers = [dotdo.Worker(f"cluster-w{i}") for i in range(4)]
    dotdo.get([w.start("cluster-jobs", concurrency=4) for w in workers])
    worker_nodes = {w.id: stats(w)["node"] for w in workers}
    wait_for(lambda: queue.get_metrics().completed.result() >= N_JOBS * 0.25)

    # When the node holding the queue, the workers and half the objects dies (SIGKILL
    # of its processes, mid-run: a claim's answer can be lost on the way)
    queue_node = stats(queue)["node"]
    lost_objects = sorted(i for i, n in node_of.items() if n == victim.node_id)
    lost_workers = sorted(i for i, n in worker_nodes.items() if n == victim.node_id)
    completed_before = queue.get_metrics().completed.result()
    cluster.remove_node(victim, allow_graceful=False)

    # Then every object answers again, from a surviving node, with its journal intact
    def moved():
        now = {s.id: stats(s)["node"] for s in spread}
        return victim.node_id not in now.values() and now

    after = wait_for(moved)
    values = wait_for(lambda: dotdo.get([s.read() for s in spread], timeout=60))
    replayed = dotdo.get([s.step("before") for s in spread])
    runs = dotdo.get([s.runs("before") for s in spread])
    # and the queue finishes every job, none lost, no finished step run twice
    try:
        metrics = wait_for(lambda: (m := queue.get_metrics().result()).completed + m.failed
                           >= N_JOBS and m, timeout=300)
    except AssertionError:
        raise AssertionError(f"jobs did not finish: {queue.get_metrics().result()}") from None
    steps = [s for s in journaled_steps(storage) if s.startswith("job-")]
    starts = dotdo.get([witness.hits(f"start:{i}") for i in range(N_JOBS)])
    return {
        "nodes": 3,
        "victim": victim.node_id,
        "objects_on_victim": lost_objects,
        "workers_on_victim": lost_workers,
        "objects_elsewhere": sorted(i for i, n in node_of.items() if n != victim.node_id),
        "queue_on_victim": queue_node == victim.node_id,
        "objects_now_on_victim": sorted(i for i, n in after.items() if n == victim.node_id),
        "values_ok": values == list(range(N_OBJECTS)),
        "replayed_steps": replayed,
        "step_runs": runs,
        "jobs": N_JOBS,
        "completed_before_kill": completed_before,
        "completed": metrics.completed,
        "failed": metrics.failed,
        "job_steps": len(steps),
        "distinct_job_steps": len(set(steps)),
        "jobs_never_started": sum(1 for n in starts if n == 0),
    }


if __name__ == "__main__":
    outcome = main(sys.argv[1])
    print("OUTCOME " + json.dumps(outcome))
