"""Module-level handlers and schedules: they belong to dotdo.App("default")."""

import dotdo
from tests import objects  # noqa: F401  (the App process needs Recorder too)

WITNESS = "app-witness"


@dotdo.on.Signup.created
async def welcome(event):
    await dotdo.Recorder(WITNESS).note("signups", [event.id, event.data])


@dotdo.on.Signup.rejected
def reject(event):
    raise PermissionError(f"rejected {event.data}")


@dotdo.on_error
async def report(info):
    await dotdo.Recorder(WITNESS).note("errors", [info.event_type, str(info.error)])


@dotdo.on.Job.failed
async def dead_letter(event):
    await dotdo.Recorder(WITNESS).note("job-failed", event.data["$id"])


@dotdo.on.Job.completed
async def completed(event):
    await dotdo.Recorder(WITNESS).note("job-completed", event.data["jobId"])


@dotdo.on.Job.retrying
async def retrying(event):
    await dotdo.Recorder(WITNESS).note("job-retrying", [event.data["$id"], event.data["attempts"]])


@dotdo.on.Job.progress
async def progressed(event):
    await dotdo.Recorder(WITNESS).note("job-progress", [event.data["$id"], event.data["progress"],
                                                        event.data["message"]])


@dotdo.on.Job.cancelled
async def cancelled(event):
    await dotdo.Recorder(WITNESS).note("job-cancelled", event.data["$id"])
