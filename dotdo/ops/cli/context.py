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
import logging
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
# Where Ray logs that a cluster uses token authentication (see _quiet_token_notice).
_RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


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
        self._looked = False
        self._found: tuple[str | None, str | None] | None = None

    @property
    def root(self) -> str:
        """The storage root, absolute (``--storage``, ``$DOTDO_STORAGE`` or ``./.dotdo``)."""
        return os.path.abspath(self.storage) if self.storage else default_storage()

    @property
    def objects(self) -> str:
        """Where the objects of ``--namespace`` keep their files under the root."""
        return objects_root(self.root, check_namespace(self.namespace or default_namespace()))

    def files(self) -> Service:
        """A service for what is in files: no Ray is started, but a running one (see
        :meth:`live`) is joined, so that a live object's file is read by its host, on
        the node that writes it."""
        self.import_modules()
        if not (self._started or self.in_process or self.address == "local"
                or default_in_process()):
            if self._ray_to_join() is not None:
                try:
                    return self.live()
                except ConfigError:
                    pass  # nothing answers there: no host runs, so the files are read here
        return Service(storage=self.objects)

    def live(self, events: tuple[str, ...] = (), lasting: bool = False) -> Service:
        """A service on live objects: ``dotdo.init`` with the group's options first.
        A one-off command joins a running Ray (``--address``, ``$RAY_ADDRESS``, the
        one a dotdo process started for this storage, or ``ray start``'s), saying
        which on stderr, and refuses to start one of its own (unless ``--address
        local``): the queues it asked would wake their workers in a Ray that ends with
        the command, and the jobs they took would wait out their leases. ``lasting``:
        a server, whose Ray lives as long as it serves."""
        self.import_modules()
        in_process = self.in_process or default_in_process()
        if not self._started:
            address, joined = self.address, None
            if not (lasting or in_process):
                found = self._ray_to_join()
                if found is None:
                    raise click.ClickException(self._refusal())
                address, joined = found
                _quiet_token_notice()
            # None, not False: dotdo.init then reads $DOTDO_IN_PROCESS itself.
            dotdo.init(address, storage=self.root, namespace=self.namespace,
                       in_process=True if self.in_process else None)
            self._started = True
            if joined is not None:
                click.echo(f"joined {joined}", err=True)
        return Service(storage=self.objects, events=list(events))

    def _ray_to_join(self) -> tuple[str | None, str | None] | None:
        """The address a one-off command passes to ``dotdo.init`` and what it joins
        there (None for ``--address local``, which starts one); None when no Ray runs
        for it to join. Looked for once a command."""
        if not self._looked:
            self._found, self._looked = self._look_for_ray(), True
        return self._found

    def _look_for_ray(self) -> tuple[str | None, str | None] | None:
        if self.address == "local":
            return "local", None
        if self.address is not None:
            return self.address, f"Ray {self.address} (--address)"
        given = os.environ.get("RAY_ADDRESS")
        if given:
            return None, f"Ray {given} ($RAY_ADDRESS)"
        # Before `ray start`'s: this storage's objects live in the Ray started for it.
        record = connect.ray_record(self.root)
        if record is not None and record.answers():
            return record.address, f"Ray {record.address} of {record.program} (pid {record.pid})"
        cluster = connect.running_cluster()
        if cluster is not None:
            return None, f"Ray {cluster} (ray start)"
        return None

    def _refusal(self) -> str:
        record = connect.ray_record(self.root)
        stale = "" if record is None else (
            f" ({record.path} names the Ray of {record.program} (pid {record.pid}), which "
            "has ended)")
        return (f"no Ray runs for the storage {self.root}, so this command has none to "
                f"ask{stale}. Start `dotdo dashboard` or `dotdo serve` with this storage "
                f"and run the command again: they record their Ray in "
                f"{os.path.join(self.root, connect.RAY_RECORD)}, as programs that call "
                "dotdo.init() do, and commands join it. Or start a lasting cluster with "
                "`ray start --head` and run your programs and workers with "
                "RAY_ADDRESS=auto. Or pass --address local to start a Ray just for this "
                "command (it wakes the queues' workers until the command ends).")

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


def _quiet_token_notice() -> None:
    """Drop Ray's "Token authentication is enabled for this Ray cluster" warning in
    this process. Ray prints it in every driver that starts or joins a Ray with a
    token, so a one-off command would print it every time: its user did not start that
    Ray (the server that did printed it already) and has nothing to do about it."""
    logger = logging.getLogger(_RAY_TOKEN_LOGGER)
    if not any(isinstance(f, _NoTokenNotice) for f in logger.filters):
        logger.addFilter(_NoTokenNotice())


class _NoTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.funcName != "_warn_token_auth_enabled"


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
