"""The storage an object sees (:class:`Storage`): key-value entries, transactions,
``sql`` for its own tables (and their versions), and its alarm, in the object's own
SQLite file. dotdo's tables in it are named ``_dotdo_*``; ``storage.sql`` is free for
the object's own tables in the same file.

A failed statement raises as :mod:`dotdo.storage.connection` says, from
``storage.sql`` as from the journal.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import sqlite_utils

from dotdo import codec
from dotdo.checks import is_real
from dotdo.storage.connection import DIR_MODE, DURABILITY, hold, storage_error
from dotdo.storage.journal import SELECT_ALARM, Journal
from dotdo.storage.schema import Migrations, open_file

__all__ = ["Storage"]

SELECT_VALUE = "SELECT value FROM _dotdo_kv WHERE key = ?"
UPSERT_VALUE = "INSERT OR REPLACE INTO _dotdo_kv (key, value) VALUES (?, ?)"
DELETE_VALUE = "DELETE FROM _dotdo_kv WHERE key = ?"
SELECT_RANGE = "SELECT key, value FROM _dotdo_kv WHERE key >= ? AND key < ? ORDER BY key {order} LIMIT ?"
SELECT_FROM = "SELECT key, value FROM _dotdo_kv WHERE key >= ? ORDER BY key {order} LIMIT ?"
UPSERT_ALARM = "INSERT OR REPLACE INTO _dotdo_alarm (one, fire_at, attempts) VALUES (1, ?, 0)"
DELETE_ALARM = "DELETE FROM _dotdo_alarm WHERE one = 1"

_MISSING = object()
_TOP = "\U0010ffff"  # greater than any character an id or key can hold


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"storage keys are str, not {type(key).__name__}")
    return key


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``."""
    stripped = prefix.rstrip(_TOP)
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


class _Database(sqlite_utils.Database):
    """``storage.sql``: sqlite-utils on the object's connection, whose failed
    statements raise as the journal's do (:func:`storage_error`)."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        super().__init__(conn)
        self._dotdo_path = path

    def execute(self, sql: str, parameters: Any = None) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            error = storage_error(exc, self._dotdo_path)
            if error is exc:
                raise
            raise error from exc


class Storage:
    """An object's durable storage: ``get``/``put``/``delete``/``list``, ``transaction()``, ``sql``.

    Values are anything :mod:`dotdo.codec` encodes; a value that does not encode
    raises :class:`~dotdo.errors.EncodeError` before anything is written. A
    ``compact`` storage (a pooled object's) creates its file with 1 KB pages.
    """

    def __init__(self, path: str, class_name: str, object_id: str, *, compact: bool = False,
                 durability: str = "full") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability is one of {sorted(DURABILITY)}, not {durability!r}")
        self.path = path
        self._owner = f"{class_name}/{object_id}"
        self._sql: sqlite_utils.Database | None = None
        os.makedirs(os.path.dirname(path), mode=DIR_MODE, exist_ok=True)
        new = not os.path.exists(path)
        self._held = hold(path, class_name, object_id)
        try:
            self._db = open_file(path, class_name, object_id, new and compact, new, durability)
        except BaseException:
            os.close(self._held)
            raise
        self.journal = Journal(self._db)
        self.closed = False  # once close() ran: loops that outlived the object end
        # The runtime's hooks: its clock, and a call when the alarm changes.
        self.now: Callable[[], float] = time.time
        self.on_alarm_change: Callable[[], None] | None = None

    def close(self) -> None:
        """Close the SQLite connection and let go of the file; the object reopens it
        when it next activates."""
        self.closed = True
        self._db.close()
        if self._held >= 0:
            os.close(self._held)  # after SQLite's: closing drops a process's POSIX locks
            self._held = -1

    # -- transactions ------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Storage]:
        """Make every write inside the block one atomic commit; nests with savepoints.

        Do not ``await`` inside the block: another call to this object could run at
        that ``await`` and its writes would join this transaction.
        """
        with self._db.transaction():
            yield self

    # -- key-value ----------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored at ``key``, or ``default``."""
        row = self._db.execute(SELECT_VALUE, (_check_key(key),)).fetchone()
        return default if row is None else codec.decode(row[0])

    def put(self, key: str | dict[str, Any], value: Any = _MISSING) -> None:
        """Store ``value`` at ``key``, or every item of a dict in one transaction."""
        items = key if isinstance(key, dict) else {key: value}
        if value is _MISSING and not isinstance(key, dict):
            raise TypeError("put(key, value) needs a value, or pass a dict of entries")
        rows = [(_check_key(k), codec.encode(v)) for k, v in items.items()]
        if len(rows) == 1:
            self._db.write(UPSERT_VALUE, rows[0])
            return
        self._db.write_many(UPSERT_VALUE, rows)

    def delete(self, key: str | list[str]) -> bool | int:
        """Delete ``key`` (True if it existed), or a list of keys (how many existed)."""
        keys = [key] if isinstance(key, str) else list(key)
        with self._db.transaction():
            deleted = sum(self._db.execute(DELETE_VALUE, (_check_key(k),)).rowcount for k in keys)
        return bool(deleted) if isinstance(key, str) else deleted

    def list(
        self,
        prefix: str = "",
        *,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> dict[str, Any]:
        """Entries in key order, as a dict: all keys starting with ``prefix``,
        within ``[start, end)`` if given, at most ``limit`` of them."""
        low = max(_check_key(prefix), start or "")
        high = _prefix_end(prefix)
        if end is not None:
            high = end if high is None else min(high, end)
        order = "DESC" if reverse else "ASC"
        count = -1 if limit is None else int(limit)
        if high is None:
            rows = self._db.execute(SELECT_FROM.format(order=order), (low, count))
        else:
            rows = self._db.execute(SELECT_RANGE.format(order=order), (low, high, count))
        return {k: codec.decode(v) for k, v in rows.fetchall()}

    # -- the object's own tables ----------------------------------------------------

    @property
    def sql(self) -> sqlite_utils.Database:
        """A ``sqlite_utils.Database`` on this object's file, for its own tables.

        sqlite-utils commits its own writes; inside ``transaction()`` use
        ``storage.sql.execute(...)`` so the writes join the transaction.
        """
        if self._sql is None:
            self._sql = _Database(self._db.sqlite, self.path)
        return self._sql

    def migrate(self, name: str, steps: Mapping[int, Callable[[sqlite_utils.Database], None]]
                ) -> int:
        """Bring the object's own tables called ``name`` to version ``len(steps)``:
        ``steps[n]``, a function of ``storage.sql``, takes them from version ``n`` to
        ``n + 1`` (a file that records no version of ``name`` is at 0). The steps due
        run in one transaction that records the new version; a file past the last
        step (a newer program wrote it) raises StorageError and is left as it is.
        Returns the version the file was at. Call it first, from ``__init__``."""
        migrations = Migrations(f"schema.{name}", name, steps)
        found = migrations.recorded(self._db, self.path)
        migrations.refuse_newer(found, self.path, self._owner,
                                f"Its {name} tables were left as they are.")
        if found != migrations.version:
            with self._db.transaction():
                migrations.upgrade(self.sql, found)
                migrations.record(self._db)
        return found

    # -- alarms (public API) ---------------------------------------------------------

    def set_alarm(self, when: float | datetime.datetime | datetime.timedelta) -> float:
        """Have the object's ``alarm()`` method called at ``when`` (an epoch time, an
        aware datetime, or a delay); replaces any alarm set before. Returns the epoch
        time. At-least-once: retried with backoff while ``alarm()`` raises, and kept
        across restarts."""
        fire_at = _epoch(when, self.now)
        self._db.write(UPSERT_ALARM, (fire_at,))
        if self.on_alarm_change is not None:
            self.on_alarm_change()
        return fire_at

    def get_alarm(self) -> float | None:
        """The epoch time of the pending alarm, or None."""
        row = self._db.execute(SELECT_ALARM).fetchone()
        return None if row is None else row[0]

    def delete_alarm(self) -> None:
        """Cancel the pending alarm, if any."""
        self._db.write(DELETE_ALARM)
        if self.on_alarm_change is not None:
            self.on_alarm_change()


def _epoch(when: float | datetime.datetime | datetime.timedelta, now: Callable[[], float]) -> float:
    if isinstance(when, datetime.timedelta):
        return now() + when.total_seconds()
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            raise ValueError(
                f"set_alarm needs an aware datetime, got the naive {when!r}: "
                "add tzinfo (for example datetime.timezone.utc)"
            )
        return when.timestamp()
    if is_real(when):
        return float(when)
    raise TypeError(f"set_alarm takes an epoch time, a datetime or a timedelta, not {type(when).__name__}")
