"""send / try_ / do inside objects, on real Ray: the comparison table of the $ API, cell by
cell, and replay across crashes."""

import threading

import pytest
import ray

import dotdo
from tests import objects  # noqa: F401  (registers the classes)
from tests.conftest import kill_and_wait, wait_for

# -- the table: retries ---------------------------------------------------------------


def test_do_retries_until_success(local_session, unique):
    out = dotdo.Steps(unique).flaky(fail_times=2, max_retries=3, backoff=0.05).result()
    assert out["result"] == 3 and len(out["times"]) == 3


def test_try_does_not_retry(local_session, unique):
    with pytest.raises(RuntimeError, match="try failed"):
        dotdo.Steps(unique).attempt_once(unique, fail=True).result()
    assert dotdo.Recorder(unique).hits("try").result() == 1


def test_send_does_not_retry_a_failing_handler(make_local, unique):
    events = make_local("Events", unique)
    events.fire("Order.broken", 1).result()
    # A later event: events are handled in order, and both are journaled as handled
    # (none left to run again) once it is
    events.fire("Order.placed", 2).result()
    wait_for(lambda: events.seen("placed").result() and events.pending().result() == 0)
    assert len(events.seen("errors").result()) == 1


# -- awaitable ------------------------------------------------------------------------


def test_send_returns_none_at_once_and_the_others_are_awaitable(make_local, unique):
    events = make_local("Events", unique)
    # The handler sleeps 2 s; send returned before it finished.
    assert events.fire("Slow.started", 2.0).result() is None
    assert all(mark != "end" for mark, _ in events.seen("slow").result())
    wait_for(lambda: [m for m, _ in events.seen("slow").result()] == ["start", "end"])
    steps = dotdo.Steps(unique)
    assert steps.attempt_once(unique, fail=False).result() == "tried"
    assert steps.step(f"{unique}-s", unique).result() == {"done": f"{unique}-s"}


# -- raises ---------------------------------------------------------------------------


def test_send_never_raises_handler_errors_to_the_sender(make_local, unique):
    events = make_local("Events", unique)
    assert events.fire("Order.broken", "x").result() is None
    wait_for(lambda: events.seen("errors").result())
    event_type, event_id, data, error = events.seen("errors").result()[0]
    assert (event_type, data) == ("Order.broken", "x") and "handler broke on x" in error
    assert event_id


def test_do_raises_after_the_last_attempt_with_the_count(local_session, unique):
    out = dotdo.Steps(unique).flaky(fail_times=99, max_retries=2, backoff=0.01).result()
    assert out == {"raised": "ConnectionError", "message": "attempt 3 failed", "attempts": 3,
                   "times": out["times"]}


def test_terminal_error_stops_do_at_once(local_session, unique):
    assert dotdo.Steps(unique).terminal().result() == {"calls": 1, "attempts": 1}


# -- timeout --------------------------------------------------------------------------


def test_try_times_out(local_session, unique):
    with pytest.raises(TimeoutError):
        dotdo.Steps(unique).attempt_once(unique, fail=False, timeout=0.1, sleep=5).result()


# -- replay-safe ----------------------------------------------------------------------


def test_do_with_step_id_replays_the_journaled_result(local_session, unique):
    steps = dotdo.Steps(unique)
    assert steps.step("charge", unique).result() == {"done": "charge"}
    assert steps.step("charge", unique).result() == {"done": "charge"}
    assert dotdo.Recorder(unique).hits("charge").result() == 1


def test_try_is_not_replay_safe(local_session, unique):
    steps = dotdo.Steps(unique)
    steps.attempt_once(unique, fail=False).result()
    steps.attempt_once(unique, fail=False).result()
    assert dotdo.Recorder(unique).hits("try").result() == 2


def test_finished_step_is_not_redone_after_a_kill(ray_session, unique):
    steps, recorder = dotdo.Steps(unique), dotdo.Recorder(unique)
    # Given a step that finished, in a method that has not returned yet
    pending = steps.step("send-invoice", unique, hold=30)
    wait_for(lambda: recorder.hits("send-invoice").result() == 1)
    # When the object is killed and the method is called again
    kill_and_wait(steps, "SIGKILL")
    with pytest.raises(ray.exceptions.RayActorError):
        pending.result(timeout=60)
    assert steps.step("send-invoice", unique).result() == {"done": "send-invoice"}
    # Then fn ran once: the journal answered the second time
    assert recorder.hits("send-invoice").result() == 1


def test_unfinished_step_runs_again_after_a_kill(ray_session, unique):
    steps, recorder = dotdo.Steps(unique), dotdo.Recorder(unique)
    pending = steps.step("slow-step", unique, work_time=30)
    wait_for(lambda: recorder.hits("slow-step").result() == 1)
    kill_and_wait(steps, "ray.kill")
    with pytest.raises(ray.exceptions.RayActorError):
        pending.result(timeout=60)
    assert steps.step("slow-step", unique).result() == {"done": "slow-step"}
    assert recorder.hits("slow-step").result() == 2  # at-least-once for an unfinished step
    assert steps.step("slow-step", unique).result() == {"done": "slow-step"}
    assert recorder.hits("slow-step").result() == 2


def test_every_attempt_is_journaled(local_session, unique):
    steps = dotdo.Steps(unique)
    steps.flaky(fail_times=2, max_retries=3, backoff=0.01, step_id="flaky").result()
    attempts = steps.attempts("flaky").result()
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["error"] for a in attempts] == ["ConnectionError: attempt 1 failed",
                                              "ConnectionError: attempt 2 failed", None]
    assert all(a["finished"] >= a["started"] for a in attempts)


def test_backoff_waits_really_happen_in_order(local_session, unique):
    out = dotdo.Steps(unique).flaky(fail_times=3, max_retries=3, backoff=0.2).result()
    gaps = [b - a for a, b in zip(out["times"], out["times"][1:])]
    # 0.2, 0.4, 0.8 s: each wait at least its size, each longer than the one before.
    assert all(g >= want for g, want in zip(gaps, [0.2, 0.4, 0.8]))
    assert gaps[0] < gaps[1] < gaps[2]


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["job", "Job.", "", ".enqueued", "job.enqueued", "Job.Enqueued", 7])
def test_bad_event_names_raise_at_send_and_log_nothing(make_local, unique, bad):
    events = make_local("Events", unique)
    with pytest.raises(ValueError):
        events.fire(bad, {}).result()
    with pytest.raises(ValueError):
        dotdo.send(bad, {})
    assert events.pending().result() == 0
    assert ray_count_events(events) == 0


def test_unencodable_event_data_raises_at_send_and_logs_nothing(make_local, unique):
    events = make_local("Events", unique)
    with pytest.raises(dotdo.EncodeError):
        events.fire("Order.placed", {"lock": 1j}).result()
    with pytest.raises(dotdo.EncodeError):
        dotdo.send("Order.placed", {"lock": threading.Lock()})
    assert ray_count_events(events) == 0


def ray_count_events(events) -> int:
    return events.seen("placed").result().__len__() + events.pending().result()



def test_two_concurrent_dos_of_one_step_run_fn_once(make_local, unique):
    # Given two calls that run the same step at the same time in one object
    steps = make_local("Steps", unique)
    recorder = make_local("Recorder", f"{unique}-recorder")
    calls = [steps.step("s1", recorder.id, work_time=0.5) for _ in range(2)]
    # Then the second waits for the first and gets its journaled result
    assert dotdo.get(calls) == [{"done": "s1"}, {"done": "s1"}]
    assert recorder.hits("s1").result() == 1


def test_two_concurrent_driver_dos_of_one_step_run_fn_once(local_session, unique):
    import asyncio

    calls = []

    async def work():
        calls.append(1)
        await asyncio.sleep(0.2)
        return 7

    async def main():
        return await asyncio.gather(*(dotdo.do(work, step_id=unique) for _ in range(3)))

    assert asyncio.run(main()) == [7, 7, 7] and calls == [1]
