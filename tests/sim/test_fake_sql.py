"""The fake Cloud SQL Admin v1beta4 through the official client over REST."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import sqladmin_v1beta4 as sql

from guard.adapters.google_clients import GoogleClients
from guard.sim.clock import VirtualClock
from guard.sim.faults import Fault
from guard.sim.world import World

P, DB = "delta-student-486911-n5", "pegasus-db-eu"
Status = sql.Operation.SqlOperationStatus
InstanceState = sql.DatabaseInstance.SqlInstanceState


@pytest.fixture
def db(world: World, clock: VirtualClock) -> datetime:
    """pegasus-db-eu with a 7-day window and two nightly backups; returns time zero."""
    start = clock.now()
    world.sql.create_instance(
        P, DB, backups=[start - timedelta(hours=11), start - timedelta(hours=35)]
    )
    clock.advance(3600)
    return start


def _clone(clients: GoogleClients, dest: str, point: datetime | None = None) -> sql.Operation:
    ctx: dict[str, Any] = {"destination_instance_name": dest, "preferred_zone": "europe-west1-c"}
    if point is not None:
        ctx["point_in_time"] = point
    return clients.sql_instances().clone(
        request={"project": P, "instance": DB, "body": {"clone_context": ctx}}
    )


def _operation(clients: GoogleClients, name: str) -> sql.Operation:
    return clients.sql_operations().get(request={"project": P, "operation": name})


def test_get_instance_and_missing_instance(clients: GoogleClients, db: datetime) -> None:
    inst = clients.sql_instances().get(request={"project": P, "instance": DB})
    assert inst.state == InstanceState.RUNNABLE
    assert inst.connection_name == f"{P}:europe-west1:{DB}"
    assert inst.database_version == sql.SqlDatabaseVersion.POSTGRES_15
    assert inst.settings.backup_configuration.point_in_time_recovery_enabled
    assert inst.ip_addresses[0].ip_address.startswith("10.")
    with pytest.raises(exceptions.NotFound) as err:
        clients.sql_instances().get(request={"project": P, "instance": "nope"})
    assert err.value.message.endswith("The Cloud SQL instance does not exist.")
    assert err.value.errors[0]["reason"] == "instanceDoesNotExist"


def test_list_pages_through_items(world: World, clients: GoogleClients, db: datetime) -> None:
    world.sql.create_instance(P, "another-db")
    world.sql.create_instance("other-project", "elsewhere")
    pager = clients.sql_instances().list(request={"project": P, "max_results": 1})
    # The library's ListPager iterates `warnings`, not instances: read the pages' items.
    pages = list(pager.pages)
    assert [[i.name for i in page.items] for page in pages] == [["another-db"], [DB]]


def test_recovery_window_trails_the_clock(
    world: World, clock: VirtualClock, clients: GoogleClients, db: datetime
) -> None:
    client = clients.sql_instances()
    first = client.get_latest_recovery_time(request={"project": P, "instance": DB})
    assert first.earliest_recovery_time == db - timedelta(days=7)
    assert first.latest_recovery_time == clock.now() - timedelta(seconds=5)
    clock.advance(120)
    later = client.get_latest_recovery_time(request={"project": P, "instance": DB})
    assert later.latest_recovery_time - first.latest_recovery_time == timedelta(seconds=120)


def test_pitr_clone_runs_pending_running_done_and_creates_the_instance(
    world: World, clock: VirtualClock, clients: GoogleClients, db: datetime
) -> None:
    point = db + timedelta(minutes=30)
    op = _clone(clients, "pegasus-db-eu-pitr", point)
    assert op.status == Status.PENDING
    assert op.operation_type == sql.Operation.SqlOperationType.CLONE
    assert op.target_id == "pegasus-db-eu-pitr"
    pending = clients.sql_instances().get(request={"project": P, "instance": "pegasus-db-eu-pitr"})
    assert pending.state == InstanceState.PENDING_CREATE
    assert not pending.ip_addresses
    clock.advance(world.timings.sql_pending)
    running = _operation(clients, op.name)
    assert running.status == Status.RUNNING
    assert running.start_time
    clock.advance(world.timings.sql_clone)
    done = _operation(clients, op.name)
    assert done.status == Status.DONE
    assert not done.error.errors
    clone = clients.sql_instances().get(request={"project": P, "instance": "pegasus-db-eu-pitr"})
    assert clone.state == InstanceState.RUNNABLE
    assert clone.gce_zone == "europe-west1-c"
    assert clone.ip_addresses[0].ip_address
    record = world.sql.instance(P, "pegasus-db-eu-pitr")
    assert record.data_as_of == point
    assert record.cloned_from == DB
    (write,) = world.recorder.writes("sqladmin")
    assert write.method == "instances.clone"
    assert write.error is None
    assert write.request == {
        "project": P,
        "instance": DB,
        "body": {
            "cloneContext": {
                "destinationInstanceName": "pegasus-db-eu-pitr",
                "pointInTime": "2026-01-15T14:30:00Z",
                "preferredZone": "europe-west1-c",
            }
        },
    }


def test_one_operation_per_instance_at_a_time(
    world: World, clock: VirtualClock, clients: GoogleClients, db: datetime
) -> None:
    _clone(clients, "clone-one")
    with pytest.raises(exceptions.Conflict) as err:
        _clone(clients, "clone-two")
    assert err.value.errors[0]["reason"] == "operationInProgress"
    assert "another operation was already in progress" in err.value.message
    assert [w.error for w in world.recorder.writes("sqladmin")] == [None, "ABORTED"]
    clock.advance(world.timings.sql_pending + world.timings.sql_clone)
    second = _clone(clients, "clone-two")  # free again once the first is DONE
    pager = clients.sql_operations().list(request={"project": P, "instance": "clone-two"})
    assert [op.name for page in pager.pages for op in page.items] == [second.name]
    everything = clients.sql_operations().list(request={"project": P})
    statuses = [op.status for page in everything.pages for op in page.items]
    assert statuses == [Status.PENDING, Status.DONE]  # newest first


def test_clone_refusals(
    world: World, clock: VirtualClock, clients: GoogleClients, db: datetime
) -> None:
    world.sql.create_instance(P, "taken")
    with pytest.raises(exceptions.Conflict) as exists:
        _clone(clients, "taken")
    assert exists.value.errors[0]["reason"] == "instanceAlreadyExists"
    with pytest.raises(exceptions.BadRequest, match="outside the recovery window"):
        _clone(clients, "too-old", db - timedelta(days=8))
    with pytest.raises(exceptions.BadRequest, match="outside the recovery window"):
        _clone(clients, "too-new", clock.now())  # latestRecoveryTime lags the clock
    with pytest.raises(exceptions.BadRequest, match="invalid"):
        _clone(clients, "Bad_Name")
    world.sql.set_instance_state(P, DB, "SUSPENDED")
    with pytest.raises(exceptions.BadRequest) as state:
        _clone(clients, "from-suspended")
    assert state.value.errors[0]["reason"] == "invalidState"
    assert world.sql.operations() == []
    assert [w.error for w in world.recorder.writes("sqladmin")] == [
        "ALREADY_EXISTS",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "FAILED_PRECONDITION",
    ]


def test_legacy_pitr_timestamp_ms_is_honoured(
    world: World, clients: GoogleClients, db: datetime
) -> None:
    point = db + timedelta(minutes=10)
    ctx = {
        "destination_instance_name": "legacy",
        "pitr_timestamp_ms": int(point.timestamp() * 1000),
    }
    clients.sql_instances().clone(
        request={"project": P, "instance": DB, "body": {"clone_context": ctx}}
    )
    assert world.sql.instance(P, "legacy").data_as_of == point


def test_a_failed_clone_ends_done_with_an_error_and_no_instance(
    world: World, clock: VirtualClock, clients: GoogleClients, db: datetime
) -> None:
    world.sql.fail_next_operation("ERROR_RDBMS", "The clone failed.")
    op = _clone(clients, "doomed", db + timedelta(minutes=5))
    clock.advance(world.timings.sql_pending + world.timings.sql_clone)
    done = _operation(clients, op.name)
    assert done.status == Status.DONE
    assert [(e.code, e.message) for e in done.error.errors] == [
        ("ERROR_RDBMS", "The clone failed.")
    ]
    with pytest.raises(exceptions.NotFound):
        clients.sql_instances().get(request={"project": P, "instance": "doomed"})


def test_restore_backup_overwrites_in_place_and_loses_pitr_logs(
    world: World, clock: VirtualClock, clients: GoogleClients, db: datetime
) -> None:
    runs = list(clients.sql_backup_runs().list(request={"project": P, "instance": DB}))
    assert [r.end_time for r in runs] == [db - timedelta(hours=11), db - timedelta(hours=35)]
    assert runs[0].status == sql.SqlBackupRunStatus.SUCCESSFUL
    op = clients.sql_instances().restore_backup(
        request={
            "project": P,
            "instance": DB,
            "body": {"restore_backup_context": {"backup_run_id": runs[0].id}},
        }
    )
    assert op.operation_type == sql.Operation.SqlOperationType.RESTORE_VOLUME
    clock.advance(world.timings.sql_pending + world.timings.sql_restore)
    assert _operation(clients, op.name).status == Status.DONE
    record = world.sql.instance(P, DB)
    assert record.data_as_of == db - timedelta(hours=11)
    assert record.restored_backup == runs[0].id
    window = clients.sql_instances().get_latest_recovery_time(
        request={"project": P, "instance": DB}
    )
    assert window.earliest_recovery_time == clock.now()  # the PITR logs are gone
    with pytest.raises(exceptions.NotFound, match="backup run does not exist"):
        clients.sql_instances().restore_backup(
            request={
                "project": P,
                "instance": DB,
                "body": {"restore_backup_context": {"backup_run_id": 12345}},
            }
        )


def test_unknown_operation_and_bad_json(clients: GoogleClients, db: datetime) -> None:
    with pytest.raises(exceptions.NotFound, match="operation does not exist"):
        _operation(clients, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(exceptions.BadRequest, match="Missing required field"):
        clients.sql_instances().clone(request={"project": P, "instance": DB, "body": {}})


def test_faults_and_call_counts(world: World, clients: GoogleClients, db: datetime) -> None:
    world.faults.arm(Fault("sqladmin", "instances.get", code="UNAVAILABLE", times=1))
    with pytest.raises(exceptions.ServiceUnavailable):
        clients.sql_instances().get(request={"project": P, "instance": DB})
    world.faults.arm(Fault("sqladmin", "instances.clone", code="RESOURCE_EXHAUSTED", times=1))
    with pytest.raises(exceptions.TooManyRequests):
        _clone(clients, "throttled")
    assert world.recorder.writes("sqladmin") == []
    assert clients.sql_instances().get(request={"project": P, "instance": DB}).name == DB
    assert world.recorder.counts()[("sqladmin", "instances.get")] == 2
