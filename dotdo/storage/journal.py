"""dotdo's own records in an object's file: durable steps and their attempts,
events, schedules and the alarm (:class:`Journal`), with their SQL. The tables are
created and versioned by :mod:`dotdo.storage.schema`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from dotdo import codec
from dotdo.storage.connection import Connection

__all__ = ["Journal", "SELECT_ALARM"]

SELECT_STEP = "SELECT result, attempts FROM _dotdo_steps WHERE step_id = ?"
INSERT_STEP = (
    "INSERT OR IGNORE INTO _dotdo_steps (step_id, result, attempts, started, finished) "
    "VALUES (?, ?, ?, ?, ?)"
)
SELECT_STEP_ROW = "SELECT attempts, started, finished FROM _dotdo_steps WHERE step_id = ?"
SELECT_STEPS = (
    "SELECT step_id, result FROM _dotdo_steps WHERE step_id IN (SELECT value FROM json_each(?))"
)
INSERT_ATTEMPT = (
    "INSERT OR REPLACE INTO _dotdo_attempts (step_id, attempt, started, finished, error) "
    "VALUES (?, ?, ?, ?, ?)"
)
SELECT_ATTEMPTS = (
    "SELECT attempt, started, finished, error FROM _dotdo_attempts WHERE step_id = ? "
    "ORDER BY attempt"
)
# OR IGNORE: an event forwarded again with the id it had (a sender's retry) is a no-op.
INSERT_EVENT = "INSERT OR IGNORE INTO _dotdo_events (id, type, data, created) VALUES (?, ?, ?, ?)"
SELECT_PENDING_EVENTS = (
    "SELECT id, type, data, created FROM _dotdo_events WHERE handled IS NULL ORDER BY seq"
)
SELECT_PENDING_PAGE = (
    "SELECT seq, id, type, data, created FROM _dotdo_events WHERE handled IS NULL AND seq > ? "
    "ORDER BY seq LIMIT ?"
)
MARK_EVENT_HANDLED = "UPDATE _dotdo_events SET handled = ? WHERE id = ?"
SELECT_SCHEDULE = "SELECT spec, next_fire, ticks FROM _dotdo_schedules WHERE name = ?"
UPSERT_SCHEDULE = (
    "INSERT INTO _dotdo_schedules (name, spec, next_fire) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, next_fire = excluded.next_fire"
)
RECORD_TICK = (
    "UPDATE _dotdo_schedules SET last_fire = ?, next_fire = ?, ticks = ticks + 1, "
    "last_error = ? WHERE name = ?"
)
SELECT_ALARM = "SELECT fire_at, attempts FROM _dotdo_alarm WHERE one = 1"
COUNT_ALARM_ATTEMPT = "UPDATE _dotdo_alarm SET attempts = attempts + 1 WHERE one = 1"
DELETE_ALARM_IF = "DELETE FROM _dotdo_alarm WHERE one = 1 AND fire_at = ?"
PRUNE_EVENTS = "DELETE FROM _dotdo_events WHERE handled IS NOT NULL AND handled < ?"
PRUNE_STEPS = "DELETE FROM _dotdo_steps WHERE finished < ?"
PRUNE_ATTEMPTS = "DELETE FROM _dotdo_attempts WHERE finished < ?"
FORGET_STEPS = "DELETE FROM _dotdo_steps WHERE step_id IN (SELECT value FROM json_each(?))"
FORGET_ATTEMPTS = "DELETE FROM _dotdo_attempts WHERE step_id IN (SELECT value FROM json_each(?))"


class Journal:
    """dotdo's own records in an object's file: steps, events, schedules, alarms.

    Used by the runtime, not by objects; shares the storage's :class:`Connection`,
    and so its transaction context manager.
    """

    def __init__(self, db: Connection) -> None:
        self._db = db

    # steps
    def step(self, step_id: str) -> tuple[bool, Any]:
        """``(True, result)`` if the step finished before, else ``(False, None)``."""
        row = self._db.execute(SELECT_STEP, (step_id,)).fetchone()
        return (False, None) if row is None else (True, codec.decode(row[0]))

    def step_result(self, step_id: str) -> bytes | None:
        """The finished step's result as journaled (encoded), or None: for a process
        that passes it on without decoding it."""
        row = self._db.execute(SELECT_STEP, (step_id,)).fetchone()
        return None if row is None else row[0]

    def record_attempt(
        self, step_id: str, attempt: int, started: float, finished: float, error: str | None
    ) -> None:
        self._db.write(INSERT_ATTEMPT, (step_id, attempt, started, finished, error))

    def finish_step(self, step_id: str, result: bytes, attempt: int, started: float, finished: float) -> None:
        """Journal the successful attempt with the step's encoded result: one row,
        one commit (the hot path of every step)."""
        self._db.write(INSERT_STEP, (step_id, result, attempt, started, finished))

    def finish_steps(self, rows: Iterable[tuple[str, bytes, int, float, float]]) -> None:
        """Journal many successful steps, ``(step_id, result, attempt, started,
        finished)`` each, in one commit (or in the transaction open around it): a
        group commit, one fsync for the lot."""
        self._db.write_many(INSERT_STEP, rows)

    def step_results(self, step_ids: list[str]) -> dict[str, bytes]:
        """The results (encoded) of those of ``step_ids`` that finished, in one read."""
        return dict(self._db.execute(SELECT_STEPS, (json.dumps(step_ids),)).fetchall())

    def attempts(self, step_id: str) -> list[dict[str, Any]]:
        """Every attempt of a step, in order: the failed ones, then the success."""
        rows = self._db.execute(SELECT_ATTEMPTS, (step_id,)).fetchall()
        out = [dict(zip(("attempt", "started", "finished", "error"), r)) for r in rows]
        done = self._db.execute(SELECT_STEP_ROW, (step_id,)).fetchone()
        if done is not None:
            out.append({"attempt": done[0], "started": done[1], "finished": done[2], "error": None})
        return out

    # events
    def append_event(self, event_id: str, event_type: str, data: bytes, created: float) -> bool:
        """Journal an event; False if one with this id is there already."""
        return bool(self._db.write(INSERT_EVENT, (event_id, event_type, data, created)).rowcount)

    def pending_events(self) -> list[tuple[str, str, Any, float]]:
        """Every event not handled yet, in order (what it holds decoded leniently)."""
        rows = self._db.execute(SELECT_PENDING_EVENTS).fetchall()
        return [(i, t, codec.decode(d, lenient=True), c) for i, t, d, c in rows]

    def pending_page(self, after: int, limit: int) -> list[tuple[int, str, str, bytes, float]]:
        """Up to ``limit`` events not handled yet that were journaled after number
        ``after``, in order, as stored: ``(seq, id, type, data encoded, created)``."""
        return self._db.execute(SELECT_PENDING_PAGE, (after, limit)).fetchall()

    def events_handled(self, event_ids: list[str], when: float) -> None:
        self._db.write_many(MARK_EVENT_HANDLED, [(when, i) for i in event_ids])

    def prune(self, events_before: float | None, steps_before: float | None) -> None:
        """Forget events handled before ``events_before``, and steps (with their
        attempts) finished before ``steps_before``; None keeps them."""
        with self._db.transaction():
            if events_before is not None:
                self._db.execute(PRUNE_EVENTS, (events_before,))
            if steps_before is not None:
                self._db.execute(PRUNE_STEPS, (steps_before,))
                self._db.execute(PRUNE_ATTEMPTS, (steps_before,))

    def forget_steps(self, step_ids: list[str]) -> int:
        """Forget these steps and their attempts (their owner no longer needs them);
        returns how many steps were there."""
        ids = json.dumps(step_ids)
        with self._db.transaction():
            self._db.execute(FORGET_ATTEMPTS, (ids,))
            return self._db.execute(FORGET_STEPS, (ids,)).rowcount

    # schedules
    def schedule(self, name: str) -> tuple[str, float, int] | None:
        return self._db.execute(SELECT_SCHEDULE, (name,)).fetchone()

    def set_schedule(self, name: str, spec: str, next_fire: float) -> None:
        self._db.write(UPSERT_SCHEDULE, (name, spec, next_fire))

    def record_tick(self, name: str, fired: float, next_fire: float,
                    error: str | None = None) -> None:
        self._db.write(RECORD_TICK, (fired, next_fire, error, name))

    # alarm
    def alarm(self) -> tuple[float, int] | None:
        return self._db.execute(SELECT_ALARM).fetchone()

    def count_alarm_attempt(self) -> None:
        self._db.write(COUNT_ALARM_ATTEMPT)

    def alarm_done(self, fire_at: float) -> None:
        """Clear the alarm that fired, unless ``alarm()`` set a new one meanwhile."""
        self._db.write(DELETE_ALARM_IF, (fire_at,))
