"""How values print: ``--json`` prints the service's answer as it is, else a rich
rendering; here are the pieces those renderings share: ages and times (``ago``,
``when``), durations, an error's first line, payloads as JSON text, user data as plain
text (never markup), and the tables and name/value grids the commands fill.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dotdo.ops.cli.context import current_ops

# -- how values print ------------------------------------------------------------------------


def emit(value: Any, render: Callable[[Console], None]) -> None:
    """``--json``: the value exactly as the service returned it; else ``render``."""
    if current_ops().json:
        click.echo(json.dumps(value, default=str, indent=2))
    else:
        render(Console(highlight=False, soft_wrap=False))


def span(seconds: float) -> str:
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
    return f"{span(delta)} ago" if delta >= 0 else f"in {span(delta)}"


def when(t: float | None, now: float | None = None) -> str:
    """A local ISO time and its age: ``2025-01-31 09:00:00 (3m ago)``."""
    if t is None:
        return "-"
    try:
        local = datetime.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")
    except (OverflowError, ValueError, OSError):  # past any calendar: a wait with no end
        return "never"
    return f"{local} ({ago(t, now)})"


def seconds_text(value: float | None) -> str:
    """A duration measured (p50, p95, ages): ``12 ms``, ``1.5 s``, ``3m``."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    return span(value)


def first_line(text: Any) -> str:
    """The first line of an error (its traceback shows on ``jobs get``)."""
    lines = str(text).strip().splitlines() if text is not None else []
    return lines[0] if lines else ""


def data_text(value: Any) -> str:
    """A payload or result as JSON text."""
    return json.dumps(value, default=str, indent=2, ensure_ascii=False)


def as_text(value: Any) -> Text:
    """User data as plain text: rich must not read ``[bold]`` in it as markup."""
    return Text("-" if value is None else str(value))


def new_table(*columns: str, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def field_table(rows: list[tuple[str, Any]]) -> Table:
    """Name/value lines (the head of a panel)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, value if isinstance(value, Text) else as_text(value))
    return grid
