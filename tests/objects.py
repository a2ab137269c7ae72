"""Durable object classes the tests use; a module so Ray workers can import them."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import dotdo


@dataclasses.dataclass
class Metrics:
    pending: int
    done: int


class Counter(dotdo.DurableObject):
    """A counter whose value lives in storage; rebuilt by __init__ after restarts."""

    def __init__(self) -> None:
        self.value = self.storage.get("value", 0)
        self.log: list = []

    def incr(self, by: int = 1) -> int:
        self.value += by
        self.storage.put("value", self.value)
        return self.value

    def get(self) -> int:
        return self.value

    def pid(self) -> int:
        return os.getpid()

    def put(self, key: str, value) -> None:
        self.storage.put(key, value)

    def read(self, key: str):
        return self.storage.get(key)

    def keys(self) -> list[str]:
        return list(self.storage.list())

    def append(self, item) -> int:
        self.log.append(item)
        return len(self.log)

    def seen(self) -> list:
        return self.log


class Pipe(dotdo.DurableObject):
    """Methods for the pipelining tests."""

    def metrics(self) -> Metrics:
        return Metrics(pending=int(self.storage.get("pending", 7)), done=1)

    def record(self) -> dict:
        return {"field": "made-by-" + self.id, "items": [10, 20, 30]}

    async def slow(self, seconds: float, value=None):
        await asyncio.sleep(seconds)
        return value

    def echo(self, *args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    def use(self, value) -> str:
        return f"{self.id} used {value!r}"

    def fail(self, message: str):
        raise ValueError(message)

    async def fail_later(self, seconds: float, message: str):
        await asyncio.sleep(seconds)
        raise ValueError(message)

    def peer(self, object_id: str):
        return dotdo.Counter(object_id)

    async def call_peer(self, peer, by: int) -> int:
        return await peer.incr(by)

    def hop(self, value: int) -> int:
        return value + 1
