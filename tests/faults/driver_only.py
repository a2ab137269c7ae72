"""A durable object class only the fault driver imports: no Worker can decode a
payload holding a stub of it (no handler lives here, so no Worker imports this)."""

from __future__ import annotations

import dotdo


class FaultDriverOnly(dotdo.DurableObject):
    """Never called: jobs carry stubs of it."""
