"""The two Cloud SQL writes the guard's restore can make: a PITR clone and restoreBackup.

Split from `cloudsql` because these carry the checks that decide whether a restore proposal
is executable: the source must be RUNNABLE and idle (one operation per instance: 409
operationInProgress), the destination must not exist (409 instanceAlreadyExists), and a point
in time must lie inside [earliestRecoveryTime, latestRecoveryTime]. Each starts a Cloud SQL
operation whose effect lands only when it is DONE.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from google.cloud import sqladmin_v1beta4 as sql

from guard.sim.cloudsql_model import (
    Finish,
    SqlError,
    SqlInstanceRecord,
    SqlOperationRecord,
    in_progress,
    ip_for,
    render_operation,
)
from guard.sim.protoutil import rfc3339

if TYPE_CHECKING:  # the state delegates its writes here
    from guard.sim.cloudsql import SqlState

_MAX_NAME = 98
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def clone(
    state: SqlState, project: str, name: str, body: sql.InstancesCloneRequest
) -> sql.Operation:
    """instances.clone: a new instance from `name`, at a point in time when one is given."""
    ctx = body.clone_context
    with state.lock:
        state.settle()
        source = state.record(project, name)
        if "clone_context" not in body or not ctx.destination_instance_name:
            raise SqlError(
                400, "required", "Missing required field: cloneContext.destinationInstanceName."
            )
        dest_project, dest_name = ctx.destination_project or project, ctx.destination_instance_name
        if not _valid_name(dest_name):
            raise SqlError(
                400, "invalid", f"Invalid request: instance name '{dest_name}' is invalid."
            )
        if source.state != "RUNNABLE":
            raise _invalid_state()
        _check_idle(state, source)
        if (dest_project, dest_name) in state.records:
            raise SqlError(409, "instanceAlreadyExists", "The Cloud SQL instance already exists.")
        point = _point_in_time(state, source, ctx)
        now = state.clock.now()
        dest = SqlInstanceRecord(
            project=dest_project,
            name=dest_name,
            region=source.region,
            zone=ctx.preferred_zone or source.zone,
            database_version=source.database_version,
            tier=source.tier,
            created=now,
            ip_address=ip_for(dest_project, dest_name),
            pitr_enabled=source.pitr_enabled,
            earliest_recovery=now,
            state="PENDING_CREATE",
            cloned_from=source.name,
            data_as_of=point or now,
        )
        state.records[dest.key] = dest

        def finish(at: datetime, ok: bool) -> None:
            if ok:
                dest.state, dest.earliest_recovery = "RUNNABLE", at
            else:  # a failed clone leaves nothing behind
                state.records.pop(dest.key, None)

        op = _start(state, "CLONE", dest, state.clone_seconds, finish, also_locks=source)
        return render_operation(op, state.clock.elapsed(), state.clock.epoch)


def restore_backup(
    state: SqlState, project: str, name: str, body: sql.InstancesRestoreBackupRequest
) -> sql.Operation:
    """instances.restoreBackup: overwrite `name` in place with a backup run's data."""
    ctx = body.restore_backup_context
    with state.lock:
        state.settle()
        target = state.record(project, name)
        if "restore_backup_context" not in body or not ctx.backup_run_id:
            raise SqlError(
                400, "required", "Missing required field: restoreBackupContext.backupRunId."
            )
        source = (ctx.project or project, ctx.instance_id or name)
        runs = state.backup_runs.get(source, [])
        run = next((r for r in runs if r.id == ctx.backup_run_id), None)
        if run is None:
            raise SqlError(404, "backupRunDoesNotExist", "The backup run does not exist.")
        if target.state != "RUNNABLE":
            raise _invalid_state()
        _check_idle(state, target)

        def finish(at: datetime, ok: bool) -> None:
            if ok:  # the instance now holds the backup, and its PITR logs are gone
                target.data_as_of, target.restored_backup = run.end, run.id
                target.earliest_recovery = at

        op = _start(state, "RESTORE_VOLUME", target, state.restore_seconds, finish)
        return render_operation(op, state.clock.elapsed(), state.clock.epoch)


def _check_idle(state: SqlState, instance: SqlInstanceRecord) -> None:
    if any(not op.applied and instance.key in op.locks for op in state.ops.values()):
        raise in_progress()


def _point_in_time(
    state: SqlState, source: SqlInstanceRecord, ctx: sql.CloneContext
) -> datetime | None:
    if "point_in_time" in ctx:
        point: datetime = ctx.point_in_time
    elif ctx.pitr_timestamp_ms:  # the legacy field, still accepted
        point = datetime.fromtimestamp(ctx.pitr_timestamp_ms / 1000, tz=UTC)
    else:
        return None
    if not source.pitr_enabled:
        raise SqlError(
            400,
            "invalid",
            "Invalid request: point-in-time recovery is not enabled on the source instance.",
        )
    earliest, latest = state.window(source)
    if not earliest <= point <= latest:
        raise SqlError(
            400,
            "invalid",
            f"Invalid request: the point in time {rfc3339(point)} is outside the recovery "
            f"window of the instance [{rfc3339(earliest)}, {rfc3339(latest)}].",
        )
    return point


def _start(
    state: SqlState,
    kind: str,
    target: SqlInstanceRecord,
    duration: float,
    finish: Finish,
    *,
    also_locks: SqlInstanceRecord | None = None,
) -> SqlOperationRecord:
    now = state.clock.elapsed()
    op = SqlOperationRecord(
        name=str(uuid.uuid4()),
        project=target.project,
        target=target.name,
        kind=kind,
        inserted=now,
        starts=now + state.pending_seconds,
        ends=now + state.pending_seconds + duration,
        finish=finish,
        error=state.fail_next.pop(0) if state.fail_next else None,
        locks={target.key} | ({also_locks.key} if also_locks else set()),
    )
    state.ops[op.name] = op
    return op


def _invalid_state() -> SqlError:
    return SqlError(
        400,
        "invalidState",
        "The instance or operation is not in an appropriate state to handle the request.",
    )


def _valid_name(name: str) -> bool:
    return (
        0 < len(name) <= _MAX_NAME
        and "a" <= name[0] <= "z"
        and set(name) <= _NAME_CHARS
        and not name.endswith("-")
    )
