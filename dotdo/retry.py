"""Retrying with backoff: the policy behind ``dotdo.do`` and alarms.

The seed's schedule: attempt 1 at once, then waits of 1 s, 2 s, 4 s, ... doubling,
each capped at 10 s; ``max_retries=3`` means up to four attempts.
"""

from __future__ import annotations

import dataclasses
import random

from dotdo.errors import DotdoError

__all__ = ["RetryPolicy", "TerminalError", "backoff_delays"]


class TerminalError(DotdoError):
    """Raise it (or a subclass) inside a step to stop retrying at once."""


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
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0 seconds")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the second attempt)."""
        wait = min(self.backoff * 2 ** (retry - 1), self.max_backoff)
        return random.uniform(wait / 2, wait) if self.jitter else wait


def backoff_delays(policy: RetryPolicy) -> list[float]:
    """Every wait the policy makes, in order (without jitter: exact)."""
    return [policy.delay(n) for n in range(1, policy.max_retries + 1)]
