"""dotdo's no-op job for the queue benchmark: completion is the queue's own record."""

import dotdo


@dotdo.job("noop")
async def noop(payload):
    return None
