"""Approval by a person: a job charges the card, emails a manager a link, and waits
(for days if need be, holding no worker) until the link is followed over HTTP.

    python examples/approval.py

The job makes an *awakeable* (`await dotdo.awakeable()`: a durable promise with an
id), puts its resolve URL in the email, and waits for it. This script plays the
manager: it reads the email and POSTs the URL, as a mail client's button would, to
the HTTP API (run in this process as `dotdo serve` runs it). The job then runs again
from the top: the charge and the email are named steps, so they replay from the
queue's journal instead of running twice, and the wait returns the manager's value.
"""

import json
import re
import time
import urllib.error
import urllib.request

import dotdo
from dotdo.ops.api import create_app
from dotdo.ops.auth import Tokens
from dotdo.ops.serve import start_in_background
from dotdo.ops.service import Service

WEEK = 7 * 86_400


class Ledger(dotdo.DurableObject):
    """A payment provider and a mailbox, kept durably: what the job did outside."""

    def charge(self, order: int, cents: int) -> str:
        charges = [*self.storage.get("charges", []), f"order {order}: {cents} cents"]
        self.storage.put("charges", charges)
        return f"ch_{order}_{len(charges)}"

    def email(self, to: str, body: str) -> None:
        self.storage.put("inbox", [*self.storage.get("inbox", []), {"to": to, "body": body}])

    def ran(self) -> None:
        """Counts the job's runs (a side effect outside steps: it repeats)."""
        self.storage.put("runs", self.storage.get("runs", 0) + 1)

    def report(self) -> dict:
        return {"runs": self.storage.get("runs", 0),
                **{k: self.storage.get(k, []) for k in ("charges", "inbox")}}


@dotdo.job("large-order")
async def large_order(payload: dict) -> dict:
    order, ledger = payload["order"], dotdo.Ledger(payload["ledger"])
    await ledger.ran()  # outside any step: once per run of the job

    async def charge() -> str:
        return await ledger.charge(order, payload["cents"])

    charge_id = await dotdo.do(charge, step_id=f"charge-{order}")
    token = await dotdo.awakeable()  # the same id when the job runs again

    async def ask() -> None:
        await ledger.email("manager@example.com",
                           f"Order {order} ({payload['cents']} cents, {charge_id}) needs your "
                           f"approval: POST {payload['api']}/api/awakeables/{token}/resolve")

    await dotdo.do(ask, step_id=f"ask-{order}")
    try:
        decision = await dotdo.wait(token, timeout=WEEK)
    except TimeoutError:
        return {"order": order, "charge": charge_id, "shipped": False, "why": "no answer in a week"}
    except dotdo.RejectedError as no:
        return {"order": order, "charge": charge_id, "shipped": False, "why": str(no)}
    return {"order": order, "charge": charge_id, "shipped": True, "by": decision["by"]}


def http(method: str, url: str, token: str, body=None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=90) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _email(ledger, timeout: float = 60.0) -> str:
    """The manager's inbox, once the email is there."""
    deadline = time.monotonic() + timeout
    while not (inbox := ledger.report().result()["inbox"]):
        if time.monotonic() > deadline:
            raise TimeoutError("no email reached the manager")
        time.sleep(0.05)
    return inbox[0]["body"]


def _parked(queue, job_id: str, timeout: float = 60.0) -> dict:
    """The job once it waits (its run ended at the wait; it holds no worker)."""
    deadline = time.monotonic() + timeout
    while (job := queue.get(job_id).result())["status"] != "waiting":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job_id} is {job['status']}, not waiting")
        time.sleep(0.05)
    return job


def main() -> None:
    settings = dotdo.init()
    name = f"orders-{time.strftime('%Y%m%d-%H%M%S')}"
    queue, worker = dotdo.Queue(name), dotdo.Worker(f"{name}-w")
    queue.settings().result()  # the API answers 404 for queues with no file
    worker.start(name).result()
    tokens = Tokens.load_or_create(settings.storage)
    server = start_in_background(create_app(Service(), tokens))
    try:
        queue.enqueue("large-order", {"order": 7, "cents": 125_000, "ledger": name,
                                      "api": server.url}, job_id="order-7").result()
        body = _email(dotdo.Ledger(name))
        print(f"email to the manager: {body}")
        job = _parked(queue, "order-7")
        print(f"order-7 is {job['status']} at {job['waitingFor']}, worker {job['worker']}")
        url = re.search(r"POST (\S+)", body)[1]
        status, settled = http("POST", url, tokens.token, {"value": {"by": "grace"}})
        print(f"POST /api/awakeables/<id>/resolve -> {status} {settled['settled']}")
        output = queue.wait("order-7", timeout=60).result()["output"]
        print(f"order-7: shipped {output['shipped']}, approved by {output['by']}, "
              f"charge {output['charge']}")
        status, _ = http("POST", url, tokens.token, {"value": {"by": "mallory"}})
        print(f"the same link again -> {status} (an awakeable takes one answer)")
        ledger = dotdo.Ledger(name).report().result()
        print(f"{ledger['runs']} runs of the job; charges: {ledger['charges']}; "
              f"emails: {len(ledger['inbox'])}")
    finally:
        server.stop()
        worker.stop().result()


if __name__ == "__main__":
    main()
