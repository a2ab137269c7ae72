"""Pooled hosting: many objects per actor, each with its own file and turn; idle
objects leave memory and come back; a killed pool host brings back what it held.

The whole suite also runs with pooled hosting as the default (see conftest); these
tests cover what only pools have. They use ``tests.objects.Room`` (two hosts,
evicted after half a second idle) and ``Clockwork`` (a schedule on a pooled object).
"""

import os
import signal
import subprocess
import sys

import pytest
import ray

import dotdo
from dotdo import client
from dotdo import hosting as hosting_module
from dotdo.hosting import from_env, host_name
from dotdo.ids import storage_path
from tests import objects  # noqa: F401  (Room, Clockwork)
from tests.conftest import ROOT, wait_for


# -- the hosting spec ----------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"hosts": 0}, {"hosts": 2.5}, {"hosts": True}, {"idle_timeout": -1},
    {"idle_timeout": "soon"}, {"pool": ""}, {"pool": "a[b"},
])
def test_bad_pool_settings_are_refused(bad):
    with pytest.raises(dotdo.ConfigError, match="Pooled"):
        dotdo.Pooled(**bad)


def test_a_class_with_a_bad_hosting_is_refused_where_it_is_written():
    with pytest.raises(dotdo.ConfigError, match="class Bad: hosting must be"):
        class Bad(dotdo.DurableObject, hosting="pooled"):  # noqa: F841
            pass


@pytest.mark.parametrize("value, expected", [
    (None, dotdo.Dedicated()), ("dedicated", dotdo.Dedicated()), ("pooled", dotdo.Pooled()),
    ("pooled:8", dotdo.Pooled(hosts=8)), ("pooled:2:0.5", dotdo.Pooled(hosts=2, idle_timeout=0.5)),
])
def test_hosting_from_the_environment(value, expected):
    assert from_env(value) == expected


@pytest.mark.parametrize("bad", ["pool", "pooled:x", "pooled:0", "pooled:1:2:3"])
def test_bad_hosting_in_the_environment_names_the_spellings(bad):
    with pytest.raises(dotdo.ConfigError, match="dedicated, pooled"):
        from_env(bad)


def test_an_object_maps_to_the_same_host_in_every_process():
    # Python's hash() changes per process; the pool's must not (other drivers and
    # restarted hosts must agree on where an object lives).
    code = ("from dotdo.hosting import Pooled; "
            "print([Pooled(hosts=7).index('Room', f'r{i}') for i in range(50)])")
    seen = {
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
        for seed in ("1", "2")
    }
    assert len(seen) == 1
    spread = eval(seen.pop())  # noqa: S307 - our own output
    assert set(spread) == set(range(7))
    assert host_name("Room", "r1", dotdo.Pooled(hosts=7, pool="rooms")).startswith("rooms[")


# -- on Ray ----------------------------------------------------------------------------

@pytest.fixture
def pooled(ray_session):
    """Run once: pooled classes host the same way in both passes of the suite. A test
    asking for this runs in the pooled pass only (tests/conftest.py skips it in the
    dedicated one before it starts that pass's Ray)."""
    return ray_session


def _same_host_ids(prefix: str, n: int = 2) -> list[str]:
    pool = objects.Room._dotdo_hosting
    ids = [f"{prefix}-{i}" for i in range(100)]
    first = pool.index("Room", ids[0])
    return [i for i in ids if pool.index("Room", i) == first][:n]


def _stats(stub) -> dict:
    return ray.get(client.actor_handle(stub).stats.remote())


def test_objects_on_one_host_keep_their_own_files_and_turns(pooled, unique):
    a_id, b_id = _same_host_ids(unique)
    a, b = dotdo.Room(a_id), dotdo.Room(b_id)
    # Given two objects in one process
    assert a.state().result()["pid"] == b.state().result()["pid"]
    # When both take 200 read-modify-write calls on the same key, interleaved
    calls = [room.incr("n") for _ in range(200) for room in (a, b)]
    # Then each call saw its own object's count, one turn at a time: nothing lost
    results = dotdo.get(calls)
    assert sorted(results[0::2]) == list(range(1, 201)) == sorted(results[1::2])
    assert a.read("n").result() == 200 == b.read("n").result()
    paths = {storage_path(pooled.storage, "Room", i) for i in (a_id, b_id)}
    assert len(paths) == 2 and all(os.path.exists(p) for p in paths)


def test_a_slow_call_does_not_hold_up_other_objects_on_its_host(pooled, unique):
    a_id, b_id = _same_host_ids(unique)
    slow = dotdo.Room(a_id).slow(20)
    # Another object on the same host answers many calls while the slow one runs
    for _ in range(20):
        assert dotdo.Room(b_id).incr().result() >= 1
    ready, _ = ray.wait([slow._ref], timeout=0)
    assert ready == []  # the slow call is still running: the others did not wait for it


def test_idle_objects_are_evicted_and_come_back_with_their_state(pooled, unique):
    room = dotdo.Room(unique)
    assert room.incr().result() == 1
    first = room.state().result()
    # When the object sits idle past the pool's idle_timeout
    wait_for(lambda: ("Room", unique) not in _stats(room)["objects"])
    # Then its next call activates it again, with its storage intact
    assert room.incr().result() == 2
    again = room.state().result()
    assert again["activations"] == first["activations"] + 1
    assert again["pid"] == first["pid"]


def test_an_evicted_object_wakes_for_its_alarm(pooled, unique):
    room = dotdo.Room(unique)
    room.arm(3).result()
    wait_for(lambda: ("Room", unique) not in _stats(room)["objects"])
    # Nobody calls it; the host wakes it at the alarm time and it fires
    wait_for(lambda: ("Room", unique) in _stats(room)["objects"] or None, timeout=60)
    state = wait_for(lambda: (s := room.state().result())["fired"] and s)
    assert state["fired"] == 1


def test_an_evicted_object_with_a_schedule_keeps_ticking(pooled, unique):
    clock = dotdo.Clockwork(unique)
    try:
        wait_for(lambda: clock.ticks().result() >= 1)
        # Between ticks the object leaves memory; the host wakes it for the next ones
        wait_for(lambda: _stats(clock)["evicted"] >= 1)
        before = clock.ticks().result()
        wait_for(lambda: clock.ticks().result() >= before + 2)
    finally:
        ray.get(client.actor_handle(clock).evict.remote("Clockwork", unique, True))


def test_a_killed_pool_host_brings_back_every_object_it_held(pooled, unique):
    ids = _same_host_ids(unique, 4)
    rooms = [dotdo.Room(i) for i in ids]
    # Given objects on one host with finished steps, queued events and an alarm
    for room in rooms:
        assert room.step("once").result() == 1
        room.notify(30).result()
    rooms[0].arm(4).result()
    pid = rooms[0].state().result()["pid"]
    # When the host dies mid-run
    os.kill(pid, signal.SIGKILL)
    # Then it comes back (a new process) and, with no call to them, its objects finish
    # their events and the alarm fires; no finished step runs again
    keys = {("Room", i) for i in ids}
    wait_for(lambda: (s := _stats(rooms[0]))["pid"] != pid and keys <= set(s["objects"]))
    for room in rooms:
        wait_for(lambda room=room: len(room.state().result()["handled"]) >= 30, timeout=120)
    wait_for(lambda: rooms[0].state().result()["fired"] == 1, timeout=60)
    for room in rooms:
        handled = room.state().result()["handled"]
        assert sorted(set(handled)) == list(range(30))  # at-least-once, all of them
        assert room.step("once").result() == 1  # replayed from the journal
        assert room.runs("once").result() == 1


def test_a_broken_pool_directory_names_the_file(pooled, tmp_path):
    # The directory is a pool host's own SQLite file; junk there is reported, not hidden
    from dotdo.storage.directory import Directory

    path = tmp_path / "dir.sqlite3"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(dotdo.CorruptStorageError, match="dir.sqlite3"):
        Directory(str(path))


def test_drivers_that_disagree_on_hosting_get_an_error_not_two_live_copies(pooled, unique):
    from tests.conftest import run_driver

    # Given an object live in its pool (a call in flight keeps it in memory)
    busy = dotdo.Pipe(unique).slow(30)
    assert dotdo.Pipe(unique).echo(1).result() == {"args": [1], "kwargs": {}}
    # When a driver that hosts the same class dedicated calls it
    out = run_driver(f"""
import dotdo
from tests.objects import Pipe
dotdo.init(address={ray.get_runtime_context().gcs_address!r}, storage={pooled.storage!r})
try:
    dotdo.Pipe({unique!r}).echo(2).result()
    print("served twice")
except dotdo.StorageError as exc:
    print("refused:", exc)
""", env={"DOTDO_HOSTING": "dedicated"})
    # Then it is refused, naming the fix, and the live copy goes on
    assert "refused: Pipe/" in out and "same hosting" in out
    assert dotdo.Pipe(unique).echo(3).result()["args"] == [3]
    ray.kill(ray.get_actor(f"Pipe/{unique}", namespace="dotdo"), no_restart=True)
    del busy


def test_a_worker_has_a_process_of_its_own_whatever_the_default(ray_session, hosting):
    # When the default hosting pools objects, workers still get a process each: the
    # jobs running in a process that dies are the suspects
    from actors import Queue, Worker

    assert client.hosting_of(Worker) == dotdo.Dedicated()
    assert isinstance(client.hosting_of(Queue),
                      dotdo.Pooled if hosting == "pooled" else dotdo.Dedicated)


# -- the warning about an actor per object --------------------------------------------

@pytest.fixture
def crowding(monkeypatch):
    """A fresh count whose threshold is one dedicated actor per class (1 per CPU of a
    1-CPU cluster), so a test needs only a few real actors to cross it."""
    fresh = hosting_module.Crowding(per_cpu=1, cpus=1)
    monkeypatch.setattr(hosting_module, "crowding", fresh)
    return fresh


def _crowding_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "dotdo" and "an actor each" in r.getMessage()]


def _kill(stubs) -> None:
    for stub in stubs:
        ray.kill(client.actor_handle(stub), no_restart=True)


@pytest.mark.dedicated_pass("needs dedicated as the default hosting")
def test_many_default_dedicated_objects_of_a_class_warn_once_naming_the_pool(
        ray_session, crowding, caplog, unique):
    counters = [dotdo.Counter(f"{unique}-{i}") for i in range(3)]
    with caplog.at_level("WARNING", logger="dotdo"):
        # Given a class with no hosting of its own, past the threshold (one actor)
        assert dotdo.get([c.incr() for c in counters]) == [1, 1, 1]
        # (calling them again, or an object seen before, counts nothing new)
        assert dotdo.get([c.incr() for c in counters]) == [2, 2, 2]
    try:
        # Then one warning, naming the class, the pool and both ways to set it
        [message] = _crowding_warnings(caplog)
        assert "2 objects of class Counter" in message
        assert "class Counter(dotdo.DurableObject, hosting=dotdo.Pooled())" in message
        assert "dotdo.init(hosting=dotdo.Pooled())" in message and "DOTDO_HOSTING" in message
    finally:
        _kill(counters)


@pytest.mark.dedicated_pass("the classes choose their own hosting, whatever the default")
def test_classes_that_chose_their_hosting_never_warn(ray_session, crowding, caplog, unique):
    # A class saying Dedicated() chose an actor per object; a pooled one starts no
    # actor per object. (own_process=True takes the same path as Dedicated(): Worker.)
    held = [dotdo.Held(f"{unique}-{i}") for i in range(3)]
    pooled = [dotdo.PoolHeld(f"{unique}-{i}") for i in range(10)]
    with caplog.at_level("WARNING", logger="dotdo"):
        dotdo.get([s.incr() for s in held + pooled])
    try:
        assert _crowding_warnings(caplog) == []
    finally:
        _kill(held)


def test_in_process_objects_never_warn(local_session, crowding, caplog, unique):
    with caplog.at_level("WARNING", logger="dotdo"):
        assert dotdo.get([dotdo.Counter(f"{unique}-{i}").incr() for i in range(20)]) == [1] * 20
    assert _crowding_warnings(caplog) == []


def test_the_count_is_per_class_and_its_memory_bounded(monkeypatch, caplog):
    # No Ray: the count alone. The CPUs are read once, at the first count.
    reads = []
    count = hosting_module.Crowding(per_cpu=2)
    with caplog.at_level("WARNING", logger="dotdo"):
        warned = [count.note("User", f"u{i}", lambda: reads.append(1) or {"CPU": 2.0})
                  for i in range(10)]
        assert count.note("Order", "o1", dict) is False  # another class counts apart
    assert warned == [False] * 4 + [True] + [False] * 5 and reads == [1]
    assert len(_crowding_warnings(caplog)) == 1
    assert count._seen["User"] is None  # nothing kept once it warned
