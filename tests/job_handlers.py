"""Job handlers the queue tests use; module level, so Workers import them."""

import asyncio
import logging
import os
import threading
import time

import dotdo
from tests import objects  # noqa: F401  (Recorder, in the worker processes too)


@dotdo.job("echo")
async def echo(payload):
    return {"echo": payload}


@dotdo.job("flaky")
async def flaky(payload):
    """Fails until it has been tried ``payload['fail']`` times (counted durably)."""
    tries = await dotdo.Recorder(payload["witness"]).hit(f"flaky:{payload['key']}")
    if tries <= payload["fail"]:
        raise ConnectionError(f"try {tries} failed")
    return tries


_shop_log = logging.getLogger("tests.shop")
_shop_log.setLevel(logging.INFO)  # its INFO lines are made, so kept with the job


@dotdo.job("chatty")
async def chatty(payload):
    """Logs a line each try (and one from a pool thread); fails the first try."""
    tries = await dotdo.Recorder(payload["witness"]).hit(f"chatty:{payload['key']}")
    _shop_log.info("try %d for %s", tries, payload["key"])
    await asyncio.to_thread(_shop_log.warning, "from a thread, try %d", tries)
    if tries == 1:
        raise ConnectionError("the first try fails")
    return tries


@dotdo.job("slow")
async def slow(payload):
    await dotdo.Recorder(payload["witness"]).hit(f"start:{payload['n']}")
    await asyncio.sleep(payload.get("seconds", 0.1))
    return {"n": payload["n"], "pid": os.getpid()}


@dotdo.job("ordered")
async def ordered(payload):
    await dotdo.Recorder(payload["witness"]).note("order", payload["n"])


@dotdo.job("gated")
async def gated(payload):
    """Records how many gated jobs run at once, from the handlers' own records."""
    witness = dotdo.Recorder(payload["witness"])
    await witness.note("events", ["in", payload["n"]])
    await asyncio.sleep(0.05)
    await witness.note("events", ["out", payload["n"]])


@dotdo.job("sleepy")
async def sleepy(payload):
    await asyncio.sleep(payload["seconds"])
    return "woke"


def fail_always(payload):
    raise ValueError("by design")


dotdo.job({"doomed": fail_always})


# -- faults: handlers that misbehave the ways real ones do ------------------------------


def _note(payload, item) -> None:
    """From sync code (a handler in the worker's thread pool): wait for the note."""
    dotdo.Recorder(payload["witness"]).note(payload.get("key", "runs"), item).result()


@dotdo.job("burn")
def burn(payload):
    """Computes for ``seconds`` without ever yielding (a sync handler)."""
    _note(payload, ["start", os.getpid(), time.time()])
    deadline = time.monotonic() + payload["seconds"]
    n = 0
    while time.monotonic() < deadline:
        n += 1
    _note(payload, ["end", os.getpid(), time.time()])
    return n > 0


@dotdo.job("blocker")
async def blocker(payload):
    """An async handler that blocks its event loop (a common mistake)."""
    await dotdo.Recorder(payload["witness"]).note(payload.get("key", "runs"), ["start", os.getpid()])
    time.sleep(payload["seconds"])
    await dotdo.Recorder(payload["witness"]).note(payload.get("key", "runs"), ["end", os.getpid()])
    return "unblocked"


@dotdo.job("overrun")
def overrun(payload):
    """Sleeps past its timeout: sync code cannot be interrupted."""
    _note(payload, ["start", time.time()])
    time.sleep(payload["seconds"])
    _note(payload, ["end", time.time()])


@dotdo.job("suicide")
async def suicide(payload):
    """Kills its worker's process, as a segfault or the OOM killer would."""
    await dotdo.Recorder(payload["witness"]).hit(f"suicide:{payload['key']}")
    os._exit(1)


@dotdo.job("base_exception")
async def base_exception(payload):
    raise {"cancelled": asyncio.CancelledError, "exit": SystemExit}[payload]("from the handler")


@dotdo.job("thread_name")
def thread_name(payload):
    """Where a sync handler ran: a pool thread, or the worker's event loop."""
    time.sleep(payload.get("sleep", 0))
    return threading.current_thread().name


# -- queue features ---------------------------------------------------------------------


@dotdo.job("progressive")
async def progressive(payload):
    """Reports progress, then waits until the witness says go (or times out)."""
    dotdo.progress(0.4, "parsed 4,000 rows")
    witness = dotdo.Recorder(payload["witness"])
    while not await witness.hits("go"):
        await asyncio.sleep(0.05)
    return "done"


@dotdo.job("long_async")
async def long_async(payload):
    """Sleeps long; notes whether it was cancelled."""
    witness = dotdo.Recorder(payload["witness"])
    await witness.note("runs", ["start", payload["n"]])
    try:
        await asyncio.sleep(payload.get("seconds", 60))
    except asyncio.CancelledError:
        await witness.note("runs", ["cancelled", payload["n"]])
        raise
    await witness.note("runs", ["end", payload["n"]])
    return payload["n"]


@dotdo.job("long_sync")
def long_sync(payload):
    """Works in small steps until done or asked to stop (dotdo.cancelled())."""
    _note(payload, ["start", payload["n"]])
    deadline = time.monotonic() + payload.get("seconds", 60)
    while time.monotonic() < deadline:
        if dotdo.cancelled():
            _note(payload, ["stopped", payload["n"]])
            raise RuntimeError("stopped on request")
        time.sleep(0.02)
    _note(payload, ["end", payload["n"]])
    return payload["n"]


@dotdo.job("parents")
async def parents(payload):
    """Returns its parents' outputs and who it is."""
    return {"parents": dotdo.parent_results(), "me": dotdo.current_job()["id"]}


@dotdo.job("spawner")
async def spawner(payload):
    """Adds a child that waits for this job, while this job runs."""
    me = dotdo.current_job()
    await dotdo.Queue(me["queue"]).enqueue("parents", None, job_id=payload["child"],
                                           depends_on=[me["id"]])
    return "spawned"


@dotdo.job("stamp")
async def stamp(payload):
    """Notes when it ran (the queue's rate tests read the start times it records)."""
    return payload


@dotdo.job("fail_with_trace")
def fail_with_trace(payload):
    raise KeyError(f"missing {payload}")


@dotdo.job("terminal")
async def terminal(payload):
    raise dotdo.TerminalError(f"refused {payload}: retrying will not help")


# -- named steps and fences ---------------------------------------------------------------


@dotdo.job("charge_card")
async def charge_card(payload):
    """Charges a user once, however many of their jobs run, on whichever worker: the
    step id names one step of the queue. The ledger is outside dotdo's journal."""
    ledger = dotdo.Recorder(payload["ledger"])

    async def charge(email):
        await ledger.note("charges", email)
        await asyncio.sleep(0.05)  # a window in which another worker reaches the step
        return f"charge-of-{email}"

    return await dotdo.do(charge, payload["email"], step_id=f"charge-{payload['email']}")


@dotdo.job("fenced")
async def fenced(payload):
    """Writes to an outside store that rejects stale writers by their fence; fails
    its first ``fail`` tries so that the job is claimed again."""
    job = dotdo.current_job()
    witness = dotdo.Recorder(payload["witness"])
    await witness.note("fences", job["fence"])
    if len(await witness.notes("fences")) <= payload.get("fail", 0):
        raise ConnectionError("the store was away")
    return job["fence"]


@dotdo.job("huge_output")
async def huge_output(payload):
    """Returns more than a job's output may hold."""
    return "x" * payload["size"]


@dotdo.job("long_progress")
async def long_progress(payload):
    dotdo.progress(0.5, "y" * payload["size"])


# -- durable waits ------------------------------------------------------------------------


@dotdo.job("nap")
async def nap(payload):
    """A step, a durable sleep, a step: the witness counts runs and each step's runs,
    and notes which worker ran each part."""
    job = dotdo.current_job()["id"]
    witness = dotdo.Recorder(payload["witness"])
    await witness.hit(f"run:{job}")

    async def step(name):
        await witness.hit(f"{name}:{job}")
        await witness.note("workers", [name, os.getpid()])
        return f"{name} on {os.getpid()}"

    before = await dotdo.do(step, "before", step_id=f"{job}-before")
    await witness.note("parking", os.getpid())
    await dotdo.sleep(payload["seconds"])
    after = await dotdo.do(step, "after", step_id=f"{job}-after")
    return {"before": before, "after": after}


@dotdo.job("approve")
async def approve(payload):
    """Waits for a person: its awakeable's id goes to the witness (the email)."""
    token = await dotdo.awakeable()
    await dotdo.do(dotdo.Recorder(payload["witness"]).note, "tokens", token,
                   step_id=f"mail-{dotdo.current_job()['id']}")
    return await dotdo.wait(token)
