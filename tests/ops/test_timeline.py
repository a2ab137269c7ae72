"""A job's life on its page, in a real headless Chromium: the timeline (a waterfall
drawn from the queue's records: the wait to the first run, an attempt that failed and
was retried, one that took a named step and parked in a durable sleep, the sleep, the
run that completed, the end; and a sleep still open), the log lines each attempt
emitted, and the job's trace id, which links to the trace viewer that
``$DOTDO_TRACE_URL`` names. The same facts over HTTP (the
timeline and logs routes, answers checked against the OpenAPI schema) and from
``dotdo jobs logs``.

The traced job runs in a program of its own (objects in process, tracing on with an
in-memory exporter, the dashboard served on a free port): turning tracing on here
would trace every later test of this process. ``DOTDO_SCREENSHOTS=docs/img`` also
writes its page as ``job-timeline.png``.

Needs Debian's ``chromium`` and ``chromium-driver`` (see tests/ops/test_dashboard.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

import pytest
from click.testing import CliRunner

import dotdo
from dotdo.ops.cli import main
from tests.conftest import ROOT, wait_for
from tests.ops import test_dashboard as dashboard
from tests.ops.parked_jobs import parked  # and its handlers: ops-nap
from tests.ops.test_api import _ask, _conforms
from tests.ops.test_dashboard import WAIT, Page

# The dashboard tests' fixtures: the browser, the app serving this process's objects,
# the page opened with the admin token.
driver, server, page = dashboard.driver, dashboard.server, dashboard.page

TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}"
BANK = "https://bank.example.com/charge"  # the handler's failure names it
SHOT = "job-timeline.png"  # in $DOTDO_SCREENSHOTS, for docs/operations.md
# The life of the job below, bar by bar: (kind, label, state).
LIFE = [("queued", "enqueued", "enqueued"), ("attempt", "attempt 1", "retried"),
        ("attempt", "attempt 2", "parked"), ("step", "step charge-7", "done"),
        ("sleep", "sleep#1", "done"), ("attempt", "attempt 3", "completed"),
        ("finished", "completed", "completed")]
PAYLOAD = {"order": 7, "work": 0.15, "nap": 0.6}


@dotdo.job("tl-charge")
async def charge(payload):
    """Logs, works a moment, fails on its first attempt; then takes a named step and
    sleeps durably; the run resumed after the sleep replays the step and completes.
    Three runs, each logging its line. (The traced program imports it from here.)"""
    order = payload["order"]
    logging.getLogger("shop.payments").warning("charging order %s", order)
    await asyncio.sleep(payload["work"])  # the bank's answer, on its way
    if dotdo.current_job()["attempt"] == 1:
        raise ConnectionError(f"{BANK} refused the connection")
    receipt = await dotdo.do(lambda: {"charged": order}, step_id=f"charge-{order}")
    await dotdo.sleep(payload["nap"])
    return receipt


def _life(p: Page) -> list[tuple[str, str, str]]:
    return list(zip(p.attrs("timeline-bar", "data-kind"), p.attrs("timeline-bar", "data-label"),
                    p.attrs("timeline-bar", "data-state")))


def _lefts(p: Page) -> list[float]:
    """Where each bar of the timeline begins on its axis, top row first."""
    return [float(x) for x in p.attrs("timeline-bar", "data-x")]


def _sees_the_life_of_the_job(p: Page, q: str, job_id: str) -> None:
    p.open(f"#/jobs/{q}/{job_id}")
    p.wait_text("job-status", "completed")
    # The timeline: each bar in the order it began, on one axis, left to right
    p.until(lambda d: _life(p) == LIFE, "the life of the job, bar by bar")
    lefts = _lefts(p)
    assert lefts == sorted(lefts) and lefts[0] < lefts[-1], lefts
    # each bar with its duration and state; marks (the step, the end) with their state
    took = [t.text for t in p.d.find_elements(
        "css selector", '[data-test="timeline-bar"] .took')]
    for (kind, _, state), text in zip(LIFE, took):
        pattern = rf"\d+(\.\d+)? (ms|s) · {state}" if kind not in ("step", "finished") else state
        assert re.fullmatch(pattern, text), (kind, text)
    # The logs: each run's own line, under its attempt, oldest first
    p.until(lambda d: len(p.all("log-line")) == 3, "the log line of each run")
    groups = p.attrs("log-attempt", "data-attempt")
    assert groups == ["1", "2", "3"], groups  # numbered as the runs of the attempts table
    assert [m.text for m in p.all("log-message")] == ["charging order 7"] * 3
    assert set(p.attrs("log-line", "data-level")) == {"WARNING"}


def test_the_job_page_shows_the_life_of_a_job_and_its_log_lines(
        page, server, make_local, start_worker, unique, local_root, monkeypatch):
    # Given a job that fails once, is retried, takes a step, sleeps durably, completes
    q = f"charges-{hashlib.sha1(unique.encode()).hexdigest()[:6]}"
    queue = make_local("Queue", q)
    start_worker(q)
    job_id = queue.enqueue("tl-charge", PAYLOAD, max_retries=1).result()["$id"]
    dotdo.get(queue.wait(job_id, timeout=WAIT))

    # Then its page draws it bar by bar and shows each attempt's log line; no trace
    # (tracing is off), so no link
    _sees_the_life_of_the_job(page, q, job_id)
    assert page.text("job-trace").startswith("none")
    assert not page.all("job-trace-link")

    # And the API answers the same, as its schema documents
    admin = {"Authorization": f"Bearer {server.tokens.token}"}
    spec = json.loads(_ask(server.url, "GET", "/openapi.json", headers=admin)[2])
    for route, path, status in [
            ("/api/jobs/{q}/{job_id}/timeline", f"/api/jobs/{q}/{job_id}/timeline", 200),
            ("/api/jobs/{q}/{job_id}/timeline", f"/api/jobs/{q}/ghost/timeline", 404),
            ("/api/jobs/{q}/{job_id}/timeline", "/api/jobs/ghost/x/timeline", 404),
            ("/api/jobs/{q}/{job_id}/logs", f"/api/jobs/{q}/{job_id}/logs?limit=2", 200),
            ("/api/jobs/{q}/{job_id}/logs", f"/api/jobs/{q}/{job_id}/logs?limit=0", 400),
            ("/api/jobs/{q}/{job_id}/logs", f"/api/jobs/{q}/ghost/logs", 404),
            ("/api/status", "/api/status", 200)]:
        answer = _ask(server.url, "GET", path, headers=admin)
        assert answer[0] == status, (path, answer)
        _conforms(spec, "GET", route, *answer)
    timeline = json.loads(_ask(server.url, "GET", f"/api/jobs/{q}/{job_id}/timeline",
                               headers=admin)[2])
    assert [(b["kind"], b["label"], b["state"]) for b in timeline["bars"]] == LIFE
    attempt = timeline["bars"][1]
    assert attempt["worker"] == f"{q}-w1" and BANK in attempt["error"]
    assert timeline["bars"][2]["detail"] == "parked at sleep#1"
    assert [b["attempt"] for b in timeline["bars"][3:5]] == [2, 2]  # met by the second run
    assert timeline["end"] == timeline["bars"][-1]["start"] and timeline["traceId"] is None
    lines = json.loads(_ask(server.url, "GET", f"/api/jobs/{q}/{job_id}/logs?limit=2",
                            headers=admin)[2])
    assert [(line["attempt"], line["logger"]) for line in lines] == [(1, "shop.payments"),
                                                                     (2, "shop.payments")]
    # The trace viewer's address is the server's setting, read when asked
    status = json.loads(_ask(server.url, "GET", "/api/status", headers=admin)[2])
    assert status["traceUrl"] is None
    monkeypatch.setenv("DOTDO_TRACE_URL", TRACE_URL)
    status = json.loads(_ask(server.url, "GET", "/api/status", headers=admin)[2])
    assert status["traceUrl"] == TRACE_URL

    # A job still sleeping: its open sleep runs to now, and so does the axis
    napping = queue.enqueue("ops-nap", 3600).result()["$id"]
    wait_for(lambda: parked(queue, napping, "sleeping"), timeout=WAIT)
    page.open(f"#/jobs/{q}/{napping}")
    page.until(lambda d: _life(page) == [("queued", "enqueued", "enqueued"),
                                         ("attempt", "attempt 1", "parked"),
                                         ("sleep", "sleep#1", "open")], "the sleeping job's life")
    assert page.attrs("timeline-bar", "data-open") == ["false", "false", "true"]
    assert "so far" in page.text("timeline-span")
    sleeping = json.loads(_ask(server.url, "GET", f"/api/jobs/{q}/{napping}/timeline",
                               headers=admin)[2])
    nap = sleeping["bars"][-1]
    assert (nap["end"], nap["duration"], sleeping["end"]) == (None, None, None)
    assert nap["until"] > sleeping["now"] >= nap["start"]
    queue.cancel(napping).result()

    # And `dotdo jobs logs` prints the lines, as text or as JSON
    def logs(*more: str) -> str:
        result = CliRunner().invoke(main, ["--in-process", "--storage", str(local_root), "jobs",
                                           "logs", q, job_id, *more])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout

    text = logs().splitlines()
    records = json.loads(logs("--json"))
    assert len(text) == len(records) == 3, text
    for line, record in zip(text, records):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} WARNING "
                            rf"\[attempt {record['attempt']}\] shop\.payments: charging order 7",
                            line), line


# The traced program: objects in process, tracing on (spans kept in memory), the job
# above run to its end, the dashboard served; it prints where, then serves until its
# stdin closes.
_TRACED = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
trace.set_tracer_provider(provider)

import dotdo
from dotdo.ops import serve
from dotdo.ops.api import create_app
from dotdo.ops.auth import Tokens
from dotdo.ops.service import Service
from tests.ops import test_timeline  # noqa: F401  (the tl-charge handler)

storage, payload = sys.argv[1], json.loads(sys.argv[2])
dotdo.init(in_process=True, storage=storage, tracing=True)
queue = dotdo.Queue("orders")
worker = dotdo.Worker("orders-w1")
worker.start("orders", concurrency=2, backoff=0.01).result()
job = queue.enqueue("tl-charge", payload, max_retries=1, job_id="charge-order-7").result()
dotdo.get(queue.wait(job["$id"], timeout=120))
tokens = Tokens.load_or_create(storage)
running = serve.start_in_background(create_app(Service(), tokens), host="127.0.0.1", port=0)
print(json.dumps({"url": running.url, "token": tokens.token, "queue": "orders",
                  "job": job["$id"]}), flush=True)
sys.stdin.read()
running.stop()
worker.stop(drain=False).result()
"""


@pytest.fixture
def traced(tmp_path):
    """The traced program, serving its dashboard: ``{"url", "token", "queue", "job"}``."""
    errors = open(tmp_path / "stderr", "w+")  # read once the program ended
    program = subprocess.Popen(
        [sys.executable, "-c", _TRACED, str(tmp_path / ".dotdo"), json.dumps(PAYLOAD)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DOTDO_TRACE_URL": TRACE_URL},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        line = program.stdout.readline()
        if not line:
            program.wait()
            errors.seek(0)
            raise AssertionError(f"the traced program ended ({program.returncode}):\n"
                                 f"{errors.read()}")
        yield json.loads(line)
    finally:
        program.stdin.close()
        try:
            program.wait(timeout=60)
        except subprocess.TimeoutExpired:
            program.kill()
            program.wait()
        errors.close()


def test_a_traced_jobs_page_links_its_trace_and_its_log_lines_carry_it(driver, traced, tmp_path):
    # Given a traced job's page, served with DOTDO_TRACE_URL set
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver.get_log("browser")
    p = Page(driver, f"{traced['url']}/?token={traced['token']}", shots)

    # Then it shows the same life, and the trace id links to the trace viewer
    _sees_the_life_of_the_job(p, traced["queue"], traced["job"])
    link = p.one("job-trace-link")
    trace_id = link.text
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id), trace_id
    assert link.get_attribute("href") == TRACE_URL.replace("{trace_id}", trace_id)
    assert link.get_attribute("target") == "_blank"
    # and each log line names the trace it was logged in: the job's
    titles = p.attrs("log-line", "title")
    assert titles and all(t.startswith(f"trace {trace_id} · span ") for t in titles), titles
    errors = [e for e in p.console_errors() if "Failed to load resource" not in e]
    assert not errors, errors
    _picture(p)


def _picture(p: Page) -> None:
    """The job page as the docs show it, when ``$DOTDO_SCREENSHOTS`` names a folder:
    the whole page (the timeline, the attempts and the logs), 1280 px wide."""
    folder = os.environ.get("DOTDO_SCREENSHOTS")
    if not folder:
        return
    p.d.execute_script("document.getElementById('notice').hidden = true")
    height = p.d.execute_script("return document.documentElement.scrollHeight")
    width = p.d.execute_script("return document.documentElement.clientWidth")
    p.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(height, 2400), "deviceScaleFactor": 1, "mobile": False})
    try:
        p.until(lambda d: p.all("timeline-bar"), "the timeline, redrawn at the new size")
        os.makedirs(folder, exist_ok=True)
        path = p.shots / SHOT
        p.d.save_screenshot(str(path))
        shutil.copyfile(path, os.path.join(folder, SHOT))
    finally:
        p.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False})


def test_the_trace_link_is_built_from_the_servers_template(page, server):
    # The page's rule, as the browser runs it: {trace_id} replaced, else appended;
    # nothing but http(s) addresses
    page.open("#/")
    module = urllib.parse.urljoin(server.url + "/", "static/views/job.js")
    cases = [(TRACE_URL, "http://jaeger.example:16686/trace/ab12"),
             ("https://tempo.example/explore?trace=", "https://tempo.example/explore?trace=ab12"),
             ("javascript:alert(1)//{trace_id}", None), (None, None)]
    for template, href in cases:
        got = page.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "import(arguments[0]).then((m) => done(m.traceHref(arguments[1], 'ab12')));",
            module, template)
        assert got == href, (template, got)
