"""The API as a Ray Serve application on the session's Ray: a replica (a Ray actor)
reaches the queue and its worker as any driver would.

Deployed from a driver of its own, as `dotdo serve --ray-serve` is: Ray Serve changes
the process that starts it (it registers a cloudpickle reducer for locks, for one),
and the tests that share this process must not see that. Its actors are killed from
here at the end (no Serve import needed for that)."""

import json
import socket
import urllib.error
import urllib.request

import pytest
import ray

from dotdo.ops.auth import Tokens
from tests import job_handlers  # noqa: F401  (echo)
from tests.conftest import run_driver

DEPLOY = """
import time
import dotdo
from ray import serve
from dotdo.ops.auth import Tokens
from dotdo.ops.serve import ray_serve_app
settings = dotdo.init(address={address!r}, storage={storage!r}, namespace={namespace!r})
serve.start(http_options={{"host": "127.0.0.1", "port": {port}}})
serve.run(ray_serve_app(settings.storage, settings.namespace, Tokens.load_or_create(settings.storage)),
          name="dotdo-test", route_prefix="/", blocking=False)
print("deployed", flush=True)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _http(url, token, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        raw = answer.read()
        return answer.status, (json.loads(raw) if "json" in answer.headers["content-type"]
                               else raw.decode())


@pytest.mark.dedicated_pass("Serve replicas are Ray actors of their own in either hosting")
def test_the_api_runs_as_a_ray_serve_application(ray_session, make_object, unique):
    # Given a queue with a worker on the session's Ray
    queue = make_object("Queue", unique)
    queue.settings().result()
    worker = make_object("Worker", f"{unique}-w")
    worker.start(unique, concurrency=2, backoff=0.01).result()
    tokens = Tokens.load_or_create(ray_session.storage)
    address, port = ray.get_runtime_context().gcs_address, _free_port()
    # When another driver deploys the API with Ray Serve (one replica) and leaves
    out = run_driver(DEPLOY.format(address=address, storage=ray_session.storage,
                                   namespace=ray_session.namespace, port=port), timeout=240)
    assert "deployed" in out
    try:
        url = f"http://127.0.0.1:{port}"
        # Then a job enqueued over HTTP runs on the worker and its result comes back
        status, job = _http(f"{url}/api/queues/{unique}/jobs", tokens.token, "POST",
                            {"type": "echo", "payload": "via serve"})
        assert status == 201
        status, outcome = _http(f"{url}/api/jobs/{unique}/{job['$id']}/result?wait=60", tokens.token)
        assert outcome["output"] == {"echo": "via serve"}
        status, text = _http(f"{url}/metrics", tokens.token)
        assert f'dotdo_jobs_total{{queue="{unique}",outcome="completed"}} 1.0' in text
        status, listing = _http(f"{url}/api/status", tokens.token)
        assert listing["ray"]["nodes"] and unique in [q["id"] for q in listing["queues"]]
        with pytest.raises(urllib.error.HTTPError) as refused:
            _http(f"{url}/api/queues", "not-the-token-at-all")
        assert refused.value.code == 401
    finally:
        # Serve's actors go (its controller first, so that it starts no new ones) from
        # here rather than from a driver of its own (serve.shutdown): a second driver
        # would cost a process and a Ray connection, and no other test uses Serve.
        serve_actors = sorted((a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                               if a["namespace"] == "serve"),
                              key=lambda name: name != "SERVE_CONTROLLER_ACTOR")
        for name in serve_actors:
            ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        worker.stop(drain=False).result()
