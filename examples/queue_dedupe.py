"""Debounce and uniqueness: say what happened at enqueue.

    python examples/queue_dedupe.py

Five saves of a document within a second reindex it once, with the last version
(debounce); a welcome email asked for twice is sent once (a uniqueness window that
outlives the job's completion).
"""

import time

import dotdo


@dotdo.job("reindex")
async def reindex(payload):
    return f"indexed version {payload['version']}"


@dotdo.job("welcome")
async def welcome(payload):
    return f"welcomed {payload['user']}"


def main() -> None:
    dotdo.init()
    queue = dotdo.Queue(f"docs-{time.strftime('%Y%m%d-%H%M%S')}")
    worker = dotdo.Worker(f"{queue.id}-worker")
    worker.start(queue.id).result()

    saves = [queue.enqueue("reindex", {"version": v}, dedupe_key="reindex-doc-7",
                           debounce=0.5).result() for v in range(1, 6)]
    print(f"reindex: 5 enqueues -> {[s['enqueued'] for s in saves]}, "
          f"{len({s['$id'] for s in saves})} job")
    first = queue.enqueue("welcome", {"user": "ada"}, unique_for=3600).result()
    queue.wait(first["$id"], timeout=60).result()  # until it completed, no polling
    again = queue.enqueue("welcome", {"user": "ada"}, unique_for=3600).result()
    print(f"welcome: {first['enqueued']}, then {again['enqueued']} of the same job "
          f"({again['status']}): {again['$id'] == first['$id']}")
    reindexed = queue.wait(saves[0]["$id"], timeout=60).result()  # the Result Thing
    print(f"reindex ran once: {reindexed['output']}")
    worker.stop().result()


if __name__ == "__main__":
    main()
