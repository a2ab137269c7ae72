"""What the ``dotdo`` group's options chose, as the :class:`Ops` context object every
command finds: it imports the ``-m`` modules and makes the
:class:`~dotdo.ops.service.Service`, reading files only or joining Ray first. Also the
small pieces every command uses to reach it: ``current_ops`` (the current one),
``run_service`` (one service call to the end) and ``json_option`` (``--json`` after any
command).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

import dotdo
from dotdo import connect
from dotdo.errors import ConfigError
from dotdo.ops.service import Service
from dotdo.settings import (
    check_namespace,
    default_in_process,
    default_namespace,
    default_storage,
    objects_root,
)

T = TypeVar("T")


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

    @property
    def objects(self) -> str:
        """Where the objects of ``--namespace`` keep their files under the root."""
        return objects_root(self.root, check_namespace(self.namespace or default_namespace()))

    def files(self) -> Service:
        """A service for what is in files: no Ray is started, but a running one (of
        ``--address``, ``$RAY_ADDRESS`` or ``ray start``) is joined, so that a live
        object's file is read by its host, on the node that writes it."""
        self.import_modules()
        if not (self._started or self.in_process or self.address == "local"
                or default_in_process()):
            if self.address is not None or connect.running_cluster() is not None:
                try:
                    return self.live()
                except ConfigError:
                    pass  # nothing answers there: no host runs, so the files are read here
        return Service(storage=self.objects)

    def live(self, events: tuple[str, ...] = (), lasting: bool = False) -> Service:
        """A service on live objects: ``dotdo.init`` with the group's options first.
        A one-off command refuses to start a Ray of its own (unless ``--address local``):
        the queues it asked would wake their workers in a Ray that ends with the
        command, and the jobs they took would wait out their leases. ``lasting``: a
        server, whose Ray lives as long as it serves."""
        self.import_modules()
        in_process = self.in_process or default_in_process()
        if not (self._started or lasting or in_process or self.address is not None
                or connect.running_cluster() is not None):
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
        return Service(storage=self.objects, events=list(events))

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


def current_ops() -> Ops:
    """The ``Ops`` of the running ``dotdo`` command."""
    ops = click.get_current_context().find_object(Ops)
    if ops is None:  # a subcommand's function called on its own, not through `dotdo`
        raise click.UsageError("run the commands through the `dotdo` group: dotdo jobs ls Q")
    return ops


def run_service(coro: Coroutine[Any, Any, T]) -> T:
    """Run one service call to the end (each command is a short program of its own)."""
    return asyncio.run(coro)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` after any command too, not only after ``dotdo``."""

    def turn_on(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ops = ctx.find_object(Ops)
            if ops is not None:
                ops.json = True

    return click.option("--json", "as_json", is_flag=True, expose_value=False, callback=turn_on,
                        help="Print the service's answer as JSON.")(f)
