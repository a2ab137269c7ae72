"""The durable objects dotdo ships: ``Queue`` and ``Worker``: a job queue.

Importing this package registers them, so ``dotdo.Queue(name)`` and
``dotdo.Worker(id)`` work (``dotdo`` imports it on first use of those names).
"""

from actors.jobs import JobStatus, Metrics
from actors.queue import Queue
from actors.worker import Worker

__all__ = ["Queue", "Worker", "JobStatus", "Metrics"]
