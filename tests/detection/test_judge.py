"""Rule evaluation: the shipped rules judge hand-made evidence as an operator would expect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guard.config.rulesfile import load_rules
from guard.core.classify import Classification
from guard.core.errorrate import ErrorRateJudgement
from guard.core.judge import Hit, judge, migration_file
from guard.core.model import Deploy, DeployKind, Outcome, Readiness, Reason, Revision, ServiceRef
from guard.core.rules import LogKind
from guard.core.signals import LogRecord
from guard.defaults import RULES_DIR

RULES, _ = load_rules(RULES_DIR)
T0 = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
API = ServiceRef("delta-student-486911-n5", "europe-west1", "pegasus-api")
DEPLOY = Deploy(API, "pegasus-api-00002", DeployKind.TRAFFIC, T0, ("pegasus-api-00001",))


def hit(
    seconds: float,
    kind: LogKind | None,
    *,
    revision: str = "pegasus-api-00002",
    file: str | None = None,
    source: str | None = None,
) -> Hit:
    record = LogRecord(
        at=T0 + timedelta(seconds=seconds),
        project=API.project,
        service=API.name,
        revision=revision,
        log_name="run.googleapis.com/stderr",
        severity="ERROR",
        text=f'psycopg.errors.UndefinedColumn: column "title" does not exist ({seconds})',
        insert_id=f"id-{seconds}",
    )
    c = Classification(kind, file, "42703", "title", source)  # type: ignore[arg-type]
    return Hit(record, c)


def test_one_migration_failure_from_the_new_revision_fails_trigger_one() -> None:
    hits = [hit(3, LogKind.MIGRATION_FAILURE, file="backend/migrations/002_x.sql", source="text")]
    verdict = judge(RULES["migration-failure"], DEPLOY, T0 + timedelta(seconds=5), hits=hits)
    assert verdict.outcome is Outcome.FAILED
    [reason] = verdict.reasons
    assert (
        "1 migration_failure failure (1 log entries) from revision pegasus-api-00002" in reason.text
    )
    assert "failing migration backend/migrations/002_x.sql (named in the log)" in reason.text
    assert (reason.value, reason.threshold) == (1, 1)
    assert verdict.evidence[0].data["sqlstate"] == "42703"


def test_schema_mismatch_needs_two_entries() -> None:
    rule = RULES["schema-mismatch"]
    one = [hit(3, LogKind.SCHEMA_MISMATCH)]
    assert judge(rule, DEPLOY, T0 + timedelta(seconds=5), hits=one).outcome is Outcome.INCONCLUSIVE
    two = [*one, hit(4.5, LogKind.SCHEMA_MISMATCH)]
    assert judge(rule, DEPLOY, T0 + timedelta(seconds=5), hits=two).outcome is Outcome.FAILED


def test_one_traceback_split_into_lines_is_one_failure() -> None:
    rule = RULES["schema-mismatch"]
    lines = [hit(3.0, LogKind.SCHEMA_MISMATCH), hit(3.000001, LogKind.SCHEMA_MISMATCH)]
    verdict = judge(rule, DEPLOY, T0 + timedelta(seconds=5), hits=lines)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.reasons[0].value == 1
    again = [*lines, hit(6.0, LogKind.SCHEMA_MISMATCH)]  # a second request fails later
    assert judge(rule, DEPLOY, T0 + timedelta(seconds=7), hits=again).outcome is Outcome.FAILED


def test_a_steady_stream_of_failing_requests_is_many_failures_not_one() -> None:
    # 12 failing requests a second: every gap is under a second, yet they are distinct
    # failures; an event spans a second from its first entry.
    stream = [hit(3 + i / 12, LogKind.SCHEMA_MISMATCH) for i in range(30)]  # 2.5 s
    verdict = judge(RULES["schema-mismatch"], DEPLOY, T0 + timedelta(seconds=6), hits=stream)
    assert verdict.outcome is Outcome.FAILED
    assert verdict.reasons[0].value == 3  # three events, each a second from its first entry


def test_other_revisions_old_entries_and_other_kinds_do_not_count() -> None:
    hits = [
        hit(3, LogKind.SCHEMA_MISMATCH, revision="pegasus-api-00001"),  # scope: new revision
        hit(-60, LogKind.SCHEMA_MISMATCH),  # before the deploy
        hit(4, LogKind.MIGRATION_FAILURE),  # another rule's kind
        hit(5, None),  # not classified as anything
    ]
    verdict = judge(RULES["schema-mismatch"], DEPLOY, T0 + timedelta(seconds=10), hits=hits)
    assert verdict.outcome is Outcome.PASSED


def test_evidence_outside_the_window_no_longer_counts() -> None:
    hits = [hit(3, LogKind.SCHEMA_MISMATCH), hit(4, LogKind.SCHEMA_MISMATCH)]
    later = T0 + timedelta(minutes=10)  # window is 5 minutes
    assert judge(RULES["schema-mismatch"], DEPLOY, later, hits=hits).outcome is Outcome.PASSED


def test_nothing_is_judged_before_initial_delay() -> None:
    result = ErrorRateJudgement(Outcome.FAILED, (Reason("bad"),), 100, 50, 1000, 1)
    early = judge(RULES["error-rate"], DEPLOY, T0 + timedelta(seconds=60), error_rate=result)
    assert early.outcome is Outcome.NO_DATA
    assert "initialDelay: 60s left" in early.reasons[0].text
    late = judge(RULES["error-rate"], DEPLOY, T0 + timedelta(seconds=180), error_rate=result)
    assert late.outcome is Outcome.FAILED
    assert late.evidence[0].data["new_errors"] == 50


def test_no_statistics_is_no_data_never_a_failure() -> None:
    verdict = judge(RULES["error-rate"], DEPLOY, T0 + timedelta(minutes=5), error_rate=None)
    assert verdict.outcome is Outcome.NO_DATA


def test_readiness_failure() -> None:
    from guard.core.rules import GuardRule

    rule = GuardRule.model_validate(
        {
            "apiVersion": "deployguard.dev/v1alpha1",
            "kind": "GuardRule",
            "metadata": {"name": "not-ready"},
            "spec": {"provider": {"type": "readiness"}, "action": "freeze"},
        }
    )
    failed = Revision(
        API, "pegasus-api-00002", T0, Readiness.FAILED, "HEALTH_CHECK_CONTAINER_ERROR"
    )
    verdict = judge(rule, DEPLOY, T0 + timedelta(seconds=40), revision=failed)
    assert verdict.outcome is Outcome.FAILED
    assert "HEALTH_CHECK_CONTAINER_ERROR" in verdict.reasons[0].text
    pending = Revision(API, "pegasus-api-00002", T0, Readiness.PENDING)
    assert judge(rule, DEPLOY, T0, revision=pending).outcome is Outcome.INCONCLUSIVE


def test_a_filename_written_in_a_log_beats_a_blamed_one() -> None:
    hits = [
        hit(1, LogKind.MIGRATION_FAILURE, file="backend/migrations/003_b.sql", source="blame"),
        hit(2, LogKind.MIGRATION_FAILURE, file="backend/migrations/002_a.sql", source="text"),
    ]
    assert migration_file(hits) == ("backend/migrations/002_a.sql", "text")
    assert migration_file(hits[:1]) == ("backend/migrations/003_b.sql", "blame")


@pytest.mark.parametrize("dry", [True, False])
def test_dry_run_is_carried_on_the_verdict(dry: bool) -> None:
    hits = [hit(3, LogKind.MIGRATION_FAILURE)]
    verdict = judge(
        RULES["migration-failure"], DEPLOY, T0 + timedelta(seconds=5), hits=hits, dry_run=dry
    )
    assert verdict.dry_run is dry
