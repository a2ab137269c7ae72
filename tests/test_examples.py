"""Every script in examples/ runs, so the examples never rot."""

from pathlib import Path

import pytest
import ray

from tests.conftest import ROOT, run_driver

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, ray_session, tmp_path):
    # Join the session's Ray rather than starting another one.
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address, "DOTDO_STORAGE": str(tmp_path)}
    out = run_driver(script.read_text(), env=env, timeout=300)
    assert out.strip(), f"{script.name} printed nothing"
    assert any(tmp_path.rglob("*.sqlite3")), f"{script.name} stored nothing"
