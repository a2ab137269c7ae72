"""Call order when calls are cancelled or their caller dies, on real Ray.

These tests use Recorder objects: in the pooled pass, other tests' objects share
hosts with theirs, and they must not see the gaps given up on here.
"""

import os
import time

import pytest
import ray

import dotdo
from dotdo import client
from tests import objects  # noqa: F401  (registers Recorder and Pipe)
from tests.conftest import run_driver, wait_for


@ray.remote(num_cpus=0, max_retries=0)
def _when_file_exists(path: str, value):
    """A promise argument that exists only once the test says so."""
    while not os.path.exists(path):
        time.sleep(0.05)
    return value


def _stats(stub) -> dict:
    return ray.get(client.actor_handle(stub).stats.remote())


def test_a_call_cancelled_while_waiting_for_its_turn_does_not_wedge_its_caller(
    ray_session, unique, tmp_path
):
    gate = tmp_path / "gate"
    recorder = dotdo.Recorder(unique)
    # Given a call Ray holds back until its argument exists, and the next call
    # waiting at the host for it
    first = recorder.note("log", _when_file_exists.remote(str(gate), "first"))
    second = recorder.note("log", "second")
    wait_for(lambda: _stats(recorder)["waiting"])
    # When the waiting call is cancelled, then the first one runs
    ray.cancel(second.ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        second.result()
    gate.touch()
    first.result(timeout=60)
    # Then the caller's next call runs: the cancelled one left no turn taken
    recorder.note("log", "third").result(timeout=60)
    assert recorder.notes("log").result() == ["first", "third"]


def test_a_dead_callers_held_back_call_does_not_hold_up_its_later_calls(
    ray_session, unique, make_object
):
    recorder, pipe = make_object("Recorder", unique), make_object("Pipe", unique)
    # Given a driver whose call Ray holds back for an hour (its argument), whose next
    # call to the same object waits at the host for it, and which then dies
    run_driver(f"""
import os, time, ray, dotdo
from dotdo import client
from tests.objects import Pipe, Recorder
dotdo.init(address={ray.get_runtime_context().gcs_address!r}, storage={ray_session.storage!r})
recorder = dotdo.Recorder({unique!r})
recorder.note("log", dotdo.Pipe({unique!r}).slow(3600, "first"))
recorder.note("log", "after")
host = client.actor_handle(recorder)
while not ray.get(host.stats.remote())["waiting"]:
    time.sleep(0.05)
os._exit(0)  # nobody will ever send the first call, nor tell the host to skip it
""")
    # When its pings stop for the deferred timeout, the host gives the first call up
    wait_for(lambda: recorder.notes("log").result() == ["after"])
    assert _stats(recorder)["gaps_skipped"] >= 1
    # Then nothing of that caller stays in flight: the object can leave memory
    host = client.actor_handle(recorder)
    wait_for(lambda: ray.get(host.evict.remote("Recorder", unique))
             or ("Recorder", unique) not in _stats(recorder)["objects"])
    del pipe  # its hour-long call goes with it at the end (make_object)
