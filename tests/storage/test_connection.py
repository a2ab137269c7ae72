"""An object's file as a connection (dotdo/storage/connection.py): transactions,
pragmas, the lock of one process, its modes, durability and a disk that is full."""

import contextlib
import os

import pytest

from dotdo.errors import StorageError, StorageFullError
from dotdo.storage import connection
from dotdo.storage.kv import Storage


def test_wal_mode(make_storage):
    s = make_storage()
    assert s.sql.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_transaction_is_atomic(make_storage):
    s = make_storage()
    s.put("balance", 10)
    with pytest.raises(RuntimeError):
        with s.transaction():
            s.put("balance", 0)
            s.put("other", 1)
            raise RuntimeError("boom")
    assert s.get("balance") == 10 and s.get("other") is None


def test_nested_transaction_rolls_back_inner_only(make_storage):
    s = make_storage()
    with s.transaction():
        s.put("outer", 1)
        with pytest.raises(KeyError):
            with s.transaction():
                s.put("inner", 1)
                raise KeyError("x")
    assert s.get("outer") == 1 and s.get("inner") is None


def test_compact_files_get_small_pages_and_keep_them(make_storage):
    small, big = make_storage("small", compact=True), make_storage("big")
    page = lambda s: s.sql.execute("PRAGMA page_size").fetchone()[0]  # noqa: E731
    assert (page(small), page(big)) == (1024, 4096)
    small.put("k", "v")
    small.close()
    # Reopened without the flag, a file keeps the page size it was made with
    again = make_storage("small")
    assert page(again) == 1024 and again.get("k") == "v"


def test_an_object_file_is_held_by_one_storage_at_a_time(make_storage, monkeypatch):
    monkeypatch.setattr("dotdo.storage.connection.HOLD_WAIT", 0.2)
    # Given a live object's storage
    first = make_storage("one")
    first.put("k", 1)
    # When a second actor (here: a second Storage) tries to open the same object
    with pytest.raises(StorageError, match="Thing/one is live in another actor.*same hosting"):
        make_storage("one")
    # Then nothing changed, and once the first lets go the object opens again
    assert first.get("k") == 1
    first.close()
    assert make_storage("one").get("k") == 1


def test_files_and_folders_are_private_to_their_owner(make_storage, tmp_path):
    s = make_storage()
    assert os.stat(s.path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(s.path)).st_mode & 0o777 == 0o700
    # A file an older dotdo left readable by all is made private when it is opened
    s.close()
    os.chmod(s.path, 0o644)
    again = make_storage()
    assert os.stat(again.path).st_mode & 0o777 == 0o600

def test_commits_are_on_disk_when_acknowledged_unless_asked_otherwise(make_storage, tmp_path):
    full = make_storage()
    assert full.sql.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert full.sql.execute("PRAGMA journal_size_limit").fetchone()[0] == connection.WAL_LIMIT
    normal = Storage(str(tmp_path / "Thing" / "n.sqlite3"), "Thing", "n", durability="normal")
    try:
        assert normal.sql.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        normal.close()


def fill_disk(storage) -> None:
    """Make the file's disk full, as far as SQLite can tell: no page more may be
    added (``max_page_count``), and the free ones are used up."""
    storage.sql.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
    pages = storage.sql.execute("PRAGMA page_count").fetchone()[0]
    storage.sql.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageFullError):
        for _ in range(10_000):
            storage.sql.execute("INSERT INTO filler VALUES (zeroblob(1024))")


def test_a_full_disk_is_a_storage_full_error_that_writes_nothing(make_storage):
    s = make_storage()
    s.put("kept", 1)
    fill_disk(s)
    with pytest.raises(StorageFullError, match="disk holding .* is full: nothing was written"):
        s.put("big", "x" * 100_000)
    with pytest.raises(StorageFullError):
        with s.transaction():
            s.put("kept", 2)
            s.put("big", "x" * 100_000)
    assert (s.get("kept"), s.get("big")) == (1, None)  # all of it, or none of it
    # SQLite rolls the whole transaction back on a full disk: a block that catches the
    # error of an inner one cannot go on writing as if outside it
    with pytest.raises(StorageError, match="rolled the transaction back"):
        with s.transaction():
            s.put("kept", 3)
            with contextlib.suppress(StorageFullError):
                with s.transaction():
                    s.put("big", "x" * 100_000)
            s.put("after", 1)
    assert (s.get("kept"), s.get("after")) == (1, None)
    # Once there is space, writes work again at once
    s.sql.execute("PRAGMA max_page_count = 1073741823")
    s.put("big", "x" * 100_000)
    assert len(s.get("big")) == 100_000


def test_a_transaction_the_full_disk_rolled_back_raises_storage_full(make_storage):
    # Given a file that may not grow (SQLite answers as for a full disk: SQLITE_FULL,
    # and it rolls the whole transaction back itself)
    s = make_storage()
    s.put("kept", 1)
    s.sql.execute("PRAGMA max_page_count=" + str(s.sql.execute("PRAGMA page_count").fetchone()[0]))
    # When a transaction, or a savepoint inside one, writes more than fits
    for nested in (False, True):
        with pytest.raises(StorageFullError, match="is full: nothing was written") as info:
            with s.transaction():
                s.put("a", 0)
                if nested:
                    with s.transaction():
                        s.put({f"k{i}": "x" * 3000 for i in range(50)})
                else:
                    s.put({f"k{i}": "x" * 3000 for i in range(50)})
        # Then the error is the full disk (not the failed rollback after it), and
        # nothing of it was written
        assert info.value.path == s.path
        assert s.get("a") is None and s.get("k0") is None and s.get("kept") == 1
    # and once there is room, writes work again
    s.sql.execute("PRAGMA max_page_count=1000000")
    with s.transaction():
        s.put("a", 2)
    assert s.get("a") == 2
