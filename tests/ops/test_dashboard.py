"""The dashboard in a real headless Chromium (selenium), served by the real app (the
HTTP API over a ``Service``) on objects in this process, with a worker working the
queue: each page loads and shows what the service knows; retry, bulk retry, pause
and concurrency are clicked and the service confirms them; errors from the API show
in the banner; screenshots are saved (to the test's tmp dir, and the overview and a
job page also to ``$DOTDO_SCREENSHOTS`` when set, as the docs' pictures). Parked jobs
(sleeping, waiting for an awakeable or a child) show what they wait for and their
points, and their awakeables are approved and rejected from the job page.

Needs Debian's ``chromium`` and ``chromium-driver``; without them every test here
skips and says what to install.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

import dotdo
from tests.conftest import wait_for
from tests.ops.parked_jobs import parked  # and its handlers: ops-approve, ops-nap, ops-parent

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
INSTALL = ("install chromium and chromium-driver (apt-get install chromium chromium-driver) "
           "to run the browser tests")
# CI (.ci/run) sets DOTDO_REQUIRE_BROWSER=1: there a missing browser fails the run.
REQUIRED = os.environ.get("DOTDO_REQUIRE_BROWSER") == "1"
if not (CHROMIUM and CHROMEDRIVER):
    if REQUIRED:
        pytest.fail(f"DOTDO_REQUIRE_BROWSER=1 but no chromium/chromedriver: {INSTALL}",
                    pytrace=False)
    pytest.skip(INSTALL, allow_module_level=True)
try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoAlertPresentException,
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - selenium is in the test extra
    if REQUIRED:
        pytest.fail("DOTDO_REQUIRE_BROWSER=1 but selenium is missing: pip install -e '.[test]'",
                    pytrace=False)
    pytest.skip(f"pip install selenium, and {INSTALL}", allow_module_level=True)

from dotdo.ops.service import Service  # noqa: E402

WAIT = 30.0  # seconds any one thing may take to show; never a bound on how fast
SIZE = (1280, 800)
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={SIZE[0]},{SIZE[1]}")
# Pictures for docs/img when $DOTDO_SCREENSHOTS names a folder (e.g. docs/img).
DOCS_SHOTS = {"overview": "dashboard-overview.png", "job": "dashboard-job.png"}
HOOK = "https://hooks.example.com/orders"
NONE = "\u2013"  # an en dash: what the pages show for "no value"


# -- what the queue runs ------------------------------------------------------------------

@dotdo.job("dash-email")
def dash_email(payload):
    return {"sent": payload}


@dotdo.job("dash-webhook")
def dash_webhook(payload):
    """Fails while the file ``payload["gate"]`` exists (the endpoint is "down"): the
    test deletes it, then clicks retry."""
    if os.path.exists(payload["gate"]):
        raise ConnectionError(f"{HOOK} refused the connection")
    return {"delivered": payload["n"]}


class DashNotebook(dotdo.DurableObject):
    """An object with keys, a table of its own, a schedule and a journaled step."""

    @dotdo.every(1).hours
    def hourly_digest(self):
        self.storage.put("digests", self.storage.get("digests", 0) + 1)

    async def write(self, title: str) -> int:
        self.storage.put("title", title)
        self.storage.sql.execute("CREATE TABLE IF NOT EXISTS pages (n INTEGER, body TEXT)")
        self.storage.sql.execute("INSERT INTO pages VALUES (1, ?)", (title,))
        return await dotdo.do(lambda: len(title), step_id="count-title")


# -- the server, the worker and the browser ----------------------------------------------

@pytest.fixture
def server(local_session, local_root):
    """The real app (auth, routes, static pages) on a free port of 127.0.0.1, over a
    Service on this process's objects; ``server.tokens`` to open it with."""
    from dotdo.ops import serve
    from dotdo.ops.api import create_app
    from dotdo.ops.auth import Tokens

    tokens = Tokens.load_or_create(str(local_root))
    running = serve.start_in_background(create_app(Service(), tokens), host="127.0.0.1", port=0)
    running.tokens = tokens
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def qid(unique) -> str:
    """The test's queue: a short readable name (it shows in the screenshots), its own."""
    return f"orders-{hashlib.sha1(unique.encode()).hexdigest()[:6]}"


@pytest.fixture
def queue(make_local, qid, start_worker):
    """A queue with an in-process worker on it (stopped at the end)."""
    q = make_local("Queue", qid)
    start_worker(qid)
    return q


@pytest.fixture
def gate(tmp_path) -> Path:
    """While this file exists, dash-webhook jobs fail."""
    path = tmp_path / "gate"
    path.touch()
    return path


def webhook(q, gate: Path, n: int) -> str:
    """Enqueue a webhook job that fails (while the gate is there) and stays failed; its id."""
    return q.enqueue("dash-webhook", {"url": HOOK, "order": 1000 + n, "n": n, "gate": str(gate)},
                     max_retries=0).result()["$id"]


def settle(q, **counts):
    """Wait until the queue's counts are as given (and nothing left to run)."""
    def done():
        m = q.get_metrics().result()
        busy = m.pending + m.running + m.delayed + m.retrying + m.waiting
        return busy == 0 and all(getattr(m, k) == v for k, v in counts.items())
    wait_for(done, timeout=WAIT)


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    # The page itself 1280x800 (the window size includes the browser's own frame).
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": SIZE[0], "height": SIZE[1], "deviceScaleFactor": 1, "mobile": False})
    yield browser
    browser.quit()


class Page:
    """The dashboard in the browser: open a route, find by data-test, wait."""

    def __init__(self, driver, url: str, shots: Path) -> None:
        self.d = driver
        self.url = url
        self.shots = shots

    def open(self, route: str = "#/") -> Page:
        self.d.get(self.url + route)
        self.until(lambda d: d.find_element(By.ID, "view").get_attribute("aria-busy") == "false",
                   f"the page {route} to load")
        return self

    def go(self, route: str) -> Page:
        """Navigate inside the page (hash change): no reload."""
        self.d.execute_script("window.location.hash = arguments[0]", route)
        self.until(lambda d: d.execute_script(
            "return document.getElementById('view').getAttribute('aria-busy')") == "false"
            and d.execute_script("return window.location.hash") == route, f"{route} to load")
        return self

    def until(self, condition, what: str):
        waiting = WebDriverWait(self.d, WAIT, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException, NoAlertPresentException))
        try:
            return waiting.until(condition)
        except TimeoutException:
            # Read the page only now: touching it while a confirm() is open dismisses it.
            raise AssertionError(f"waited {WAIT} s for {what}; error banner: {self.banner()!r}"
                                 ) from None

    def all(self, test: str, within=None):
        return (within or self.d).find_elements(By.CSS_SELECTOR, f'[data-test="{test}"]')

    def one(self, test: str, within=None):
        return (within or self.d).find_element(By.CSS_SELECTOR, f'[data-test="{test}"]')

    def text(self, test: str, within=None) -> str:
        # Live updates replace elements: one replaced between finding and reading it
        # is found again.
        for _ in range(20):
            try:
                return self.one(test, within).text
            except StaleElementReferenceException:
                continue
        return self.one(test, within).text

    def attrs(self, test: str, name: str) -> list[str]:
        """Attribute ``name`` of every [data-test=test], read at once (a live redraw in
        between: read again)."""
        for _ in range(20):
            try:
                return [e.get_attribute(name) for e in self.all(test)]
            except StaleElementReferenceException:
                continue
        return [e.get_attribute(name) for e in self.all(test)]

    def row_status(self, job_id: str) -> str:
        """The status a job's row shows, or "gone" once a live reload took it out of
        the tab."""
        rows = self.d.find_elements(By.CSS_SELECTOR, f'[data-test="job-row"][data-job="{job_id}"]')
        return rows[0].get_attribute("data-status") if rows else "gone"

    def wait_text(self, test: str, expected: str, within=None) -> None:
        self.until(lambda d: expected in self.one(test, within).text,
                   f"{expected!r} in [data-test={test}]")

    def css(self, selector: str):
        return self.d.find_element(By.CSS_SELECTOR, selector)

    def banner(self) -> str:
        try:
            el = self.d.find_element(By.ID, "error-banner")
            return el.text if el.is_displayed() else ""
        except Exception:  # noqa: BLE001 - no page yet
            return ""

    def shot(self, name: str) -> Path:
        # A notice of the last click floats over the page for a few seconds: not in pictures.
        self.d.execute_script("document.getElementById('notice').hidden = true")
        path = self.shots / f"{name}.png"
        self.d.save_screenshot(str(path))
        folder = os.environ.get("DOTDO_SCREENSHOTS")
        if folder and name in DOCS_SHOTS:
            os.makedirs(folder, exist_ok=True)
            shutil.copyfile(path, os.path.join(folder, DOCS_SHOTS[name]))
        return path

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.d.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture
def page(driver, server, tmp_path):
    """The dashboard, opened with the admin token (as `dotdo dashboard` opens it)."""
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver.get_log("browser")  # drop what earlier tests left
    p = Page(driver, f"{server.url}/?token={server.tokens.token}", shots)
    yield p
    # Failed requests (the 404s a test asks for) are the banner's business; anything
    # else on the console (a script error) fails the test.
    errors = [e for e in p.console_errors() if "Failed to load resource" not in e]
    assert not errors, f"the browser console has errors: {errors}"


def run(coro):
    import asyncio
    return asyncio.run(coro)


# -- tests ---------------------------------------------------------------------------------

def test_overview_shows_each_queue_with_counts_chart_and_stats_live(page, queue, gate, qid):
    for i in range(12):
        queue.enqueue("dash-email", {"i": i}).result()
    webhook(queue, gate, 1)
    settle(queue, completed=12, failed=1)

    page.open("#/")
    assert "token=" not in page.d.current_url  # taken out of the address bar
    card = page.css(f'[data-test="queue-card"][data-queue="{qid}"]')
    assert page.text("count-completed", card).startswith("12")
    assert page.text("count-failed", card).startswith("1")
    assert page.text("queue-state", card) == "active"
    page.until(lambda d: page.all("throughput-chart", card), "the chart")
    page.until(lambda d: page.text("duration", card) != f"{NONE} / {NONE}", "p50/p95 durations")
    assert "%" in page.text("failure-rate", card)
    assert page.text("oldest-pending", card) == NONE
    assert page.css(f'[data-test="queue-card"][data-queue="{qid}"] svg .bar-completed')
    assert page.css(f'[data-test="queue-card"][data-queue="{qid}"] svg .bar-failed')

    # Live: a job done after the page loaded shows without a reload, in the counts and
    # in the event feed (from the event stream, or polling when it is down).
    job_id = queue.enqueue("dash-email", {"late": True}).result()["$id"]
    page.until(lambda d: page.text("count-completed", page.css(
        f'[data-test="queue-card"][data-queue="{qid}"]')).startswith("13"), "the live count")
    page.until(lambda d: job_id in page.text("event-feed"), "the job's event in the feed")
    page.until(lambda d: page.text("totals", page.css(
        f'[data-test="queue-card"][data-queue="{qid}"]')).startswith("13 done"), "the live stats")
    assert page.text("live-status") in ("live", "polling")
    page.shot("overview")


def test_counts_are_polled_when_the_event_stream_is_unavailable(page, queue, qid):
    """Without EventSource (or with the stream down) the pages still move: polling."""
    script = page.d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                    {"source": "delete window.EventSource;"})
    try:
        page.open("#/")
        card = f'[data-test="queue-card"][data-queue="{qid}"]'
        assert page.text("count-completed", page.css(card)) == "0\ncompleted"
        queue.enqueue("dash-email", "polled").result()
        page.until(lambda d: page.text("count-completed", page.css(card)).startswith("1"),
                   "the polled count")
        page.until(lambda d: page.text("totals", page.css(card)).startswith("1 done"),
                   "the stats reloaded after the polled count")
        assert page.text("live-status") == "polling"
    finally:
        page.d.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                               {"identifier": script["identifier"]})


def test_retry_a_failed_job_on_its_page_and_see_it_complete(page, queue, gate, qid):
    queue.enqueue("dash-email", {"before": 1}).result()
    job_id = webhook(queue, gate, 7)
    settle(queue, failed=1, completed=1)

    page.open(f"#/jobs/{qid}/{job_id}")
    assert page.text("job-status") == "failed"
    assert f"ConnectionError: {HOOK} refused the connection" in page.text("job-error")
    assert '"n": 7' in page.text("job-payload")
    (attempt,) = page.all("attempt")
    assert attempt.get_attribute("data-outcome") == "failed"
    assert "ConnectionError" in page.text("attempt-error", attempt)
    page.one("traceback", attempt).click()  # opens the <details>
    assert "dash_webhook" in page.css('[data-test="traceback"] pre.trace').text
    assert not page.one("job-retry").get_attribute("disabled")
    assert page.one("job-cancel").get_attribute("disabled")

    gate.unlink()
    page.one("job-retry").click()
    page.wait_text("job-status", "completed")
    page.until(lambda d: page.attrs("attempt", "data-outcome") == ["failed", "completed"],
               "the second attempt, completed")
    page.wait_text("job-result", '"delivered": 7')
    assert run(Service().job(qid, job_id))["status"] == "completed"
    if page.one("traceback").get_attribute("open") is None:  # open in the picture
        page.one("traceback").click()
    page.shot("job")


def test_queue_page_tabs_search_row_retry_and_bulk_retry(page, queue, gate, qid):
    echo = queue.enqueue("dash-email", {"x": 1}).result()["$id"]
    failed = [webhook(queue, gate, n) for n in range(3)]
    settle(queue, failed=3, completed=1)

    page.open(f"#/queues/{qid}")
    assert page.text("queue-name") == qid
    assert page.text("tab-failed").endswith("3") and page.text("tab-completed").endswith("1")
    page.one("tab-failed").click()
    page.until(lambda d: "status=failed" in d.current_url and len(page.all("job-row")) == 3,
               "the failed tab")
    assert set(page.attrs("job-row", "data-job")) == set(failed)
    assert all("ConnectionError" in r.text for r in page.all("job-row"))
    page.shot("queue-failed")

    # One row's retry: the job goes back to the queue and completes.
    gate.unlink()
    row = page.css(f'[data-test="job-row"][data-job="{failed[0]}"]')
    page.one("retry", row).click()
    page.until(lambda d: page.row_status(failed[0]) != "failed", "the retried row to leave failed")
    wait_for(lambda: queue.get(failed[0]).result()["status"] == "completed", timeout=WAIT)
    page.until(lambda d: page.text("tab-failed").endswith("2"), "the failed count to drop")

    # Retry all failed, after a confirm().
    assert page.text("retry-all") == "Retry all failed (2)"
    page.one("retry-all").click()
    alert = page.until(lambda d: d.switch_to.alert, "the confirm dialog")
    assert "Retry all 2 failed jobs" in alert.text
    alert.accept()
    settle(queue, failed=0, completed=4)
    page.until(lambda d: page.text("tab-failed").endswith("0"), "no failed jobs left")
    page.until(lambda d: page.one("retry-all").get_attribute("disabled"), "the bulk button off")

    # Search: an exact job id opens the job; anything else filters by type.
    page.go(f"#/queues/{qid}?status=all")
    page.one("search-input").send_keys(echo)
    page.one("search-submit").click()
    page.until(lambda d: page.text("job-id") == echo, "the searched job's page")
    page.go(f"#/queues/{qid}?status=all")
    page.one("search-input").send_keys("dash-email")
    page.one("search-submit").click()
    page.until(lambda d: "type=dash-email" in d.current_url and page.all("type-filter"), "the filter")
    page.until(lambda d: page.attrs("job-row", "data-job") == [echo],
               "only the dash-email job")


def test_parked_jobs_show_their_waits_and_approve_and_reject_settle_their_awakeables(
        page, queue, qid):
    # Given a sleeping job, a parent waiting for its child, and the child and another
    # job waiting for a person (their awakeables)
    napping = queue.enqueue("ops-nap", 3600).result()["$id"]
    boss = queue.enqueue("ops-parent", {"order": 7}).result()["$id"]
    child = f"{boss}.child1"
    asking = queue.enqueue("ops-approve", None).result()["$id"]
    wait_for(lambda: parked(queue, napping, "sleeping") and parked(queue, boss)
             and parked(queue, child) and parked(queue, asking), timeout=WAIT)

    # Then the overview and the queue page count the sleeping state, and each row says
    # what the job waits for and when it wakes
    page.open("#/")
    card = page.css(f'[data-test="queue-card"][data-queue="{qid}"]')
    assert page.text("count-sleeping", card).startswith("1")
    assert page.text("count-waiting", card).startswith("3")
    page.shot("overview-parked")
    page.open(f"#/queues/{qid}")
    assert page.text("tab-sleeping").endswith("1") and page.text("tab-waiting").endswith("3")
    page.one("tab-sleeping").click()
    page.until(lambda d: "status=sleeping" in d.current_url
               and page.attrs("job-row", "data-job") == [napping], "the sleeping tab")
    assert re.match(r"wakes in 5\d m", page.text("job-waits"))  # within the hour
    page.go(f"#/queues/{qid}?status=waiting")
    row = page.css(f'[data-test="job-row"][data-job="{child}"]')
    assert page.text("job-waits", row) == "waits for awakeable wait#1 · no timeout"
    row = page.css(f'[data-test="job-row"][data-job="{boss}"]')
    assert page.text("job-waits", row).startswith("waits for child job child#1")
    page.shot("queue-waiting")

    # The sleeping job's page: when it wakes, and its points
    page.open(f"#/jobs/{qid}/{napping}")
    assert page.text("job-status") == "sleeping"
    assert page.text("job-waiting-for") == "sleep sleep#1"
    assert re.search(r"\(wakes in 5\d m \d\d s\)", page.text("job-wake"))
    assert page.attrs("point", "data-key") == ["sleep#1"]

    # The parent links to its child, the child back to its parent
    page.open(f"#/jobs/{qid}/{boss}")
    assert page.text("job-waiting-for") == "child job child#1"
    assert page.attrs("point", "data-key") == ["child#1"]
    page.one("child-link").click()
    page.until(lambda d: page.text("job-id") == child, "the child's page")
    assert page.text("job-parent") == boss
    assert page.attrs("point", "data-key") == ["awakeable#1", "wait#1"]
    assert page.attrs("point", "data-state") == ["open", "open"]
    assert page.text("awakeable-token").startswith("awk_")

    # When Approve is clicked with a value, the child completes with it, then the parent
    awakeable = page.css('[data-test="awakeable"][data-key="awakeable#1"]')
    page.one("awakeable-value", awakeable).send_keys('{"ok": true}')
    page.shot("job-parked")
    page.one("awakeable-approve", awakeable).click()
    page.wait_text("job-status", "completed")
    page.wait_text("job-result", '"ok": true')
    assert page.attrs("awakeable", "data-state") == ["done"] and not page.all("awakeable-approve")
    assert page.attrs("point", "data-state") == ["done", "done"]
    page.one("job-parent").click()
    page.until(lambda d: page.text("job-id") == boss, "the parent's page")
    page.wait_text("job-status", "completed")
    assert run(Service().result(qid, boss))["output"] == {"child": {"approved": {"ok": True}}}

    # Reject asks for the reason, and the job's wait raises with it
    page.open(f"#/jobs/{qid}/{asking}")
    page.one("awakeable-reject").click()
    prompt = page.until(lambda d: d.switch_to.alert, "the reason prompt")
    prompt.send_keys("no budget")
    prompt.accept()
    page.wait_text("job-status", "completed")
    page.wait_text("job-result", "no budget")
    assert queue.result(asking).result()["output"] == {"rejected": "no budget"}


def test_pause_resume_and_concurrency_from_the_queue_page(page, queue, qid):
    queue.enqueue("dash-email", 1).result()
    settle(queue, completed=1)
    page.open(f"#/queues/{qid}")
    assert page.text("queue-state") == "active" and page.text("pause-toggle") == "Pause"

    page.one("pause-toggle").click()
    page.wait_text("queue-state", "paused")
    assert page.text("pause-toggle") == "Resume"
    assert queue.get_metrics().result().paused
    assert run(Service().queue(qid))["paused"] is True
    # A paused queue hands out nothing: jobs enqueued now wait, counted live.
    ids = [j["$id"] for j in queue.enqueue_many(
        [{"type": "dash-email", "payload": n} for n in range(28)]).result()]
    page.until(lambda d: page.text("tab-pending").endswith("28"), "the waiting jobs counted live")
    page.open(f"#/queues/{qid}")  # and a reload shows the same
    assert page.text("queue-state") == "paused"
    page.open("#/")
    assert page.text("queue-state", page.css(f'[data-queue="{qid}"]')) == "paused"
    page.shot("overview-paused")

    # Pages of 25 with the cursor; cancel one job of the second page.
    page.open(f"#/queues/{qid}?status=pending")
    assert page.attrs("job-row", "data-job") == ids[:25]
    page.one("page-next").click()
    page.until(lambda d: page.text("page-number") == "page 2", "the second page")
    assert page.attrs("job-row", "data-job") == ids[25:]
    assert page.one("page-next").get_attribute("disabled")
    page.one("cancel", page.css(f'[data-test="job-row"][data-job="{ids[-1]}"]')).click()
    alert = page.until(lambda d: d.switch_to.alert, "the confirm dialog")
    assert ids[-1] in alert.text
    alert.accept()
    page.until(lambda d: page.row_status(ids[-1]) in ("cancelled", "gone"), "the job cancelled")
    assert queue.get(ids[-1]).result()["status"] == "cancelled"
    page.one("page-first").click()
    page.until(lambda d: page.text("page-number") == "page 1", "the first page again")

    page.one("pause-toggle").click()
    page.wait_text("queue-state", "active")
    settle(queue, completed=28, cancelled=1)

    box = page.one("concurrency-input")
    box.clear()
    box.send_keys("3")
    page.one("concurrency-save").click()
    wait_for(lambda: queue.settings().result()["concurrency"] == 3, timeout=WAIT)
    page.wait_text("notice", "concurrency")
    page.open(f"#/queues/{qid}")
    assert page.one("concurrency-input").get_attribute("value") == "3"


def test_workers_schedules_dead_letters_and_objects_pages(page, queue, gate, qid, make_local):
    ids = [webhook(queue, gate, n) for n in range(2)]
    queue.enqueue("dash-email", 1).result()
    settle(queue, failed=2, completed=1)
    notebook_id = qid.replace("orders", "notebook")
    notebook = make_local("DashNotebook", notebook_id)
    assert notebook.write("<b>not bold</b>").result() == len("<b>not bold</b>")

    page.open("#/workers")
    row = page.css(f'[data-test="worker-row"][data-worker="{qid}-w1"]')
    assert qid in row.text and page.text("worker-online", row) == "online"
    page.shot("workers")

    page.open("#/schedules")
    rows = [r for r in page.all("schedule-row") if notebook_id in r.text]
    assert rows and "hourly_digest" in rows[0].get_attribute("data-name")
    assert "DashNotebook" in rows[0].text
    page.shot("schedules")

    page.open(f"#/dead/{qid}")
    (group,) = page.all("dead-group")
    assert page.text("dead-count", group) == "2"
    assert f"ConnectionError: {HOOK} refused the connection" in page.text("dead-error", group)
    assert {a.text for a in page.all("dead-job", group)} == set(ids)
    page.shot("dead-letters")

    page.open("#/objects")
    page.css('[data-test="class-row"][data-class="DashNotebook"] a').click()
    page.until(lambda d: page.all("object-row"), "the objects of the class")
    page.css(f'[data-test="object-row"][data-id="{notebook_id}"] a').click()
    page.until(lambda d: page.text("object-id") == notebook_id, "the object's page")
    # Text from the object is shown as text, never as markup.
    kv = page.css('[data-test="kv-row"][data-key="title"]')
    assert "<b>not bold</b>" in kv.text
    assert not page.d.find_elements(By.CSS_SELECTOR, "#view b")
    assert "pages" in page.text("tables-table")
    step = page.css('[data-test="step-row"][data-step="count-title"]')
    assert str(len("<b>not bold</b>")) in step.text
    page.shot("object")


def test_the_read_only_token_shows_the_pages_and_refuses_changes(page, server, queue, qid):
    queue.enqueue("dash-email", 1).result()
    settle(queue, completed=1)
    reader = Page(page.d, f"{server.url}/?token={server.tokens.read_token}", page.shots)
    reader.open(f"#/queues/{qid}")
    assert reader.text("tab-completed").endswith("1")
    reader.one("pause-toggle").click()
    reader.until(lambda d: "403" in reader.banner() and "read-only" in reader.banner(),
                 "the 403 in the banner")
    assert reader.text("queue-state") == "active"
    assert not queue.get_metrics().result().paused


def test_api_errors_show_in_the_banner(page, queue, qid):
    page.open("#/queues/no-such-queue")
    page.until(lambda d: "404" in page.banner() and "no-such-queue" in page.banner(), "the banner")
    page.one("error-dismiss").click()
    page.until(lambda d: page.banner() == "", "the banner to go")
    page.open(f"#/jobs/{qid}/no-such-job")
    page.until(lambda d: "no job 'no-such-job'" in page.banner(), "the job's 404")
    # A bad concurrency from the form comes back as the API's 400, shown.
    page.open(f"#/queues/{qid}")
    page.d.execute_script(
        "const i = document.querySelector('[data-test=concurrency-input]');"
        "i.removeAttribute('min'); i.value = '0';")
    page.one("concurrency-save").click()
    page.until(lambda d: "400" in page.banner() and "concurrency" in page.banner(), "the 400")
    page.shot("error-banner")
