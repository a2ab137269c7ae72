"""In-process hosting: the host core on a thread of this process, with no Ray."""

from __future__ import annotations

import asyncio

import pytest

import dotdo
from dotdo import client
from dotdo.inprocess import LocalHost
from tests import objects  # noqa: F401  (the classes below are defined there)
from tests.conftest import run_driver


def test_a_driver_runs_objects_queues_and_workers_without_ray(tmp_path):
    # Given a new driver that asks for in-process hosting through the environment
    code = """
import time
import ray
import dotdo
from tests import job_handlers  # noqa: F401

counter = dotdo.Counter("c")
print(counter.incr(2).result(), counter.incr(3).result())
queue = dotdo.Queue("q")
queue.enqueue_many([{"type": "echo", "payload": i} for i in range(50)]).result()
worker = dotdo.Worker("w")
worker.start("q", concurrency=4).result()
while queue.get_metrics().completed.result() < 50:
    time.sleep(0.01)
worker.stop().result()
print(queue.get_metrics().completed.result(), ray.is_initialized())
dotdo.shutdown()
"""
    out = run_driver(code, env={"DOTDO_IN_PROCESS": "1", "DOTDO_STORAGE": str(tmp_path)})
    # Then objects, the queue and a worker ran, and Ray was never started
    assert out.split() == ["2", "5", "50", "False"]
    # And the objects' files are where Ray hosting would have written them
    assert list((tmp_path / "Counter").rglob("*.sqlite3"))


def test_calls_of_one_caller_start_in_order_and_promises_pipeline(make_local, unique):
    counter = make_local("Counter", unique)
    promises = [counter.incr(1) for _ in range(200)]
    assert [p.result() for p in promises] == list(range(1, 201))
    # A promise as an argument, a projection, and a method on a promised stub
    other = make_local("Counter", f"{unique}-other")
    assert other.incr(counter.incr(0)).result() == 200
    pipe = make_local("Pipe", unique)
    assert pipe.record().items[1].result() == 20
    assert dotdo.get(pipe.record()["field"].ref) == f"made-by-{unique}"
    assert pipe.peer(f"{unique}-peer").incr(5).result() == 5


def test_errors_reach_the_caller_as_themselves(make_local, unique):
    boom = make_local("Counter", unique)
    with pytest.raises(dotdo.MethodNotFoundError, match="has no public method"):
        boom.nope().result()
    pipe = make_local("Pipe", unique)
    with pytest.raises(ValueError, match="from the object"):
        pipe.fail("from the object").result()
    # Everything derived from a failed call fails with its error
    with pytest.raises(ValueError, match="derived"):
        pipe.use(pipe.fail("derived")).result()
    with pytest.raises(TimeoutError, match="not resolved within"):
        pipe.slow(5).result(timeout=0.05)


def test_awaiting_works_on_the_callers_own_loop(make_local, unique):
    counter = make_local("Counter", unique)

    async def main():
        return await asyncio.gather(*[counter.incr(1) for _ in range(20)])

    assert asyncio.run(main()) == list(range(1, 21))


@pytest.mark.dedicated_pass("switching modes does not depend on the Ray hosting")
def test_switching_to_in_process_and_back_to_ray(ray_session, unique, tmp_path):
    # Given a driver on Ray, with an object there
    on_ray = dotdo.Counter(unique)
    on_ray.incr(1).result()
    # When it switches to in-process hosting: objects run here, in their own storage
    dotdo.init(in_process=True, storage=str(tmp_path))
    assert dotdo.Counter(unique).incr(10).result() == 10
    assert isinstance(client.actor_handle(dotdo.Counter(unique)), LocalHost)
    # Then back on Ray, the Ray-hosted object is where it was
    dotdo.init(storage=ray_session.storage)
    assert dotdo.Counter(unique).incr(1).result() == 2
    assert not isinstance(client.actor_handle(dotdo.Counter(unique)), LocalHost)


def test_in_process_takes_no_address(local_root):
    with pytest.raises(dotdo.ConfigError, match="give no address"):
        dotdo.init("auto", in_process=True, storage=str(local_root))
    with pytest.raises(dotdo.ConfigError, match="or Ray options"):
        dotdo.init(in_process=True, storage=str(local_root), num_cpus=2)


def test_a_thousand_objects_fit_under_a_small_open_file_limit(tmp_path):
    # In a process that may open only 256 files, 1,000 objects each keep their state
    out = run_driver(f"""
import resource
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
import dotdo
from tests import objects
dotdo.init(in_process=True, storage={str(tmp_path)!r})
counters = [dotdo.Counter(f"c{{n}}") for n in range(1000)]
dotdo.get([c.incr(n) for n, c in enumerate(counters)])
print(sum(dotdo.get([c.get() for c in counters])))
""")
    assert int(out.strip().splitlines()[-1]) == sum(range(1000))
