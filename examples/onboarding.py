"""Onboarding: a welcome email now, a follow-up only if the user has not logged in
within three days; the job waits for the login holding no worker.

    python examples/onboarding.py [seconds]   # how long to wait for a login (3 days)

The wait is 3 days unless given (as an argument, or $ONBOARDING_WAIT, in seconds):
the test runs it with 3. ada logs in while her job waits; bob never does, so his job
times out and sends the follow-up. Each job runs twice (once to its wait, once
after it); the welcome email is a named step, so it is sent once all the same.
"""

import os
import sys
import time

import dotdo

THREE_DAYS = 3 * 86_400


class Mailer(dotdo.DurableObject):
    """Where sent emails go (as a mail service would keep them): a durable list."""

    def send(self, to: str, subject: str) -> int:
        sent = [*self.storage.get("sent", []), f"{subject} -> {to}"]
        self.storage.put("sent", sent)
        return len(sent)

    def sent(self) -> list[str]:
        return self.storage.get("sent", [])

    def ran(self, user: str) -> int:
        """Counts the runs of a user's job (a side effect outside steps: it repeats)."""
        runs = self.storage.get(f"runs-{user}", 0) + 1
        self.storage.put(f"runs-{user}", runs)
        return runs

    def runs(self, user: str) -> int:
        return self.storage.get(f"runs-{user}", 0)


@dotdo.job("onboard")
async def onboard(payload: dict) -> dict:
    user, mail = payload["user"], dotdo.Mailer(payload["mailer"])
    await mail.ran(user)  # outside any step: once per run of the job

    async def welcome() -> int:
        return await mail.send(user, "Welcome aboard")

    # A named step: sent once, and replayed from the queue's journal when the job
    # runs again after its wait.
    await dotdo.do(welcome, step_id=f"welcome-{user}")
    try:
        login = await dotdo.wait_for_event("User.loggedIn", match={"user": user},
                                           timeout=payload["wait"])
    except TimeoutError:
        async def follow_up() -> int:
            return await mail.send(user, "Need a hand getting started?")

        await dotdo.do(follow_up, step_id=f"follow-up-{user}")
        return {"user": user, "logged_in": False}
    return {"user": user, "logged_in": True, "at": login.data["at"]}


def _parked(queue, job_id: str, timeout: float = 60.0) -> dict:
    """The job once it waits (its run ended at the wait; it holds no worker)."""
    deadline = time.monotonic() + timeout
    while (job := queue.get(job_id).result())["status"] != "waiting":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job_id} is {job['status']}, not waiting")
        time.sleep(0.05)
    return job


def main() -> None:
    wait = float(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ONBOARDING_WAIT", THREE_DAYS))
    dotdo.init()
    name = f"onboarding-{time.strftime('%Y%m%d-%H%M%S')}"
    queue, worker = dotdo.Queue(name), dotdo.Worker(f"{name}-w")
    worker.start(name).result()
    try:
        for user in ("ada", "bob"):
            queue.enqueue("onboard", {"user": user, "mailer": name, "wait": wait},
                          job_id=f"onboard-{user}").result()
        job = _parked(queue, "onboard-ada")
        print(f"ada: welcome sent; {job['status']} at {job['waitingFor']} (User.loggedIn), "
              f"worker {job['worker']}")
        dotdo.send("User.loggedIn", {"user": "ada", "at": time.time()})  # bob never logs in
        for user in ("ada", "bob"):
            output = queue.wait(f"onboard-{user}", timeout=wait + 60).result()["output"]
            runs = dotdo.Mailer(name).runs(user).result()
            print(f"{user}: " + ("logged in, no follow-up" if output["logged_in"] else
                                 f"no login within {wait:g} s, follow-up sent") +
                  f" ({runs} runs of the job)")
        print(f"emails sent: {dotdo.Mailer(name).sent().result()}")
    finally:
        worker.stop().result()


if __name__ == "__main__":
    main()
