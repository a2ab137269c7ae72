"""This process's lines of calls to objects: it lets go of the lines it no longer
needs (a driver touching a million objects must not keep a million), and never one
whose calls a new line could overtake."""

import threading

import pytest

import dotdo
from dotdo import client
from tests import objects  # noqa: F401  (defines PoolHeld)

pytestmark = pytest.mark.dedicated_pass("one pooled host, whatever the pass's hosting")


@pytest.fixture
def small_tables(monkeypatch):
    monkeypatch.setattr(client, "MAX_LINES", 40)
    monkeypatch.setattr(client, "LINE_IDLE", 0.0)
    monkeypatch.setattr(client, "_ASK_TIMEOUT", 1.0)


def _held_lines(prefix: str) -> list[str]:
    return [name for name in client._lines if name.startswith(f"PoolHeld/{prefix}")]


def test_lines_to_objects_no_longer_called_are_let_go_and_calls_stay_in_order(
        ray_session, unique, small_tables):
    # Given calls to 60 objects, all finished
    stubs = [dotdo.PoolHeld(f"{unique}-{i}") for i in range(60)]
    assert dotdo.get([s.incr() for s in stubs]) == [1] * 60
    for t in threading.enumerate():  # a trim the 41st line started on its own
        if t.name == "dotdo-trim":
            t.join(30)
    # When the process trims its lines
    client.trim_lines(keep=0)
    # Then it keeps none of them, nor their outbox (their host says every call started)
    assert _held_lines(unique) == []
    assert not [h for h in client._hosts if h.startswith("held[")]
    # and calls made afterwards, on new lines, run in the order they were made
    for s in stubs[:10]:
        for _ in range(5):
            s.incr()
    assert dotdo.get([s.get() for s in stubs[:10]]) == [6] * 10


def test_a_line_whose_calls_may_not_have_started_is_kept(ray_session, unique, small_tables):
    # Given an object whose host is held up, with a call sent that has not started
    busy = dotdo.PoolHeld(f"{unique}-busy")
    busy.incr().result()
    blocking = busy.block(3.0)
    waiting = busy.incr()
    # When the process trims while the host cannot answer
    client.trim_lines(keep=0)
    # Then the line stays (a new one could overtake the waiting call), and order holds
    assert _held_lines(f"{unique}-busy") == [f"PoolHeld/{unique}-busy"]
    later = busy.incr()
    blocking.result(30)
    assert (waiting.result(30), later.result(30)) == (2, 3)
