"""The ``jobs`` group: list a queue's jobs a page at a time (``ls``), show one with
its payload, result, trace, every attempt and what its runs met (``get``: points,
awakeables with their tokens, child jobs), print the log lines its attempts emitted
(``logs``), ``retry`` failed jobs and ``cancel``
unfinished ones (by id, or every such job of a queue after asking), and ``enqueue`` a
job from the command line. ``resolve`` and ``reject`` (an awakeable) are in
:mod:`dotdo.ops.cli.awakeables`.
"""

from __future__ import annotations

import datetime
import time
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import click
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dotdo.jobmodel import JobOptions, JobStatus, option_help
from dotdo.ops.cli.context import current_ops, json_option, run_service
from dotdo.ops.cli.output import (
    ago,
    as_text,
    data_text,
    emit,
    field_table,
    first_line,
    new_table,
    seconds_text,
    when,
)
from dotdo.ops.cli.params import UNFINISHED, Backoff, Duration, Moment, Since, parse_payload
from dotdo.ops.service import STATES, Service, trace_link

# -- jobs ----------------------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """Jobs: ls, get, logs, retry, cancel, enqueue, resolve, reject."""


def _parked(job: dict[str, Any], now: float) -> str:
    """What a parked job waits at and when it wakes: ``sleep#1, wakes in 1h``."""
    wake = job.get("wakeAt")
    if wake is None:
        return f"{job['waitingFor']}, no timeout"
    verb = "wakes" if job["status"] == JobStatus.SLEEPING else "times out"
    return f"{job['waitingFor']}, {verb} {ago(wake, now)}"


def _jobs_table(rows: list[dict[str, Any]], with_queue: bool = False) -> Table:
    now = time.time()
    parked = any(job.get("waitingFor") for job in rows)  # the column only when it says something
    table = new_table(*(["queue"] if with_queue else []), "id", "type", "status", "attempts",
                      "created", *(["waiting for"] if parked else []), "worker", "error")
    for job in rows:
        attempts = job.get("attemptCount", job["attempts"])
        waits = [as_text(_parked(job, now) if job.get("waitingFor") else None)] if parked else []
        table.add_row(*([as_text(job.get("queue"))] if with_queue else []), as_text(job["$id"]),
                      as_text(job["type"]), as_text(job["status"]), str(attempts),
                      ago(job["createdAt"], now), *waits, as_text(job.get("worker")),
                      as_text(first_line(job["error"]) or None))
    return table


def _point_what(point: dict[str, Any], now: float) -> str:
    """What a point of a run waits for, in a few words."""
    arg = point.get("arg") or {}
    kind = point["key"].partition("#")[0]
    if kind == "sleep":
        return f"until {when(point['until'], now)}"
    if kind == "event":
        match = f" matching {data_text(arg['match']).replace(chr(10), ' ')}" if arg.get("match") else ""
        return f"event {arg.get('type')}{match}"
    if kind == "wait":
        return f"awakeable {arg.get('awakeable')}"
    if kind == "awakeable":
        return "settled by its token (dotdo jobs resolve / reject)"
    if kind == "child":
        return f"job {arg.get('id')} ({arg.get('type')}) in {arg.get('queue')}"
    named, _, name = point["key"].partition(":")  # step:<step id>, patch:<name>
    return f"{named} {name}" if name else ""


def _waits_tables(value: dict[str, Any], now: float) -> list[Table]:
    """The job's points, awakeables (with the tokens to settle them) and children."""
    tables = []
    if value.get("points"):
        table = new_table("point", "state", "what", "times out", "created", "ended",
                          title="Points (in order)")
        for p in value["points"]:
            timeout = None if p["key"].startswith("sleep#") else p["until"]
            table.add_row(as_text(p["key"]), as_text(p["state"]), as_text(_point_what(p, now)),
                          when(timeout, now), when(p["createdAt"], now), when(p["endedAt"], now))
        tables.append(table)
    if value.get("awakeables"):
        table = new_table("awakeable", "state", "token (dotdo jobs resolve TOKEN [VALUE])",
                          title="Awakeables")
        for a in value["awakeables"]:
            table.add_row(as_text(a["key"]), as_text(a["state"]), as_text(a["token"]))
        tables.append(table)
    if value.get("children"):
        table = new_table("point", "queue", "id", "type", title="Child jobs")
        for c in value["children"]:
            table.add_row(as_text(c["point"]), as_text(c["queue"]), as_text(c["id"]),
                          as_text(c["type"]))
        tables.append(table)
    return tables


@jobs.command("ls")
@click.argument("q")
@click.option("--status", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--type", "job_type", metavar="TYPE", help="Only jobs of this type.")
@click.option("--since", type=Since(), metavar="WHEN",
              help="Only jobs enqueued since: an age (10m, 2h, 1d) or an ISO time.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", type=int, help="The cursor a previous page printed.")
@json_option
def jobs_ls(q: str, status: str | None, job_type: str | None, since: float | None, limit: int,
            cursor: int | None) -> None:
    """A queue's jobs in enqueue order, a page at a time."""
    value = run_service(current_ops().live().jobs(q, status=status, type=job_type, since=since, limit=limit,
                                    cursor=cursor))

    def render(out: Console) -> None:
        if not value["jobs"]:
            out.print("No jobs match.")
            return
        out.print(_jobs_table(value["jobs"]))
        if value["cursor"] is not None:
            out.print(f"More: add --cursor {value['cursor']}")

    emit(value, render)


async def _queue_of(service: Service, job_id: str, q: str | None) -> str:
    return q if q is not None else await service.find_job(job_id)


@jobs.command("get")
@click.argument("job_id", metavar="ID")
@click.option("--queue", "q", metavar="Q", help="The job's queue. Default: found by its id.")
@json_option
def jobs_get(job_id: str, q: str | None) -> None:
    """A job: payload, result, every attempt with its worker, error and traceback."""
    service = current_ops().live()

    async def get() -> dict[str, Any]:
        return await service.job(await _queue_of(service, job_id, q), job_id)

    value = run_service(get())

    def render(out: Console) -> None:
        now = time.time()
        rows: list[tuple[str, Any]] = [
            ("queue", value["queue"]), ("type", value["type"]), ("status", value["status"]),
            ("attempts", f"{value['attemptCount']} (retries allowed: {value['maxRetries']})"),
            ("priority", value["priority"]), ("created", when(value["createdAt"], now))]
        if value.get("waitingFor"):  # parked: its runAt is its wake time, or none
            point = next((p for p in value.get("points", ()) if p["key"] == value["waitingFor"]),
                         None)
            what = _point_what(point, now) if point is not None else ""
            rows.append(("waiting for", f"{value['waitingFor']}: {what}" if what
                         else value["waitingFor"]))
            verb = "wakes" if value["status"] == JobStatus.SLEEPING else "times out"
            rows.append((verb, when(value["wakeAt"], now) if "wakeAt" in value else "never"))
        else:
            rows.append(("run at", when(value["runAt"], now)))
        rows += [("started", when(value["startedAt"], now)),
                 ("finished", when(value["finishedAt"], now)), ("worker", value["worker"])]
        if value.get("parent"):
            rows.append(("parent", f"{value['parent']['id']} in {value['parent']['queue']}"))
        if value.get("traceId"):
            link = trace_link(value["traceId"])
            rows.append(("trace", f"{value['traceId']} {link}" if link else value["traceId"]))
        if value.get("progress") is not None:
            rows.append(("progress", f"{value['progress']:.0%} {value.get('progressMessage') or ''}"))
        for key in ("group", "rateKey", "dedupeKey"):
            if value.get(key):
                rows.append((key, value[key]))
        if value["error"]:
            rows.append(("error", Text(str(value["error"]), style="red")))
        out.print(Panel(field_table(rows), title=Text(f"job {job_id}"), title_align="left"))
        out.print(Panel(as_text(data_text(value["payload"])), title="payload", title_align="left"))
        if value["status"] == JobStatus.COMPLETED:
            out.print(Panel(as_text(data_text(value["result"])), title="result", title_align="left"))
        if value["attempts"]:
            table = new_table("#", "worker", "started", "finished", "took", "outcome", "error",
                           title="Attempts")
            for a in value["attempts"]:
                took = (None if a["finishedAt"] is None or a["startedAt"] is None
                        else a["finishedAt"] - a["startedAt"])
                table.add_row(str(a["attempt"]), as_text(a["worker"]), when(a["startedAt"], now),
                              when(a["finishedAt"], now), seconds_text(took), as_text(a["outcome"]),
                              as_text(first_line(a["error"]) or None))
            out.print(table)
            traces: list[RenderableType] = []
            for a in value["attempts"]:
                if a.get("trace"):
                    traces.append(Panel(as_text(a["trace"].rstrip()), title=f"attempt {a['attempt']}",
                                        title_align="left", border_style="red"))
            if traces:
                out.print(Group(*traces))
        for table in _waits_tables(value, now):
            out.print(table)

    emit(value, render)


def log_line(line: dict[str, Any]) -> str:
    """One log record as a line: ``2026-12-04 21:00:00.123 INFO [attempt 2] logger:
    message`` (local time)."""
    try:
        stamp = datetime.datetime.fromtimestamp(line["t"]).isoformat(
            sep=" ", timespec="milliseconds")
    except (OverflowError, ValueError, OSError, TypeError):
        stamp = str(line["t"])
    return (f"{stamp} {line['level']} [attempt {line['attempt']}] {line['logger']}: "
            f"{line['message']}")


@jobs.command("logs")
@click.argument("q")
@click.argument("job_id", metavar="ID")
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True,
              help="At most this many lines.")
@json_option
def jobs_logs(q: str, job_id: str, limit: int) -> None:
    """The log lines job ID of queue Q emitted while its attempts ran, oldest first."""
    value = run_service(current_ops().live().logs(q, job_id, limit))

    def render(_: Console) -> None:
        if not value:
            click.echo(f"No log lines of job {job_id} in {q}.", err=True)
        for line in value:
            click.echo(log_line(line))

    emit(value, render)


def _bulk(action: str, ids: tuple[str, ...], q: str | None, status: str | None,
          since: float | None, job_type: str | None, yes: bool) -> None:
    """``retry`` or ``cancel``: the jobs named, or every job of ``q`` in ``status``
    (after showing how many and asking)."""
    if ids and (status or since is not None or job_type):
        raise click.UsageError("give job ids, or --queue Q --status ... for every such job; "
                               "not both")
    if not ids and (q is None or status is None):
        raise click.UsageError(
            f"give the ids of the jobs to {action}, or --queue Q --status "
            f"{'failed' if action == 'retry' else 'pending'} to {action} every such job")
    service = current_ops().live()
    if not ids:
        assert q is not None and status is not None  # checked above
        n = run_service(service.count(q, status=status, type=job_type, since=since))
        if n == 0:
            emit(0, lambda out: out.print(f"No {status} jobs in {q}: nothing to {action}."))
            return
        if not yes:
            click.confirm(f"{action.capitalize()} {n} {status} jobs in {q}?", abort=True,
                          err=True)
        if action == "retry":
            n = run_service(service.retry_all(q, since=since, type=job_type))
        else:
            n = run_service(service.cancel_all(q, status, since=since, type=job_type))
        verb = "Retried" if action == "retry" else "Cancelled"
        emit(n, lambda out: out.print(f"{verb} {n} jobs in {q}."))
        return

    act = service.retry if action == "retry" else service.cancel

    async def each() -> list[tuple[str, dict[str, Any]]]:
        by_queue: dict[str, list[str]] = {}
        for job_id in ids:
            by_queue.setdefault(await _queue_of(service, job_id, q), []).append(job_id)
        return [(name, job) for name, some in by_queue.items() for job in await act(name, some)]

    done = run_service(each())
    shown = [{**job, "queue": name} for name, job in done]
    emit([job for _, job in done], lambda out: out.print(_jobs_table(shown, with_queue=True)))


@jobs.command("retry")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--queue", "q", metavar="Q", help="The jobs' queue. Default: found by each id.")
@click.option("--status", type=click.Choice([JobStatus.FAILED.value]),
              help="Retry every failed job of --queue (asks first, unless --yes).")
@click.option("--since", type=Since(), metavar="WHEN",
              help="With --status: only jobs enqueued since (10m, 2h, 1d, or an ISO time).")
@click.option("--type", "job_type", metavar="TYPE", help="With --status: only jobs of this type.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before a bulk retry.")
@json_option
def jobs_retry(ids: tuple[str, ...], q: str | None, status: str | None, since: float | None,
               job_type: str | None, yes: bool) -> None:
    """Send failed jobs back to their queue with fresh retries."""
    _bulk("retry", ids, q, status, since, job_type, yes)


@jobs.command("cancel")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--queue", "q", metavar="Q", help="The jobs' queue. Default: found by each id.")
@click.option("--status", type=click.Choice(UNFINISHED),
              help="Cancel every job of --queue in this state (asks first, unless --yes).")
@click.option("--since", type=Since(), metavar="WHEN",
              help="With --status: only jobs enqueued since (10m, 2h, 1d, or an ISO time).")
@click.option("--type", "job_type", metavar="TYPE", help="With --status: only jobs of this type.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before a bulk cancel.")
@json_option
def jobs_cancel(ids: tuple[str, ...], q: str | None, status: str | None, since: float | None,
                job_type: str | None, yes: bool) -> None:
    """Cancel jobs not yet finished (running ones are asked to stop)."""
    _bulk("cancel", ids, q, status, since, job_type, yes)


# -- enqueue: one flag per JobOptions key ----------------------------------------------

_ALIASES = {"job_id": ("--id",)}  # the shorter flags the command took first


def _kinds(hint: Any) -> list[Any]:
    """The types an option's hint allows, without None."""
    if get_origin(hint) in (Union, types.UnionType):
        return [kind for kind in get_args(hint) if kind is not type(None)]
    return [hint]


def _mark(kind: Any) -> str | None:
    """``"duration"`` or ``"moment"`` for a number of seconds marked so, else None."""
    return get_args(kind)[1] if get_origin(kind) is Annotated else None


def _param(name: str, hint: Any) -> dict[str, Any]:
    """click.option's keywords for option ``name`` of type ``hint``."""
    kinds = _kinds(hint)
    marks = [_mark(kind) for kind in kinds]
    if marks == ["duration"]:
        return {"type": Duration(), "metavar": "DURATION"}
    if marks == ["moment"]:
        return {"type": Moment(), "metavar": "WHEN"}
    if marks == ["duration", None] and get_origin(kinds[1]) is list:  # one wait, or one a retry
        return {"type": Backoff(), "metavar": "DURATION[,...]"}
    if kinds == [int]:
        return {"type": int}
    if kinds == [str]:
        return {"metavar": name.upper()}
    if kinds == [list[str]]:
        return {"multiple": True, "metavar": name.upper()}
    if len(kinds) == 1 and get_origin(kinds[0]) is Literal:
        return {"type": click.Choice(get_args(kinds[0]))}
    raise TypeError(f"JobOptions[{name!r}] is {hint}, which has no command-line form: give "
                    "dotdo.ops.cli.jobs._param a rule for it")


def _job_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Every JobOptions key as a flag (``--max-retries``), its help its docstring."""
    hints, helps = get_type_hints(JobOptions, include_extras=True), option_help()
    for name in reversed(list(hints)):  # click shows them in the order they are added
        flags = (f"--{name.replace('_', '-')}", *_ALIASES.get(name, ()))
        command = click.option(*flags, name, help=helps[name], **_param(name, hints[name]))(command)
    return command


@jobs.command("enqueue")
@click.argument("q")
@click.argument("job_type", metavar="TYPE")
@click.option("--payload", callback=parse_payload, metavar="JSON", help="The job's payload, as JSON.")
@_job_options
@click.option("--create", is_flag=True, help="Make the queue if it has no file yet.")
@json_option
def jobs_enqueue(q: str, job_type: str, payload: Any, create: bool, **options: Any) -> None:
    """Add a job of TYPE to queue Q (the options are Queue.enqueue's)."""
    # Not given: None, or () for a repeatable flag; the queue's default then holds.
    given: dict[str, Any] = {name: list(value) if isinstance(value, tuple) else value
             for name, value in options.items() if value not in (None, ())}
    value = run_service(current_ops().live().enqueue(q, job_type, payload, create=create, **given))
    emit(value, lambda out: out.print(
        Text(f"{value.get('enqueued', 'added').capitalize()}: job {value['$id']} "
             f"({value['type']}, {value['status']}) in {q}")))
