"""The HTTP API: one FastAPI app over a :class:`~dotdo.ops.service.Service`, serving
the JSON routes, live events (SSE), Prometheus metrics, the API docs (``/docs``, with
Swagger UI shipped in a package: no CDN) and the dashboard (``/``).

Every route needs a token (:mod:`dotdo.ops.auth`): ``Authorization: Bearer <token>``,
or, for browsers, ``?token=`` once, which sets a cookie. A write carried by the cookie
or ``?token=`` must come from this server's own pages (its Origin). The read-only token
may only read. Errors answer ``{"error": message}`` (and ``"field"`` for a bad body):
400 bad input, 401 no or a wrong token, 403 the read-only token writing, a cross-site
write or something not exposed, 404 unknown queue, job, class or object, 413 body too
large.
"""

from __future__ import annotations

import asyncio
import base64
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
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import dotdo
from dotdo.ops import prometheus
from dotdo.ops.auth import ADMIN, Tokens, same_site
from dotdo.ops.service import NotExposed, Service

__all__ = ["create_app", "MAX_BODY", "COOKIE"]

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
<h1>dotdo</h1><p>This dashboard needs its token. Open the address <code>dotdo serve</code>
printed with <code>?token=</code> and the token from its token file, or run
<code>dotdo dashboard</code>, which opens it for you.</p></body>"""
_BAD_INPUT = (ValueError, TypeError, dotdo.ConfigError, dotdo.LimitError, dotdo.InvalidIdError,
              dotdo.EncodeError, dotdo.DecodeError)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


class _JSON(JSONResponse):
    """JSON that also carries what jobs may hold (bytes as base64, sets as lists)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_default, allow_nan=False).encode()


def _error(status: int, message: str, **extra: Any) -> _JSON:
    return _JSON({"error": message, **extra}, status_code=status)


# -- bodies -------------------------------------------------------------------------------

class EnqueueBody(BaseModel):
    """A job to enqueue; options as ``Queue.enqueue`` takes them."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, description="the job type a handler is registered for")
    payload: Any = None
    job_id: str | None = Field(None, min_length=1,
                               description="the job's id; enqueued again, the job is not added twice")
    priority: int | None = None
    delay: float | None = Field(None, ge=0)
    run_at: float | None = Field(None, ge=0, description="epoch seconds to run at")
    max_retries: int | None = Field(None, ge=0)
    timeout: float | None = Field(None, gt=0)
    backoff: Any = None
    group: str | None = None
    rate_key: str | None = None
    dedupe_key: str | None = None
    debounce: float | None = None
    unique_for: float | None = None
    depends_on: list[str] | None = None
    on_parent_failure: str | None = None


class SettingsBody(BaseModel):
    """Queue limits to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")
    concurrency: int | None = None
    lease_timeout: float | None = None
    rate: str | None = None
    key_rate: str | None = None
    group_concurrency: int | None = None
    keep_completed: Any = None
    keep_failed: Any = None


class BulkBody(BaseModel):
    """Which jobs a bulk action takes: a status, and optionally a type and a time."""

    model_config = ConfigDict(extra="forbid")
    status: str = "failed"
    type: str | None = None
    since: float | None = None


class PurgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str | None = None
    older_than: float | None = Field(None, ge=0)


class CallBody(BaseModel):
    """Arguments of a call on an exposed object."""

    model_config = ConfigDict(extra="forbid")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}


# -- the app ------------------------------------------------------------------------------

def create_app(service: Service, tokens: Tokens, *, max_body: int = MAX_BODY) -> FastAPI:
    """The API over ``service``, guarded by ``tokens``."""
    app = FastAPI(title="dotdo", version="1", docs_url=None, redoc_url=None,
                  default_response_class=_JSON,
                  description="Queues, jobs, workers and durable objects of one dotdo "
                              "storage root. Authenticate with `Authorization: Bearer <token>`.")
    _guard(app, tokens, max_body)
    _errors(app)
    _pages(app)
    _queues(app, service)
    _jobs(app, service)
    _objects(app, service)
    _live(app, service)
    return app


def _guard(app: FastAPI, tokens: Tokens, max_body: int) -> None:
    """Tokens on every route, and the body limit."""

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
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            return _error(413, f"the body has {int(length):,} bytes; at most {max_body:,} are "
                               "taken: enqueue big payloads as a reference (a path, a URL)")
        if length is None and request.method in _BODIES:
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
        if request.method in _BODIES:
            bad = _non_finite(await request.body(), request.headers.get("content-type"))
            if bad is not None:
                return bad
        response = await call_next(request)
        if remember is not None:  # later fetches and the event stream use the cookie
            response.set_cookie(COOKIE, remember, httponly=True, samesite="strict")
        return response


def _non_finite(body: bytes, content_type: str | None) -> Response | None:
    """400 for a JSON body holding NaN, Infinity or a number too big for a float
    (1e400): Python's JSON reader takes them, and they would be stored, then shown as
    null or not at all. Bodies that are not JSON are left to the route to refuse."""
    if not body or (content_type and "json" not in content_type.lower()):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None  # the route answers with its own error
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
        if first.get("type") == "json_invalid":
            return _error(400, f"the body is not valid JSON ({first.get('msg')}, at "
                               f"{first.get('ctx', {}).get('error', field)})", field="body")
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


def _queues(app: FastAPI, service: Service) -> None:
    @app.get("/api/status", tags=["status"])
    async def status() -> Any:
        """Ray nodes, objects by class, queues with counts, workers online."""
        return await service.status()

    @app.get("/api/queues", tags=["queues"])
    async def queues() -> Any:
        """Every queue with its counts by state."""
        return await service.queues()

    @app.get("/queues/{q}", tags=["queues"])
    async def queue(q: str) -> Any:
        """One queue: counts, settings, stats, counts by type."""
        return await service.queue(q)

    @app.get("/queues/{q}/metrics", tags=["queues"])
    async def metrics(q: str, window: float = Query(3600, gt=0), bucket: float = Query(60, gt=0)
                      ) -> Any:
        """Throughput and failures over time, p50/p95 duration and wait, oldest pending age."""
        return await service.stats(q, window, bucket)

    @app.post("/queues/{q}/pause", tags=["queues"])
    async def pause(q: str) -> Any:
        """Hand out no jobs until resumed; running ones finish."""
        return await service.pause(q)

    @app.post("/queues/{q}/resume", tags=["queues"])
    async def resume(q: str) -> Any:
        return await service.resume(q)

    @app.patch("/queues/{q}/settings", tags=["queues"])
    async def settings(q: str, body: SettingsBody) -> Any:
        """Change concurrency, rate limits or retention (null: no limit)."""
        return await service.configure(q, **body.model_dump(exclude_unset=True))

    @app.post("/queues/{q}/purge", tags=["queues"])
    async def purge(q: str, body: PurgeBody | None = None) -> Any:
        """Delete finished jobs (of one status; finished more than older_than s ago)."""
        body = body or PurgeBody(status=None, older_than=None)
        return {"purged": await service.purge(q, body.status, body.older_than)}

    @app.get("/queues/{q}/dead-letters", tags=["queues"])
    async def dead_letters(q: str, limit: int = Query(50, ge=1, le=1000)) -> Any:
        """Failed jobs grouped by the first line of their error."""
        return await service.dead_letters(q, limit)

    @app.get("/api/workers", tags=["workers"])
    async def workers(queue: str | None = None) -> Any:
        return await service.workers(queue)

    @app.get("/api/schedules", tags=["schedules"])
    async def schedules() -> Any:
        return await service.schedules()


def _jobs(app: FastAPI, service: Service) -> None:
    @app.post("/queues/{q}/jobs", tags=["jobs"], status_code=201)
    async def enqueue(q: str, response: Response, body: EnqueueBody,
                      idempotency_key: str | None = Header(None)) -> Any:
        """Enqueue a job. With an `Idempotency-Key`, that key is the job's id: sent
        again, the same job answers 200 instead of a new one 201."""
        options = body.model_dump(exclude_unset=True, exclude={"type", "payload"})
        if idempotency_key is not None:
            if options.get("job_id", idempotency_key) != idempotency_key:
                return _error(400, "job_id differs from the Idempotency-Key header: send one "
                                   "of them (the key is the job's id)", field="job_id")
            options["job_id"] = idempotency_key
        job = await service.enqueue(q, body.type, body.payload, **options)
        if job.get("enqueued", "added") != "added":
            response.status_code = 200
        return job

    @app.get("/queues/{q}/jobs", tags=["jobs"])
    async def jobs(q: str, status: str | None = None, type: str | None = None,
                   since: float | None = None, limit: int = Query(50, ge=1, le=1000),
                   cursor: int | None = None) -> Any:
        """Jobs in enqueue order, a page at a time: pass `cursor` back for the next."""
        return await service.jobs(q, status=status, type=type, since=since, limit=limit,
                                  cursor=cursor)

    @app.post("/queues/{q}/jobs/retry", tags=["jobs"])
    async def retry_all(q: str, body: BulkBody | None = None) -> Any:
        """Retry every failed job (of a type, enqueued since a time)."""
        body = body or BulkBody()
        if body.status != "failed":
            raise ValueError("status: only failed jobs can be retried")
        return {"retried": await service.retry_all(q, body.since, body.type)}

    @app.post("/queues/{q}/jobs/cancel", tags=["jobs"])
    async def cancel_all(q: str, body: BulkBody) -> Any:
        """Cancel every job in a status (of a type, enqueued since a time)."""
        return {"cancelled": await service.cancel_all(q, body.status, body.since, body.type)}

    @app.get("/jobs/{q}/{job_id}", tags=["jobs"])
    async def job(q: str, job_id: str) -> Any:
        """A job with its payload, result and every attempt."""
        return await service.job(q, job_id)

    @app.get("/jobs/{q}/{job_id}/result", tags=["jobs"])
    async def result(q: str, job_id: str, wait: float = Query(0, ge=0)) -> Any:
        """The job's outcome, waiting up to `wait` s (at most 60: longer waits are
        cut to 60) for it to finish; `done` says whether it did."""
        return await service.result(q, job_id, min(wait, _MAX_WAIT))

    @app.post("/jobs/{q}/{job_id}/retry", tags=["jobs"])
    async def retry(q: str, job_id: str) -> Any:
        """Send a failed job back to the queue with fresh retries."""
        return (await service.retry(q, [job_id]))[0]

    @app.post("/jobs/{q}/{job_id}/cancel", tags=["jobs"])
    async def cancel(q: str, job_id: str) -> Any:
        """Cancel a job not yet finished (a running one is asked to stop)."""
        return (await service.cancel(q, [job_id]))[0]


def _objects(app: FastAPI, service: Service) -> None:
    @app.get("/api/objects", tags=["objects"])
    async def classes() -> Any:
        """Classes with their number of objects."""
        return await service.classes()

    @app.get("/api/objects/{cls}", tags=["objects"])
    async def objects(cls: str, limit: int = Query(100, ge=1, le=1000),
                      cursor: str | None = None) -> Any:
        return await service.objects(cls, limit, cursor)

    @app.get("/api/objects/{cls}/{object_id}", tags=["objects"])
    async def one(cls: str, object_id: str) -> Any:
        """An object's keys, own tables, alarm and schedules, read from its file."""
        return await service.object(cls, object_id)

    @app.get("/api/objects/{cls}/{object_id}/steps", tags=["objects"])
    async def steps(cls: str, object_id: str, limit: int = Query(100, ge=1, le=1000)) -> Any:
        """The object's step journal, newest first, with failed attempts."""
        return await service.steps(cls, object_id, limit)

    @app.post("/objects/{cls}/{object_id}/{method}", tags=["objects"])
    async def call(cls: str, object_id: str, method: str, body: CallBody | None = None) -> Any:
        """Call a method of an object whose class is exposed (`expose=`)."""
        body = body or CallBody()
        return {"result": await service.call(cls, object_id, method, body.args, body.kwargs)}

    @app.post("/events/{event_type}", tags=["events"], status_code=202)
    async def emit(event_type: str, data: Annotated[Any, Body()] = None) -> Any:
        """Send an event `Noun.verb` (the server must expose the noun: --events)."""
        await service.emit(event_type, data)
        return {"sent": event_type}


def _live(app: FastAPI, service: Service) -> None:
    @app.get("/metrics", tags=["metrics"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus metrics of every queue."""
        return PlainTextResponse(prometheus.render(await service.metrics()),
                                 media_type=prometheus.CONTENT_TYPE)

    @app.get("/events/stream", tags=["events"])
    async def stream(request: Request) -> Response:
        """Server-sent events: `job` (a Job event with its queue) as they happen, and
        `counts` (every queue's counts) every 2 s."""
        return StreamingResponse(_stream(service, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=_default)}\n\n"


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
