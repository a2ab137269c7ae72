"""The ``dotdo`` command: look at and act on queues, jobs, workers, schedules and
objects without writing Python, and serve the HTTP API and the dashboard.

Every command prints tables for people and, with ``--json``, exactly what the
:class:`~dotdo.ops.service.Service` returned. Commands that only read objects' files
(``objects``, ``steps``, ``schedules``) never start or join Ray; the others call
``dotdo.init`` with ``--address``, ``--storage`` and ``--namespace`` first.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import json
import os
import re
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

import dotdo
from dotdo import client
from dotdo.errors import DotdoError
from dotdo.ops.service import STATES, Service
from dotdo.settings import default_storage

__all__ = ["main"]

T = TypeVar("T")
FINISHED = ("completed", "failed", "cancelled")
UNFINISHED = tuple(s for s in STATES if s not in FINISHED)
ALWAYS_SHOWN = ("pending", "running", "completed", "failed")
SPARK = "▁▂▃▄▅▆▇█"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
DEFAULT_PORT = 8765  # as dotdo.ops.serve's (not imported here: the web stack loads slowly)


# -- the options of the group, and the service they make ---------------------------------


class Ops:
    """What the group's options chose; makes the service on first use, joining Ray
    only for commands that need live objects."""

    def __init__(self, address: str | None, storage: str | None, namespace: str | None,
                 in_process: bool, as_json: bool, modules: tuple[str, ...]) -> None:
        self.address = address
        self.storage = storage
        self.namespace = namespace
        self.in_process = in_process
        self.json = as_json
        self.modules = list(modules)
        self._imported = False
        self._started = False

    @property
    def root(self) -> str:
        """The storage root, absolute (``--storage``, ``$DOTDO_STORAGE`` or ``./.dotdo``)."""
        return os.path.abspath(self.storage) if self.storage else default_storage()

    def files(self) -> Service:
        """A service for what is in files only: no Ray is started or joined."""
        self.import_modules()
        return Service(storage=self.root)

    def live(self, events: tuple[str, ...] = (), lasting: bool = False) -> Service:
        """A service on live objects: ``dotdo.init`` with the group's options first.
        A one-off command refuses to start a Ray of its own (unless ``--address local``):
        the queues it asked would wake their workers in a Ray that ends with the
        command, and the jobs they took would wait out their leases. ``lasting``: a
        server, whose Ray lives as long as it serves."""
        self.import_modules()
        in_process = self.in_process or os.environ.get("DOTDO_IN_PROCESS", "").lower() in (
            "1", "true", "yes")
        if not (self._started or lasting or in_process or self.address is not None
                or client.running_cluster() is not None):
            raise click.ClickException(
                "no Ray cluster is running on this machine for this command to ask (a "
                "program's own Ray ends with it). Start a lasting one with `ray start "
                "--head` and run your programs and workers with RAY_ADDRESS=auto; or use "
                "`dotdo dashboard` / `dotdo serve`, which keep a Ray while they serve; or "
                "pass --address local to start a Ray just for this command (it wakes the "
                "queues' workers until the command ends).")
        if not self._started:
            # None, not False: dotdo.init then reads $DOTDO_IN_PROCESS itself.
            dotdo.init(self.address, storage=self.root, namespace=self.namespace,
                       in_process=True if self.in_process else None)
            self._started = True
        return Service(storage=self.root, events=list(events))

    def import_modules(self) -> None:
        """Import the ``-m`` modules, so their classes and job types are known."""
        if self._imported:
            return
        self._imported = True
        # As `python -m` would: a module next to where the command runs is found.
        if self.modules and os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        for name in self.modules:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise click.BadParameter(
                    f"cannot import {name!r} ({exc}): give a module importable from here "
                    "(a dotted name, not a file path) or set PYTHONPATH",
                    param_hint="'-m' / '--module'") from exc


def _ops() -> Ops:
    ops = click.get_current_context().find_object(Ops)
    if ops is None:  # a subcommand's function called on its own, not through `dotdo`
        raise click.UsageError("run the commands through the `dotdo` group: dotdo jobs ls Q")
    return ops


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one service call to the end (each command is a short program of its own)."""
    return asyncio.run(coro)


def _show(value: Any, render: Callable[[Console], None]) -> None:
    """``--json``: the value exactly as the service returned it; else ``render``."""
    if _ops().json:
        click.echo(json.dumps(value, default=str, indent=2))
    else:
        render(Console(highlight=False, soft_wrap=False))


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` after any command too, not only after ``dotdo``."""

    def turn_on(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ops = ctx.find_object(Ops)
            if ops is not None:
                ops.json = True

    return click.option("--json", "as_json", is_flag=True, expose_value=False, callback=turn_on,
                        help="Print the service's answer as JSON.")(f)


class _Group(click.Group):
    """The command group; a dotdo or value error ends the command with its message,
    not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DotdoError, ValueError) as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            ctx.exit(1)


# -- values on the command line --------------------------------------------------------------


class _Clear:
    """``none`` given for a setting: take the limit away."""

    def __repr__(self) -> str:
        return "none"


CLEAR = _Clear()


def _span_seconds(text: str) -> float | None:
    """``90``, ``90s``, ``10m``, ``2h``, ``1d``, ``1w`` as seconds, or None."""
    match = _SPAN.match(text)
    if match is None:
        return None
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class Duration(click.ParamType):
    """Seconds: ``90``, ``90s``, ``10m``, ``2h``, ``1d``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if isinstance(value, (int, float)):
            return float(value)
        seconds = _span_seconds(str(value))
        if seconds is None:
            self.fail(f"{value!r} is not a duration: give seconds (90) or 90s, 10m, 2h, 1d",
                      param, ctx)
        return seconds


class Since(click.ParamType):
    """A moment as epoch seconds: an age (``10m``, ``2h``, ``1d``: that long ago) or an
    ISO time (``2025-01-31T09:00``, local unless it has an offset)."""

    name = "since"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value)
        match = _SPAN.match(text)
        if match is not None and match.group(2):
            return time.time() - float(match.group(1)) * _UNITS[match.group(2)]
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is neither an age (10m, 2h, 1d) nor an ISO time "
                      "(2025-01-31T09:00)", param, ctx)
        if moment.tzinfo is None:
            moment = moment.astimezone()  # a time without an offset is local, as printed
        return moment.timestamp()


class OrNone(click.ParamType):
    """A setting's value, or ``none`` to remove the limit."""

    def __init__(self, inner: click.ParamType, what: str) -> None:
        self.inner = inner
        self.name = f"{what}|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if value is CLEAR or (isinstance(value, str) and value.lower() == "none"):
            return CLEAR
        return self.inner.convert(value, param, ctx)


class KeepType(click.ParamType):
    """Retention: a count (``1000``), ``count=1000,age=7d`` (either part), or ``none``
    to keep every finished job."""

    name = "keep"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if value is CLEAR or not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text == "none":
            return CLEAR
        if text.isdigit():
            return int(text)
        out: dict[str, Any] = {}
        for part in text.split(","):
            key, _, raw = part.partition("=")
            key = key.strip()
            if key == "count" and raw.strip().isdigit():
                out["count"] = int(raw)
            elif key == "age" and _span_seconds(raw) is not None:
                out["age"] = _span_seconds(raw)
            else:
                self.fail(f"{value!r}: give a count (1000), count=1000,age=7d (either part) "
                          "or none", param, ctx)
        return out


def _payload(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"not JSON ({exc}): quote it for the shell, e.g. --payload '{{\"to\": \"ada\"}}'",
            param=param) from exc


# -- how values print ------------------------------------------------------------------------


def _span(seconds: float) -> str:
    """``45s``, ``3m``, ``2h5m``, ``4d3h``."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86_400:
        return f"{s // 3600}h{(s % 3600) // 60}m" if s % 3600 >= 60 else f"{s // 3600}h"
    return f"{s // 86_400}d{(s % 86_400) // 3600}h" if s % 86_400 >= 3600 else f"{s // 86_400}d"


def ago(t: float | None, now: float | None = None) -> str:
    """``3m ago`` or ``in 5m`` (``-`` for no time)."""
    if t is None:
        return "-"
    delta = (time.time() if now is None else now) - t
    return f"{_span(delta)} ago" if delta >= 0 else f"in {_span(delta)}"


def when(t: float | None, now: float | None = None) -> str:
    """A local ISO time and its age: ``2025-01-31 09:00:00 (3m ago)``."""
    if t is None:
        return "-"
    local = datetime.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")
    return f"{local} ({ago(t, now)})"


def _secs(value: float | None) -> str:
    """A duration measured (p50, p95, ages): ``12 ms``, ``1.5 s``, ``3m``."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    return _span(value)


def _first_line(text: Any) -> str:
    """The first line of an error (its traceback shows on ``jobs get``)."""
    lines = str(text).strip().splitlines() if text is not None else []
    return lines[0] if lines else ""


def _data(value: Any) -> str:
    """A payload or result as JSON text."""
    return json.dumps(value, default=str, indent=2, ensure_ascii=False)


def _t(value: Any) -> Text:
    """User data as plain text: rich must not read ``[bold]`` in it as markup."""
    return Text("-" if value is None else str(value))


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def _fields(rows: list[tuple[str, Any]]) -> Table:
    """Name/value lines (the head of a panel)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, value if isinstance(value, Text) else _t(value))
    return grid


def _state(summary: dict[str, Any]) -> Text:
    return Text("paused", style="yellow") if summary["paused"] else Text("active", style="green")


def _queues_table(queues: list[dict[str, Any]]) -> Table:
    # The rarer states get a column only when some queue has such jobs: the table then
    # fits a terminal of 80 columns (--json has every count).
    states = [s for s in STATES if s in ALWAYS_SHOWN or any(q["counts"][s] for q in queues)]
    table = _table("queue", "state", *states, "workers", "oldest pending")
    for q in queues:
        table.add_row(_t(q["id"]), _state(q), *(str(q["counts"][s]) for s in states),
                      str(q["workers"]), _secs(q["oldestPendingAge"]))
    return table


def _per(rate: float) -> str:
    """Jobs per second, or per minute when under one a second."""
    return f"{rate:.3g} jobs/s" if rate >= 1 else f"{rate * 60:.3g} jobs/min"


def _quantiles(q: dict[str, Any]) -> str:
    return f"p50 {_secs(q['p50'])}, p95 {_secs(q['p95'])} (n={q['n']})"


def _spark(series: list[dict[str, Any]], key: str) -> str:
    values = [b[key] for b in series]
    top = max(values, default=0)
    if not top:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))] for v in values)


# -- the group ---------------------------------------------------------------------------------


@click.group("dotdo", cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--address", metavar="ADDR",
              help="Ray cluster to join (host:port, ray://..., auto; `local`: a Ray just for "
                   "this command). Default: $RAY_ADDRESS, else the cluster `ray start` "
                   "recorded here; serve and dashboard start a local Ray if there is none.")
@click.option("--storage", metavar="PATH", envvar="DOTDO_STORAGE", show_envvar=True,
              help="Storage root of the objects' files. Default: ./.dotdo")
@click.option("--namespace", metavar="NAME", envvar="DOTDO_NAMESPACE", show_envvar=True,
              help="Ray namespace of the objects. Default: dotdo")
@click.option("--in-process", is_flag=True,
              help="Run the objects in this process, with no Ray (also $DOTDO_IN_PROCESS=1); "
                   "for tests and scripts.")
@click.option("--json", "as_json", is_flag=True, help="Print the service's answers as JSON.")
@click.option("-m", "--module", "modules", multiple=True, metavar="MODULE",
              help="Import MODULE first, so its classes and job types are known (repeatable).")
@click.version_option(package_name="dotdo", prog_name="dotdo")
@click.pass_context
def main(ctx: click.Context, address: str | None, storage: str | None, namespace: str | None,
         in_process: bool, as_json: bool, modules: tuple[str, ...]) -> None:
    """Look at and operate dotdo's queues, jobs, workers, schedules and objects."""
    ctx.obj = Ops(address, storage, namespace, in_process, as_json, modules)


# -- status and queues ---------------------------------------------------------------------


@main.command()
@_json_option
def status() -> None:
    """Ray nodes, objects by class, queues with their counts, workers online."""
    ops = _ops()
    value = _run(ops.live().status())

    def render(out: Console) -> None:
        ray = value["ray"]
        where = ray["address"] or "in process (no Ray)"
        out.print(_fields([("storage", value["storage"]), ("namespace", value["namespace"]),
                           ("ray", where),
                           ("workers", f"{value['workers']['online']} online of "
                                       f"{value['workers']['total']}")]))
        if ray["nodes"]:
            nodes = _table("node", "address", "alive", "cpus", "memory", title="Nodes")
            for n in ray["nodes"]:
                nodes.add_row(_t(n["id"]), _t(n["address"]), "yes" if n["alive"] else "no",
                              f"{n['cpus']:g}", f"{n['memory'] / 2**30:.1f} GiB")
            out.print(nodes)
        classes = _table("class", "objects", title="Objects")
        for name, n in value["classes"].items():
            classes.add_row(_t(name), str(n))
        out.print(classes)
        if value["queues"]:
            out.print(_queues_table(value["queues"]))
        else:
            out.print("No queues yet.")

    _show(value, render)


@main.command()
@_json_option
def queues() -> None:
    """Every queue with its counts by state."""
    value = _run(_ops().live().queues())
    _show(value, lambda out: out.print(_queues_table(value) if value else "No queues yet."))


@main.group()
def queue() -> None:
    """One queue: show, pause, resume, purge, set."""


@queue.command("show")
@click.argument("q")
@_json_option
def queue_show(q: str) -> None:
    """Counts, settings, throughput, failure rate, durations and waits, workers."""
    value = _run(_ops().live().queue(q))

    def render(out: Console) -> None:
        stats = value["stats"]
        rate = stats["failureRate"]
        head = _fields([
            ("state", _state(value)),
            ("workers", value["workers"]),
            ("oldest pending", _secs(value["oldestPendingAge"])),
            ("throughput", f"{_per(stats['throughput'])} over the last {_span(stats['window'])}"),
            ("failure rate", "-" if rate is None else f"{rate:.1%}"),
            ("duration", _quantiles(stats["duration"])),
            ("wait", _quantiles(stats["wait"])),
            (f"completed / {_span(stats['bucket'])}", _spark(stats["series"], "completed")),
            (f"failed / {_span(stats['bucket'])}", _spark(stats["series"], "failed")),
            ("totals", ", ".join(f"{k} {v}" for k, v in stats["totals"].items())),
        ])
        out.print(Panel(head, title=Text(f"queue {q}"), title_align="left"))
        counts = _table("state", "jobs", title="Jobs by state")
        for name in STATES:
            counts.add_row(name, str(value["counts"][name]))
        out.print(counts)
        settings = _table("setting", "value", title="Settings")
        for name, setting in value["settings"].items():
            settings.add_row(name, _t(json.dumps(setting) if isinstance(setting, dict) else setting))
        out.print(settings)
        if value["types"]:
            statuses = sorted({s for per in value["types"].values() for s in per})
            types = _table("type", *statuses, title="Jobs by type")
            for job_type, per in sorted(value["types"].items()):
                types.add_row(_t(job_type), *(str(per.get(s, 0)) for s in statuses))
            out.print(types)

    _show(value, render)


@queue.command("pause")
@click.argument("q")
@_json_option
def queue_pause(q: str) -> None:
    """Stop handing out jobs; running ones finish."""
    value = _run(_ops().live().pause(q))
    _show(value, lambda out: out.print(_queues_table([value])))


@queue.command("resume")
@click.argument("q")
@_json_option
def queue_resume(q: str) -> None:
    """Hand out jobs again."""
    value = _run(_ops().live().resume(q))
    _show(value, lambda out: out.print(_queues_table([value])))


@queue.command("purge")
@click.argument("q")
@click.option("--status", type=click.Choice(FINISHED),
              help="Only jobs that ended so. Default: every finished job.")
@click.option("--older-than", type=Duration(), metavar="DURATION",
              help="Only jobs finished longer ago than this (90s, 10m, 2h, 1d).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
@_json_option
def queue_purge(q: str, status: str | None, older_than: float | None, yes: bool) -> None:
    """Delete finished jobs (and their attempts) from a queue."""
    service = _ops().live()
    which = f"{status} jobs" if status else "finished jobs (completed, failed, cancelled)"
    age = f" that finished over {_span(older_than)} ago" if older_than else ""
    if not yes:
        click.confirm(f"Delete every one of the {which} in {q}{age}?", abort=True, err=True)
    value = _run(service.purge(q, status, older_than))
    _show(value, lambda out: out.print(f"Purged {value} jobs from {q}."))


@queue.command("set")
@click.argument("q")
@click.option("--concurrency", type=OrNone(click.IntRange(min=1), "N"),
              help="Jobs running at once across all workers (none: no limit).")
@click.option("--rate", type=OrNone(click.STRING, "RATE"),
              help="Job starts per window: 100/s, 6000/min, 50/10s (none: no limit).")
@click.option("--key-rate", type=OrNone(click.STRING, "RATE"),
              help="The same per rate_key of jobs (none: no limit).")
@click.option("--group-concurrency", type=OrNone(click.IntRange(min=1), "N"),
              help="Running jobs per group (none: no limit).")
@click.option("--lease-timeout", type=Duration(), metavar="DURATION",
              help="How long a worker may go silent before its jobs go to others.")
@click.option("--keep-completed", type=KeepType(),
              help="Completed jobs kept: 1000, count=1000,age=7d, or none (all).")
@click.option("--keep-failed", type=KeepType(),
              help="Failed and cancelled jobs kept, likewise.")
@_json_option
def queue_set(q: str, **options: Any) -> None:
    """Set a queue's limits; those not given stay. With none given, show them."""
    given = {name: None if value is CLEAR else value for name, value in options.items()
             if value is not None}
    value = _run(_ops().live().configure(q, **given))

    def render(out: Console) -> None:
        table = _table("setting", "value", title=f"Settings of {q}")
        for name, setting in value.items():
            table.add_row(name, _t(json.dumps(setting) if isinstance(setting, dict) else setting))
        out.print(table)

    _show(value, render)


# -- jobs ----------------------------------------------------------------------------------


@main.group()
def jobs() -> None:
    """Jobs: ls, get, retry, cancel, enqueue."""


def _jobs_table(rows: list[dict[str, Any]], with_queue: bool = False) -> Table:
    now = time.time()
    table = _table(*(["queue"] if with_queue else []), "id", "type", "status", "attempts",
                   "created", "worker", "error")
    for job in rows:
        attempts = job.get("attemptCount", job["attempts"])
        table.add_row(*([_t(job.get("queue"))] if with_queue else []), _t(job["$id"]),
                      _t(job["type"]), _t(job["status"]), str(attempts),
                      ago(job["createdAt"], now), _t(job.get("worker")),
                      _t(_first_line(job["error"]) or None))
    return table


@jobs.command("ls")
@click.argument("q")
@click.option("--status", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--type", "job_type", metavar="TYPE", help="Only jobs of this type.")
@click.option("--since", type=Since(), metavar="WHEN",
              help="Only jobs enqueued since: an age (10m, 2h, 1d) or an ISO time.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", type=int, help="The cursor a previous page printed.")
@_json_option
def jobs_ls(q: str, status: str | None, job_type: str | None, since: float | None, limit: int,
            cursor: int | None) -> None:
    """A queue's jobs in enqueue order, a page at a time."""
    value = _run(_ops().live().jobs(q, status=status, type=job_type, since=since, limit=limit,
                                    cursor=cursor))

    def render(out: Console) -> None:
        if not value["jobs"]:
            out.print("No jobs match.")
            return
        out.print(_jobs_table(value["jobs"]))
        if value["cursor"] is not None:
            out.print(f"More: add --cursor {value['cursor']}")

    _show(value, render)


async def _queue_of(service: Service, job_id: str, q: str | None) -> str:
    return q if q is not None else await service.find_job(job_id)


@jobs.command("get")
@click.argument("job_id", metavar="ID")
@click.option("--queue", "q", metavar="Q", help="The job's queue. Default: found by its id.")
@_json_option
def jobs_get(job_id: str, q: str | None) -> None:
    """A job: payload, result, every attempt with its worker, error and traceback."""
    service = _ops().live()

    async def get() -> dict[str, Any]:
        return await service.job(await _queue_of(service, job_id, q), job_id)

    value = _run(get())

    def render(out: Console) -> None:
        now = time.time()
        rows: list[tuple[str, Any]] = [
            ("queue", value["queue"]), ("type", value["type"]), ("status", value["status"]),
            ("attempts", f"{value['attemptCount']} (retries allowed: {value['maxRetries']})"),
            ("priority", value["priority"]), ("created", when(value["createdAt"], now)),
            ("run at", when(value["runAt"], now)), ("started", when(value["startedAt"], now)),
            ("finished", when(value["finishedAt"], now)), ("worker", value["worker"])]
        if value.get("progress") is not None:
            rows.append(("progress", f"{value['progress']:.0%} {value.get('progressMessage') or ''}"))
        for key in ("group", "rateKey", "dedupeKey"):
            if value.get(key):
                rows.append((key, value[key]))
        if value["error"]:
            rows.append(("error", Text(str(value["error"]), style="red")))
        out.print(Panel(_fields(rows), title=Text(f"job {job_id}"), title_align="left"))
        out.print(Panel(_t(_data(value["payload"])), title="payload", title_align="left"))
        if value["status"] == "completed":
            out.print(Panel(_t(_data(value["result"])), title="result", title_align="left"))
        if value["attempts"]:
            table = _table("#", "worker", "started", "finished", "took", "outcome", "error",
                           title="Attempts")
            for a in value["attempts"]:
                took = (None if a["finishedAt"] is None or a["startedAt"] is None
                        else a["finishedAt"] - a["startedAt"])
                table.add_row(str(a["attempt"]), _t(a["worker"]), when(a["startedAt"], now),
                              when(a["finishedAt"], now), _secs(took), _t(a["outcome"]),
                              _t(_first_line(a["error"]) or None))
            out.print(table)
            traces: list[RenderableType] = []
            for a in value["attempts"]:
                if a.get("trace"):
                    traces.append(Panel(_t(a["trace"].rstrip()), title=f"attempt {a['attempt']}",
                                        title_align="left", border_style="red"))
            if traces:
                out.print(Group(*traces))

    _show(value, render)


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
    service = _ops().live()
    if not ids:
        assert q is not None and status is not None  # checked above
        n = _run(service.count(q, status=status, type=job_type, since=since))
        if n == 0:
            _show(0, lambda out: out.print(f"No {status} jobs in {q}: nothing to {action}."))
            return
        if not yes:
            click.confirm(f"{action.capitalize()} {n} {status} jobs in {q}?", abort=True,
                          err=True)
        if action == "retry":
            n = _run(service.retry_all(q, since=since, type=job_type))
        else:
            n = _run(service.cancel_all(q, status, since=since, type=job_type))
        verb = "Retried" if action == "retry" else "Cancelled"
        _show(n, lambda out: out.print(f"{verb} {n} jobs in {q}."))
        return

    act = service.retry if action == "retry" else service.cancel

    async def each() -> list[tuple[str, dict[str, Any]]]:
        by_queue: dict[str, list[str]] = {}
        for job_id in ids:
            by_queue.setdefault(await _queue_of(service, job_id, q), []).append(job_id)
        return [(name, job) for name, some in by_queue.items() for job in await act(name, some)]

    done = _run(each())
    shown = [{**job, "queue": name} for name, job in done]
    _show([job for _, job in done], lambda out: out.print(_jobs_table(shown, with_queue=True)))


@jobs.command("retry")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--queue", "q", metavar="Q", help="The jobs' queue. Default: found by each id.")
@click.option("--status", type=click.Choice(["failed"]),
              help="Retry every failed job of --queue (asks first, unless --yes).")
@click.option("--since", type=Since(), metavar="WHEN",
              help="With --status: only jobs enqueued since (10m, 2h, 1d, or an ISO time).")
@click.option("--type", "job_type", metavar="TYPE", help="With --status: only jobs of this type.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before a bulk retry.")
@_json_option
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
@_json_option
def jobs_cancel(ids: tuple[str, ...], q: str | None, status: str | None, since: float | None,
                job_type: str | None, yes: bool) -> None:
    """Cancel jobs not yet finished (running ones are asked to stop)."""
    _bulk("cancel", ids, q, status, since, job_type, yes)


@jobs.command("enqueue")
@click.argument("q")
@click.argument("job_type", metavar="TYPE")
@click.option("--payload", callback=_payload, metavar="JSON", help="The job's payload, as JSON.")
@click.option("--id", "job_id", metavar="ID", help="The job's id (an existing id adds nothing).")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--delay", type=Duration(), metavar="DURATION", help="Run no sooner than this.")
@click.option("--max-retries", type=click.IntRange(min=0), help="Retries after a failure.")
@click.option("--timeout", type=Duration(), metavar="DURATION", help="Time one attempt may take.")
@click.option("--group", metavar="GROUP", help="Group for group_concurrency and fair claims.")
@click.option("--dedupe-key", metavar="KEY", help="Jobs with one key are deduplicated.")
@click.option("--create", is_flag=True, help="Make the queue if it has no file yet.")
@_json_option
def jobs_enqueue(q: str, job_type: str, payload: Any, job_id: str | None, create: bool,
                 **options: Any) -> None:
    """Add a job of TYPE to queue Q."""
    given = {name: value for name, value in options.items() if value is not None}
    if job_id is not None:
        given["job_id"] = job_id
    value = _run(_ops().live().enqueue(q, job_type, payload, create=create, **given))
    _show(value, lambda out: out.print(
        Text(f"{value.get('enqueued', 'added').capitalize()}: job {value['$id']} "
             f"({value['type']}, {value['status']}) in {q}")))


# -- workers, schedules ------------------------------------------------------------------------


@main.command()
@click.option("--queue", "q", metavar="Q", help="Only the workers of this queue.")
@_json_option
def workers(q: str | None) -> None:
    """Workers: node, pid, queue, running jobs, last heartbeat, done and failed."""
    value = _run(_ops().live().workers(q))

    def render(out: Console) -> None:
        if not value:
            out.print("No workers.")
            return
        now = time.time()
        table = _table("worker", "queue", "online", "node", "pid", "concurrency", "running",
                       "last seen", "completed", "failed")
        for w in value:
            running = w["running"] or []
            table.add_row(_t(w["id"]), _t(w["queue"]),
                          Text("yes", style="green") if w["online"] else Text("no", style="red"),
                          _t(w["node"]), _t(w["pid"]), _t(w["concurrency"]),
                          _t(f"{len(running)}: {', '.join(running)}" if running else 0),
                          ago(w["lastSeen"], now), str(w["completed"]), str(w["failed"]))
        out.print(table)

    _show(value, render)


def _schedules_table(rows: list[dict[str, Any]], with_object: bool = True) -> Table:
    now = time.time()
    table = _table(*(["class", "id"] if with_object else []), "schedule", "spec", "next run",
                   "last run", "ticks", "last error")
    for s in rows:
        # The stored name is module.Class.method@spec: the method says it in this row.
        name = str(s["name"]).partition("@")[0].rpartition(".")[2]
        table.add_row(*([_t(s["class"]), _t(s["id"])] if with_object else []), _t(name),
                      _t(s["spec"]), when(s["nextRun"], now), when(s["lastRun"], now),
                      _t(s["ticks"]), _t(_first_line(s["lastError"]) or None))
    return table


@main.command()
@_json_option
def schedules() -> None:
    """Every object's schedules: spec, next and last run, last error (files only)."""
    value = _run(_ops().files().schedules())
    _show(value, lambda out: out.print(_schedules_table(value) if value else "No schedules."))


# -- objects ----------------------------------------------------------------------------------


@main.group()
def objects() -> None:
    """Durable objects as their files hold them (read only; Ray is not needed)."""


@objects.command("ls")
@click.argument("cls", metavar="[CLASS]", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--cursor", metavar="CURSOR", help="The cursor a previous page printed.")
@_json_option
def objects_ls(cls: str | None, limit: int, cursor: str | None) -> None:
    """Classes with how many objects each; with CLASS, its objects."""
    service = _ops().files()
    if cls is None:
        counts = _run(service.classes())

        def render_classes(out: Console) -> None:
            if not counts:
                out.print(f"No objects under {service.root}.")
                return
            table = _table("class", "objects")
            for name, n in counts.items():
                table.add_row(_t(name), str(n))
            out.print(table)

        _show(counts, render_classes)
        return
    page = _run(service.objects(cls, limit=limit, cursor=cursor))

    def render(out: Console) -> None:
        now = time.time()
        table = _table("id", "size", "modified", title=f"{cls} objects")
        for o in page["objects"]:
            table.add_row(_t(o["id"]), f"{o['size']:,} B", when(o["modified"], now))
        out.print(table)
        if page["cursor"] is not None:
            out.print(f"More: add --cursor {page['cursor']}")

    _show(page, render)


@objects.command("get")
@click.argument("cls", metavar="CLASS")
@click.argument("object_id", metavar="ID")
@_json_option
def objects_get(cls: str, object_id: str) -> None:
    """An object's keys, tables, alarm, schedules and step count, from its file."""
    value = _run(_ops().files().object(cls, object_id))

    def render(out: Console) -> None:
        now = time.time()
        out.print(Panel(_fields([("file", value["path"]), ("size", f"{value['size']:,} B"),
                                 ("modified", when(value["modified"], now)),
                                 ("alarm", when(value["alarm"], now)),
                                 ("steps", f"{value['steps']} (dotdo steps {cls} {object_id})")]),
                        title=Text(f"{cls} {object_id}"), title_align="left"))
        if value["kv"]:
            kv = _table("key", "value", title="Storage")
            for key, item in value["kv"].items():
                kv.add_row(_t(key), _t(json.dumps(item, default=str, ensure_ascii=False)))
            out.print(kv)
        if value["tables"]:
            tables = _table("table", "rows", title="Tables")
            for t in value["tables"]:
                tables.add_row(_t(t["name"]), str(t["rows"]))
            out.print(tables)
        if value["schedules"]:
            out.print(_schedules_table(value["schedules"], with_object=False))

    _show(value, render)


@objects.command("sql")
@click.argument("cls", metavar="CLASS")
@click.argument("object_id", metavar="ID")
@click.argument("query", metavar="SELECT")
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@_json_option
def objects_sql(cls: str, object_id: str, query: str, limit: int) -> None:
    """Run one read-only statement on the object's own file."""
    value = _run(_ops().files().sql(cls, object_id, query, limit=limit))

    def render(out: Console) -> None:
        table = _table(*value["columns"])
        for row in value["rows"]:
            table.add_row(*(_t(v) for v in row))
        out.print(table)
        out.print(f"{len(value['rows'])} rows" + (f" (the first {limit}: more with --limit)"
                                                  if value["truncated"] else ""))

    _show(value, render)


@main.command()
@click.argument("cls", metavar="CLASS")
@click.argument("object_id", metavar="ID")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@_json_option
def steps(cls: str, object_id: str, limit: int) -> None:
    """An object's step journal, newest first: steps, attempts, errors (files only)."""
    value = _run(_ops().files().steps(cls, object_id, limit=limit))

    def render(out: Console) -> None:
        if not value:
            out.print(f"{cls} {object_id} has no journaled steps.")
            return
        now = time.time()
        table = _table("step", "attempts", "started", "finished", "result", "errors")
        for s in value:
            result = "-" if s["finishedAt"] is None else json.dumps(s["result"], default=str)
            errors = "\n".join(f"#{e['attempt']}: {_first_line(e['error'])}" for e in s["errors"])
            table.add_row(_t(s["step"]), str(s["attempts"]), when(s["startedAt"], now),
                          when(s["finishedAt"], now), _t(result), _t(errors or None))
        out.print(table)

    _show(value, render)


# -- serving ----------------------------------------------------------------------------------


def _open_when_up(host: str, port: int, url: str) -> None:
    """Open ``url`` in a browser once the server accepts connections (it starts after
    this returns: serving blocks)."""

    def wait_then_open() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        webbrowser.open(url)

    threading.Thread(target=wait_then_open, name="dotdo-open-browser", daemon=True).start()


def _serve_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``serve`` and ``dashboard`` share."""
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Interface to listen on (the token guards it; keep it local unless "
                          "you mean to share it)."),
        click.option("--port", type=int, default=DEFAULT_PORT, show_default=True),
        click.option("--token", envvar="DOTDO_API_TOKEN", show_envvar=True,
                     help="Bearer token of the API. Default: made once, kept in the storage root."),
        click.option("--read-token", envvar="DOTDO_API_READ_TOKEN", show_envvar=True,
                     help="Read-only token (GET only). Default: made once, kept likewise."),
        click.option("--ray-serve", is_flag=True,
                     help="Run as a Ray Serve application on the cluster, not in this process."),
        click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True,
                     help="With --ray-serve: replicas of the API."),
        click.option("-m", "--module", "modules", multiple=True, metavar="MODULE",
                     help="Import MODULE (exposed classes, job types); repeatable."),
        click.option("--events", multiple=True, metavar="NOUN",
                     help="Let POST /events/{NOUN.verb} send events of NOUN; repeatable."),
        _json_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _serve(host: str, port: int, token: str | None, read_token: str | None, ray_serve: bool,
           replicas: int, modules: tuple[str, ...], events: tuple[str, ...],
           open_browser: bool = False, read_only: bool = False) -> None:
    # Imported here: only serving needs the web stack, and the other commands start faster.
    from dotdo.ops import serve as web

    ops = _ops()
    if ray_serve and (ops.in_process or os.environ.get("DOTDO_IN_PROCESS")):
        raise click.UsageError("--ray-serve runs the API on a Ray cluster: drop --in-process "
                               "(and $DOTDO_IN_PROCESS)")
    ops.modules += [m for m in modules if m not in ops.modules]
    service = ops.live(events, lasting=True)
    tokens = web.Tokens.load_or_create(ops.root, token=token, read_token=read_token)
    # A server on every interface is reached locally at the loopback address.
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{local}:{port}"
    if ops.json:
        click.echo(json.dumps({"url": url, "docs": f"{url}/docs", "storage": ops.root,
                               "tokenFile": tokens.path, "readTokenFile": tokens.read_path,
                               "token": tokens.token, "readToken": tokens.read_token}))
    else:
        click.echo(f"dotdo API on {url} (docs: {url}/docs), storage {ops.root}"
                   + (f", {replicas} Ray Serve replica(s)" if ray_serve else ""))
        click.echo(f"token: {tokens.path or 'as given (--token)'}; read-only token: "
                   f"{tokens.read_path or 'as given (--read-token)'}")
        bearer = f"$(cat {tokens.path})" if tokens.path else "$TOKEN"
        click.echo(f'try: curl -H "Authorization: Bearer {bearer}" {url}/api/status')
    if open_browser:
        # The admin token lets the pages retry, cancel and pause; --read-only only looks.
        page = f"{url}/?token={tokens.read_token if read_only else tokens.token}"
        if not ops.json:
            click.echo(f"opening {url}/ in a browser (Ctrl-C stops the server)")
        _open_when_up(local, port, page)
    if ray_serve:
        web.run_ray_serve(service, tokens, host=host, port=port, replicas=replicas,
                          modules=ops.modules, events=list(events))
    else:
        web.serve_local(service, tokens, host=host, port=port)


@main.command()
@_serve_options
def serve(**options: Any) -> None:
    """Serve the HTTP API (and the dashboard at /) until stopped."""
    _serve(**options, open_browser=False)


@main.command()
@_serve_options
@click.option("--no-open", is_flag=True, help="Print the address; open no browser.")
@click.option("--read-only", is_flag=True,
              help="Open the pages with the read-only token: they can look, not act.")
def dashboard(no_open: bool, read_only: bool, **options: Any) -> None:
    """Serve the API and open the dashboard in a browser."""
    _serve(**options, open_browser=not no_open, read_only=read_only)


if __name__ == "__main__":
    main(prog_name="dotdo")
