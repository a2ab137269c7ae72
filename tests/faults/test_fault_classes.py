"""Fault classes beyond kills (``classes.py``, each in a process and a Ray of its own):
a frozen Worker and a frozen Queue, the queue's wall clock stepped, a full disk, a
file damaged while live, payloads the queue cannot decode. Each test checks the
promise against the handlers' outside ledger and prints the counts (``pytest -s``)."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_class(name: str, work, storage=None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    env.pop("DOTDO_HOSTING", None)  # the default, whichever pass of the suite runs this
    args = [sys.executable, "-m", "tests.faults.classes", str(work), name]
    if storage is not None:
        args.append(str(storage))
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"driver failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    out = json.loads(lines[-1].removeprefix("OUTCOME "))
    print(f"fault class {name}:", json.dumps(out, indent=1))
    return out


def assert_promise_kept(out: dict) -> None:
    """0 lost, 0 stuck, 0 unexcused duplicates or overlaps, every run ended, every
    failure reported once, no stale fenced write accepted."""
    assert out["lost_or_wrong"] == {} and out["still_running"] == 0
    assert out["completed"] + out["failed"] == out["jobs"]
    assert out["unended_runs"] == 0
    assert out["duplicate_executions"] == {} and out["overlapping_runs"] == {}
    assert out["failures_reported_once"] == out["failed"]
    assert out["failure_reports_wrong"] == {}
    assert out["fences_shared_by_two_runs"] == 0 and out["stale_writes_accepted"] == 0
    assert out["fenced_writes"] > 0


def test_freeze(tmp_path):
    out = run_class("freeze", tmp_path / "run")
    assert_promise_kept(out)
    # The worker really lost runs to the freeze, and they stopped once it learnt
    assert out["frozen_runs"] > 0 and out["leases_expired_in_worker_freeze"] > 0
    assert out["frozen_runs_ran_past_learning"] == 0
    assert out["lost_runs_outcomes_recorded"] == 0
    # The frozen queue let no lease expire of the jobs running through its freeze
    assert out["runs_caught_by_queue_freeze"] > 0 and out["leases_expired_elsewhere"] == 0
    # Async and sync runs of the frozen worker both stopped (cancelled, or dotdo.cancelled())
    ended = out["frozen_runs_ended"]
    assert ended.get("fenced: error: CancelledError", 0) > 0, ended
    assert ended.get("fenced_sync: error: Stopped", 0) > 0, ended


def test_clock(tmp_path):
    out = run_class("clock", tmp_path / "run")
    assert_promise_kept(out)
    assert out["clock_offsets"] == [3600, 0, -3600, 0]
    assert out["leases_expired"] == 0


def test_poison(tmp_path):
    out = run_class("poison", tmp_path / "run")
    assert_promise_kept(out)
    # The queue's processes, live and after its restarts, never imported the payloads'
    # modules (payloads leave the caller encoded); the enqueue's answer shows them whole
    for when in ("live", "after_restart", "after_get_and_list", "at_end"):
        assert not any(out[f"queue_imported_{when}"].values()), when
    assert out["enqueue_answer_shows_box"]
    assert out["get_shows_stub"] and out["get_shows_orphan_stub"]
    assert out["listed_poison_jobs"] == out["poison_jobs"]
    assert out["poison_completed_with_their_stub"] == 5
    assert len(out["undecodable_errors"]) == 2
    assert all(e.startswith("DecodeError: ") and "'FaultDriverOnly'" in e
               and "cannot be rebuilt in this process" in e
               for e in out["undecodable_errors"])


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs for the storage (the ledger and Ray's files stay elsewhere)."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"the disk-full class needs to mount a tmpfs (root, as in CI); "
                    f"mount said: {done.stderr.strip() or done.returncode}")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_disk_full(tmp_path, small_disk):
    out = run_class("disk_full", tmp_path / "run", small_disk / "store")
    assert_promise_kept(out)
    # While full, enqueues were refused as StorageFullError (at once: each answered),
    # and none of them was written
    assert out["enqueues_refused"] > 0
    assert out["refused_as_storage_full"] == out["enqueues_refused"], out["refused_otherwise"]
    assert out["refused_but_written"] == 0


def test_corruption(tmp_path):
    out = run_class("corruption", tmp_path / "run")
    assert_promise_kept(out)
    # The damaged queue fails with CorruptStorageError naming its file, live and after
    # its process restarted; the main queue's jobs all finished (above)
    assert out["live_calls_failed"] > 0
    assert out["live_errors_corrupt_naming_file"] == out["live_calls_failed"], out["live_errors"]
    assert out["after_restart_corrupt_naming_file"], out["after_restart_error"]
