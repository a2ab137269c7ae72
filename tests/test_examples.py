"""Every script in examples/ runs as `python examples/<name>.py`, so they never rot."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# What each example must print: proof that it did its job, not only that it ran.
EXPECTED = {
    "approval.py": [r"email to the manager: Order 7 \(125000 cents, ch_7_1\) needs your approval: "
                    r"POST http://127\.0\.0\.1:\d+/api/awakeables/awk_[\w-]+/resolve",
                    r"order-7 is waiting at wait#1, worker None",
                    r"POST /api/awakeables/<id>/resolve -> 200 resolved",
                    r"order-7: shipped True, approved by grace, charge ch_7_1",
                    r"the same link again -> 409",
                    r"2 runs of the job; charges: \['order 7: 125000 cents'\]; emails: 1"],
    "do.py": [r"attempt 1: ConnectionError", r"attempt 3: ok", r"\(from the journal\)",
              r"stopped after 1 attempt: card declined"],
    "http_api.py": [r"POST /api/queues/billing-[\d-]+/jobs -> 201 order-7 \(added\)",
                    r"POST /api/queues/billing-[\d-]+/jobs -> 200 order-7 \(existing\)",
                    r"result: completed \{'invoice': 'INV-7', 'total': 42\}",
                    r"Counter.add over HTTP -> 200 3",
                    r"Counter.reset over HTTP -> 403: Counter.reset is not exposed",
                    r"read-only token reads: 200, completed 1",
                    r'dotdo_jobs_total\{queue="billing-[\d-]+",outcome="completed"\} 1.0'],
    "job_queue.py": [r"enqueued 3000 jobs", r"jobs/s end to end",
                     r"dead letter: \w{8} report: ValueError: report \d+ has a corrupt row"],
    "events.py": [r"reserved: \['o-1', 'o-2'\]", r"audit: 2",
                  r"failures: \['Order.placed \w{8}: order o-2 needs a manual check'\]"],
    "onboarding.py": [r"ada: welcome sent; waiting at event#1 \(User\.loggedIn\), worker None",
                      r"ada: logged in, no follow-up \(2 runs of the job\)",
                      r"bob: no login within 3 s, follow-up sent \(2 runs of the job\)",
                      r"emails sent: \['Welcome aboard -> (ada|bob)', 'Welcome aboard -> (ada|bob)', "
                      r"'Need a hand getting started\? -> bob'\]"],
    "pipelining.py": [r"alice deposits 10 -> balance 10", r"ledger entries: 1, last for alice: 10",
                      r"refused: an object id must not be empty"],
    "queue_retries.py": [r"charge: retrying after attempt 1, next run in 0\.\d s: ConnectionError: card network busy",
                         r"import_csv: \d+% imported [\d,]+ rows",
                         r"rebuild_index: cancelled while running",
                         r"charge attempt 1: failed: ConnectionError", r"charge attempt 3: completed",
                         r"charge output: \{'charged': 1999\}"],
    "queue_limits.py": [r"api: most starts in any second: [1-8] \(limit 8/s\)",
                        r"api: acme: most starts in any second: [1-3] \(limit 3/s\)",
                        r"render: tenant-small's 5 jobs started among the first ([5-9]|1\d) of 205"],
    "queue_dedupe.py": [r"reindex: 5 enqueues -> \['added', 'debounced', 'debounced', 'debounced', "
                        r"'debounced'\], 1 job",
                        r"welcome: added, then duplicate of the same job \(completed\): True",
                        r"reindex ran once: indexed version 5"],
    "queue_flows.py": [r"flow: fetch-cat pending, children \['waiting', 'waiting', 'waiting'\], "
                       r"publish waiting on 3 parents",
                       r"publish saw its parents' results: \['cat.jpg@1280', 'cat.jpg@320', 'cat.jpg@640'\]",
                       r"its follower is cancelled: ParentFailed: parent job 'scan-dog' ended failed"],
    "queue_operations.py": [r"retention: 50 ran, 10 completed kept",
                            r"stop\(timeout=0.2\): 0 finished, returned 1; the job is pending again",
                            r"attempts: \['released', 'completed'\]"],
    "rooms.py": [r"2000 rooms on 4 actors", r"room-7 has 50",
                 r"room-7: 50 messages, 1 member; evicted and back: True"],
    "schedules.py": [r"every.day.at\('midnight'\)\s+next: \w{3} \d{4}-\d\d-\d\d 00:00 UTC",
                     r"heartbeats after \d+\.\d s: [1-9]"],
    "send.py": [r"handled: 100 signups counted by the App"],
    "try_.py": [r"driver: 9.99", r"object: lamp: the price service is slow",
                r"object: unknown: no price for unknown"],
}
# What an example reads from its environment beyond storage and Ray: onboarding's wait
# for a login is 3 days unless told.
ENV = {"onboarding.py": {"ONBOARDING_WAIT": "3"}}


@pytest.mark.dedicated_pass("examples run as a user runs them; rooms.py pools its own class")
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, ray_session, tmp_path):
    # Join the session's Ray rather than starting another, in a namespace of its own
    # so that the example's App is not the session's.
    namespace = f"example-{script.stem}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOTDO_STORAGE": str(tmp_path),
           "DOTDO_NAMESPACE": namespace, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           **ENV.get(script.name, {})}
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"
        text = " ".join(done.stdout.split())  # rich wraps long lines at 80 columns
        for pattern in EXPECTED[script.name]:
            assert re.search(pattern, text), f"{script.name}: no {pattern!r} in\n{done.stdout}"
        assert any(tmp_path.rglob("*.sqlite3")), f"{script.name} stored nothing"
    finally:
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == namespace:
                ray.kill(ray.get_actor(actor["name"], namespace=namespace), no_restart=True)
