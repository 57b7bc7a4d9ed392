"""The layering contracts hold, and they really fail when core imports an adapter.

CI runs `lint-imports` on the tree; this test proves the contract has teeth by planting a
forbidden import in a copy of the package and watching the check break.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [LINT, "--no-logo", "--no-cache", "--config", str(tree / ".importlinter")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tree,
        env=env,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def test_contracts_are_kept_on_the_real_tree(tree: Path) -> None:
    done = _lint(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("planted", "contract"),
    [
        ("import guard.adapters", "guard.core is pure"),
        ("import google.cloud.run_v2", "guard.core is pure"),
        ("import subprocess", "guard.core is pure"),
    ],
)
def test_core_importing_io_breaks_the_build(tree: Path, planted: str, contract: str) -> None:
    module = tree / "src" / "guard" / "core" / "model.py"
    module.write_text(module.read_text() + f"\n{planted}  # planted by the test\n")
    done = _lint(tree)
    assert done.returncode != 0
    assert f"{contract}: no I/O, no Google, no other guard layer BROKEN" in done.stdout


def test_product_importing_the_fake_cloud_breaks_the_build(tree: Path) -> None:
    module = tree / "src" / "guard" / "ports.py"
    module.write_text(module.read_text() + "\nimport guard.sim.clock  # planted by the test\n")
    done = _lint(tree)
    assert done.returncode != 0
    assert "the product never imports the fake cloud" in done.stdout
