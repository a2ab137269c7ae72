"""Opening a file at the current schema version, and the versions of an object's own
tables (dotdo/storage/schema.py)."""

import os
import sqlite3

import pytest

from dotdo import codec
from dotdo.errors import CorruptStorageError, StorageError
from dotdo.storage import schema
from dotdo.storage.kv import Storage


def test_corrupt_file_is_named_and_left_alone(tmp_path):
    path = tmp_path / "Thing" / "bad.sqlite3"
    path.parent.mkdir()
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(CorruptStorageError) as info:
        Storage(str(path), "Thing", "bad")
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert path.read_bytes() == before
    assert not os.path.exists(str(path) + "-wal")


def test_file_of_another_object_is_refused(make_storage, tmp_path):
    a = make_storage("a")
    a.put("k", 1)
    a.close()  # as a file copied or renamed would be: nobody has it open
    with pytest.raises(StorageError, match="belongs to Thing/a"):
        Storage(str(tmp_path / "Thing" / "a.sqlite3"), "Thing", "b")


def test_damaged_page_is_reported(tmp_path):
    path = tmp_path / "Thing" / "d.sqlite3"
    s = Storage(str(path), "Thing", "d")
    s.put({f"k{i}": "x" * 500 for i in range(200)})
    s.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 6] = b"\xff" * (4096 * 3)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStorageError, match=str(path)):
        Storage(str(path), "Thing", "d")

# -- schema versions: files written by other dotdo versions ----------------------------

# The tables of schema version 1 as the first durable steps wrote them (commit
# ecfaaa4): ``_dotdo_steps`` had no ``started`` yet. Copied here, not imported, so that
# the test keeps the old file's shape whatever the module's constants become.
V1_TABLES = (
    """CREATE TABLE _dotdo_meta (
        key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE _dotdo_kv (
        key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE _dotdo_steps (
        step_id TEXT PRIMARY KEY, result BLOB NOT NULL, attempts INTEGER NOT NULL,
        finished REAL NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE _dotdo_attempts (
        step_id TEXT NOT NULL, attempt INTEGER NOT NULL, started REAL NOT NULL,
        finished REAL NOT NULL, error TEXT, PRIMARY KEY (step_id, attempt)) WITHOUT ROWID""",
    """CREATE TABLE _dotdo_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
        data BLOB NOT NULL, created REAL NOT NULL, handled REAL)""",
    "CREATE INDEX _dotdo_events_pending ON _dotdo_events (seq) WHERE handled IS NULL",
    """CREATE TABLE _dotdo_schedules (
        name TEXT PRIMARY KEY, spec TEXT NOT NULL, next_fire REAL NOT NULL, last_fire REAL,
        ticks INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID""",
    """CREATE TABLE _dotdo_alarm (
        one INTEGER PRIMARY KEY CHECK (one = 1), fire_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0)""",
)
V1_ROWS = (
    ("INSERT INTO _dotdo_meta VALUES (?, ?)", ("class", "Thing")),
    ("INSERT INTO _dotdo_meta VALUES (?, ?)", ("id", "old")),
    ("INSERT INTO _dotdo_meta VALUES (?, ?)", ("schema", "1")),
    ("INSERT INTO _dotdo_kv VALUES (?, ?)", ("balance", codec.encode(10))),
    ("INSERT INTO _dotdo_kv VALUES (?, ?)", ("user:1", codec.encode({"name": "ada"}))),
    ("INSERT INTO _dotdo_steps VALUES (?, ?, ?, ?)", ("charge", codec.encode({"ok": 1}), 2, 5.0)),
    ("INSERT INTO _dotdo_attempts VALUES (?, ?, ?, ?, ?)", ("charge", 1, 1.0, 2.0, "ConnectionError: x")),
    ("INSERT INTO _dotdo_events (id, type, data, created) VALUES (?, ?, ?, ?)",
     ("e1", "Order.placed", codec.encode({"n": 1}), 1.0)),
    ("INSERT INTO _dotdo_schedules (name, spec, next_fire) VALUES (?, ?, ?)",
     ("Thing.tick@every", "every(1).hours", 3600.0)),
    ("INSERT INTO _dotdo_alarm (one, fire_at) VALUES (1, ?)", (99.0,)),
)


def _write_file(path, tables, rows, journal_mode="wal"):
    """A file as another dotdo version would have left it, written with plain sqlite3."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    with conn:
        for ddl in tables:
            conn.execute(ddl)
        for sql, params in rows:
            conn.execute(sql, params)
    conn.close()


def _schema_of(s):
    return s.sql.execute("SELECT value FROM _dotdo_meta WHERE key = ?", ["schema"]).fetchone()[0]


def test_a_file_of_the_previous_schema_opens_and_is_migrated(make_storage, tmp_path):
    # Given a version 1 file with a step journaled before steps recorded their start
    _write_file(tmp_path / "Thing" / "old.sqlite3", V1_TABLES, V1_ROWS)
    # When this dotdo opens it
    s = make_storage("old")
    # Then everything in it reads as before, and the file is at the current version
    assert s.get("balance") == 10 and s.list("user:") == {"user:1": {"name": "ada"}}
    assert s.journal.step("charge") == (True, {"ok": 1})
    assert s.journal.attempts("charge") == [
        {"attempt": 1, "started": 1.0, "finished": 2.0, "error": "ConnectionError: x"},
        {"attempt": 2, "started": 5.0, "finished": 5.0, "error": None},  # start unknown
    ]
    assert s.journal.pending_events() == [("e1", "Order.placed", {"n": 1}, 1.0)]
    assert s.journal.schedule("Thing.tick@every") == ("every(1).hours", 3600.0, 0)
    assert s.journal.alarm() == (99.0, 0) and s.get_alarm() == 99.0
    assert _schema_of(s) == str(schema.SCHEMA_VERSION) != "1"
    # and the journal writes what this version writes
    s.journal.finish_step("refund", codec.encode("r"), 1, 6.0, 7.0)
    assert s.journal.attempts("refund") == [
        {"attempt": 1, "started": 6.0, "finished": 7.0, "error": None}]
    s.close()
    again = make_storage("old")
    assert again.journal.step("refund") == (True, "r") and again.get("balance") == 10


def test_a_version_2_file_gets_the_schedules_last_error(make_storage, tmp_path):
    # Given a version 2 file whose schedules table predates last_error
    rows = [r if r[1] != ("schema", "1") else (r[0], ("schema", "2")) for r in V1_ROWS]
    _write_file(tmp_path / "Thing" / "old.sqlite3", V1_TABLES, rows)
    # When it opens, a tick can record how it ended, and the schedule reads as before
    s = make_storage("old")
    s.journal.record_tick("Thing.tick@every", 4.0, 7200.0, "ValueError: x")
    assert s.journal.schedule("Thing.tick@every") == ("every(1).hours", 7200.0, 1)
    error = s.sql.execute("SELECT last_error FROM _dotdo_schedules").fetchone()[0]
    assert error == "ValueError: x" and _schema_of(s) == str(schema.SCHEMA_VERSION)


def test_a_file_without_a_version_counts_as_the_oldest(make_storage, tmp_path):
    # Given a file with no version row and only the key-value tables
    _write_file(tmp_path / "Thing" / "first.sqlite3", V1_TABLES[:2],
                [("INSERT INTO _dotdo_meta VALUES (?, ?)", ("class", "Thing")),
                 ("INSERT INTO _dotdo_meta VALUES (?, ?)", ("id", "first")),
                 ("INSERT INTO _dotdo_kv VALUES (?, ?)", ("k", codec.encode([1, 2])))])
    # When it is opened, it is migrated from version 1 and gets the journal's tables
    s = make_storage("first")
    assert s.get("k") == [1, 2] and _schema_of(s) == str(schema.SCHEMA_VERSION)
    assert s.journal.append_event("e1", "Job.done", b"\xc0", 1.0) is True
    s.journal.finish_step("s", b"\xc0", 1, 1.0, 2.0)
    assert s.journal.attempts("s")[0]["started"] == 1.0


def test_a_file_of_a_newer_schema_is_refused_and_left_as_it_was(make_storage, tmp_path):
    # Given a file a newer dotdo wrote (in rollback-journal mode, so that even a
    # journal_mode pragma would change its bytes)
    path = tmp_path / "Thing" / "new.sqlite3"
    newer = str(schema.SCHEMA_VERSION + 1)
    _write_file(path, V1_TABLES[:2],
                [("INSERT INTO _dotdo_meta VALUES (?, ?)", ("class", "Thing")),
                 ("INSERT INTO _dotdo_meta VALUES (?, ?)", ("id", "new")),
                 ("INSERT INTO _dotdo_meta VALUES (?, ?)", ("schema", newer)),
                 ("INSERT INTO _dotdo_kv VALUES (?, ?)", ("k", codec.encode(1)))],
                journal_mode="delete")
    before = path.read_bytes()
    # When this dotdo opens it, it refuses, naming the file and the fix
    with pytest.raises(StorageError, match=f"schema version {newer}.*Upgrade dotdo") as info:
        make_storage("new")
    assert not isinstance(info.value, CorruptStorageError)
    assert str(path) in str(info.value) and info.value.path == str(path)
    # Then nothing was written, and it refuses again the same way (the file was let go)
    assert path.read_bytes() == before and os.listdir(path.parent) == ["new.sqlite3"]
    with pytest.raises(StorageError, match="Upgrade dotdo"):
        make_storage("new")


def test_a_failing_migration_leaves_the_file_as_it_was(make_storage, tmp_path, monkeypatch):
    _write_file(tmp_path / "Thing" / "old.sqlite3", V1_TABLES, V1_ROWS)
    migrate = schema.MIGRATIONS[1]

    def half_then_fail(db):
        migrate(db)
        raise RuntimeError("migration broke")

    monkeypatch.setitem(schema.MIGRATIONS, 1, half_then_fail)
    with pytest.raises(RuntimeError, match="migration broke"):
        make_storage("old")
    conn = sqlite3.connect(tmp_path / "Thing" / "old.sqlite3")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(_dotdo_steps)")]
    version = conn.execute("SELECT value FROM _dotdo_meta WHERE key = 'schema'").fetchone()[0]
    conn.close()
    assert "started" not in columns and version == "1"
    monkeypatch.setitem(schema.MIGRATIONS, 1, migrate)
    assert make_storage("old").journal.step("charge") == (True, {"ok": 1})


def test_every_version_has_a_migration_to_the_next():
    assert sorted(schema.MIGRATIONS) == list(range(1, schema.SCHEMA_VERSION))


# An object's own tables, versioned by the same mechanism (Storage.migrate): the
# steps of a made-up "notes" table, version 1 then 2.
NOTES = {
    0: lambda db: db.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, text TEXT NOT NULL)"),
    1: lambda db: db.execute("ALTER TABLE notes ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0"),
}


def _notes_version(s):
    row = s.sql.execute("SELECT value FROM _dotdo_meta WHERE key = 'schema.notes'").fetchone()
    return row and row[0]


def test_an_objects_tables_are_upgraded_from_the_version_the_file_records(make_storage):
    # Given a file whose notes are at version 1, with a row in them
    s = make_storage("n")
    assert s.migrate("notes", {0: NOTES[0]}) == 0 and _notes_version(s) == "1"
    s.sql.execute("INSERT INTO notes (id, text) VALUES ('a', 'x')")
    s.close()
    # When a program with one more step opens it, only that step runs
    s = make_storage("n")
    assert s.migrate("notes", NOTES) == 1 and _notes_version(s) == "2"
    assert s.sql.execute("SELECT id, text, pinned FROM notes").fetchall() == [("a", "x", 0)]
    # and once at the last version, nothing runs (the CREATE TABLE would fail if it did)
    assert s.migrate("notes", NOTES) == 2
    # The journal's own version is apart from it
    assert _schema_of(s) == str(schema.SCHEMA_VERSION)


def test_an_objects_tables_from_a_newer_program_are_refused_unchanged(make_storage):
    s = make_storage("n")
    s.migrate("notes", NOTES)
    s.close()
    s = make_storage("n")
    with pytest.raises(StorageError, match=r"Thing/n in notes schema version 2, written by a "
                       r"newer dotdo; this dotdo reads versions up to 1\. Upgrade dotdo") as info:
        s.migrate("notes", {0: NOTES[0]})
    assert info.value.path == s.path and "left as they are" in str(info.value)
    assert _notes_version(s) == "2" and s.sql.execute("SELECT pinned FROM notes").fetchall() == []


def test_a_failing_step_leaves_an_objects_tables_as_they_were(make_storage):
    s = make_storage("n")
    s.migrate("notes", {0: NOTES[0]})

    def add_then_fail(db):
        NOTES[1](db)
        raise RuntimeError("step broke")

    with pytest.raises(RuntimeError, match="step broke"):
        s.migrate("notes", {0: NOTES[0], 1: add_then_fail})
    columns = [r[1] for r in s.sql.execute("PRAGMA table_info(notes)").fetchall()]
    assert columns == ["id", "text"] and _notes_version(s) == "1"
    assert s.migrate("notes", NOTES) == 1 and _notes_version(s) == "2"
