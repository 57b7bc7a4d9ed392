"""Cloud SQL records, Google's Cloud SQL error shapes, and rendering as v1beta4 messages.

Cloud SQL Admin is an older API: its errors carry a legacy `reason` ("operationInProgress",
"instanceAlreadyExists", "invalidState") that clients and people match on, and its
operations are its own `sql#operation` resources. This module keeps those shapes in one
place for `cloudsql` (the logic) and `cloudsql_rest` (the wire).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from google.cloud import sqladmin_v1beta4 as sql

from guard.sim.protoutil import enum_member, stable_hex, timestamp

API_ROOT = "https://sqladmin.googleapis.com/sql/v1beta4"

#: Called when an operation ends: (end time, succeeded).
Finish = Callable[[datetime, bool], None]


class SqlError(Exception):
    """A Cloud SQL Admin error: HTTP status, legacy reason, message (and an optional
    canonical status name, which Google's front end adds to errors it raises itself)."""

    def __init__(self, http: int, reason: str, message: str, status: str | None = None) -> None:
        super().__init__(f"{http} {reason}: {message}")
        self.http = http
        self.reason = reason
        self.message = message
        self.status = status

    @property
    def canonical(self) -> str:
        """The canonical code name this error corresponds to (for the write record)."""
        if self.status is not None:
            return self.status
        by_reason = {
            "operationInProgress": "ABORTED",
            "instanceAlreadyExists": "ALREADY_EXISTS",
            "invalidState": "FAILED_PRECONDITION",
        }
        by_http = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
        return by_reason.get(self.reason) or by_http.get(self.http, "UNKNOWN")

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {
            "code": self.http,
            "message": self.message,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        }
        if self.status is not None:
            error["status"] = self.status
        return {"error": error}


def not_found() -> SqlError:
    return SqlError(404, "instanceDoesNotExist", "The Cloud SQL instance does not exist.")


def in_progress() -> SqlError:
    return SqlError(
        409,
        "operationInProgress",
        "Operation failed because another operation was already in progress. Try your request "
        "after the current operation is complete.",
    )


@dataclass
class SqlInstanceRecord:
    """One instance; `data_as_of` is the instant its data reflects (None: live data)."""

    project: str
    name: str
    region: str
    zone: str
    database_version: str
    tier: str
    created: datetime
    ip_address: str
    pitr_enabled: bool
    earliest_recovery: datetime
    state: str = "RUNNABLE"
    cloned_from: str | None = None
    data_as_of: datetime | None = None
    restored_backup: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.project, self.name)

    @property
    def connection_name(self) -> str:
        return f"{self.project}:{self.region}:{self.name}"


@dataclass
class BackupRunRecord:
    id: int
    project: str
    instance: str
    end: datetime
    kind: str = "AUTOMATED"
    duration: timedelta = timedelta(minutes=4)

    def render(self, instance: SqlInstanceRecord) -> sql.BackupRun:
        start = self.end - self.duration
        return sql.BackupRun(
            kind="sql#backupRun",
            status=sql.SqlBackupRunStatus.SUCCESSFUL,
            enqueued_time=timestamp(start),
            id=self.id,
            start_time=timestamp(start),
            end_time=timestamp(self.end),
            type_=enum_member(sql.SqlBackupRunType, self.kind),
            window_start_time=timestamp(start),
            instance=self.instance,
            self_link=f"{API_ROOT}/projects/{self.project}/instances/{self.instance}"
            f"/backupRuns/{self.id}",
            location=instance.region.split("-", 1)[0],
            backup_kind=sql.SqlBackupKind.SNAPSHOT,
            database_version=enum_member(sql.SqlDatabaseVersion, instance.database_version),
        )


@dataclass
class SqlOperationRecord:
    """One operation: PENDING until `starts`, RUNNING until `ends` (scenario seconds)."""

    name: str
    project: str
    target: str
    kind: str
    inserted: float
    starts: float
    ends: float
    finish: Finish
    error: tuple[str, str] | None = None  # (code, message) it ends with, if it fails
    locks: set[tuple[str, str]] = field(default_factory=set)
    applied: bool = False


def render_instance(rec: SqlInstanceRecord) -> sql.DatabaseInstance:
    backup = sql.BackupConfiguration(
        kind="sql#backupConfiguration",
        enabled=True,
        start_time="03:00",
        point_in_time_recovery_enabled=rec.pitr_enabled,
        transaction_log_retention_days=7,
    )
    settings = sql.Settings(
        kind="sql#settings",
        tier=rec.tier,
        settings_version=1,
        availability_type=sql.SqlAvailabilityType.ZONAL,
        pricing_plan=sql.SqlPricingPlan.PER_USE,
        activation_policy=sql.Settings.SqlActivationPolicy.ALWAYS,
        backup_configuration=backup,
        ip_configuration=sql.IpConfiguration(ipv4_enabled=False),
        location_preference=sql.LocationPreference(zone=rec.zone, kind="sql#locationPreference"),
        data_disk_size_gb=10,
        data_disk_type=sql.SqlDataDiskType.PD_SSD,
        edition=sql.Settings.Edition.ENTERPRISE,
    )
    out = sql.DatabaseInstance(
        kind="sql#instance",
        state=enum_member(sql.DatabaseInstance.SqlInstanceState, rec.state),
        database_version=enum_member(sql.SqlDatabaseVersion, rec.database_version),
        settings=settings,
        etag=stable_hex(rec.project, rec.name, rec.state, rec.data_as_of, length=64),
        instance_type=sql.SqlInstanceType.CLOUD_SQL_INSTANCE,
        project=rec.project,
        backend_type=sql.SqlBackendType.SECOND_GEN,
        self_link=f"{API_ROOT}/projects/{rec.project}/instances/{rec.name}",
        connection_name=rec.connection_name,
        name=rec.name,
        region=rec.region,
        gce_zone=rec.zone,
        create_time=timestamp(rec.created),
        service_account_email_address=(
            f"p{stable_hex(rec.project, length=12)}-abcdef@gcp-sa-cloud-sql.iam.gserviceaccount.com"
        ),
    )
    if rec.state != "PENDING_CREATE":
        out.ip_addresses = [
            sql.IpMapping(type_=sql.SqlIpAddressType.PRIVATE, ip_address=rec.ip_address)
        ]
    return out


def render_operation(op: SqlOperationRecord, now: float, epoch: datetime) -> sql.Operation:
    """The operation as `operations.get` returns it at scenario second `now`."""
    out = sql.Operation(
        kind="sql#operation",
        target_link=f"{API_ROOT}/projects/{op.project}/instances/{op.target}",
        insert_time=timestamp(epoch + timedelta(seconds=op.inserted)),
        operation_type=enum_member(sql.Operation.SqlOperationType, op.kind),
        name=op.name,
        target_id=op.target,
        self_link=f"{API_ROOT}/projects/{op.project}/operations/{op.name}",
        target_project=op.project,
    )
    if now < op.starts:
        out.status = enum_member(sql.Operation.SqlOperationStatus, "PENDING")
        return out
    out.start_time = timestamp(epoch + timedelta(seconds=op.starts))
    if not op.applied:
        out.status = enum_member(sql.Operation.SqlOperationStatus, "RUNNING")
        return out
    out.status = enum_member(sql.Operation.SqlOperationStatus, "DONE")
    out.end_time = timestamp(epoch + timedelta(seconds=op.ends))
    if op.error is not None:
        code, message = op.error
        out.error = sql.OperationErrors(
            kind="sql#operationErrors",
            errors=[sql.OperationError(kind="sql#operationError", code=code, message=message)],
        )
    return out


def ip_for(project: str, name: str) -> str:
    """A stable private address for an instance."""
    digest = stable_hex(project, name, length=6)
    return f"10.{int(digest[0:2], 16)}.{int(digest[2:4], 16)}.{int(digest[4:6], 16) % 250 + 2}"
