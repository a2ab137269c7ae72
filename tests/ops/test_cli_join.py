"""One-off ``dotdo`` commands beside a running ``dotdo serve``: they join the Ray it
started and recorded under the storage root, say so on stderr (and print no warning
of Ray's), and refuse once it stopped and its record went with it. Real processes:
``serve`` on a Ray of its own, each command a program of its own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from dotdo import connect
from tests.conftest import ROOT

RECORD = ".ray-address"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _last_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def env():
    """The environment of a user's shell: no cluster named, objects on Ray."""
    if connect.running_cluster() is not None:
        pytest.skip("a Ray cluster runs on this machine: serve would join it, not start one")
    clean = {k: v for k, v in os.environ.items()
             if k not in ("RAY_ADDRESS", "DOTDO_IN_PROCESS", "DOTDO_STORAGE")}
    return {**clean, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def test_commands_join_the_ray_serve_started_and_refuse_once_it_stopped(tmp_path, env):
    storage = tmp_path / "storage"
    storage.mkdir()
    record = storage / RECORD
    # Given a stale record, of a process that has ended
    record.write_text(json.dumps({"address": "127.0.0.1:9", "pid": _last_pid(),
                                  "host": socket.gethostname(), "program": "old"}))

    def dotdo_command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dotdo.ops.cli", "--storage", str(storage),
                               *args], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=300)

    # When `dotdo serve` runs with that storage (it starts a Ray of its own)
    server = subprocess.Popen(
        [sys.executable, "-m", "dotdo.ops.cli", "--storage", str(storage), "serve", "--port",
         str(_free_port())], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        said = [server.stdout.readline() for _ in range(4)]
        assert said[0].startswith("dotdo API on "), said
        # Then it replaced the stale record with its own Ray's address and its pid
        mine = json.loads(record.read_text())
        assert mine["pid"] == server.pid and mine["address"] != "127.0.0.1:9"
        assert "serve" in mine["program"]
        joined = f"joined Ray {mine['address']} of "

        # and one-off commands join that Ray, say so in one line on stderr, and answer
        enqueued = dotdo_command("jobs", "enqueue", "Q", "cli-echo", "--payload", '{"to": "ada"}',
                                 "--id", "j1", "--create", "--json")
        assert enqueued.returncode == 0, enqueued.stderr
        assert json.loads(enqueued.stdout)["$id"] == "j1"
        listed = dotdo_command("jobs", "ls", "Q")
        assert listed.returncode == 0, listed.stderr
        assert " j1 " in listed.stdout and "cli-echo" in listed.stdout
        status = dotdo_command("status", "--json")
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)  # stdout is the JSON alone
        assert shown["ray"]["address"] == mine["address"]
        assert [q["id"] for q in shown["queues"]] == ["Q"] and shown["storage"] == str(storage)
        for done in (enqueued, listed, status):
            [line] = done.stderr.splitlines()  # that line, and no warning of Ray's
            assert line.startswith(joined) and line.endswith(f"(pid {server.pid})"), line
            assert "Token authentication" not in done.stderr

        # A command with a Ray of its own (--address local) leaves serve's record alone
        alone = dotdo_command("--address", "local", "queues", "--json")
        assert alone.returncode == 0, alone.stderr
        assert "Token authentication" not in alone.stderr
        assert json.loads(record.read_text()) == mine
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()

    # When serve stopped: its record went with it, and a command refuses, naming the fixes
    assert server.returncode == 0 and not record.exists()
    refused = dotdo_command("queues")
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.startswith(f"Error: no Ray runs for the storage {storage}")
    assert "Start `dotdo dashboard` or `dotdo serve` with this storage" in refused.stderr
    assert "ray start --head" in refused.stderr and "--address local" in refused.stderr
