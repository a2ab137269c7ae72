"""dotdo.testing: objects and jobs on a test clock that the test moves. Backoffs,
delays, schedules and alarms come due at ``advance``; ``drain`` runs a queue's ready
jobs; the pytest fixtures come from the installed plugin; and after ``local()`` the
real clock and the settings from before are back. No Ray anywhere."""

import asyncio
import datetime
import os
import subprocess
import sys
import textwrap
import time

import pytest

import dotdo
from dotdo import clock as clocks
from dotdo import client, connect, testing
from dotdo.background import ALARM_RETRY
from dotdo.inprocess import LocalHost

MODULE_TICKS: list[float] = []  # when the module-level schedule below ticked (test clock)


@dotdo.job("testing-flaky")
def flaky(payload):
    """Fails its first ``payload`` attempts."""
    if dotdo.current_job()["attempt"] <= payload:
        raise ConnectionError(f"attempt {dotdo.current_job()['attempt']} failed")
    return "done"


@dotdo.job("testing-echo")
def echo(payload):
    return payload


@dotdo.job("testing-refuse")
def refuse(payload):
    raise dotdo.TerminalError(f"refused {payload}")


@dotdo.job("testing-patient")
async def patient(payload):
    """Retries its own step with a minute's backoff: it sleeps on the test clock."""
    tries = []

    def call():
        tries.append(dotdo.current_object().storage.now())
        if len(tries) == 1:
            raise ConnectionError("not yet")
        return tries

    return await dotdo.do(call, max_retries=2, backoff=60, max_backoff=60)


@dotdo.every(1).days
def daily():
    MODULE_TICKS.append(dotdo.current_object().storage.now())


class Nightly(dotdo.DurableObject):
    """An hourly schedule as a method."""

    @dotdo.every(1).hours
    def tick(self):
        self.storage.put("ticks", [*self.storage.get("ticks", []), self.storage.now()])

    def ticks(self) -> list:
        return self.storage.get("ticks", [])


class Reminder(dotdo.DurableObject):
    """An alarm that fails its first ``fail`` attempts."""

    def arm(self, seconds: float, fail: int = 0) -> float:
        self.storage.put("fail", fail)
        return self.storage.set_alarm(datetime.timedelta(seconds=seconds))

    async def alarm(self) -> None:  # async: what it wrote stays when it raises
        attempts = [*self.storage.get("attempts", []), self.storage.now()]
        self.storage.put("attempts", attempts)
        if len(attempts) <= self.storage.get("fail", 0):
            raise RuntimeError(f"alarm attempt {len(attempts)} failed")

    def state(self) -> dict:
        return {"attempts": self.storage.get("attempts", []), "pending": self.storage.get_alarm()}


class Stopwatch(dotdo.DurableObject):
    def now(self) -> float:
        return self.storage.now()


def test_a_job_failing_twice_with_backoff_60_600_completes_on_the_test_clock(dotdo_local, unique):
    start = dotdo_local.now()
    queue = dotdo.Queue(unique)
    job_id = queue.enqueue("testing-flaky", 2, backoff=[60, 600]).result()["$id"]
    # The first attempt fails: the job waits out 60 s in the queue
    first = dotdo_local.drain(queue)
    assert (first.retried, first.completed, first.later, first.next_at) == ([job_id], [], 1, start + 60)
    assert dotdo_local.drain(queue).retried == []  # nothing ran: not due yet
    dotdo_local.advance(60)
    second = dotdo_local.drain(queue)
    assert (second.retried, second.next_at) == ([job_id], start + 660)
    dotdo_local.advance(599)
    assert dotdo_local.drain(queue).completed == []
    dotdo_local.advance(1)
    # Then the third attempt succeeds, 660 s after the job was enqueued, by the test clock
    assert dotdo_local.drain(queue).completed == [job_id]
    job = queue.get(job_id).result()
    assert (job["status"], job["attempts"]) == ("completed", 3)
    assert (job["createdAt"], job["finishedAt"]) == (start, start + 660)
    assert [a["startedAt"] for a in queue.attempts(job_id).result()] == [start, start + 60, start + 660]
    assert queue.result(job_id).result()["output"] == "done"
    # all of it in this process: no Ray (the plugin's own test, in a fresh process,
    # checks Ray never starts; here another test of the session may have started it)
    assert isinstance(client.actor_handle(queue), LocalHost)


def test_a_delayed_job_becomes_ready_only_once_its_delay_has_passed(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    job_id = queue.enqueue("testing-echo", "later", delay=3600).result()["$id"]
    left = dotdo_local.drain(queue)
    assert (left.completed, left.later, left.next_at) == ([], 1, dotdo_local.now() + 3600)
    dotdo_local.advance(3599)
    assert queue.get(job_id).result()["status"] == "delayed"
    assert queue.claim("w", 1, wait=0.0).result()["jobs"] == []
    dotdo_local.advance(1)
    # Due now: claimable as soon as advance returns
    assert queue.get(job_id).result()["status"] == "pending"
    assert dotdo_local.drain(queue).completed == [job_id]
    assert queue.result(job_id).result()["output"] == "later"


def test_schedules_tick_at_each_due_time_on_the_way(dotdo_local, unique):
    start = dotdo_local.now()
    nightly = dotdo.Nightly(unique)
    assert nightly.ticks().result() == []  # now live: its schedule waits for the clock
    dotdo_local.advance(3599)
    assert nightly.ticks().result() == []
    dotdo_local.advance(1)
    assert nightly.ticks().result() == [start + 3600]  # ran before advance returned
    # Three hours at once: each tick at its own hour, as if the time had passed
    dotdo_local.advance(3 * 3600)
    assert nightly.ticks().result() == [start + h * 3600 for h in (1, 2, 3, 4)]
    # A module-level schedule (the App's) started with local() and ticks too
    ticked = len(MODULE_TICKS)
    dotdo_local.advance(86_400 - 4 * 3600)
    assert MODULE_TICKS[ticked:] == [start + 86_400]


def test_an_alarm_and_its_retries_fire_on_advance(dotdo_local, unique):
    start = dotdo_local.now()
    reminder = dotdo.Reminder(unique)
    assert reminder.arm(300, fail=1).result() == start + 300
    dotdo_local.advance(299)
    assert reminder.state().result() == {"attempts": [], "pending": start + 300}
    # At its time it fails, and is tried again after ALARM_RETRY's first wait
    dotdo_local.advance(1)
    assert reminder.state().result() == {"attempts": [start + 300], "pending": start + 300}
    dotdo_local.advance(ALARM_RETRY.delay(1))
    assert reminder.state().result() == {
        "attempts": [start + 300, start + 300 + ALARM_RETRY.delay(1)], "pending": None}


def test_drain_says_what_ran_and_what_is_left(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    ok = queue.enqueue("testing-echo", 1).result()["$id"]
    refused = queue.enqueue("testing-refuse", "x").result()["$id"]
    unknown = queue.enqueue("testing-nobody-handles-this", None).result()["$id"]
    retried = queue.enqueue("testing-flaky", 1, backoff=30).result()["$id"]
    delayed = queue.enqueue("testing-echo", 2, delay=100).result()["$id"]
    summary = dotdo_local.drain(queue)
    assert summary.completed == [ok]
    assert sorted(summary.failed) == sorted([refused, unknown])
    assert (summary.retried, summary.cancelled) == ([retried], [])
    assert (summary.ready, summary.later, summary.next_at) == (0, 2, dotdo_local.now() + 30)
    # The retry is due first, then the delayed job
    dotdo_local.advance(100)
    assert sorted(dotdo_local.drain(queue).completed) == sorted([retried, delayed])
    # A paused queue keeps its ready jobs: drain says how many
    queue.pause().result()
    queue.enqueue("testing-echo", 3).result()
    assert (dotdo_local.drain(queue).ready, queue.get_metrics().result().pending) == (1, 1)


def test_drain_moves_the_clock_for_a_job_asleep_in_a_backoff(dotdo_local, unique):
    start = dotdo_local.now()
    queue = dotdo.Queue(unique)
    job_id = queue.enqueue("testing-patient", None).result()["$id"]
    # Its handler's own step retries after a minute on the test clock: drain moves the
    # clock there, since the job can get nowhere otherwise
    assert testing.drain(queue).completed == [job_id]
    assert queue.result(job_id).result()["output"] == [start, start + 60]
    assert dotdo_local.now() == start + 60


def test_a_backoff_in_test_code_moves_the_test_clock(dotdo_local):
    start = dotdo_local.now()
    calls = []

    def call():
        calls.append(dotdo_local.now())
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return len(calls)

    assert asyncio.run(dotdo.do(call, max_retries=3, backoff=5, max_backoff=60)) == 3
    assert calls == [start, start + 5, start + 15]


def test_the_real_clock_and_settings_are_back_after_local(local_session, unique):
    before = connect.settings()
    with testing.local(start=1_000_000.0) as env:
        assert clocks.installed() is env.clock and os.path.isdir(env.storage)
        assert dotdo.Stopwatch(unique).now().result() == 1_000_000.0
        assert testing.advance(5) == 1_000_005.0
        with pytest.raises(dotdo.ConfigError, match="one at a time"), testing.local():
            pass
    assert clocks.installed() is None and not os.path.exists(env.storage)
    assert connect.settings() == before
    with pytest.raises(dotdo.ConfigError, match="has exited"):
        env.advance(1)
    with pytest.raises(dotdo.ConfigError, match="needs an active"):
        testing.drain(unique)
    # The objects from before run on the real clock again, and so does test code's do()
    assert abs(dotdo.Stopwatch(unique).now().result() - time.time()) < 60
    assert abs(asyncio.run(dotdo.do(time.time)) - time.time()) < 60


def test_the_fixtures_come_from_the_installed_plugin(tmp_path):
    # A project of a user's: it imports nothing of dotdo.testing, the plugin gives it all.
    (tmp_path / "test_mine.py").write_text(textwrap.dedent("""
        import ray

        import dotdo


        @dotdo.job("mine-flaky")
        def flaky(payload):
            if dotdo.current_job()["attempt"] == 1:
                raise ConnectionError("once")
            return "ok"


        class Sleepy(dotdo.DurableObject):
            def arm(self):
                return self.storage.set_alarm(3600 + self.storage.now())

            def alarm(self):
                self.storage.put("fired", self.storage.now())

            def fired(self):
                return self.storage.get("fired")


        def test_a_retry(dotdo_drain, dotdo_advance):
            queue = dotdo.Queue("mine")
            job = queue.enqueue("mine-flaky", None, backoff=3600).result()
            assert dotdo_drain(queue).retried == [job["$id"]]
            dotdo_advance(3600)
            assert dotdo_drain(queue).completed == [job["$id"]]


        def test_an_alarm(dotdo_local):
            at = dotdo.Sleepy("s").arm().result()
            dotdo_local.advance(3600)
            assert dotdo.Sleepy("s").fired().result() == at == dotdo_local.now()
            assert not ray.is_initialized()


        def test_each_test_has_its_own_clock_and_files(dotdo_local, tmp_path):
            assert dotdo_local.now() == 1_700_000_000.0
            assert dotdo_local.storage.startswith(str(tmp_path))
            assert dotdo.Sleepy("s").fired().result() is None
    """))
    # Found as an installed package's plugin: no path to this checkout, no settings of ours.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DOTDO_", "PYTEST_")) and k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_mine.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
