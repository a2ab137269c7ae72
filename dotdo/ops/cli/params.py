"""Values on the command line: the click parameter types of ``dotdo``'s options
(durations, moments for ``--since`` and ``--run-at``, backoffs, a setting or ``none``,
retention), the JSON callbacks of ``--payload`` and of an awakeable's value, and the
job states the options may name.
Each turns text into what the service takes, or fails with a message saying what to
give instead.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from typing import Any

import click

from dotdo.jobmodel import FINISHED, UNFINISHED

__all__ = ["FINISHED", "UNFINISHED", "CLEAR", "Duration", "Since", "Moment", "Backoff",
           "OrNone", "KeepType", "parse_payload", "parse_value"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


# -- values on the command line --------------------------------------------------------------


class _Clear:
    """``none`` given for a setting: take the limit away."""

    def __repr__(self) -> str:
        return "none"


CLEAR = _Clear()


def _span_seconds(text: str) -> float | None:
    """``90``, ``90s``, ``10m``, ``2h``, ``1d``, ``1w`` as seconds, or None."""
    match = _SPAN.match(text)
    if match is None:
        return None
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class Duration(click.ParamType):
    """Seconds: ``90``, ``90s``, ``10m``, ``2h``, ``1d``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if isinstance(value, (int, float)):
            return float(value)
        seconds = _span_seconds(str(value))
        if seconds is None:
            self.fail(f"{value!r} is not a duration: give seconds (90) or 90s, 10m, 2h, 1d",
                      param, ctx)
        return seconds


class Since(click.ParamType):
    """A moment as epoch seconds: an age (``10m``, ``2h``, ``1d``: that long ago) or an
    ISO time (``2025-01-31T09:00``, local unless it has an offset)."""

    name = "since"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value)
        match = _SPAN.match(text)
        if match is not None and match.group(2):
            return time.time() - float(match.group(1)) * _UNITS[match.group(2)]
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is neither an age (10m, 2h, 1d) nor an ISO time "
                      "(2025-01-31T09:00)", param, ctx)
        if moment.tzinfo is None:
            moment = moment.astimezone()  # a time without an offset is local, as printed
        return moment.timestamp()


class Moment(click.ParamType):
    """A moment ahead as epoch seconds: an epoch number or an ISO time
    (``2025-01-31T09:00``, local unless it has an offset)."""

    name = "when"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        try:
            return float(value)
        except ValueError:
            pass
        try:
            moment = datetime.datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is neither epoch seconds nor an ISO time "
                      "(2025-01-31T09:00)", param, ctx)
        if moment.tzinfo is None:
            moment = moment.astimezone()  # a time without an offset is local
        return moment.timestamp()


class Backoff(click.ParamType):
    """A job's backoff: one duration, doubling per retry (``30s``), or the waits of
    each retry, the last repeating (``10s,1m,10m``)."""

    name = "backoff"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if not isinstance(value, str):
            return value
        waits = [_span_seconds(part) for part in value.split(",")]
        if not waits or any(wait is None for wait in waits):
            self.fail(f"{value!r}: give a duration (30s, doubling per retry) or the waits "
                      "of each retry (10s,1m,10m)", param, ctx)
        return waits[0] if len(waits) == 1 else waits


class OrNone(click.ParamType):
    """A setting's value, or ``none`` to remove the limit."""

    def __init__(self, inner: click.ParamType, what: str) -> None:
        self.inner = inner
        self.name = f"{what}|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if value is CLEAR or (isinstance(value, str) and value.lower() == "none"):
            return CLEAR
        return self.inner.convert(value, param, ctx)


class KeepType(click.ParamType):
    """Retention: a count (``1000``), ``count=1000,age=7d`` (either part), or ``none``
    to keep every finished job."""

    name = "keep"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if value is CLEAR or not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text == "none":
            return CLEAR
        if text.isdigit():
            return int(text)
        out: dict[str, Any] = {}
        for part in text.split(","):
            key, _, raw = part.partition("=")
            key = key.strip()
            if key == "count" and raw.strip().isdigit():
                out["count"] = int(raw)
            elif key == "age" and _span_seconds(raw) is not None:
                out["age"] = _span_seconds(raw)
            else:
                self.fail(f"{value!r}: give a count (1000), count=1000,age=7d (either part) "
                          "or none", param, ctx)
        return out


def _json(param: click.Parameter, value: str | None, hint: str) -> Any:
    """JSON text given on the command line (None when left out); ``hint`` says how."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc}): {hint}", param=param) from exc


def parse_payload(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    return _json(param, value, "quote it for the shell, e.g. --payload '{\"to\": \"ada\"}'")


def parse_value(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """An awakeable's value given as JSON text (None when left out)."""
    return _json(param, value, "give the value as JSON, quoted for the shell: "
                 "'{\"approved\": true}', '42', or '\"yes\"' for a string")
