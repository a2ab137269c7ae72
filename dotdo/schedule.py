"""``every``: schedule spellings, parsed once, into next fire times.

    every(5).minutes   every(30).seconds   every(2).hours   every(1).days
    every.minute       every.hour          every.day
    every.day.at("midnight" | "noon" | "9am" | "5:30pm" | "17:45")
    every.monday.at("9am")   every.weekday.at("8:30am")   every.cron("*/5 * * * *")

Times are UTC unless ``tz="Europe/Paris"`` (any IANA zone) is given to ``at`` or
``cron``; calendar schedules follow that zone across daylight-saving changes. Fixed
intervals (``every(n).<unit>``) count from the last tick. Cron arithmetic is
croniter's; every spelling but the intervals becomes a cron expression.

A bad spelling raises ``ValueError`` naming the bad part, when it is written.
Each :class:`Schedule` is also the decorator that registers its function (see
:mod:`dotdo.registry`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from dotdo.checks import is_finite
from dotdo.registry import Kind, register

__all__ = ["Schedule", "every", "parse_time"]

_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
_DAYS = {
    "monday": "1", "tuesday": "2", "wednesday": "3", "thursday": "4",
    "friday": "5", "saturday": "6", "sunday": "0", "weekday": "1-5", "weekend": "0,6",
}
_TIME = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\.?)?\s*$", re.IGNORECASE)


def parse_time(text: str) -> tuple[int, int]:
    """``"9am"`` -> (9, 0); ``"5:30pm"`` -> (17, 30); ``"17:45"``, ``"midnight"``, ``"noon"``."""
    if not isinstance(text, str):
        raise ValueError(f"a time of day is a str like '9am' or '17:45', not {text!r}")
    named = {"midnight": (0, 0), "noon": (12, 0)}.get(text.strip().lower())
    if named:
        return named
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a time of day: write '9am', '5:30pm', '17:45', "
                         "'midnight' or 'noon'")
    hour, minute, half = int(m.group(1)), int(m.group(2) or 0), (m.group(3) or "").lower()
    if half:
        if not 1 <= hour <= 12:
            raise ValueError(f"hour {hour} in {text!r} is out of range 1-12 for am/pm")
        hour = hour % 12 + (12 if half.startswith("p") else 0)
    elif not 0 <= hour <= 23:
        raise ValueError(f"hour {hour} in {text!r} is out of range 0-23")
    if not 0 <= minute <= 59:
        raise ValueError(f"minute {minute} in {text!r} is out of range 0-59")
    return hour, minute


def _positive(n: object) -> bool:
    """A real number > 0 and finite: NaN compares false to everything and infinity
    would never fire, so ``n <= 0`` alone lets both through."""
    return is_finite(n) and n > 0  # type: ignore[operator]


def _zone(tz: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"tz={tz!r} is not an IANA time zone such as 'Europe/Paris'") from None


class Schedule:
    """When something runs: a fixed interval or a cron expression in a zone."""

    def __init__(self, *, interval: float | None = None, cron: str | None = None,
                 tz: str | None = None, label: str = "") -> None:
        self.interval = interval
        self.cron = cron
        self.tz = tz or "UTC"
        self.label = label
        self._zone = _zone(tz)
        if (interval is None) == (cron is None):
            raise ValueError(f"{label or 'Schedule'}: give either interval= or cron=")
        if interval is not None and not _positive(interval):
            raise ValueError(f"{label or 'Schedule'}: interval={interval!r} is not a "
                             "finite number of seconds > 0")
        if cron is not None and not croniter.is_valid(cron):
            raise ValueError(f"{label or cron!r}: {cron!r} is not a cron expression "
                             "(five fields: minute hour day-of-month month day-of-week)")

    @property
    def spec(self) -> str:
        """A stable text form, stored beside the next fire time."""
        if self.interval is not None:
            return f"every {self.interval:g}s"
        return f"cron {self.cron} {self.tz}"

    def next_after(self, t: float) -> float:
        """The first fire time strictly after epoch ``t``."""
        if self.interval is not None:
            return t + self.interval
        start = dt.datetime.fromtimestamp(t, self._zone)
        return croniter(self.cron, start).get_next(float)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return register(Kind.EVERY, self, fn)

    def __repr__(self) -> str:
        return f"<Schedule {self.label or self.spec}>"


class _Calendar(Schedule):
    """A daily or weekly schedule that ``.at(time)`` can move within the day."""

    def __init__(self, days: str, label: str) -> None:
        super().__init__(cron=f"0 0 * * {days}", label=label)
        self._days = days

    def at(self, time_of_day: str, *, tz: str | None = None) -> Schedule:
        """The same days at ``time_of_day`` (``"9am"``, ``"17:45"``...), in ``tz``."""
        label = f"{self.label}.at({time_of_day!r})"
        try:
            hour, minute = parse_time(time_of_day)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        return Schedule(cron=f"{minute} {hour} * * {self._days}", tz=tz, label=label)


class _Interval:
    """``every(n)``: pick the unit."""

    def __init__(self, n: float) -> None:
        if not _positive(n):
            raise ValueError(f"every({n!r}): n must be a finite number > 0")
        self.n = n

    def __getattr__(self, unit: str) -> Schedule:
        seconds = _UNITS.get(unit) or _UNITS.get(unit + "s")
        if seconds is None:
            raise AttributeError(f"every({self.n}).{unit}: the units are seconds, minutes, "
                                 "hours and days")
        return Schedule(interval=self.n * seconds, label=f"every({self.n}).{unit}")


class _Every:
    """The ``every`` builder; see the module docstring for the spellings."""

    def __call__(self, n: float) -> _Interval:
        return _Interval(n)

    @property
    def minute(self) -> Schedule:
        return Schedule(cron="* * * * *", label="every.minute")

    @property
    def hour(self) -> Schedule:
        return Schedule(cron="0 * * * *", label="every.hour")

    @property
    def day(self) -> _Calendar:
        return _Calendar("*", "every.day")

    def cron(self, expr: str, *, tz: str | None = None) -> Schedule:
        """A cron expression (five fields), in ``tz`` (UTC by default)."""
        if not isinstance(expr, str):
            raise ValueError(f"every.cron({expr!r}): the expression is a str like '*/5 * * * *'")
        return Schedule(cron=expr, tz=tz, label=f"every.cron({expr!r})")

    def __getattr__(self, name: str) -> _Calendar:
        days = _DAYS.get(name)
        if days is None:
            raise AttributeError(
                f"every.{name}: say every(n).minutes, every.minute|hour|day, "
                "every.<weekday>|weekday|weekend.at(...), or every.cron(...)"
            )
        return _Calendar(days, f"every.{name}")


every = _Every()
