"""Rate limits, fair groups and priorities, enforced by the queue across workers.

    python examples/queue_limits.py

An API queue may start 8 calls a second, and 3 a second per customer; a render queue
serves tenants round-robin, at most 2 running per tenant, so a tenant with 200 jobs
does not starve one with 5. Within a group, and under every limit, higher priority
goes first.
"""

import asyncio
import time

import dotdo


@dotdo.job("call_api")
async def call_api(payload):
    await asyncio.sleep(0.01)
    return payload


@dotdo.job("render")
async def render(payload):
    await asyncio.sleep(0.01)
    return payload


def most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


def drain(queue, total: int) -> list[dict]:
    while True:
        m = queue.get_metrics().result()
        if m.completed == total:
            return queue.list(limit=1000).result()["jobs"]
        time.sleep(0.1)


def main() -> None:
    dotdo.init()
    run = time.strftime("%Y%m%d-%H%M%S")
    api, renders = dotdo.Queue(f"api-{run}"), dotdo.Queue(f"render-{run}")
    api.configure(rate="8/s", key_rate="3/s").result()
    renders.configure(group_concurrency=2).result()
    api.enqueue_many([{"type": "call_api", "payload": i, "rate_key": customer}
                      for i in range(9) for customer in ("acme", "globex")]).result()
    renders.enqueue_many([{"type": "render", "payload": i, "group": "tenant-big"}
                          for i in range(200)]).result()
    renders.enqueue_many([{"type": "render", "payload": i, "group": "tenant-small"}
                          for i in range(5)]).result()
    workers = [dotdo.Worker(f"{q.id}-worker") for q in (api, renders)]
    dotdo.get([w.start(q.id, concurrency=8) for w, q in zip(workers, (api, renders))])

    calls = drain(api, 18)
    print(f"api: most starts in any second: {most_in_a_second([j['startedAt'] for j in calls])} "
          "(limit 8/s)")
    for customer in ("acme", "globex"):
        starts = [j["startedAt"] for j in calls if j["rateKey"] == customer]
        print(f"api: {customer}: most starts in any second: {most_in_a_second(starts)} (limit 3/s)")
    jobs = sorted(drain(renders, 205), key=lambda j: (j["startedAt"], j["$id"]))
    small = [i for i, j in enumerate(jobs) if j["group"] == "tenant-small"]
    print(f"render: tenant-small's 5 jobs started among the first {max(small) + 1} of 205 "
          "(enqueued after tenant-big's 200)")
    dotdo.get([w.stop() for w in workers])


if __name__ == "__main__":
    main()
