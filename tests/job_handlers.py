"""Job handlers the queue tests use; module level, so Workers import them."""

import asyncio
import os

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
