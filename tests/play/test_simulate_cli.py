"""`guard simulate` as a person or a CI job runs it: the `--json` document (the same one
`simulate()` returns), the human summary, and a scenario that cannot be used (exit 2, the
file and the reason, no traceback)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from guard.cli import main

from .test_simulate_scenarios import CASES, SCENARIOS, anonymous, in_stable_order, simulated


def guard(*args: str) -> Result:
    return CliRunner().invoke(main, ["simulate", *args])


def test_json_is_the_document_simulate_returns() -> None:
    case = CASES["failed-start"]
    done = guard(str(SCENARIOS / f"{case.scenario}.yaml"), "--json", "--until", f"{case.until:g}")
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["format"] == "deploy-guard.simulation/v1"
    assert (doc["scenario"], doc["duration"]) == ("failed-start", case.until)
    assert anonymous(in_stable_order(doc)) == anonymous(in_stable_order(simulated("failed-start")))


def test_the_summary_tells_the_story_in_a_few_lines() -> None:
    case = CASES["canary"]
    done = guard(str(SCENARIOS / f"{case.scenario}.yaml"), "--until", f"{case.until:g}")
    assert done.exit_code == 0, done.output
    doc = simulated("canary")
    [incident] = doc["incidents"]
    lines = done.stdout.splitlines()
    assert lines[0] == f"canary (seed 5): {case.until:g} scenario seconds"
    assert re.fullmatch(
        r"  incident [0-9a-f]+: pegasus-api pegasus-api-00051-new resolved \(schema-mismatch\) "
        rf"detected at {re.escape(str(incident['detected_at']))}s, "
        rf"reverted to pegasus-api-00050-old at {re.escape(str(incident['reverted_at']))}s",
        lines[1],
    ), lines[1]
    assert lines[2:] == [f"  {len(doc['pages'])} page(s) sent; {len(doc['writes'])} write call(s)"]


def test_approve_after_is_a_number_of_seconds_not_below_zero() -> None:
    done = guard(str(SCENARIOS / "canary.yaml"), "--approve-after", "-1")
    assert done.exit_code == 2
    assert "--approve-after" in done.output


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "cannot read it"),
        ("name: [unclosed\n", "not YAML"),
        (
            (SCENARIOS / "canary.yaml").read_text(encoding="utf-8").replace("rps: 30", "rpz: 30"),
            "apps.0.services.0.rpz: Extra inputs are not permitted",
        ),
        ("name: no-apps\napps: []\n", "apps: List should have at least 1 item"),
    ],
    ids=["missing", "not-yaml", "unknown-field", "no-apps"],
)
def test_a_bad_scenario_exits_2_naming_the_file_and_the_reason(
    tmp_path: Path, text: str | None, reason: str
) -> None:
    path = tmp_path / "scenario.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    done = guard(str(path), "--json")
    assert done.exit_code == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"guard: scenario {path}: ")
    assert reason in done.stderr
    assert "Traceback" not in done.output
