"""What runs and what is stored: ``workers`` (live, from the queues' objects), and,
from the objects' files alone with no Ray, ``schedules``, the ``objects`` group (classes
and their objects, one object's keys, tables, alarm and schedules, a read-only
``sql`` statement on its file) and ``steps`` (an object's step journal).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dotdo.ops.cli.context import current_ops, json_option, run_service
from dotdo.ops.cli.output import ago, as_text, emit, field_table, first_line, new_table, when
from dotdo.storage.reader import MAX_QUERY_DEADLINE, MAX_ROWS, QUERY_DEADLINE

# -- workers, schedules ------------------------------------------------------------------------


@click.command()
@click.option("--queue", "q", metavar="Q", help="Only the workers of this queue.")
@json_option
def workers(q: str | None) -> None:
    """Workers: node, pid, queue, running jobs, last heartbeat, done and failed."""
    value = run_service(current_ops().live().workers(q))

    def render(out: Console) -> None:
        if not value:
            out.print("No workers.")
            return
        now = time.time()
        table = new_table("worker", "queue", "online", "node", "pid", "concurrency", "running",
                       "last seen", "completed", "failed")
        for w in value:
            running = w["running"] or []
            table.add_row(as_text(w["id"]), as_text(w["queue"]),
                          Text("yes", style="green") if w["online"] else Text("no", style="red"),
                          as_text(w["node"]), as_text(w["pid"]), as_text(w["concurrency"]),
                          as_text(f"{len(running)}: {', '.join(running)}" if running else 0),
                          ago(w["lastSeen"], now), str(w["completed"]), str(w["failed"]))
        out.print(table)

    emit(value, render)


def _schedules_table(rows: list[dict[str, Any]], with_object: bool = True) -> Table:
    now = time.time()
    table = new_table(*(["class", "id"] if with_object else []), "schedule", "spec", "next run",
                   "last run", "ticks", "last error")
    for s in rows:
        # The stored name is module.Class.method@spec: the method says it in this row.
        name = str(s["name"]).partition("@")[0].rpartition(".")[2]
        table.add_row(*([as_text(s["class"]), as_text(s["id"])] if with_object else []), as_text(name),
                      as_text(s["spec"]), when(s["nextRun"], now), when(s["lastRun"], now),
                      as_text(s["ticks"]), as_text(first_line(s["lastError"]) or None))
    return table


@click.command()
@json_option
def schedules() -> None:
    """Every object's schedules: spec, next and last run, last error (files only)."""
    value = run_service(current_ops().files().schedules())
    emit(value, lambda out: out.print(_schedules_table(value) if value else "No schedules."))


# -- objects ----------------------------------------------------------------------------------


@click.group()
def objects() -> None:
    """Durable objects as their files hold them (read only; Ray is not needed)."""


@objects.command("ls")
@click.argument("cls", metavar="[CLASS]", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--cursor", metavar="CURSOR", help="The cursor a previous page printed.")
@json_option
def objects_ls(cls: str | None, limit: int, cursor: str | None) -> None:
    """Classes with how many objects each; with CLASS, its objects."""
    service = current_ops().files()
    if cls is None:
        counts = run_service(service.classes())

        def render_classes(out: Console) -> None:
            if not counts:
                out.print(f"No objects under {service.root}.")
                return
            table = new_table("class", "objects")
            for name, n in counts.items():
                table.add_row(as_text(name), str(n))
            out.print(table)

        emit(counts, render_classes)
        return
    page = run_service(service.objects(cls, limit=limit, cursor=cursor))

    def render(out: Console) -> None:
        now = time.time()
        table = new_table("id", "size", "modified", title=f"{cls} objects")
        for o in page["objects"]:
            table.add_row(as_text(o["id"]), f"{o['size']:,} B", when(o["modified"], now))
        out.print(table)
        if page["cursor"] is not None:
            out.print(f"More: add --cursor {page['cursor']}")

    emit(page, render)


@objects.command("get")
@click.argument("cls", metavar="CLASS")
@click.argument("object_id", metavar="ID")
@json_option
def objects_get(cls: str, object_id: str) -> None:
    """An object's keys, tables, alarm, schedules and step count, from its file."""
    service = current_ops().files()
    value = run_service(service.object(cls, object_id))

    def render(out: Console) -> None:
        now = time.time()
        out.print(Panel(field_table([("file", os.path.join(service.root, value["path"])),
                                 ("size", f"{value['size']:,} B"),
                                 ("modified", when(value["modified"], now)),
                                 ("alarm", when(value["alarm"], now)),
                                 ("steps", f"{value['steps']} (dotdo steps {cls} {object_id})")]),
                        title=Text(f"{cls} {object_id}"), title_align="left"))
        if value["kv"]:
            kv = new_table("key", "value", title="Storage")
            for key, item in value["kv"].items():
                kv.add_row(as_text(key), as_text(json.dumps(item, default=str, ensure_ascii=False)))
            out.print(kv)
        if value["tables"]:
            tables = new_table("table", "rows", title="Tables")
            for t in value["tables"]:
                tables.add_row(as_text(t["name"]), str(t["rows"]))
            out.print(tables)
        if value["schedules"]:
            out.print(_schedules_table(value["schedules"], with_object=False))

    emit(value, render)


@objects.command("sql")
@click.argument("cls", metavar="CLASS")
@click.argument("object_id", metavar="ID")
@click.argument("query", metavar="SELECT")
@click.option("--limit", type=click.IntRange(1, MAX_ROWS), default=1000, show_default=True)
@click.option("--deadline", type=click.FloatRange(0, MAX_QUERY_DEADLINE, min_open=True),
              default=QUERY_DEADLINE, show_default=True, metavar="SECONDS",
              help="Stop the statement if it runs longer.")
@json_option
def objects_sql(cls: str, object_id: str, query: str, limit: int, deadline: float) -> None:
    """Run one read-only statement on the object's own file (stopped at its deadline;
    an answer over 16 MiB is refused)."""
    value = run_service(current_ops().files().sql(cls, object_id, query, limit=limit,
                                                  deadline=deadline))

    def render(out: Console) -> None:
        table = new_table(*value["columns"])
        for row in value["rows"]:
            table.add_row(*(as_text(v) for v in row))
        out.print(table)
        out.print(f"{len(value['rows'])} rows" + (f" (the first {limit}: more with --limit)"
                                                  if value["truncated"] else ""))

    emit(value, render)


@click.command()
@click.argument("cls", metavar="CLASS")
@click.argument("object_id", metavar="ID")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
def steps(cls: str, object_id: str, limit: int) -> None:
    """An object's step journal, newest first: steps, attempts, errors (files only)."""
    value = run_service(current_ops().files().steps(cls, object_id, limit=limit))

    def render(out: Console) -> None:
        if not value:
            out.print(f"{cls} {object_id} has no journaled steps.")
            return
        now = time.time()
        table = new_table("step", "attempts", "started", "finished", "result", "errors")
        for s in value:
            result = "-" if s["finishedAt"] is None else json.dumps(s["result"], default=str)
            errors = "\n".join(f"#{e['attempt']}: {first_line(e['error'])}" for e in s["errors"])
            table.add_row(as_text(s["step"]), str(s["attempts"]), when(s["startedAt"], now),
                          when(s["finishedAt"], now), as_text(result), as_text(errors or None))
        out.print(table)

    emit(value, render)
