"""The host core on its own (no Ray): a batch that comes before the call ahead of it."""

import asyncio

from dotdo.host import Call, ObjectTable
from tests.objects import Recorder


def _note(seq: int, item, stream: str = "s") -> list:
    return list(Call("Recorder", "r", "note", ["log", item], {}, None, False, stream, seq))


def _table(tmp_path) -> ObjectTable:
    return ObjectTable({"Recorder": Recorder}, str(tmp_path), fresh=True, deferred_timeout=5.0)


def test_a_batch_before_the_call_ahead_of_it_waits_its_turn_then_runs_at_once(tmp_path):
    async def scenario():
        table = _table(tmp_path)
        batch = [_note(seq, seq) for seq in (2, 3, 4)]
        # Given a batch whose first call's turn has not come (call 1 is not here yet)
        assert table.run_now(batch) == []
        assert table.waits_turn(batch[0])
        turn = table.turn(batch[0])
        assert not turn.done()
        # When call 1 arrives and runs
        await table.call(_note(1, 1), ())
        await asyncio.wait_for(turn, 5)
        # Then the whole batch runs at once, in order, in one run (one commit)
        ran = table.run_now(batch, admitted=True)
        assert [ok for ok, _ in ran] == [True, True, True]
        assert table.objects[("Recorder", "r")].notes("log") == [1, 2, 3, 4]
        assert table.sequencer.can_start((("Recorder", "r"), "s"), 5)
        table.release(("Recorder", "r"), table.objects[("Recorder", "r")])

    asyncio.run(scenario())


def test_a_waiting_batch_that_is_dropped_holds_up_no_later_call(tmp_path):
    async def scenario():
        table = _table(tmp_path)
        batch = [_note(seq, seq) for seq in (2, 3)]
        turn = table.turn(batch[0])
        # When the batch is cancelled while it waits, and call 1 comes after all
        turn.cancel()
        table.drop(batch)
        await table.call(_note(1, 1), ())
        # Then the next call runs at once: the dropped numbers are skipped, not waited for
        assert table.sequencer.can_start((("Recorder", "r"), "s"), 4)
        await asyncio.wait_for(table.call(_note(4, 4), ()), 5)
        assert table.objects[("Recorder", "r")].notes("log") == [1, 4]
        table.release(("Recorder", "r"), table.objects[("Recorder", "r")])

    asyncio.run(scenario())
