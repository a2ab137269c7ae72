"""The package's layering: every module imports only modules below it, at the top of
the file, so the import graph has no cycle and a reader can draw it (see
docs/architecture.md). Checked statically, from each module's source."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Bottom to top. A module may import only modules listed before it. Names are dotted
# paths under dotdo/: "storage.kv" is dotdo/storage/kv.py. Each module of a folder is a
# module of its layer; the folder's __init__.py imports nothing (see below), so a module
# brings in only what it names. dotdo/ops and dotdo/testing sit on top (tests below).
LAYERS = [
    # leaves
    ["errors", "tracing", "ids", "clock", "codec", "checks", "aio", "current", "sequencer",
     "hosting", "retry", "settings", "signals", "jobmodel", "logs"],
    # storage: the only modules that touch SQLite
    ["storage.connection", "storage.schema", "storage.journal", "storage.kv",
     "storage.directory", "storage.reader"],
    # the object model and registration
    ["object", "registry", "events", "schedule", "jobs", "background"],
    # the host core, Ray-free but for promises
    ["promise", "host", "pool", "endpoints"],
    # Ray: the host actor, then joining Ray and the client that calls the hosts
    ["inprocess", "runtime", "outbox", "connect", "client", "reads", "stub"],
    # the $ API and the App on top
    ["context", "watches", "app", "waits"],
]
ORDER = [f"dotdo.{name}" for layer in LAYERS for name in layer]
ON_TOP = ("ops", "testing")  # dotdo/ops, dotdo/testing: checked on their own below
# Imports inside functions, each for a reason: a Ray module only some Rays have.
INNER_ALLOWED = {("dotdo.connect", "ray._private.authentication")}
# An optional dependency, imported once its feature is turned on: OpenTelemetry (dotdo[otel]).
OPTIONAL_INNER = {"dotdo.tracing": "opentelemetry"}
# What the shipped objects may use besides the package itself: documented modules.
ACTORS_MAY_USE = {"dotdo", "dotdo.app", "dotdo.checks", "dotdo.codec",
                  "dotdo.ids", "dotdo.jobs", "dotdo.jobmodel", "dotdo.retry", "dotdo.signals",
                  "dotdo.clock", "dotdo.waits", "dotdo.tracing", "dotdo.logs"}


def _path(module: str) -> pathlib.Path:
    """The file of a module named by its dotted path: dotdo.storage.kv -> dotdo/storage/kv.py."""
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _name(path: pathlib.Path) -> str:
    """The dotted name of the module in ``path`` (a package's ``__init__.py``: the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _below_the_top() -> list[pathlib.Path]:
    """Every file of dotdo/ but those of the folders on top."""
    return [p for p in sorted((ROOT / "dotdo").rglob("*.py"))
            if p.relative_to(ROOT / "dotdo").parts[0] not in ON_TOP]


def _imports(path: pathlib.Path, package: str) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of the file at ``path``,
    leaving out ``if TYPE_CHECKING:`` blocks (annotations only)."""
    top: set[str] = set()
    inner: set[str] = set()

    def names(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = node.module or ""
        if node.level:
            base = package + ("." + base if base else "")
        # `from dotdo import codec` imports the module dotdo.codec
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in ORDER else base
                for a in node.names]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (inner if in_function else top).update(names(child))
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return top, inner


def test_every_module_is_placed_in_a_layer():
    found = {_name(p) for p in _below_the_top() if p.name != "__init__.py"}
    assert found == set(ORDER), f"place these in LAYERS: {sorted(found ^ set(ORDER))}"


def test_the_folders_of_the_layers_import_nothing_in_their_init():
    # dotdo/storage/__init__.py imports nothing: `from dotdo.storage import reader`
    # brings in the reader alone, not the modules that write.
    folders = [p for p in _below_the_top() if p.name == "__init__.py" and p.parent != ROOT / "dotdo"]
    assert folders, "no folder found: the check below would pass on nothing"
    for path in folders:
        top, inner = _imports(path, _name(path))
        assert not top | inner, f"{path.relative_to(ROOT)} imports {sorted(top | inner)}"


def test_modules_import_only_modules_below_them_and_only_at_the_top():
    packages = {_name(p) for p in (ROOT / "dotdo").rglob("__init__.py")}
    for rank, module in enumerate(ORDER):
        top, inner = _imports(_path(module), module.rpartition(".")[0])
        above = sorted(m for m in top if m in ORDER and ORDER.index(m) >= rank)
        assert not above, f"{module} imports {above}, which are not below it"
        whole = sorted(top & packages)
        assert not whole, f"{module} imports the package {whole}: import the module"
        late = {(module, m) for m in inner
                if m.split(".")[0] != OPTIONAL_INNER.get(module)} - INNER_ALLOWED
        assert not late, f"{module} imports inside a function: {sorted(late)}"


def test_the_shipped_objects_use_only_documented_parts_of_dotdo():
    for path in (ROOT / "actors").glob("*.py"):
        top, inner = _imports(path, "actors")
        used = {m for m in top | inner if m.split(".")[0] == "dotdo"}
        assert used <= ACTORS_MAY_USE, f"{path.name} uses {sorted(used - ACTORS_MAY_USE)}"
        assert not {m for m in inner if m.split(".")[0] in ("dotdo", "actors")}, path.name


def test_dotdo_never_names_the_actors_package_in_code():
    for path in (ROOT / "dotdo").rglob("*.py"):
        top, inner = _imports(path, "dotdo")
        assert not {m for m in top | inner if m.split(".")[0] == "actors"}, path.name


# The operations layer (dotdo/ops: the CLI, the HTTP API, the dashboard) sits on top:
# the public API, the read-only file views (and where to read them), and these few
# documented modules.
OPS_MAY_USE = {"dotdo", "dotdo.storage.reader", "dotdo.reads", "dotdo.connect", "dotdo.errors",
               "dotdo.events", "dotdo.ids", "dotdo.jobmodel", "dotdo.object", "dotdo.settings",
               "dotdo.waits", "dotdo.tracing"}


def test_the_operations_layer_sits_on_top_and_nothing_below_uses_it():
    for path in (ROOT / "dotdo" / "ops").rglob("*.py"):
        top, inner = _imports(path, "dotdo.ops")
        used = {m for m in top | inner
                if m.split(".")[0] == "dotdo" and not m.startswith("dotdo.ops")}
        assert used <= OPS_MAY_USE, f"ops/{path.name} uses {sorted(used - OPS_MAY_USE)}"
    for path in [*_below_the_top(), *(ROOT / "actors").glob("*.py")]:
        top, inner = _imports(path, "dotdo")
        assert not {m for m in top | inner if m.startswith("dotdo.ops")}, path.name


def test_the_testing_package_sits_on_top_and_nothing_but_tests_use_it():
    # dotdo.testing (local(), advance, drain, the pytest plugin) sets up hosting and
    # watches the in-process host: it may use any module, at the top of its files only,
    # and no module of the package or of actors/ uses it.
    for path in (ROOT / "dotdo" / "testing").rglob("*.py"):
        _, inner = _imports(path, "dotdo.testing")
        assert not {m for m in inner if m.split(".")[0] in ("dotdo", "actors")}, path.name
    for path in [*(ROOT / "dotdo").rglob("*.py"), *(ROOT / "actors").glob("*.py")]:
        if "testing" in path.relative_to(ROOT).parts:
            continue
        top, inner = _imports(path, "dotdo")
        assert not {m for m in top | inner if m.startswith("dotdo.testing")}, path.name


def test_each_module_imports_first_in_a_fresh_interpreter():
    # Top layer first, then each leaf: whichever module a program imports first, the
    # package comes up whole. One interpreter per module would cost ~1 s each; these
    # three cover the first module of each kind of path through the graph.
    for first in ("dotdo.app", "dotdo.errors", "dotdo.host", "actors.worker"):
        code = f"import {first}, dotdo; assert dotdo.Queue('q').id == 'q'"
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"import {first} first:\n{done.stderr}"


def test_the_shipped_objects_read_time_only_through_their_clocks():
    # Leases and rate windows run on the queue process's monotonic clock; wall time
    # (for what users see) only through the host's clock, which tests may step. A
    # direct time.time() would bring back leases that a clock step expires.
    for path in sorted((ROOT / "actors").glob("*.py")):
        calls = [node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and ast.unparse(node.func) == "time.time"]
        assert not calls, f"{path.name} calls time.time() at line {calls[0].lineno}"
