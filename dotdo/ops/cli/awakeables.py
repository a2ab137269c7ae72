"""``dotdo jobs resolve`` and ``dotdo jobs reject``: settle an awakeable a job waits for
(``await dotdo.wait(token)``) by its token, as ``dotdo jobs get`` lists it. An
awakeable takes one resolve or reject, the first; a second is an error.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.text import Text

from dotdo.ops.cli.context import current_ops, json_option, run_service
from dotdo.ops.cli.output import emit
from dotdo.ops.cli.params import parse_value

__all__ = ["resolve", "reject"]


def _said(value: dict[str, Any]) -> None:
    def render(out: Console) -> None:
        out.print(Text(f"{value['settled'].capitalize()}: awakeable {value['awakeable']} of job "
                       f"{value['job']} in {value['queue']}; the job runs again if it waits "
                       "for it (else it finds it when it does)."))

    emit(value, render)


@click.command("resolve")
@click.argument("token")
@click.argument("value", required=False, callback=parse_value, metavar="[VALUE_JSON]")
@json_option
def resolve(token: str, value: Any) -> None:
    """Resolve the awakeable TOKEN with VALUE_JSON (null if left out): the job waiting
    for it goes on with that value."""
    _said(run_service(current_ops().live().resolve(token, value)))


@click.command("reject")
@click.argument("token")
@click.argument("reason")
@json_option
def reject(token: str, reason: str) -> None:
    """Reject the awakeable TOKEN: the job's ``await dotdo.wait(token)`` raises
    RejectedError with REASON."""
    _said(run_service(current_ops().live().reject(token, reason)))
