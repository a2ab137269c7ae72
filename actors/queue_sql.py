"""The queue's tables and statements (DDL as named constants, parameterised SQL only).

Statuses stored in ``jobs.status``: ``pending`` (ready, delayed or retrying, told
apart by ``run_at`` and ``error``), ``waiting`` (for parents), ``running`` (or stuck),
``completed``, ``failed``, ``cancelled``.
"""

from __future__ import annotations

from typing import Any

CREATE_JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    payload     BLOB NOT NULL,
    status      TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    run_at      REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL,
    timeout     REAL,
    error       TEXT,
    worker      TEXT,
    created     REAL NOT NULL,
    started     REAL,
    finished    REAL,
    output      BLOB
)"""
# Columns added since the first release: an older file gets them with ALTER TABLE.
# uid tells apart two jobs that had the same id (enqueued again after a purge).
JOB_COLUMNS = (
    ("uid", "TEXT"),
    ("lease", "INTEGER NOT NULL DEFAULT 0"),
    ("lease_until", "REAL"),
    ("suspect_since", "REAL"),  # when it became a suspect; NULL: it is not one
    ("crashes", "INTEGER NOT NULL DEFAULT 0"),
    ("stuck_since", "REAL"),
    ("trace", "TEXT"),  # the last error's traceback
    ("backoff", "TEXT"),  # JSON: seconds, or a list of waits; NULL: the worker's
    ("grp", "TEXT NOT NULL DEFAULT ''"),  # fair group; '' for none
    ("rate_key", "TEXT"),
    ("dedupe_key", "TEXT"),
    ("waiting_on", "INTEGER NOT NULL DEFAULT 0"),  # parents not yet completed
    ("on_parent_failure", "TEXT"),
    ("progress", "REAL"),
    ("progress_msg", "TEXT"),
    ("cancel_requested", "REAL"),
    ("traceparent", "TEXT"),  # W3C context of its enqueue span (dotdo.tracing); NULL: untraced
)
# Ready jobs in claim order: those without a group in one index, grouped ones by
# group in another (each pending job is in one of the two: no index costs twice).
CREATE_READY = (
    "CREATE INDEX IF NOT EXISTS jobs_ungrouped ON jobs (priority DESC, run_at, seq) "
    "WHERE status = 'pending' AND grp = ''"
)
CREATE_STATUS = "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq)"
# Suspects are few: finding one must not scan every pending job.
CREATE_SUSPECTS = (
    "CREATE INDEX IF NOT EXISTS jobs_suspects ON jobs (priority DESC, run_at, seq) "
    "WHERE status = 'pending' AND suspect_since IS NOT NULL"
)
# Fair claims walk groups in name order, one index seek per group.
CREATE_GROUPS = (
    "CREATE INDEX IF NOT EXISTS jobs_grouped ON jobs (grp, priority DESC, run_at, seq) "
    "WHERE status = 'pending' AND grp != ''"
)
# The first release's index of ready jobs (all of them), replaced by the two above.
DROP_OLD_INDEXES = ("DROP INDEX IF EXISTS jobs_ready", "DROP INDEX IF EXISTS jobs_group")
CREATE_DEDUPE = (
    "CREATE INDEX IF NOT EXISTS jobs_dedupe ON jobs (dedupe_key, seq) "
    "WHERE dedupe_key IS NOT NULL"
)
CREATE_OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    type  TEXT NOT NULL,
    data  BLOB NOT NULL
)"""
# Every attempt that did not succeed (the successful one is the job's own row).
CREATE_ATTEMPTS = """
CREATE TABLE IF NOT EXISTS attempts (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    uid      TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    worker   TEXT,
    started  REAL,
    finished REAL NOT NULL,
    outcome  TEXT NOT NULL,
    error    TEXT,
    trace    TEXT
)"""
CREATE_ATTEMPTS_INDEX = "CREATE INDEX IF NOT EXISTS attempts_uid ON attempts (uid, seq)"
CREATE_DEPS = """
CREATE TABLE IF NOT EXISTS deps (
    parent    TEXT NOT NULL,
    child_uid TEXT NOT NULL,
    PRIMARY KEY (parent, child_uid)
) WITHOUT ROWID"""
CREATE_DEPS_CHILD = "CREATE INDEX IF NOT EXISTS deps_child ON deps (child_uid)"
# Steps of purged jobs, for their workers to forget (sent in the background).
CREATE_FORGET = """
CREATE TABLE IF NOT EXISTS forget (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    step   TEXT NOT NULL
)"""
# Named steps of job handlers (``do(step_id=...)`` inside a job): one step for the whole
# queue. Results and failed attempts go to the queue's journal (``_dotdo_steps``); a
# step being run has a hold here, by the run (job, uid, lease) that runs it. A hold
# counts only while that run still holds its job's lease (see actors/steps.py).
CREATE_STEP_HOLDS = """
CREATE TABLE IF NOT EXISTS step_holds (
    step    TEXT PRIMARY KEY,
    job_id  TEXT NOT NULL,
    uid     TEXT,
    lease   INTEGER NOT NULL,
    worker  TEXT NOT NULL,
    since   REAL NOT NULL
) WITHOUT ROWID"""
# What a job's handler logged while each run of it ran (dotdo.logs), sent with the
# run's outcome: at most logs.MAX_LINES lines a run. Deleted with the job.
CREATE_JOB_LOGS = """
CREATE TABLE IF NOT EXISTS job_logs (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    uid      TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    worker   TEXT,
    t        REAL NOT NULL,
    level    TEXT NOT NULL,
    logger   TEXT NOT NULL,
    message  TEXT NOT NULL,
    trace_id TEXT,
    span_id  TEXT
)"""
CREATE_JOB_LOGS_INDEX = "CREATE INDEX IF NOT EXISTS job_logs_uid ON job_logs (uid, seq)"
INSERT_JOB_LOG = (
    "INSERT INTO job_logs (uid, attempt, worker, t, level, logger, message, trace_id, span_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_JOB_LOGS = (
    "SELECT attempt, t, level, logger, message, worker, trace_id, span_id FROM job_logs "
    "WHERE uid = ? ORDER BY seq LIMIT ?"
)
COUNT_RUNS = "SELECT count(*) FROM attempts WHERE uid = ?"
DELETE_JOB_LOGS = "DELETE FROM job_logs WHERE uid IN (SELECT value FROM json_each(?))"
DDL = (CREATE_JOBS, CREATE_OUTBOX, CREATE_ATTEMPTS, CREATE_DEPS, CREATE_FORGET, CREATE_STEP_HOLDS,
       CREATE_JOB_LOGS)
INDEXES = (CREATE_READY, CREATE_STATUS, CREATE_SUSPECTS, CREATE_GROUPS, CREATE_DEDUPE,
           CREATE_ATTEMPTS_INDEX, CREATE_DEPS_CHILD, CREATE_JOB_LOGS_INDEX)
SELECT_JOB_COLUMNS = "SELECT name FROM pragma_table_info('jobs')"


def tables_v1(db: Any) -> None:
    """0 -> 1: the tables as above, from nothing or from a file written before the
    queue's tables had versions (it lacks some of JOB_COLUMNS and has the first
    release's indexes). The constants above are version 1's: a later change to the
    tables is a step of its own."""
    for ddl in DDL:
        db.execute(ddl)
    have = {row[0] for row in db.execute(SELECT_JOB_COLUMNS).fetchall()}
    for name, decl in JOB_COLUMNS:
        if name not in have:  # names and types from the list above, not from a caller
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
    for ddl in (*DROP_OLD_INDEXES, *INDEXES):
        db.execute(ddl)


# Durable waits (actors/parks.py). A parked job is ``sleeping`` or ``waiting`` with
# ``park`` naming the point of its run it waits at, and ``run_at`` its wake time (a
# sleep's end, a wait's timeout; PARKED_FOREVER for none). ``parent`` is a child job's
# parent run: JSON [queue, job id, uid, point].
PARK_COLUMNS = (("park", "TEXT"), ("parent", "TEXT"))
# The points of each run (one row per durable call of a job handler that its next run
# must see again: a sleep, a wait, an awakeable, a child job, a patch marker, a named
# step it reached). ``key`` is the call's place in the run (``sleep#2``: the run's
# second sleep; ``step:charge-7``); ``state``: open, done, failed, timeout.
CREATE_POINTS = """
CREATE TABLE IF NOT EXISTS points (
    uid      TEXT NOT NULL,
    key      TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    state    TEXT NOT NULL,
    until    REAL,
    arg      TEXT,
    value    BLOB,
    created  REAL NOT NULL,
    ended    REAL,
    PRIMARY KEY (uid, key)
) WITHOUT ROWID"""
# Parked jobs by wake time: waking the due ones must not scan every job.
CREATE_PARKED = ("CREATE INDEX IF NOT EXISTS jobs_parked ON jobs (run_at) "
                 "WHERE park IS NOT NULL")
# Ends of child jobs on their way to a parent in another queue (actors/parks.py).
CREATE_NOTICES = """
CREATE TABLE IF NOT EXISTS notices (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    queue   TEXT NOT NULL,
    job_id  TEXT NOT NULL,
    uid     TEXT,
    key     TEXT NOT NULL,
    state   TEXT NOT NULL,
    value   BLOB
)"""
PARKED_FOREVER = 1e18  # run_at of a wait without a timeout (no index holds NULL here)


def parks_v2(db: Any) -> None:
    """1 -> 2: durable waits (the points table, parked jobs)."""
    have = {row[0] for row in db.execute(SELECT_JOB_COLUMNS).fetchall()}
    for name, decl in PARK_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
    db.execute(CREATE_POINTS)
    db.execute(CREATE_PARKED)
    db.execute(CREATE_NOTICES)


# The queue's schema versions (``Storage.migrate("queue", MIGRATIONS)``): MIGRATIONS[n]
# takes its tables from version n to n + 1.
MIGRATIONS = {0: tables_v1, 1: parks_v2}



# The first release's options only: the hot path.
INSERT_PLAIN = (
    "INSERT OR IGNORE INTO jobs (id, type, payload, status, priority, run_at, max_retries, "
    "timeout, created, uid, traceparent) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_JOB = (
    "INSERT OR IGNORE INTO jobs (id, type, payload, status, priority, run_at, max_retries, "
    "timeout, created, uid, backoff, grp, rate_key, dedupe_key, waiting_on, "
    "on_parent_failure, traceparent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT_JOB = "SELECT * FROM jobs WHERE id = ?"
# What Queue.wait answers with: how a job ended, if it did.
SELECT_END = "SELECT status, output, finished, error FROM jobs WHERE id = ?"
# Jobs by id, many at once: ids as one JSON array, so one statement serves any count.
SELECT_JOBS = "SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
# Debounce: the key's job not yet started takes the new payload and run time.
DEBOUNCE = (
    "UPDATE jobs SET type = ?, payload = ?, priority = ?, run_at = ?, max_retries = ?, "
    "timeout = ?, backoff = ?, grp = ?, rate_key = ? WHERE seq = ("
    "SELECT seq FROM jobs WHERE dedupe_key = ? AND status = 'pending' AND attempts = 0 "
    "AND error IS NULL AND lease = 0 ORDER BY seq DESC LIMIT 1) RETURNING *"
)
UNIQUE_HOLDER = (
    "SELECT * FROM jobs WHERE dedupe_key = ? AND created > ? AND status != 'cancelled' "
    "ORDER BY seq DESC LIMIT 1"
)
# ``lease`` is the claim's fence: the queue's claim counter, so every claim of a job
# (of any job) has a larger one than every claim before it. ``lease_until`` is on the
# monotonic clock of the queue's process (renewed in full when the queue restarts).
_LEASED = (
    "status = 'running', worker = ?, started = ?, lease = ?, lease_until = ?, "
    "stuck_since = NULL, progress = NULL, progress_msg = NULL"
)
# INDEXED BY: SQLite's planner would rather search jobs_status and sort every
# pending job (3.5 ms a claim at 18,000 pending, against 6 us walking the index).
CLAIM = (
    f"UPDATE jobs SET {_LEASED} WHERE seq IN ("
    "SELECT seq FROM jobs INDEXED BY jobs_ungrouped WHERE status = 'pending' AND grp = '' "
    "AND suspect_since IS NULL AND run_at <= ? "
    "ORDER BY priority DESC, run_at, seq LIMIT ?) RETURNING *"
)
CLAIM_SEQS = f"UPDATE jobs SET {_LEASED} WHERE seq IN (SELECT value FROM json_each(?)) RETURNING *"
READY_SUSPECT = (
    "SELECT seq, suspect_since FROM jobs INDEXED BY jobs_suspects WHERE status = 'pending' "
    "AND suspect_since IS NOT NULL AND run_at <= ? "
    "ORDER BY priority DESC, run_at, seq LIMIT 1"
)
CLAIM_SEQ = f"UPDATE jobs SET {_LEASED} WHERE seq = ? RETURNING *"
# Jobs an enqueue leased to a waiting claim (one fence): still that claim's after the
# commit; or back to pending, the claim having been cancelled before it answered.
STILL_LEASED = (
    "SELECT seq FROM jobs WHERE seq IN (SELECT value FROM json_each(?)) "
    "AND status = 'running' AND worker = ? AND lease = ?"
)
# Fair claims: the next group (in name order) with pending jobs, and its ready ones.
NEXT_GROUP = (
    "SELECT grp FROM jobs INDEXED BY jobs_grouped WHERE status = 'pending' AND grp != '' "
    "AND grp > ? ORDER BY grp LIMIT 1"
)
_READY_OF = (
    "AND suspect_since IS NULL AND run_at <= ? AND (rate_key IS NULL OR "
    "rate_key NOT IN (SELECT value FROM json_each(?))) "
    "ORDER BY priority DESC, run_at, seq LIMIT ?"
)
GROUP_READY = (
    "SELECT seq, rate_key FROM jobs INDEXED BY jobs_grouped WHERE status = 'pending' "
    f"AND grp != '' AND grp = ? {_READY_OF}"
)
UNGROUPED_READY = (
    "SELECT seq, rate_key FROM jobs INDEXED BY jobs_ungrouped WHERE status = 'pending' "
    f"AND grp = '' AND ? = '' {_READY_OF}"
)
RUNNING_BY_GROUP = "SELECT grp, count(*) FROM jobs WHERE status = 'running' GROUP BY grp"
RUNNING_GROUPED = "SELECT 1 FROM jobs WHERE status = 'running' AND grp != '' LIMIT 1"
RECENT_STARTS = (
    "SELECT rate_key, started FROM jobs WHERE started > ? "
    "UNION ALL SELECT j.rate_key, a.started FROM attempts a JOIN jobs j ON j.uid = a.uid "
    "WHERE a.started > ? ORDER BY 2"
)
_REQUEUED = "status = 'pending', worker = NULL, lease_until = NULL, stuck_since = NULL"
# A lease that ran out: its worker may have died running the job.
LOG_EXPIRED = (
    "INSERT INTO attempts (uid, job_id, worker, started, finished, outcome, error) "
    "SELECT uid, id, worker, started, ?, 'lost', 'LeaseExpired: its worker went silent "
    "for the lease timeout (its process or node is gone, or it lost the queue)' "
    "FROM jobs WHERE status = 'running' AND lease_until < ?"
)
CANCEL_EXPIRED = (
    "UPDATE jobs SET status = 'cancelled', finished = ?, lease_until = NULL, "
    "stuck_since = NULL WHERE status = 'running' AND lease_until < ? "
    "AND cancel_requested IS NOT NULL RETURNING id"
)
REQUEUE_EXPIRED = (
    f"UPDATE jobs SET {_REQUEUED}, suspect_since = coalesce(suspect_since, ?) "
    "WHERE status = 'running' AND lease_until < ?"
)
UNLEASE = (
    f"UPDATE jobs SET {_REQUEUED} WHERE seq IN (SELECT value FROM json_each(?)) "
    "AND status = 'running' AND lease = ?"
)
REQUEUE_UNHELD = (
    f"UPDATE jobs SET {_REQUEUED} WHERE status = 'running' AND worker = ? "
    "AND id NOT IN (SELECT value FROM json_each(?))"
)
# Heartbeats name the runs they hold as [job id, lease] pairs (JSON).
_HELD_RUNS = (
    "SELECT j.seq FROM json_each(?) p JOIN jobs j ON j.id = p.value ->> 0 "
    "AND j.lease = p.value ->> 1 WHERE j.status = 'running' AND j.worker = ?"
)
EXTEND_LEASES = f"UPDATE jobs SET lease_until = ? WHERE seq IN ({_HELD_RUNS})"
# The runs a worker names that no longer hold their job (it went to another worker,
# or back to the queue, or ended).
# A run whose job parked under its lease (a durable wait) is ending, not lost.
LOST_RUNS = (
    "SELECT p.value FROM json_each(?) p WHERE NOT EXISTS (SELECT 1 FROM jobs j "
    "WHERE j.id = p.value ->> 0 AND j.lease = p.value ->> 1 AND ((j.status = 'running' "
    "AND j.worker = ?) OR j.park IS NOT NULL))"
)
MARK_STUCK = (
    "UPDATE jobs SET stuck_since = coalesce(stuck_since, ?) WHERE status = 'running' "
    "AND worker = ? AND id IN (SELECT value FROM json_each(?))"
)
CLEAR_STUCK = (
    "UPDATE jobs SET stuck_since = NULL WHERE status = 'running' AND worker = ? "
    "AND stuck_since IS NOT NULL AND id NOT IN (SELECT value FROM json_each(?))"
)
ASK_CANCEL = "UPDATE jobs SET cancel_requested = coalesce(cancel_requested, ?) WHERE id = ?"
TO_CANCEL = (
    "SELECT id FROM jobs WHERE status = 'running' AND worker = ? "
    "AND cancel_requested IS NOT NULL"
)
# The holder of a job's current lease: the only worker whose failure counts.
HOLDER = "id = ? AND uid IS ? AND status = 'running' AND worker = ? AND lease = ?"
COMPLETE = (
    "UPDATE jobs SET status = 'completed', attempts = attempts + ?, finished = ?, output = ?, "
    "error = NULL, trace = NULL, lease_until = NULL, stuck_since = NULL, "
    "suspect_since = NULL WHERE id = ? AND uid IS ? AND lease >= ? "
    "AND status IN ('running', 'pending', 'failed')"
)
HELD = f"SELECT attempts, max_retries, cancel_requested, backoff FROM jobs WHERE {HOLDER}"
LOG_ATTEMPT = (
    "INSERT INTO attempts (uid, job_id, worker, started, finished, outcome, error, trace) "
    "SELECT uid, id, worker, started, ?, ?, ?, ? FROM jobs WHERE id = ? AND uid IS ?"
)
RETRY_LATER = (
    f"UPDATE jobs SET {_REQUEUED}, attempts = ?, error = ?, trace = ?, run_at = ? "
    "WHERE id = ? AND uid IS ?"
)
END = (
    "UPDATE jobs SET status = ?, attempts = ?, finished = ?, error = ?, trace = ?, "
    "lease_until = NULL, stuck_since = NULL, park = NULL WHERE id = ? AND uid IS ?"
)
RELEASE = f"UPDATE jobs SET {_REQUEUED} WHERE {HOLDER}"
CANCEL_ASKED = (
    "UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND uid IS ? "
    "AND status = 'pending' AND cancel_requested IS NOT NULL"
)
# retry() of a failed job: a fresh set of retries (its attempts stay in their table).
RETRY_FAILED = (
    f"UPDATE jobs SET {_REQUEUED}, error = NULL, trace = NULL, run_at = ?, attempts = 0, "
    "finished = NULL, crashes = 0, suspect_since = NULL, cancel_requested = NULL "
    "WHERE id = ? AND status = 'failed'"
)
CRASHED = (f"UPDATE jobs SET crashes = crashes + ? WHERE {HOLDER} "
           "RETURNING crashes, max_retries, attempts")
SUSPECT = f"UPDATE jobs SET {_REQUEUED}, suspect_since = coalesce(suspect_since, ?) WHERE {HOLDER}"
PROGRESS = f"UPDATE jobs SET progress = ?, progress_msg = ? WHERE {HOLDER}"
SELECT_ATTEMPTS = (
    "SELECT worker, started, finished, outcome, error, trace FROM attempts "
    "WHERE uid = ? ORDER BY seq"
)
COUNTS = (
    "SELECT status, count(*), count(stuck_since), "
    "sum(status = 'pending' AND run_at > ? AND error IS NULL), "
    "sum(status = 'pending' AND error IS NOT NULL) FROM jobs GROUP BY status"
)
RETRIES = "SELECT coalesce(sum(max(attempts - 1, 0)), 0) FROM jobs"
RUNNING = "SELECT count(*) FROM jobs WHERE status = 'running'"
# The worker to go idle for a suspect: the one with the fewest jobs running.
LEAST_BUSY = (
    "SELECT worker FROM jobs WHERE status = 'running' GROUP BY worker "
    "ORDER BY count(*), worker LIMIT 1"
)
NEXT_RUN_AT = "SELECT min(run_at) FROM jobs WHERE status = 'pending' AND run_at > ?"
NEXT_EXPIRY = "SELECT min(lease_until) FROM jobs WHERE status = 'running'"
# A queue starting (or back from a stall of its own process) gives every running job a
# fresh full lease: stored deadlines are of another process's clock, and workers could
# not renew them while it was away.
GRACE = "UPDATE jobs SET lease_until = ? WHERE status = 'running'"
EXTEND_ALL = "UPDATE jobs SET lease_until = lease_until + ? WHERE status = 'running'"
MAX_FENCE = "SELECT coalesce(max(lease), 0) FROM jobs"
# The wall clock stepped: jobs due before the step and waits that are durations (retry
# backoffs, a suspect's wait) move with it, so that a step back neither holds ready
# jobs nor adds its length to a retry's wait. Parameters: the step, the time before it.
SHIFT_DUE = (
    "UPDATE jobs SET run_at = run_at + ? WHERE status IN ('pending', 'waiting') "
    "AND (error IS NOT NULL OR run_at <= ?)"
)
SHIFT_SUSPECTS = (
    "UPDATE jobs SET suspect_since = suspect_since + ? WHERE suspect_since IS NOT NULL"
)
# Queue-wide steps (actors/steps.py).
SELECT_STEP_HOLD = "SELECT job_id, uid, lease, worker FROM step_holds WHERE step = ?"
UPSERT_STEP_HOLD = (
    "INSERT OR REPLACE INTO step_holds (step, job_id, uid, lease, worker, since) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
DELETE_STEP_HOLD = "DELETE FROM step_holds WHERE step = ?"
DELETE_STEP_HOLD_OF = (
    "DELETE FROM step_holds WHERE step = ? AND job_id = ? AND uid IS ? AND lease = ?"
)
HOLDS_JOB = f"SELECT 1 FROM jobs WHERE {HOLDER}"
INSERT_OUTBOX = "INSERT INTO outbox (type, data) VALUES (?, ?)"
SELECT_OUTBOX = "SELECT seq, type, data FROM outbox ORDER BY seq LIMIT ?"
DELETE_OUTBOX = "DELETE FROM outbox WHERE seq <= ?"

# Dependencies.
PARENT_STATUS = "SELECT status FROM jobs WHERE id = ?"
INSERT_DEP = "INSERT OR IGNORE INTO deps (parent, child_uid) VALUES (?, ?)"
ANY_DEPS = "SELECT 1 FROM deps LIMIT 1"
# A parent completed: each child waits for one parent fewer, and runs at none.
PARENT_DONE = (
    "UPDATE jobs SET waiting_on = waiting_on - 1, "
    "status = CASE WHEN waiting_on <= 1 THEN 'pending' ELSE status END "
    "WHERE status = 'waiting' AND uid IN (SELECT child_uid FROM deps WHERE parent = ?)"
)
WAITING_CHILDREN = (
    "SELECT id, uid, on_parent_failure FROM jobs WHERE status = 'waiting' "
    "AND uid IN (SELECT child_uid FROM deps WHERE parent = ?)"
)
PARENT_RESULTS = (
    "SELECT d.parent, j.output FROM deps d JOIN jobs j ON j.id = d.parent "
    "WHERE d.child_uid = ? AND j.status = 'completed'"
)
PARENTS_OF = "SELECT parent FROM deps WHERE child_uid = ? ORDER BY parent"

# Retention: finished jobs past a count (newest kept) or an age, a batch at a time.
_GONE = "SELECT seq, id, uid, worker FROM jobs"
OVER_COUNT = f"{_GONE} WHERE status = ? ORDER BY seq DESC LIMIT ? OFFSET ?"
OVER_AGE = f"{_GONE} WHERE status = ? AND finished < ? ORDER BY seq LIMIT ?"
DELETE_SEQS = "DELETE FROM jobs WHERE seq IN (SELECT value FROM json_each(?))"
DELETE_ATTEMPTS = "DELETE FROM attempts WHERE uid IN (SELECT value FROM json_each(?))"
# A purged parent's rows stay while its children do: they may still read its result.
DELETE_DEPS = "DELETE FROM deps WHERE child_uid IN (SELECT value FROM json_each(?))"
INSERT_FORGET = "INSERT INTO forget (worker, step) VALUES (?, ?)"
SELECT_FORGET = "SELECT seq, worker, step FROM forget ORDER BY seq LIMIT ?"
DELETE_FORGET = "DELETE FROM forget WHERE seq IN (SELECT value FROM json_each(?))"

# -- what operators read (actors/insight.py) ------------------------------------------
# Finished jobs per time bucket: (bucket number, status, count).
SERIES = (
    "SELECT CAST((finished - ?) / ? AS INTEGER), status, count(*) FROM jobs "
    "WHERE status IN ('completed', 'failed') AND finished >= ? GROUP BY 1, 2"
)
RECENT_DURATIONS = (
    "SELECT finished - started FROM jobs WHERE status = 'completed' AND started IS NOT NULL "
    "ORDER BY seq DESC LIMIT ?"
)
# Time from ready (run_at) to the start of the attempt, of recently started jobs.
RECENT_WAITS = (
    "SELECT max(started - run_at, 0) FROM jobs WHERE started IS NOT NULL "
    "AND status IN ('running', 'completed', 'failed') ORDER BY seq DESC LIMIT ?"
)
OLDEST_READY = "SELECT min(run_at) FROM jobs WHERE status = 'pending' AND run_at <= ?"
FINISHED_COUNTS = (
    "SELECT status, count(*) FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') "
    "GROUP BY 1"
)
BY_WORKER = (
    "SELECT worker, status, count(*) FROM jobs WHERE worker IS NOT NULL "
    "AND status IN ('running', 'completed', 'failed') GROUP BY 1, 2"
)
# Failed jobs grouped by the first line of their error, biggest group first.
DEAD_LETTERS = """
WITH f AS (SELECT seq, id, type, finished,
                  substr(error, 1, instr(error || char(10), char(10)) - 1) AS first
             FROM jobs WHERE status = 'failed')
SELECT first, count(*), group_concat(DISTINCT type), max(finished),
       (SELECT json_group_array(id) FROM
           (SELECT id FROM f AS g WHERE g.first IS f.first ORDER BY g.seq DESC LIMIT 5))
  FROM f GROUP BY first ORDER BY 2 DESC, 4 DESC LIMIT ?"""

# The depth gauge: jobs ready to run now.
COUNT_READY = "SELECT count(*) FROM jobs WHERE status = 'pending' AND run_at <= ?"

# -- durable waits (actors/parks.py) --
SELECT_POINT = "SELECT state, until, arg, value FROM points WHERE uid = ? AND key = ?"
SELECT_POINT_ANSWERS = "SELECT key, state, value FROM points WHERE uid = ? ORDER BY seq"
COUNT_POINTS = "SELECT count(*) FROM points WHERE uid = ?"
SELECT_POINTS = (
    "SELECT key, state, until, arg, created, ended FROM points WHERE uid = ? ORDER BY seq")
INSERT_POINT = (
    "INSERT OR IGNORE INTO points (uid, key, job_id, seq, state, until, arg, value, created, "
    "ended) VALUES (?, ?, ?, (SELECT count(*) FROM points WHERE uid = ?), ?, ?, ?, ?, ?, ?)"
)
# An open point ends (first end wins: a second resolve finds it ended).
END_POINT = (
    "UPDATE points SET state = ?, value = ?, ended = ? WHERE uid = ? AND key = ? "
    "AND state = 'open'"
)
DELETE_POINTS_OF_UIDS = "DELETE FROM points WHERE uid IN (SELECT value FROM json_each(?))"
# The holder parks its job at a point: it holds no lease and no worker while it waits.
PARK = (
    "UPDATE jobs SET status = ?, park = ?, run_at = ?, worker = NULL, lease_until = NULL, "
    f"stuck_since = NULL, progress = NULL, progress_msg = NULL WHERE {HOLDER} "
    "AND cancel_requested IS NULL"
)
LOG_PARKED = (
    "INSERT INTO attempts (uid, job_id, worker, started, finished, outcome, error) "
    f"SELECT uid, id, worker, started, ?, 'parked', ? FROM jobs WHERE {HOLDER} "
    "AND cancel_requested IS NULL"
)
CANCEL_ASKED_OF = (
    "SELECT count(*) FROM jobs WHERE id = ? AND uid IS ? AND status = 'running' "
    "AND cancel_requested IS NOT NULL"
)
ATTEMPTS_OF = "SELECT attempts FROM jobs WHERE id = ?"
# A parked job whose point ended (or whose time came) is ready to run again.
UNPARK = (
    "UPDATE jobs SET status = 'pending', park = NULL, run_at = ? WHERE id = ? AND uid IS ? "
    "AND park = ? AND status IN ('sleeping', 'waiting')"
)
DUE_PARKED = (
    "SELECT seq, uid, park FROM jobs INDEXED BY jobs_parked WHERE park IS NOT NULL "
    "AND run_at <= ? LIMIT ?"
)
WAKE_SEQS = (
    "UPDATE jobs SET status = 'pending', park = NULL "
    "WHERE seq IN (SELECT value FROM json_each(?)) AND park IS NOT NULL"
)
NEXT_WAKE = "SELECT min(run_at) FROM jobs INDEXED BY jobs_parked WHERE park IS NOT NULL"
SELECT_PARKED = "SELECT id, uid, park, status FROM jobs WHERE id = ?"
# Open waits for one awakeable (the wait point's arg names it).
OPEN_WAITS_FOR = "SELECT key FROM points WHERE uid = ? AND state = 'open' AND arg = ?"
SET_PARENT = "UPDATE jobs SET parent = ? WHERE id = ? AND parent IS NULL"
INSERT_NOTICE = (
    "INSERT INTO notices (queue, job_id, uid, key, state, value) VALUES (?, ?, ?, ?, ?, ?)")
SELECT_NOTICES = "SELECT seq, queue, job_id, uid, key, state, value FROM notices ORDER BY seq LIMIT ?"
DELETE_NOTICE = "DELETE FROM notices WHERE seq = ?"
ANY_NOTICES = "SELECT 1 FROM notices LIMIT 1"
OPEN_CHILDREN = (
    "SELECT arg FROM points WHERE uid = ? AND state = 'open' AND key LIKE 'child#%'")
# The children of a job's runs (for its page): their ids, from its child points.
SELECT_CHILDREN = "SELECT key, arg FROM points WHERE uid = ? AND key LIKE 'child#%' ORDER BY seq"
ANY_POINTS = "SELECT 1 FROM points LIMIT 1"
ANY_CHILD = "SELECT 1 FROM jobs WHERE parent IS NOT NULL LIMIT 1"
SELECT_CHILD_END = "SELECT id, status, output, error, parent FROM jobs WHERE id = ?"
SELECT_UID = "SELECT uid FROM jobs WHERE id = ?"
HAS_RUN = (
    "SELECT count(*) FROM jobs WHERE id = ? AND uid IS ? "
    "AND status NOT IN ('completed', 'failed', 'cancelled')"
)
OPEN_EVENT_WAITS = "SELECT key FROM points WHERE uid = ? AND state = 'open' AND key LIKE 'event#%'"
