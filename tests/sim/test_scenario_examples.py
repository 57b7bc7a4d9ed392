"""Every example scenario validates, uses only real error texts, and plays as it says.

The examples under scenarios/ are what later end-to-end tests, the demo and the benchmarks
stand on, so each one is played to its end here and checked against its own intent: which
kinds of real driver errors its new revision writes (by the fixtures' ground-truth labels),
and how its revisions end up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import run_v2
from google.cloud.logging_v2.types import LogEntry
from google.protobuf import json_format

from guard.sim.errortexts import error_texts
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))

#: scenario name -> the label kinds the *deployed* revision's error lines must carry.
EXPECTED_KINDS: dict[str, set[str]] = {
    "runbook-worst-case": {"schema_mismatch"},
    "trigger1-migration-failure": {"migration_failure", "schema_mismatch"},
    "trigger2-schema-mismatch": {"schema_mismatch"},
    "trigger3-error-rate": set(),
    "failed-start": set(),  # its crash arrives one line per entry: checked below
    "canary": {"schema_mismatch"},
    "canary-5xx-only": set(),
    "benign": set(),
    "low-traffic-noisy": set(),
    "worker-breaks": {"migration_failure", "schema_mismatch"},
    "human-revert": {"schema_mismatch"},
    "human-split": {"schema_mismatch"},
}


def load(path: Path) -> Scenario:
    return Scenario.model_validate(yaml.safe_load(path.read_text()))


BY_TEXT = {c.text: c for c in error_texts().values()}


def _strings(payload: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A JSON payload's string fields: what survives Cloud Run's lifting of `severity`."""
    return tuple(
        sorted((k, v) for k, v in payload.items() if isinstance(v, str) and k != "severity")
    )


BY_PAYLOAD = {_strings(c.json_payload): c for c in error_texts().values() if c.json_payload}


def fixture_kind(entry: LogEntry) -> str | None:
    """The ground-truth label kind of the fixture this entry was written from, if any."""
    raw = LogEntry.pb(entry)
    if raw.HasField("json_payload"):
        case = BY_PAYLOAD.get(_strings(json_format.MessageToDict(raw.json_payload)))
    else:
        case = BY_TEXT.get(entry.text_payload)
    return case.label.get("kind") if case is not None else None


def test_every_example_is_covered_here() -> None:
    assert {load(p).name for p in EXAMPLES} == set(EXPECTED_KINDS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_uses_only_real_fixtures(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    names = _fixture_names(doc)
    assert all(name in error_texts() for name in names), sorted(set(names) - set(error_texts()))


def _fixture_names(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["fixture"]] if "fixture" in node else []
        return found + [n for v in node.values() for n in _fixture_names(v)]
    if isinstance(node, list):
        return [n for v in node for n in _fixture_names(v)]
    return []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_plays_as_it_says(path: Path) -> None:
    spec = load(path)
    engine = ScenarioEngine(spec)
    engine.run()
    assert engine.t == pytest.approx(spec.duration)
    deployed = {e.deploy.revision.name for e in spec.events if e.deploy is not None}
    entries = engine.world.logs.entries()
    kinds = {
        kind
        for e in entries
        if e.resource.labels.get("revision_name") in deployed
        and (kind := fixture_kind(e)) is not None
    }
    assert kinds == EXPECTED_KINDS[spec.name]
    for event in spec.events:
        if event.deploy is None:
            continue
        rev = engine.world.run.revision(event.deploy.service, event.deploy.revision.name)
        ready = next(c for c in rev.conditions if c.type_ == "Ready")
        expected = (
            run_v2.Condition.State.CONDITION_SUCCEEDED
            if event.deploy.revision.ready
            else run_v2.Condition.State.CONDITION_FAILED
        )
        assert ready.state == expected


def test_failed_start_writes_the_crash_line_by_line_and_the_platform_entries() -> None:
    engine = ScenarioEngine(load(ROOT / "scenarios" / "failed-start.yaml"))
    engine.run()
    new = [
        e
        for e in engine.world.logs.entries()
        if e.resource.labels.get("revision_name") == "pegasus-api-00031-new"
    ]
    texts = [e.text_payload for e in new if e.text_payload]
    crash = error_texts()["psycopg3-runner-crash-002_users_created_at-duplicate-column"].text
    assert "Applying migration backend/migrations/002_users_created_at.sql" in texts[0]
    assert [t for t in texts[1:] if t != "Container called exit(1)."] == [
        line for line in crash.splitlines() if line.strip()
    ]
    assert "Container called exit(1)." in texts
    assert any("system_event" in e.log_name for e in new)
