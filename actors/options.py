"""What a queue accepts, checked before anything is written: job options, rates,
retention and backoff. Every error names the option and shows a good value."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Any, get_args

import dotdo
from actors.jobs import DEFAULT_TIMEOUT
from dotdo import codec
from dotdo.checks import is_finite, is_int
from dotdo.ids import check_id
from dotdo.jobmodel import JobEntry, JobOptions, ParentFailure

__all__ = ["JobOptions", "JobSpec", "Rate", "Keep", "MAX_PAYLOAD", "MAX_OUTPUT", "MAX_BACKOFF", "MAX_DELAY",
           "MAX_TIMEOUT", "MAX_LEASE_TIMEOUT", "OPTIONS", "ENCODED_PAYLOAD", "number", "span",
           "parse_backoff"]

MAX_PAYLOAD = 1 << 20  # bytes of encoded payload per job
MAX_OUTPUT = MAX_PAYLOAD  # bytes of a job's encoded output
MAX_BACKOFF = 86_400.0  # no retry of a job waits longer than a day
# A job further away than a year is a typo or a unit mix-up (ms for s), not a plan: a
# delay of 1e308 s would be a job that never runs. Enqueue far jobs from a schedule.
MAX_DELAY = 366 * 86_400.0  # delay, debounce, and run_at from now
_LATER = "enqueue jobs further away later, from a schedule"
MAX_TIMEOUT = 7 * 86_400.0  # one attempt of a job
MAX_LEASE_TIMEOUT = 86_400.0  # a queue's lease_timeout: a dead worker's jobs wait at most that
MAX_PARENTS = 100
# Every key a job may hold: its options, its type and its payload.
OPTIONS = frozenset(JobEntry.__annotations__)
FEATURES = OPTIONS - {"type", "payload", "job_id", "priority", "delay", "run_at",
                      "max_retries", "timeout"}
# How a payload travels from a caller's process: encoded there (Queue.outgoing), so
# the queue's process never rebuilds it, nor imports the modules of its classes.
ENCODED_PAYLOAD = "$payload"
PARENT_FAILURE: tuple[str, ...] = get_args(ParentFailure)
_UNITS = {name: seconds for names, seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86_400.0)) for name in names}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def number(name: str, value: Any, *, minimum: float, allow_none: bool = True,
           integer: bool = False, maximum: float | None = None, bound: str = "",
           hint: str = "") -> Any:
    """``value`` if it is a finite number >= ``minimum`` (an int if ``integer``), and
    <= ``maximum`` if given (else a LimitError saying the ``bound``, and the ``hint``)."""
    if value is None and allow_none:
        return None
    if not is_finite(value) or (integer and not is_int(value)) or value < minimum:
        what = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} >= {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise dotdo.LimitError(f"{name} may be at most {bound or f'{maximum:g}'}, got "
                               f"{value!r}" + (f": {hint}" if hint else ""))
    return value


def span(seconds: float) -> str:
    """``"366 days (31,622,400 s)"``: a bound as people and programs read it."""
    days = seconds / 86_400
    return f"{days:g} day{'s' if days != 1 else ''} ({seconds:,.0f} s)"


def _key(name: str, value: Any) -> str | None:
    """A group, rate key or dedupe key: text like an id, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is a non-empty str like 'customer-42', not {value!r}")
    check_id(value)
    return value


def parse_backoff(value: Any) -> float | list[float] | None:
    """A job's ``backoff``: seconds (doubling per retry: 30 -> 30, 60, 120 ...) or a
    list of waits (``[10, 60, 600]``, its last repeating); None: the worker's."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if not value or len(value) > 100:
            raise ValueError(f"backoff as a list holds 1 to 100 waits in seconds, like "
                             f"[10, 60, 600], not {value!r}")
        return [float(number("backoff", v, minimum=0, allow_none=False)) for v in value]
    return float(number("backoff", value, minimum=0, allow_none=False))


@dataclasses.dataclass(frozen=True)
class Rate:
    """At most ``count`` job starts in any ``seconds``: ``Rate.parse("100/s")``."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, name: str, text: Any) -> Rate | None:
        """None stays None (no limit); else ``'<count>/<unit>'``, unit s, min or h (or
        ``'50/10s'``)."""
        if text is None:
            return None
        match = _RATE.match(text) if isinstance(text, str) else None
        unit = _UNITS.get(match.group(3)) if match else None
        if match is None or unit is None:
            raise ValueError(f"{name} is a rate like '100/s', '6000/min', '10/h' or '50/10s' "
                             f"(None: no limit), not {text!r}")
        count, seconds = int(match.group(1)), float(match.group(2) or 1) * unit
        if count < 1 or seconds <= 0:
            raise ValueError(f"{name} allows at least 1 job in a period over 0 s, not {text!r}")
        return cls(count, seconds)

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}s"


@dataclasses.dataclass(frozen=True)
class Keep:
    """How many finished jobs of a kind a queue keeps: the newest ``count`` (None: any
    number) that finished less than ``age`` seconds ago (None: any age)."""

    count: int | None
    age: float | None

    @classmethod
    def parse(cls, name: str, value: Any) -> Keep:
        """An int (a count), ``{"count": n, "age": seconds}`` (either may be left out),
        or None (keep every one: the table grows without limit)."""
        if value is None:
            return cls(None, None)
        if is_int(value):
            return cls(number(name, value, minimum=0, integer=True), None)
        if isinstance(value, dict) and value and set(value) <= {"count", "age"}:
            return cls(number(f"{name}['count']", value.get("count"), minimum=0, integer=True),
                       number(f"{name}['age']", value.get("age"), minimum=0))
        raise ValueError(f"{name} is a count (1000), {{'count': 1000, 'age': 86400}} "
                         f"(either key may be left out) or None to keep all, not {value!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "age": self.age}


@dataclasses.dataclass
class JobSpec:
    """One job to enqueue, checked."""

    id: str
    type: str
    payload: bytes
    priority: int
    run_at: float
    max_retries: int
    timeout: float
    created: float
    uid: str
    # The options beyond the first release's (most jobs have none of them).
    backoff: str | None = None  # JSON of parse_backoff's value
    group: str = ""
    rate_key: str | None = None
    dedupe_key: str | None = None
    debounce: float | None = None
    unique_for: float | None = None
    depends_on: list[str] = dataclasses.field(default_factory=list)
    on_parent_failure: str = "fail"
    value: Any = None  # the payload as given (``payload`` is it encoded)

    @classmethod
    def parse(cls, spec: dict[str, Any], now: float) -> JobSpec:
        job_type = spec.get("type")
        if not isinstance(job_type, str) or not job_type:
            raise ValueError(f"a job needs a type, a non-empty str like 'email', not {job_type!r}")
        check_id(job_type)
        unknown = set(spec) - OPTIONS - {ENCODED_PAYLOAD}
        if unknown:
            raise TypeError(f"unknown job option(s) {sorted(unknown)}; the options are "
                            f"{', '.join(sorted(OPTIONS - {'type', 'payload'}))}")
        job_id = spec.get("job_id")
        if job_id is None:
            job_id = os.urandom(16).hex()  # as uuid4().hex, five times cheaper
        elif not isinstance(job_id, str):
            raise ValueError(f"job_id is a str, not {type(job_id).__name__}")
        check_id(job_id)
        priority = spec.get("priority", 0)
        if not is_int(priority) or abs(priority) >= 2**63:
            raise ValueError(f"priority is an int (64-bit), not {priority!r}")
        # Checked only when given: this runs for every job enqueued.
        delay = run_at = None
        if spec.get("delay") is not None:
            delay = number("delay", spec["delay"], minimum=0, maximum=MAX_DELAY,
                           bound=span(MAX_DELAY), hint=_LATER)
        if spec.get("run_at") is not None:
            run_at = number("run_at", spec["run_at"], minimum=0, maximum=now + MAX_DELAY,
                            bound=f"{MAX_DELAY / 86_400:g} days from now "
                                  f"(epoch {now + MAX_DELAY:.0f})", hint=_LATER)
        if delay is not None and run_at is not None:
            raise ValueError("give delay= or run_at=, not both")
        max_retries = number("max_retries", spec.get("max_retries", 3), minimum=0,
                             allow_none=False, integer=True)
        timeout = None
        if spec.get("timeout") is not None:
            timeout = number("timeout", spec["timeout"], minimum=0.001, maximum=MAX_TIMEOUT,
                             bound=span(MAX_TIMEOUT),
                             hint="split longer work into steps (dotdo.do) or several jobs")
        features = _features(spec, job_id, run_at) if spec.keys() & FEATURES else {}
        payload = spec.get(ENCODED_PAYLOAD)
        if payload is None:
            value = spec.get("payload")
            payload = codec.encode(value)  # refused here: nothing written
        elif not isinstance(payload, bytes):
            raise ValueError(f"{ENCODED_PAYLOAD} is a payload encoded by dotdo.codec (bytes), "
                             f"not {type(payload).__name__}: pass the payload as payload=")
        else:  # shown back decoded where the answer arrives, never here
            value = codec.passed_on(payload)
        if len(payload) > MAX_PAYLOAD:
            raise dotdo.LimitError(
                f"the payload of job {job_id!r} is {len(payload):,} bytes encoded, over the "
                f"limit of {MAX_PAYLOAD:,}: store big data elsewhere (a file, an object's "
                "storage) and put its key in the payload")
        if features.get("unique_for") is not None and features["dedupe_key"] is None:
            # Unique by what it does: its type and payload.
            features["dedupe_key"] = (
                f"{job_type}:{hashlib.blake2b(payload, digest_size=12).hexdigest()}")
        when = run_at if run_at is not None else now + (features.get("debounce") or delay or 0)
        return cls(id=job_id, type=job_type, payload=payload, priority=priority, run_at=when,
                   max_retries=max_retries, timeout=timeout or DEFAULT_TIMEOUT, created=now,
                   uid=os.urandom(8).hex(), value=value, **features)

    @property
    def single_row(self) -> bool:
        """Written by one INSERT and nothing else (no parents, no dedupe lookup)."""
        return not (self.dedupe_key or self.depends_on)

    @property
    def plain(self) -> bool:
        """Nothing beyond the first release's options: the one-statement insert."""
        return not (self.group or self.rate_key or self.dedupe_key or self.depends_on
                    or self.backoff)


def _features(spec: dict[str, Any], job_id: str, run_at: float | None) -> dict[str, Any]:
    """The options beyond the first release's, checked, as JobSpec fields."""
    backoff = parse_backoff(spec.get("backoff"))
    debounce = number("debounce", spec.get("debounce"), minimum=0.001, maximum=MAX_DELAY,
                      bound=span(MAX_DELAY))
    unique_for = number("unique_for", spec.get("unique_for"), minimum=0.001)
    if debounce is not None and unique_for is not None:
        raise ValueError("give debounce= or unique_for=, not both")
    if debounce is not None and run_at is not None:
        raise ValueError("debounce= sets the run time (now + debounce): leave out run_at=")
    dedupe_key = _key("dedupe_key", spec.get("dedupe_key"))
    if debounce is not None and dedupe_key is None:
        raise ValueError("debounce= needs dedupe_key=, the key of the jobs it merges "
                         "(like 'reindex-user-42')")
    parents = spec.get("depends_on") or []
    if not isinstance(parents, (list, tuple)) or len(parents) > MAX_PARENTS:
        raise ValueError(f"depends_on is a list of up to {MAX_PARENTS} job ids, "
                         f"not {parents!r}")
    for parent in parents:
        if not isinstance(parent, str):
            raise ValueError(f"depends_on holds job ids (str), not {parent!r}")
        check_id(parent)
    if job_id in parents:
        raise ValueError(f"job {job_id!r} cannot depend on itself (depends_on)")
    on_failure = spec.get("on_parent_failure", "fail")
    if on_failure not in PARENT_FAILURE:
        raise ValueError(f"on_parent_failure is 'fail' or 'cancel' (what a job does when "
                         f"a parent fails or is cancelled), not {on_failure!r}")
    return {"backoff": None if backoff is None else json.dumps(backoff),
            "group": _key("group", spec.get("group")) or "",
            "rate_key": _key("rate_key", spec.get("rate_key")), "dedupe_key": dedupe_key,
            "debounce": debounce, "unique_for": unique_for,
            "depends_on": list(dict.fromkeys(parents)), "on_parent_failure": on_failure}
