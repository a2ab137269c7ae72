"""The ``dotdo`` command, through click's runner with every object in this process
(``--in-process``) on a fresh storage root per test: real SQLite files, real queues
and workers, no Ray. One test runs the module as a program, to show that commands
which only read files never join Ray."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import get_type_hints

import pytest
from click.testing import CliRunner

import dotdo
from dotdo import connect
from dotdo.ops.cli import main
from dotdo.ops.cli.jobs import jobs_enqueue
from dotdo.ops.cli.output import ago, when
from tests.conftest import ROOT, wait_for
from tests.ops import parked_jobs  # noqa: F401  (ops-approve, ops-nap, ops-parent)

FAILED_WITH = "OSError: disk full writing"


@dotdo.job("cli-disk-full")
def disk_full(payload):
    raise OSError(f"disk full writing {payload['file']}")


@dotdo.job("cli-echo")
async def echo(payload):
    return payload


class CliLedger(dotdo.DurableObject):
    """An object with keys, a table of its own, a schedule and a step journal."""

    def __init__(self) -> None:
        self.storage.sql.execute("CREATE TABLE IF NOT EXISTS entries (amount INTEGER)")

    def add(self, amount: int) -> int:
        self.storage.sql.execute("INSERT INTO entries VALUES (?)", (amount,))
        balance = self.storage.get("balance", 0) + amount
        self.storage.put("balance", balance)
        return balance

    async def settle(self) -> dict:
        def charge() -> dict:
            tries = self.storage.get("tries", 0) + 1
            self.storage.put("tries", tries)
            if tries == 1:
                raise ConnectionError("bank away")
            return {"charged": tries}

        return await dotdo.do(charge, step_id="charge-1", max_retries=2, backoff=0.01)

    @dotdo.every(1).hours
    def nightly(self) -> None:
        self.storage.put("ticked", True)


@pytest.fixture
def root(tmp_path):
    """A fresh storage root with the objects in this process, as the command will
    find them with ``--in-process --storage root``."""
    dotdo.init(in_process=True, storage=str(tmp_path))
    return tmp_path


def run(root, *args: str, input: str | None = None, code: int = 0):
    """``dotdo --in-process --storage root ARGS``; checks the exit code."""
    result = CliRunner().invoke(main, ["--in-process", "--storage", str(root), *args],
                                input=input, env={"COLUMNS": "250"})
    assert result.exit_code == code, (f"exit {result.exit_code}, wanted {code}\n"
                                      f"{result.output}\n{result.exception!r}")
    return result


def as_json(root, *args: str):
    return json.loads(run(root, *args, "--json").stdout)


def run_to_the_end(queue: str, worker: str) -> None:
    """Start a worker on ``queue`` and stop it once every job there has ended."""
    w = dotdo.Worker(worker)
    w.start(queue, concurrency=2, backoff=0.01).result()
    try:
        wait_for(lambda: dotdo.Queue(queue).count(status="pending").result()
                 + dotdo.Queue(queue).count(status="running").result()
                 + dotdo.Queue(queue).count(status="retrying").result() == 0)
    finally:
        w.stop().result()


def test_status_and_queues_show_each_queue_with_its_counts(root):
    mail = dotdo.Queue("mail")
    dotdo.get([mail.enqueue("cli-echo", {"n": n}) for n in range(2)])
    mail.enqueue("cli-echo", {"n": 3}, delay=3600).result()

    out = run(root, "status").stdout
    assert "in process (no Ray)" in out and "mail" in out and "Queue" in out
    [summary] = as_json(root, "queues")
    assert summary["id"] == "mail" and summary["paused"] is False
    assert (summary["counts"]["pending"], summary["counts"]["delayed"]) == (2, 1)
    # --json before the command means the same
    status = json.loads(run(root, "--json", "status").stdout)
    assert [q["id"] for q in status["queues"]] == ["mail"]
    assert status["classes"]["Queue"] == 1 and status["ray"]["nodes"] == []


def test_an_unknown_queue_is_an_error_naming_the_queues_there_without_a_traceback(root):
    dotdo.Queue("mail").enqueue("cli-echo", None).result()
    result = run(root, "queue", "show", "mial", code=1)
    assert result.stderr.startswith("Error: no queue 'mial'") and "mail" in result.stderr
    assert "Traceback" not in result.output


def test_jobs_ls_filters_and_pages(root):
    mail = dotdo.Queue("mail")
    for job_id in ("a", "b", "c"):
        mail.enqueue("cli-echo", None, job_id=job_id).result()
    mail.enqueue("other", None, job_id="d", delay=3600).result()

    first = run(root, "jobs", "ls", "mail", "--limit", "2").stdout
    assert " a " in first and " b " in first and " c " not in first
    cursor = first.split("--cursor ")[1].split()[0]
    page = as_json(root, "jobs", "ls", "mail", "--cursor", cursor)
    assert [j["$id"] for j in page["jobs"]] == ["c", "d"] and page["cursor"] is None
    assert [j["$id"] for j in as_json(root, "jobs", "ls", "mail", "--type", "other")["jobs"]] == ["d"]
    assert [j["$id"] for j in as_json(root, "jobs", "ls", "mail", "--status", "delayed")["jobs"]] == ["d"]
    assert len(as_json(root, "jobs", "ls", "mail", "--since", "1h")["jobs"]) == 4
    tomorrow = (datetime.datetime.now() + datetime.timedelta(days=1)).isoformat(timespec="seconds")
    assert "No jobs match." in run(root, "jobs", "ls", "mail", "--since", tomorrow).stdout
    assert "--since" in run(root, "jobs", "ls", "mail", "--since", "lately", code=2).output


def test_jobs_get_shows_every_attempt_with_its_worker_error_and_traceback(root, unique):
    mail = dotdo.Queue("mail")
    mail.enqueue("cli-disk-full", {"file": "a.txt"}, job_id="bad", max_retries=1).result()
    mail.enqueue("cli-echo", {"to": "ada"}, job_id="good").result()
    run_to_the_end("mail", f"{unique}-w")

    out = run(root, "jobs", "get", "bad").stdout  # its queue found from the id
    assert "failed" in out and f"{unique}-w" in out
    assert out.count(f"{FAILED_WITH} a.txt") >= 3  # the job's error, then each attempt's
    assert "attempt 1" in out and "attempt 2" in out
    assert "Traceback (most recent call last)" in out and "in disk_full" in out
    job = as_json(root, "jobs", "get", "bad", "--queue", "mail")
    assert [a["outcome"] for a in job["attempts"]] == ["failed", "failed"]
    assert all(a["worker"] == f"{unique}-w" and "disk_full" in a["trace"] for a in job["attempts"])
    # Each trace begins at the handler's frame: the worker's, dotdo's and asyncio's
    # frames are folded into one line saying how many
    for attempt in job["attempts"]:
        lines = attempt["trace"].splitlines()
        assert lines[0] == "Traceback (most recent call last):"
        assert re.fullmatch(r"  \[\d+ frames of dotdo and asyncio folded\]", lines[1])
        assert lines[2].startswith(f'  File "{__file__}"') and lines[2].endswith("in disk_full")
        assert lines[-1] == f"{FAILED_WITH} a.txt"
        assert not any("/dotdo/" in line or "/asyncio/" in line or "/actors/" in line
                       for line in lines if line.startswith("  File"))
    good = as_json(root, "jobs", "get", "good")
    assert good["status"] == "completed" and good["result"] == {"to": "ada"}
    assert '"to": "ada"' in run(root, "jobs", "get", "good").stdout  # payload and result
    assert run(root, "jobs", "get", "nothing", code=1).stderr.startswith("Error: no job 'nothing'")


def test_a_job_that_failed_every_attempt_says_no_attempt_count_but_its_own(root, unique):
    # Given a job allowed 3 retries whose handler always fails
    mail = dotdo.Queue("mail")
    mail.enqueue("cli-disk-full", {"file": "b.txt"}, job_id="doomed", max_retries=3).result()
    run_to_the_end("mail", f"{unique}-w")
    # Then it failed after its 4 attempts, and nothing it shows says it gave up after one
    job = as_json(root, "jobs", "get", "doomed")
    assert job["status"] == "failed" and job["attemptCount"] == 4
    assert [a["outcome"] for a in job["attempts"]] == ["failed"] * 4
    assert job["error"] == f"{FAILED_WITH} b.txt"
    shown = run(root, "jobs", "get", "doomed").stdout
    assert "attempt 4" in shown and "gave up after" not in shown
    assert not any("gave up after" in a["trace"] for a in job["attempts"])


def test_parked_jobs_show_in_ls_and_get_and_an_awakeable_is_settled_from_the_command(
        root, unique):
    # Given a sleeping job, a parent waiting for its child, and the child and another
    # job waiting for their awakeables (the worker stops once all of them parked)
    desk = dotdo.Queue("desk")
    desk.enqueue("ops-nap", 3600, job_id="nap").result()
    desk.enqueue("ops-parent", None, job_id="boss").result()
    desk.enqueue("ops-approve", None, job_id="ask").result()
    run_to_the_end("desk", f"{unique}-w")
    assert desk.get("boss.child1").result()["status"] == "waiting"

    # Then ls --status sleeping has the sleeping job, and the table says when it wakes
    [napping] = as_json(root, "jobs", "ls", "desk", "--status", "sleeping")["jobs"]
    assert (napping["$id"], napping["waitingFor"]) == ("nap", "sleep#1")
    out = run(root, "jobs", "ls", "desk", "--status", "sleeping").stdout
    assert re.search(r"sleep#1, wakes in 5\dm", out)  # within the hour
    waiting = as_json(root, "jobs", "ls", "desk", "--status", "waiting")["jobs"]
    assert {j["$id"]: j["waitingFor"] for j in waiting} == {
        "boss": "child#1", "boss.child1": "wait#1", "ask": "wait#1"}
    # and get shows what each waits for, when it wakes, the parent and the children
    out = run(root, "jobs", "get", "nap").stdout
    assert "waiting for  sleep#1" in out and "wakes" in out and "run at" not in out
    out = run(root, "jobs", "get", "boss.child1").stdout
    assert "times out    never" in out and "parent       boss in desk" in out
    assert "awakeable#1" in out and "awk_" in out
    assert "boss.child1 (ops-approve) in desk" in run(root, "jobs", "get", "boss").stdout

    # When the child's awakeable is resolved and the other's rejected, by their tokens
    child = as_json(root, "jobs", "get", "boss.child1")
    assert child["parent"] == {"queue": "desk", "id": "boss"}
    [token] = [a["token"] for a in child["awakeables"]]
    out = run(root, "jobs", "resolve", token, '{"ok": true}').stdout
    assert "Resolved: awakeable awakeable#1 of job boss.child1 in desk" in out
    [other] = [a["token"] for a in as_json(root, "jobs", "get", "ask")["awakeables"]]
    assert as_json(root, "jobs", "reject", other, "no budget") == {
        "token": other, "queue": "desk", "job": "ask", "awakeable": "awakeable#1",
        "settled": "rejected"}
    # Then a second settle, a bad id or a value that is not JSON is refused, saying why
    again = run(root, "jobs", "resolve", token, code=1).stderr
    assert again.startswith("Error: ") and "settled before" in again
    assert "not an awakeable's id" in run(root, "jobs", "resolve", "nonsense", code=1).stderr
    assert "not JSON" in run(root, "jobs", "resolve", other, "{yes}", code=2).output
    # and the jobs go on with what they were given
    run_to_the_end("desk", f"{unique}-w")
    assert desk.result("boss").result()["output"] == {"child": {"approved": {"ok": True}}}
    assert desk.result("ask").result()["output"] == {"rejected": "no budget"}
    assert desk.get("nap").result()["status"] == "sleeping"


def test_workers_show_a_running_worker_with_its_queue_and_counts(root, unique):
    mail = dotdo.Queue("mail")
    mail.enqueue("cli-echo", None).result()
    worker = dotdo.Worker(f"{unique}-w")
    worker.start("mail", concurrency=3, backoff=0.01).result()
    try:
        wait_for(lambda: mail.count(status="completed").result() == 1)
        [row] = as_json(root, "workers", "--queue", "mail")
        assert (row["id"], row["queue"], row["online"], row["completed"]) == (
            f"{unique}-w", "mail", True, 1)
        assert row["concurrency"] == 3 and row["pid"] == os.getpid()
        out = run(root, "workers").stdout
        assert f"{unique}-w" in out and "yes" in out
    finally:
        worker.stop().result()


def test_bulk_retry_shows_the_count_and_asks_first_unless_yes(root, unique):
    mail = dotdo.Queue("mail")
    for n in range(2):
        mail.enqueue("cli-disk-full", {"file": f"{n}.txt"}, max_retries=0).result()
    run_to_the_end("mail", f"{unique}-w")

    said_no = run(root, "jobs", "retry", "--queue", "mail", "--status", "failed", input="n\n",
                  code=1)
    assert "Retry 2 failed jobs in mail? [y/N]" in said_no.output
    assert mail.count(status="failed").result() == 2
    assert as_json(root, "jobs", "retry", "--queue", "mail", "--status", "failed", "--yes") == 2
    assert mail.count(status="failed").result() == 0  # back in the queue
    out = run(root, "jobs", "retry", "--queue", "mail", "--status", "failed").stdout
    assert "No failed jobs in mail" in out
    # one id: only a failed job can be retried, and the queue's reason is shown
    [job_id] = [j["$id"] for j in mail.list().result()["jobs"][:1]]
    error = run(root, "jobs", "retry", job_id, code=1).stderr
    assert error.startswith("Error: ") and "only failed jobs can be retried" in error


def test_cancel_by_id_and_in_bulk(root):
    mail = dotdo.Queue("mail")
    for job_id in ("a", "b", "c"):
        mail.enqueue("cli-echo", None, job_id=job_id).result()

    out = run(root, "jobs", "cancel", "a").stdout
    assert "cancelled" in out and "mail" in out
    asked = run(root, "jobs", "cancel", "--queue", "mail", "--status", "pending", input="y\n")
    assert "Cancel 2 pending jobs in mail? [y/N]" in asked.output
    assert "Cancelled 2 jobs in mail." in asked.stdout
    assert mail.count(status="cancelled").result() == 3
    assert "--status" in run(root, "jobs", "cancel", code=2).output  # neither ids nor a status


def test_enqueue_takes_json_options_and_names_a_bad_payload(root):
    job = as_json(root, "jobs", "enqueue", "fresh", "cli-echo", "--payload", '{"to": "ada"}',
                  "--id", "j1", "--priority", "5", "--delay", "1h", "--create")
    assert (job["$id"], job["payload"], job["priority"], job["status"], job["enqueued"]) == (
        "j1", {"to": "ada"}, 5, "delayed", "added")
    again = run(root, "jobs", "enqueue", "fresh", "cli-echo", "--id", "j1").stdout
    assert "Existing: job j1" in again
    bad = run(root, "jobs", "enqueue", "fresh", "cli-echo", "--payload", "{to: ada}", code=2)
    assert "--payload" in bad.output and "not JSON" in bad.output
    missing = run(root, "jobs", "enqueue", "nope", "cli-echo", code=1)
    assert missing.stderr.startswith("Error: no queue 'nope'")


def test_pause_resume_set_and_purge_show_in_queue_show(root):
    mail = dotdo.Queue("mail")
    mail.enqueue("cli-echo", None, job_id="a").result()

    assert as_json(root, "queue", "pause", "mail")["paused"] is True
    assert as_json(root, "queue", "show", "mail")["paused"] is True
    assert "paused" in run(root, "queue", "show", "mail").stdout
    run(root, "queue", "resume", "mail")
    shown = run(root, "queue", "show", "mail").stdout
    assert "active" in shown and "paused" not in shown

    settings = as_json(root, "queue", "set", "mail", "--concurrency", "3", "--rate", "10/s",
                       "--keep-completed", "count=100,age=1d")
    assert (settings["concurrency"], settings["rate"]) == (3, "10/s")
    assert settings["keep_completed"] == {"count": 100, "age": 86_400.0}
    cleared = as_json(root, "queue", "set", "mail", "--concurrency", "none")
    assert cleared["concurrency"] is None and cleared["rate"] == "10/s"
    assert as_json(root, "queue", "show", "mail")["settings"] == cleared
    assert "rate" in run(root, "queue", "set", "mail", "--rate", "fast", code=1).stderr

    mail.cancel("a").result()
    said_no = run(root, "queue", "purge", "mail", "--status", "cancelled", input="n\n", code=1)
    assert "Delete every one of the cancelled jobs in mail?" in said_no.output
    assert as_json(root, "queue", "purge", "mail", "--status", "cancelled", "--yes") == 1
    assert mail.get("a").result() is None


def test_objects_ls_get_and_sql_which_is_read_only(root):
    ledger = dotdo.CliLedger("acme")
    dotdo.get([ledger.add(5), ledger.add(7)])

    assert "CliLedger" in run(root, "objects", "ls").stdout
    assert [o["id"] for o in as_json(root, "objects", "ls", "CliLedger")["objects"]] == ["acme"]
    out = run(root, "objects", "get", "CliLedger", "acme").stdout
    assert "balance" in out and "12" in out and "entries" in out and "nightly" in out
    view = as_json(root, "objects", "get", "CliLedger", "acme")
    assert view["kv"]["balance"] == 12 and view["tables"] == [{"name": "entries", "rows": 2}]

    rows = as_json(root, "objects", "sql", "CliLedger", "acme",
                   "select amount from entries order by amount")
    assert rows == {"columns": ["amount"], "rows": [[5], [7]], "truncated": False}
    refused = run(root, "objects", "sql", "CliLedger", "acme", "delete from entries", code=1)
    assert refused.stderr.startswith("Error: ") and "read only" in refused.stderr
    assert ledger.add(0).result() == 12
    assert as_json(root, "objects", "sql", "CliLedger", "acme",
                   "select count(*) from entries")["rows"] == [[3]]
    missing = run(root, "objects", "get", "CliLedger", "nobody", code=1)
    assert missing.stderr.startswith("Error: no CliLedger 'nobody'")


def test_objects_sql_that_would_run_for_ever_ends_at_its_deadline_with_the_error(root):
    dotdo.CliLedger("acme").add(1).result()
    forever = ("with recursive r(n) as (select 1 union all select n + 1 from r) "
               "select count(*) from r")
    stopped = run(root, "objects", "sql", "CliLedger", "acme", forever, "--deadline", "0.2",
                  code=1)
    assert stopped.stderr.startswith("Error: the query ran past its deadline of 0.2 s")
    assert "--deadline" in stopped.stderr
    run(root, "objects", "sql", "CliLedger", "acme", "select 1", "--deadline", "0", code=2)


def test_steps_show_the_journal_with_failed_attempts(root):
    ledger = dotdo.CliLedger("acme")
    assert ledger.settle().result() == {"charged": 2}

    out = run(root, "steps", "CliLedger", "acme").stdout
    assert "charge-1" in out and "#1: ConnectionError: bank away" in out
    [step] = as_json(root, "steps", "CliLedger", "acme")
    assert (step["step"], step["attempts"], step["result"]) == ("charge-1", 2, {"charged": 2})
    assert [e["attempt"] for e in step["errors"]] == [1]


def test_schedules_list_each_objects_schedule(root):
    dotdo.CliLedger("acme").add(1).result()

    out = run(root, "schedules").stdout
    assert "CliLedger" in out and "acme" in out and "nightly" in out
    [schedule] = [s for s in as_json(root, "schedules") if s["class"] == "CliLedger"]
    assert "CliLedger.nightly" in schedule["name"] and schedule["nextRun"] > time.time()


def test_the_module_runs_and_file_commands_read_files_when_no_ray_answers(root):
    dotdo.CliLedger("acme").add(1).result()
    # Nothing answers at this address: no host runs there, so file commands read the
    # files here, and commands on live objects say nothing answers.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "127.0.0.1:9",
           "DOTDO_STORAGE": str(root), "COLUMNS": "200"}
    env.pop("DOTDO_IN_PROCESS", None)

    def dotdo_command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dotdo.ops.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    helped = dotdo_command("--help")
    assert helped.returncode == 0 and "jobs" in helped.stdout and "objects" in helped.stdout
    listed = dotdo_command("objects", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["CliLedger"] == 1
    shown = dotdo_command("objects", "get", "CliLedger", "acme", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == "acme"
    joined = dotdo_command("queues")
    assert joined.returncode == 1 and joined.stderr.startswith("Error: no Ray cluster answers")
    assert "Traceback" not in joined.stderr


def test_a_one_off_command_refuses_to_start_a_ray_of_its_own(root):
    # With no cluster to join, a command's own Ray would wake the queue's workers and
    # end with the command while they hold jobs: it says how to get a lasting one.
    if connect.running_cluster() is not None:
        pytest.skip("a Ray cluster runs on this machine: the command would join it")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DOTDO_IN_PROCESS")}

    def queues() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dotdo.ops.cli", "--storage", str(root),
                               "queues"], env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    done = queues()
    assert done.returncode == 1 and f"no Ray runs for the storage {root}" in done.stderr
    assert "Start `dotdo dashboard` or `dotdo serve` with this storage" in done.stderr
    assert "ray start --head" in done.stderr and "--address local" in done.stderr
    # A record of a Ray whose process ended, or that no longer answers, is not joined:
    # the refusal names it
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    record = root / ".ray-address"
    for pid, address in ((ended.pid, "127.0.0.1:9"), (os.getpid(), "127.0.0.1:9")):
        record.write_text(json.dumps({"address": address, "pid": pid, "program": "dotdo serve",
                                      "host": socket.gethostname()}))
        done = queues()
        assert done.returncode == 1 and f"no Ray runs for the storage {root}" in done.stderr
        assert f"{record} names the Ray of dotdo serve (pid {pid}), which has ended" in done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_prints_where_and_the_token_file_and_answers_with_it(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "dotdo.ops.cli", "--in-process", "--storage", str(tmp_path),
         "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        said = [server.stdout.readline() for _ in range(4)]
        assert said[0].startswith(f"dotdo API on http://127.0.0.1:{port}"), said
        token_file = tmp_path / "_dotdo_api" / "token"
        assert f"token: {token_file}" in said[2] and f"cat {token_file}" in said[3]
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        # the pages' address, with the token, ready to open
        assert said[1] == f"dashboard: http://127.0.0.1:{port}/?token={token}\n"

        def get(path: str, token: str | None = None):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={
                "Authorization": f"Bearer {token}"} if token else {})
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as error:
                return error.code, None

        status = wait_for(lambda: _up(get, "/api/status", token))
        assert status[0] == 200 and status[1]["storage"] == str(tmp_path)
        assert get("/api/status")[0] == 401
        # The pages without their token say where that address was printed
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30)
        page = refused.value.read().decode()
        assert refused.value.code == 401 and "dotdo dashboard --no-open" in page
        assert "the line <code>dashboard: http://" in page and "?token=" in page
        with urllib.request.urlopen(said[1].split(" ", 1)[1].strip(), timeout=30) as opened:
            assert opened.status == 200
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def _up(get, path, token):
    try:
        return get(path, token)
    except (ConnectionError, urllib.error.URLError):
        return None  # not listening yet


def test_dashboard_opens_the_pages_with_a_token_once_the_server_listens(root, monkeypatch):
    from dotdo.ops import serve as web

    opened: list[str] = []
    seen = threading.Event()
    served: list[tuple[str, int]] = []

    def browser(url: str) -> bool:
        opened.append(url)
        seen.set()
        return True

    def serve_local(service, tokens, host, port):
        # Listens as uvicorn would, until the browser was sent there.
        served.append((host, port))
        with socket.socket() as listener:
            listener.bind((host, port))
            listener.listen()
            seen.wait(60)

    monkeypatch.setattr("webbrowser.open", browser)
    monkeypatch.setattr(web, "serve_local", serve_local)
    port = free_port()
    shown = json.loads(run(root, "dashboard", "--port", str(port), "--json").stdout)
    assert opened == [f"http://127.0.0.1:{port}/?token={shown['token']}"] == [shown["dashboard"]]
    assert served == [("127.0.0.1", port)] and shown["tokenFile"].startswith(str(root))
    seen.clear()
    run(root, "dashboard", "--port", str(free_port()), "--read-only")
    assert opened[1].endswith(f"?token={shown['readToken']}")
    monkeypatch.setattr(web, "serve_local", lambda *a, **k: served.append(("no-open", 0)))
    out = run(root, "dashboard", "--no-open", "--port", str(port)).stdout
    assert len(opened) == 2 and served[-1] == ("no-open", 0)
    # --no-open prints the address the browser would have been sent to
    assert f"dashboard: http://127.0.0.1:{port}/?token={shown['token']}\n" in out


def test_times_print_as_local_iso_times_with_their_age():
    now = 1_700_000_000.0
    assert (ago(now - 180, now), ago(now + 300, now), ago(now - 7500, now)) == (
        "3m ago", "in 5m", "2h5m ago")
    local = datetime.datetime.fromtimestamp(now - 45).isoformat(sep=" ", timespec="seconds")
    assert when(now - 45, now) == f"{local} (45s ago)" and when(None) == "-"


def test_enqueue_has_a_flag_for_every_job_option_and_passes_each_on(root):
    # Every key of dotdo.JobOptions is a flag, with its docstring as its help
    flags = {p.name: p for p in jobs_enqueue.params}
    assert set(get_type_hints(dotdo.JobOptions)) <= set(flags)
    assert "Attempts after the first one that failed" in flags["max_retries"].help
    # and what the flags say reaches the queue as Queue.enqueue takes it
    as_json(root, "jobs", "enqueue", "deps", "cli-echo", "--job-id", "parent", "--delay", "1h",
            "--create")
    at = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).replace(
        second=0, microsecond=0)
    job = as_json(root, "jobs", "enqueue", "deps", "cli-echo", "--id", "child",
                  "--depends-on", "parent", "--on-parent-failure", "cancel",
                  "--run-at", at.isoformat(), "--backoff", "10s,1m", "--max-retries", "0",
                  "--rate-key", "customer-42", "--group", "g", "--dedupe-key", "k",
                  "--unique-for", "1h", "--timeout", "2m")
    assert (job["status"], job["waitingOn"], job["runAt"], job["timeout"]) == (
        "waiting", 1, at.timestamp(), 120.0)
    assert (job["rateKey"], job["group"], job["dedupeKey"], job["maxRetries"]) == (
        "customer-42", "g", "k", 0)
    # The parent's cancel cancels the child, as on_parent_failure="cancel" says
    dotdo.Queue("deps").cancel("parent").result()
    assert dotdo.Queue("deps").get("child").result()["status"] == "cancelled"
    # A value the flag's type refuses is a usage error naming the flag
    bad = run(root, "jobs", "enqueue", "deps", "cli-echo", "--backoff", "10s,soon", code=2)
    assert "--backoff" in bad.output and "10s,1m,10m" in bad.output
    bad = run(root, "jobs", "enqueue", "deps", "cli-echo", "--on-parent-failure", "ignore", code=2)
    assert "'fail', 'cancel'" in bad.output or "fail, cancel" in bad.output
