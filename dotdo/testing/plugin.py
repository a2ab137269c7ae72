"""The pytest plugin of :mod:`dotdo.testing`, registered by the ``pytest11`` entry
point: pytest loads it wherever dotdo is installed (``-p no:dotdo`` turns it off).

* ``dotdo_local``: a :func:`dotdo.testing.local` for the test, its files under the
  test's ``tmp_path``; the :class:`~dotdo.testing.Local` (``now``, ``advance``,
  ``drain``, ``clock``, ``storage``).
* ``dotdo_advance``, ``dotdo_drain``: that Local's ``advance`` and ``drain``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dotdo.testing import Drained, Local, local

__all__ = ["dotdo_local", "dotdo_advance", "dotdo_drain"]


@pytest.fixture
def dotdo_local(tmp_path: Path) -> Iterator[Local]:
    """Objects in this process on a test clock, files under ``tmp_path``."""
    with local(storage=tmp_path / "dotdo") as env:
        yield env


@pytest.fixture
def dotdo_advance(dotdo_local: Local) -> Callable[[float], float]:
    """``dotdo_advance(seconds)``: move the test clock, running what falls due."""
    return dotdo_local.advance


@pytest.fixture
def dotdo_drain(dotdo_local: Local) -> Callable[..., Drained]:
    """``dotdo_drain(queue)``: run a queue's ready jobs until none is left."""
    return dotdo_local.drain
