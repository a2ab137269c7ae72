"""The SQLite file behind one durable object: its key-value storage and journal.

Modelled on huey's ``SqliteStorage``: the DDL is named constants, every write goes
through one transaction context manager, and all SQL is parameterised. Only this
module touches SQLite.

One process at a time: a live object holds an ``flock`` on its file, so a second
actor that tries to activate the same object (drivers that disagree on its hosting, a
pool resized while the old one still runs) gets a :class:`StorageError` instead of
two live copies. SQLite's own locks are POSIX locks, which ``flock`` does not touch.

One file per object, in WAL mode. Durability is a setting (:data:`DURABILITY`):
``"full"``, the default, has SQLite fsync the log at every commit
(``synchronous=FULL``), so a write acknowledged is on disk and survives a power cut or
a kernel crash, not only the death of the process; ``"normal"`` (``synchronous=NORMAL``)
survives the death of the process, but a power cut can lose the last commits. The log
is truncated back to :data:`WAL_LIMIT` bytes after a checkpoint, so one big
transaction does not leave a big file behind. dotdo's own tables are named
``_dotdo_*``; ``storage.sql`` is free for the object's own tables in the same file.

A write the disk refuses (full, an I/O error) or a file found damaged mid-run raises
a :class:`StorageError` that names the file (:class:`StorageFullError`,
:class:`CorruptStorageError`), from ``storage.sql`` as from the journal; a commit that
fails is rolled back, so nothing half-written stays behind.

Each file records the schema version it was written with. Opening a file brings an
older one up to :data:`SCHEMA_VERSION` through :data:`MIGRATIONS`, one step per
version, in the transaction that opens it; a file from a newer dotdo is refused with
a :class:`StorageError` before anything is written to it. An object's own tables are
versioned the same way, apart from dotdo's (:meth:`Storage.migrate`, through the
same :class:`Migrations`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import sqlite_utils

from dotdo import codec
from dotdo.checks import is_real
from dotdo.errors import CorruptStorageError, StorageError, StorageFullError

__all__ = ["Storage", "Journal", "Directory", "Migrations", "DURABILITY", "WAL_LIMIT"]

CREATE_META = """
CREATE TABLE IF NOT EXISTS _dotdo_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID"""

CREATE_KV = """
CREATE TABLE IF NOT EXISTS _dotdo_kv (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID"""

CREATE_STEPS = """
CREATE TABLE IF NOT EXISTS _dotdo_steps (
    step_id   TEXT PRIMARY KEY,
    result    BLOB NOT NULL,
    attempts  INTEGER NOT NULL,
    started   REAL NOT NULL,
    finished  REAL NOT NULL
) WITHOUT ROWID"""

# Failed attempts; the successful one is the step's own row.

CREATE_ATTEMPTS = """
CREATE TABLE IF NOT EXISTS _dotdo_attempts (
    step_id   TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    started   REAL NOT NULL,
    finished  REAL NOT NULL,
    error     TEXT,
    PRIMARY KEY (step_id, attempt)
) WITHOUT ROWID"""

CREATE_EVENTS = """
CREATE TABLE IF NOT EXISTS _dotdo_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    type      TEXT NOT NULL,
    data      BLOB NOT NULL,
    created   REAL NOT NULL,
    handled   REAL
)"""

CREATE_EVENTS_PENDING = """
CREATE INDEX IF NOT EXISTS _dotdo_events_pending ON _dotdo_events (seq) WHERE handled IS NULL"""

CREATE_SCHEDULES = """
CREATE TABLE IF NOT EXISTS _dotdo_schedules (
    name      TEXT PRIMARY KEY,
    spec      TEXT NOT NULL,
    next_fire REAL NOT NULL,
    last_fire REAL,
    ticks     INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
) WITHOUT ROWID"""

CREATE_ALARM = """
CREATE TABLE IF NOT EXISTS _dotdo_alarm (
    one       INTEGER PRIMARY KEY CHECK (one = 1),
    fire_at   REAL NOT NULL,
    attempts  INTEGER NOT NULL DEFAULT 0
)"""

SCHEMA = (CREATE_META, CREATE_KV, CREATE_STEPS, CREATE_ATTEMPTS, CREATE_EVENTS,
          CREATE_EVENTS_PENDING, CREATE_SCHEDULES, CREATE_ALARM)

# Durability setting -> SQLite's synchronous mode (see the module docstring).
DURABILITY = {"full": "FULL", "normal": "NORMAL"}
WAL_LIMIT = 64 << 20  # bytes the log is cut back to after a checkpoint

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=5000",
    f"PRAGMA journal_size_limit={WAL_LIMIT}",
)


def durability_pragma(durability: str) -> str:
    """The ``synchronous`` pragma of a durability setting."""
    return f"PRAGMA synchronous={DURABILITY[durability]}"


# SQLite's primary result codes for a refused write (extended codes share the low byte).
_SQLITE_IOERR, _SQLITE_FULL = 10, 13


def storage_error(exc: sqlite3.Error, path: str) -> Exception:
    """What a failed statement on ``path`` raises: the disk full, an I/O error or a
    damaged file as a :class:`StorageError` naming the file; anything else as it was
    (a constraint, a lock, bad SQL)."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code == _SQLITE_FULL:
        return StorageFullError(
            f"the disk holding {path} is full: nothing was written. Free space there "
            "(or move the storage root to a bigger disk); writes work again at once", path)
    if code == _SQLITE_IOERR:
        return StorageError(f"{path} could not be written or read (an I/O error: {exc}); "
                            "check the disk and its free space", path)
    if type(exc) is sqlite3.DatabaseError:  # "malformed", not a constraint or a lock
        return CorruptStorageError(f"{path} is damaged: {exc}", path)
    return exc


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

# Memory per open file, for hosts holding thousands of objects: each connection
# caches at most 128 KB of pages (the OS caches the file as well), and a *compact*
# file (a pooled object's: many, mostly small) gets 1 KB pages. Measured per live
# object: ~290 KB before, ~150 KB with both. 1 KB pages cost a big table (a queue's
# jobs) about a quarter of its write rate, so dedicated objects keep SQLite's 4 KB.
COMPACT_FILE_PRAGMAS = ("PRAGMA page_size=1024",)
CACHE_PRAGMAS = ("PRAGMA cache_size=-128",)

# A pooled host's list of the objects it must bring back by itself: after a restart
# (wake_at = 0: the object was in memory) or at its alarm or next schedule tick.
CREATE_HOSTED = """
CREATE TABLE IF NOT EXISTS _dotdo_hosted (
    class     TEXT NOT NULL,
    id        TEXT NOT NULL,
    wake_at   REAL NOT NULL,
    PRIMARY KEY (class, id)
) WITHOUT ROWID"""

UPSERT_HOSTED = "INSERT OR REPLACE INTO _dotdo_hosted (class, id, wake_at) VALUES (?, ?, ?)"
DELETE_HOSTED = "DELETE FROM _dotdo_hosted WHERE class = ? AND id = ?"
SELECT_HOSTED = "SELECT class, id, wake_at FROM _dotdo_hosted"

SELECT_META = "SELECT key, value FROM _dotdo_meta"
SELECT_META_VALUE = "SELECT value FROM _dotdo_meta WHERE key = ?"
INSERT_META = "INSERT OR IGNORE INTO _dotdo_meta (key, value) VALUES (?, ?)"
UPSERT_META = "INSERT OR REPLACE INTO _dotdo_meta (key, value) VALUES (?, ?)"
SELECT_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
SELECT_COLUMN = "SELECT 1 FROM pragma_table_info(?) WHERE name = ?"
SELECT_VALUE = "SELECT value FROM _dotdo_kv WHERE key = ?"
UPSERT_VALUE = "INSERT OR REPLACE INTO _dotdo_kv (key, value) VALUES (?, ?)"
DELETE_VALUE = "DELETE FROM _dotdo_kv WHERE key = ?"
SELECT_RANGE = "SELECT key, value FROM _dotdo_kv WHERE key >= ? AND key < ? ORDER BY key {order} LIMIT ?"
SELECT_FROM = "SELECT key, value FROM _dotdo_kv WHERE key >= ? ORDER BY key {order} LIMIT ?"

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
UPSERT_ALARM = "INSERT OR REPLACE INTO _dotdo_alarm (one, fire_at, attempts) VALUES (1, ?, 0)"
COUNT_ALARM_ATTEMPT = "UPDATE _dotdo_alarm SET attempts = attempts + 1 WHERE one = 1"
DELETE_ALARM = "DELETE FROM _dotdo_alarm WHERE one = 1"
DELETE_ALARM_IF = "DELETE FROM _dotdo_alarm WHERE one = 1 AND fire_at = ?"
PRUNE_EVENTS = "DELETE FROM _dotdo_events WHERE handled IS NOT NULL AND handled < ?"
PRUNE_STEPS = "DELETE FROM _dotdo_steps WHERE finished < ?"
PRUNE_ATTEMPTS = "DELETE FROM _dotdo_attempts WHERE finished < ?"
FORGET_STEPS = "DELETE FROM _dotdo_steps WHERE step_id IN (SELECT value FROM json_each(?))"
FORGET_ATTEMPTS = "DELETE FROM _dotdo_attempts WHERE step_id IN (SELECT value FROM json_each(?))"

# Migration 1 -> 2. The first durable steps journaled no ``started``; the best known
# start of such a step is when it finished. (Version 1 files written since then have
# the column already.)
ADD_STEP_STARTED = "ALTER TABLE _dotdo_steps ADD COLUMN started REAL NOT NULL DEFAULT 0"
BACKFILL_STEP_STARTED = "UPDATE _dotdo_steps SET started = finished"
# Migration 2 -> 3: a schedule records how its last tick ended (NULL: it returned).
ADD_TICK_ERROR = "ALTER TABLE _dotdo_schedules ADD COLUMN last_error TEXT"

# The storage holds payloads and errors: only its owner may read it.
DIR_MODE, FILE_MODE = 0o700, 0o600

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


class Connection:
    """The SQLite connection of one object's file, shared by its :class:`Storage` and
    its :class:`Journal` (internal: objects use ``Storage``).

    ``execute`` runs one statement as it comes (a read, or a write inside
    ``transaction()``); ``write`` and ``write_many`` are atomic by themselves; and
    ``transaction()`` is the one transaction context manager of the file.
    """

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.sqlite = conn
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        # Set when SQLite rolled an open transaction back by itself: every write
        # until the outermost block ends fails (see transaction()).
        self._rolled_back: StorageError | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Make every write inside the block one atomic commit; nests with savepoints."""
        with self._lock:
            outer = self._depth == 0
            savepoint = f"dotdo_{self._depth}"
            self.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield
                if self._rolled_back is not None:  # an inner block's error was caught
                    raise self._rolled_back
            except BaseException:
                self._depth -= 1
                # A full disk or an I/O error can make SQLite roll the whole
                # transaction back by itself: there is nothing left to roll back, and
                # the blocks around this one must not go on writing outside it.
                if not self.sqlite.in_transaction:
                    if outer:
                        self._rolled_back = None
                    elif self._rolled_back is None:
                        self._rolled_back = StorageError(
                            f"{self.path}: SQLite rolled the transaction back after an "
                            "error inside it; nothing of it was written", self.path)
                elif outer:
                    self.execute("ROLLBACK")
                else:
                    self.execute(f"ROLLBACK TO {savepoint}")
                    self.execute(f"RELEASE {savepoint}")
                raise
            self._depth -= 1
            try:
                self.execute("COMMIT" if outer else f"RELEASE {savepoint}")
            except BaseException:
                # A COMMIT the disk refused may leave the transaction open: end it, so
                # the next write does not join a transaction that failed.
                if outer and self.sqlite.in_transaction:
                    self.sqlite.execute("ROLLBACK")
                raise

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        if self._rolled_back is not None and self._depth:  # see transaction()
            raise self._rolled_back
        try:
            return self.sqlite.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            error = storage_error(exc, self.path)
            if self._depth and not self.sqlite.in_transaction and self._rolled_back is None:
                self._rolled_back = StorageError(
                    f"{self.path}: SQLite rolled the transaction back after {error}; "
                    "nothing of it was written", self.path)
            if error is exc:
                raise
            raise error from exc

    def write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        """One statement, atomic by itself: SQLite wraps it in its own transaction
        (or it joins the open one), so no BEGIN/COMMIT round trips are needed."""
        with self._lock:
            return self.execute(sql, params)

    def write_many(self, sql: str, rows: Iterable[tuple]) -> None:
        """One statement for each row, all in one transaction."""
        with self.transaction():
            try:
                self.sqlite.executemany(sql, rows)
            except sqlite3.Error as exc:
                error = storage_error(exc, self.path)
                if error is exc:
                    raise
                raise error from exc

    def close(self) -> None:
        with self._lock:
            self.sqlite.close()


# -- schema versions ------------------------------------------------------------------
#
# One mechanism for every set of tables in a file (dotdo's journal, a Queue's, a
# Worker's): Migrations. A file records each set's version in _dotdo_meta; steps[n]
# takes a set from version n to n + 1. The steps from the file's version up run in
# one transaction, which also records the new version: a step that fails leaves the
# tables as they were. A version above the last known one is refused before anything
# is written. A step works on the tables of its own version, not on today's
# constants, and runs even when a table it changes does not exist yet.


@dataclasses.dataclass(frozen=True)
class Migrations:
    """The ordered schema changes of one set of tables: ``steps[n]`` (a function of
    the connection) takes them from version ``n`` to ``n + 1``. The file records the
    version under ``key`` in ``_dotdo_meta``; one that records none is at ``first``."""

    key: str
    what: str  # the tables, as errors name them: "storage", "queue"
    steps: Mapping[int, Callable[[Any], None]]
    first: int = 0

    @property
    def version(self) -> int:
        """The version the last step brings the tables to."""
        return self.first + len(self.steps)

    def recorded(self, db: Connection | sqlite3.Connection, path: str) -> int:
        """The version ``path`` records, read without writing anything."""
        if db.execute(SELECT_TABLE, ("_dotdo_meta",)).fetchone() is None:
            return self.first
        row = db.execute(SELECT_META_VALUE, (self.key,)).fetchone()
        if row is None:
            return self.first
        try:
            return int(row[0])
        except ValueError:
            raise StorageError(
                f"{path} records the {self.what} schema version {row[0]!r}, which no dotdo "
                "writes; the file was left as it is",
                path,
            ) from None

    def refuse_newer(self, found: int, path: str, owner: str,
                     left: str = "The file was left as it is.") -> None:
        """A StorageError if ``found`` is past the last version these steps know."""
        if found > self.version:
            raise StorageError(
                f"{path} holds {owner} in {self.what} schema version {found}, written by "
                f"a newer dotdo; this dotdo reads versions up to {self.version}. Upgrade "
                f"dotdo on every node that may host the object. {left}",
                path,
            )

    def upgrade(self, db: Any, found: int) -> None:
        """Run the steps from version ``found`` up, in order, inside the caller's
        transaction (which then records the version: ``record``)."""
        for step in range(found, self.version):
            self.steps[step](db)

    def record(self, db: Any) -> None:
        """Write down that the tables are at ``version`` (``_dotdo_meta`` exists)."""
        db.execute(UPSERT_META, (self.key, str(self.version)))


def _steps_record_their_start(db: Connection) -> None:
    """1 -> 2. A version 1 file is one of: the first dotdo's (no journal tables yet:
    SCHEMA creates them), the first durable steps' (``_dotdo_steps`` without
    ``started``: added here), or a later one (already as version 2)."""
    if (db.execute(SELECT_TABLE, ("_dotdo_steps",)).fetchone() is not None
            and db.execute(SELECT_COLUMN, ("_dotdo_steps", "started")).fetchone() is None):
        db.execute(ADD_STEP_STARTED)
        db.execute(BACKFILL_STEP_STARTED)


def _ticks_record_their_error(db: Connection) -> None:
    """2 -> 3. Schedules keep the error of their last tick, for operators."""
    if (db.execute(SELECT_TABLE, ("_dotdo_schedules",)).fetchone() is not None
            and db.execute(SELECT_COLUMN, ("_dotdo_schedules", "last_error")).fetchone() is None):
        db.execute(ADD_TICK_ERROR)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _steps_record_their_start,
    2: _ticks_record_their_error,
}
# dotdo's own tables. A file that records no version is from before dotdo read it, or
# was left empty by an open that died: version 1.
JOURNAL = Migrations("schema", "storage", MIGRATIONS, first=1)
# The version of the tables above (SCHEMA): a change to them is a step in MIGRATIONS.
SCHEMA_VERSION = JOURNAL.version


def _open(path: str, class_name: str, object_id: str, compact: bool, new: bool,
          durability: str) -> Connection:
    """A connection to ``path``: checked, at SCHEMA_VERSION, and belonging to
    ``class_name/object_id``; or an error and the file as it was."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        version = SCHEMA_VERSION
        if not new:
            # Read-only checks first: a file refused here is left as it was.
            (verdict,) = conn.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            version = JOURNAL.recorded(conn, path)
            JOURNAL.refuse_newer(version, path, f"{class_name}/{object_id}")
        for pragma in ((COMPACT_FILE_PRAGMAS if compact else ()) + CACHE_PRAGMAS + PRAGMAS
                       + (durability_pragma(durability),)):
            conn.execute(pragma)
        if not new:
            conn.execute("PRAGMA shrink_memory")  # the check's pages are not needed
        db = Connection(conn, path)
        with db.transaction():
            JOURNAL.upgrade(db, version)
            for ddl in SCHEMA:
                db.execute(ddl)
            for row in (("class", class_name), ("id", object_id)):
                db.execute(INSERT_META, row)
            if new or version != JOURNAL.version:
                JOURNAL.record(db)
        meta = dict(db.execute(SELECT_META).fetchall())
    except StorageError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        refused = storage_error(exc, path)
        if isinstance(refused, StorageError) and not isinstance(refused, CorruptStorageError):
            raise refused from exc  # the disk, not the file: full, or an I/O error
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise StorageError(f"{path} is locked by another process: {exc}", path) from exc
        raise CorruptStorageError(
            f"cannot open the storage of {class_name}/{object_id}: {path} is not a "
            f"readable SQLite database ({exc}). The file was left as it is: inspect "
            "it with the sqlite3 shell, restore it from a backup, or move it away to "
            "start this object afresh.",
            path,
        ) from exc
    except BaseException:
        conn.close()
        raise
    if (meta.get("class"), meta.get("id")) != (class_name, object_id):
        conn.close()
        raise StorageError(
            f"{path} belongs to {meta.get('class')}/{meta.get('id')}, not "
            f"{class_name}/{object_id}: was the file copied or renamed?",
            path,
        )
    return db


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
        self._held = _hold(path, class_name, object_id)
        try:
            self._db = _open(path, class_name, object_id, new and compact, new, durability)
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


HOLD_WAIT = 5.0  # seconds: a dying process (Ray shutting down) lets go by then


def _hold(path: str, class_name: str, object_id: str) -> int:
    """An fd of ``path`` holding an exclusive ``flock``, or :class:`StorageError`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # also a file an older dotdo created readable by all
    deadline = time.monotonic() + HOLD_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
        os.close(fd)
        raise StorageError(
            f"{class_name}/{object_id} is live in another actor ({path} is held): every "
            "driver must give the class the same hosting (dotdo.init(hosting=...), "
            "$DOTDO_HOSTING), and a pool whose number of hosts changed must be stopped "
            "before the new one starts",
            path,
        )


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


class Directory:
    """A pooled host's own file: which objects it must wake without being called.

    An object is written as live (``wake_at = 0``) when it activates, so a host that
    crashes brings back every object it held; on eviction its row becomes the time of
    its next alarm or schedule tick, or goes away when it has none.
    """

    def __init__(self, path: str, durability: str = "full") -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), mode=DIR_MODE, exist_ok=True)
        if not os.path.exists(path):
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            for pragma in (*PRAGMAS, durability_pragma(durability)):
                self._conn.execute(pragma)
            self._conn.execute(CREATE_HOSTED)
        except sqlite3.DatabaseError as exc:
            raise CorruptStorageError(
                f"the pooled host's directory {path} is not a readable SQLite database "
                f"({exc}); move it away: its objects then wake at their next call",
                path,
            ) from exc

    def live(self, key: tuple[str, str]) -> None:
        self._conn.execute(UPSERT_HOSTED, (key[0], key[1], 0.0))

    def asleep(self, key: tuple[str, str], wake_at: float | None) -> None:
        if wake_at is None:
            self._conn.execute(DELETE_HOSTED, key)
        else:
            self._conn.execute(UPSERT_HOSTED, (key[0], key[1], wake_at))

    def asleep_many(self, rows: list[tuple[tuple[str, str], float | None]]) -> None:
        """Record a sweep's evictions in one commit."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for key, wake_at in rows:
                self.asleep(key, wake_at)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def rows(self) -> list[tuple[tuple[str, str], float]]:
        return [((c, i), w) for c, i, w in self._conn.execute(SELECT_HOSTED).fetchall()]
