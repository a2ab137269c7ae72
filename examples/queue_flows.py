"""Dependencies and flows: a parent with children, enqueued in one transaction.

    python examples/queue_flows.py

An upload is fetched, then resized to three sizes (each a child of the fetch), then
published once all three are done (a job depending on the three). A job whose parent
fails is cancelled with it.
"""

import time

import dotdo


@dotdo.job("fetch")
async def fetch(payload):
    return {"bytes": 1_000_000, "name": payload["name"]}


@dotdo.job("resize")
async def resize(payload):
    (source,) = dotdo.parent_results().values()
    return f"{source['name']}@{payload['width']}"


@dotdo.job("publish")
async def publish(payload):
    return sorted(dotdo.parent_results().values())


@dotdo.job("scan")
async def scan(payload):
    raise dotdo.TerminalError("virus found")


def wait_idle(queue) -> None:
    while True:
        m = queue.get_metrics().result()
        if m.pending + m.running + m.waiting + m.retrying + m.delayed == 0:
            return
        time.sleep(0.05)


def main() -> None:
    dotdo.init()
    queue = dotdo.Queue(f"media-{time.strftime('%Y%m%d-%H%M%S')}")
    tree = queue.enqueue_flow({
        "type": "fetch", "payload": {"name": "cat.jpg"}, "job_id": "fetch-cat",
        "children": [{"type": "resize", "payload": {"width": w}, "job_id": f"resize-{w}"}
                     for w in (320, 640, 1280)]}).result()
    publish = queue.enqueue("publish", None, depends_on=[f"resize-{w}" for w in (320, 640, 1280)]
                            ).result()
    print(f"flow: {tree['job']['$id']} {tree['job']['status']}, children "
          f"{[c['job']['status'] for c in tree['children']]}, publish {publish['status']} "
          f"on {publish['waitingOn']} parents")
    scanned = queue.enqueue("scan", None, job_id="scan-dog").result()["$id"]
    follower = queue.enqueue("publish", None, depends_on=[scanned],
                             on_parent_failure="cancel").result()["$id"]
    worker = dotdo.Worker(f"{queue.id}-worker")
    worker.start(queue.id).result()
    wait_idle(queue)
    print(f"publish saw its parents' results: {queue.result(publish['$id']).result()['output']}")
    print(f"after a failed scan its follower is {queue.get(follower).result()['status']}: "
          f"{queue.get(follower).result()['error']}")
    worker.stop().result()


if __name__ == "__main__":
    main()
