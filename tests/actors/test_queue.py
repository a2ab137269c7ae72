"""Queue's API on real Ray: every call, its bad inputs, and nothing written by them."""

import contextlib
import os
import sqlite3
import time

import pytest

import dotdo
from actors import queue_sql
from dotdo import codec
from dotdo.ids import storage_path
from tests.actors.conftest import claim as _claim, report as _report
from tests.conftest import host_pid, kill_and_wait, live_object, wait_for
from tests import job_handlers  # noqa: F401  (ships the handlers to the App)
from tests import objects  # noqa: F401


def test_enqueue_returns_a_job_thing(queue):
    job = queue.enqueue("echo", {"x": 1}, priority=2, max_retries=5, timeout=3).result()
    assert job["$type"] == "Job" and job["type"] == "echo" and job["payload"] == {"x": 1}
    assert (job["status"], job["attempts"], job["error"]) == ("pending", 0, None)
    assert (job["priority"], job["maxRetries"], job["timeout"]) == (2, 5, 3)
    assert job.pop("enqueued") == "added"
    assert queue.get(job["$id"]).result() == job


def test_a_job_thing_has_the_keys_dotdo_job_declares(queue):
    plain = queue.enqueue("echo", 1).result()
    full = queue.enqueue("echo", 2, group="g", rate_key="r", dedupe_key="d",
                         depends_on=[plain["$id"]]).result()
    assert set(full) - set(plain) == {"group", "rateKey", "dedupeKey", "waitingOn"}
    for job in (plain, full, queue.get(full["$id"]).result(),
                *queue.list().result()["jobs"]):
        assert dotdo.Job.__required_keys__ <= set(job) <= set(dotdo.Job.__annotations__)
        assert dotdo.JobStatus(job["status"]) in (dotdo.JobStatus.PENDING,
                                                  dotdo.JobStatus.WAITING)


def test_job_id_is_an_idempotency_key(queue):
    first = queue.enqueue("echo", 1, job_id="order-7").result()
    again = queue.enqueue("echo", 2, job_id="order-7").result()
    assert (first.pop("enqueued"), again.pop("enqueued")) == ("added", "existing")
    assert again == first and again["payload"] == 1
    assert queue.get_metrics().pending.result() == 1


def test_enqueue_many_is_one_call(queue):
    jobs = queue.enqueue_many([{"type": "echo", "payload": i} for i in range(100)]).result()
    assert [j["payload"] for j in jobs] == list(range(100))
    assert queue.get_metrics().result().pending == 100


def test_list_pages_are_stable_and_filtered(queue):
    queue.enqueue_many([{"type": "echo" if i % 2 else "doomed", "payload": i} for i in range(25)]).result()
    seen, cursor = [], None
    while True:
        page = queue.list(limit=10, cursor=cursor).result()
        seen += [j["payload"] for j in page["jobs"]]
        queue.enqueue("echo", "added while paging").result()  # lands after the cursor
        cursor = page["cursor"]
        if cursor is None:
            break
    assert seen[:25] == list(range(25))
    evens = queue.list(type="doomed", limit=100).result()["jobs"]
    assert [j["payload"] for j in evens] == list(range(0, 25, 2))


def test_metrics_are_attributes_and_one_call(queue):
    queue.enqueue("echo", 1).result()
    queue.enqueue("echo", 2, delay=3600).result()
    metrics = queue.get_metrics().result()
    assert (metrics.pending, metrics.delayed, metrics.running, metrics.completed,
            metrics.failed, metrics.retries) == (1, 1, 0, 0, 0, 0)
    assert queue.get_metrics().delayed.result() == 1
    assert queue.list(status="delayed").result()["jobs"][0]["status"] == "delayed"


def test_cancel_of_a_finished_job_is_refused(queue):
    a = queue.enqueue("echo", 1).result()["$id"]
    b = queue.enqueue("echo", 2, run_at=time.time() + 600).result()["$id"]
    assert queue.cancel(a).result()["status"] == "cancelled"
    assert queue.cancel(b).result()["status"] == "cancelled"
    with pytest.raises(ValueError, match="only jobs not yet finished"):
        queue.cancel(a).result()
    with pytest.raises(KeyError, match="no job 'nope'"):
        queue.cancel("nope").result()
    assert queue.get_metrics().cancelled.result() == 2


def test_pause_resume_persist(ray_queue):
    queue = ray_queue
    job_id = queue.enqueue("echo", 1).result()["$id"]
    queue.pause().result()
    assert queue.get_metrics().paused.result() is True
    # A new process reads the pause from storage: it still hands out nothing
    kill_and_wait(queue, "ray.kill")
    assert queue.get_metrics().paused.result() is True
    assert _claim(queue, "w") == []
    queue.resume().result()
    assert queue.get_metrics().paused.result() is False
    kill_and_wait(queue, "ray.kill")
    assert queue.get_metrics().paused.result() is False
    assert [g["job"]["$id"] for g in _claim(queue, "w")] == [job_id]


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("",), {}, ValueError, "non-empty str"),
        ((None,), {}, ValueError, "non-empty str"),
        (("echo", 1), {"priority": "high"}, ValueError, "priority is an int"),
        (("echo", 1), {"delay": 5, "run_at": 10.0}, ValueError, "not both"),
        (("echo", 1), {"delay": -1}, ValueError, "delay must be a finite number >= 0"),
        (("echo", 1), {"delay": float("nan")}, ValueError, "delay must be a finite number"),
        (("echo", 1), {"run_at": float("inf")}, ValueError, "run_at must be a finite number"),
        (("echo", 1), {"max_retries": -1}, ValueError, "max_retries"),
        (("echo", 1), {"max_retries": 2.0}, ValueError, "max_retries must be an int"),
        (("echo", 1), {"timeout": 0}, ValueError, "timeout"),
        (("echo", 1), {"timeout": float("nan")}, ValueError, "timeout must be a finite number"),
        (("echo", 1), {"job_id": "a\ud800"}, dotdo.InvalidIdError, "Unicode|surrogate|UTF-8"),
        (("echo", 1), {"job_id": ""}, dotdo.InvalidIdError, "must not be empty"),
        (("echo", 1), {"job_id": "x" * 513}, dotdo.InvalidIdError, "at most 512"),
        (("echo", b"x" * (1 << 20)), {}, dotdo.LimitError, "over the limit of 1,048,576"),
        (("echo", 1), {"colour": "red"}, TypeError, "unknown job option"),
        (("echo", {"bad": 1j}), {}, dotdo.EncodeError, "complex"),
    ],
)
def test_bad_enqueue_is_refused_and_writes_nothing(queue, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        queue.enqueue(*args, **kwargs).result()
    assert queue.list().result()["jobs"] == []


def test_one_bad_job_in_a_batch_writes_none_of_it(queue):
    with pytest.raises(dotdo.EncodeError):
        queue.enqueue_many([{"type": "echo", "payload": 1}, {"type": "echo", "payload": 1j}]).result()
    assert queue.list().result()["jobs"] == []


def test_bad_calls_name_the_fix(queue):
    job_id = queue.enqueue("echo", 1).result()["$id"]
    with pytest.raises(ValueError, match="only failed jobs can be retried"):
        queue.retry(job_id).result()
    with pytest.raises(ValueError, match="finished jobs only"):
        queue.purge(status="pending").result()
    with pytest.raises(ValueError, match="is not a valid JobStatus"):
        queue.list(status="done").result()
    assert queue.result(job_id).result() is None


# -- the worker protocol: leases, fencing, crashes -----------------------------------------


def test_a_report_counts_only_from_the_worker_holding_the_lease(queue):
    # Given a job whose lease ran out on worker a and went to worker b
    queue.configure(lease_timeout=0.5).result()
    job_id = queue.enqueue("echo", 1, max_retries=0).result()["$id"]
    (old,) = _claim(queue, "a")
    wait_for(lambda: queue.get(job_id).result()["status"] == "pending")  # a went silent
    (new,) = _claim(queue, "b")  # it went back as a suspect: an idle worker gets it alone
    assert new["alone"] and new["lease"] == old["lease"] + 1
    # When the old holder reports a failure, it does not count; the new holder's does
    assert _report(queue, "a", old, "failed", "late") == 0
    assert queue.get(job_id).result()["status"] == "running"
    assert _report(queue, "b", new, "failed", "ValueError: real") == 1
    assert queue.get(job_id).result()["error"] == "ValueError: real"
    # And a failure reported again after a user's retry() does not undo it
    queue.retry(job_id).result()
    assert _report(queue, "b", new, "failed", "again") == 0
    assert queue.get(job_id).result()["status"] == "pending"


def test_a_success_from_a_past_holder_wins_over_a_failure(queue):
    queue.configure(lease_timeout=0.5).result()
    job_id = queue.enqueue("echo", 1).result()["$id"]
    (old,) = _claim(queue, "a")
    wait_for(lambda: queue.get(job_id).result()["status"] == "pending")  # a went silent
    (new,) = _claim(queue, "b")
    assert _report(queue, "b", new, "failed", "ValueError: b") == 1
    # The job did run to the end on a: that outcome is kept, not the failure
    assert _report(queue, "a", old, "ok", {"done": True}) == 1
    assert queue.result(job_id).result()["output"] == {"done": True}
    # A report for an earlier enqueue of the same id never touches the new one
    queue.purge().result()
    queue.enqueue("echo", 2, job_id=job_id).result()
    assert _report(queue, "a", old, "ok", "stale") == 0
    assert queue.get(job_id).result()["status"] == "pending"


def test_leases_outlive_a_queue_restart(ray_queue):
    queue = ray_queue
    # Given a job leased to a worker that then vanishes, and a queue that restarts
    queue.configure(lease_timeout=1.0).result()
    job_id = queue.enqueue("echo", 1).result()["$id"]
    _claim(queue, "vanished")
    kill_and_wait(queue, "SIGKILL")
    # Then the job goes back to the queue once the lease (and the restart's grace) runs out
    wait_for(lambda: queue.get(job_id).result()["status"] == "pending")


def test_heartbeats_keep_leases_and_name_stuck_jobs(queue):
    queue.configure(lease_timeout=1.0).result()
    a, b = (queue.enqueue("echo", i).result()["$id"] for i in range(2))
    held = [[g["job"]["$id"], g["lease"]] for g in _claim(queue, "w", n=2)]
    # A control job leased after them to a worker that never beats: once it is back,
    # their leases would have run out too, had the beats not kept them
    control = queue.enqueue("echo", "control").result()["$id"]

    def beat_until_control_is_back() -> bool:
        assert queue.heartbeat("w", held, [b]).result() == {
            "lease_timeout": 1.0, "cancel": [], "lost": []}
        return queue.get(control).result()["status"] == "pending"

    for _ in range(2):  # twice the lease, beating for both
        assert [g["job"]["$id"] for g in _claim(queue, "silent")] == [control]
        wait_for(beat_until_control_is_back)
    assert [queue.get(j).result()["status"] for j in (a, b)] == ["running", "stuck"]
    metrics = queue.get_metrics().result()
    assert (metrics.running, metrics.stuck) == (1, 1)
    queue.heartbeat("w", held, []).result()  # it returned: no longer stuck
    assert queue.get(b).result()["status"] == "running"


def test_a_job_that_keeps_killing_its_worker_fails_and_suspects_run_alone(queue):
    queue.configure(lease_timeout=2.0).result()
    job_id = queue.enqueue("echo", "poison", max_retries=1).result()["$id"]
    other = queue.enqueue("echo", "innocent").result()["$id"]
    grants = _claim(queue, "w", n=2)
    # Given the worker died running both: neither is to blame yet, both are suspects
    crashed = [[g["job"]["$id"], g["uid"], g["lease"], False] for g in grants]
    assert queue.recover("w", crashed, []).result() == {"failed": 0, "suspects": 2, "requeued": 0}
    # A busy worker still gets other work while the suspects are fresh...
    regular = queue.enqueue("echo", "regular").result()["$id"]
    (g,) = _claim(queue, "w2", n=4, idle=False)
    assert g["job"]["$id"] == regular and not g["alone"]
    _report(queue, "w2", g, "ok")
    # ...but once one has waited a lease timeout, the least busy worker gets nothing
    # new (so that it goes idle), and the others go on
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(4)]).result()
    held = {worker: [[g["job"]["$id"], g["lease"]] for g in _claim(queue, worker, n=n,
                                                                       idle=False)]
            for worker, n in (("w1", 2), ("w2", 1))}
    for _ in range(5):  # a lease timeout passes; the two keep their jobs
        time.sleep(0.5)
        for worker in ("w1", "w2"):
            assert queue.heartbeat(worker, held[worker], []).result()["lost"] == []
    assert _claim(queue, "w2", n=4, idle=False) == []
    assert len(_claim(queue, "w1", n=1, idle=False)) == 1
    # and an idle worker gets one suspect, alone, the oldest first
    (g,) = _claim(queue, "w2", n=4)
    assert g["alone"] and g["job"]["$id"] == job_id
    # It dies alone: the first crash counted; alone again, the second fails it
    for failed in (0, 1):
        assert queue.recover("w2", [[job_id, g["uid"], g["lease"], True]], []).result()[
            "failed"] == failed
        if not failed:
            (g,) = _claim(queue, "w2")
    job = queue.get(job_id).result()
    assert job["status"] == "failed" and job["crashes"] == 2
    assert job["error"].startswith("WorkerCrashError: the job's worker process died")
    # wait() raises the error as its class, a JobError like any failure's
    with pytest.raises(dotdo.WorkerCrashError, match="died while running it alone") as info:
        queue.wait(job_id, timeout=0).result()
    assert isinstance(info.value, dotdo.JobError) and info.value.job_id == job_id
    (g,) = _claim(queue, "w2")
    assert g["job"]["$id"] == other and g["alone"]


def test_recover_gives_back_leases_whose_answer_never_arrived(queue):
    ids = [j["$id"] for j in queue.enqueue_many([{"type": "echo", "payload": i}
                                                  for i in range(3)]).result()]
    _claim(queue, "w", n=3)
    # The worker got (and holds) only the first: the others go back, not as suspects
    assert queue.recover("w", [], [ids[0]]).result()["requeued"] == 2
    assert [queue.get(j).result()["status"] for j in ids] == ["running", "pending", "pending"]
    assert [g["alone"] for g in _claim(queue, "w2", n=2, idle=False)] == [False, False]


@pytest.mark.dedicated_pass("the claim loop is the same code in both")
def test_claim_sleeps_while_paused_or_at_the_limit(ray_queue):
    queue = ray_queue
    # Given thousands of ready jobs the queue may not hand out
    for i in range(2):
        queue.enqueue_many([{"type": "echo", "payload": i} for i in range(5_000)]).result()
    pid = host_pid(queue)

    def cpu() -> float:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def settle() -> float:  # until the queue has forwarded its Job.enqueued events
        for _ in range(120):
            before = cpu()
            time.sleep(0.5)
            if cpu() - before < 0.05:
                break
        return cpu()

    queue.pause().result()
    before = settle()
    assert queue.claim("w", 8, wait=2.0).result()["jobs"] == []
    paused = cpu() - before
    queue.resume().result()
    queue.configure(concurrency=1).result()
    _claim(queue, "w")
    before = settle()
    assert queue.claim("w", 8, wait=2.0).result()["jobs"] == []
    limited = cpu() - before
    # Then a two-second claim costs the queue's process next to no CPU: it waits for
    # an event (resume, configure, a job finishing), it does not poll
    assert paused < 0.5 and limited < 0.5, (paused, limited)


@pytest.mark.parametrize("call, match", [
    (lambda q: q.configure(concurrency=2.5), "concurrency must be an int"),
    (lambda q: q.configure(concurrency=float("nan")), "concurrency must be an int"),
    (lambda q: q.configure(concurrency=0), "concurrency must be an int >= 1"),
    (lambda q: q.configure(lease_timeout=float("inf")), "lease_timeout must be a finite"),
    (lambda q: q.list(limit=1001), "at most 1,000 jobs a page"),
    (lambda q: q.list(limit=2.5), "limit must be an int"),
    (lambda q: q.enqueue_many([{"type": "echo"}] * 10_001), "at most 10,000 jobs per call"),
])
def test_bad_settings_and_oversized_calls_are_refused(queue, call, match):
    with pytest.raises(ValueError, match=match):
        call(queue).result()
    assert queue.configure().result() == DEFAULTS
    assert queue.list().result()["jobs"] == []


DEFAULTS = {"concurrency": None, "lease_timeout": 30.0, "rate": None, "key_rate": None,
            "group_concurrency": None, "keep_completed": {"count": 10_000, "age": 604_800.0},
            "keep_failed": {"count": 100_000, "age": 2_592_000.0}}


def test_jobs_get_a_default_timeout(queue):
    assert queue.enqueue("echo", 1).result()["timeout"] == 600.0


def test_the_queues_loops_go_on_after_a_failed_write(queue, caplog):
    # Given a job whose worker went silent, while every write to the jobs table fails
    queue.configure(lease_timeout=0.5).result()
    job_id = queue.enqueue("echo", 1).result()["$id"]
    _claim(queue, "silent")
    storage = live_object(queue).storage
    storage.sql.execute("CREATE TRIGGER fail_writes BEFORE UPDATE ON jobs "
                        "BEGIN SELECT RAISE(ABORT, 'injected write failure'); END")
    try:
        # Then the reaper logs its failure, and tries again
        wait_for(lambda: caplog.text.count("failed reaping expired leases") >= 2)
        assert queue.get(job_id).result()["status"] == "running"
    finally:
        storage.sql.execute("DROP TRIGGER fail_writes")
    # And once writes work, it does its work: the job goes back to the queue
    wait_for(lambda: queue.get(job_id).result()["status"] == "pending")


# -- schema versions: a queue file written by another dotdo ---------------------------

# The jobs table as the first release wrote it, with its index of ready jobs, and no
# version recorded for the queue's tables: copied, not imported, so that the test
# keeps the old file's shape whatever queue_sql's constants become.
FIRST_RELEASE_JOBS = (
    """CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
        payload BLOB NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL,
        run_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        max_retries INTEGER NOT NULL, timeout REAL, error TEXT, worker TEXT,
        created REAL NOT NULL, started REAL, finished REAL, output BLOB)""",
    "CREATE INDEX jobs_ready ON jobs (status, priority DESC, run_at, seq)",
)


def _queue_file(local_root, queue_id, tables, meta):
    """The queue's SQLite file as another dotdo left it, written with plain sqlite3."""
    path = storage_path(str(local_root), "Queue", queue_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE _dotdo_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for key, value in {"class": "Queue", "id": queue_id, **meta}.items():
            conn.execute("INSERT INTO _dotdo_meta VALUES (?, ?)", (key, value))
        for ddl in tables:
            conn.execute(ddl)
    return conn, path


def test_a_queue_file_from_before_schema_versions_is_upgraded(make_local, local_root, unique):
    # Given a first release's queue file holding one pending job
    conn, path = _queue_file(local_root, unique, FIRST_RELEASE_JOBS, {})
    with conn:
        conn.execute("INSERT INTO jobs (id, type, payload, status, priority, run_at, "
                     "max_retries, timeout, created) VALUES ('old', 'echo', ?, 'pending', 0, "
                     "0, 3, 60, 0)", (codec.encode({"n": 1}),))
    conn.close()
    # When this dotdo's queue opens it, the job is there and goes through a claim
    queue = make_local("Queue", unique)
    assert queue.get("old").result()["payload"] == {"n": 1}
    (grant,) = _claim(queue, "w1")
    _report(queue, "w1", grant, "ok", "done")
    assert queue.get("old").result()["status"] == "completed"
    assert queue.enqueue("echo", 2, group="g").result()["group"] == "g"  # a later column
    # and the file records the queue's tables at the version they are now
    with contextlib.closing(sqlite3.connect(path)) as read:
        meta = dict(read.execute("SELECT key, value FROM _dotdo_meta").fetchall())
        indexes = {r[0] for r in read.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert meta["schema.queue"] == str(len(queue_sql.MIGRATIONS))
    assert "jobs_ready" not in indexes and "jobs_ungrouped" in indexes


def test_a_queue_file_from_a_newer_dotdo_is_refused_naming_the_fix(make_local, local_root, unique):
    newer = len(queue_sql.MIGRATIONS) + 1
    conn, path = _queue_file(local_root, unique, (), {"schema.queue": str(newer)})
    conn.close()
    with pytest.raises(dotdo.StorageError, match=f"Queue/{unique} in queue schema version "
                       f"{newer}, written by a newer dotdo.*Upgrade dotdo"):
        make_local("Queue", unique).get_metrics().result()
    with contextlib.closing(sqlite3.connect(path)) as read:  # its tables untouched
        assert read.execute("SELECT name FROM sqlite_master WHERE name = 'jobs'").fetchone() is None
    os.remove(path)  # the session's root is shared: other tests list every queue in it
