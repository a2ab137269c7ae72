"""Retention and graceful shutdown.

    python examples/queue_operations.py

The queue keeps the newest 10 completed jobs (and deletes the rest, with their
workers' step journals, in the background). A worker stopped with a timeout hands a
job it could not finish back to the queue at once, where another worker takes it.
"""

import asyncio
import time

import dotdo


@dotdo.job("thumbnail")
async def thumbnail(payload):
    return payload


@dotdo.job("transcode")
async def transcode(payload):
    await asyncio.sleep(payload["seconds"])
    return "transcoded"


def main() -> None:
    dotdo.init()
    queue = dotdo.Queue(f"ops-{time.strftime('%Y%m%d-%H%M%S')}")
    queue.configure(keep_completed=10, keep_failed={"count": 1000, "age": 7 * 86_400}).result()
    first = dotdo.Worker(f"{queue.id}-first")
    first.start(queue.id).result()
    queue.enqueue_many([{"type": "thumbnail", "payload": i} for i in range(50)]).result()
    while (m := queue.get_metrics().result()).completed < 10 or m.pending + m.running:
        time.sleep(0.1)
    while queue.get_metrics().completed.result() > 10:  # retention runs every few seconds
        time.sleep(0.2)
    print(f"retention: 50 ran, {queue.get_metrics().completed.result()} completed kept")

    long = queue.enqueue("transcode", {"seconds": 2}).result()["$id"]
    while queue.get(long).result()["status"] != "running":
        time.sleep(0.05)
    summary = first.stop(timeout=0.2).result()
    job = queue.get(long).result()
    print(f"stop(timeout=0.2): {summary['finished']} finished, returned "
          f"{len(summary['returned'])}; the job is {job['status']} again")
    second = dotdo.Worker(f"{queue.id}-second")
    second.start(queue.id).result()
    while queue.get(long).result()["status"] != "completed":
        time.sleep(0.1)
    print(f"attempts: {[a['outcome'] for a in queue.attempts(long).result()]}")
    second.stop().result()


if __name__ == "__main__":
    main()
