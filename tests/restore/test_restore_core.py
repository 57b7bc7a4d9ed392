"""The restore as data: the steps of each kind, where a half-done restore resumes, how votes
count, what the plan says, and the two string operations on a connection string."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guard.core.model import ActionStatus
from guard.core.restore import (
    Decision,
    PlannedStep,
    RestoreKind,
    RestoreStepKind,
    StepRecord,
    Vote,
    next_step,
    restore_revision_name,
    steps_for,
    tally,
)
from guard.core.restore_plan import (
    BackupChoice,
    PlanFacts,
    ServicePlan,
    backup_before,
    build_plan,
    mask_connection,
    plan_lines,
    rewrite_connection,
)

T0 = datetime(2026, 11, 21, 14, 0, tzinfo=UTC)
S = RestoreStepKind


def test_a_clone_restore_clones_waits_reads_repoints_rolls_each_service_then_validates() -> None:
    steps = steps_for(RestoreKind.CLONE, ["api", "worker"])
    assert [(s.step, s.service) for s in steps] == [
        (S.CLONE, ""), (S.WAIT, ""), (S.ADDRESS, ""), (S.SECRET, ""),
        (S.ROLL, "api"), (S.ROLL, "worker"), (S.VALIDATE, ""),
    ]  # fmt: skip
    assert steps[4].key("r1") == "r1:roll:api"
    backup = steps_for(RestoreKind.BACKUP, ["api"])
    assert [s.step for s in backup] == [S.RESTORE_BACKUP, S.WAIT, S.ROLL, S.VALIDATE]


def _record(step: PlannedStep, status: ActionStatus) -> StepRecord:
    return StepRecord(
        id=step.key("r1"), restore_id="r1", step=step.step, key=step.key("r1"),
        status=status, intent={}, outcome={}, created_at=T0, finished_at=None,
    )  # fmt: skip


def test_next_step_resumes_at_the_first_unfinished_step_and_stops_at_a_failure() -> None:
    planned = steps_for(RestoreKind.CLONE, ["api"])
    assert next_step("r1", planned, []) == (planned[0], None)
    done = [_record(planned[0], ActionStatus.SUCCEEDED)]
    intended = _record(planned[1], ActionStatus.INTENDED)
    step, record = next_step("r1", planned, [*done, intended])
    assert step == planned[1]
    assert record == intended, "an open intent is resumed, not redone"
    failed = _record(planned[1], ActionStatus.FAILED)
    assert next_step("r1", planned, [*done, failed]) == (None, failed)
    all_done = [_record(p, ActionStatus.SUCCEEDED) for p in planned]
    assert next_step("r1", planned, all_done) == (None, None)
    skipped = [_record(p, ActionStatus.SKIPPED) for p in planned]  # a dry run
    assert next_step("r1", planned, skipped) == (None, None)


def _vote(who: str, decision: Decision, minute: int) -> Vote:
    return Vote("r1", who, decision, T0 + timedelta(minutes=minute))


def test_tally_counts_distinct_approvers_and_any_rejection_decides() -> None:
    alice, bob = _vote("alice", Decision.APPROVE, 1), _vote("bob", Decision.APPROVE, 2)
    assert not tally([alice], 2).enough
    assert tally([alice, _vote("alice", Decision.APPROVE, 3)], 2).approvers == ("alice",)
    assert tally([bob, alice], 2).enough
    assert tally([alice, bob], 2).approvers == ("alice", "bob")
    rejected = tally([alice, bob, _vote("carol", Decision.REJECT, 4)], 2)
    assert rejected.rejected_by == "carol"
    assert not rejected.enough


def test_restore_revision_names_keep_the_service_prefix_and_cloud_runs_limit() -> None:
    assert restore_revision_name("pegasus-api", "0123456789ab") == "pegasus-api-restore-01234567"
    long = "s" * 49
    name = restore_revision_name(long, "0123456789ab")
    assert name.startswith(f"{long}-")
    assert len(name) <= 63


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("postgresql://pegasus:pw@10.0.0.5:5432/db", "postgresql://pegasus:****@10.0.0.5:5432/db"),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u:****@h/db?sslmode=require"),
        ("host=10.0.0.5 password=secret dbname=d", "host=10.0.0.5 password=**** dbname=d"),
        ("postgresql://h/db?user=u&password=x&ssl=a", "postgresql://h/db?user=u&password=****&ssl=a"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)  # fmt: skip
def test_mask_connection_hides_every_password_form(value: str, masked: str) -> None:
    assert mask_connection(value) == masked


def test_rewrite_connection_moves_address_or_connection_name_and_nothing_else() -> None:
    url = "postgresql://pegasus:pw@10.0.0.5:5432/pegasus"
    moved = rewrite_connection(
        url, old_ip="10.0.0.5", new_ip="10.0.0.9", old_name="p:r:db", new_name="p:r:db-rb"
    )
    assert moved == "postgresql://pegasus:pw@10.0.0.9:5432/pegasus"
    sock = "host=/cloudsql/p:r:db user=u"
    assert (
        rewrite_connection(
            sock, old_ip="10.0.0.5", new_ip="x", old_name="p:r:db", new_name="p:r:db-rb"
        )
        == "host=/cloudsql/p:r:db-rb user=u"
    )
    # 10.0.0.50 is another host: no partial match; nothing named → None, never a guess
    other = "postgresql://u:pw@10.0.0.50/db"
    assert (
        rewrite_connection(
            other, old_ip="10.0.0.5", new_ip="10.0.0.9", old_name="p:r:db", new_name="p:r:x"
        )
        is None
    )


def test_backup_before_picks_the_newest_successful_run_that_ended_before() -> None:
    runs = [
        (1, "SUCCESSFUL", T0 - timedelta(hours=5)),
        (2, "FAILED", T0 - timedelta(hours=1)),
        (3, "SUCCESSFUL", T0 - timedelta(hours=2)),
        (4, "SUCCESSFUL", T0 + timedelta(hours=1)),  # after the deploy: would keep the damage
        (5, "RUNNING", None),
    ]
    assert backup_before(runs, T0) == BackupChoice(3, T0 - timedelta(hours=2))
    assert backup_before(runs[3:], T0) is None


def _facts(**changes: object) -> PlanFacts:
    base: dict[str, object] = {
        "restore_id": "0123456789ab", "kind": RestoreKind.CLONE, "app": "pegasus",
        "project": "proj",
        "instance": "pegasus-db", "secret": "pegasus-db-url", "point_in_time": T0,
        "window": (T0 - timedelta(days=7), T0 + timedelta(minutes=30)),
        "clone_name": "pegasus-db-rollback-20261121-1400", "backup": None,
        "secret_version": "projects/proj/secrets/pegasus-db-url/versions/1",
        "connection": "postgresql://pegasus:hunter2@10.1.2.3:5432/pegasus",
        "source_address": "10.1.2.3", "source_connection_name": "proj:europe-west1:pegasus-db",
        "services": [
            ServicePlan("pegasus-api", "proj", "europe-west1", "pegasus-api-00041",
                        {"pegasus-api-00041": 100}, False),
            ServicePlan("pegasus-worker", "proj", "europe-west1", "pegasus-worker-00017",
                        {"pegasus-worker-00017": 100}, True),
        ],
        "validation": ["GET https://api/health/ready answers 2xx"],
        "option_b_file": "backend/migrations/003_fix_x.sql", "option_b_note": "write 003_fix_x.sql",
    }  # fmt: skip
    base.update(changes)
    return PlanFacts(**base)  # type: ignore[arg-type]


def test_the_plan_says_everything_and_never_the_password() -> None:
    plan = build_plan(_facts())
    assert plan["executable"]
    assert plan["problems"] == []
    assert plan["point_in_time"] == "2026-11-21T14:00:00.000Z"
    assert (
        plan["secret"]["connection_new"] == "postgresql://pegasus:****@<clone address>:5432/pegasus"
    )
    assert plan["services"][0]["new_revision"] == "pegasus-api-restore-01234567"
    assert plan["services"][1]["keeps_latest"] is True
    text = "\n".join(plan_lines(plan))
    assert "hunter2" not in text
    assert "hunter2" not in str(plan)
    assert "gcloud sql instances clone pegasus-db pegasus-db-rollback-20261121-1400" in text
    assert "--to-revisions=pegasus-api-restore-01234567=100" in text
    assert "update-traffic pegasus-worker" not in text, "a LATEST service keeps LATEST"
    assert "003_fix_x.sql" in text


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"point_in_time": T0 - timedelta(days=8)}, "outside the recoverable window"),
        ({"window": None}, "recoverable window is unknown"),
        ({"connection": None}, "could not be read"),
        ({"connection": "postgresql://u:p@db.internal/db"}, "cannot repoint it"),
        ({"kind": RestoreKind.BACKUP}, "no successful backup run"),
    ],
)
def test_a_plan_that_cannot_run_says_why(changes: dict[str, object], problem: str) -> None:
    plan = build_plan(_facts(**changes))
    assert not plan["executable"]
    assert any(problem in p for p in plan["problems"]), plan["problems"]


def test_an_in_place_backup_plan_is_marked_destructive() -> None:
    plan = build_plan(_facts(kind=RestoreKind.BACKUP, backup=BackupChoice(7, T0)))
    assert plan["executable"]
    assert plan["destructive"]
    assert plan["secret"]["adds_version"] is False
    lines = plan_lines(plan)
    assert lines[0].startswith("DESTRUCTIVE: restore backup run 7")
    assert "  gcloud sql backups restore 7 --restore-instance=pegasus-db --project=proj" in lines
