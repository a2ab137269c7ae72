"""The storage an object sees (dotdo/storage/kv.py): entries, and ``sql``."""

import socket

import pytest

from dotdo.errors import EncodeError


def test_put_get_delete(make_storage):
    s = make_storage()
    assert s.get("k") is None and s.get("k", 5) == 5
    s.put("k", {"a": [1, 2]})
    assert s.get("k") == {"a": [1, 2]}
    assert s.delete("k") is True and s.delete("k") is False
    s.put({"a": 1, "b": 2, "c": 3})
    assert s.delete(["a", "b", "zz"]) == 2


def test_values_survive_reopen(make_storage, tmp_path):
    s = make_storage()
    s.put("k", "v")
    s.close()
    assert make_storage().get("k") == "v"


def test_list_prefix_range_limit_reverse(make_storage):
    s = make_storage()
    s.put({"user:1": 1, "user:2": 2, "user:10": 10, "users": 0, "order:1": "o"})
    assert list(s.list("user:")) == ["user:1", "user:10", "user:2"]
    assert list(s.list("user:", limit=2)) == ["user:1", "user:10"]
    assert list(s.list("user:", reverse=True)) == ["user:2", "user:10", "user:1"]
    assert list(s.list(start="order", end="user:10")) == ["order:1", "user:1"]
    assert len(s.list()) == 5


def test_unencodable_put_writes_nothing(make_storage):
    s = make_storage()
    with pytest.raises(EncodeError, match="socket"):
        s.put({"good": 1, "bad": socket.socket()})
    assert s.list() == {}


def test_non_string_key_is_refused(make_storage):
    with pytest.raises(TypeError, match="keys are str"):
        make_storage().put(1, "x")


def test_sql_gives_the_objects_own_tables(make_storage):
    s = make_storage()
    s.sql["orders"].insert({"id": 1, "total": 9.5}, pk="id")
    assert list(s.sql["orders"].rows) == [{"id": 1, "total": 9.5}]
    assert "_dotdo_kv" in s.sql.table_names()
