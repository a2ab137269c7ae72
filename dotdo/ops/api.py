"""The HTTP API: one FastAPI app over a :class:`~dotdo.ops.service.Service`, serving
the JSON routes and live events (SSE) under ``/api``, Prometheus metrics at
``/metrics``, the API docs (``/docs`` and ``/openapi.json``, with Swagger UI shipped in
a package: no CDN) and the dashboard (``/``).

Every route needs a token (:mod:`dotdo.ops.auth`): ``Authorization: Bearer <token>``,
or, for browsers, ``?token=`` once, which sets a cookie. A write carried by the cookie
or ``?token=`` must come from this server's own pages (its Origin). The read-only token
may only read. Bodies are JSON, labelled so or not. Every answer has a documented
shape (:mod:`dotdo.ops.models`); errors answer ``{"error": message}`` (and ``"field"``
for a bad input): 400 bad input, 401 no or a wrong token, 403 the read-only token
writing, a cross-site write or something not exposed, 404 unknown queue, job, class,
object or awakeable, 409 an awakeable settled before, 413 body too large, 500 a
failure (an exposed method's own error).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import swagger_ui_bundle
from fastapi import Body, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import dotdo
from dotdo.errors import NotExposed
from dotdo.jobmodel import JobStatus
from dotdo.ops import models, prometheus
from dotdo.ops.auth import ADMIN, Tokens, same_site
from dotdo.ops.models import plain
from dotdo.ops.service import Service

__all__ = ["create_app", "API", "MAX_BODY", "COOKIE"]

# Every data route is under it. The routes are added to the app itself, not through
# an APIRouter: FastAPI resolves an included router's routes lazily, and in a Ray
# Serve replica (the app arrives pickled) enqueue then took `response` for a field.
API = "/api"

MAX_BODY = 1 << 20  # bytes of a request body, by default
_DRAIN = 16 << 20  # bytes of an oversized chunked body read (and dropped) before the 413
COOKIE = "dotdo_token"
STATIC = os.path.join(os.path.dirname(__file__), "static")
_EVENTS_EVERY = 1.0  # seconds between looks for new Job events
_COUNTS_EVERY = 2.0  # seconds between queue counts on the stream
_MAX_WAIT = 60.0  # seconds a result request may hold its connection
_WHERE = ("body", "query", "path", "header", "cookie")  # where FastAPI found a bad field
_READS = ("GET", "HEAD", "OPTIONS")  # methods that change nothing
_BODIES = ("POST", "PUT", "PATCH")
_OPEN = ("/docs/assets/",)  # Swagger UI's own files: no data in them
_SIGN_IN = """<!doctype html><meta charset="utf-8"><title>dotdo</title>
<body style="font-family: sans-serif; margin: 3em">
<h1>dotdo</h1><p>This dashboard needs its token. <code>dotdo serve</code> and
<code>dotdo dashboard --no-open</code> print its address with the token, ready to open, in
the terminal they run in: the line <code>dashboard: http://&hellip;/?token=&hellip;</code>.
<code>dotdo dashboard</code> opens it for you.</p></body>"""
_BAD_INPUT = (ValueError, TypeError, dotdo.ConfigError, dotdo.LimitError, dotdo.InvalidIdError,
              dotdo.EncodeError, dotdo.DecodeError)


class _JSON(JSONResponse):
    """JSON of what no model shapes (errors), as :func:`~dotdo.ops.models.plain` makes it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(plain(content), allow_nan=False).encode()


def _error(status: int, message: str, **extra: Any) -> _JSON:
    return _JSON({"error": message, **extra}, status_code=status)


class _App(FastAPI):
    """FastAPI, with an OpenAPI document that says what the API answers: bad input
    answers 400 with an :class:`~dotdo.ops.models.ErrorBody` (the handler in
    :func:`_errors`), never FastAPI's 422; the schemas routes name only by reference
    are in its components; and it says how to authenticate."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is not None:
            return self.openapi_schema
        spec = super().openapi()  # kept as self.openapi_schema: amended in place, once
        for operation in (op for path in spec["paths"].values() for op in path.values()):
            operation["responses"].pop("422", None)
        components = spec.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        schemas.update(models.components())
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
        return spec


# -- the app ------------------------------------------------------------------------------

def create_app(service: Service, tokens: Tokens, *, max_body: int = MAX_BODY) -> FastAPI:
    """The API over ``service``, guarded by ``tokens``: every data route under
    ``/api``; the pages, the docs and ``/metrics`` (where Prometheus scrapes) beside."""
    # With tracing on, FastAPI's own telemetry makes a server span per request (a child
    # of the caller's traceparent); the calls a route makes to objects are under it.
    app = _App(title="dotdo", version="1", docs_url=None, redoc_url=None,
               default_response_class=_JSON, telemetry={"operation_spans": False},
               description="Queues, jobs, workers and durable objects of one dotdo storage "
                           "root. Authenticate with `Authorization: Bearer <token>`. Bodies "
                           "are JSON (with or without `Content-Type: application/json`).")
    _guard(app, tokens, max_body)
    _errors(app)
    _pages(app)
    _queues(app, service)
    _jobs(app, service)
    _awakeables(app, service)
    _objects(app, service)
    _live(app, service)
    return app


def _guard(app: FastAPI, tokens: Tokens, max_body: int) -> None:
    """Tokens on every route, and bodies of writes: bounded, and JSON."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                    ) -> Response:
        path = request.url.path
        remember = None  # a valid ?token=: a browser's first page, kept as a cookie
        if not path.startswith(_OPEN):
            header = request.headers.get("authorization", "")
            scheme, _, presented = header.partition(" ")
            from_query = request.query_params.get("token")
            bearer = presented.strip() if scheme.lower() == "bearer" else None
            given = bearer or from_query or request.cookies.get(COOKIE)
            role = tokens.role(given)
            if role is None and path == "/":  # a person at the dashboard's address
                return HTMLResponse(_SIGN_IN, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            if role is None:
                return _JSON({"error": "a valid token is required: send `Authorization: Bearer "
                                       "<token>` (the token file is printed by `dotdo serve`)"},
                             status_code=401, headers={"WWW-Authenticate": "Bearer"})
            if not bearer and request.method not in _READS:
                refused = _cross_site(request, cookie=not from_query)
                if refused is not None:
                    return refused
            if role != ADMIN and request.method not in _READS:
                return _error(403, "the read-only token may only read: use the admin token "
                                   "to change anything")
            if from_query and (given is from_query or tokens.role(from_query)):
                remember = from_query
        if request.method in _BODIES:  # reads ignore a body: nothing to bound or check
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > max_body:
                return _error(413, f"the body has {int(length):,} bytes; at most {max_body:,} "
                                   "are taken: enqueue big payloads as a reference (a path, a URL)")
            if length is None:
                body, drained = bytearray(), 0
                async for chunk in request.stream():
                    if len(body) + len(chunk) > max_body or drained:
                        # Read on (up to a bound) and throw away: a client still sending
                        # when the answer comes would see a reset connection, not the 413.
                        drained += len(chunk)
                        if drained > _DRAIN:
                            break
                        continue
                    body += chunk
                if drained:
                    return _error(413, f"the body has more than {max_body:,} bytes")
                request._body = bytes(body)  # read once here; the route reads it from here
            refused = _as_json(request, await request.body())
            if refused is not None:
                return refused
        response = await call_next(request)
        if remember is not None:  # later fetches and the event stream use the cookie
            response.set_cookie(COOKIE, remember, httponly=True, samesite="strict")
        return response


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def _as_json(request: Request, body: bytes) -> Response | None:
    """Take a write's body as JSON whatever its ``Content-Type`` says: ``curl -d``
    labels it a form, and a client may label it nothing. A body that parses is
    relabelled ``application/json`` for the route (a cross-site form was refused
    before this, by its origin); one that does not is refused, naming the header if
    it did not say JSON. So are NaN, Infinity and numbers too big for a float (1e400),
    naming the field: Python's reader takes them, and they would be stored, then
    shown as null or not at all."""
    if not body:
        return None
    label = request.headers.get("content-type")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        if label is not None and _is_json(label):
            return _error(400, f"the body is not valid JSON ({exc})", field="body")
        sent = f"sent as {label}" if label else "sent with no Content-Type"
        return _error(400, f"the body is not JSON ({sent}): the API takes JSON bodies, like "
                           "`{\"type\": \"email\"}`, labelled `Content-Type: application/json` "
                           "(curl: -H 'Content-Type: application/json')", field="body")
    if label is None or not _is_json(label):
        request.scope["headers"] = [*((k, v) for k, v in request.scope["headers"]
                                      if k != b"content-type"),
                                    (b"content-type", b"application/json")]
    found = _first_non_finite(value)
    if found is None:
        return None
    field = ".".join(found) or "body"
    return _error(400, f"{field}: not a finite number: JSON numbers here must be finite (no "
                       "NaN or Infinity) and fit a 64-bit float (1e400 does not): send a "
                       "finite number, or a string", field=field)


def _first_non_finite(value: Any) -> list[str] | None:
    """The path (keys and indexes) of the first NaN or infinite float in ``value``,
    walked without recursion (JSON nests as deep as its reader allows)."""
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path
        children = item.items() if isinstance(item, dict) else enumerate(item) \
            if isinstance(item, list) else ()
        stack.extend(reversed([(child, [*path, str(key)]) for key, child in children]))
    return None


def _cross_site(request: Request, cookie: bool) -> Response | None:
    """403 for a write carried by the cookie or ``?token=`` from a page that is not this
    server's: a browser sends the cookie with a form another site posts (another port
    of this host too), so only the page's origin tells who asked."""
    headers = request.headers
    origin, site, referer = (headers.get("origin"), headers.get("sec-fetch-site"),
                             headers.get("referer"))
    if same_site(request.url.scheme, headers.get("host"), origin, site, referer, cookie=cookie):
        return None
    here = f"{request.url.scheme}://{headers.get('host', '?')}"
    came = (f"Origin {origin}" if origin is not None else
            f"Sec-Fetch-Site {site}" if site is not None else
            f"Referer {referer}" if referer is not None else "no Origin header")
    carrier = "the dashboard's cookie" if cookie else "a ?token= in the address"
    return _error(403, f"a write carried by {carrier} must come from this server's own pages "
                       f"({here}), but it has {came}: it may be another site's page posting "
                       "in your name, so nothing was changed. Use the dashboard at its own "
                       "address, or send the token as `Authorization: Bearer <token>` from a "
                       "program")


def _errors(app: FastAPI) -> None:
    @app.exception_handler(dotdo.NotFoundError)
    async def not_found(_: Request, exc: Exception) -> Response:
        return _error(404, str(exc))

    @app.exception_handler(dotdo.AwakeableError)
    async def settled_before(_: Request, exc: Exception) -> Response:
        # The service answers an awakeable that is not there as NotFoundError (404).
        return _error(409, str(exc))

    @app.exception_handler(NotExposed)
    async def not_exposed(_: Request, exc: Exception) -> Response:
        return _error(403, str(exc))

    for kind in _BAD_INPUT:
        @app.exception_handler(kind)
        async def bad_input(_: Request, exc: Exception) -> Response:
            return _error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: Exception) -> Response:
        # No such route (404) or method (405): the same {"error"} shape as the rest.
        assert isinstance(exc, StarletteHTTPException)
        return _JSON({"error": str(exc.detail)}, status_code=exc.status_code,
                     headers=exc.headers)

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> Response:
        # An exposed method's own error, or a bug: JSON for clients; uvicorn logs the trace.
        return _error(500, f"{type(exc).__name__}: {exc}")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ())]
        if loc and loc[0] in _WHERE:  # "query.wait" -> "wait": the name the caller sent
            loc = loc[1:]
        field = ".".join(loc) or "body"
        return _error(400, f"{field}: {first.get('msg', 'invalid')}", field=field)


def _pages(app: FastAPI) -> None:
    """The dashboard and the API docs, both from files shipped in packages."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
              name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(os.path.join(STATIC, "index.html"))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="dotdo API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")


# Each route names the error answers of its kind (models.READ, LOOKUP, WRITE, SEND).

def _queues(app: FastAPI, service: Service) -> None:
    @app.get(API + "/status", tags=["status"], response_model=models.Status, responses=models.READ)
    async def status() -> Any:
        """Ray nodes, objects by class, queues with counts, workers online."""
        return await service.status()

    @app.get(API + "/queues", tags=["queues"], response_model=list[models.QueueSummary],
             responses=models.READ)
    async def queues() -> Any:
        """Every queue with its counts by state."""
        return await service.queues()

    @app.get(API + "/queues/{q}", tags=["queues"], response_model=models.QueueView,
             responses=models.LOOKUP)
    async def queue(q: str) -> Any:
        """One queue: counts, settings, stats, counts by type."""
        return await service.queue(q)

    @app.get(API + "/queues/{q}/metrics", tags=["queues"], response_model=models.Stats,
             responses=models.LOOKUP)
    async def metrics(q: str, window: float = Query(3600, gt=0), bucket: float = Query(60, gt=0)
                      ) -> Any:
        """Throughput and failures over time, p50/p95 duration and wait, oldest pending age."""
        return await service.stats(q, window, bucket)

    @app.post(API + "/queues/{q}/pause", tags=["queues"], response_model=models.QueueSummary,
              responses=models.WRITE)
    async def pause(q: str) -> Any:
        """Hand out no jobs until resumed; running ones finish."""
        return await service.pause(q)

    @app.post(API + "/queues/{q}/resume", tags=["queues"], response_model=models.QueueSummary,
              responses=models.WRITE)
    async def resume(q: str) -> Any:
        """Hand out jobs again."""
        return await service.resume(q)

    @app.patch(API + "/queues/{q}/settings", tags=["queues"], response_model=models.QueueSettings,
               responses=models.WRITE)
    async def settings(q: str, body: models.SettingsBody) -> Any:
        """Change concurrency, rate limits or retention (null: no limit)."""
        return await service.configure(q, **body)

    @app.post(API + "/queues/{q}/purge", tags=["queues"], response_model=models.Purged,
              responses=models.WRITE)
    async def purge(q: str, body: models.PurgeBody | None = None) -> Any:
        """Delete finished jobs (of one status; finished more than older_than s ago)."""
        body = body or {}
        return {"purged": await service.purge(q, body.get("status"), body.get("older_than"))}

    @app.get(API + "/queues/{q}/dead-letters", tags=["queues"],
             response_model=list[models.DeadLetters], responses=models.LOOKUP)
    async def dead_letters(q: str, limit: int = Query(50, ge=1, le=1000)) -> Any:
        """Failed jobs grouped by the first line of their error."""
        return await service.dead_letters(q, limit)

    @app.get(API + "/workers", tags=["workers"], response_model=list[models.WorkerRow],
             responses=models.LOOKUP)
    async def workers(queue: str | None = None) -> Any:
        """Workers of every queue (or of `queue`), with their process and jobs."""
        return await service.workers(queue)

    @app.get(API + "/schedules", tags=["schedules"], response_model=list[models.ScheduleRow],
             responses=models.READ)
    async def schedules() -> Any:
        """Every schedule of every object, soonest first."""
        return await service.schedules()


def _jobs(app: FastAPI, service: Service) -> None:
    @app.post(API + "/queues/{q}/jobs", tags=["jobs"], status_code=201,
              response_model=models.JobAnswer, responses={**models.WRITE, 200: {
                  "model": models.JobAnswer,
                  "description": "The job was there already (its `job_id` or `Idempotency-Key`"
                                 "), or was merged into one (`enqueued` says how)."}})
    async def enqueue(q: str, response: Response, body: models.EnqueueBody,
                      idempotency_key: str | None = Header(None)) -> Any:
        """Enqueue a job. With an `Idempotency-Key`, that key is the job's id: sent
        again, the same job answers 200 instead of a new one 201."""
        options = {k: v for k, v in body.items() if k not in ("type", "payload")}
        if idempotency_key is not None:
            if options.get("job_id", idempotency_key) != idempotency_key:
                return _error(400, "job_id differs from the Idempotency-Key header: send one "
                                   "of them (the key is the job's id)", field="job_id")
            options["job_id"] = idempotency_key
        job = await service.enqueue(q, body["type"], body.get("payload"), **options)
        if job.get("enqueued", "added") != "added":
            response.status_code = 200
        return job

    @app.get(API + "/queues/{q}/jobs", tags=["jobs"], response_model=models.JobsPage,
             responses=models.LOOKUP)
    async def jobs(q: str, status: JobStatus | None = None, type: str | None = None,
                   since: float | None = None, limit: int = Query(50, ge=1, le=1000),
                   cursor: int | None = None) -> Any:
        """Jobs in enqueue order, a page at a time: pass `cursor` back for the next."""
        return await service.jobs(q, status=None if status is None else status.value, type=type,
                                  since=since, limit=limit, cursor=cursor)

    @app.post(API + "/queues/{q}/jobs/retry", tags=["jobs"], response_model=models.Retried,
              responses=models.WRITE)
    async def retry_all(q: str, body: models.RetryBody | None = None) -> Any:
        """Retry every failed job (of a type, enqueued since a time)."""
        body = body or {}
        return {"retried": await service.retry_all(q, body.get("since"), body.get("type"))}

    @app.post(API + "/queues/{q}/jobs/cancel", tags=["jobs"], response_model=models.Cancelled,
              responses=models.WRITE)
    async def cancel_all(q: str, body: models.CancelBody) -> Any:
        """Cancel every job in a status (of a type, enqueued since a time)."""
        return {"cancelled": await service.cancel_all(q, body["status"], body.get("since"),
                                                      body.get("type"))}

    @app.get(API + "/jobs/{q}/{job_id}", tags=["jobs"], response_model=models.JobDetail,
             responses=models.LOOKUP)
    async def job(q: str, job_id: str) -> Any:
        """A job with its payload, result and every attempt."""
        return await service.job(q, job_id)

    @app.get(API + "/jobs/{q}/{job_id}/timeline", tags=["jobs"], response_model=models.Timeline,
             responses=models.LOOKUP)
    async def job_timeline(q: str, job_id: str) -> Any:
        """The job's life as a waterfall, from its queue's records: its wait to its
        first run, every attempt, the durable calls its runs met and its end, as bars
        on one time axis."""
        return await service.timeline(q, job_id)

    @app.get(API + "/jobs/{q}/{job_id}/logs", tags=["jobs"], response_model=list[models.LogLine],
             responses=models.LOOKUP)
    async def job_logs(q: str, job_id: str, limit: int = Query(1000, ge=1, le=10_000)) -> Any:
        """The log lines emitted while the job's attempts ran, oldest first."""
        return await service.logs(q, job_id, limit)

    @app.get(API + "/jobs/{q}/{job_id}/result", tags=["jobs"], response_model=models.Outcome,
             responses=models.LOOKUP)
    async def result(q: str, job_id: str, wait: float = Query(0, ge=0)) -> Any:
        """The job's outcome, waiting up to `wait` s (at most 60: longer waits are
        cut to 60) for it to finish; `done` says whether it did."""
        return await service.result(q, job_id, min(wait, _MAX_WAIT))

    @app.post(API + "/jobs/{q}/{job_id}/retry", tags=["jobs"], response_model=models.JobAnswer,
              responses=models.WRITE)
    async def retry(q: str, job_id: str) -> Any:
        """Send a failed job back to the queue with fresh retries."""
        return (await service.retry(q, [job_id]))[0]

    @app.post(API + "/jobs/{q}/{job_id}/cancel", tags=["jobs"], response_model=models.JobAnswer,
              responses=models.WRITE)
    async def cancel(q: str, job_id: str) -> Any:
        """Cancel a job not yet finished (a running one is asked to stop)."""
        return (await service.cancel(q, [job_id]))[0]


def _awakeables(app: FastAPI, service: Service) -> None:
    # The id is the token `await dotdo.awakeable()` gave: it names its queue and job.
    @app.post(API + "/awakeables/{awakeable_id}/resolve", tags=["awakeables"],
              response_model=models.Settled, responses=models.SETTLE)
    async def resolve(awakeable_id: str, body: models.ResolveBody | None = None) -> Any:
        """Resolve an awakeable with `value` (null if left out): the job waiting for
        it goes on with that value. An awakeable takes one resolve or reject (409 after)."""
        return await service.resolve(awakeable_id, (body or {}).get("value"))

    @app.post(API + "/awakeables/{awakeable_id}/reject", tags=["awakeables"],
              response_model=models.Settled, responses=models.SETTLE)
    async def reject(awakeable_id: str, body: models.RejectBody) -> Any:
        """Reject an awakeable: the job's `await dotdo.wait(token)` raises
        `RejectedError` with the reason. One resolve or reject per awakeable (409 after)."""
        return await service.reject(awakeable_id, body["reason"])


def _objects(app: FastAPI, service: Service) -> None:
    @app.get(API + "/objects", tags=["objects"], response_model=dict[str, int], responses=models.READ)
    async def classes() -> Any:
        """Classes with their number of objects."""
        return await service.classes()

    @app.get(API + "/objects/{cls}", tags=["objects"], response_model=models.ObjectPage,
             responses=models.LOOKUP)
    async def objects(cls: str, limit: int = Query(100, ge=1, le=1000),
                      cursor: str | None = None) -> Any:
        """The objects of a class, a page at a time: pass `cursor` back for the next."""
        return await service.objects(cls, limit, cursor)

    @app.get(API + "/objects/{cls}/{object_id}", tags=["objects"], response_model=models.ObjectView,
             responses=models.LOOKUP)
    async def one(cls: str, object_id: str) -> Any:
        """An object's keys, own tables, alarm and schedules, read from its file."""
        return await service.object(cls, object_id)

    @app.get(API + "/objects/{cls}/{object_id}/steps", tags=["objects"],
             response_model=list[models.Step], responses=models.LOOKUP)
    async def steps(cls: str, object_id: str, limit: int = Query(100, ge=1, le=1000)) -> Any:
        """The object's step journal, newest first, with failed attempts."""
        return await service.steps(cls, object_id, limit)

    @app.post(API + "/objects/{cls}/{object_id}/{method}", tags=["objects"],
              response_model=models.Called, responses=models.WRITE)
    async def call(cls: str, object_id: str, method: str, body: models.CallBody | None = None
                   ) -> Any:
        """Call a method of an object whose class is exposed (`expose=`)."""
        body = body or {}
        return {"result": await service.call(cls, object_id, method, body.get("args", []),
                                             body.get("kwargs", {}))}

    @app.post(API + "/events/{event_type}", tags=["events"], status_code=202,
              response_model=models.Sent, responses=models.SEND)
    async def emit(event_type: str, data: Annotated[Any, Body()] = None) -> Any:
        """Send an event `Noun.verb` (the server must expose the noun: --events); the
        body is its data."""
        await service.emit(event_type, data)
        return {"sent": event_type}


def _live(app: FastAPI, service: Service) -> None:
    # Where Prometheus looks by default (its metrics_path): not under /api.
    @app.get("/metrics", tags=["metrics"], response_class=PlainTextResponse,
             responses=models.READ)
    async def metrics() -> Response:
        """Prometheus metrics of every queue."""
        return PlainTextResponse(prometheus.render(await service.metrics()),
                                 media_type=prometheus.CONTENT_TYPE)

    @app.get(API + "/events/stream", tags=["events"], response_class=StreamingResponse,
             responses={**models.READ, **models.STREAM})
    async def stream(request: Request) -> Response:
        """Server-sent events: `job` (a Job event with its queue) as they happen, and
        `counts` (every queue's counts) every 2 s."""
        return StreamingResponse(_stream(service, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(plain(data))}\n\n"


async def _stream(service: Service, request: Request) -> AsyncIterator[str]:
    _, cursor = await service.events(None)
    yield _sse("counts", await service.queues())
    loop = asyncio.get_running_loop()
    counted = loop.time()
    while not await request.is_disconnected():
        await asyncio.sleep(_EVENTS_EVERY)
        try:
            events, cursor = await service.events(cursor)
            for event in events:
                yield _sse("job", event)
            if loop.time() - counted >= _COUNTS_EVERY:
                counted = loop.time()
                yield _sse("counts", await service.queues())
            else:
                yield ": keep-alive\n\n"
        except Exception as exc:  # noqa: BLE001 - a queue restarting: say so, go on
            yield _sse("error", {"error": str(exc)})
