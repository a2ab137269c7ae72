"""A job handler no worker has imported before its test: it reaches them through the App."""

import dotdo


@dotdo.job("late")
async def late(payload):
    return {"late": payload}
