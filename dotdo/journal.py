"""The SQLite file behind one durable object: its key-value storage and journal.

Modelled on huey's ``SqliteStorage``: the DDL is named constants, every write goes
through one transaction context manager, and all SQL is parameterised. Only this
module touches SQLite.

One file per object, WAL mode with ``synchronous=NORMAL``: a committed write survives
the death of the process (what crash tests exercise); only a power cut can lose the
last few commits. dotdo's own tables are named ``_dotdo_*``; ``storage.sql`` is free
for the object's own tables in the same file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import sqlite_utils

from dotdo import codec
from dotdo.errors import CorruptStorageError, StorageError

__all__ = ["Storage"]

SCHEMA_VERSION = 1

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

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
)

SELECT_META = "SELECT key, value FROM _dotdo_meta"
INSERT_META = "INSERT OR IGNORE INTO _dotdo_meta (key, value) VALUES (?, ?)"
SELECT_VALUE = "SELECT value FROM _dotdo_kv WHERE key = ?"
UPSERT_VALUE = "INSERT OR REPLACE INTO _dotdo_kv (key, value) VALUES (?, ?)"
DELETE_VALUE = "DELETE FROM _dotdo_kv WHERE key = ?"
SELECT_RANGE = "SELECT key, value FROM _dotdo_kv WHERE key >= ? AND key < ? ORDER BY key {order} LIMIT ?"
SELECT_FROM = "SELECT key, value FROM _dotdo_kv WHERE key >= ? ORDER BY key {order} LIMIT ?"

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


class Storage:
    """An object's durable storage: ``get``/``put``/``delete``/``list``, ``transaction()``, ``sql``.

    Values are anything :mod:`dotdo.codec` encodes; a value that does not encode
    raises :class:`~dotdo.errors.EncodeError` before anything is written.
    """

    def __init__(self, path: str, class_name: str, object_id: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._sql: sqlite_utils.Database | None = None
        self._conn = self._connect(path, class_name, object_id)

    # -- opening ---------------------------------------------------------------

    def _connect(self, path: str, class_name: str, object_id: str) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            for pragma in PRAGMAS:
                conn.execute(pragma)
            (verdict,) = conn.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(CREATE_META)
            conn.execute(CREATE_KV)
            conn.executemany(
                INSERT_META,
                [("class", class_name), ("id", object_id), ("schema", str(SCHEMA_VERSION))],
            )
            conn.execute("COMMIT")
            meta = dict(conn.execute(SELECT_META).fetchall())
        except sqlite3.DatabaseError as exc:
            conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise StorageError(f"{path} is locked by another process: {exc}", path) from exc
            raise CorruptStorageError(
                f"cannot open the storage of {class_name}/{object_id}: {path} is not a "
                f"readable SQLite database ({exc}). The file was left as it is: inspect "
                "it with the sqlite3 shell, restore it from a backup, or move it away to "
                "start this object afresh.",
                path,
            ) from exc
        if (meta.get("class"), meta.get("id")) != (class_name, object_id):
            conn.close()
            raise StorageError(
                f"{path} belongs to {meta.get('class')}/{meta.get('id')}, not "
                f"{class_name}/{object_id}: was the file copied or renamed?",
                path,
            )
        return conn

    def close(self) -> None:
        """Close the SQLite connection; the object reopens it when it next activates."""
        with self._lock:
            self._conn.close()

    # -- transactions ------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Storage]:
        """Make every write inside the block one atomic commit; nests with savepoints.

        Do not ``await`` inside the block: another call to this object could run at
        that ``await`` and its writes would join this transaction.
        """
        with self._lock:
            outer = self._depth == 0
            savepoint = f"dotdo_{self._depth}"
            self._execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outer:
                    self._execute("ROLLBACK")
                else:
                    self._execute(f"ROLLBACK TO {savepoint}")
                    self._execute(f"RELEASE {savepoint}")
                raise
            self._depth -= 1
            self._execute("COMMIT" if outer else f"RELEASE {savepoint}")

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, tuple(params))
        except sqlite3.DatabaseError as exc:
            if type(exc) is sqlite3.DatabaseError:  # "malformed", not a constraint or lock
                raise CorruptStorageError(f"{self.path} is damaged: {exc}", self.path) from exc
            raise

    # -- key-value ----------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored at ``key``, or ``default``."""
        row = self._execute(SELECT_VALUE, (_check_key(key),)).fetchone()
        return default if row is None else codec.decode(row[0])

    def put(self, key: str | dict[str, Any], value: Any = _MISSING) -> None:
        """Store ``value`` at ``key``, or every item of a dict in one transaction."""
        items = key if isinstance(key, dict) else {key: value}
        if value is _MISSING and not isinstance(key, dict):
            raise TypeError("put(key, value) needs a value, or pass a dict of entries")
        rows = [(_check_key(k), codec.encode(v)) for k, v in items.items()]
        with self.transaction():
            self._conn.executemany(UPSERT_VALUE, rows)

    def delete(self, key: str | list[str]) -> bool | int:
        """Delete ``key`` (True if it existed), or a list of keys (how many existed)."""
        keys = [key] if isinstance(key, str) else list(key)
        with self.transaction():
            deleted = sum(self._execute(DELETE_VALUE, (_check_key(k),)).rowcount for k in keys)
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
            rows = self._execute(SELECT_FROM.format(order=order), (low, count))
        else:
            rows = self._execute(SELECT_RANGE.format(order=order), (low, high, count))
        return {k: codec.decode(v) for k, v in rows.fetchall()}

    # -- the object's own tables ----------------------------------------------------

    @property
    def sql(self) -> sqlite_utils.Database:
        """A ``sqlite_utils.Database`` on this object's file, for its own tables.

        sqlite-utils commits its own writes; inside ``transaction()`` use
        ``storage.sql.execute(...)`` so the writes join the transaction.
        """
        if self._sql is None:
            self._sql = sqlite_utils.Database(self._conn)
        return self._sql
