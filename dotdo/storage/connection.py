"""The SQLite connection of one object's file, and how the file is held.

Modelled on huey's ``SqliteStorage``: every write goes through one transaction context
manager (:meth:`Connection.transaction`), and all SQL is parameterised.

One process at a time: a live object holds an ``flock`` on its file (:func:`hold`), so
a second actor that tries to activate the same object (drivers that disagree on its
hosting, a pool resized while the old one still runs) gets a :class:`StorageError`
instead of two live copies. SQLite's own locks are POSIX locks, which ``flock`` does
not touch.

One file per object, in WAL mode. Durability is a setting (:data:`DURABILITY`):
``"full"``, the default, has SQLite fsync the log at every commit
(``synchronous=FULL``), so a write acknowledged is on disk and survives a power cut or
a kernel crash, not only the death of the process; ``"normal"`` (``synchronous=NORMAL``)
survives the death of the process, but a power cut can lose the last commits. The log
is truncated back to :data:`WAL_LIMIT` bytes after a checkpoint, so one big
transaction does not leave a big file behind.

A write the disk refuses (full, an I/O error) or a file found damaged mid-run raises
a :class:`StorageError` that names the file (:class:`StorageFullError`,
:class:`CorruptStorageError`, see :func:`storage_error`); a commit that fails is rolled
back, so nothing half-written stays behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from dotdo.errors import CorruptStorageError, StorageError, StorageFullError

__all__ = ["Connection", "storage_error", "hold", "durability_pragma", "DURABILITY", "WAL_LIMIT",
           "PRAGMAS", "COMPACT_FILE_PRAGMAS", "CACHE_PRAGMAS", "DIR_MODE", "FILE_MODE",
           "HOLD_WAIT"]

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


# Memory per open file, for hosts holding thousands of objects: each connection
# caches at most 128 KB of pages (the OS caches the file as well), and a *compact*
# file (a pooled object's: many, mostly small) gets 1 KB pages. Measured per live
# object: ~290 KB before, ~150 KB with both. 1 KB pages cost a big table (a queue's
# jobs) about a quarter of its write rate, so dedicated objects keep SQLite's 4 KB.
COMPACT_FILE_PRAGMAS = ("PRAGMA page_size=1024",)
CACHE_PRAGMAS = ("PRAGMA cache_size=-128",)

# The storage holds payloads and errors: only its owner may read it.
DIR_MODE, FILE_MODE = 0o700, 0o600


class Connection:
    """The SQLite connection of one object's file, shared by its
    :class:`~dotdo.storage.kv.Storage` and its :class:`~dotdo.storage.journal.Journal`
    (internal: objects use ``Storage``).

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


HOLD_WAIT = 5.0  # seconds: a dying process (Ray shutting down) lets go by then


def hold(path: str, class_name: str, object_id: str) -> int:
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
