"""What an object's file holds of dotdo's, and its versions: the tables (named
``_dotdo_*``, as DDL constants), the :class:`Migrations` that bring older files up, and
:func:`open_file`, which opens a file at the current version.

Each file records the schema version it was written with. Opening a file brings an
older one up to :data:`SCHEMA_VERSION` through :data:`MIGRATIONS`, one step per
version, in the transaction that opens it; a file from a newer dotdo is refused with
a :class:`StorageError` before anything is written to it. An object's own tables are
versioned the same way, apart from dotdo's (:meth:`Storage.migrate
<dotdo.storage.kv.Storage.migrate>`, through the same :class:`Migrations`).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from dotdo.errors import CorruptStorageError, StorageError
from dotdo.storage.connection import (
    CACHE_PRAGMAS,
    COMPACT_FILE_PRAGMAS,
    PRAGMAS,
    Connection,
    durability_pragma,
    storage_error,
)

__all__ = ["Migrations", "open_file", "SCHEMA", "MIGRATIONS", "JOURNAL", "SCHEMA_VERSION"]

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

SELECT_META = "SELECT key, value FROM _dotdo_meta"
SELECT_META_VALUE = "SELECT value FROM _dotdo_meta WHERE key = ?"
INSERT_META = "INSERT OR IGNORE INTO _dotdo_meta (key, value) VALUES (?, ?)"
UPSERT_META = "INSERT OR REPLACE INTO _dotdo_meta (key, value) VALUES (?, ?)"
SELECT_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
SELECT_COLUMN = "SELECT 1 FROM pragma_table_info(?) WHERE name = ?"

# Migration 1 -> 2. The first durable steps journaled no ``started``; the best known
# start of such a step is when it finished. (Version 1 files written since then have
# the column already.)
ADD_STEP_STARTED = "ALTER TABLE _dotdo_steps ADD COLUMN started REAL NOT NULL DEFAULT 0"
BACKFILL_STEP_STARTED = "UPDATE _dotdo_steps SET started = finished"
# Migration 2 -> 3: a schedule records how its last tick ended (NULL: it returned).
ADD_TICK_ERROR = "ALTER TABLE _dotdo_schedules ADD COLUMN last_error TEXT"


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

def open_file(path: str, class_name: str, object_id: str, compact: bool, new: bool,
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
