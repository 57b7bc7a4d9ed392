"""The rule set: shipped rules load, bad rules are located, the schema matches the model."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from guard.config.rulesfile import load_rules
from guard.core.durations import format_duration, parse_duration
from guard.core.rules import ErrorRateProvider, LogKind, LogsProvider, rule_json_schema
from guard.defaults import RULES_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_default_rules_are_the_runbooks_three_triggers() -> None:
    rules, problems = load_rules(RULES_DIR)
    assert problems == []
    assert {r.metadata.labels["runbook-trigger"]: name for name, r in rules.items()} == {
        "1": "migration-failure",
        "2": "schema-mismatch",
        "3": "error-rate",
    }
    migration = rules["migration-failure"].spec.provider
    assert isinstance(migration, LogsProvider)
    assert migration.kinds == [LogKind.MIGRATION_FAILURE]
    rate = rules["error-rate"].spec
    assert isinstance(rate.provider, ErrorRateProvider)
    assert rate.initial_delay == 120.0  # "2m": Cloud Monitoring's visibility lag
    assert rate.threshold_range is not None
    assert rate.threshold_range.max == 0.02


def test_top_level_rules_dir_is_the_shipped_one() -> None:
    assert (ROOT / "rules").resolve() == RULES_DIR.resolve()


def test_committed_schema_is_generated_from_the_model() -> None:
    committed = json.loads((ROOT / "schema" / "guardrule.schema.json").read_text())
    assert committed == rule_json_schema(), (
        "regenerate: guard schema > schema/guardrule.schema.json"
    )


def test_every_rule_file_validates_against_the_schema() -> None:
    schema = rule_json_schema()
    for path in sorted(RULES_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            jsonschema.validate(doc, schema)


def test_schema_rejects_what_the_model_rejects() -> None:
    doc = yaml.safe_load((RULES_DIR / "error-rate.yaml").read_text())
    doc["spec"]["failureLimt"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, rule_json_schema())


def test_bad_rules_are_located_and_duplicates_refused(tmp_path: Path) -> None:
    good = (RULES_DIR / "migration-failure.yaml").read_text()
    (tmp_path / "a.yaml").write_text(good)
    (tmp_path / "b.yaml").write_text(good)  # same metadata.name again
    (tmp_path / "c.yaml").write_text(
        good.replace("name: migration-failure", "name: c")
        .replace("failureLimit: 1", "failureLimit: 0")
        .replace("interval: 5s", "interval: 5 seconds")
    )
    rules, problems = load_rules(tmp_path)
    assert set(rules) == {"migration-failure"}
    by_path = {(Path(p.file).name, p.path): p for p in problems}
    assert "already defined" in by_path[("b.yaml", "metadata.name")].message
    assert (
        by_path[("c.yaml", "spec.failureLimit")].line
        == good.splitlines().index("  failureLimit: 1") + 1
    )
    assert "not a duration" in by_path[("c.yaml", "spec.interval")].message


def test_threshold_only_where_it_means_something(tmp_path: Path) -> None:
    text = (RULES_DIR / "migration-failure.yaml").read_text() + "  thresholdRange: {max: 1}\n"
    (tmp_path / "r.yaml").write_text(text)
    _, problems = load_rules(tmp_path)
    assert any("no meaning for a logs rule" in p.message for p in problems)


@given(st.integers(min_value=0, max_value=10 * 24 * 3_600_000))
def test_durations_round_trip(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "5 m", "m5", "5d", "", "1h-5m", "s"])
def test_ambiguous_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
