"""Retrying with backoff: the policy behind ``dotdo.do`` and alarms, and the one
schedule of waits that it and the job queue's retries share (``backoff_delay``).

The schedule: attempt 1 at once, then waits of 1 s, 2 s, 4 s, ... doubling,
each capped at 10 s; ``max_retries=3`` means up to four attempts.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

from dotdo.checks import is_finite, is_int
from dotdo.errors import TerminalError

__all__ = ["RetryPolicy", "TerminalError", "backoff_delay", "backoff_delays"]


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How ``do`` retries: ``max_retries`` more attempts after the first, waiting
    ``backoff * 2**n`` seconds before retry ``n + 1``, each wait capped at
    ``max_backoff``; with ``jitter``, each wait is drawn uniformly from
    ``[wait / 2, wait]`` so that many failing steps do not retry in lockstep."""

    max_retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 10.0
    jitter: bool = False

    def __post_init__(self) -> None:
        retries = self.max_retries
        if not is_int(retries) or retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {retries!r}")
        for name in ("backoff", "max_backoff"):
            if not _seconds(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, "
                                 f"got {getattr(self, name)!r}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the second attempt)."""
        wait = backoff_delay(self.backoff, retry, self.max_backoff)
        return random.uniform(wait / 2, wait) if self.jitter else wait


def backoff_delay(backoff: float | Sequence[float], retry: int, cap: float) -> float:
    """Seconds before retry number ``retry`` (1 for the second attempt), at most
    ``cap``: ``backoff`` doubled per retry (1 -> 1, 2, 4 ...), or the ``retry``-th of
    a list of waits, its last repeating ([10, 60] -> 10, 60, 60 ...)."""
    if isinstance(backoff, Sequence):
        return min(backoff[min(retry, len(backoff)) - 1], cap)
    try:
        # ldexp doubles exactly, and takes any exponent without building 2**n.
        return min(math.ldexp(backoff, retry - 1), cap)
    except OverflowError:  # doubled past every float: far past the cap
        return cap


def _seconds(value: object) -> bool:
    return is_finite(value) and value >= 0  # type: ignore[operator]


def backoff_delays(policy: RetryPolicy) -> list[float]:
    """Every wait the policy makes, in order (without jitter: exact)."""
    return [policy.delay(n) for n in range(1, policy.max_retries + 1)]
