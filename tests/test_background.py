"""Schedules and alarms on real Ray: catch-up after downtime, no overlap, failures
that go on, alarms across restarts, and an App ticking with no driver attached."""

import os
import subprocess
import sys

import ray

import dotdo

from tests import objects  # noqa: F401
from dotdo import client
from dotdo.background import ALARM_RETRY
from tests.conftest import ROOT, host_actor_name, kill_and_wait, live_object, wait_for



def test_missed_ticks_fire_once_on_recovery(make_object, unique):
    ticker = make_object("Ticker", unique)
    assert ticker.seen("hourly").result() == []
    # Given the hourly tick was due three hours ago while the object was "down"
    assert ticker.push_next_fire(4 * 3600).result() == 1
    # When the object restarts
    kill_and_wait(ticker, "SIGKILL")
    # Then the tick fires once, not three times, and the next is an hour away: once
    # that tick is journaled, the journal is what the schedule waits on
    state = wait_for(lambda: (s := ticker.schedule_state("hourly").result())["ticks"] and s)
    assert state["ticks"] == 1 and state["next_fire"] >= state["last_fire"] + 3600
    assert len(ticker.seen("hourly").result()) == 1


def test_ticks_of_one_schedule_never_overlap(make_local, unique):
    ticker = make_local("Ticker", unique)
    ticker.seen("long").result()
    marks = wait_for(lambda: (m := ticker.seen("long").result()) and len(m) >= 8 and m)
    kinds = [k for k, _ in marks]
    assert kinds[: len(kinds) // 2 * 2] == ["start", "end"] * (len(kinds) // 2)
    times = [t for _, t in marks]
    assert times == sorted(times)


def test_failing_tick_goes_to_on_error_and_the_schedule_goes_on(make_local, unique):
    ticker = make_local("Ticker", unique)
    ticker.seen("failing").result()
    wait_for(lambda: (ticker.seen("failing").result() or 0) >= 3)
    assert (ticker.seen("errors").result() or 0) >= 2


def test_alarm_fires_after_a_restart(make_object, unique):
    alarmed = make_object("Alarmed", unique)
    fire_at = alarmed.arm(2.0).result()
    assert alarmed.state().result()["pending"] == fire_at
    kill_and_wait(alarmed, "SIGKILL")  # nobody calls it after this but the test
    state = wait_for(lambda: (s := alarmed.state().result())["fired"] and s)
    assert state == {"attempts": 1, "fired": 1, "pending": None}


def test_failing_alarm_is_retried_with_backoff(dotdo_local, unique):
    alarmed = dotdo.Alarmed(unique)
    fire_at = alarmed.arm(0.1, fail_times=2).result()
    # Each retry waits its backoff on the object's clock: the test clock moves by it
    # (dotdo.testing), and each attempt has run when advance returns
    for attempts, wait in enumerate((0.1, ALARM_RETRY.delay(1)), 1):
        dotdo_local.advance(wait)
        assert alarmed.state().result() == {"attempts": attempts, "fired": 0, "pending": fire_at}
    dotdo_local.advance(ALARM_RETRY.delay(2))
    assert alarmed.state().result() == {"attempts": 3, "fired": 1, "pending": None}


def test_app_keeps_ticking_without_a_driver(ray_session, tmp_path):
    ticks = tmp_path / "ticks.txt"
    script = tmp_path / "ticking.py"
    script.write_text(f'''
import dotdo

@dotdo.every(0.3).seconds
def tick():
    with open({str(ticks)!r}, "a") as f:
        f.write("tick\\n")

if __name__ == "__main__":
    dotdo.init(address={ray.get_runtime_context().gcs_address!r},
               storage={str(tmp_path / "store")!r}, namespace="ticking")
    dotdo.deploy()
    print("deployed")
''')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    try:
        # The driver has exited; the App, a detached actor, goes on ticking.
        first = wait_for(lambda: ticks.exists() and len(ticks.read_text().split()))
        wait_for(lambda: len(ticks.read_text().split()) >= first + 3)
    finally:
        ray.kill(ray.get_actor(host_actor_name("App", "default"), namespace="ticking"),
                 no_restart=True)


def test_injected_clock_moves_an_objects_schedules(make_local, unique):
    ticker = make_local("Ticker", unique)
    assert ticker.seen("hourly").result() == []
    # Two and a half hours pass on the object's clock: its hourly tick fires once.
    host = client.actor_handle(ticker)
    dotdo.get(host.shift_clock.remote(2.5 * 3600))
    try:
        state = wait_for(lambda: (s := ticker.schedule_state("hourly").result())["ticks"] and s)
        # once, and the next an hour after it: nothing else is due
        assert state["ticks"] == 1 and state["next_fire"] >= state["last_fire"] + 3600
        assert len(ticker.seen("hourly").result()) == 1
    finally:  # a host is shared: later objects on it must see the real time
        dotdo.get(host.shift_clock.remote(-2.5 * 3600))


def test_a_tick_interrupted_by_a_crash_runs_again_once(make_object, unique):
    ticker = make_object("Ticker", unique)
    assert ticker.seen("interrupted").result() == []
    # Given a tick that was due while the object was down, and runs when it is back
    assert ticker.push_next_fire(2 * 3600, "interrupted").result() == 1
    kill_and_wait(ticker, "SIGKILL")
    wait_for(lambda: ticker.seen("interrupted").result())
    # When the object is killed in the middle of that tick
    kill_and_wait(ticker, "SIGKILL")
    # Then the tick runs again once (at-least-once), not once per missed hour: when
    # it is let go and journaled, the next is an hour away and no other ran
    wait_for(lambda: len(ticker.seen("interrupted").result()) >= 2)
    ticker.let_go("interrupted").result()
    state = wait_for(lambda: (s := ticker.schedule_state("interrupted").result())["ticks"] and s)
    assert state["ticks"] == 1 and state["next_fire"] >= state["last_fire"] + 3600
    assert len(ticker.seen("interrupted").result()) == 2


def _failing_writes(obj, table: str) -> str:
    """Make every update of ``table`` in the object's own file fail, as a disk that
    refuses writes would; returns the statement that ends it."""
    live_object(obj).storage.sql.execute(
        f"CREATE TRIGGER fail_writes BEFORE UPDATE ON {table} "
        "BEGIN SELECT RAISE(ABORT, 'injected write failure'); END")
    return "DROP TRIGGER fail_writes"


def test_a_schedule_goes_on_after_its_journal_write_failed(make_local, unique, caplog):
    ticker = make_local("Ticker", unique)
    wait_for(lambda: ticker.seen("failing").result())
    storage = live_object(ticker).storage
    undo = _failing_writes(ticker, "_dotdo_schedules")
    try:
        wait_for(lambda: "its schedule" in caplog.text and "starting it again" in caplog.text)
    finally:
        storage.sql.execute(undo)
    ticked = ticker.seen("failing").result()
    wait_for(lambda: ticker.seen("failing").result() >= ticked + 3)  # it ticks on


def test_events_are_handled_after_a_failed_write_of_their_marks(make_local, unique, caplog):
    events = make_local("Events", unique)
    assert events.pending().result() == 0  # active
    storage = live_object(events).storage
    undo = _failing_writes(events, "_dotdo_events")
    try:
        events.fire("Order.placed", 1).result()
        wait_for(lambda: "its event delivery failed" in caplog.text)
    finally:
        storage.sql.execute(undo)
    events.fire("Order.placed", 2).result()
    wait_for(lambda: events.pending().result() == 0)
    assert [d for _, d in events.seen("placed").result()][-1] == 2
    assert sorted(set(d for _, d in events.seen("placed").result())) == [1, 2]
