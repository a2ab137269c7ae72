"""dotdo.send: fire-and-forget. Returns None at once; handlers run later, elsewhere.

    python examples/send.py

Module-level handlers belong to dotdo.App("default"): the App imports this file (not
as __main__) and runs `count` for every Metrics.recorded event the driver sends.
"""

import time

import dotdo


class Tally(dotdo.DurableObject):
    """Where the handler keeps its count."""

    def add(self, name: str) -> int:
        total = self.storage.get(name, 0) + 1
        self.storage.put(name, total)
        return total

    def total(self, name: str) -> int:
        return self.storage.get(name, 0)


@dotdo.on.Metrics.recorded
async def count(event):
    await dotdo.Tally("analytics").add(event.data["event"])


if __name__ == "__main__":
    dotdo.init()
    start = time.perf_counter()
    for _ in range(100):
        assert dotdo.send("Metrics.recorded", {"event": "signup"}) is None
    print(f"100 sends returned in {(time.perf_counter() - start) * 1e3:.0f} ms")
    tally = dotdo.Tally("analytics")
    deadline = time.monotonic() + 60
    while tally.total("signup").result() < 100 and time.monotonic() < deadline:
        time.sleep(0.05)  # handlers run asynchronously
    print(f"handled: {tally.total('signup').result()} signups counted by the App")
