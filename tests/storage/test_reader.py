"""Read-only views of objects' files: listing by class, one object's keys, tables,
schedules and steps, and SQL that can never write."""

import os

import pytest

from dotdo import codec
from dotdo.errors import CorruptStorageError, InvalidIdError, LimitError, NotFoundError
from dotdo.ids import check_class_name, storage_path
from dotdo.storage import reader
from dotdo.storage.kv import Storage


@pytest.fixture
def root(tmp_path):
    return str(tmp_path)


@pytest.fixture
def live(root):
    """An object's storage, open (live) while the test reads it from outside."""
    opened = []

    def make(class_name="Thing", object_id="t1"):
        s = Storage(storage_path(root, class_name, object_id), class_name, object_id)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def test_files_and_classes_list_objects_but_not_pooled_hosts_directories(root, live):
    live("Thing", "a"), live("Thing", "b"), live("Other", "c")
    os.makedirs(os.path.join(root, "_dotdo_hosts", "x"))
    assert reader.classes(root) == {"Other": 1, "Thing": 2}
    ids = []
    for info in reader.files(root, "Thing"):
        with reader.ObjectFile(info.path) as f:
            ids.append(f.object_id)
    assert sorted(ids) == ["a", "b"]
    assert reader.classes(os.path.join(root, "nowhere")) == {}


def test_an_object_reads_as_its_live_storage_holds_it(root, live):
    # Given a live object with keys, a table, a schedule, an alarm and steps
    s = live()
    s.put({"balance": 10, "user:1": {"name": "ada"}})
    s.sql.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    s.sql.execute("INSERT INTO orders (total) VALUES (1.5), (2.5)")
    s.journal.set_schedule("Thing.tick@every", "every(1).hours", 3600.0)
    s.journal.record_tick("Thing.tick@every", 10.0, 3610.0, "ValueError: x")
    s.set_alarm(99.0)
    s.journal.record_attempt("charge", 1, 1.0, 2.0, "ConnectionError: down")
    s.journal.finish_step("charge", codec.encode({"ok": 1}), 2, 1.0, 3.0)
    s.journal.record_attempt("refund", 1, 4.0, 5.0, "TimeoutError: slow")
    # When an operator opens it from outside
    with reader.open_object(root, "Thing", "t1") as f:
        # Then every part reads back, decoded
        assert f.kv() == {"balance": 10, "user:1": {"name": "ada"}}
        assert f.tables() == [{"name": "orders", "rows": 2}]
        assert f.schedules() == [{"name": "Thing.tick@every", "spec": "every(1).hours",
                                  "nextRun": 3610.0, "lastRun": 10.0, "ticks": 1,
                                  "lastError": "ValueError: x"}]
        assert f.alarm() == 99.0 and f.step_count() == 1
        refund, charge = f.steps()
        assert refund == {"step": "refund", "attempts": 1, "startedAt": 4.0, "finishedAt": None,
                          "result": None, "errors": [{"attempt": 1, "startedAt": 4.0,
                                                      "finishedAt": 5.0,
                                                      "error": "TimeoutError: slow"}]}
        assert charge["result"] == {"ok": 1} and charge["finishedAt"] == 3.0
        assert [e["error"] for e in charge["errors"]] == ["ConnectionError: down"]
        assert f.query("select total from orders order by id") == {
            "columns": ["total"], "rows": [[1.5], [2.5]], "truncated": False}
        assert f.query("select * from orders", limit=1)["truncated"] is True
        assert f.query("select value from json_each('[1,2]')")["rows"] == [[1], [2]]
        assert f.query("pragma table_info(orders)")["rows"][0][1] == "id"


@pytest.mark.parametrize("statement", [
    "delete from orders", "insert into orders (total) values (9)", "update orders set total = 0",
    "drop table orders", "create table x (a)", "pragma query_only = 0",
    "pragma journal_mode = delete", "attach database ':memory:' as other", "vacuum",
    "select 1; delete from orders",
])
def test_sql_that_would_write_is_refused_and_changes_nothing(root, live, statement):
    s = live()
    s.sql.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    s.sql.execute("INSERT INTO orders (total) VALUES (1.5)")
    with reader.open_object(root, "Thing", "t1") as f:
        with pytest.raises(ValueError):
            f.query(statement)
        assert f.query("select count(*) from orders")["rows"] == [[1]]
    assert s.sql.execute("SELECT count(*) FROM orders").fetchone()[0] == 1


def test_unknown_objects_bad_ids_and_corrupt_files_say_so(root, live):
    with pytest.raises(NotFoundError, match="never used"):
        reader.open_object(root, "Thing", "ghost")
    with pytest.raises(InvalidIdError):
        reader.open_object(root, "Thing", "")
    path = storage_path(root, "Thing", "bad")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(b"this is not sqlite" * 100)
    with pytest.raises(CorruptStorageError, match="not a readable"):
        reader.open_object(root, "Thing", "bad")
    with open(path, "rb") as back:
        assert back.read() == b"this is not sqlite" * 100


@pytest.mark.parametrize("name", ["..", ".", "../Thing", "Thing/..", "a/b", "", "Thing ", "1st",
                                  "x" * 201])
def test_a_class_name_that_is_not_an_identifier_is_refused_and_never_a_path(tmp_path, name):
    # Given an object, and a file that is not an object's beside the storage root
    root = str(tmp_path / "root")
    Storage(storage_path(root, "Thing", "t1"), "Thing", "t1").close()
    os.makedirs(tmp_path / "beside")
    (tmp_path / "beside" / "secret.sqlite3").write_bytes(b"x")
    # When a class name names a folder outside (or no class at all), then it is refused
    with pytest.raises(InvalidIdError, match="a class name is a Python identifier"):
        list(reader.files(root, name))
    with pytest.raises(InvalidIdError, match="a class name is a Python identifier"):
        reader.open_object(root, name, "t1")
    with pytest.raises(InvalidIdError):
        check_class_name(name)
    with pytest.raises(InvalidIdError):
        check_class_name(None)
    assert reader.classes(root) == {"Thing": 1}


def test_symbolic_links_leading_out_of_the_root_are_neither_listed_nor_opened(root, live,
                                                                             tmp_path_factory):
    # Given objects outside the root, and links to them from inside: a class folder, a
    # shard folder and an object's file
    outside = str(tmp_path_factory.mktemp("outside"))
    for class_name, object_id in (("Thing", "far"), ("Other", "o1"), ("Thing", "f2")):
        Storage(storage_path(outside, class_name, object_id), class_name, object_id).close()
    live("Thing", "near")
    os.symlink(os.path.join(outside, "Other"), os.path.join(root, "Other"))
    far = storage_path(outside, "Thing", "far")
    os.symlink(os.path.dirname(far),
               os.path.dirname(storage_path(root, "Thing", "far")))
    linked = storage_path(root, "Thing", "f2")
    os.makedirs(os.path.dirname(linked), exist_ok=True)
    os.symlink(storage_path(outside, "Thing", "f2"), linked)
    # and a link that stays inside the root
    os.symlink(os.path.join(root, "Thing"), os.path.join(root, "Alias"))
    # Then only what lies under the root is listed, and the links out are not opened
    assert reader.classes(root) == {"Alias": 1, "Thing": 1}
    with pytest.raises(NotFoundError, match="outside the storage root"):
        reader.open_object(root, "Thing", "f2")
    with pytest.raises(NotFoundError, match="outside the storage root"):
        reader.open_object(root, "Other", "o1")
    with reader.open_object(root, "Thing", "near") as f:
        assert f.object_id == "near"


def test_errors_name_a_file_relative_to_the_root(root):
    path = storage_path(root, "Thing", "bad")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as out:
        out.write(b"this is not sqlite" * 100)
    with pytest.raises(CorruptStorageError) as failed:
        reader.open_object(root, "Thing", "bad")
    assert root not in str(failed.value)
    assert str(failed.value).startswith(os.path.relpath(path, root))
    assert failed.value.path == path


FOREVER = ("with recursive r(n) as (select 1 union all select n + 1 from r) "
           "select count(*) from r")


def test_a_query_that_would_run_for_ever_is_stopped_at_its_deadline(root, live):
    live()
    with reader.open_object(root, "Thing", "t1") as f:
        # at the default deadline, and at a shorter one asked for
        with pytest.raises(LimitError, match=f"deadline of {reader.QUERY_DEADLINE:g} s"):
            f.query(FOREVER)
        with pytest.raises(LimitError, match="deadline of 0.2 s"):
            f.query(FOREVER, deadline=0.2)
        # the file is still open for the next query, which has its own deadline
        assert f.query("select 1")["rows"] == [[1]]
        assert f.kv() == {}
        for bad in (0, -1, float("nan"), reader.MAX_QUERY_DEADLINE + 1):
            with pytest.raises(ValueError, match="deadline is seconds"):
                f.query("select 1", deadline=bad)


def test_a_query_making_too_big_a_value_or_answer_is_refused(root, live):
    s = live()
    s.put("big", "x" * 1000)
    with reader.open_object(root, "Thing", "t1") as f:
        with pytest.raises(LimitError, match="a value over 16,777,216 bytes"):
            f.query("select zeroblob(1000000000000)")
        with pytest.raises(LimitError, match="the answer passed 16,777,216 bytes"):
            f.query("select randomblob(4000000) from (select 1 union all select 2 union all "
                    "select 3 union all select 4 union all select 5)")
        assert f.kv() == {"big": "x" * 1000}  # limits hold for queries only


def test_answered_reads_name_only_the_roots_object_files(root, live, tmp_path_factory):
    # Given one object's file and a file beside the root
    live("Thing", "t1")
    rel = reader.object_file(root, "Thing", "t1")
    # When reads arrive (from another process: nothing in them is trusted)
    bad = ["../x.sqlite3", "Thing/../../etc/passwd", "/etc/passwd", "Thing/aa/x.txt",
           "_dotdo_hosts/aa/x.sqlite3", 7]
    answers = reader.answer(root, [[rel, "id", []], [rel, "drop", []],
                                   *([b, "id", []] for b in bad)])
    # Then the object's file is read, and every other read fails alone with its reason
    assert answers[0] == [True, "t1"]
    assert not answers[1][0] and "no read 'drop'" in str(answers[1][1])
    for (ok, error), b in zip(answers[2:], bad):
        assert not ok and isinstance(error, ValueError), b
    with pytest.raises(NotFoundError):
        reader.object_file(root, "Thing", "ghost")
