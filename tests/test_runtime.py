"""Objects with their own SQLite: as Ray actors, and their logic in process."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import ray

import dotdo
from dotdo import client, host
from dotdo.ids import storage_path
from tests import objects  # noqa: F401  (registers Counter and Pipe)
from tests.conftest import ROOT, host_actor_name, kill_and_wait, run_driver, start_ray, wait_for


def test_unknown_class_lists_known_ones():
    with pytest.raises(AttributeError, match=r"no DurableObject subclass is named 'Nope'.*Counter"):
        dotdo.Nope("x")


@pytest.mark.parametrize("bad", ["", "x" * 513])
def test_bad_ids_raise_value_error_before_anything_happens(bad):
    with pytest.raises(ValueError):
        dotdo.Counter(bad)


def test_object_is_a_named_detached_actor_with_its_own_file(ray_session, unique):
    counter = dotdo.Counter(unique)
    assert counter.incr().result() == 1
    handle = ray.get_actor(host_actor_name("Counter", unique), namespace="dotdo")
    assert ("Counter", unique) in ray.get(handle.stats.remote())["objects"]
    assert os.path.exists(storage_path(ray_session.storage, "Counter", unique))


def test_odd_ids_work_and_stay_apart(local_session):
    a, b = dotdo.Counter("../Odd Id"), dotdo.Counter("../odd-id")
    assert dotdo.get([a.incr(1), b.incr(10)]) == [1, 10]
    root = local_session.storage
    for object_id in ("../Odd Id", "../odd-id"):
        path = storage_path(root, "Counter", object_id)
        assert os.path.commonpath([root, path]) == root and os.path.exists(path)


def test_unencodable_value_is_refused_and_nothing_written(local_session, unique):
    counter = dotdo.Counter(unique)
    # Ray can send a complex number, msgpack cannot store it: refused in the object.
    with pytest.raises(dotdo.EncodeError, match="complex"):
        counter.put("k", {"ok": 1, "bad": 1j}).result()
    # A socket cannot even be sent: refused at the call, before anything is sent.
    with socket.socket() as sock, pytest.raises(dotdo.EncodeError, match="Counter.put"):
        counter.put("k", sock)
    assert counter.keys().result() == []
    assert counter.incr().result() == 1  # the refused calls left no gap behind


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_state_survives_a_crash(ray_session, unique, how):
    counter = dotdo.Counter(unique)
    dotdo.get([counter.incr() for _ in range(20)])
    counter.put("profile", {"name": "Ada"}).result()
    kill_and_wait(counter, how)
    assert counter.get().result() == 20
    assert counter.read("profile").result() == {"name": "Ada"}
    assert counter.incr().result() == 21


def test_corrupt_file_fails_only_that_object(local_session, unique):
    path = storage_path(local_session.storage, "Counter", unique)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"garbage" * 1000)
    with pytest.raises(dotdo.CorruptStorageError) as info:
        dotdo.Counter(unique).incr().result()
    assert path in str(info.value)
    with open(path, "rb") as f:
        assert f.read() == b"garbage" * 1000
    assert dotdo.Counter(unique + "-healthy").incr().result() == 1
    # Once the user moves the bad file away, the object starts afresh.
    os.rename(path, path + ".bad")
    assert dotdo.Counter(unique).incr().result() == 1


def test_two_drivers_share_one_actor_and_lose_nothing(ray_session, unique, tmp_path):
    address = ray.get_runtime_context().gcs_address
    go = tmp_path / "go"
    code = f"""
import os, sys, time, dotdo
from tests.objects import Counter
dotdo.init(address={address!r}, storage={ray_session.storage!r})
open(os.path.join({str(tmp_path)!r}, "joined-" + sys.argv[1]), "w").close()
while not os.path.exists({str(go)!r}):
    time.sleep(0.005)
dotdo.get([dotdo.Counter({unique!r}).incr() for _ in range(50)])
print("done")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    drivers = [
        subprocess.Popen([sys.executable, "-c", code, str(i)], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    # Both joined and waiting, then both go at once (a driver that failed to join says why)
    wait_for(lambda: len(list(tmp_path.glob("joined-*"))) == 2
             or any(d.poll() is not None for d in drivers))
    go.touch()
    for d in drivers:
        out, err = d.communicate(timeout=120)
        assert d.returncode == 0, err
    assert dotdo.Counter(unique).get().result() == 100
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    assert names.count(host_actor_name("Counter", unique)) == 1


def test_state_survives_full_ray_shutdown(ray_session, unique):
    counter = dotdo.Counter(unique)
    dotdo.get([counter.incr(2) for _ in range(5)])
    storage = ray_session.storage
    dotdo.shutdown()
    assert not ray.is_initialized()
    start_ray(storage)
    assert dotdo.Counter(unique).get().result() == 10


def test_embedded_default_starts_local_ray_and_uses_dot_dotdo(tmp_path):
    code = """
import os, ray, dotdo
from tests.objects import Counter
assert not ray.is_initialized()
print(dotdo.Counter("embedded").incr().result())
print(os.path.isdir(os.path.join(os.getcwd(), ".dotdo", "Counter")))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    env.pop("DOTDO_STORAGE", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True"]


@pytest.mark.dedicated_pass("the storage root does not depend on the hosting")
def test_dotdo_storage_env_sets_the_root(tmp_path, ray_session):
    code = """
import dotdo
print(dotdo.init.__module__, dotdo.settings.default_storage())
"""
    out = run_driver(code, env={"DOTDO_STORAGE": str(tmp_path / "here")})
    assert out.split()[1] == str(tmp_path / "here")


def test_join_a_cluster_started_with_ray_start(tmp_path):
    port = _free_port()
    # Ray's socket paths must stay under 108 bytes: pytest's tmp_path is too deep.
    temp = tempfile.mkdtemp(prefix="dotdo-ray-")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    head = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head",
         f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
         f"--temp-dir={temp}", "--disable-usage-stats", "--block"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait_for_port(port, head)
        code = f"""
import dotdo
from tests.objects import Counter
dotdo.init(address="auto", storage={str(tmp_path / "store")!r})
print(dotdo.Counter("joined").incr(5).result())
"""
        out = run_driver(code, env={"RAY_ADDRESS": f"127.0.0.1:{port}"}, timeout=180)
        assert out.split()[-1] == "5"
        assert os.path.exists(storage_path(str(tmp_path / "store"), "Counter", "joined"))
    finally:
        head.terminate()  # its Ray processes end at once; `ray start` itself lingers 30 s
        try:
            head.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            head.kill()
            head.communicate(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ray start failed:\n{process.stdout.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("ray start did not open its port")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_class_workers_cannot_import_gets_a_clear_error(ray_session, tmp_path, monkeypatch):
    # Given a class in a module only this driver can import (not the workers)
    (tmp_path / "only_here.py").write_text(
        "import dotdo\nclass OnlyHere(dotdo.DurableObject):\n    def ping(self):\n        return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here  # noqa: F401

    # When it is called, the error says why its host could not start and what to do.
    with pytest.raises(dotdo.ObjectError, match="No module named 'only_here'.*every worker can import"):
        dotdo.OnlyHere("x").ping().result(timeout=120)


def test_a_call_lists_at_most_256_deferred_calls_the_lowest_and_says_if_there_are_more():
    deferred = {n: 1 for n in range(5, 1005)}
    for gone in (6, 7, 900):  # their arguments arrived
        del deferred[gone]
    numbers, more = client._listed(deferred)
    assert numbers == [5] + list(range(8, 263)) and more
    assert client._listed({3: 1, 9: 2}) == ([3, 9], False)
    assert client._listed({}) == (None, False)


def test_a_host_interns_a_bounded_number_of_class_names():
    table: dict[str, str] = {}
    for i in range(10 * host.MAX_INTERNED):
        host.intern(table, f"Class{i}")
    assert len(table) <= host.MAX_INTERNED
    # Equal names share one string, so parked streams share their class name.
    assert host.intern(table, "".join(["Coun", "ter"])) is host.intern(
        table, "".join(["Cou", "nter"]))


def _ray_temp_dir_recording(address: str) -> str:
    """A Ray temp dir (short: Ray's socket paths must stay under 108 bytes) whose
    ``ray_current_cluster`` names ``address``, as a `ray start` head killed
    without `ray stop` leaves it."""
    temp = tempfile.mkdtemp(prefix="dotdo-ray-")
    os.makedirs(os.path.join(temp, "ray"))
    with open(os.path.join(temp, "ray", "ray_current_cluster"), "w") as f:
        f.write(address)
    return temp


def test_a_stale_recorded_cluster_is_passed_over_for_a_local_ray(tmp_path):
    stale = f"127.0.0.1:{_free_port()}"
    temp = _ray_temp_dir_recording(stale)
    code = f"""
import dotdo
from tests.objects import Counter
dotdo.init(storage={str(tmp_path / "store")!r})
print(dotdo.Counter("stale").incr(3).result())
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=temp, PYTHONPATH=str(ROOT))
    try:
        # The timeout only guards against a hang (Ray's own wait is minutes long).
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "3"
    # The warning names the stale file, its address and the fix.
    assert "ray_current_cluster" in done.stderr and stale in done.stderr
    assert "ray stop" in done.stderr


def test_an_address_where_nothing_answers_is_a_config_error_not_a_hang():
    closed = f"127.0.0.1:{_free_port()}"
    temp = _ray_temp_dir_recording(closed)
    code = f"""
import os, dotdo
for address in (None, {closed!r}, "auto"):
    try:
        dotdo.init(address)
        print("joined")
    except dotdo.ConfigError as exc:
        print("refused:", exc)
    os.environ.pop("RAY_ADDRESS", None)  # "auto" then reads the recorded cluster
"""
    try:
        out = run_driver(code, env={"RAY_ADDRESS": closed, "RAY_TMPDIR": temp}, timeout=120)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.startswith("refused:") for line in lines), out
    assert all(closed in line and "ray start --head" in line for line in lines)
    assert "ray_current_cluster" in lines[2]


@pytest.mark.dedicated_pass("the storage root does not depend on the hosting")
def test_the_storage_root_is_private_to_its_user(ray_session, tmp_path):
    root = tmp_path / "private-root"
    out = run_driver(f"""
import os, dotdo
dotdo.init(address={ray.get_runtime_context().gcs_address!r}, storage={str(root)!r})
print(oct(os.stat({str(root)!r}).st_mode & 0o777))
""")
    assert out.split()[-1] == "0o700"
