"""The fake Cloud SQL Admin (v1beta4): instances, PITR clones, backup restores, operations.

The guard's gated restore (Option A) is a point-in-time clone to a new instance, polled
through Cloud SQL's own Operation (PENDING -> RUNNING -> DONE, then `error`), never a
google.longrunning one; Option B's dangerous sibling is restoreBackup in place. Both must fail
here the way they fail on Google: a point outside [earliestRecoveryTime, latestRecoveryTime],
a source that is not RUNNABLE, a destination that exists (409), a second operation on a busy
instance (409 operationInProgress). The scenario engine reads `SqlInstanceRecord.data_as_of`
to know which schema a database (a clone especially) holds. Served over REST by
`cloudsql_rest`, because Google's public endpoint for this API only answers REST.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from google.cloud import sqladmin_v1beta4 as sql

from guard.sim import cloudsql_writes
from guard.sim.clock import SimClock
from guard.sim.cloudsql_model import (
    BackupRunRecord,
    SqlError,
    SqlInstanceRecord,
    SqlOperationRecord,
    ip_for,
    not_found,
    render_instance,
    render_operation,
)
from guard.sim.faults import FakeCloudError
from guard.sim.protoutil import enum_member, paginate

T = TypeVar("T")


@dataclass
class SqlState:
    """Cloud SQL instances, backup runs and operations of one fake cloud.

    `pending_seconds` an operation waits before RUNNING; `clone_seconds` and
    `restore_seconds` it runs before DONE; `recovery_lag` how far latestRecoveryTime trails
    the clock (Google's RPO is "usually under 5 minutes").
    """

    clock: SimClock
    pending_seconds: float = 2.0
    clone_seconds: float = 420.0
    restore_seconds: float = 600.0
    recovery_lag: float = 5.0
    # The tables, shared with `cloudsql_writes`; hold `lock` to touch them.
    records: dict[tuple[str, str], SqlInstanceRecord] = field(default_factory=dict)
    ops: dict[str, SqlOperationRecord] = field(default_factory=dict)
    backup_runs: dict[tuple[str, str], list[BackupRunRecord]] = field(default_factory=dict)
    fail_next: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- scenario side ----------------------------------------------------------------------

    def create_instance(
        self,
        project: str,
        name: str,
        *,
        region: str = "europe-west1",
        database_version: str = "POSTGRES_15",
        tier: str = "db-custom-2-7680",
        earliest_recovery: datetime | None = None,
        pitr_enabled: bool = True,
        backups: Sequence[datetime] = (),
    ) -> SqlInstanceRecord:
        """A RUNNABLE instance; its recovery window opens at `earliest_recovery` (default
        7 days ago) and closes `recovery_lag` before now; `backups` are the end times of
        successful automated backup runs."""
        now = self.clock.now()
        record = SqlInstanceRecord(
            project=project,
            name=name,
            region=region,
            zone=f"{region}-b",
            database_version=database_version,
            tier=tier,
            created=now,
            ip_address=ip_for(project, name),
            pitr_enabled=pitr_enabled,
            earliest_recovery=earliest_recovery or now - timedelta(days=7),
        )
        with self.lock:
            if (project, name) in self.records:
                raise ValueError(f"instance {project}:{name} already exists")
            self.records[(project, name)] = record
        for end in backups:
            self.add_backup_run(project, name, end)
        return record

    def add_backup_run(
        self, project: str, instance: str, end: datetime, *, kind: str = "AUTOMATED"
    ) -> int:
        """A successful backup run that ended at `end`; its id."""
        with self.lock:
            runs = self.backup_runs.setdefault((project, instance), [])
            run_id = int(end.timestamp() * 1000) + len(runs)
            runs.append(BackupRunRecord(run_id, project, instance, end, kind=kind))
            return run_id

    def set_instance_state(self, project: str, name: str, state: str) -> None:
        """E.g. "SUSPENDED" or "MAINTENANCE": a source that cannot be cloned."""
        enum_member(sql.DatabaseInstance.SqlInstanceState, state)  # KeyError if no such state
        with self.lock:
            self.record(project, name).state = state

    def fail_next_operation(
        self, code: str = "INTERNAL_ERROR", message: str = "An internal error has occurred."
    ) -> None:
        """The next operation started ends DONE with this error (a failed clone leaves no
        destination instance)."""
        with self.lock:
            self.fail_next.append((code, message))

    def instance(self, project: str, name: str) -> SqlInstanceRecord:
        with self.lock:
            self.settle()
            return self.record(project, name)

    def instances(self) -> list[SqlInstanceRecord]:
        """Every instance (clones included), oldest first."""
        with self.lock:
            self.settle()
            return list(self.records.values())

    def recovery_window(self, project: str, name: str) -> tuple[datetime, datetime]:
        """(earliestRecoveryTime, latestRecoveryTime) now."""
        with self.lock:
            return self.window(self.record(project, name))

    def operations(self) -> list[SqlOperationRecord]:
        with self.lock:
            self.settle()
            return list(self.ops.values())

    def settle(self) -> None:
        """Apply every operation whose end time has passed, earliest first."""
        with self.lock:
            now = self.clock.elapsed()
            due = [op for op in self.ops.values() if not op.applied and op.ends <= now]
            for op in sorted(due, key=lambda o: o.ends):
                op.applied = True
                at = self.clock.epoch + timedelta(seconds=op.ends)
                op.finish(at, op.error is None)

    # -- API side (raise SqlError; the REST layer renders it) ---------------------------------

    def get_instance(self, project: str, name: str) -> sql.DatabaseInstance:
        with self.lock:
            self.settle()
            return render_instance(self.record(project, name))

    def list_instances(
        self, project: str, max_results: int, page_token: str
    ) -> sql.InstancesListResponse:
        with self.lock:
            self.settle()
            found = [
                render_instance(i) for (p, _), i in sorted(self.records.items()) if p == project
            ]
        page, token = _page(found, max_results, page_token)
        return sql.InstancesListResponse(
            kind="sql#instancesList", items=page, next_page_token=token
        )

    def latest_recovery_time(
        self, project: str, name: str
    ) -> sql.SqlInstancesGetLatestRecoveryTimeResponse:
        with self.lock:
            self.settle()
            instance = self.record(project, name)
            if not instance.pitr_enabled:
                raise SqlError(
                    400, "invalid", "Invalid request: point-in-time recovery is not enabled."
                )
            earliest, latest = self.window(instance)
            return sql.SqlInstancesGetLatestRecoveryTimeResponse(
                kind="sql#getLatestRecoveryTime",
                earliest_recovery_time=earliest,
                latest_recovery_time=latest,
            )

    def clone(self, project: str, name: str, body: sql.InstancesCloneRequest) -> sql.Operation:
        return cloudsql_writes.clone(self, project, name, body)

    def restore_backup(
        self, project: str, name: str, body: sql.InstancesRestoreBackupRequest
    ) -> sql.Operation:
        return cloudsql_writes.restore_backup(self, project, name, body)

    def list_backup_runs(
        self, project: str, name: str, max_results: int, page_token: str
    ) -> sql.BackupRunsListResponse:
        with self.lock:
            instance = self.record(project, name)
            runs = sorted(
                self.backup_runs.get((project, name), []), key=lambda r: r.end, reverse=True
            )
            items = [r.render(instance) for r in runs]
        page, token = _page(items, max_results, page_token)
        return sql.BackupRunsListResponse(
            kind="sql#backupRunsList", items=page, next_page_token=token
        )

    def get_operation(self, project: str, name: str) -> sql.Operation:
        with self.lock:
            self.settle()
            op = self.ops.get(name)
            if op is None or op.project != project:
                raise SqlError(
                    404, "operationDoesNotExist", "The Cloud SQL operation does not exist."
                )
            return render_operation(op, self.clock.elapsed(), self.clock.epoch)

    def list_operations(
        self, project: str, instance: str, max_results: int, page_token: str
    ) -> sql.OperationsListResponse:
        with self.lock:
            self.settle()
            if instance:
                self.record(project, instance)
            ops = [
                render_operation(op, self.clock.elapsed(), self.clock.epoch)
                for op in sorted(self.ops.values(), key=lambda o: o.inserted, reverse=True)
                if op.project == project and instance in ("", op.target)
            ]
        page, token = _page(ops, max_results, page_token)
        return sql.OperationsListResponse(
            kind="sql#operationsList", items=page, next_page_token=token
        )

    # -- internals --------------------------------------------------------------------------

    def record(self, project: str, name: str) -> SqlInstanceRecord:
        found = self.records.get((project, name))
        if found is None:
            raise not_found()
        return found

    def window(self, instance: SqlInstanceRecord) -> tuple[datetime, datetime]:
        latest = self.clock.now() - timedelta(seconds=self.recovery_lag)
        return instance.earliest_recovery, max(latest, instance.earliest_recovery)


def _page(items: list[T], max_results: int, page_token: str) -> tuple[list[T], str]:
    try:
        return paginate(items, max_results, page_token, default=500, maximum=500)
    except FakeCloudError as err:
        raise SqlError(400, "invalid", err.message) from None
