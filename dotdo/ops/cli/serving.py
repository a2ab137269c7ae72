"""``serve`` and ``dashboard``: the HTTP API (and the dashboard at ``/``) in this
process or as a Ray Serve application, with its tokens made once and kept in the
storage root. Both print the pages' address with its ``?token=``, ready to open;
``dashboard`` also opens it in a browser once the server is up.
The web stack is imported only when serving starts, so the other commands start faster.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import webbrowser
from collections.abc import Callable
from typing import Any

import click

from dotdo.ops.cli.context import current_ops, json_option

DEFAULT_PORT = 8765  # as dotdo.ops.serve's (not imported here: the web stack loads slowly)


# -- serving ----------------------------------------------------------------------------------


def open_when_up(host: str, port: int, url: str) -> None:
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
                     help="Let POST /api/events/{NOUN.verb} send events of NOUN; repeatable."),
        json_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _serve(host: str, port: int, token: str | None, read_token: str | None, ray_serve: bool,
           replicas: int, modules: tuple[str, ...], events: tuple[str, ...],
           open_browser: bool = False, read_only: bool = False) -> None:
    # Imported here: only serving needs the web stack, and the other commands start faster.
    from dotdo.ops import serve as web

    ops = current_ops()
    if ray_serve and (ops.in_process or os.environ.get("DOTDO_IN_PROCESS")):
        raise click.UsageError("--ray-serve runs the API on a Ray cluster: drop --in-process "
                               "(and $DOTDO_IN_PROCESS)")
    ops.modules += [m for m in modules if m not in ops.modules]
    service = ops.live(events, lasting=True)
    tokens = web.Tokens.load_or_create(ops.root, token=token, read_token=read_token)
    # A server on every interface is reached locally at the loopback address.
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{local}:{port}"
    # The pages' address, ready to open: the admin token lets them retry, cancel and
    # pause; --read-only only looks. The 401 page says where this line is.
    page = f"{url}/?token={tokens.read_token if read_only else tokens.token}"
    if ops.json:
        click.echo(json.dumps({"url": url, "docs": f"{url}/docs", "dashboard": page,
                               "storage": ops.root, "tokenFile": tokens.path,
                               "readTokenFile": tokens.read_path, "token": tokens.token,
                               "readToken": tokens.read_token}))
    else:
        click.echo(f"dotdo API on {url} (docs: {url}/docs), storage {ops.root}"
                   + (f", {replicas} Ray Serve replica(s)" if ray_serve else ""))
        click.echo(f"dashboard: {page}")
        click.echo(f"token: {tokens.path or 'as given (--token)'}; read-only token: "
                   f"{tokens.read_path or 'as given (--read-token)'}")
        bearer = f"$(cat {tokens.path})" if tokens.path else "$TOKEN"
        click.echo(f'try: curl -H "Authorization: Bearer {bearer}" {url}/api/status')
    if open_browser:
        if not ops.json:
            click.echo(f"opening {url}/ in a browser (Ctrl-C stops the server)")
        open_when_up(local, port, page)
    if ray_serve:
        web.run_ray_serve(service, tokens, host=host, port=port, replicas=replicas,
                          modules=ops.modules, events=list(events))
    else:
        web.serve_local(service, tokens, host=host, port=port)


@click.command()
@_serve_options
def serve(**options: Any) -> None:
    """Serve the HTTP API (and the dashboard at /) until stopped."""
    _serve(**options, open_browser=False)


@click.command()
@_serve_options
@click.option("--no-open", is_flag=True, help="Print the pages' address (with its token); open no browser.")
@click.option("--read-only", is_flag=True,
              help="Open the pages with the read-only token: they can look, not act.")
def dashboard(no_open: bool, read_only: bool, **options: Any) -> None:
    """Serve the API and open the dashboard in a browser."""
    _serve(**options, open_browser=not no_open, read_only=read_only)
