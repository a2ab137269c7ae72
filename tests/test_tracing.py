"""OpenTelemetry traces, received by a real OTLP/HTTP receiver in the test (spans
decoded with opentelemetry-proto) from a traced program's processes: its driver, the
queue, two workers (one SIGKILLed mid-attempt), the App."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import ray
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from dotdo import tracing
from tests.conftest import ROOT


class Receiver:
    """An OTLP/HTTP traces endpoint on a free local port: every span it gets, as a
    dict with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    with self.lock:
                        self.spans.append({
                            "name": span.name, "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                            "kind": span.kind, "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano, "status": span.status.code,
                            "attrs": {a.key: _value(a.value) for a in span.attributes},
                            "links": [link.span_id.hex() for link in span.links],
                            "pid": resource.get("process.pid"), "host": resource.get("dotdo.host"),
                            "service": resource.get("service.name")})

    def close(self) -> None:
        self.server.shutdown()


def _value(value) -> object:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture
def receiver():
    got = Receiver()
    yield got
    got.close()


@pytest.mark.dedicated_pass("workers have processes of their own in either pass")
def test_one_trace_follows_a_job_from_enqueue_through_a_failure_a_kill_and_a_retry(
        ray_session, receiver, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
           "OTEL_SERVICE_NAME": "shop", "OTEL_BSP_SCHEDULE_DELAY": "100",
           "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.tracing_driver", ray.get_runtime_context().gcs_address,
         str(tmp_path / "storage"), "traced"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=300)
    lines = [x for x in done.stdout.splitlines() if x.startswith("OUTCOME ")]
    assert lines, f"driver failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = json.loads(lines[-1].removeprefix("OUTCOME "))
    assert out["output"] == {"tries": 3}
    from tests.conftest import wait_for

    def trace() -> list[dict]:
        with receiver.lock:
            return [s for s in receiver.spans if s["trace"] == out["trace_id"]]

    def complete() -> bool:  # the hosts export on their own schedule (every 100 ms here)
        names = [s["name"] for s in trace()]
        return names.count("traced process") >= 2 and names.count("step prepare") >= 2
    assert out["trace_id"] and wait_for(complete, timeout=60)
    spans = trace()
    by_id = {s["id"]: s for s in spans}
    # The driver's call, the queue's run of it and the job's enqueue: one chain
    (call,) = [s for s in spans if s["name"] == "Queue.enqueue" and s["kind"] == 3]  # CLIENT
    assert call["pid"] == out["driver"] and call["parent"] == ""  # the trace's root
    (served,) = [s for s in spans if s["name"] == "Queue.enqueue" and s["kind"] == 2]  # SERVER
    assert served["parent"] == call["id"] and served["pid"] != out["driver"]
    (publish,) = [s for s in spans if s["name"] == "traced publish"]
    assert publish["parent"] == served["id"] and publish["pid"] == served["pid"]
    assert publish["attrs"]["messaging.message.id"] == out["job"]
    # Each run that ended is a span under the enqueue's, in a worker's process: the
    # first failed (to be retried), the third completed; the second died with its process
    # (a crash is not an attempt the job's retries count: the third is attempt 2 again)
    attempts = sorted((s for s in spans if s["name"] == "traced process"),
                      key=lambda s: s["attrs"]["dotdo.job.fence"])
    assert [a["attrs"]["dotdo.job.attempt"] for a in attempts] == [1, 2]
    assert [a["attrs"]["dotdo.job.outcome"] for a in attempts] == ["retrying", "completed"]
    assert attempts[0]["status"] == 2 and attempts[1]["status"] != 2  # ERROR, then not
    assert all(a["parent"] == publish["id"] for a in attempts)
    assert all(a["attrs"]["messaging.destination.name"] == "traced" for a in attempts)
    assert attempts[1]["attrs"]["dotdo.job.fence"] > attempts[0]["attrs"]["dotdo.job.fence"]
    worker_pids = set(out["workers"].values()) | {out["killed"]}
    assert {a["pid"] for a in attempts} <= worker_pids
    assert attempts[1]["pid"] != out["killed"]
    # The step: run once (try 1); after the SIGKILL, try 3 replays it (marked replayed,
    # no time of its own). Try 2 replayed it too, in the process that was killed.
    steps = [s for s in spans if s["name"] == "step prepare"]
    ran = [s for s in steps if not s["attrs"]["dotdo.step.replayed"]]
    replayed = [s for s in steps if s["attrs"]["dotdo.step.replayed"]]
    assert len(ran) == 1 and by_id[ran[0]["parent"]] is attempts[0]
    (after_kill,) = [s for s in replayed if s["parent"] == attempts[1]["id"]]
    assert after_kill["end"] == after_kill["start"] and after_kill["pid"] == attempts[1]["pid"]
    assert len(replayed) <= 2
    # The handler's calls are children of its attempts, served in another process
    hits = [s for s in spans if s["name"] == "Recorder.hit" and s["kind"] == 2]
    callers = [by_id[h["parent"]] for h in hits if h["parent"] in by_id]
    assert {by_id[c["parent"]]["id"] for c in callers if c["parent"] in by_id} == {
        a["id"] for a in attempts}
    assert all(h["pid"] not in worker_pids for h in hits)
    # Across processes: the driver, the queue's, the workers' (and the witness's)
    assert len({s["pid"] for s in spans}) >= 4
    assert {s["service"] for s in spans} == {"shop"}
    # Both workers, the queue, the App and the driver (no host) exported spans; the
    # plain job ran on the worker that was not busy with the traced one
    with receiver.lock:
        everything = list(receiver.spans)
    (plain,) = [s for s in everything if s["name"] == "traced process"
                and s["attrs"]["messaging.message.id"] == out["plain"]]
    assert plain["pid"] == out["plain_pid"] and plain["trace"] != out["trace_id"]
    assert {s["host"] for s in everything} >= {  # (each served Worker.start, at least)
        "Worker/traced-w1", "Worker/traced-w2", "Queue/traced", "App/default", None}
    # Calls sent in batches keep one context each: a server span per call, each under
    # its own client span in the driver
    assert out["batched"] > 0

    def batched_hits() -> list[dict]:
        with receiver.lock:
            spans = list(receiver.spans)
        driver = {c["id"] for c in spans if c["pid"] == out["driver"]}
        return [s for s in spans if s["name"] == "Recorder.hit" and s["kind"] == 2
                and s["parent"] in driver]
    assert wait_for(lambda: len(batched_hits()) == 20, timeout=60)
    hits = batched_hits()
    assert len({h["parent"] for h in hits}) == 20
    assert len({h["trace"] for h in hits}) == 20  # each a trace of its own (a root call)
    # The runtime's own calls (claims, heartbeats, reports) make no spans
    assert not [s for s in everything if s["name"] in ("Queue.claim", "Queue.complete")]
    # The event: the driver's send reached the App, whose handler ran in a span linked to it
    assert wait_for(lambda: [s for s in receiver.spans if s["name"] == "handle Trace.sent"],
                    timeout=60)
    with receiver.lock:
        (sent,) = [s for s in receiver.spans if s["name"] == "send Trace.sent"]
        (handled,) = [s for s in receiver.spans if s["name"] == "handle Trace.sent"]
    assert handled["links"] == [sent["id"]] and handled["parent"] == ""
    assert handled["host"] == sent["host"] and handled["host"].startswith("App/")


def test_tracing_is_off_unless_asked_and_names_its_install_when_missing(monkeypatch):
    for key in list(os.environ):
        if key.startswith("OTEL_") or key == "DOTDO_TRACING":
            monkeypatch.delenv(key)
    assert tracing.switches(None) == ()
    assert tracing.switches(False) == ()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.switches(None) == ()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert ("DOTDO_TRACING", "1") in tracing.switches(None)
    assert ("OTEL_TRACES_EXPORTER", "otlp") in tracing.switches(None)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.switches(None) == ()
    assert tracing.trace_id_of("00-" + "a" * 32 + "-" + "b" * 16 + "-01") == "a" * 32
    assert tracing.trace_id_of("garbage") is None
    # A trace the sampler left out is nobody's to link to: no trace id for it
    assert tracing.trace_id_of("00-" + "a" * 32 + "-" + "b" * 16 + "-00") is None


def test_a_driver_hands_its_switches_to_the_hosts_it_starts(monkeypatch):
    for key in list(os.environ):
        if key.startswith("OTEL_") or key == "DOTDO_TRACING":
            monkeypatch.delenv(key)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop")
    # dotdo.init(tracing=True): on without any OTEL_ variable for traces, and what the
    # environment says of the rest travels along (the hosts' Settings carry it)
    assert tracing.switches(True) == (("DOTDO_TRACING", "1"), ("OTEL_SERVICE_NAME", "shop"))
    monkeypatch.setenv("DOTDO_TRACING", "1")
    assert tracing.switches(None)[0] == ("DOTDO_TRACING", "1")


def test_tracing_without_the_sdk_names_the_extra_to_install():
    code = ("import sys\n"
            "for name in ('opentelemetry.sdk', 'opentelemetry.sdk.trace', 'opentelemetry.sdk.resources'):\n"
            "    sys.modules[name] = None  # as if not installed\n"
            "from dotdo import tracing\n"
            "from dotdo.errors import ConfigError\n"
            "try:\n"
            "    tracing.setup((('DOTDO_TRACING', '1'),))\n"
            "except ConfigError as exc:\n"
            "    print('REFUSED', exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "REFUSED" in done.stdout and "dotdo[otel]" in done.stdout, done.stderr
    assert not tracing.enabled()  # this process never turned it on


_SERVED = """
import sys, urllib.request
import dotdo
from dotdo import tracing
from dotdo.ops import serve
from dotdo.ops.api import create_app
from dotdo.ops.auth import Tokens
from dotdo.ops.service import Service

storage, caller = sys.argv[1], sys.argv[2]
dotdo.init(in_process=True, storage=storage)
dotdo.Queue("web").enqueue("echo", 1).result()
tokens = Tokens.load_or_create(storage)
running = serve.start_in_background(create_app(Service(), tokens), host="127.0.0.1", port=0)
for headers in ({"traceparent": caller}, {}):
    request = urllib.request.Request(running.url + "/api/queues/web",
                                     headers={"Authorization": "Bearer " + tokens.token, **headers})
    urllib.request.urlopen(request).read()
try:
    urllib.request.urlopen(running.url + "/api/queues/web")
except urllib.error.HTTPError as exc:
    print("REFUSED", exc.code)
running.stop()
tracing.flush()
"""


def test_every_http_request_is_a_server_span_under_its_callers_traceparent(receiver, tmp_path):
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    done = subprocess.run([sys.executable, "-c", _SERVED, str(tmp_path / "storage"),
                           f"00-{caller_trace}-{caller_span}-01"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "REFUSED 401" in done.stdout, done.stderr[-3000:]
    from tests.conftest import wait_for

    def requests() -> list[dict]:
        with receiver.lock:
            return [s for s in receiver.spans if s["attrs"].get("http.request.method")]
    assert wait_for(lambda: len(requests()) == 3, timeout=60)
    given, alone, refused = sorted(requests(), key=lambda s: s["start"])
    # Named by route, a server span (kind 2), a child of the caller's span when it sends one
    assert [s["name"] for s in (given, alone)] == ["GET /api/queues/{q}"] * 2
    assert given["attrs"]["http.route"] == "/api/queues/{q}"
    assert all(s["kind"] == 2 and s["attrs"]["http.response.status_code"] == 200
               for s in (given, alone))
    assert given["trace"] == caller_trace and given["parent"] == caller_span
    assert alone["parent"] == "" and alone["trace"] != caller_trace
    assert refused["attrs"]["http.response.status_code"] == 401  # the guard's answers too
    # What the route asked of the queue is a call under the request's span
    with receiver.lock:
        children = [s for s in receiver.spans if s["parent"] == given["id"]]
    assert children and all(s["name"].startswith("Queue.") for s in children)
    # In process too, the runtime's own work (the queue handing its events to the App)
    # makes no spans
    with receiver.lock:
        assert not [s for s in receiver.spans if s["name"].startswith("App.")]
