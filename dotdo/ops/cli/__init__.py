"""The ``dotdo`` command: look at and act on queues, jobs, workers, schedules and
objects without writing Python, and serve the HTTP API and the dashboard.

Every command prints tables for people and, with ``--json``, exactly what the
:class:`~dotdo.ops.service.Service` returned. Commands that only read objects' files
(``objects``, ``steps``, ``schedules``) never start or join Ray; the others call
``dotdo.init`` with ``--address``, ``--storage`` and ``--namespace`` first.
"""

from __future__ import annotations

from typing import Any

import click

from dotdo.errors import DotdoError
from dotdo.ops.cli import awakeables, jobs, objects, queues, serving
from dotdo.ops.cli.context import Ops

__all__ = ["main"]


# -- the group ---------------------------------------------------------------------------------


class _Group(click.Group):
    """The command group; a dotdo or value error ends the command with its message,
    not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DotdoError, ValueError) as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            ctx.exit(1)


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


# -- the commands, each from the module of its idea ------------------------------------------

main.add_command(queues.status)
main.add_command(queues.queues)
main.add_command(queues.queue)
main.add_command(jobs.jobs)
jobs.jobs.add_command(awakeables.resolve)
jobs.jobs.add_command(awakeables.reject)
main.add_command(objects.workers)
main.add_command(objects.schedules)
main.add_command(objects.objects)
main.add_command(objects.steps)
main.add_command(serving.serve)
main.add_command(serving.dashboard)
