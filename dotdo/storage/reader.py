"""Read-only views of objects' files, for operators: which objects exist (by class),
and one object's keys, tables, schedules, alarm and step journal, and read-only SQL on
its file. Nothing here writes, activates an object or takes its lock, so it works
while the object is live elsewhere, and when nothing runs at all.

Files are opened with SQLite's ``mode=ro`` and ``PRAGMA query_only``, and an
authorizer refuses any statement but reads: a view can never change an object. A
query is also bounded: it is stopped at a deadline (a recursive CTE can run for
ever), no value it makes may pass ``MAX_RESULT_BYTES``, nor may its whole answer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from dotdo import codec
from dotdo.checks import is_finite
from dotdo.errors import CorruptStorageError, DecodeError, LimitError, NotFoundError
from dotdo.ids import check_class_name, check_id, storage_path

__all__ = ["FileInfo", "ObjectFile", "classes", "files", "open_object", "relative", "answer",
           "object_file", "Request", "OPS", "MAX_ROWS", "MAX_RESULT_BYTES", "QUERY_DEADLINE",
           "MAX_QUERY_DEADLINE"]

MAX_ROWS = 10_000  # rows one read-only query returns at most
MAX_RESULT_BYTES = 16 << 20  # bytes of values one query returns at most (and any one value)
QUERY_DEADLINE = 5.0  # seconds a read-only query may run, by default
MAX_QUERY_DEADLINE = 300.0  # ... and at most, when asked for longer
_PROGRESS_EVERY = 1_000  # SQLite VM instructions between looks at the deadline
_SUFFIX = ".sqlite3"
_RESERVED = "_dotdo_"  # folders under the root that are not classes (pooled hosts' files)

SELECT_META = "SELECT key, value FROM _dotdo_meta"
SELECT_KV = "SELECT key, value FROM _dotdo_kv ORDER BY key LIMIT ?"
SELECT_USER_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_dotdo\\_%' ESCAPE '\\' "
    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
)
SELECT_SCHEDULES = "SELECT * FROM _dotdo_schedules ORDER BY name"
SELECT_ALARM = "SELECT fire_at FROM _dotdo_alarm WHERE one = 1"
COUNT_STEPS = "SELECT count(*) FROM _dotdo_steps"
# Steps newest first, with steps that have only failed attempts so far.
SELECT_STEPS = """
SELECT step_id, attempts, started, finished, result FROM _dotdo_steps
UNION ALL
SELECT step_id, max(attempt), min(started), NULL, NULL FROM _dotdo_attempts
 WHERE step_id NOT IN (SELECT step_id FROM _dotdo_steps) GROUP BY step_id
ORDER BY 3 DESC LIMIT ?"""
SELECT_FAILED_ATTEMPTS = (
    "SELECT step_id, attempt, started, finished, error FROM _dotdo_attempts "
    "WHERE step_id IN (SELECT value FROM json_each(?)) ORDER BY step_id, attempt"
)

# What a read-only query may do: read tables and call functions.
_READS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
          getattr(sqlite3, "SQLITE_RECURSIVE", 33)}


# Pragmas that take an argument only to say what to describe.
_LOOKUPS = {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
            "foreign_key_list", "table_list"}


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """One object's file under the storage root."""

    class_name: str
    path: str
    size: int
    modified: float


def classes(root: str) -> dict[str, int]:
    """Class name -> how many object files it has under ``root``."""
    out: dict[str, int] = {}
    for info in files(root):
        out[info.class_name] = out.get(info.class_name, 0) + 1
    return dict(sorted(out.items()))


def files(root: str, class_name: str | None = None) -> Iterator[FileInfo]:
    """The object files under ``root`` (of ``class_name`` only, if given), in a stable
    order: class, then shard, then file name. Only what lies under ``root`` is listed:
    a symbolic link that leads out of it is left out, and folders whose names are not
    class names (identifiers) are not classes."""
    if class_name is not None:
        check_class_name(class_name)
    if not os.path.isdir(root):
        return
    real_root = os.path.realpath(root)
    names = [class_name] if class_name is not None else sorted(os.listdir(root))
    for name in names:
        folder = os.path.join(root, name)
        if name.startswith(_RESERVED) or not name.isidentifier() \
                or not _stays_in(real_root, folder) or not os.path.isdir(folder):
            continue
        for shard in sorted(os.listdir(folder)):
            shard_dir = os.path.join(folder, shard)
            if not _stays_in(real_root, shard_dir) or not os.path.isdir(shard_dir):
                continue
            for file_name in sorted(os.listdir(shard_dir)):
                path = os.path.join(shard_dir, file_name)
                if file_name.endswith(_SUFFIX) and _stays_in(real_root, path):
                    try:
                        st = os.stat(path)
                    except FileNotFoundError:  # deleted since the listing
                        continue
                    yield FileInfo(name, path, st.st_size, st.st_mtime)


def _stays_in(real_root: str, path: str) -> bool:
    """Whether ``path`` is under ``real_root`` (a resolved path) once symbolic links
    are followed. Only links need resolving: a plain name joined to a folder under the
    root is under it (names come from listings and checked ids, never ``..``)."""
    if not os.path.islink(path):
        return True
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def relative(root: str, path: str) -> str:
    """``path`` as answers show it: relative to the storage root."""
    return os.path.relpath(path, root)


def object_file(root: str, class_name: str, object_id: str) -> str:
    """The path of the object's file relative to ``root``, which must exist (else
    NotFoundError): what a :data:`Request` names."""
    path = storage_path(root, check_class_name(class_name), check_id(object_id))
    if not os.path.exists(path):
        raise NotFoundError(f"no {class_name} {object_id!r} under {root}: it was never "
                            "used there (check the class name, the id and --storage)")
    return relative(root, path)


def open_object(root: str, class_name: str, object_id: str) -> ObjectFile:
    """The read-only view of one object's file, or NotFoundError if it has none (or
    its file lies outside ``root``, through a symbolic link)."""
    return ObjectFile(_under(root, object_file(root, class_name, object_id)), root)


def _deny_writes(action: int, arg1: Any, arg2: Any, *_: Any) -> int:
    if action in _READS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg2 is None or arg1 in _LOOKUPS):
        return sqlite3.SQLITE_OK  # reading a pragma or describing a table, not setting one
    # SQLite "updates" its schema table when a table-valued function (json_each) first
    # loads; the file is opened read only, so nothing can be written anyway.
    if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _value(raw: Any) -> Any:
    """A stored value as a reader can show it: decoded if it is dotdo's encoding,
    else hex for bytes."""
    if isinstance(raw, bytes):
        try:
            return codec.decode(raw)
        except DecodeError:
            return raw.hex()
    return raw


class ObjectFile:
    """One object's file, opened read only. Use as a context manager. Given the
    storage ``root``, errors name the file relative to it."""

    def __init__(self, path: str, root: str | None = None) -> None:
        self.path = path
        name = path if root is None else relative(root, path)
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            self._conn.execute("PRAGMA query_only = ON")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self.meta = dict(self._conn.execute(SELECT_META).fetchall())
        except sqlite3.DatabaseError as exc:
            raise CorruptStorageError(
                f"{name} is not a readable dotdo object file ({exc}): inspect it with the "
                "sqlite3 shell, or move it away", path) from exc
        self._conn.set_authorizer(_deny_writes)

    def __enter__(self) -> ObjectFile:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    @property
    def class_name(self) -> str:
        return self.meta.get("class", "")

    @property
    def object_id(self) -> str:
        return self.meta.get("id", "")

    def summary(self) -> dict[str, Any]:
        """The object as its file holds it: ``{"class", "id", "size", "modified", "kv"
        (the first 100 keys), "tables", "alarm", "schedules", "steps"}``."""
        st = os.stat(self.path)
        return {"class": self.class_name, "id": self.object_id, "size": st.st_size,
                "modified": st.st_mtime, "kv": self.kv(), "tables": self.tables(),
                "alarm": self.alarm(), "schedules": self.schedules(), "steps": self.step_count()}

    def kv(self, limit: int = 100) -> dict[str, Any]:
        """The first ``limit`` keys of the object's key-value storage, decoded."""
        return {key: _value(raw) for key, raw in self._conn.execute(SELECT_KV, (limit,))}

    def tables(self) -> list[dict[str, Any]]:
        """The object's own SQL tables (not dotdo's) with their row counts."""
        names = [r[0] for r in self._conn.execute(SELECT_USER_TABLES)]
        return [{"name": name, "rows": self._conn.execute(
                    f'SELECT count(*) FROM "{name.replace(chr(34), chr(34) * 2)}"').fetchone()[0]}
                for name in names]

    def schedules(self) -> list[dict[str, Any]]:
        """``{"name", "spec", "nextRun", "lastRun", "ticks", "lastError"}`` per schedule."""
        cursor = self._conn.execute(SELECT_SCHEDULES)
        names = [d[0] for d in cursor.description]
        return [{"name": row["name"], "spec": row["spec"], "nextRun": row["next_fire"],
                 "lastRun": row["last_fire"], "ticks": row["ticks"],
                 "lastError": row.get("last_error")}
                for row in (dict(zip(names, r)) for r in cursor.fetchall())]

    def alarm(self) -> float | None:
        row = self._conn.execute(SELECT_ALARM).fetchone()
        return row[0] if row else None

    def step_count(self) -> int:
        return self._conn.execute(COUNT_STEPS).fetchone()[0]

    def steps(self, limit: int = 100) -> list[dict[str, Any]]:
        """The journal's steps, newest first: ``{"step", "attempts", "startedAt",
        "finishedAt", "result", "errors": [failed attempts]}``; a step still failing
        has ``finishedAt`` and ``result`` None."""
        rows = self._conn.execute(SELECT_STEPS, (limit,)).fetchall()
        steps = [{"step": step, "attempts": attempts, "startedAt": started,
                  "finishedAt": finished, "result": None if result is None else _value(result),
                  "errors": []} for step, attempts, started, finished, result in rows]
        by_id = {s["step"]: s for s in steps}
        for step, attempt, started, finished, error in self._conn.execute(
                SELECT_FAILED_ATTEMPTS, (json.dumps(list(by_id)),)):
            by_id[step]["errors"].append({"attempt": attempt, "startedAt": started,
                                          "finishedAt": finished, "error": error})
        return steps

    def query(self, statement: str, params: tuple = (), limit: int = 1_000,
              deadline: float = QUERY_DEADLINE) -> dict[str, Any]:
        """Run one read-only statement: ``{"columns", "rows", "truncated"}`` with at
        most ``limit`` rows; a write raises ValueError (nothing is written). A query
        still running after ``deadline`` seconds, or whose values pass
        ``MAX_RESULT_BYTES``, is stopped with a LimitError."""
        if not isinstance(statement, str) or not statement.strip():
            raise ValueError("give one SQL statement to run, e.g. \"select * from sqlite_master\"")
        if not is_finite(deadline) or not 0 < deadline <= MAX_QUERY_DEADLINE:
            raise ValueError(f"deadline is seconds over 0 and at most {MAX_QUERY_DEADLINE:g}, "
                             f"not {deadline!r}")
        limit = max(1, min(int(limit), MAX_ROWS))
        ends = time.monotonic() + deadline
        late: list[bool] = []

        def past_deadline() -> int:
            if time.monotonic() < ends:
                return 0
            late.append(True)
            return 1  # nonzero: SQLite stops the statement ("interrupted")

        self._conn.set_progress_handler(past_deadline, _PROGRESS_EVERY)
        # No string or blob the query makes may be larger than the answer may be: a
        # zeroblob(1e12) or a group_concat over a recursive CTE fails at once.
        longest = self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_RESULT_BYTES)
        try:
            return self._run(statement, params, limit)
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if late:
                raise LimitError(f"the query ran past its deadline of {deadline:g} s and was "
                                 "stopped: narrow it (a WHERE, a LIMIT, a recursive CTE that "
                                 "ends), or give a longer deadline (--deadline, at most "
                                 f"{MAX_QUERY_DEADLINE:g} s)") from None
            if "too big" in text:
                raise LimitError(f"the query made a value over {MAX_RESULT_BYTES:,} bytes "
                                 f"({text}): select a part of it, e.g. substr(value, 1, 1000)"
                                 ) from None
            if "not authorized" in text or "readonly" in text or "read-only" in text:
                raise ValueError(f"objects' files are read only here: {statement!r} would "
                                 "write; use a select") from None
            raise ValueError(f"SQL error: {text}") from None
        except sqlite3.Warning as exc:  # more than one statement
            raise ValueError(f"one statement at a time: {exc}") from None
        finally:
            self._conn.set_progress_handler(None, 0)
            self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, longest)

    def _run(self, statement: str, params: tuple, limit: int) -> dict[str, Any]:
        """The rows of ``statement``, ``limit`` at most, counting their bytes as they come."""
        cursor = self._conn.execute(statement, params)
        try:  # closed when done: an unfinished statement would hold its read snapshot
            columns = [d[0] for d in cursor.description or ()]
            rows: list[list[Any]] = []
            size = 0
            for row in cursor:
                if len(rows) == limit:
                    return {"columns": columns, "rows": rows, "truncated": True}
                size += sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row)
                if size > MAX_RESULT_BYTES:
                    raise LimitError(f"the answer passed {MAX_RESULT_BYTES:,} bytes after "
                                     f"{len(rows):,} rows: select fewer columns or rows (a "
                                     "smaller --limit, a WHERE, substr())")
                rows.append([_value(v) for v in row])
            return {"columns": columns, "rows": rows, "truncated": False}
        finally:
            cursor.close()


# A read, as it travels to whichever process answers it (this one, or the host of a
# live object, on the node of its file): [path relative to the root, op, args].
Request = list
OPS = ("id", "object", "steps", "sql", "schedules")


def answer(root: str, requests: list[Request]) -> list[list]:
    """Run each read of ``requests`` on the files under ``root``: ``[True, value]`` or
    ``[False, error]`` per request, in order. Ops: ``id`` (the object's id), ``object``
    (:meth:`ObjectFile.summary`), ``steps`` (limit), ``sql`` (statement, limit,
    deadline), ``schedules``. A path is only ever one of the root's object files."""
    out: list[list] = []
    for rel, op, args in requests:
        try:
            if op not in OPS:
                raise ValueError(f"no read {op!r}: reads are {', '.join(OPS)}")
            path = _under(root, rel)
            with ObjectFile(path, root) as f:
                if op == "id":
                    value: Any = f.object_id
                elif op == "object":
                    value = f.summary()
                elif op == "steps":
                    value = f.steps(*args)
                elif op == "sql":
                    value = f.query(args[0], limit=args[1], deadline=args[2])
                else:
                    value = {"class": f.class_name, "id": f.object_id,
                             "schedules": f.schedules()}
            out.append([True, value])
        except Exception as exc:  # noqa: BLE001 - each read fails alone, with its error
            out.append([False, exc])
    return out


def _under(root: str, rel: object) -> str:
    """The object file ``rel`` names under ``root``: ``<Class>/<shard>/<name>.sqlite3``,
    nothing else (a request may come from another process)."""
    parts = rel.split("/") if isinstance(rel, str) else []
    if len(parts) != 3 or not parts[0].isidentifier() or parts[0].startswith(_RESERVED) \
            or any(p in ("", ".", "..") or os.sep in p for p in parts) \
            or not parts[2].endswith(_SUFFIX):
        raise ValueError(f"{rel!r} is not an object file under the storage root")
    path = os.path.join(root, *parts)
    if not os.path.exists(path):
        raise NotFoundError(f"{rel} is not under {root} (deleted, or another storage root)")
    real_root = os.path.realpath(root)  # any part of the path may be a link
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise NotFoundError(f"the file {rel} leads outside the storage root {root} through a "
                            "symbolic link: only files under the root are read; move the "
                            "file into it")
    return path
