"""Two namespaces are two sets of objects: two actors, and two files."""

import json

import pytest

from dotdo.errors import ConfigError
from dotdo.settings import Settings, check_namespace, objects_root
from tests.conftest import run_driver


def test_the_default_namespace_keeps_the_root_and_others_get_a_folder_of_their_own(tmp_path):
    root = str(tmp_path)
    assert objects_root(root, "dotdo") == root  # files stay where they always were
    assert objects_root(root, "staging") == str(tmp_path / "@staging")
    assert Settings(root, "staging").root == str(tmp_path / "@staging")
    for bad in ("", "a/b", "..", "x" * 65, "sp ace", None):
        with pytest.raises(ConfigError, match="a namespace is 1-64 letters"):
            check_namespace(bad)


def test_one_class_and_id_in_two_namespaces_are_two_objects_with_two_files(tmp_path):
    # In process, one driver after the other, on one storage root
    code = f"""
import glob, json
import dotdo
from tests import objects
counts = {{}}
for namespace, n in (("dotdo", 1), ("staging", 5), ("dotdo", 2)):
    dotdo.init(in_process=True, storage={str(tmp_path)!r}, namespace=namespace)
    counts[namespace] = dotdo.Counter("same").incr(n).result()
print(json.dumps({{"counts": counts, "files": sorted(glob.glob({str(tmp_path)!r} + "/**/*.sqlite3", recursive=True))}}))
"""
    out = json.loads(run_driver(code).strip().splitlines()[-1])
    assert out["counts"] == {"dotdo": 3, "staging": 5}
    counters = [f for f in out["files"] if "/Counter/" in f]
    assert len(counters) == 2
    assert sum("/@staging/Counter/" in f for f in counters) == 1


def test_the_command_shows_the_objects_of_its_namespace(tmp_path):
    from click.testing import CliRunner

    from dotdo.ops.cli import main

    run_driver(f"""
import dotdo
from tests import objects
for namespace, n in (("dotdo", 1), ("staging", 5)):
    dotdo.init(in_process=True, storage={str(tmp_path)!r}, namespace=namespace)
    dotdo.Counter("c-" + namespace).incr(n).result()
""")
    for namespace in ("dotdo", "staging"):
        result = CliRunner().invoke(main, ["--storage", str(tmp_path), "--namespace", namespace,
                                           "--json", "objects", "ls", "Counter"])
        assert result.exit_code == 0, result.output
        assert f"c-{namespace}" in result.output
        assert f"c-{'staging' if namespace == 'dotdo' else 'dotdo'}" not in result.output
