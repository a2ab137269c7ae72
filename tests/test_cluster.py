"""A real multi-node Ray cluster on this machine: a head and two worker nodes, objects
and a job queue spread over them, and one node killed mid-run (see
``tests/cluster_driver.py``, which runs in its own process: one Ray per process)."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_losing_a_node_loses_no_step_and_no_job(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", "tests.cluster_driver", str(tmp_path / "shared")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"driver failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = json.loads(lines[-1].removeprefix("OUTCOME "))
    # The node that died held objects, the queue and its workers, mid-run; other
    # objects lived on another node
    assert out["objects_on_victim"] and out["objects_elsewhere"] and out["workers_on_victim"]
    assert out["queue_on_victim"]
    assert 0 < out["completed_before_kill"] < out["jobs"]
    # Every object came back on a surviving node with its state and journal
    assert out["objects_now_on_victim"] == []
    assert out["values_ok"]
    assert out["replayed_steps"] == [1] * len(out["replayed_steps"])  # not run again
    assert out["step_runs"] == [1] * len(out["step_runs"])
    # Every job finished: none lost, none failed, each job's step journaled once
    assert (out["completed"], out["failed"]) == (out["jobs"], 0)
    assert out["job_steps"] == out["distinct_job_steps"] == out["jobs"]
    assert out["jobs_never_started"] == 0
