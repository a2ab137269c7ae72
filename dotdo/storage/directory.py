"""A pooled host's own file (:class:`Directory`): which objects it must wake by
itself, after a restart or at their alarm or next schedule tick."""

from __future__ import annotations

import os
import sqlite3

from dotdo.errors import CorruptStorageError
from dotdo.storage.connection import DIR_MODE, FILE_MODE, PRAGMAS, durability_pragma

__all__ = ["Directory"]

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
