"""What counts as a number where dotdo takes one (callers word their own errors).

``True`` is an ``int`` to Python and NaN compares false to everything, so a bare
``isinstance``/``<`` check lets both through; these do not.
"""

from __future__ import annotations

import math

__all__ = ["is_int", "is_real", "is_finite"]


def is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """An ``int`` or ``float`` that is not a ``bool`` (NaN and infinity included)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: object) -> bool:
    """A real number, not NaN or infinite (an int too big for a float is not)."""
    if not is_real(value):
        return False
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except OverflowError:
        return False
