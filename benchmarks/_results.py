"""Where and how every benchmark writes its figures: ``benchmarks/results/<name>.json``."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, console: Any, **fields: Any) -> Path:
    """Write ``fields`` with the time and the machine, and say where."""
    import ray

    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "ray": ray.__version__},
        **fields,
    }, indent=2))
    console.print(f"results written to {path}")
    return path
