"""The README and docs/*.md name only tests, examples, benchmarks and pages that exist.

A guarantee is only as good as the test it names, so each name is checked: a file
(`tests/test_x.py`, `examples/x.py`, `benchmarks/x.py`, `benchmarks/results/x.json`)
must exist, a test (`tests/test_x.py::test_y`, or the short forms the tables use:
`test_x.py::test_y`, then `::test_z` and a bare `test_z` for the file named last) must
be defined in its file, and a relative link (`docs/x.md`, `x.md#heading`, an image)
must lead to a file and, with an anchor, to a heading of it. The README stays at most
8 KiB: a newcomer reads it in five minutes.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 8192

# One pass in document order, so that `::test_z` and a bare `test_z` take the file
# named last before them, as a reader takes them.
REFERENCE = re.compile(r"""
    (?<![\w./*-])(?P<path>(?:tests|examples|benchmarks)/[\w./*-]*?\.(?:py|json))(?![\w])
        (?:::(?P<path_name>\w+))?
  | (?<![\w./*-])(?P<short>test_\w+\.py)(?![\w])(?:::(?P<short_name>\w+))?
  | (?<![\w.:])::(?P<more>\w+)
  | `(?P<bare>test_\w+)`
""", re.VERBOSE)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@cache
def _definitions(path: Path) -> frozenset[str]:
    """Names of the functions and classes defined in ``path``, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))


@cache
def _test_files_named(name: str) -> tuple[Path, ...]:
    return tuple(sorted((ROOT / "tests").rglob(name)))


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def broken_references(text: str) -> list[str]:
    """What ``text`` names under tests/, examples/ or benchmarks/ that does not exist."""
    broken: list[str] = []
    current: Path | None = None    # the test file named last: `::name` and `name` are its
    for match in REFERENCE.finditer(text):
        name = None
        if match["path"]:
            found = sorted(ROOT.glob(match["path"])) if "*" in match["path"] else [ROOT / match["path"]]
            if not found or not found[0].is_file():
                broken.append(f"{match['path']}: no such file")
                continue
            if match["path"].endswith(".py") and "*" not in match["path"]:
                current = found[0]
            name = match["path_name"]
        elif match["short"]:
            files = _test_files_named(match["short"])
            # A short name two files share means the one of that name named last.
            if current is None or current.name != match["short"]:
                if len(files) != 1:
                    broken.append(f"{match['short']}: " + (
                        "no such file under tests/" if not files else
                        "names " + ", ".join(map(_relative, files)) + ": give the folder"))
                    current = None
                    continue
                current = files[0]
            name = match["short_name"]
        elif current is None:
            broken.append(f"{match.group()}: names no file before it")
            continue
        else:
            name = match["more"] or match["bare"]
        if name is not None and current is not None and name not in _definitions(current):
            broken.append(f"{_relative(current)}::{name}: not defined there")
    return broken


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def _anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return frozenset(anchors)


def broken_links(page: Path, text: str) -> list[str]:
    """Relative links in ``text`` (as found in ``page``) to a missing file or heading."""
    prose = INLINE_CODE.sub("code", FENCE.sub("", text))
    broken = []
    for target in LINK.findall(prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):      # http:, https:, mailto:
            continue
        where, _, anchor = target.partition("#")
        linked = (page.parent / where).resolve() if where else page
        if not linked.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {_relative(linked)}")
    return broken


def test_the_readme_is_at_most_8_kib():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, (
        f"README.md is {size:,} bytes, over {README_LIMIT:,}: move detail to a page "
        f"under docs/ and link it")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: _relative(p))
def test_every_test_example_and_benchmark_named_exists(page: Path):
    assert broken_references(page.read_text()) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: _relative(p))
def test_every_relative_link_leads_to_a_file_and_heading(page: Path):
    assert broken_links(page, page.read_text()) == []


def test_the_checks_find_what_is_broken_and_pass_what_is_not():
    # The checks above pass on an empty scan too; this one shows they would catch a
    # broken name of each kind, and take the README's real names as they are.
    text = ("`tests/test_docs.py::test_the_readme_is_at_most_8_kib`, "
            "`::test_no_such_test`, `tests/test_no_such_file.py`, `examples/job_queue.py`, "
            "`test_docs.py::test_every_relative_link_leads_to_a_file_and_heading`, "
            "`test_no_such_one`, `examples/queue_*.py`, `examples/nothing_*.py`, "
            "`::test_orphan`")
    assert broken_references(text) == [
        "tests/test_docs.py::test_no_such_test: not defined there",
        "tests/test_no_such_file.py: no such file",
        "tests/test_docs.py::test_no_such_one: not defined there",
        "examples/nothing_*.py: no such file",
        "tests/test_docs.py::test_orphan: not defined there",
    ]
    assert broken_references("`::test_first` with no file before it") == [
        "::test_first: names no file before it"]
    links = ("[a](docs/queue.md#crash-safety-precisely) [b](docs/queue.md#no-such-heading) "
             "[c](docs/nothing.md) [d](https://example.com/x) ![e](docs/img/dashboard-job.png) "
             "`[not](a-link.md)`")
    assert broken_links(README, links) == [
        "docs/queue.md#no-such-heading: no heading #no-such-heading in docs/queue.md",
        "docs/nothing.md: no such file"]
    # The README's own references are found, not skipped.
    assert REFERENCE.search(README.read_text()) is not None
