"""Retries you can see, progress, and cancelling a running job.

    python examples/queue_retries.py

A card charge fails twice before it goes through: between attempts it waits in the
queue as `retrying` (holding no worker slot), and every attempt stays inspectable.
An import reports its progress; a long sync job is cancelled while it runs.
"""

import asyncio
import time

import dotdo


@dotdo.job("charge")
async def charge(payload):
    if dotdo.current_job()["attempt"] < 3:  # the card network is busy twice
        raise ConnectionError("card network busy")
    return {"charged": payload["cents"]}


@dotdo.job("import_csv")
async def import_csv(payload):
    for done in range(1, 6):
        await asyncio.sleep(0.3)
        dotdo.progress(done / 5, f"imported {done * payload['rows'] // 5:,} rows")
    return payload["rows"]


@dotdo.job("rebuild_index")
def rebuild_index(payload):
    """Sync work in small steps, checking whether it should stop."""
    for _ in range(3000):
        if dotdo.cancelled():
            raise RuntimeError("stopped on request, index left as it was")
        time.sleep(0.01)
    return "rebuilt"


def wait(queue, job_id, ok):
    while not ok(job := queue.get(job_id).result()):
        time.sleep(0.05)
    return job


def main() -> None:
    dotdo.init()
    queue = dotdo.Queue(f"billing-{time.strftime('%Y%m%d-%H%M%S')}")
    charge_id = queue.enqueue("charge", {"cents": 1999}, backoff=[0.5]).result()["$id"]
    import_id = queue.enqueue("import_csv", {"rows": 10_000}).result()["$id"]
    index_id = queue.enqueue("rebuild_index", None).result()["$id"]
    worker = dotdo.Worker(f"{queue.id}-worker")
    worker.start(queue.id, concurrency=4).result()

    job = wait(queue, charge_id, lambda j: j["status"] == "retrying")
    print(f"charge: retrying after attempt {job['attempts']}, next run in "
          f"{job['runAt'] - time.time():.1f} s: {job['error']}")
    job = wait(queue, import_id, lambda j: (j["progress"] or 0) >= 0.4)
    print(f"import_csv: {job['progress']:.0%} {job['progressMessage']}")
    wait(queue, index_id, lambda j: j["status"] == "running")
    queue.cancel(index_id).result()
    job = wait(queue, index_id, lambda j: j["status"] == "cancelled")
    print(f"rebuild_index: {job['status']} while running ({job['error']})")

    wait(queue, charge_id, lambda j: j["status"] == "completed")
    for attempt in queue.attempts(charge_id).result():
        print(f"  charge attempt {attempt['attempt']}: {attempt['outcome']}"
              f"{': ' + attempt['error'] if attempt['error'] else ''}")
    print(f"charge output: {queue.result(charge_id).result()['output']}")
    wait(queue, import_id, lambda j: j["status"] == "completed")
    print(f"worker stopped: {worker.stop().result()}")


if __name__ == "__main__":
    main()
