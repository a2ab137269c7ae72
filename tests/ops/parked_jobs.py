"""Job handlers that park (durable waits), for the operations tests: one waits for a
person (an awakeable), one sleeps, one waits for a child job. Module level, so that
every test module of tests/ops registers them once."""

import dotdo


@dotdo.job("ops-approve")
async def approve(payload):
    """Waits for its awakeable: ``{"approved": value}``, or ``{"rejected": reason}``."""
    token = await dotdo.awakeable()
    try:
        return {"approved": await dotdo.wait(token)}
    except dotdo.RejectedError as exc:
        return {"rejected": str(exc)}


@dotdo.job("ops-nap")
async def nap(seconds):
    """Sleeps ``seconds`` (durably), then says so."""
    await dotdo.sleep(seconds)
    return "rested"


@dotdo.job("ops-parent")
async def parent(payload):
    """Runs an ``ops-approve`` child and answers what it answered."""
    return {"child": await dotdo.run_job("ops-approve", payload)}


def parked(queue, job_id: str, status: str = "waiting") -> dict:
    """The job once it parked in ``status`` (its Job Thing); for ``wait_for``."""
    job = queue.get(job_id).result()
    return job if job is not None and job["status"] == status and job.get("waitingFor") else None
