"""mypy rejects each misuse in misuse.py with the error its line names, and accepts
public_api.py: the public API's types hold for a type checker, not just at runtime."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MARK = re.compile(r"#\s*E:\s*([\w\- ]+?)\s*$")
REPORTED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$")


def _expected(path: Path) -> set[tuple[int, str]]:
    """(line, code) of every ``# E: code [code ...]`` mark in ``path``."""
    marks: set[tuple[int, str]] = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        found = MARK.search(line)
        if found:
            marks.update((number, code) for code in found.group(1).split())
    return marks


def _mypy(*paths: Path) -> tuple[int, dict[str, set[tuple[int, str]]], str]:
    """mypy's exit code, its errors by file name as (line, code), and its output, run
    as `make lint` runs it (the project's settings, from the project's root)."""
    run = subprocess.run([sys.executable, "-m", "mypy", *map(str, paths)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    errors: dict[str, set[tuple[int, str]]] = {}
    for line in run.stdout.splitlines():
        found = REPORTED.match(line)
        if found:
            errors.setdefault(Path(found["file"]).name, set()).add(
                (int(found["line"]), found["code"]))
    return run.returncode, errors, run.stdout + run.stderr


def test_mypy_rejects_each_misuse_and_accepts_the_public_api():
    misuse, public = HERE / "misuse.py", HERE / "public_api.py"
    expected = _expected(misuse)
    assert len(expected) >= 30, "misuse.py lost its # E: marks"
    code, errors, output = _mypy(misuse, public)
    assert code == 1, output
    assert "public_api.py" not in errors, output
    reported = errors.get("misuse.py", set())
    assert sorted(expected - reported) == [], f"misuses mypy let through:\n{output}"
    assert sorted(reported - expected) == [], f"errors on lines not marked so:\n{output}"
