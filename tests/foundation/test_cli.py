"""`guard check` and `guard schema` as a user runs them: the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUARD = str(Path(sys.executable).with_name("guard"))


def _guard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GUARD, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False
    )


def test_check_accepts_the_pegasus_config() -> None:
    done = _guard("check", "config/pegasus.yaml")
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
    assert "pegasus (2 services)" in done.stdout


def test_check_reports_all_problems_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apps:\n  pegasus:\n    project: delta-student-486911-n5\n    region: europe-west1\n"
        "    servces: [{name: pegasus-api}]\n    dry_run: maybe\n"
    )
    done = _guard("check", str(bad))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert f"{bad}:5:5: apps.pegasus.servces: unknown key (did you mean 'services'?)" in lines
    assert any(line.startswith(f"{bad}:6:14: apps.pegasus.dry_run:") for line in lines)
    assert f"{bad}:3:5: apps.pegasus.services: required field is missing" in lines
    assert lines[-1] == "3 problem(s) found"


def test_check_json_output(tmp_path: Path) -> None:
    done = _guard("check", "--json", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert doc["ok"] is False
    assert doc["problems"][0]["message"].startswith("cannot read")


def test_check_reads_the_config_path_from_the_environment() -> None:
    import os

    env = {**os.environ, "GUARD_CONFIG": str(ROOT / "config" / "pegasus.yaml")}
    done = _guard("check", env=env)
    assert done.returncode == 0, done.stderr


def test_schema_prints_the_rule_schema() -> None:
    done = _guard("schema")
    assert done.returncode == 0
    assert json.loads(done.stdout)["title"] == "GuardRule"
