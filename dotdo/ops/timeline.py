"""A job's life as a waterfall, from the queue's own records (no tracing backend):
its wait from enqueue to its first run, each attempt with its worker and outcome, the
durable calls its runs met (sleeps, events, awakeables, waits, child jobs, named steps,
patches) and its end, each a bar on one time axis.

:func:`build` takes what :meth:`dotdo.ops.service.Service.job` answers and the time
now; bars still going (a running attempt, an open wait) have no end: they run to
``now``, which the answer carries.
"""

from __future__ import annotations

from typing import Any

from dotdo.jobmodel import FINISHED

__all__ = ["build", "KINDS"]

# Every kind of bar, in the order bars starting at the same moment are listed.
KINDS = ("queued", "attempt", "sleep", "event", "awakeable", "wait", "child", "step", "patch",
         "finished")
_RANK = {kind: n for n, kind in enumerate(KINDS)}


def _bar(kind: str, label: str, start: float, end: float | None, state: str, *,
         attempt: int | None = None, worker: str | None = None, error: str | None = None,
         detail: str | None = None, until: float | None = None,
         job: dict[str, str] | None = None) -> dict[str, Any]:
    return {"kind": kind, "label": label, "start": start, "end": end,
            "duration": None if end is None else max(0.0, end - start), "state": state,
            "attempt": attempt, "worker": worker, "error": error, "detail": detail,
            "until": until, "job": job}


def _outcome(attempt: dict[str, Any], later: bool, status: str) -> str:
    """An attempt's outcome as the waterfall names it: a failure the queue ran again is
    ``retried``, and the last one, while the job waits for its next run, ``retrying``."""
    outcome = str(attempt["outcome"])
    if outcome == "failed" and later:
        return "retried"
    if outcome == "failed" and status == "retrying":
        return "retrying"
    return outcome


def _attempt_of(attempts: list[dict[str, Any]], t: float) -> int | None:
    """The attempt that ran at ``t`` (the latest to start by then), if any."""
    found = None
    for a in attempts:
        if a["startedAt"] is not None and a["startedAt"] <= t:
            found = a["attempt"]
    return found


def _point_detail(kind: str, key: str, arg: dict[str, Any]) -> str | None:
    """What a point waited for, in a few words."""
    if kind == "event":
        match = arg.get("match")
        return f"event {arg.get('type')}" + (f" matching {match}" if match else "")
    if kind == "wait":
        return f"resolve or reject of {arg.get('awakeable')}"
    if kind == "awakeable":
        return "made: settled by its token"
    if kind == "child":
        return f"job {arg.get('id')} ({arg.get('type')}) in {arg.get('queue')}"
    if kind in ("step", "patch"):
        return key.partition(":")[2]
    return None


def _point_bar(point: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    key = str(point["key"])
    kind = key.split("#")[0].split(":")[0]
    arg = point.get("arg") or {}
    start = float(point["createdAt"])
    ended = point["endedAt"]
    # Named steps and patches are marks: the moment the run met them, done.
    end = start if kind in ("step", "patch") else (None if ended is None else float(ended))
    label = f"step {key[5:]}" if kind == "step" else f"patch {key[6:]}" if kind == "patch" else key
    child = ({"queue": str(arg["queue"]), "id": str(arg["id"])}
             if kind == "child" and arg.get("id") else None)
    return _bar(kind, label, start, end, str(point["state"]),
                attempt=_attempt_of(attempts, start), detail=_point_detail(kind, key, arg),
                until=point.get("until"), job=child)


def build(job: dict[str, Any], now: float) -> dict[str, Any]:
    """The waterfall of ``job`` (a :meth:`Service.job` answer) at ``now``: ``{"queue",
    "id", "status", "traceId", "start", "end", "now", "bars"}``, bars in the order they
    began. ``end`` is None while the job is unfinished (its axis runs to ``now``)."""
    status = str(job["status"])
    created = float(job["createdAt"])
    attempts = [a for a in job.get("attempts") or [] if a.get("startedAt") is not None]
    finished = job.get("finishedAt") if status in FINISHED else None
    bars: list[dict[str, Any]] = []
    first = attempts[0]["startedAt"] if attempts else None
    queued_end = first if first is not None else finished
    bars.append(_bar("queued", "enqueued", created, queued_end,
                     "enqueued" if queued_end is not None else "pending",
                     detail="from its enqueue to its first run"))
    for n, a in enumerate(attempts):
        later = n + 1 < len(attempts)
        outcome = _outcome(a, later, status)
        # A parked run's error says where it parked: not an error, what it came to.
        parked = outcome == "parked"
        bars.append(_bar("attempt", f"attempt {a['attempt']}", float(a["startedAt"]),
                         a["finishedAt"], outcome, attempt=a["attempt"], worker=a.get("worker"),
                         error=None if parked else a.get("error"),
                         detail=a.get("error") if parked else None))
    bars += [_point_bar(p, attempts) for p in job.get("points") or []]
    if finished is not None:
        bars.append(_bar("finished", status, float(finished), float(finished), status,
                         error=job.get("error") if status != "completed" else None))
    bars.sort(key=lambda b: (b["start"], _RANK[b["kind"]]))
    ends = [b["end"] for b in bars if b["end"] is not None]
    latest = max([created, *ends])
    end = max(float(finished), latest) if finished is not None else None
    return {"queue": job["queue"], "id": job["$id"], "status": status,
            "traceId": job.get("traceId"), "start": created, "end": end,
            "now": max(now, latest), "bars": bars}
