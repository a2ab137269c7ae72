"""The HTTP API under a real uvicorn on 127.0.0.1, spoken to over real HTTP, on
objects in this process (real SQLite files): tokens, every kind of error, jobs end
to end, live events, the Prometheus scrape, and every answer against what
``/openapi.json`` documents for its route."""

import json
import os
import stat
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPConnection

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

import dotdo
from dotdo.ops import serve
from dotdo.ops.api import create_app
from dotdo.ops.auth import Tokens
from dotdo.ops.service import Service
from dotdo.waits import awakeable_token
from tests import job_handlers  # noqa: F401  (echo, doomed)
from tests.conftest import wait_for
from tests.ops.parked_jobs import parked


class Till(dotdo.DurableObject, expose=True):
    """Exposed: the API may call any of its public methods. It has a schedule and a
    journaled step, for the pages that show them."""

    def ring(self, amount: int) -> int:
        total = self.storage.get("total", 0) + amount
        self.storage.put("total", total)
        return total

    async def count(self) -> int:
        return await dotdo.do(lambda: self.storage.get("total", 0), step_id="count")

    def jam(self) -> None:
        raise RuntimeError("the till is jammed")

    @dotdo.every(1).hours
    def close_day(self) -> None:
        self.storage.put("days", self.storage.get("days", 0) + 1)


class Safe(dotdo.DurableObject):
    """Not exposed."""

    def open(self) -> str:
        return "opened"


class Client:
    """Real HTTP to the server, with a token."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url, self.token = url, token

    def __call__(self, method: str, path: str, body=None, headers=None, token=...):
        token = self.token if token is ... else token
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=90) as answer:
                return answer.status, _decode(answer.read(), answer.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read(), exc.headers)


def _decode(raw: bytes, headers):
    if headers.get("content-type", "").startswith("application/json"):
        return json.loads(raw)
    return raw.decode()


@pytest.fixture
def server(local_session, local_root):
    tokens = Tokens.load_or_create(str(local_root))
    background = serve.start_in_background(
        create_app(Service(events=["Signup"]), tokens, max_body=64 * 1024))
    yield background, tokens
    background.stop()


@pytest.fixture
def http(server):
    background, tokens = server
    return Client(background.url, tokens.token)


@pytest.fixture
def queue(make_local, unique):
    q = make_local("Queue", unique)
    q.settings().result()  # the queue exists (has a file) before the API sees it
    return q


@pytest.fixture
def worker(unique, queue, start_worker):
    return start_worker(unique)


def test_the_token_files_are_this_users_only(server, local_root):
    _, tokens = server
    for path in (tokens.path, tokens.read_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(tokens.path)).st_mode) == 0o700
    again = Tokens.load_or_create(str(local_root))
    assert (again.token, again.read_token) == (tokens.token, tokens.read_token)
    assert tokens.token != tokens.read_token
    with pytest.raises(ValueError, match="16 characters"):
        Tokens.load_or_create(str(local_root), token="short")


@pytest.mark.parametrize("path", ["/api/queues", "/metrics", "/docs", "/openapi.json", "/",
                                  "/static/app.js", "/api/events/stream"])
def test_every_route_wants_a_token(http, path):
    for token in (None, "wrong-token-of-some-length"):
        status, _ = http("GET", path, token=token)
        assert status == 401, (path, token)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(http.url + path, timeout=90)
    assert refused.value.headers["WWW-Authenticate"] == "Bearer"  # says how to authenticate
    if path == "/":  # a person at the dashboard's address is told how to open it
        assert "dotdo dashboard" in refused.value.read().decode()


def test_the_read_token_reads_but_never_writes(server, queue, unique):
    background, tokens = server
    reader = Client(background.url, tokens.read_token)
    assert reader("GET", f"/api/queues/{unique}")[0] == 200
    status, body = reader("POST", f"/api/queues/{unique}/pause", {})
    assert status == 403 and "read-only" in body["error"]
    assert queue.get_metrics().result().paused is False


def test_an_idempotency_key_gives_one_job_201_then_200(http, queue, unique):
    status, first = http("POST", f"/api/queues/{unique}/jobs", {"type": "echo", "payload": 1},
                         headers={"Idempotency-Key": "order-7"})
    assert status == 201 and first["$id"] == "order-7" and first["enqueued"] == "added"
    status, again = http("POST", f"/api/queues/{unique}/jobs", {"type": "echo", "payload": 1},
                         headers={"Idempotency-Key": "order-7"})
    assert status == 200 and again["$id"] == "order-7" and again["enqueued"] == "existing"
    status, same = http("POST", f"/api/queues/{unique}/jobs", {"type": "echo", "job_id": "order-7"})
    assert status == 200 and same["$id"] == "order-7"
    status, body = http("POST", f"/api/queues/{unique}/jobs", {"type": "echo", "job_id": "order-8"},
                        headers={"Idempotency-Key": "order-7"})
    assert status == 400 and body["field"] == "job_id"
    assert queue.count().result() == 1


def test_a_job_runs_end_to_end_over_http(http, queue, worker, unique):
    status, job = http("POST", f"/api/queues/{unique}/jobs", {"type": "echo", "payload": {"n": 1}})
    assert status == 201
    status, outcome = http("GET", f"/api/jobs/{unique}/{job['$id']}/result?wait=30")
    assert status == 200 and outcome["done"] and outcome["output"] == {"echo": {"n": 1}}
    status, page = http("GET", f"/api/queues/{unique}/jobs?status=completed&limit=10")
    assert [j["$id"] for j in page["jobs"]] == [job["$id"]] and page["cursor"] is None
    status, full = http("GET", f"/api/jobs/{unique}/{job['$id']}")
    assert full["attempts"][0]["outcome"] == "completed" and full["result"] == {"echo": {"n": 1}}
    # a longer wait than the API holds a connection for is cut to it, not refused
    assert http("GET", f"/api/jobs/{unique}/{job['$id']}/result?wait=600")[1]["done"]


def test_retry_cancel_pause_resume_and_settings(http, queue, worker, unique):
    failed = queue.enqueue("doomed", 1, max_retries=0).result()["$id"]
    wait_for(lambda: queue.get(failed).result()["status"] == "failed")
    status, groups = http("GET", f"/api/queues/{unique}/dead-letters")
    assert groups[0]["error"] == "ValueError: by design" and groups[0]["jobs"] == [failed]
    status, job = http("POST", f"/api/jobs/{unique}/{failed}/retry")
    assert status == 200 and job["status"] in ("pending", "running", "failed")
    assert http("POST", f"/api/queues/{unique}/pause")[1]["paused"] is True
    later = queue.enqueue("echo", 2, delay=3600).result()["$id"]
    status, job = http("POST", f"/api/jobs/{unique}/{later}/cancel")
    assert status == 200 and job["status"] == "cancelled"
    status, job = http("POST", f"/api/jobs/{unique}/{later}/cancel")
    assert status == 400 and "cancelled" in job["error"]
    assert http("POST", f"/api/queues/{unique}/resume")[1]["paused"] is False
    status, settings = http("PATCH", f"/api/queues/{unique}/settings", {"concurrency": 5})
    assert status == 200 and settings["concurrency"] == 5
    status, body = http("PATCH", f"/api/queues/{unique}/settings", {"rate": "fast"})
    assert status == 400 and "rate" in body["error"]
    wait_for(lambda: queue.get(failed).result()["status"] == "failed")
    status, body = http("POST", f"/api/queues/{unique}/jobs/retry", {"status": "failed"})
    assert status == 200 and body["retried"] == 1


def test_an_awakeable_is_resolved_over_http_once_and_bad_ids_are_refused(
        http, queue, worker, unique):
    # Given two jobs waiting for a person (an awakeable each)
    approved = queue.enqueue("ops-approve", None).result()["$id"]
    refused = queue.enqueue("ops-approve", None).result()["$id"]
    wait_for(lambda: parked(queue, approved) and parked(queue, refused))
    status, job = http("GET", f"/api/jobs/{unique}/{approved}")
    assert status == 200 and (job["status"], job["waitingFor"]) == ("waiting", "wait#1")
    assert "wakeAt" not in job  # a wait without a timeout
    assert [(p["key"], p["state"]) for p in job["points"]] == [("awakeable#1", "open"),
                                                               ("wait#1", "open")]
    (awakeable,) = job["awakeables"]
    token = awakeable["token"]
    other = http("GET", f"/api/jobs/{unique}/{refused}")[1]["awakeables"][0]["token"]
    assert http("GET", f"/api/queues/{unique}/jobs?status=waiting")[1]["jobs"][0]["waitingFor"] \
        == "wait#1"
    # When one is resolved over HTTP, then its job completes with the value
    status, settled = http("POST", f"/api/awakeables/{token}/resolve", {"value": {"ok": 1}})
    assert status == 200 and settled == {"token": token, "queue": unique, "job": approved,
                                         "awakeable": "awakeable#1", "settled": "resolved"}
    outcome = http("GET", f"/api/jobs/{unique}/{approved}/result?wait=30")[1]
    assert outcome["done"] and outcome["output"] == {"approved": {"ok": 1}}
    # and a second resolve or reject is 409, saying it was settled before
    for verb, body in (("resolve", {"value": 2}), ("resolve", None), ("reject", {"reason": "no"})):
        status, answer = http("POST", f"/api/awakeables/{token}/{verb}", body)
        assert status == 409 and "settled before" in answer["error"], (verb, answer)
    # The other is rejected with a reason (which it needs): its job sees the reason
    status, answer = http("POST", f"/api/awakeables/{other}/reject", {})
    assert status == 400 and answer["field"] == "reason"
    status, settled = http("POST", f"/api/awakeables/{other}/reject", {"reason": "no budget"})
    assert status == 200 and settled["settled"] == "rejected"
    outcome = http("GET", f"/api/jobs/{unique}/{refused}/result?wait=30")[1]
    assert outcome["output"] == {"rejected": "no budget"}
    # A malformed id is 400; an awakeable or a queue that is not there 404
    for bad in ("nonsense", "awk_AAAA", token[:-6]):
        status, answer = http("POST", f"/api/awakeables/{bad}/resolve")
        assert status == 400 and "awakeable's id" in answer["error"], (bad, answer)
    for ghost, says in ((awakeable_token(unique, "ghost", None, "awakeable#1"), "no awakeable"),
                        (awakeable_token("ghost-queue", "x", None, "awakeable#1"), "no queue")):
        status, answer = http("POST", f"/api/awakeables/{ghost}/reject", {"reason": "x"})
        assert status == 404 and says in answer["error"], answer
    assert "ghost-queue" not in [q["id"] for q in http("GET", "/api/queues")[1]]


def test_bad_bodies_name_the_field_and_write_nothing(http, queue, unique):
    cases = [
        (b"{not json", "body"),
        ({"payload": 1}, "type"),
        ({"type": "echo", "priority": "high"}, "priority"),
        ({"type": "echo", "colour": "red"}, "colour"),
        ({"type": "echo", "delay": -1}, "delay"),
    ]
    for body, field in cases:
        status, answer = http("POST", f"/api/queues/{unique}/jobs", body)
        assert status == 400 and answer["field"] == field, (body, answer)
    status, answer = http("POST", f"/api/queues/{unique}/jobs",
                          {"type": "echo", "payload": 1, "max_retries": "x"})
    assert status == 400 and answer["field"] == "max_retries"
    status, answer = http("GET", f"/api/queues/{unique}/jobs?limit=0")
    assert status == 400 and answer["field"] == "limit"
    assert queue.count().result() == 0


def test_a_body_over_the_limit_is_413_and_writes_nothing(http, queue, unique):
    big = {"type": "echo", "payload": "x" * (65 * 1024)}
    assert http("POST", f"/api/queues/{unique}/jobs", big)[0] == 413
    # sent in chunks, with no Content-Length to refuse it by: counted as it comes
    chunks = iter([b'{"type": "echo", "payload": "', *[b"x" * 1024] * 65, b'"}'])
    request = urllib.request.Request(f"{http.url}/api/queues/{unique}/jobs", data=chunks, headers={
        "Authorization": f"Bearer {http.token}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=90)
    assert refused.value.code == 413 and "bytes" in json.loads(refused.value.read())["error"]
    assert queue.count().result() == 0


def test_unknown_queues_jobs_classes_and_objects_are_404(http, queue, unique):
    for path in ("/api/queues/ghost", f"/api/jobs/{unique}/ghost", "/api/jobs/ghost/x",
                 "/api/objects/Ghost", f"/api/objects/Queue/{unique}-ghost"):
        status, body = http("GET", path)
        assert status == 404 and body["error"], path
    assert http("POST", "/api/queues/ghost/jobs", {"type": "echo"})[0] == 404
    assert http("GET", "/no/such/route") == (404, {"error": "Not Found"})
    assert http("POST", f"/api/objects/Ghost/{unique}/x")[0] == 404


def test_objects_and_events_only_when_exposed(http, unique):
    status, body = http("POST", f"/api/objects/Till/{unique}/ring", {"args": [5]})
    assert status == 200 and body == {"result": 5}
    status, body = http("POST", f"/api/objects/Safe/{unique}/open", {})
    assert status == 403 and "expose" in body["error"]
    assert http("POST", "/api/events/Signup.created", {"email": "a@b.c"})[0] == 202
    status, body = http("POST", "/api/events/Payment.made", {"amount": 1})
    assert status == 403 and "--events Payment" in body["error"]
    assert http("POST", "/api/events/not-an-event", {})[0] == 400


def test_the_event_stream_sends_job_events_and_counts(server, http, queue, unique):
    background, tokens = server
    request = urllib.request.Request(f"{background.url}/api/events/stream",
                                     headers={"Authorization": f"Bearer {tokens.token}"})
    seen: list[tuple[str, dict]] = []

    def read():
        with urllib.request.urlopen(request, timeout=90) as stream:
            kind = None
            for line in stream:
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    seen.append((kind, json.loads(line[6:])))
                    if kind == "job" and seen[-1][1]["queue"] == unique:
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: any(kind == "counts" for kind, _ in seen))
    job_id = queue.enqueue("echo", 1).result()["$id"]
    reader.join(timeout=90)
    counts = next(data for kind, data in seen if kind == "counts")
    assert unique in [q["id"] for q in counts]
    kind, event = seen[-1]
    assert kind == "job" and event["queue"] == unique and event["type"] == "Job.enqueued"
    assert event["data"]["$id"] == job_id


def test_prometheus_reads_the_queue_metrics_by_their_names(http, queue, worker, unique):
    ok = queue.enqueue("echo", 1).result()["$id"]
    bad = queue.enqueue("doomed", 1, max_retries=0).result()["$id"]
    wait_for(lambda: queue.get(bad).result()["status"] == "failed"
             and queue.get(ok).result()["status"] == "completed")
    queue.enqueue("echo", 2, delay=3600).result()
    napping = queue.enqueue("ops-nap", 3600).result()["$id"]
    waiting = queue.enqueue("ops-approve", None).result()["$id"]
    wait_for(lambda: parked(queue, napping, "sleeping") and parked(queue, waiting))
    status, text = http("GET", "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("queue") == unique:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    q = ("queue", unique)

    def one(name, **labels):
        return samples[(name, tuple(sorted([q, *labels.items()])))]

    assert one("dotdo_jobs_total", outcome="completed") == 1
    assert one("dotdo_jobs_total", outcome="failed") == 1
    assert one("dotdo_queue_jobs", state="delayed") == 1
    assert one("dotdo_queue_jobs", state="completed") == 1
    # parked jobs, which hold no worker: one sleeping, one waiting for its awakeable
    assert one("dotdo_queue_jobs", state="sleeping") == 1
    assert one("dotdo_queue_jobs", state="waiting") == 1
    assert one("dotdo_queue_jobs", state="running") == 0
    # histograms of the completed jobs, by type: the failed one has no series
    assert one("dotdo_job_duration_seconds_count", type="echo") == 1
    assert one("dotdo_job_wait_seconds_bucket", type="echo", le="+Inf") == 1
    assert not any(dict(labels).get("type") == "doomed" for _, labels in samples)
    assert one("dotdo_queue_oldest_pending_age_seconds") == 0
    assert one("dotdo_workers") == 1 and one("dotdo_queue_paused") == 0


def test_the_docs_and_openapi_load_with_no_outside_address(http):
    status, page = http("GET", "/docs")
    assert status == 200 and "swagger-ui-bundle.js" in page
    assert "https://" not in page and "http://" not in page
    status, spec = http("GET", "/openapi.json")
    assert status == 200 and "/api/queues/{q}/jobs" in spec["paths"]
    # Swagger UI's own files are shipped with the app
    with urllib.request.urlopen(http.url + "/docs/assets/swagger-ui-bundle.js") as js:
        assert js.status == 200 and len(js.read()) > 100_000


def test_a_token_in_the_address_sets_a_cookie_for_the_pages(server):
    background, tokens = server
    with urllib.request.urlopen(f"{background.url}/?token={tokens.read_token}") as page:
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    value = cookie.split(";")[0]
    request = urllib.request.Request(f"{background.url}/api/queues", headers={"Cookie": value})
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200


def test_a_cross_site_write_with_the_cookie_is_refused_and_changes_nothing(
        server, http, queue, worker, unique):
    # Given a finished job and a browser holding the dashboard's cookie
    background, tokens = server
    done = queue.enqueue("echo", 1).result()["$id"]
    wait_for(lambda: queue.get(done).result()["status"] == "completed")
    cookie = {"Cookie": f"dotdo_token={tokens.token}"}
    purge = f"/api/queues/{unique}/purge"
    # When a page on another port of this host posts an empty form, or a page
    # elsewhere posts with only Sec-Fetch-Site or a Referer to tell, or no header at all
    for headers in ({"Origin": "http://localhost:8888"}, {"Origin": "null"},
                    {"Origin": background.url.replace("127.0.0.1", "localhost")},
                    {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Referer": "http://127.0.0.1:8888/attack.html"}, {}):
        status, body = http("POST", purge, b"", headers={**cookie, **headers,
                            "Content-Type": "application/x-www-form-urlencoded"}, token=None)
        # Then it is refused, says what to do, and the job is still there
        assert status == 403, headers
        assert "own pages" in body["error"] and "Authorization: Bearer" in body["error"]
    status, body = http("POST", f"{purge}?token={tokens.token}", b"",
                        headers={"Origin": "http://localhost:8888"}, token=None)
    assert status == 403 and "?token=" in body["error"]
    assert queue.get(done).result()["status"] == "completed"
    # reads with the cookie from anywhere still answer (they change nothing)
    assert http("GET", f"/api/queues/{unique}", headers={**cookie, "Origin": "http://x:1"},
                token=None)[0] == 200
    # The dashboard's own page (same origin, or Sec-Fetch-Site alone) may write with it
    status, body = http("POST", f"/api/queues/{unique}/pause",
                        headers={**cookie, "Origin": background.url}, token=None)
    assert status == 200 and body["paused"] is True
    status, body = http("POST", f"/api/queues/{unique}/resume",
                        headers={**cookie, "Sec-Fetch-Site": "same-origin"}, token=None)
    assert status == 200 and body["paused"] is False
    # and a program with the bearer token needs no Origin
    status, body = http("POST", purge, {"status": "completed"})
    assert status == 200 and body["purged"] == 1
    assert queue.get(done).result() is None


def test_a_class_name_that_is_a_path_is_refused_and_paths_show_relative_to_the_root(
        server, queue, unique, local_root):
    # Given files beside the storage root, and the read-only token
    background, tokens = server
    reader = Client(background.url, tokens.read_token)
    beside = local_root.parent / "beside"
    beside.mkdir(exist_ok=True)
    (beside / "secret.sqlite3").write_bytes(b"x")
    # When it asks for a class named "..", encoded or not, then it is refused, naming the fix
    for path in ("/api/objects/%2E%2E", "/api/objects/..%2Fbeside", "/api/objects/%2E%2E/x",
                 "/api/objects/%2E%2E/x/steps", "/api/objects/a%20b"):
        status, body = reader("GET", path)
        assert status in (400, 404), path
        assert "secret" not in json.dumps(body) and str(local_root.parent) not in body["error"]
    status, body = reader("GET", "/api/objects/%2E%2E")
    assert status == 400 and "a class name is a Python identifier" in body["error"]
    # And an object's file is shown relative to the root
    status, view = reader("GET", f"/api/objects/Queue/{unique}")
    assert status == 200 and not os.path.isabs(view["path"])
    assert os.path.exists(os.path.join(local_root, view["path"]))


def test_non_finite_numbers_and_times_past_their_bounds_are_400_and_write_nothing(
        http, queue, unique):
    jobs = f"/api/queues/{unique}/jobs"
    # NaN, Infinity and 1e400 (too big for a float), anywhere in a body: the field is named
    for raw, field in ((b'{"type": "echo", "payload": NaN}', "payload"),
                       (b'{"type": "echo", "payload": {"a": [1, 1e400]}}', "payload.a.1"),
                       (b'{"type": "echo", "payload": -Infinity}', "payload"),
                       (b'{"type": "echo", "delay": NaN}', "delay"),
                       (b'{"type": "echo", "timeout": 1e400}', "timeout")):
        status, body = http("POST", jobs, raw)
        assert status == 400 and body["field"] == field, (raw, body)
        assert f"{field}: not a finite number" in body["error"]
    status, body = http("POST", "/api/events/Signup.created", b"NaN")
    assert status == 400 and body["field"] == "body"
    status, body = http("PATCH", f"/api/queues/{unique}/settings", b'{"lease_timeout": Infinity}')
    assert status == 400 and body["field"] == "lease_timeout"
    # A delay or timeout past its bound says the bound
    for options, bound in (({"delay": 1e308}, "366 days"), ({"timeout": 1e9}, "7 days"),
                           ({"run_at": 1e308}, "366 days from now")):
        status, body = http("POST", jobs, {"type": "echo", **options})
        assert status == 400 and f"may be at most {bound}" in body["error"], body
    status, body = http("PATCH", f"/api/queues/{unique}/settings", {"lease_timeout": 1e6})
    assert status == 400 and "lease_timeout may be at most 1 day" in body["error"]
    assert queue.count().result() == 0
    assert queue.settings().result()["lease_timeout"] == 30


# -- every answer is documented -----------------------------------------------------------

LONG = "q" * 600  # longer than an id may be: a bad id (400), not an unknown one
BIG = b"x" * (65 * 1024)  # over the test server's 64 KiB
GOOD = (200, 201, 202)


def _ask(url: str, method: str, path: str, body=None, headers=None):
    """One real request: ``(status, media type, text)``; of an event stream, its
    first event only (then the connection is dropped)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={k: v for k, v in sent.items() if v is not None})
    try:
        answer = urllib.request.urlopen(request, timeout=90)
    except urllib.error.HTTPError as refused:
        answer = refused
    with answer:
        media = answer.headers.get("content-type", "").partition(";")[0].strip()
        if media == "text/event-stream":
            lines = []
            while (line := answer.readline().decode()) not in ("\n", ""):
                lines.append(line)
            return answer.status, media, "".join(lines)
        return answer.status, media, answer.read().decode()


def _conforms(spec: dict, method: str, template: str, status: int, media: str, text: str):
    """The answer's status is documented for the route, in its media type, and its
    body validates against the schema documented for it."""
    responses = spec["paths"][template][method.lower()]["responses"]
    where = f"{method} {template} answered {status} ({text[:200]!r})"
    assert str(status) in responses, f"{where}: documented are {sorted(responses)}"
    content = responses[str(status)].get("content", {})
    assert media in content, f"{where} as {media}: documented as {sorted(content)}"

    def validate(value, schema):
        jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(value)

    documented = content[media]
    if media == "application/json":
        validate(json.loads(text), documented["schema"])
        return
    validate(text, documented["schema"])
    if "itemSchema" in documented:  # a stream's event, and the data it carries
        event = dict(line.split(": ", 1) for line in text.splitlines() if not line.startswith(":"))
        validate(event, documented["itemSchema"])
        [kind] = [k for k in documented["itemSchema"]["oneOf"]
                  if k["properties"]["event"]["const"] == event["event"]]
        validate(json.loads(event["data"]), kind["properties"]["data"]["contentSchema"])


def test_every_answer_of_every_route_is_documented_and_fits_its_schema(
        server, queue, worker, make_local, unique):
    # Given a queue with a completed, a failed and a delayed job, and an exposed object
    # with a step and a schedule
    background, tokens = server
    done = queue.enqueue("echo", {"n": 1, "raw": b"\xff"}).result()["$id"]
    failed = queue.enqueue("doomed", 1, max_retries=0).result()["$id"]
    later = queue.enqueue("echo", 2, delay=3600).result()["$id"]
    wait_for(lambda: queue.get(done).result()["status"] == "completed"
             and queue.get(failed).result()["status"] == "failed")
    till = make_local("Till", unique)
    till.ring(3).result()
    till.count().result()
    # and parked jobs: one sleeping, two waiting for their awakeables
    napping = queue.enqueue("ops-nap", 3600).result()["$id"]
    asking = [queue.enqueue("ops-approve", n).result()["$id"] for n in range(2)]
    wait_for(lambda: parked(queue, napping, "sleeping") and all(parked(queue, a) for a in asking))
    yes, no = (queue.awakeables(a).result()[0]["token"] for a in asking)
    ghost = awakeable_token(unique, "ghost", None, "awakeable#1")
    resolve, reject = "/api/awakeables/{awakeable_id}/resolve", "/api/awakeables/{awakeable_id}/reject"
    q, jobs = f"/api/queues/{unique}", f"/api/jobs/{unique}"
    objects = f"/api/objects/Till/{unique}"
    # Each route: the requests that must succeed, then one per error it answers
    # (method, route, path, body, expected status); the route's 401 and, for
    # writes, its 403s and 413 are added below.
    cases = [
        ("GET", "/api/status", "/api/status", None, 200),
        ("GET", "/api/queues", "/api/queues", None, 200),
        ("GET", "/api/queues/{q}", q, None, 200),
        ("GET", "/api/queues/{q}", "/api/queues/ghost", None, 404),
        ("GET", "/api/queues/{q}", f"/api/queues/{LONG}", None, 400),
        ("GET", "/api/queues/{q}/metrics", f"{q}/metrics?window=600&bucket=60", None, 200),
        ("GET", "/api/queues/{q}/metrics", f"{q}/metrics?window=0", None, 400),
        ("GET", "/api/queues/{q}/metrics", "/api/queues/ghost/metrics", None, 404),
        ("GET", "/api/queues/{q}/dead-letters", f"{q}/dead-letters", None, 200),
        ("GET", "/api/queues/{q}/dead-letters", f"{q}/dead-letters?limit=0", None, 400),
        ("GET", "/api/queues/{q}/dead-letters", "/api/queues/ghost/dead-letters", None, 404),
        ("GET", "/api/workers", "/api/workers", None, 200),
        ("GET", "/api/workers", f"/api/workers?queue={unique}", None, 200),
        ("GET", "/api/workers", "/api/workers?queue=ghost", None, 404),
        ("GET", "/api/workers", f"/api/workers?queue={LONG}", None, 400),
        ("GET", "/api/schedules", "/api/schedules", None, 200),
        ("GET", "/api/queues/{q}/jobs", f"{q}/jobs?status=completed&limit=10", None, 200),
        ("GET", "/api/queues/{q}/jobs", f"{q}/jobs?status=nope", None, 400),
        ("GET", "/api/queues/{q}/jobs", "/api/queues/ghost/jobs", None, 404),
        ("GET", "/api/jobs/{q}/{job_id}", f"{jobs}/{done}", None, 200),
        ("GET", "/api/jobs/{q}/{job_id}", f"{jobs}/{failed}", None, 200),
        ("GET", "/api/jobs/{q}/{job_id}", f"{jobs}/{napping}", None, 200),
        ("GET", "/api/jobs/{q}/{job_id}", f"{jobs}/{asking[0]}", None, 200),
        ("GET", "/api/queues/{q}/jobs", f"{q}/jobs?status=sleeping", None, 200),
        ("GET", "/api/queues/{q}/jobs", f"{q}/jobs?status=waiting", None, 200),
        ("GET", "/api/jobs/{q}/{job_id}", f"{jobs}/ghost", None, 404),
        ("GET", "/api/jobs/{q}/{job_id}", f"/api/jobs/{LONG}/x", None, 400),
        ("GET", "/api/jobs/{q}/{job_id}/result", f"{jobs}/{done}/result", None, 200),
        ("GET", "/api/jobs/{q}/{job_id}/result", f"{jobs}/{failed}/result", None, 200),
        ("GET", "/api/jobs/{q}/{job_id}/result", f"{jobs}/{done}/result?wait=-1", None, 400),
        ("GET", "/api/jobs/{q}/{job_id}/result", f"{jobs}/ghost/result", None, 404),
        ("GET", "/api/jobs/{q}/{job_id}/timeline", f"{jobs}/{done}/timeline", None, 200),
        ("GET", "/api/jobs/{q}/{job_id}/timeline", f"{jobs}/{napping}/timeline", None, 200),
        ("GET", "/api/jobs/{q}/{job_id}/timeline", f"{jobs}/ghost/timeline", None, 404),
        ("GET", "/api/jobs/{q}/{job_id}/timeline", f"/api/jobs/{LONG}/x/timeline", None, 400),
        ("GET", "/api/jobs/{q}/{job_id}/logs", f"{jobs}/{failed}/logs", None, 200),
        ("GET", "/api/jobs/{q}/{job_id}/logs", f"{jobs}/{done}/logs?limit=0", None, 400),
        ("GET", "/api/jobs/{q}/{job_id}/logs", f"{jobs}/ghost/logs", None, 404),
        ("GET", "/api/objects", "/api/objects", None, 200),
        ("GET", "/api/objects/{cls}", "/api/objects/Till", None, 200),
        ("GET", "/api/objects/{cls}", "/api/objects/%2E%2E", None, 400),
        ("GET", "/api/objects/{cls}", "/api/objects/Ghost", None, 404),
        ("GET", "/api/objects/{cls}/{object_id}", objects, None, 200),
        ("GET", "/api/objects/{cls}/{object_id}", "/api/objects/%2E%2E/x", None, 400),
        ("GET", "/api/objects/{cls}/{object_id}", f"{objects}-ghost", None, 404),
        ("GET", "/api/objects/{cls}/{object_id}/steps", f"{objects}/steps", None, 200),
        ("GET", "/api/objects/{cls}/{object_id}/steps", "/api/objects/%2E%2E/x/steps", None, 400),
        ("GET", "/api/objects/{cls}/{object_id}/steps", f"{objects}-ghost/steps", None, 404),
        ("GET", "/api/events/stream", "/api/events/stream", None, 200),
        ("GET", "/metrics", "/metrics", None, 200),
        ("POST", "/api/queues/{q}/pause", f"{q}/pause", None, 200),
        ("POST", "/api/queues/{q}/pause", f"{q}/pause", b"NaN", 400),
        ("POST", "/api/queues/{q}/pause", "/api/queues/ghost/pause", None, 404),
        ("POST", "/api/queues/{q}/resume", f"{q}/resume", {}, 200),
        ("POST", "/api/queues/{q}/resume", f"/api/queues/{LONG}/resume", None, 400),
        ("POST", "/api/queues/{q}/resume", "/api/queues/ghost/resume", None, 404),
        ("PATCH", "/api/queues/{q}/settings", f"{q}/settings", {"concurrency": 4}, 200),
        ("PATCH", "/api/queues/{q}/settings", f"{q}/settings", {"rate": "fast"}, 400),
        ("PATCH", "/api/queues/{q}/settings", "/api/queues/ghost/settings", {}, 404),
        ("POST", "/api/queues/{q}/purge", f"{q}/purge", {"older_than": 3600}, 200),
        ("POST", "/api/queues/{q}/purge", f"{q}/purge", {"status": "pending"}, 400),
        ("POST", "/api/queues/{q}/purge", "/api/queues/ghost/purge", None, 404),
        ("POST", "/api/queues/{q}/jobs", f"{q}/jobs", {"type": "echo", "payload": [1]}, 201),
        ("POST", "/api/queues/{q}/jobs", f"{q}/jobs", {"type": "echo", "job_id": done}, 200),
        ("POST", "/api/queues/{q}/jobs", f"{q}/jobs", b"{not json", 400),
        ("POST", "/api/queues/{q}/jobs", f"{q}/jobs", {"payload": 1}, 400),
        ("POST", "/api/queues/{q}/jobs", "/api/queues/ghost/jobs", {"type": "echo"}, 404),
        ("POST", "/api/jobs/{q}/{job_id}/retry", f"{jobs}/{failed}/retry", None, 200),
        ("POST", "/api/jobs/{q}/{job_id}/retry", f"{jobs}/{done}/retry", None, 400),
        ("POST", "/api/jobs/{q}/{job_id}/retry", f"{jobs}/ghost/retry", None, 404),
        ("POST", "/api/jobs/{q}/{job_id}/cancel", f"{jobs}/{later}/cancel", None, 200),
        ("POST", "/api/jobs/{q}/{job_id}/cancel", f"{jobs}/{done}/cancel", None, 400),
        ("POST", "/api/jobs/{q}/{job_id}/cancel", f"{jobs}/ghost/cancel", None, 404),
        ("POST", resolve, f"/api/awakeables/{yes}/resolve", {"value": {"ok": True}}, 200),
        ("POST", resolve, f"/api/awakeables/{yes}/resolve", None, 409),
        ("POST", resolve, "/api/awakeables/nonsense/resolve", None, 400),
        ("POST", resolve, f"/api/awakeables/{ghost}/resolve", {}, 404),
        ("POST", reject, f"/api/awakeables/{no}/reject", {"reason": "no budget"}, 200),
        ("POST", reject, f"/api/awakeables/{no}/reject", {"reason": "again"}, 409),
        ("POST", reject, f"/api/awakeables/{yes}/reject", {"reason": ""}, 400),
        ("POST", reject, f"/api/awakeables/{ghost}/reject", {"reason": "x"}, 404),
        ("POST", "/api/queues/{q}/jobs/retry", f"{q}/jobs/retry", None, 200),
        ("POST", "/api/queues/{q}/jobs/retry", f"{q}/jobs/retry", {"status": "pending"}, 400),
        ("POST", "/api/queues/{q}/jobs/retry", "/api/queues/ghost/jobs/retry", None, 404),
        ("POST", "/api/queues/{q}/jobs/cancel", f"{q}/jobs/cancel", {"status": "delayed"}, 200),
        ("POST", "/api/queues/{q}/jobs/cancel", f"{q}/jobs/cancel", {}, 400),
        ("POST", "/api/queues/{q}/jobs/cancel", "/api/queues/ghost/jobs/cancel",
         {"status": "pending"}, 404),
        ("POST", "/api/objects/{cls}/{object_id}/{method}", f"{objects}/ring", {"args": [2]}, 200),
        ("POST", "/api/objects/{cls}/{object_id}/{method}", f"{objects}/ring", {"args": 2}, 400),
        ("POST", "/api/objects/{cls}/{object_id}/{method}", f"/api/objects/Safe/{unique}/open",
         None, 403),
        ("POST", "/api/objects/{cls}/{object_id}/{method}", f"/api/objects/Ghost/{unique}/x",
         None, 404),
        ("POST", "/api/objects/{cls}/{object_id}/{method}", f"{objects}/jam", None, 500),
        ("POST", "/api/events/{event_type}", "/api/events/Signup.created", {"a": 1}, 202),
        ("POST", "/api/events/{event_type}", "/api/events/not-an-event", None, 400),
        ("POST", "/api/events/{event_type}", "/api/events/Payment.made", None, 403),
    ]
    admin = {"Authorization": f"Bearer {tokens.token}"}
    asked = [(method, route, path, body, expected, admin) for method, route, path, body, expected
             in cases]
    first = {}  # a path of each route that answers: for the refusals every route gives
    for method, route, path, body, expected in cases:
        if expected in GOOD:
            first.setdefault((method, route), (path, body))
    refusals = []
    for (method, route), (path, body) in first.items():
        refusals.append((method, route, path, body, 401, {}))
        if method != "GET":
            refusals += [
                (method, route, path, body, 403, {"Authorization": f"Bearer {tokens.read_token}"}),
                (method, route, path, body, 403, {"Cookie": f"dotdo_token={tokens.token}",
                                                  "Origin": "http://localhost:8888"}),
                (method, route, path, BIG, 413, admin)]
    spec = json.loads(_ask(background.url, "GET", "/openapi.json", headers=admin)[2])
    routes = {(m.upper(), r) for r, ops in spec["paths"].items() for m in ops}
    # Then every route is tried, and only documented routes are
    assert set(first) == routes, f"untried: {routes - set(first)}, unknown: {set(first) - routes}"
    assert all(r.startswith("/api/") or r == "/metrics" for _, r in routes)
    seen: dict[tuple[str, str], set[str]] = {route: set() for route in routes}
    # When each request is sent (refusals first: they change nothing)
    for method, route, path, body, expected, headers in refusals + asked:
        status, media, text = _ask(background.url, method, path, body, headers)
        # Then it answers as meant, with a code its route documents, in a body that fits
        assert status == expected, (method, path, body, status, text[:300])
        _conforms(spec, method, route, status, media, text)
        seen[(method, route)].add(str(status))
    # And no route documents a code it was not seen to answer (500, a failure, aside)
    for (method, route), codes in seen.items():
        documented = set(spec["paths"][route][method.lower()]["responses"])
        assert documented - codes <= {"500"}, (method, route, sorted(documented - codes))
    assert queue.get(done).result()["status"] == "completed"  # refusals changed nothing


def test_a_json_body_is_taken_whatever_its_content_type_says(server, queue, unique):
    background, tokens = server
    where = urllib.parse.urlsplit(background.url)

    def post(body: bytes, **headers: str):
        # http.client sends only the headers given (urllib would add a Content-Type)
        connection = HTTPConnection(where.hostname, where.port, timeout=90)
        try:
            connection.request("POST", f"/api/queues/{unique}/jobs", body=body, headers={
                "Authorization": f"Bearer {tokens.token}", **headers})
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            connection.close()

    # A JSON body with no Content-Type at all is taken
    status, job = post(b'{"type": "echo"}')
    assert status == 201 and job["type"] == "echo"
    # and so is one labelled a form, as `curl -d` sends it (the README's example)
    status, job = post(b'{"type": "email", "payload": {}}', **{
        "Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": "order-7"})
    assert status == 201 and job["$id"] == "order-7"
    # A body that is not JSON is refused, naming the header, and nothing is added
    for headers in ({"Content-Type": "application/x-www-form-urlencoded"}, {}):
        status, body = post(b"type=email", **headers)
        assert status == 400 and body["field"] == "body", body
        assert "Content-Type: application/json" in body["error"]
    assert queue.count().result() == 2
