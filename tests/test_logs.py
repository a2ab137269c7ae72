"""Log records that say which object and which job (dotdo/logs.py): the extras every
record carries, the JSON output, and the records a job scope keeps."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import dotdo
from dotdo import logs, testing
from dotdo.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("dotdo_object", "dotdo_job_id", "dotdo_queue", "dotdo_attempt", "dotdo_trace_id",
          "dotdo_span_id")


class _Kept(logging.Handler):
    """Keeps the records it handles, for the test to look at."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def app_log():
    """A user's logger at INFO, with a handler keeping its records (not propagated:
    the test's output stays quiet, and a job scope keeps records all the same)."""
    logs.configure()
    log = logging.getLogger("tests.logs.app")
    kept = _Kept()
    log.addHandler(kept)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log, kept.records
    finally:
        log.removeHandler(kept)
        log.setLevel(logging.NOTSET)
        log.propagate = True


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a Python of its own, with ``env`` added to the environment."""
    environ = {k: v for k, v in os.environ.items() if k != logs.FORMAT_VARIABLE}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          env={**environ, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


# -- the extras --------------------------------------------------------------------------


def test_records_carry_the_job_inside_a_scope_and_none_outside(app_log):
    log, records = app_log
    log.info("before")
    with logs.job_scope("emails", "j-1", 2):
        log.info("during")
    log.info("after")
    before, during, after = records
    for record in (before, after):
        assert {name: getattr(record, name) for name in EXTRAS} == dict.fromkeys(EXTRAS)
    assert (during.dotdo_job_id, during.dotdo_queue, during.dotdo_attempt) == ("j-1", "emails", 2)
    assert during.dotdo_object is None and during.dotdo_trace_id is None
    # a format string may name them
    line = logging.Formatter("%(dotdo_queue)s/%(dotdo_job_id)s#%(dotdo_attempt)s %(message)s").format(during)
    assert line == "emails/j-1#2 during"


class LogsProbe(dotdo.DurableObject):
    def speak(self) -> None:
        logging.getLogger("tests.logs.app").info("from the object")


def test_records_name_the_object_the_code_acts_for(app_log):
    _, records = app_log
    with testing.local():
        dotdo.LogsProbe("north").speak().result()
    assert [(r.getMessage(), r.dotdo_object) for r in records] == [
        ("from the object", "LogsProbe/north")]


def test_a_bad_log_format_is_a_config_error(monkeypatch):
    monkeypatch.setenv(logs.FORMAT_VARIABLE, "yaml")
    with pytest.raises(ConfigError, match=r"DOTDO_LOG_FORMAT='yaml'.*'text'.*'json'"):
        logs.configure()


# -- the output ----------------------------------------------------------------------------


def test_text_output_is_as_it_was():
    code = """
        import logging
        from dotdo import logs
        logs.configure(host="h")
        logging.getLogger("app").warning("careful %s", 1)   # the last resort: no handlers
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        with logs.job_scope("emails", "j-1", 1):
            logging.getLogger("app").error("broken")
    """
    assert _run(code).stderr == "careful 1\nERROR app: broken\n"


def test_json_output_is_one_object_a_line():
    code = """
        import logging
        from dotdo import logs
        logs.configure(host="host-7")
        log = logging.getLogger("app")
        log.warning("plain %s", "one", extra={"user": "ann", "n": 3, "odd": object(), "ts": 1})
        with logs.job_scope("emails", "j-1", 2):
            try:
                1 / 0
            except ZeroDivisionError:
                log.exception("it broke")
        log.info("not printed: nothing asked for INFO")
    """
    lines = _run(code, DOTDO_LOG_FORMAT="json").stderr.splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["ts"].endswith("Z") and first["ts"][:2] == "20"
    assert {k: first[k] for k in ("level", "logger", "message", "object", "job_id", "queue",
                                  "attempt", "trace_id", "span_id", "host")} == {
        "level": "WARNING", "logger": "app", "message": "plain one", "object": None,
        "job_id": None, "queue": None, "attempt": None, "trace_id": None, "span_id": None,
        "host": "host-7"}
    assert isinstance(first["process"], int) and "exc" not in first
    # extras that JSON carries come along; none replaces a field of the line
    assert (first["user"], first["n"]) == ("ann", 3) and "odd" not in first
    assert first["ts"] != 1
    assert (second["level"], second["message"], second["job_id"], second["queue"],
            second["attempt"]) == ("ERROR", "it broke", "j-1", "emails", 2)
    assert second["exc"].startswith("Traceback") and "ZeroDivisionError" in second["exc"]


def test_json_replaces_the_format_of_the_root_handlers_without_adding_one():
    code = """
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        from dotdo import logs
        logs.configure()
        logs.configure()   # idempotent
        assert len(logging.getLogger().handlers) == 1
        logging.getLogger("app").info("once")
    """
    (line,) = _run(code, DOTDO_LOG_FORMAT="json").stderr.splitlines()
    assert json.loads(line)["message"] == "once"


# -- what a job scope keeps -------------------------------------------------------------------


def test_a_scope_keeps_its_records(app_log):
    log, _ = app_log
    quiet = logging.getLogger("tests.logs.quiet")
    quiet.setLevel(logging.WARNING)
    try:
        with logs.job_scope("emails", "j-1", 1) as kept:
            log.info("sending %d", 3)
            quiet.info("a logger at WARNING makes no INFO record: nothing to keep")
            logging.getLogger("tests.logs.quiet.child").warning("any logger")
            try:
                raise ValueError("no such address")
            except ValueError:
                log.exception("failed")
            log.info("x" * 5_000)
    finally:
        quiet.setLevel(logging.NOTSET)
    assert [(k["level"], k["logger"]) for k in kept] == [
        ("INFO", "tests.logs.app"), ("WARNING", "tests.logs.quiet.child"),
        ("ERROR", "tests.logs.app"), ("INFO", "tests.logs.app")]
    assert kept[0]["message"] == "sending 3"
    assert kept[2]["message"] == "failed\nValueError: no such address"
    assert len(kept[3]["message"]) == logs.MESSAGE_LIMIT
    assert all(k["traceId"] is None and k["spanId"] is None for k in kept)
    assert all(isinstance(k["t"], float) for k in kept)


def test_a_scope_keeps_200_records_then_counts_the_rest(app_log):
    log, _ = app_log
    with logs.job_scope("emails", "j-1", 1) as kept:
        for n in range(logs.KEEP + 50):
            log.info("record %d", n)
    assert len(kept) == logs.KEEP + 1
    assert kept[logs.KEEP - 1]["message"] == f"record {logs.KEEP - 1}"
    assert kept[-1]["level"] == "WARNING"
    assert kept[-1]["message"].startswith("50 more records were dropped")


def test_a_scope_keeps_records_of_sync_code_run_in_a_thread_with_its_context(app_log):
    log, _ = app_log
    with concurrent.futures.ThreadPoolExecutor(1) as pool, \
            logs.job_scope("emails", "j-1", 1) as kept:
        # as the worker runs a sync handler
        pool.submit(contextvars.copy_context().run, log.info, "in the pool").result()
    assert [k["message"] for k in kept] == ["in the pool"]


def test_a_scope_keeps_no_records_of_other_threads(app_log):
    log, records = app_log
    inside = threading.Event()
    done = threading.Event()

    def elsewhere() -> None:
        inside.wait()
        log.info("from a thread outside the scope")
        done.set()

    outside = threading.Thread(target=elsewhere)
    outside.start()
    with logs.job_scope("emails", "j-1", 1) as kept:
        inside.set()
        done.wait()
        # a thread started in the scope starts with a context of its own
        started = threading.Thread(target=log.info, args=("from a thread it started",))
        started.start()
        started.join()
        log.info("from the scope")
    outside.join()
    assert [k["message"] for k in kept] == ["from the scope"]
    assert [r.dotdo_job_id for r in records] == [None, None, "j-1"]


def test_a_scope_keeps_the_records_of_its_task_not_of_others(app_log):
    log, _ = app_log
    kept: list = []

    async def handler(begun: asyncio.Event, go: asyncio.Event) -> None:
        with logs.job_scope("emails", "j-1", 1) as records:
            kept.append(records)
            begun.set()
            log.info("before the await")
            await go.wait()
            log.info("after the await")

    async def other(begun: asyncio.Event, go: asyncio.Event) -> None:
        await begun.wait()
        log.info("another task")
        go.set()

    async def main() -> None:
        begun, go = asyncio.Event(), asyncio.Event()
        await asyncio.gather(handler(begun, go), other(begun, go))

    asyncio.run(main())
    assert [k["message"] for k in kept[0]] == ["before the await", "after the await"]


def test_a_scope_keeps_nothing_after_it_ends(app_log):
    log, _ = app_log
    with logs.job_scope("emails", "j-1", 1) as kept:
        later = contextvars.copy_context()  # code the job left to run later
    later.run(log.info, "after the job")
    assert kept == []


def test_records_carry_the_span_when_tracing_is_on():
    code = """
        import json, logging
        from opentelemetry import trace
        from dotdo import logs, tracing
        tracing.setup((("DOTDO_TRACING", "1"), ("OTEL_TRACES_EXPORTER", "console")))
        logs.configure()
        log = logging.getLogger("app")
        seen = []
        class Keep(logging.Handler):
            def emit(self, record):
                seen.append((record.dotdo_trace_id, record.dotdo_span_id))
        log.addHandler(Keep())
        log.propagate = False
        with trace.get_tracer("t").start_as_current_span("x") as span:
            with logs.job_scope("emails", "j-1", 1) as kept:
                log.warning("in a span")
        log.warning("outside")
        ctx = span.get_span_context()
        print("RESULT", json.dumps({"span": [format(ctx.trace_id, "032x"),
                                             format(ctx.span_id, "016x")],
                                    "seen": seen, "kept": kept}))
    """
    out = _run(code).stdout
    (line,) = [line for line in out.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    trace_id, span_id = result["span"]
    assert result["seen"] == [[trace_id, span_id], [None, None]]
    assert [(k["traceId"], k["spanId"]) for k in result["kept"]] == [(trace_id, span_id)]
