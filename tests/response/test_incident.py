"""The incident state machine and the restore proposal: pure decisions, checked exhaustively."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.core.incident import TERMINAL, Facts, Step, action_key, next_step, strongest
from guard.core.model import IncidentState
from guard.core.proposal import clone_name, next_migration_file, propose_restore
from guard.core.rules import RuleAction

REVERT = Facts(RuleAction.REVERT, bad_share=100, revert_target="api-1", operator_changed=False)


def walk(facts: Facts, *, passed: bool | None = None) -> list[Step]:
    """The steps from OPEN to the end, feeding validation's result when asked."""
    state, steps = IncidentState.OPEN, []
    for _ in range(10):
        decision = next_step(state, facts)
        if decision.step is None:
            break
        steps.append(decision.step)
        if decision.step is Step.VALIDATE:
            facts = Facts(**{**_fields(facts), "validation_passed": passed})
        if decision.step is Step.REVERT:  # the bad revision serves nothing any more
            facts = Facts(**{**_fields(facts), "bad_share": 0})
        state = decision.then
    return steps


def _fields(f: Facts) -> dict[str, object]:
    return {k: getattr(f, k) for k in Facts.__slots__}


def test_the_runbook_sequence_when_the_revert_helps() -> None:
    assert walk(REVERT, passed=True) == [
        Step.FREEZE, Step.REVERT, Step.PAGE, Step.VALIDATE, Step.RESOLVE,
    ]  # fmt: skip


def test_validation_failing_escalates() -> None:
    assert walk(REVERT, passed=False)[-1] is Step.ESCALATE


def test_schema_errors_on_the_old_code_escalate_even_if_checks_pass() -> None:
    facts = Facts(**{**_fields(REVERT), "schema_errors_after_revert": True})
    assert walk(facts, passed=True)[-1] is Step.ESCALATE


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"bad_share": 0}, "serves no traffic"),
        ({"operator_changed": True}, "human changed traffic"),
        ({"revert_target": None}, "no Ready last-known-good"),
        ({"action": RuleAction.FREEZE}, "traffic untouched"),
    ],
)
def test_no_revert_when_it_would_be_wrong(change: dict[str, object], why: str) -> None:
    facts = Facts(**{**_fields(REVERT), **change})
    decision = next_step(IncidentState.FROZEN, facts)
    assert decision.step is Step.PAGE
    assert why in decision.why
    assert Step.REVERT not in walk(facts, passed=True)


@pytest.mark.parametrize(
    "change", [{"operator_changed": True}, {"revert_target": None}, {"revert_failed": True}]
)
def test_no_resolve_while_the_bad_revision_serves_and_the_guard_could_not_revert(
    change: dict[str, object],
) -> None:
    facts = Facts(**{**_fields(REVERT), **change})
    assert walk(facts, passed=True) == [Step.FREEZE, Step.PAGE], "then it waits for a human"
    waiting = next_step(IncidentState.VALIDATING, facts)
    assert waiting.step is None
    assert "still serves 100%" in waiting.why
    moved = Facts(**{**_fields(facts), "bad_share": 0})  # a human moved the traffic
    assert next_step(IncidentState.VALIDATING, moved).step is Step.VALIDATE


def test_page_only_rules_never_freeze() -> None:
    facts = Facts(**{**_fields(REVERT), "action": RuleAction.PAGE})
    assert walk(facts, passed=True) == [Step.PAGE, Step.VALIDATE, Step.RESOLVE]


FACTS = st.builds(
    Facts,
    action=st.sampled_from(list(RuleAction)),
    bad_share=st.integers(0, 100),
    revert_target=st.one_of(st.none(), st.just("api-1")),
    operator_changed=st.booleans(),
    validation_passed=st.one_of(st.none(), st.booleans()),
    schema_errors_after_revert=st.booleans(),
)


@given(state=st.sampled_from(list(IncidentState)), facts=FACTS)
def test_safety_invariants_hold_in_every_state(state: IncidentState, facts: Facts) -> None:
    decision = next_step(state, facts)
    if state in TERMINAL:
        assert decision.step is None  # an ended incident never acts again
    if decision.step is Step.REVERT:  # only ever to a Ready target, while it helps, unlocked
        assert facts.action is RuleAction.REVERT
        assert facts.revert_target is not None
        assert facts.bad_share > 0
        assert not facts.operator_changed
    if decision.step is Step.RESOLVE:
        assert facts.validation_passed is True
        assert not facts.schema_errors_after_revert
    if decision.step is Step.VALIDATE and facts.action is RuleAction.REVERT:
        assert facts.bad_share == 0  # nothing to validate while the bad revision serves


def test_strongest_action_and_keys() -> None:
    assert strongest([RuleAction.PAGE, RuleAction.REVERT]) is RuleAction.REVERT
    assert strongest([RuleAction.PAGE, RuleAction.FREEZE]) is RuleAction.FREEZE
    assert action_key("inc1", Step.REVERT, "api-1") == "inc1:revert:api-1"


T = datetime(2026, 1, 15, 14, 4, 30, tzinfo=UTC)


def test_restore_proposal_inside_the_window() -> None:
    p = propose_restore(
        project="delta-student-486911-n5",
        instance="pegasus-db-eu",
        secret="pegasus-db-url",
        deploy_started=T,
        margin=timedelta(minutes=5),
        window=(T - timedelta(days=7), T + timedelta(minutes=10)),
        migration_file="backend/migrations/002_rename_course_title.sql",
    )
    assert p.point_in_time == datetime(2026, 1, 15, 13, 59, 30, tzinfo=UTC)
    assert p.in_window
    assert p.problems == ()
    assert p.clone_name == "pegasus-db-eu-rollback-20260115-1359"
    assert p.gcloud[0] == (
        "gcloud sql instances clone pegasus-db-eu pegasus-db-eu-rollback-20260115-1359 "
        '--point-in-time="2026-01-15T13:59:30.000Z" --project=delta-student-486911-n5'
    )
    assert "gcloud secrets versions add pegasus-db-url" in p.gcloud[2]
    assert p.option_b_file == "backend/migrations/003_fix_rename_course_title.sql"
    assert "IF EXISTS" in p.option_b_note


def test_restore_proposal_outside_the_window_says_so() -> None:
    p = propose_restore(
        project="p-123456",
        instance="db",
        secret="s",
        deploy_started=T,
        margin=timedelta(minutes=5),
        window=(T - timedelta(minutes=1), T + timedelta(minutes=1)),
        migration_file=None,
    )
    assert not p.in_window
    assert "outside the recoverable window" in p.problems[0]
    assert p.option_b_file is None


@pytest.mark.parametrize(
    ("failing", "fix"),
    [
        (
            "backend/migrations/002_rename_course_title.sql",
            "backend/migrations/003_fix_rename_course_title.sql",
        ),
        ("009_x.sql", "010_fix_x.sql"),
        ("/app/backend/migrations/0099_a_b.sql", "/app/backend/migrations/0100_fix_a_b.sql"),
        ("courses.0002_x", None),
    ],
)  # fmt: skip
def test_next_migration_file(failing: str, fix: str | None) -> None:
    assert next_migration_file(failing) == fix


def test_clone_names_fit_cloud_sql() -> None:
    assert len(clone_name("x" * 98, T)) == 98
