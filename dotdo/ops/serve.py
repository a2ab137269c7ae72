"""Running the HTTP API: in this process under uvicorn (the embedded default, bound to
127.0.0.1), or on a Ray cluster as a Ray Serve application whose replicas spread
across nodes (``dotdo serve --ray-serve``, or ``serve run dotdo.ops.serve:build``).
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI
from ray import serve

import dotdo
from dotdo import tracing
from dotdo.ops.api import create_app
from dotdo.ops.auth import Tokens
from dotdo.ops.service import Service
from dotdo.settings import Settings, default_durability, default_hosting
from dotdo.settings import use as use_settings

__all__ = ["Tokens", "serve_local", "start_in_background", "Background", "run_ray_serve",
           "ray_serve_app", "build", "DEFAULT_PORT"]

DEFAULT_PORT = 8765
_START_TIMEOUT = 30.0


def _server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                         lifespan="off", timeout_graceful_shutdown=1))


def serve_local(service: Service, tokens: Tokens, host: str = "127.0.0.1",
                port: int = DEFAULT_PORT) -> None:
    """Serve the API (and the dashboard) from this process until interrupted; returns
    then, so that the process ends as it would on its own (its Ray's record removed)."""
    try:
        _server(create_app(service, tokens), host, port).run()
    except KeyboardInterrupt:  # uvicorn stopped gracefully, then raised the signal again
        pass


class Background:
    """The API served on a thread of this process: ``url``, then ``stop()``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        if port == 0:  # a free port, chosen now so the URL is known before serving
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.url = f"http://{host}:{port}"
        self._server = _server(app, host, port)
        self._thread = threading.Thread(target=self._server.run, name="dotdo-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.url} (is the port taken?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_in_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Background:
    """Serve ``app`` on a thread (port 0: a free one); for tests and the dashboard."""
    return Background(app, host, port)


# -- Ray Serve ----------------------------------------------------------------------------

def ray_serve_app(storage: str, namespace: str, tokens: Tokens, *, events: list[str] | tuple = (),
                  modules: list[str] | tuple = (), replicas: int = 1,
                  hosting: dotdo.Dedicated | dotdo.Pooled | None = None) -> Any:
    """The API as a Ray Serve application of ``replicas`` replicas. Each replica is a
    Ray actor using these settings (``hosting``: default as ``dotdo.init``'s), as
    dotdo's own hosts use their creator's, so it reaches the very actors a driver
    with these settings reaches."""
    conf = Settings(os.path.abspath(storage), namespace, hosting or default_hosting(),
                    durability=default_durability(),
                    tracing=tracing.handed() or tracing.switches(None))
    app = create_app(Service(storage=conf.root, events=list(events)), tokens)

    @serve.deployment(num_replicas=replicas, ray_actor_options={
        "num_cpus": 0, "runtime_env": {"env_vars": {"DOTDO_STORAGE": conf.storage,
                                                    "DOTDO_NAMESPACE": namespace}}})
    @serve.ingress(app)
    class DotdoApi:
        """One replica of the API."""

        def __init__(self, conf: Settings, modules: list[str]) -> None:
            # A Ray worker otherwise takes its settings from its environment, whose
            # hosting may differ: it would then start other actors on the same files.
            use_settings(conf)
            tracing.setup(conf.tracing, host="api")  # its requests' spans, as the driver's
            for module in modules:  # exposed classes and job types
                importlib.import_module(module)

    return DotdoApi.bind(conf, list(modules))  # type: ignore[attr-defined]


def run_ray_serve(service: Service, tokens: Tokens, host: str = "127.0.0.1",
                  port: int = DEFAULT_PORT, replicas: int = 1, modules: list[str] | tuple = (),
                  events: list[str] | tuple = (), blocking: bool = True) -> str:
    """Deploy the API with Ray Serve on the cluster this driver joined; returns its URL.
    ``blocking``: keep this driver until interrupted (Serve's proxy listens on
    ``host:port`` of each node)."""
    settings = dotdo.current_settings()
    if settings.in_process:
        raise dotdo.ConfigError("Ray Serve runs the API on Ray, where objects run in this "
                                "process cannot be reached: drop --in-process "
                                "($DOTDO_IN_PROCESS) to serve with --ray-serve")
    serve.start(http_options={"host": host, "port": port})
    serve.run(ray_serve_app(service.root, settings.namespace, tokens, events=events,
                            modules=modules, replicas=replicas,
                            hosting=settings.hosting),
              name="dotdo", route_prefix="/", blocking=False)
    url = f"http://{host}:{port}"
    if blocking:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.delete("dotdo")
    return url


def build(args: dict[str, str]) -> Any:
    """``serve run dotdo.ops.serve:build storage=/shared/.dotdo namespace=dotdo
    replicas=2 modules=myapp.jobs events=Signup``: the application for Serve's own CLI.
    Tokens come from the storage root's token files (created on first use)."""
    storage = os.path.abspath(args.get("storage") or os.environ.get("DOTDO_STORAGE") or ".dotdo")
    namespace = args.get("namespace") or os.environ.get("DOTDO_NAMESPACE") or "dotdo"

    def split(key: str) -> list[str]:
        return [x for x in args.get(key, "").split(",") if x]

    return ray_serve_app(storage, namespace, Tokens.load_or_create(storage),
                         events=split("events"), modules=split("modules"),
                         replicas=int(args.get("replicas", 1)))
