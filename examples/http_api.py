"""The HTTP API: enqueue over HTTP with an Idempotency-Key, wait for the result,
call an exposed object, and scrape Prometheus metrics.

    python examples/http_api.py

The API runs in this process (as `dotdo serve` runs it), on a free port of
127.0.0.1, with the tokens it keeps in the storage root. Any HTTP client works; this
one is the standard library's.
"""

import json
import time
import urllib.error
import urllib.request

import dotdo
from dotdo.ops.api import create_app
from dotdo.ops.auth import Tokens
from dotdo.ops.serve import start_in_background
from dotdo.ops.service import Service


@dotdo.job("invoice")
def invoice(payload):
    return {"invoice": f"INV-{payload['order']}", "total": payload["total"]}


class Counter(dotdo.DurableObject, expose=["add"]):
    """Reachable over HTTP, for `add` only."""

    def add(self, n: int) -> int:
        total = self.storage.get("total", 0) + n
        self.storage.put("total", total)
        return total

    def reset(self) -> None:  # not exposed: the API answers 403
        self.storage.delete("total")


def http(method, url, token, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=90) as answer:
            raw = answer.read().decode()
            return answer.status, json.loads(raw) if raw.startswith(("{", "[")) else raw
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def main() -> None:
    settings = dotdo.init()
    name = f"billing-{time.strftime('%Y%m%d-%H%M%S')}"
    dotdo.Queue(name).settings().result()  # the API answers 404 for queues with no file
    dotdo.Worker(f"{name}-w").start(name).result()
    tokens = Tokens.load_or_create(settings.storage)
    server = start_in_background(create_app(Service(), tokens))
    try:
        url, token = server.url, tokens.token
        for _ in range(2):  # the same key twice: one job
            status, job = http("POST", f"{url}/api/queues/{name}/jobs", token,
                               {"type": "invoice", "payload": {"order": 7, "total": 42}},
                               headers={"Idempotency-Key": "order-7"})
            print(f"POST /api/queues/{name}/jobs -> {status} {job['$id']} ({job['enqueued']})")
        status, outcome = http("GET", f"{url}/api/jobs/{name}/order-7/result?wait=30", token)
        print(f"result: {outcome['status']} {outcome['output']}")
        status, body = http("POST", f"{url}/api/objects/Counter/{name}/add", token, {"args": [3]})
        print(f"Counter.add over HTTP -> {status} {body['result']}")
        status, body = http("POST", f"{url}/api/objects/Counter/{name}/reset", token, {})
        print(f"Counter.reset over HTTP -> {status}: {body['error']}")
        status, body = http("GET", f"{url}/api/queues/{name}", tokens.read_token)
        print(f"read-only token reads: {status}, completed {body['counts']['completed']}")
        status, metrics = http("GET", f"{url}/metrics", token)
        print(next(line for line in metrics.splitlines()
                   if line.startswith(f'dotdo_jobs_total{{queue="{name}",outcome="completed"}}')))
    finally:
        server.stop()
        dotdo.Worker(f"{name}-w").stop().result()


if __name__ == "__main__":
    main()
