"""The queues, for operators: ``status`` (Ray nodes, objects by class, every queue with
its counts, workers online), ``queues``, and the ``queue`` group that shows one queue
(counts, settings, throughput, failure rate, durations and waits) and acts on it:
``pause``, ``resume``, ``purge`` finished jobs, ``set`` its limits. Also how a queue
prints: its state, its row of counts, its rates and sparklines.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dotdo.jobmodel import JobStatus
from dotdo.ops.cli.context import current_ops, json_option, run_service
from dotdo.ops.cli.output import as_text, emit, field_table, new_table, seconds_text, span
from dotdo.ops.cli.params import CLEAR, FINISHED, Duration, KeepType, OrNone
from dotdo.ops.service import STATES

ALWAYS_SHOWN = tuple(s.value for s in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED,
                                        JobStatus.FAILED))
SPARK = "▁▂▃▄▅▆▇█"


# -- how a queue prints ----------------------------------------------------------------------


def _state(summary: dict[str, Any]) -> Text:
    return Text("paused", style="yellow") if summary["paused"] else Text("active", style="green")


def _queues_table(queues: list[dict[str, Any]]) -> Table:
    # The rarer states get a column only when some queue has such jobs: the table then
    # fits a terminal of 80 columns (--json has every count).
    states = [s for s in STATES if s in ALWAYS_SHOWN or any(q["counts"][s] for q in queues)]
    table = new_table("queue", "state", *states, "workers", "oldest pending")
    for q in queues:
        table.add_row(as_text(q["id"]), _state(q), *(str(q["counts"][s]) for s in states),
                      str(q["workers"]), seconds_text(q["oldestPendingAge"]))
    return table


def _per(rate: float) -> str:
    """Jobs per second, or per minute when under one a second."""
    return f"{rate:.3g} jobs/s" if rate >= 1 else f"{rate * 60:.3g} jobs/min"


def _quantiles(q: dict[str, Any]) -> str:
    return f"p50 {seconds_text(q['p50'])}, p95 {seconds_text(q['p95'])} (n={q['n']})"


def _spark(series: list[dict[str, Any]], key: str) -> str:
    values = [b[key] for b in series]
    top = max(values, default=0)
    if not top:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))] for v in values)


# -- status and queues ---------------------------------------------------------------------


@click.command()
@json_option
def status() -> None:
    """Ray nodes, objects by class, queues with their counts, workers online."""
    ops = current_ops()
    value = run_service(ops.live().status())

    def render(out: Console) -> None:
        ray = value["ray"]
        where = ray["address"] or "in process (no Ray)"
        out.print(field_table([("storage", value["storage"]), ("namespace", value["namespace"]),
                           ("ray", where),
                           ("workers", f"{value['workers']['online']} online of "
                                       f"{value['workers']['total']}")]))
        if ray["nodes"]:
            nodes = new_table("node", "address", "alive", "cpus", "memory", title="Nodes")
            for n in ray["nodes"]:
                nodes.add_row(as_text(n["id"]), as_text(n["address"]), "yes" if n["alive"] else "no",
                              f"{n['cpus']:g}", f"{n['memory'] / 2**30:.1f} GiB")
            out.print(nodes)
        classes = new_table("class", "objects", title="Objects")
        for name, n in value["classes"].items():
            classes.add_row(as_text(name), str(n))
        out.print(classes)
        if value["queues"]:
            out.print(_queues_table(value["queues"]))
        else:
            out.print("No queues yet.")

    emit(value, render)


@click.command()
@json_option
def queues() -> None:
    """Every queue with its counts by state."""
    value = run_service(current_ops().live().queues())
    emit(value, lambda out: out.print(_queues_table(value) if value else "No queues yet."))


@click.group()
def queue() -> None:
    """One queue: show, pause, resume, purge, set."""


@queue.command("show")
@click.argument("q")
@json_option
def queue_show(q: str) -> None:
    """Counts, settings, throughput, failure rate, durations and waits, workers."""
    value = run_service(current_ops().live().queue(q))

    def render(out: Console) -> None:
        stats = value["stats"]
        rate = stats["failureRate"]
        head = field_table([
            ("state", _state(value)),
            ("workers", value["workers"]),
            ("oldest pending", seconds_text(value["oldestPendingAge"])),
            ("throughput", f"{_per(stats['throughput'])} over the last {span(stats['window'])}"),
            ("failure rate", "-" if rate is None else f"{rate:.1%}"),
            ("duration", _quantiles(stats["duration"])),
            ("wait", _quantiles(stats["wait"])),
            (f"completed / {span(stats['bucket'])}", _spark(stats["series"], "completed")),
            (f"failed / {span(stats['bucket'])}", _spark(stats["series"], "failed")),
            ("totals", ", ".join(f"{k} {v}" for k, v in stats["totals"].items())),
        ])
        out.print(Panel(head, title=Text(f"queue {q}"), title_align="left"))
        counts = new_table("state", "jobs", title="Jobs by state")
        for name in STATES:
            counts.add_row(name, str(value["counts"][name]))
        out.print(counts)
        settings = new_table("setting", "value", title="Settings")
        for name, setting in value["settings"].items():
            settings.add_row(name, as_text(json.dumps(setting) if isinstance(setting, dict) else setting))
        out.print(settings)
        if value["types"]:
            statuses = sorted({s for per in value["types"].values() for s in per})
            types = new_table("type", *statuses, title="Jobs by type")
            for job_type, per in sorted(value["types"].items()):
                types.add_row(as_text(job_type), *(str(per.get(s, 0)) for s in statuses))
            out.print(types)

    emit(value, render)


@queue.command("pause")
@click.argument("q")
@json_option
def queue_pause(q: str) -> None:
    """Stop handing out jobs; running ones finish."""
    value = run_service(current_ops().live().pause(q))
    emit(value, lambda out: out.print(_queues_table([value])))


@queue.command("resume")
@click.argument("q")
@json_option
def queue_resume(q: str) -> None:
    """Hand out jobs again."""
    value = run_service(current_ops().live().resume(q))
    emit(value, lambda out: out.print(_queues_table([value])))


@queue.command("purge")
@click.argument("q")
@click.option("--status", type=click.Choice(FINISHED),
              help="Only jobs that ended so. Default: every finished job.")
@click.option("--older-than", type=Duration(), metavar="DURATION",
              help="Only jobs finished longer ago than this (90s, 10m, 2h, 1d).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
@json_option
def queue_purge(q: str, status: str | None, older_than: float | None, yes: bool) -> None:
    """Delete finished jobs (and their attempts) from a queue."""
    service = current_ops().live()
    which = f"{status} jobs" if status else "finished jobs (completed, failed, cancelled)"
    age = f" that finished over {span(older_than)} ago" if older_than else ""
    if not yes:
        click.confirm(f"Delete every one of the {which} in {q}{age}?", abort=True, err=True)
    value = run_service(service.purge(q, status, older_than))
    emit(value, lambda out: out.print(f"Purged {value} jobs from {q}."))


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
@json_option
def queue_set(q: str, **options: Any) -> None:
    """Set a queue's limits; those not given stay. With none given, show them."""
    given = {name: None if value is CLEAR else value for name, value in options.items()
             if value is not None}
    value = run_service(current_ops().live().configure(q, **given))

    def render(out: Console) -> None:
        table = new_table("setting", "value", title=f"Settings of {q}")
        for name, setting in value.items():
            table.add_row(name, as_text(json.dumps(setting) if isinstance(setting, dict) else setting))
        out.print(table)

    emit(value, render)
