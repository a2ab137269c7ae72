"""Durable object classes the tests use; a module so Ray workers can import them."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import time

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


class Recorder(dotdo.DurableObject):
    """Counts what other objects tell it, durably: the witness of replay tests."""

    def hit(self, name: str) -> int:
        n = self.storage.get(f"hit:{name}", 0) + 1
        self.storage.put(f"hit:{name}", n)
        return n

    def hits(self, name: str) -> int:
        return self.storage.get(f"hit:{name}", 0)

    def note(self, name: str, item) -> None:
        self.storage.put(f"list:{name}", self.storage.get(f"list:{name}", []) + [item])

    def notes(self, name: str) -> list:
        return self.storage.get(f"list:{name}", [])

    def note_then_fail(self, name: str, item) -> None:
        with self.storage.transaction():
            self.note(name, item)
            raise ValueError(f"failed after noting {item!r}")


class Steps(dotdo.DurableObject):
    """Methods that run dotdo.do / try_ steps."""

    async def step(self, step_id: str, recorder: str, hold: float = 0.0, work_time: float = 0.0):
        async def work():
            await dotdo.Recorder(recorder).hit(step_id)
            if work_time:
                await asyncio.sleep(work_time)
            return {"done": step_id}

        result = await dotdo.do(work, step_id=step_id)
        if hold:
            await asyncio.sleep(hold)  # a window to kill us after the step finished
        return result

    async def flaky(self, fail_times: int, max_retries: int, backoff: float, step_id=None):
        import time

        times: list[float] = []

        def work():
            times.append(time.monotonic())
            if len(times) <= fail_times:
                raise ConnectionError(f"attempt {len(times)} failed")
            return len(times)

        try:
            out = await dotdo.do(work, step_id=step_id, max_retries=max_retries, backoff=backoff)
        except ConnectionError as exc:
            return {"raised": type(exc).__name__, "message": str(exc), "attempts": exc.attempts,
                    "times": times}
        return {"result": out, "times": times}

    async def terminal(self) -> dict:
        calls = []

        def work():
            calls.append(1)
            raise dotdo.TerminalError("no point retrying")

        try:
            await dotdo.do(work, backoff=0.01)
        except dotdo.TerminalError as exc:
            return {"calls": len(calls), "attempts": exc.attempts}

    async def attempt_once(self, recorder: str, fail: bool, timeout=None, sleep: float = 0.0):
        async def work():
            await dotdo.Recorder(recorder).hit("try")
            await asyncio.sleep(sleep)
            if fail:
                raise RuntimeError("try failed")
            return "tried"

        return await dotdo.try_(work, timeout=timeout)

    def attempts(self, step_id: str) -> list:
        return self.storage.journal.attempts(step_id)

    def send_one(self, event_type, data=None):
        return dotdo.send(event_type, data)


class Events(dotdo.DurableObject):
    """Handlers as methods; what they see is recorded in storage."""

    def _record(self, key: str, item) -> None:
        self.storage.put(key, self.storage.get(key, []) + [item])

    @dotdo.on.Order.placed
    async def placed(self, event):
        self._record("placed", [event.id, event.data])

    @dotdo.on["*"].created
    def any_created(self, event):
        self._record("created", event.type)

    @dotdo.on.Job["*"]
    def any_job(self, event):
        self._record("job", event.type)

    @dotdo.on.Order.broken
    def broken(self, event):
        raise RuntimeError(f"handler broke on {event.data}")

    @dotdo.on.Order.exited
    async def exited(self, event):
        raise SystemExit(f"handler exits on {event.data}")

    @dotdo.on.Slow.started
    async def slow(self, event):
        self._record("slow", ["start", event.id])
        await asyncio.sleep(event.data)
        self._record("slow", ["end", event.id])

    @dotdo.on_error
    def errors(self, info):
        self._record("errors", [info.event_type, info.event_id, info.data, repr(info.error)])

    def fire(self, event_type, data=None):
        return dotdo.send(event_type, data)

    def seen(self, key: str) -> list:
        return self.storage.get(key, [])

    def pending(self) -> int:
        return len(self.storage.journal.pending_events())


class Ticker(dotdo.DurableObject):
    """Schedules as methods."""

    def _record(self, key: str, item) -> None:
        self.storage.put(key, self.storage.get(key, []) + [item])

    @dotdo.every(1).hours
    def hourly(self):
        self._record("hourly", time_now())

    @dotdo.every(0.2).seconds
    async def long_tick(self):
        self._record("long", ["start", time_now()])
        await asyncio.sleep(0.5)
        self._record("long", ["end", time_now()])

    @dotdo.every(0.2).seconds
    def failing_tick(self):
        n = self.storage.get("failing", 0) + 1
        self.storage.put("failing", n)
        raise ValueError(f"tick {n} failed")

    @dotdo.on_error
    def errors(self, info):
        self.storage.put("errors", self.storage.get("errors", 0) + 1)

    def seen(self, key: str):
        return self.storage.get(key, [])

    @dotdo.every(1).hours
    async def interrupted(self):
        self._record("interrupted", time_now())
        # A tick long enough to be killed in: it ends only once the test lets it go.
        while not self.storage.get("let go of interrupted", False):
            await asyncio.sleep(0.05)

    def let_go(self, schedule: str) -> None:
        self.storage.put(f"let go of {schedule}", True)

    def push_next_fire(self, seconds_back: float, schedule: str = "hourly") -> int:
        """Pretend the object was down: move a schedule's next fire time back."""
        return self.storage.sql.execute(
            "UPDATE _dotdo_schedules SET next_fire = next_fire - ? WHERE name LIKE ?",
            [seconds_back, f"%.{schedule}@%"],
        ).rowcount

    def schedule_state(self, schedule: str = "hourly") -> dict:
        """What the journal holds of a schedule: ticks done, when the last one fired,
        when the next is due (the object's clock). The loop waits for ``next_fire``."""
        row = self.storage.sql.execute(
            "SELECT ticks, last_fire, next_fire FROM _dotdo_schedules WHERE name LIKE ?",
            [f"%.{schedule}@%"],
        ).fetchone()
        return dict(zip(("ticks", "last_fire", "next_fire"), row or (0, None, None)))


class Alarmed(dotdo.DurableObject):
    """An alarm that fails a given number of times before it succeeds."""

    def arm(self, delay: float, fail_times: int = 0) -> float:
        self.storage.put("fail_times", fail_times)
        return self.storage.set_alarm(datetime.timedelta(seconds=delay))

    async def alarm(self):
        n = self.storage.get("attempts", 0) + 1
        self.storage.put("attempts", n)
        if n <= self.storage.get("fail_times", 0):
            raise RuntimeError(f"alarm attempt {n} failed")
        self.storage.put("fired", self.storage.get("fired", 0) + 1)

    def state(self) -> dict:
        return {"attempts": self.storage.get("attempts", 0), "fired": self.storage.get("fired", 0),
                "pending": self.storage.get_alarm()}

    def pid(self) -> int:
        return os.getpid()


def time_now() -> float:
    import time

    return time.time()


class Stepping:
    """A durable step that counts its own runs in storage (a mixin)."""

    async def step(self, step_id: str) -> int:
        def work():
            runs = self.storage.get(f"runs:{step_id}", 0) + 1
            self.storage.put(f"runs:{step_id}", runs)
            return runs
        return await dotdo.do(work, step_id=step_id)

    def runs(self, step_id: str) -> int:
        return self.storage.get(f"runs:{step_id}", 0)


class Room(Stepping, dotdo.DurableObject, hosting=dotdo.Pooled(hosts=2, idle_timeout=0.5, pool="rooms")):
    """A pooled object: two hosts, evicted after half a second idle."""

    def __init__(self) -> None:
        self.activations = self.storage.get("activations", 0) + 1
        self.storage.put("activations", self.activations)

    def incr(self, key: str = "n") -> int:
        n = self.storage.get(key, 0) + 1
        self.storage.put(key, n)
        return n

    def read(self, key: str = "n"):
        return self.storage.get(key)

    def state(self) -> dict:
        return {"pid": os.getpid(), "activations": self.activations,
                "n": self.storage.get("n", 0), "fired": self.storage.get("fired", 0),
                "ticks": self.storage.get("ticks", 0), "handled": self.storage.get("handled", [])}

    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slow done"

    def arm(self, delay: float) -> float:
        return self.storage.set_alarm(datetime.timedelta(seconds=delay))

    def alarm(self) -> None:
        self.storage.put("fired", self.storage.get("fired", 0) + 1)

    def notify(self, n: int) -> None:
        for i in range(n):
            dotdo.send("Room.noted", i)

    @dotdo.on.Room.noted
    async def _noted(self, event) -> None:
        await asyncio.sleep(0.1)  # slow enough that a kill finds events still queued
        self.storage.put("handled", self.storage.get("handled", []) + [event.data])


class Clockwork(dotdo.DurableObject, hosting=dotdo.Pooled(hosts=1, idle_timeout=0.5, pool="clockwork")):
    """A pooled object with a schedule: evicted between ticks, woken for each."""

    @dotdo.every(1).seconds
    def tick(self) -> None:
        self.storage.put("ticks", self.storage.get("ticks", 0) + 1)

    def ticks(self) -> int:
        return self.storage.get("ticks", 0)



class PooledHop(dotdo.DurableObject, hosting=dotdo.Pooled(hosts=1, idle_timeout=None)):
    """Objects that always share one host, whatever the default hosting."""

    def hop(self, value: int) -> int:
        return value + 1


class Held(Counter, hosting=dotdo.Dedicated()):
    """A Counter with a process of its own whatever the pass's hosting (a dedicated host
    of which reads of its file ask)."""


class PoolHeld(Counter, hosting=dotdo.Pooled(hosts=1, idle_timeout=None, pool="held")):
    """A Counter on a pool of one host that never lets it go (a pooled host of which
    reads of its file ask)."""

    def block(self, seconds: float) -> None:
        """Hold the host's event loop (a sync method that sleeps): nothing else starts."""
        time.sleep(seconds)
