"""OpenTelemetry traces: whether this process exports spans, and the spans dotdo makes.

Tracing is on when :func:`dotdo.init` is given ``tracing=True`` or the standard
switches ask for it (``OTEL_TRACES_EXPORTER`` other than ``none``, or an
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and
``OTEL_SDK_DISABLED`` is not ``true``. It needs the ``opentelemetry-sdk`` and the
OTLP/HTTP exporter (``pip install 'dotdo[otel]'``). A driver hands its switches to
the hosts it starts (in :class:`~dotdo.settings.Settings`), so every process of a
program exports to the same place, also on a cluster.

Off, each function here returns at its first test of ``_tracer`` (nothing is
imported, no context travels). On, a span's context travels as a W3C
``traceparent`` string: with each call (:class:`~dotdo.host.Call`), with each job
(stored in its row) and with each event.

Which calls are traced: a driver's, and any made inside a span (an object's method
called by a traced call, a job's attempt, an HTTP request, an event's handler). The
runtime's own background calls (a worker's claims and heartbeats, a queue's timers)
have no span around them and make none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from dotdo.errors import ConfigError

__all__ = ["setup", "enabled", "switches", "handed", "flush", "current_ids", "trace_id_of",
           "client_span", "end_call", "failed", "server_span", "producer", "sent", "consumer", "outcome",
           "step_span", "detached", "activate", "root_span", "current_carrier", "traced_now", "TRACEPARENT"]

_log = logging.getLogger("dotdo")
TRACEPARENT = "traceparent"  # the W3C header, also the key in stored carriers
# The switches a driver hands its hosts (the standard ones, read by the SDK itself).
_SWITCH_PREFIXES = ("OTEL_",)
BURST = 32_768  # spans a process keeps waiting for export (the SDK's default: 2,048)
EXPORT_BATCH = 2_048  # spans a process sends in one export (the SDK's default: 512)
INSTALL_HINT = "pip install 'dotdo[otel]' (opentelemetry-sdk and its OTLP/HTTP exporter)"

_tracer: Any = None  # an opentelemetry Tracer once tracing is on in this process
_api: Any = None  # the opentelemetry.trace module, once on
_context: Any = None  # the opentelemetry.context module, once on
_propagator: Any = None  # W3C TraceContext propagator, once on
_in_host = False  # this process is a host: only calls inside a span are traced
_untraced: Any = None  # the context key that marks the runtime's own work (detached())
_switches: tuple[tuple[str, str], ...] = ()


def _asked(environ: Mapping[str, str]) -> bool:
    """Whether the standard switches in ``environ`` ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def switches(tracing: bool | None) -> tuple[tuple[str, str], ...]:
    """What a driver hands its hosts: its ``OTEL_*`` variables, and ``DOTDO_TRACING=1``
    when tracing is on here; empty when it is off (``tracing`` from :func:`dotdo.init`:
    None follows the environment, False is off whatever it says)."""
    on = _asked(os.environ) if tracing is None else bool(tracing)
    if tracing is None and os.environ.get("DOTDO_TRACING", "").lower() in ("1", "true", "yes"):
        on = True
    if not on:
        return ()
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(_SWITCH_PREFIXES))
    return (("DOTDO_TRACING", "1"), *env)


def setup(given: tuple[tuple[str, str], ...], *, host: str | None = None) -> bool:
    """Turn tracing on in this process if ``given`` (from :func:`switches`) says so;
    ``host``: this process is a host of that name (its switches came from its creator:
    they fill the environment's gaps, so the SDK reads them as its own). Returns
    whether tracing is on. Idempotent."""
    global _tracer, _api, _context, _propagator, _in_host, _switches, _untraced
    if host is not None:
        _in_host = True
    if _tracer is not None or not given:
        return _tracer is not None
    for key, value in given:
        os.environ.setdefault(key, value)
    try:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise ConfigError(f"tracing needs OpenTelemetry: {INSTALL_HINT}") from None
    provider = trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):  # no SDK provider set by the program
        provider = _provider(host)
        trace.set_tracer_provider(provider)
    _api, _context, _propagator = trace, context, TraceContextTextMapPropagator()
    _untraced = context.create_key("dotdo.untraced")
    _switches = tuple(given)
    _tracer = trace.get_tracer("dotdo")
    return True


def _provider(host: str | None) -> Any:
    """An SDK TracerProvider exporting as ``OTEL_TRACES_EXPORTER`` says (``otlp``, the
    default, over HTTP/protobuf; or ``console``), batched as ``OTEL_BSP_*`` say."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigError(f"tracing needs the OpenTelemetry SDK: {INSTALL_HINT}") from None
    attributes: dict[str, Any] = {"process.pid": os.getpid()}
    if host is not None:
        attributes["dotdo.host"] = host
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.name"] = "dotdo"
    provider = TracerProvider(resource=Resource.create(attributes))
    kind = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")[0].strip().lower()
    if kind == "console":
        exporter: Any = ConsoleSpanExporter()
    elif kind in ("otlp", "none", ""):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(f"tracing exports over OTLP/HTTP: {INSTALL_HINT}") from None
        exporter = OTLPSpanExporter()
    else:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={kind!r}: dotdo exports 'otlp' (over "
                          f"HTTP/protobuf) or 'console'; or set 'none' to turn traces off")
    # The SDK's queue (2,048 spans) drops spans when a driver issues a few thousand
    # calls at once; unless OTEL_BSP_* say otherwise, room for a burst, sent in fewer
    # exports.
    env = os.environ
    provider.add_span_processor(BatchSpanProcessor(
        exporter,
        max_queue_size=None if "OTEL_BSP_MAX_QUEUE_SIZE" in env else BURST,
        max_export_batch_size=None if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in env else EXPORT_BATCH))
    return provider


def enabled() -> bool:
    """Whether this process exports spans."""
    return _tracer is not None


def handed() -> tuple[tuple[str, str], ...]:
    """The switches this process runs with (what hosts it starts inherit)."""
    return _switches


def flush(timeout: float = 5.0) -> None:
    """Export the spans this process has ended so far (before it exits on purpose)."""
    if _tracer is not None:
        provider = _api.get_tracer_provider()
        if hasattr(provider, "force_flush"):
            provider.force_flush(int(timeout * 1000))


# -- context --------------------------------------------------------------------------


def _valid(span: Any) -> bool:
    return span is not None and span.get_span_context().is_valid


def _carrier(span: Any) -> str | None:
    """The W3C ``traceparent`` of ``span``."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=_api.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def _parent(traceparent: str | None) -> Any:
    """The context whose parent is the span ``traceparent`` names (None: no parent)."""
    if not traceparent:
        return None
    return _propagator.extract({TRACEPARENT: traceparent})


def current_ids() -> tuple[str, str] | None:
    """``(trace id, span id)`` in hex of the span this code runs in, if it is recorded
    (a sampler may leave it out: then no backend will have it), else None."""
    if _tracer is None:
        return None
    ctx = _api.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id in a W3C ``traceparent`` (``00-<trace>-<span>-<flags>``) whose
    trace is recorded (its sampled flag is set), else None."""
    if not traceparent or traceparent.count("-") != 3:
        return None
    _, trace_id, _, flags = traceparent.split("-")
    try:
        return trace_id if int(flags, 16) & 1 else None
    except ValueError:
        return None


def traced_now() -> bool:
    """Whether a call made here now is traced: tracing is on, and the code runs inside
    a span, or is a driver's own (not a host's, nor the runtime's background work,
    which starts :func:`detached`: in process, that runs in the driver's process)."""
    if _tracer is None:
        return False
    if _api.get_current_span().get_span_context().is_valid:
        return True
    return not _in_host and not _context.get_value(_untraced)


# -- spans ----------------------------------------------------------------------------


def client_span(class_name: str, method: str, object_id: str) -> tuple[Any, str | None]:
    """A call about to be sent: its client span (to end with :func:`end_call`) and the
    context it carries; ``(None, None)`` when the call is not traced."""
    if not traced_now():
        return None, None
    span = _tracer.start_span(f"{class_name}.{method}", kind=_api.SpanKind.CLIENT, attributes={
        "rpc.system": "dotdo", "rpc.service": class_name, "rpc.method": method,
        "dotdo.object.id": object_id})
    return span, _carrier(span)


def end_call(span: Any, error: BaseException | None = None) -> None:
    """End a call's client or server span, with its error if it failed."""
    if span is None:
        return
    if error is not None:
        failed(span, error)
    span.end()


def failed(span: Any, error: BaseException) -> None:
    """Mark ``span`` failed with ``error`` (nothing when None)."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))
    span.set_attribute("error.type", type(error).__name__)


# What the context managers below give when there is nothing to trace: one shared
# no-op, so that off, a job or a call pays a test and a with, no generator.
_OFF: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()


def server_span(traceparent: str | None, class_name: str, method: str,
                object_id: str) -> contextlib.AbstractContextManager[Any]:
    """The span of a call run by its host, a child of the caller's (when it carries a
    context), current while the method runs; gives None when the call is untraced."""
    if _tracer is None or not traceparent:
        return _OFF
    return _tracer.start_as_current_span(
        f"{class_name}.{method}", context=_parent(traceparent), kind=_api.SpanKind.SERVER,
        attributes={"rpc.system": "dotdo", "rpc.service": class_name, "rpc.method": method,
                    "dotdo.object.id": object_id})


def producer(queue: str, job_id: str, job_type: str) -> str | None:
    """A job just enqueued: its ``<queue> publish`` span (a child of the current span,
    else a root), ended at once; returns the context its attempts run under, to store
    with the job. None when tracing is off."""
    if _tracer is None:
        return None
    span = _tracer.start_span(f"{queue} publish", kind=_api.SpanKind.PRODUCER, attributes={
        "messaging.system": "dotdo", "messaging.operation.type": "send",
        "messaging.operation.name": "publish", "messaging.destination.name": queue,
        "messaging.message.id": job_id, "dotdo.job.type": job_type})
    span.end()
    return _carrier(span)


def sent(event_type: str, event_id: str, sender: str) -> str | None:
    """An event just journaled by ``send`` inside a span: its ``send <type>`` span,
    ended at once; returns its context, which the handlers' spans link to. None when
    untraced."""
    if not traced_now() or not _valid(_api.get_current_span()):
        return None
    span = _tracer.start_span(f"send {event_type}", kind=_api.SpanKind.PRODUCER, attributes={
        "messaging.system": "dotdo", "messaging.operation.type": "send",
        "messaging.destination.name": event_type, "messaging.message.id": event_id,
        "dotdo.object": sender})
    span.end()
    return _carrier(span)


def consumer(traceparent: str | None, queue: str, job_id: str, job_type: str, attempt: int,
             fence: int, worker: str) -> contextlib.AbstractContextManager[Any]:
    """One attempt of a job: its ``<queue> process`` span under the job's enqueue
    context (however much later it runs, wherever), current while the handler runs.
    The caller sets ``dotdo.job.outcome`` with :func:`outcome`."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(
        f"{queue} process", context=_parent(traceparent), kind=_api.SpanKind.CONSUMER,
        record_exception=False, set_status_on_exception=False, attributes={
            "messaging.system": "dotdo", "messaging.operation.type": "process",
            "messaging.operation.name": "process", "messaging.destination.name": queue,
            "messaging.message.id": job_id, "messaging.consumer.group.name": queue,
            "dotdo.job.type": job_type, "dotdo.job.attempt": attempt,
            "dotdo.job.fence": fence, "dotdo.worker": worker})


def outcome(span: Any, value: str, error: str | None = None) -> None:
    """Set an attempt's outcome (``completed``, ``failed``, ``retrying``, ``parked``,
    ``released``) on its span; an error marks the span failed."""
    if span is None:
        return
    span.set_attribute("dotdo.job.outcome", value)
    if error is not None:
        from opentelemetry.trace import Status, StatusCode
        span.set_status(Status(StatusCode.ERROR, error[:500]))


def step_span(name: str, replayed: bool) -> Any:
    """A ``do`` step starting (end it with :func:`end_call`), a child of the current
    span; a replayed step's span is marked ``dotdo.step.replayed`` and ended at once
    (its time was spent, and counted, when it first ran). None when untraced."""
    if not traced_now() or not _valid(_api.get_current_span()):
        return None
    now = time.time_ns()
    span = _tracer.start_span(f"step {name}", start_time=now, attributes={
        "dotdo.step.name": name, "dotdo.step.replayed": replayed})
    if replayed:
        span.end(end_time=now)
        return None
    return span


def detached() -> contextlib.AbstractContextManager[Any]:
    """Run the block outside any span: for starting the runtime's own background work
    (an object's loops, a worker's claims), which a task would otherwise run inside the
    span of the call that happened to start it, tracing its every call forever."""
    if _tracer is None:
        return _OFF
    return _detached()


@contextlib.contextmanager
def _detached() -> Iterator[None]:
    # A context of its own, marked: what starts in it makes no span until a span
    # starts (a job's attempt, an event's handler), whose context has no mark.
    token = _context.attach(_context.set_value(_untraced, True, _context.Context()))
    try:
        yield
    finally:
        _context.detach(token)


def activate(span: Any) -> contextlib.AbstractContextManager[Any]:
    """Make ``span`` current for the block (nothing when None)."""
    if span is None:
        return _OFF
    return _api.use_span(span, end_on_exit=False, record_exception=False,
                         set_status_on_exception=False)


def root_span(name: str, links: list[str | None] | None = None,
              attributes: dict[str, Any] | None = None, traceparent: str | None = None,
              server: bool = False) -> contextlib.AbstractContextManager[Any]:
    """A span for work that starts here (an event's handler, a schedule's tick, an
    alarm, an HTTP request: ``server``): a root with links to the contexts that led to
    it, current for the block, or, given ``traceparent``, a child of that (an HTTP
    request's caller)."""
    if _tracer is None:
        return _OFF
    linked = []
    for carrier in links or ():
        parent = _parent(carrier)
        if parent is not None:
            ctx = _api.get_current_span(parent).get_span_context()
            if ctx.is_valid:
                linked.append(_api.Link(ctx))
    parent = _parent(traceparent)
    return _tracer.start_as_current_span(
        name, context=parent if parent is not None else _context.Context(),
        kind=_api.SpanKind.SERVER if server else _api.SpanKind.INTERNAL,
        links=linked, attributes=attributes)


def current_carrier() -> str | None:
    """The ``traceparent`` of the span this code runs in (to store with what it starts
    for later: an event, an alarm), else None."""
    if _tracer is None:
        return None
    span = _api.get_current_span()
    return _carrier(span) if _valid(span) else None
