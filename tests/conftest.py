"""One real local Ray for the whole session, and storage under a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

import dotdo
from dotdo import runtime

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dotdo-storage")


@pytest.fixture(scope="session")
def _ray_session(storage_root):
    dotdo.init(address="local", storage=str(storage_root), num_cpus=2)
    yield
    dotdo.shutdown()


@pytest.fixture
def ray_session(_ray_session, storage_root):
    """dotdo on the session's Ray; starts it again if a test shut it down."""
    if not ray.is_initialized():
        dotdo.init(address="local", storage=str(storage_root), num_cpus=2)
    return runtime.settings()


@pytest.fixture
def unique(request) -> str:
    """An id no other test uses, so tests never share an object by accident."""
    return request.node.name.replace("[", "-").replace("]", "")


def run_driver(code: str, *, env: dict | None = None, timeout: float = 120) -> str:
    """Run ``code`` in a new Python driver process with the repo importable."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(f"driver failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout
