"""Job and event handlers of the tracing test (tests/tracing_driver.py); module level,
so Workers and the App import them."""

import asyncio
import logging
import os

import dotdo
from tests import objects  # noqa: F401  (Recorder, in the worker processes too)

_log = logging.getLogger("shop")


def prepare() -> str:
    return "ready"


@dotdo.job("traced")
async def traced(payload):
    """Try 1 runs its step and fails; try 2 replays the step and waits to be killed;
    try 3 replays the step and completes."""
    witness = dotdo.Recorder(payload["witness"])
    tries = await witness.hit("traced")
    await dotdo.do(prepare, step_id="prepare")
    if tries == 1:
        raise ConnectionError("the first try fails")
    if tries == 2:
        await witness.note("running", os.getpid())
        await asyncio.sleep(600)  # SIGKILLed here
    _log.info("try %d completes", tries)
    return {"tries": tries}


@dotdo.job("plain")
async def plain(payload):
    return os.getpid()


@dotdo.on.Trace.sent
async def on_trace_sent(event):
    await dotdo.Recorder(event.data["witness"]).note("handled", event.id)
