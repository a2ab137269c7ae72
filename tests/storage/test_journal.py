"""dotdo's records in an object's file (dotdo/storage/journal.py)."""


def test_an_event_id_is_journaled_once(make_storage):
    s = make_storage()
    assert s.journal.append_event("e1", "Job.done", b"\xc0", 1.0) is True
    assert s.journal.append_event("e1", "Job.done", b"\xc0", 2.0) is False  # sent again
    assert [e[0] for e in s.journal.pending_events()] == ["e1"]


def test_prune_forgets_old_handled_events_and_old_steps_only(make_storage):
    s = make_storage()
    for i, handled in enumerate((10.0, 100.0, None)):
        s.journal.append_event(f"e{i}", "Job.done", b"\xc0", 1.0)
        if handled is not None:
            s.journal.events_handled([f"e{i}"], handled)
    s.journal.record_attempt("old", 1, 1.0, 2.0, "boom")
    s.journal.finish_step("old", b"\xc0", 2, 3.0, 4.0)
    s.journal.finish_step("new", b"\xc0", 1, 200.0, 201.0)
    s.journal.prune(events_before=50.0, steps_before=None)
    ids = [r[0] for r in s.sql.execute("SELECT id FROM _dotdo_events ORDER BY seq").fetchall()]
    assert ids == ["e1", "e2"]  # the unhandled one stays whatever its age
    assert s.journal.step("old")[0]
    s.journal.prune(events_before=None, steps_before=50.0)
    assert not s.journal.step("old")[0] and s.journal.attempts("old") == []
    assert s.journal.step("new")[0]
