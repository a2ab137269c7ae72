"""Durable waits in job handlers: sleep for days, wait for an event, a person (an
awakeable) or a child job, holding no worker while waiting.

A wait parks the job in its queue (``sleeping`` or ``waiting``) and ends the handler's
run; when the wait ends, any worker of the queue runs the handler again from the
top, and every wait and named step (``do(..., step_id=)``) it passed answers from the
queue's journal without running again, so the code after the wait sees the same
values. Code between steps runs again on each resume: keep side effects in steps.

Each wait is known by its place in the run: the first ``sleep`` of a run is
``sleep#1``, the second ``sleep#2``, and so on for each kind. A deploy that adds or
removes waits before the place a run had reached changes those places: guard such
changes with ``patched``.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
from typing import Any, NoReturn, Protocol, Unpack

from dotdo import codec
from dotdo.errors import JobError, RejectedError, ReplayError
from dotdo.events import Event, check_event_type
from dotdo.jobmodel import JobOptions
from dotdo.jobs import running

__all__ = ["sleep", "sleep_until", "wait_for_event", "awakeable", "wait", "run_job",
           "patched", "Parked", "WaitRun", "awakeable_token", "parse_token", "MAX_WAIT"]

MAX_WAIT = 366 * 86_400.0  # seconds: as for a job's delay, longer is a unit mix-up
_TOKEN = "awk_"


class Parked(BaseException):
    """Raised through a job handler whose job parked: its run ends here, and the
    worker lets the job go. A BaseException so that ``except Exception`` in the
    handler does not hold the run."""


class WaitRun(Protocol):
    """What a worker gives the waits of a running job (its ``JobRun``)."""

    job_id: str
    queue: str
    uid: str | None  # the job's enqueue: its points' key

    def next_key(self, kind: str) -> str:
        """The next place of ``kind`` in this run: ``sleep#1``, ``sleep#2``, ..."""
        ...

    async def point(self, key: str, kind: str, arg: dict[str, Any]) -> dict[str, Any]:
        """Ask the queue about point ``key``; raises Parked when the job parks."""
        ...

    def patched(self, name: str) -> bool: ...


def _run(what: str) -> WaitRun:
    run = running.get()
    if run is None or not getattr(run, "queue", None) or not hasattr(run, "point"):
        raise RuntimeError(f"dotdo.{what}() works inside an async job handler run from a "
                           "queue (@dotdo.job, enqueued with Queue.enqueue): it parks the "
                           "job there. Elsewhere, use asyncio.sleep or an object's alarm")
    return run  # type: ignore[return-value]


def _seconds(name: str, value: object, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} is a number of seconds (or a timedelta), not {value!r}")
    if value < 0 or value > MAX_WAIT:
        raise ValueError(f"{name} is from 0 to {MAX_WAIT:,.0f} s (366 days), not {value!r}")
    return float(value)


async def sleep(seconds: float | datetime.timedelta) -> None:
    """Park the job for ``seconds`` (durably: it survives any crash or restart, and
    holds no worker meanwhile), then go on. ``sleep(0)`` returns at once."""
    secs = _seconds("seconds", seconds)
    run = _run("sleep")
    await _point(run, "sleep", {"seconds": secs})


async def sleep_until(when: float | datetime.datetime) -> None:
    """Park the job until ``when`` (an epoch time, or an aware datetime); a time
    already past returns at once."""
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            raise ValueError("sleep_until takes an aware datetime (with tzinfo), "
                             "for example datetime.now(timezone.utc) + timedelta(days=3)")
        when = when.timestamp()
    if isinstance(when, bool) or not isinstance(when, (int, float)) or not math.isfinite(when):
        raise ValueError(f"sleep_until takes an epoch time or an aware datetime, not {when!r}")
    run = _run("sleep_until")
    await _point(run, "sleep", {"until": float(when)})


async def wait_for_event(event_type: str, match: dict[str, Any] | None = None,
                         timeout: float | datetime.timedelta | None = None) -> Event:
    """Park the job until an event ``event_type`` whose data holds every item of
    ``match`` is sent (``dotdo.send`` anywhere: a driver, an object, a job, the HTTP
    API, the command) after this wait began; returns it. ``TimeoutError`` once
    ``timeout`` s passed without one."""
    check_event_type(event_type)
    if match is not None and not isinstance(match, dict):
        raise ValueError(f"match is a dict of the event data's items to match, not {match!r}")
    codec.encode(match)  # refused here if it cannot be kept
    secs = _seconds("timeout", timeout, allow_none=True)
    run = _run("wait_for_event")
    got = await _point(run, "event", {"type": event_type, "match": match or {},
                                      "timeout": secs})
    return Event(got["id"], got["type"], got["data"], got["created"])


async def awakeable() -> str:
    """A durable promise of this job: an id to hand to the outside world (an email
    link, a webhook). ``await dotdo.wait(token)`` parks until someone calls
    ``dotdo.resolve(token, value)`` or ``dotdo.reject(token, reason)``; a resolve
    that comes before the wait is kept."""
    run = _run("awakeable")
    key = run.next_key("awakeable")
    await run.point(key, "awakeable", {})
    return awakeable_token(run.queue, run.job_id, run.uid, key)


async def wait(token: str, timeout: float | datetime.timedelta | None = None) -> Any:
    """Park the job until the awakeable ``token`` (of this job) is resolved, and
    return its value; ``RejectedError`` if it is rejected, ``TimeoutError`` once
    ``timeout`` s passed."""
    queue, job_id, _, key = parse_token(token)
    secs = _seconds("timeout", timeout, allow_none=True)
    run = _run("wait")
    if (queue, job_id) != (run.queue, run.job_id):
        raise ValueError(f"{token!r} is an awakeable of job {job_id!r} in queue {queue!r}: "
                         "a job waits for its own awakeables")
    return await _point(run, "wait", {"awakeable": key, "timeout": secs})


async def run_job(type: str, payload: Any = None, *, queue: str | None = None,
                  **options: Unpack[JobOptions]) -> Any:
    """Enqueue a child job (in ``queue``, by default this job's), park this job until
    the child ends, and return its output; raises the child's error (a ``JobError``)
    if it fails or is cancelled. Cancelling this job cancels its unfinished children.
    ``options`` are ``Queue.enqueue``'s, but ``job_id`` (the child's id is fixed by
    its place in the run: a resumed run finds the same child)."""
    if not isinstance(type, str) or not type:
        raise ValueError(f"a job type is a non-empty str like 'resize', not {type!r}")
    if "job_id" in options:
        raise TypeError("run_job gives the child its id (the parent's id and its place), "
                        "so that a resumed run finds the same child: leave job_id out")
    run = _run("run_job")
    key = run.next_key("child")
    target = queue or run.queue
    child_id = f"{run.job_id}.{key.replace('#', '')}"
    return await _point(run, "child", {"queue": target, "id": child_id, "type": type,
                                       "payload": codec.encode(payload), "options": options},
                        key=key)


def patched(name: str) -> bool:
    """Whether this run takes the code added under ``name``: True for a run that
    reaches this place for the first time (and in every later run of it), False for a
    run whose journal was written past this place by code without the patch.
    ``if dotdo.patched("free-shipping"): ...`` keeps runs in flight on their path."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a patch has a name, a non-empty str, not {name!r}")
    return _run("patched").patched(name)


async def _point(run: WaitRun, kind: str, arg: dict[str, Any], key: str | None = None) -> Any:
    """Meet one point of the run: its value, or raise what it ended with."""
    key = key or run.next_key(kind)
    answer = await run.point(key, kind, arg)
    if "done" in answer:
        return codec.decode(answer["done"])
    if answer.get("timeout"):
        raise TimeoutError(f"{kind} {key} of job {run.job_id!r} timed out")
    return _raise_failed(kind, key, answer["failed"], run)


def _raise_failed(kind: str, key: str, failure: Any, run: WaitRun) -> NoReturn:
    if kind == "child" and isinstance(failure, dict):
        raise JobError.of(failure.get("error") or "failed", failure.get("id"),
                          failure.get("status"))
    if kind == "wait":
        raise RejectedError(str(failure))
    raise ReplayError(f"{kind} {key} of job {run.job_id!r}: {failure}")


def awakeable_token(queue: str, job_id: str, uid: str | None, key: str) -> str:
    """The id of an awakeable: where it lives, in one URL-safe string."""
    raw = json.dumps([queue, job_id, uid, key], separators=(",", ":")).encode()
    return _TOKEN + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_token(token: object) -> tuple[str, str, str | None, str]:
    """``(queue, job id, uid, key)`` of an awakeable's id; ValueError if it is none."""
    if not isinstance(token, str) or not token.startswith(_TOKEN):
        raise ValueError(f"{token!r} is not an awakeable's id: it comes from "
                         "`await dotdo.awakeable()` and starts with 'awk_'")
    body = token[len(_TOKEN):]
    try:
        queue, job_id, uid, key = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if not (isinstance(queue, str) and isinstance(job_id, str) and isinstance(key, str)
                and (uid is None or isinstance(uid, str)) and key.startswith("awakeable#")):
            raise ValueError(token)
    except Exception:  # noqa: BLE001 - any malformed id is the same mistake
        raise ValueError(f"{token!r} is not an awakeable's id (damaged or cut short): pass "
                         "it on exactly as `await dotdo.awakeable()` gave it") from None
    return queue, job_id, uid, key
