"""One real local Ray for the whole session, and storage under a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

import dotdo
from dotdo import client, connect

ROOT = Path(__file__).resolve().parent.parent
# Hosts (Ray workers inherit this environment, and in-process hosts read it too) give
# up on a dead caller's deferred call after 5 s, not 30; drivers the tests start ping
# accordingly.
os.environ.setdefault("DOTDO_DEFERRED_TIMEOUT", "5")


# Every test on Ray runs in both hosting modes. The pool evicts after a second idle,
# so objects leave memory and come back all through the suite.
HOSTINGS = {"dedicated": "dedicated", "pooled": "pooled:2:1"}


# Tests that run a whole driver (and Ray) of their own for a minute or more: started
# first, so that the two pytest workers do not end on one of them while the other idles.
# (With `--dist worksteal`: one worker starts them, the other takes tests from the end.)
LONG_FIRST = ("tests/faults/test_faults.py", "tests/test_cluster.py", "tests/faults/")
# Then the dedicated pass, the tests on neither pass's Ray, and the pooled pass. Each
# worker starts with a contiguous half and one that is done takes tests from the end of
# the other's: with neither pass's tests in the middle, what it takes seldom needs the
# other pass's Ray, whose start (Ray, then every host cold) costs 10-20 s each time.
PASS_ORDER = {"dedicated": 0, None: 1, "pooled": 2}


def _hosting_of(item: pytest.Item) -> str | None:
    return getattr(getattr(item, "callspec", None), "params", {}).get("hosting")


@pytest.hookimpl(trylast=True)  # after pytest groups tests by their session fixtures
def pytest_collection_modifyitems(items):
    """``@pytest.mark.dedicated_pass(why)``: a test that would only repeat itself in the
    pooled pass (what it tests does not depend on the default hosting) runs once. A test
    asking for the ``pooled`` fixture (tests/test_hosting.py) runs in the pooled pass
    only. Both are skipped before their fixtures start, so a skip never starts a Ray."""
    def rank(item: pytest.Item) -> tuple[int, int]:
        path = Path(item.fspath).as_posix()
        first = next((i for i, p in enumerate(LONG_FIRST) if path.startswith(str(ROOT / p))),
                     len(LONG_FIRST))
        return first, PASS_ORDER[_hosting_of(item)]

    items.sort(key=rank)
    for item in items:
        marker = item.get_closest_marker("dedicated_pass")
        hosting = _hosting_of(item)
        if marker is not None and hosting == "pooled":
            item.add_marker(pytest.mark.skip(reason=f"runs in the dedicated pass: {marker.args[0]}"))
        elif "pooled" in item.fixturenames and hosting == "dedicated":
            item.add_marker(pytest.mark.skip(reason="runs in the pooled pass"))


@pytest.fixture(scope="session", params=sorted(HOSTINGS))
def hosting(request) -> str:
    """The hosting mode of this pass: ``dedicated`` or ``pooled``. Drivers started by
    tests inherit it through ``$DOTDO_HOSTING``."""
    previous = os.environ.get("DOTDO_HOSTING")
    os.environ["DOTDO_HOSTING"] = HOSTINGS[request.param]
    yield request.param
    if previous is None:
        os.environ.pop("DOTDO_HOSTING", None)
    else:
        os.environ["DOTDO_HOSTING"] = previous


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory, hosting) -> Path:
    return tmp_path_factory.mktemp(f"dotdo-storage-{hosting}")


def start_ray(storage_root) -> None:
    """The session's local Ray; metrics reach the Prometheus endpoint each second."""
    dotdo.init(address="local", storage=str(storage_root), num_cpus=2,
               _system_config={"metrics_report_interval_ms": 1000})


@pytest.fixture(scope="session")
def _ray_session(storage_root):
    start_ray(storage_root)
    yield
    dotdo.shutdown()


@pytest.fixture
def ray_session(_ray_session, storage_root):
    """dotdo on the session's Ray; starts it again if a test shut it down, and comes
    back to it after a test that ran objects in process."""
    if not ray.is_initialized():
        start_ray(storage_root)
    elif connect.settings().in_process:
        dotdo.init(storage=str(storage_root))
    return connect.settings()


@pytest.fixture(scope="session")
def local_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dotdo-storage-in-process")


@pytest.fixture
def local_session(local_root):
    """dotdo with every object in this process and no Ray (``in_process=True``): for
    tests of logic. Runs once, not once per hosting pass."""
    return dotdo.init(in_process=True, storage=str(local_root))


def _stubs(retire):
    """A factory of stubs (``make("Counter", id)``), then ``retire`` for each it made."""
    made = []

    def make(cls_name: str, object_id: str):
        stub = dotdo.stub(cls_name, object_id)
        made.append(stub)
        return stub

    yield make
    for stub in made:
        retire(stub)


def _forget(stub) -> None:
    """Take the object out of its host for good: its schedules and alarms stop."""
    dotdo.get(client.actor_handle(stub).evict.remote(stub.class_name, stub.id, True))


@pytest.fixture
def make_local(local_session):
    """As ``make_object``, with the objects in this process; each is retired at the
    end of the test (its schedules stop)."""
    yield from _stubs(_forget)


@pytest.fixture
def unique(request) -> str:
    """An id no other test uses, so tests never share an object by accident."""
    return request.node.name.replace("[", "-").replace("]", "")


def run_driver(code: str, *, env: dict | None = None, timeout: float = 120) -> str:
    """Run ``code`` in a new Python driver process with the repo importable."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(f"driver failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture
def make_object(ray_session):
    """Factory of stubs whose actors are stopped for good at the end of the test,
    so that objects with schedules do not keep ticking through the session."""
    yield from _stubs(_stop_actor)
    client.forget_handles()


def _stop_actor(stub) -> None:
    try:
        if isinstance(client.hosting_of(stub._cls), dotdo.Pooled):  # other objects share it
            _forget(stub)
        else:
            ray.kill(client.actor_handle(stub), no_restart=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


def journaled_steps(storage_root: str, worker_ids: list[str] | None = None) -> list[str]:
    """Finished steps across the Worker objects' own SQLite files (of ``worker_ids``,
    or of every worker), read from outside as an operator would."""
    import glob
    import sqlite3

    steps = []
    for path in glob.glob(os.path.join(storage_root, "Worker", "*", "*.sqlite3")):
        conn = sqlite3.connect(path)
        owner = conn.execute("SELECT value FROM _dotdo_meta WHERE key = 'id'").fetchone()[0]
        if worker_ids is None or owner in worker_ids:
            steps += [r[0] for r in conn.execute("SELECT step_id FROM _dotdo_steps")]
        conn.close()
    return steps


def host_actor_name(class_name: str, object_id: str) -> str:
    """The Ray actor name hosting an object, in this pass's hosting mode."""
    from dotdo.hosting import host_name

    return host_name(class_name, object_id, client.hosting_of(dotdo.stub(class_name, object_id)._cls))


def host_pid(stub) -> int:
    return ray.get(client.actor_handle(stub).stats.remote())["pid"]


def kill_and_wait(stub, how: str = "SIGKILL") -> None:
    """Kill the object's actor and wait until a new process serves it."""
    import signal
    import time

    handle = client.actor_handle(stub)
    pid = host_pid(stub)
    if how == "ray.kill":
        ray.kill(handle, no_restart=False)
    else:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if ray.get(handle.stats.remote(), timeout=30)["pid"] != pid:
                return
        except ray.exceptions.RayActorError:
            time.sleep(0.05)
    raise AssertionError("the object did not come back")


def wait_for(predicate, timeout: float = 60.0):
    """Poll ``predicate`` until it returns something true, and return that. A read
    that was in flight when a test killed the actor is simply read again."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def live_object(stub):
    """In-process mode only: the live object behind ``stub`` (activated if need be),
    for a test to inject a real fault into its own SQLite connection."""
    table = client.actor_handle(stub)._endpoints._table
    return table.objects[(stub.class_name, stub.id)]
