"""Schedules: every(n).<unit>, every.day.at(...), cron; next fire times in SQLite.

    python examples/schedules.py

The tick below belongs to dotdo.App("default"), a detached actor: on a running
cluster it keeps ticking after this script exits (here, the local Ray this script
starts ends with it).
"""

import datetime as dt
import time

import dotdo


class Heartbeat(dotdo.DurableObject):
    def beat(self) -> int:
        n = self.storage.get("beats", 0) + 1
        self.storage.put("beats", n)
        return n

    def beats(self) -> int:
        return self.storage.get("beats", 0)


@dotdo.every(1).seconds
async def heartbeat():
    await dotdo.Heartbeat("app").beat()


if __name__ == "__main__":
    dotdo.init()
    now = time.time()
    for schedule in (dotdo.every(5).minutes, dotdo.every.day.at("midnight"),
                     dotdo.every.monday.at("9am", tz="Europe/Paris"), dotdo.every.cron("*/15 * * * *")):
        nxt = dt.datetime.fromtimestamp(schedule.next_after(now), dt.timezone.utc)
        print(f"{schedule.label:<45} next: {nxt:%a %Y-%m-%d %H:%M} UTC")
    dotdo.deploy()  # ship the module-level schedule to App("default")
    started = time.monotonic()
    time.sleep(3.5)
    beats = dotdo.Heartbeat("app").beats().result()
    while not beats and time.monotonic() - started < 60:  # a busy machine starts actors slowly
        time.sleep(0.5)
        beats = dotdo.Heartbeat("app").beats().result()
    print(f"heartbeats after {time.monotonic() - started:.1f} s: {beats}")
