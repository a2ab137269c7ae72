"""``/metrics`` as Prometheus reads it: the whole live output of a served app passes
``promtool check metrics``, and the run-time and wait histograms each queue keeps
(``Queue.histograms``) count every completed job of each type once, in the bucket
its time falls in, and never go down (purges, a restart of the queue)."""

import os
import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import dotdo
from dotdo import client
from dotdo.ops import serve
from dotdo.ops.api import create_app
from dotdo.ops.auth import Tokens
from dotdo.ops.service import Service
from tests import job_handlers  # noqa: F401  (echo, sleepy, doomed)
from tests.actors.conftest import claim, report
from tests.conftest import wait_for

PROMTOOL = shutil.which("promtool")
INSTALL = "install promtool (Debian: apt-get install prometheus) to check /metrics with it"
# CI (.ci/run) installs it and sets CI=true and DOTDO_REQUIRE_BROWSER=1: there a
# missing promtool fails the run.
REQUIRED = os.environ.get("DOTDO_REQUIRE_BROWSER") == "1" or bool(os.environ.get("CI"))
HISTOGRAMS = ("dotdo_job_duration_seconds", "dotdo_job_wait_seconds")


@pytest.fixture
def scrape(local_session, local_root):
    """``scrape()``: the text of ``GET /metrics`` from a served app, over real HTTP."""
    tokens = Tokens.load_or_create(str(local_root))
    background = serve.start_in_background(create_app(Service(), tokens))

    def get() -> str:
        request = urllib.request.Request(background.url + "/metrics",
                                         headers={"Authorization": f"Bearer {tokens.token}"})
        with urllib.request.urlopen(request, timeout=90) as answer:
            assert answer.status == 200
            assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
            return answer.read().decode()

    yield get
    background.stop()


def _series(text: str, queue: str) -> dict[str, dict[str, dict]]:
    """Per histogram family, per job type of ``queue``: ``{"buckets": [(le, n)],
    "sum", "count"}``, buckets in the order of the exposition."""
    found: dict[str, dict[str, dict]] = {name: {} for name in HISTOGRAMS}
    for family in text_string_to_metric_families(text):
        if family.name not in found:
            continue
        assert family.type == "histogram", family
        for s in family.samples:
            if s.labels["queue"] != queue:
                continue
            one = found[family.name].setdefault(s.labels["type"], {"buckets": []})
            if s.name.endswith("_bucket"):
                one["buckets"].append((float(s.labels["le"]), s.value))
            else:
                one[s.name.rpartition("_")[2]] = s.value
    return found


def _completed(text: str, queue: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "dotdo_jobs":  # the parser drops a counter's _total
            return next(s.value for s in family.samples if s.labels == {
                "queue": queue, "outcome": "completed"})
    raise AssertionError("no dotdo_jobs_total in /metrics")


def test_promtool_accepts_the_live_metrics_of_two_queues_with_histograms(
        scrape, make_local, start_worker, unique):
    if PROMTOOL is None:
        if REQUIRED:
            pytest.fail(f"CI or DOTDO_REQUIRE_BROWSER=1, but no promtool: {INSTALL}",
                        pytrace=False)
        pytest.skip(INSTALL)
    # Given two queues, each with completed jobs of two types and a failed one
    queues = {f"{unique}-a": (3, 2), f"{unique}-b": (1, 4)}
    for name, (echoes, naps) in queues.items():
        queue = make_local("Queue", name)
        jobs = ([{"type": "echo", "payload": i} for i in range(echoes)]
                + [{"type": "sleepy", "payload": {"seconds": 0.01}} for _ in range(naps)]
                + [{"type": "doomed", "payload": 0, "max_retries": 0}])
        queue.enqueue_many(jobs).result()
        start_worker(name)
    for name, (echoes, naps) in queues.items():
        queue = dotdo.Queue(name)
        wait_for(lambda q=queue, n=echoes + naps: q.count("completed").result() == n
                 and q.count("failed").result() == 1)
    # When Prometheus' own checker reads the whole scrape
    text = scrape()
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=60)
    # Then it finds nothing wrong: formats, types, names, help texts
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for name, (echoes, naps) in queues.items():
        series = _series(text, name)
        for family in HISTOGRAMS:
            # one series per type that completed; the failed type has none
            assert set(series[family]) == {"echo", "sleepy"}, (family, series[family])
            for job_type, completed in (("echo", echoes), ("sleepy", naps)):
                one = series[family][job_type]
                bounds = [le for le, _ in one["buckets"]]
                counts = [n for _, n in one["buckets"]]
                assert bounds == sorted(bounds) and bounds[-1] == float("inf")
                assert counts == sorted(counts), counts  # cumulative: never decreasing
                assert counts[-1] == one["count"] == completed
                assert one["sum"] >= 0
            if family == "dotdo_job_duration_seconds":  # sleepy ran at least its 10 ms
                assert series[family]["sleepy"]["sum"] >= 0.01 * naps
        assert _completed(text, name) == echoes + naps
    # And a later scrape, after more jobs, has no bucket lower than before
    first = _series(text, f"{unique}-a")
    dotdo.Queue(f"{unique}-a").enqueue("echo", 99).result()
    wait_for(lambda: dotdo.Queue(f"{unique}-a").count("completed").result() == 6)
    again = _series(scrape(), f"{unique}-a")
    for family in HISTOGRAMS:
        for job_type, one in first[family].items():
            later = again[family][job_type]
            assert all(b >= a for (_, a), (_, b) in zip(one["buckets"], later["buckets"],
                                                        strict=True))
        assert again[family]["echo"]["count"] == 4


def _buckets(histograms, family, job_type):
    """``{le: cumulative count}`` of one type, and its count."""
    h = histograms[family]
    one = h["types"][job_type]
    return dict(zip([*h["le"], "+Inf"], one["buckets"], strict=True)), one["count"]


def test_each_completed_job_falls_in_the_bucket_of_its_run_time_and_wait(dotdo_local, unique):
    queue = dotdo.Queue(unique)
    # Given jobs that waited 0.25 s once ready, then ran 1 s and 2 s (test clock: exactly)
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(2)]).result()
    dotdo_local.advance(0.25)
    first, second = claim(queue, "w", n=2)
    dotdo_local.advance(1.0)
    report(queue, "w", first, "ok", 1)
    dotdo_local.advance(1.0)
    report(queue, "w", second, "ok", 2)
    # and one that failed, which no histogram counts
    queue.enqueue("other", 0, max_retries=0).result()
    (bad,) = claim(queue, "w")
    report(queue, "w", bad, "failed", {"error": "ValueError: no", "final": True})
    histograms = queue.histograms().result()
    # Then a bucket holds the values at or under its bound (Prometheus' le)
    run, n = _buckets(histograms, "duration", "echo")
    assert n == 2 and (run[0.5], run[1.0], run[2.5], run["+Inf"]) == (0, 1, 2, 2)
    assert histograms["duration"]["types"]["echo"]["sum"] == pytest.approx(3.0)
    wait, _ = _buckets(histograms, "wait", "echo")
    assert (wait[0.1], wait[0.25], wait["+Inf"]) == (0, 2, 2)
    assert histograms["wait"]["types"]["echo"]["sum"] == pytest.approx(0.5)
    assert "other" not in histograms["duration"]["types"]
    # And the queue's stats carry the same figures, for Service.metrics
    stats = queue.stats(600, 60).result()
    assert stats["duration"]["histogram"] == histograms["duration"]
    assert stats["wait"]["histogram"] == histograms["wait"]


def test_the_histograms_never_go_down_through_purges_and_a_restart(make_local, unique):
    queue = make_local("Queue", unique)
    queue.enqueue_many([{"type": "echo", "payload": i} for i in range(3)]).result()
    for grant in claim(queue, "w", n=3):
        report(queue, "w", grant, "ok", 1)
    before = queue.histograms().result()
    # When every finished job is purged and the queue's process starts over
    assert queue.purge().result() == 3
    assert dotdo.get(client.actor_handle(queue).evict.remote("Queue", unique, True))
    # Then the histograms read from its file are as they were
    assert queue.histograms().result() == before
    # And more jobs add to them
    queue.enqueue("echo", 4).result()
    (grant,) = claim(queue, "w")
    report(queue, "w", grant, "ok", 1)
    after = queue.histograms().result()
    for family in ("duration", "wait"):
        old, new = before[family]["types"]["echo"], after[family]["types"]["echo"]
        assert new["count"] == old["count"] + 1 == 4
        assert all(b >= a for a, b in zip(old["buckets"], new["buckets"], strict=True))
