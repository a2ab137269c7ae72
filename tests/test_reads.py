"""Reads of objects' files for operators go to the host of a live object, which reads
the file on its own node (SQLite's WAL is unsafe for readers on other machines); only
files no host holds are opened by the reader itself. Real Ray, real files: a spy on
this process's own file reads shows which process read."""

import asyncio
import os
import signal

import pytest
import ray

from dotdo import client, reads
from dotdo.hosting import host_name
from dotdo.ids import storage_path
from dotdo.ops.service import Service
from dotdo.storage import reader
from dotdo.storage.kv import Storage
from tests.conftest import host_pid
from tests.objects import Held, PoolHeld

pytestmark = pytest.mark.dedicated_pass("the classes choose their own hosting")


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def local_reads(monkeypatch):
    """The files this process opened for reads (the requests' paths)."""
    opened: list[str] = []
    answer = reader.answer

    def spy(root, requests):
        opened.extend(rel for rel, _, _ in requests)
        return answer(root, requests)

    monkeypatch.setattr(reader, "answer", spy)
    return opened


@pytest.mark.parametrize("cls", [Held, PoolHeld], ids=["dedicated", "pooled"])
def test_a_live_objects_file_is_read_by_its_host(ray_session, make_object, unique,
                                                       local_reads, cls):
    # Given a live object, dedicated or on a pool
    stub = make_object(cls.__name__, unique)
    stub.put("greeting", "hello").result()
    root = ray_session.root
    rel = reader.object_file(root, cls.__name__, unique)
    # When an operator reads its file
    where, silent = run(reads.hosts_of(root, ray_session.namespace))
    service = Service(storage=root)
    shown = run(service.object(cls.__name__, unique))
    rows = run(service.sql(cls.__name__, unique, "select count(*) from _dotdo_kv"))
    steps = run(service.steps(cls.__name__, unique))
    # Then its host answered, from its node, and this process opened nothing
    assert where[rel] == host_name(cls.__name__, unique, client.hosting_of(cls))
    assert silent == []
    assert shown["kv"] == {"greeting": "hello"} and shown["path"] == rel
    assert rows["rows"] == [[1]] and steps == []
    assert local_reads == []


def test_a_file_no_host_holds_is_read_here(ray_session, local_reads, tmp_path):
    # Given an object's file that no host holds (written, then closed)
    root = str(tmp_path)
    Storage(storage_path(root, "Shelved", "s1"), "Shelved", "s1").close()
    rel = reader.object_file(root, "Shelved", "s1")
    # When it is read, it is read here
    [(ok, value)] = run(reads.read(root, [[rel, "id", []]]))
    assert (ok, value) == (True, "s1")
    assert local_reads == [rel]


def test_a_frozen_host_fails_the_read_and_its_file_is_not_opened_here(
        ray_session, make_object, unique, local_reads, monkeypatch):
    # Given a live object whose host is frozen (SIGSTOP)
    monkeypatch.setattr(reads, "ANSWER_TIMEOUT", 1.0)
    stub = make_object("Held", unique)
    stub.put("k", 1).result()
    rel = reader.object_file(ray_session.root, "Held", unique)
    pid = host_pid(stub)
    os.kill(pid, signal.SIGSTOP)
    try:
        # When it is read, the read fails with a timeout naming the host
        [(ok, error)] = run(reads.read(ray_session.root, [[rel, "object", []]]))
        assert not ok and isinstance(error, TimeoutError)
        assert "did not answer a read" in str(error)
        # and the file was not opened from here while its writer may be writing
        assert local_reads == []
    finally:
        os.kill(pid, signal.SIGCONT)
    # Once it runs again, the read goes through it
    [(ok, value)] = run(reads.read(ray_session.root, [[rel, "object", []]]))
    assert ok and value["kv"] == {"k": 1}


def test_a_host_refuses_reads_of_another_root(ray_session, make_object, unique, tmp_path):
    stub = make_object("Held", unique)
    stub.put("k", 1).result()
    handle = client.actor_handle(stub)
    assert ray.get(handle.held.remote(str(tmp_path))) is None
    assert ray.get(handle.read.remote(str(tmp_path), [["Held/aa/x.sqlite3", "id", []]])) is None
    files = ray.get(handle.held.remote(ray_session.root))
    assert files == [reader.object_file(ray_session.root, "Held", unique)]
