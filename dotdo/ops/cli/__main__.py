"""``python -m dotdo.ops.cli``: the ``dotdo`` command, as the console script runs it."""

from __future__ import annotations

from dotdo.ops.cli import main

if __name__ == "__main__":
    main(prog_name="dotdo")
