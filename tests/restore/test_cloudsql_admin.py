"""The Cloud SQL Admin write adapter against the fake over REST: PITR clones and backup
restores run PENDING -> RUNNING -> DONE as scenario time passes, and Cloud SQL's errors keep
their canonical code and legacy reason (a 409 operationInProgress has no `status`)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest

from guard.adapters.cloudsql_admin import CloudSqlAdmin, SqlCallError
from guard.adapters.google_clients import GoogleClients
from guard.sim.faults import Fault
from guard.sim.scenario import ScenarioEngine

from .conftest import Calls, stepping, worst_case_at

P, DB, CLONE = "delta-student-486911-n5", "pegasus-db-eu", "pegasus-db-eu-pitr"


@pytest.fixture
def engine() -> ScenarioEngine:
    """The runbook's worst case a minute in: the database is still on its first schema."""
    return worst_case_at(60.0)


@pytest.fixture
def admin(clients: GoogleClients, calls: Calls) -> CloudSqlAdmin:
    return CloudSqlAdmin(clients, on_call=lambda m, c: calls.append((m, c)), backoff=0.01)


def before_the_deploy(engine: ScenarioEngine) -> datetime:
    return engine.clock.epoch + timedelta(seconds=30)


async def test_a_pitr_clone_runs_to_done_and_the_clone_becomes_runnable(
    engine: ScenarioEngine, admin: CloudSqlAdmin, calls: Calls
) -> None:
    op = await admin.clone(P, DB, CLONE, before_the_deploy(engine))
    assert (op.status, op.done, op.kind, op.target, op.error) == (
        "PENDING",
        False,
        "CLONE",
        CLONE,
        None,
    )
    pending = await admin.instance(P, CLONE)
    assert pending is not None
    assert (pending.state, pending.ip_address) == ("PENDING_CREATE", None)
    engine.run_until(engine.t + 5)
    assert (await admin.operation(P, op.name)).status == "RUNNING"
    done = await admin.wait(P, op.name, limit=600, poll=10, sleep=stepping(engine))
    assert (done.status, done.done, done.error, done.name) == ("DONE", True, None, op.name)
    clone = await admin.instance(P, CLONE)
    assert clone is not None
    assert clone.state == "RUNNABLE"
    assert clone.ip_address == engine.world.sql.instance(P, CLONE).ip_address
    assert clone.ip_address
    assert clone.ip_address.startswith("10.")
    assert (clone.connection_name, clone.region) == (f"{P}:europe-west1:{CLONE}", "europe-west1")
    assert [o.name for o in await admin.operations(P, CLONE)] == [op.name]
    (write,) = engine.world.recorder.writes("sqladmin")
    assert write.request["body"]["cloneContext"] == {
        "destinationInstanceName": CLONE,
        "pointInTime": "2026-01-15T14:00:30Z",
    }
    assert engine.world.sql.instance(P, CLONE).data_as_of == before_the_deploy(engine)
    assert calls[0] == ("instances.clone", "OK")
    assert {c for _, c in calls} == {"OK"}
    assert {m for m, _ in calls} == {
        "instances.clone",
        "instances.get",
        "operations.get",
        "operations.list",
    }


async def test_a_clone_to_an_existing_name_is_already_exists_and_not_retried(
    engine: ScenarioEngine, admin: CloudSqlAdmin, calls: Calls
) -> None:
    with pytest.raises(SqlCallError) as err:
        await admin.clone(P, DB, DB, before_the_deploy(engine))
    assert (err.value.code, err.value.reason) == ("ALREADY_EXISTS", "instanceAlreadyExists")
    assert err.value.message == "The Cloud SQL instance already exists."
    assert calls == [("instances.clone", "ALREADY_EXISTS")]


async def test_a_point_outside_the_recovery_window_is_invalid(
    engine: ScenarioEngine, admin: CloudSqlAdmin
) -> None:
    with pytest.raises(SqlCallError) as err:
        await admin.clone(P, DB, CLONE, engine.clock.epoch - timedelta(days=8))
    assert (err.value.code, err.value.reason) == ("INVALID_ARGUMENT", "invalid")
    assert "outside the recovery window" in err.value.message
    assert await admin.instance(P, CLONE) is None
    with pytest.raises(SqlCallError) as future:
        await admin.clone(P, DB, CLONE, engine.clock.now() + timedelta(minutes=1))
    assert future.value.code == "INVALID_ARGUMENT"


async def test_a_second_clone_while_one_runs_is_operation_in_progress(
    engine: ScenarioEngine, admin: CloudSqlAdmin, calls: Calls
) -> None:
    await admin.clone(P, DB, CLONE, before_the_deploy(engine))
    with pytest.raises(SqlCallError) as err:
        await admin.clone(P, DB, "pegasus-db-eu-pitr2", before_the_deploy(engine))
    assert err.value.reason == "operationInProgress"
    assert err.value.code == "ABORTED"  # a 409 whose body has no status
    assert "another operation was already in progress" in err.value.message
    assert calls == [("instances.clone", "OK"), ("instances.clone", "ABORTED")]


async def test_backup_runs_are_listed_and_one_restores_in_place(
    engine: ScenarioEngine, admin: CloudSqlAdmin
) -> None:
    (run,) = await admin.backup_runs(P, DB)
    end = engine.clock.epoch - timedelta(hours=5)
    assert run.id == int(end.timestamp() * 1000)
    assert (run.status, run.kind) == ("SUCCESSFUL", "AUTOMATED")
    assert run.end == end
    assert run.start == run.window_start == end - timedelta(minutes=4)
    assert run.end is not None
    assert run.end.tzinfo is not None
    assert run.end.utcoffset() == UTC.utcoffset(None)
    op = await admin.restore_backup(P, DB, run.id)
    assert (op.kind, op.target, op.done) == ("RESTORE_VOLUME", DB, False)
    done = await admin.wait(P, op.name, limit=600, poll=10, sleep=stepping(engine))
    assert (done.status, done.error) == ("DONE", None)
    assert engine.world.sql.instance(P, DB).restored_backup == run.id
    (write,) = engine.world.recorder.writes("sqladmin", "instances.restoreBackup")
    assert write.request["body"]["restoreBackupContext"] == {
        "backupRunId": str(run.id),
        "instanceId": DB,
        "project": P,
    }


async def test_a_failed_operation_reports_its_error_messages(
    engine: ScenarioEngine, admin: CloudSqlAdmin
) -> None:
    engine.world.sql.fail_next_operation("INTERNAL_ERROR", "The clone could not be created.")
    op = await admin.clone(P, DB, CLONE, before_the_deploy(engine))
    done = await admin.wait(P, op.name, limit=600, poll=10, sleep=stepping(engine))
    assert (done.done, done.error) == (True, "The clone could not be created.")
    assert await admin.instance(P, CLONE) is None  # a failed clone leaves nothing


async def test_wait_is_bounded_when_the_operation_never_ends(
    engine: ScenarioEngine, admin: CloudSqlAdmin
) -> None:
    op = await admin.clone(P, DB, CLONE, before_the_deploy(engine))
    slept: list[float] = []

    async def still(seconds: float) -> None:  # scenario time stands still
        slept.append(seconds)

    last = await admin.wait(P, op.name, limit=30, poll=10, sleep=still)
    assert (last.status, last.done) == ("PENDING", False)
    assert slept == [10, 10, 10]


async def test_a_missing_instance_is_none_and_a_missing_operation_raises(
    admin: CloudSqlAdmin, calls: Calls
) -> None:
    assert await admin.instance(P, "no-such-db") is None
    with pytest.raises(SqlCallError) as err:
        await admin.operation(P, "no-such-operation")
    assert (err.value.code, err.value.reason) == ("NOT_FOUND", "operationDoesNotExist")
    with pytest.raises(SqlCallError) as runs:
        await admin.backup_runs(P, "no-such-db")
    assert runs.value.code == "NOT_FOUND"
    assert calls == [
        ("instances.get", "NOT_FOUND"),
        ("operations.get", "NOT_FOUND"),
        ("backupRuns.list", "NOT_FOUND"),
    ]


async def test_a_transient_read_error_is_retried_a_bounded_number_of_times(
    engine: ScenarioEngine, admin: CloudSqlAdmin, calls: Calls
) -> None:
    faults = engine.world.faults
    faults.arm(Fault(api="sqladmin", method="instances.get", code="UNAVAILABLE", times=1))
    found = await admin.instance(P, DB)
    assert found is not None
    assert found.state == "RUNNABLE"
    assert calls == [("instances.get", "UNAVAILABLE"), ("instances.get", "OK")]
    calls.clear()
    faults.arm(Fault(api="sqladmin", method="backupRuns.list", code="INTERNAL"))
    with pytest.raises(SqlCallError) as err:
        await admin.backup_runs(P, DB)
    assert (err.value.code, err.value.reason) == ("INTERNAL", "internalError")
    assert calls == [("backupRuns.list", "INTERNAL")] * 3


async def test_a_transient_error_on_a_write_is_not_retried(
    engine: ScenarioEngine, admin: CloudSqlAdmin, calls: Calls
) -> None:
    engine.world.faults.arm(Fault(api="sqladmin", method="instances.clone", code="UNAVAILABLE"))
    with pytest.raises(SqlCallError) as err:
        await admin.clone(P, DB, CLONE, before_the_deploy(engine))
    assert err.value.code == "UNAVAILABLE"
    assert calls == [("instances.clone", "UNAVAILABLE")]


async def test_the_recovery_window_is_read_or_none_when_unreadable(
    engine: ScenarioEngine, admin: CloudSqlAdmin, calls: Calls
) -> None:
    window = await admin.recovery_window(P, DB)
    assert window is not None
    earliest, latest = window
    assert (earliest, latest) == engine.world.sql.recovery_window(P, DB)
    assert earliest < latest
    engine.world.faults.arm(
        Fault(api="sqladmin", method="instances.getLatestRecoveryTime", code="PERMISSION_DENIED")
    )
    assert await admin.recovery_window(P, DB) is None, "a proposal then says it is unknown"
    assert calls[-1] == ("instances.getLatestRecoveryTime", "PERMISSION_DENIED")
