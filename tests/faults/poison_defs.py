"""Values a poison payload carries: a durable object class and a dataclass that only
processes importing this module know. The handlers' module imports it, so the App
and the Workers do; a Queue process that restarted has never imported it."""

from __future__ import annotations

import dataclasses
from typing import Any

import dotdo


class FaultRef(dotdo.DurableObject):
    """Never called: jobs carry stubs of it."""


@dataclasses.dataclass
class Box:
    ref: Any
    note: str
