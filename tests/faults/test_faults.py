"""The fault suite: a long run of mixed jobs while Worker, Queue and App processes are
SIGKILLed at random moments and the whole of Ray restarts once (``driver.py``, in its
own process: it owns that Ray). A ledger the handlers write outside dotdo counts
every real execution; the test checks the promise against it."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_nothing_lost_nothing_run_twice_under_random_kills(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    env.pop("DOTDO_HOSTING", None)  # the default, whichever pass of the suite runs this
    args = [sys.executable, "-m", "tests.faults.driver", str(tmp_path / "run")]
    if os.environ.get("DOTDO_FAULT_SEED"):  # to replay a run that failed
        args.append(os.environ["DOTDO_FAULT_SEED"])
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"driver failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = json.loads(lines[-1].removeprefix("OUTCOME "))
    print("fault suite:", json.dumps(out, indent=1))  # the counts, in pytest -s or -rP
    seed = f"(replay with DOTDO_FAULT_SEED={out['seed']})"
    # The faults really happened
    assert out["kills"] == {"Worker": 4, "Queue": 2, "App": 2} and out["ray_restarts"] == 1, seed
    assert out["interrupted_runs"] > 0, seed
    # 0 lost: every job ended as its kind must (completed, or failed with its reason)
    assert out["lost_or_wrong"] == {} and out["still_running"] == 0, seed
    assert out["completed"] + out["failed_by_design"] == out["jobs"], seed
    assert list(out["poison"].values())[0].startswith("WorkerCrashError"), seed
    # 0 duplicate executions of finished jobs, no two runs of a job at once, no run
    # that neither ended nor lost its process
    assert out["duplicate_executions"] == {} and out["overlapping_runs"] == {}, seed
    assert out["unexplained_runs"] == 0, seed
    # every failure reported once
    assert out["failures_reported_once"] == out["failures"] == out["failed_by_design"], seed
    assert out["failure_reports_wrong"] == {}, seed
