"""Pooled hosting: 2,000 chat rooms on four Ray actors; idle rooms leave memory.

    python examples/rooms.py

One actor per object would mean 2,000 processes. With ``hosting=dotdo.Pooled(...)``
the rooms share four actors, each room with its own SQLite file and its own turn.
A room idle for two seconds is evicted and comes back on its next call, state intact.
"""

import time

import dotdo


class Room(dotdo.DurableObject, hosting=dotdo.Pooled(hosts=4, idle_timeout=2.0)):
    """A chat room: members and a message count, in storage."""

    def __init__(self) -> None:
        # Runs on every activation: after eviction too, rebuilt from storage.
        self.activations = self.storage.get("activations", 0) + 1
        self.storage.put("activations", self.activations)
        self.members = self.storage.get("members", [])

    def join(self, user: str) -> int:
        if user not in self.members:
            self.members.append(user)
            self.storage.put("members", self.members)
        return len(self.members)

    def post(self, user: str, text: str) -> int:
        count = self.storage.get("count", 0) + 1
        self.storage.put({"count": count, f"message:{count:08d}": [user, text]})
        return count

    def summary(self) -> dict:
        return {"members": len(self.members), "messages": self.storage.get("count", 0),
                "activations": self.activations}


if __name__ == "__main__":
    dotdo.init()
    n = 2_000
    start = time.perf_counter()
    dotdo.get([dotdo.Room(f"room-{i}").join(f"user-{i}") for i in range(n)])
    print(f"{n} rooms on 4 actors, created in {time.perf_counter() - start:.1f} s")
    posts = dotdo.get([dotdo.Room(f"room-{i % 10}").post(f"user-{i}", "hello") for i in range(500)])
    print(f"500 messages posted to 10 rooms; room-7 has {max(posts[7::10])}")
    before = dotdo.Room("room-7").summary().result()["activations"]
    print("waiting 4 s: idle rooms are evicted from memory ...")
    time.sleep(4)
    s = dotdo.Room("room-7").summary().result()
    print(f"room-7: {s['messages']} messages, {s['members']} member; "
          f"evicted and back: {s['activations'] == before + 1}")
