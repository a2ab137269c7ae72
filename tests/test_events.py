"""Events on real Ray: wildcards, on_error, driver code's App, at-least-once."""


import ray

import dotdo
from dotdo import codec
from tests import objects  # noqa: F401
from tests.conftest import host_actor_name, host_pid, kill_and_wait, live_object, wait_for



def test_exact_and_wildcard_handlers(make_local, unique):
    events = make_local("Events", unique)
    for event_type in ["Order.placed", "Order.created", "Job.created", "Job.enqueued", "User.deleted"]:
        events.fire(event_type, {"n": 1})
    wait_for(lambda: events.pending().result() == 0 and events.seen("job").result())
    assert [data for _, data in events.seen("placed").result()] == [{"n": 1}]
    assert events.seen("created").result() == ["Order.created", "Job.created"]
    assert events.seen("job").result() == ["Job.created", "Job.enqueued"]


def test_handler_error_goes_to_on_error_with_the_event(make_local, unique):
    events = make_local("Events", unique)
    events.fire("Order.broken", {"order": 7}).result()
    (event_type, event_id, data, error), = wait_for(lambda: events.seen("errors").result())
    assert event_type == "Order.broken" and data == {"order": 7}
    assert "RuntimeError" in error and len(event_id) == 32
    # and the object goes on handling events
    events.fire("Order.placed", 1)
    wait_for(lambda: events.seen("placed").result())


def test_events_are_handled_in_order(make_local, unique):
    events = make_local("Events", unique)
    dotdo.get([events.fire("Order.placed", i) for i in range(50)])
    wait_for(lambda: len(events.seen("placed").result()) == 50)
    assert [d for _, d in events.seen("placed").result()] == list(range(50))


def test_event_accepted_before_a_crash_is_handled_after_it(make_object, unique):
    events = make_object("Events", unique)
    events.fire("Slow.started", 3.0).result()
    wait_for(lambda: events.seen("slow").result())  # the handler is mid-way
    kill_and_wait(events, "SIGKILL")
    marks = wait_for(lambda: [m for m in events.seen("slow").result() if m[0] == "end"] and
                     events.seen("slow").result())
    starts = [event_id for mark, event_id in marks if mark == "start"]
    ends = [event_id for mark, event_id in marks if mark == "end"]
    # Handled again after the restart (at-least-once), under the same event id.
    assert len(starts) == 2 and len(set(starts)) == 1 and ends == starts[:1]
    assert events.pending().result() == 0


def test_driver_send_reaches_module_level_handlers_in_the_app(ray_session):
    from tests import app_handlers

    witness = dotdo.Recorder(app_handlers.WITNESS)
    assert dotdo.send("Signup.created", {"user": "ada"}) is None
    dotdo.send("Signup.rejected", {"user": "eve"})
    signups = wait_for(lambda: witness.notes("signups").result())
    assert signups[0][1] == {"user": "ada"}
    errors = wait_for(lambda: witness.notes("errors").result())
    assert errors == [["Signup.rejected", "rejected {'user': 'eve'}"]]
    # The handlers live in the App: the actor named for it in dotdo's namespace is the
    # one the driver's App stub calls, and it keeps their module for its next lives
    app = ray.get_actor(host_actor_name("App", "default"), namespace="dotdo")
    assert ray.get(app.stats.remote())["pid"] == host_pid(dotdo.App("default"))
    assert ["module", "tests.app_handlers"] in dotdo.App("default").keep_modules([]).result()


def test_a_forwarded_event_sent_again_is_handled_once(local_session, unique):
    from tests import app_handlers

    # Given a batch forwarded to the App (as a queue forwards its outbox)
    app = dotdo.App("default")
    batch = [["Job.completed", {"jobId": unique}, f"{unique}-event"]]
    assert app.emit_many(batch).result() == 1
    # When the sender repeats it with the same ids (it crashed before it knew)
    assert app.emit_many(batch).result() == 0
    # Then the handler sees the event once: the App handles its events in order, so
    # once a later one is handled, a repeat queued before it would have been too
    assert app.emit_many([["Job.completed", {"jobId": f"{unique}-later"},
                           f"{unique}-later-event"]]).result() == 1
    witness = dotdo.Recorder(app_handlers.WITNESS)
    seen = wait_for(lambda: (n := witness.notes("job-completed").result())
                    and f"{unique}-later" in n and n)
    assert seen.count(unique) == 1 and seen.index(unique) < seen.index(f"{unique}-later")


def test_a_handler_raising_system_exit_goes_to_on_error_and_the_object_goes_on(make_local,
                                                                                unique):
    events = make_local("Events", unique)
    events.fire("Order.exited", 1).result()
    (event_type, _, _, error), = wait_for(lambda: events.seen("errors").result())
    assert event_type == "Order.exited" and "raised SystemExit: handler exits on 1" in error
    events.fire("Order.placed", 2)
    wait_for(lambda: events.seen("placed").result())


def test_pending_events_wait_in_the_journal_with_a_page_of_them_in_memory(make_local, unique):
    # Given thousands of events behind a slow handler
    from dotdo.background import EVENT_PAGE

    events = make_local("Events", unique)
    events.fire("Slow.started", 5).result()  # the handler is busy meanwhile
    dotdo.get([events.fire("Order.placed", i) for i in range(3000)])
    # Then at most a page of them is in memory, the rest wait in the file, and all
    # are handled in order
    activity = live_object(events)._dotdo_activity
    assert len(activity._buffer) <= EVENT_PAGE
    assert events.pending().result() > EVENT_PAGE
    wait_for(lambda: len(events.seen("placed").result()) == 3000, timeout=120)
    assert [d for _, d in events.seen("placed").result()] == list(range(3000))


def test_an_event_that_cannot_be_decoded_goes_to_on_error_and_the_rest_are_handled(
        make_local, unique):
    events = make_local("Events", unique)
    assert events.pending().result() == 0  # active
    storage = live_object(events).storage
    # An event whose data nothing here can rebuild (a newer dotdo's extension type)
    alien = codec.encode(codec.Undecoded(29, b"\x91\x01", "test"))
    events.fire("Order.placed", 1).result()
    storage.journal.append_event("alien-1", "Order.placed", alien, 0.0)
    events.fire("Order.placed", 2).result()
    wait_for(lambda: len(events.seen("placed").result()) == 2)
    assert [d for _, d in events.seen("placed").result()] == [1, 2]
    (event_type, event_id, data, error), = wait_for(lambda: events.seen("errors").result())
    assert (event_type, event_id, data) == ("Order.placed", "alien-1", None)
    assert "DecodeError" in error
    wait_for(lambda: events.pending().result() == 0)
