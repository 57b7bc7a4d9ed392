"""Cloud SQL Admin: the recoverable window a restore needs, then its clone or backup restore.

Restoring the database is the one step no traffic move can replace: after a bad migration the
last good code meets the new schema. Google only restores to a point in time by cloning to a
*new* instance (`instances.clone` with `cloneContext.pointInTime`); `restoreBackup` overwrites
an instance in place. Both return Cloud SQL's own `Operation` (PENDING -> RUNNING -> DONE, then
`error`), not a google.longrunning one, so this adapter polls `operations.get` itself.

Cloud SQL Admin is reached over REST (v1beta4; its public endpoint answers only REST), whose
client is synchronous: every call runs in a worker thread. Its errors are older than the
canonical codes: a 409 `operationInProgress` body carries no `status`, only a legacy
`reason`, so the canonical code is derived from the body's `status` when there is one, else
from the reason, else from the HTTP status; the reason is kept, because callers (and people)
match on it. Reads retry transient errors a few times; the writes (clone, restoreBackup) are
never retried here: a clone that timed out may have started, and only the caller, who can
look for the destination instance, may decide to send it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from google.api_core import exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import sqladmin_v1beta4 as sqladmin

from guard.adapters.google_clients import GoogleClients

CallCounter = Callable[[str, str], None]
T = TypeVar("T")
TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL"})
#: Legacy reasons that say more than their HTTP status does.
_BY_REASON = {
    "instanceAlreadyExists": "ALREADY_EXISTS",
    "operationInProgress": "ABORTED",
    "invalidState": "FAILED_PRECONDITION",
}
#: google.rpc's HTTP mapping, for errors that carry neither status nor a known reason.
_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True, slots=True)
class SqlOperation:
    """A Cloud SQL operation as last read."""

    name: str  # what operations.get takes
    status: str  # "PENDING" | "RUNNING" | "DONE"
    error: str | None  # DONE with an error: its messages joined with "; "
    target: str  # targetId, the instance the operation works on
    kind: str  # operationType, e.g. "CLONE", "RESTORE_VOLUME"

    @property
    def done(self) -> bool:
        return self.status == "DONE"


@dataclass(frozen=True, slots=True)
class SqlInstance:
    name: str
    state: str  # e.g. RUNNABLE, PENDING_CREATE
    ip_address: str | None  # the private address if any, else the first; None before one
    connection_name: str  # project:region:instance
    region: str


@dataclass(frozen=True, slots=True)
class BackupRun:
    id: int
    status: str  # SUCCESSFUL, FAILED, ...
    start: datetime | None
    end: datetime | None
    window_start: datetime | None
    kind: str  # AUTOMATED | ON_DEMAND


class SqlCallError(Exception):
    """A Cloud SQL Admin call failed: canonical code (ALREADY_EXISTS, NOT_FOUND,
    FAILED_PRECONDITION, INVALID_ARGUMENT, UNAVAILABLE, ...), the API's legacy reason when
    present (e.g. instanceAlreadyExists, operationInProgress) and message."""

    def __init__(self, code: str, reason: str, message: str) -> None:
        super().__init__(f"{code} ({reason}): {message}" if reason else f"{code}: {message}")
        self.code, self.reason, self.message = code, reason, message


class CloudSqlAdmin:
    """Clones, restores and the reads around them; failures raise `SqlCallError`."""

    def __init__(
        self,
        clients: GoogleClients,
        *,
        on_call: CallCounter | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.2,
    ) -> None:
        self._clients = clients
        self._on_call = on_call or (lambda method, code: None)
        self.timeout = timeout
        self.attempts, self.backoff = max(1, attempts), backoff

    # -- reads ------------------------------------------------------------------------------

    async def recovery_window(
        self, project: str, instance: str
    ) -> tuple[datetime, datetime] | None:
        """(earliestRecoveryTime, latestRecoveryTime) of `instance`, or None if unreadable:
        a restore proposal then says the window is unknown; this never raises into the
        responder."""
        request = sqladmin.SqlInstancesGetLatestRecoveryTimeRequest(
            project=project, instance=instance
        )
        try:
            got = await self._read(
                "instances.getLatestRecoveryTime",
                partial(
                    self._clients.sql_instances().get_latest_recovery_time,
                    request=request,
                    retry=None,
                    timeout=self.timeout,
                ),
            )
        except SqlCallError:
            return None
        earliest: datetime = got.earliest_recovery_time
        latest: datetime = got.latest_recovery_time
        return earliest, latest

    async def instance(self, project: str, name: str) -> SqlInstance | None:
        """The instance, or None when it does not exist (404)."""
        request = sqladmin.SqlInstancesGetRequest(project=project, instance=name)
        try:
            got = await self._read(
                "instances.get",
                partial(
                    self._clients.sql_instances().get,
                    request=request,
                    retry=None,
                    timeout=self.timeout,
                ),
            )
        except SqlCallError as err:
            if err.code == "NOT_FOUND":
                return None
            raise
        return _instance(got)

    async def backup_runs(self, project: str, instance: str) -> list[BackupRun]:
        """Every backup run of `instance` (all pages), newest first as the API lists them."""
        runs: list[BackupRun] = []
        token = ""
        while True:
            request = sqladmin.SqlBackupRunsListRequest(
                project=project, instance=instance, page_token=token
            )
            page = await self._read(
                "backupRuns.list",
                partial(
                    self._clients.sql_backup_runs().list,
                    request=request,
                    retry=None,
                    timeout=self.timeout,
                ),
            )
            runs.extend(_backup_run(item) for item in page.items)
            token = page.next_page_token
            if not token:
                return runs

    async def operation(self, project: str, name: str) -> SqlOperation:
        request = sqladmin.SqlOperationsGetRequest(project=project, operation=name)
        got = await self._read(
            "operations.get",
            partial(
                self._clients.sql_operations().get,
                request=request,
                retry=None,
                timeout=self.timeout,
            ),
        )
        return _operation(got)

    async def operations(self, project: str, instance: str) -> list[SqlOperation]:
        """The operations on `instance` (all pages), newest first."""
        ops: list[SqlOperation] = []
        token = ""
        while True:
            request = sqladmin.SqlOperationsListRequest(
                project=project, instance=instance, page_token=token
            )
            page = await self._read(
                "operations.list",
                partial(
                    self._clients.sql_operations().list,
                    request=request,
                    retry=None,
                    timeout=self.timeout,
                ),
            )
            ops.extend(_operation(item) for item in page.items)
            token = page.next_page_token
            if not token:
                return ops

    async def wait(
        self,
        project: str,
        name: str,
        *,
        limit: float,
        poll: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> SqlOperation:
        """Poll the operation until DONE or `limit` seconds (counted by the sleeps, and by the
        wall clock); the last operation read, which is not done when time ran out."""
        loop = asyncio.get_running_loop()
        started, waited = loop.time(), 0.0
        while True:
            op = await self.operation(project, name)
            if op.done or waited >= limit or loop.time() - started >= limit:
                return op
            await sleep(poll)
            waited += poll

    # -- writes (never retried) -------------------------------------------------------------

    async def clone(
        self, project: str, source: str, destination: str, point_in_time: datetime
    ) -> SqlOperation:
        """Start a point-in-time clone of `source` to the new instance `destination`."""
        request = sqladmin.SqlInstancesCloneRequest(
            project=project,
            instance=source,
            body=sqladmin.InstancesCloneRequest(
                clone_context=sqladmin.CloneContext(
                    destination_instance_name=destination, point_in_time=point_in_time
                )
            ),
        )
        op = await self._once(
            "instances.clone",
            partial(
                self._clients.sql_instances().clone,
                request=request,
                retry=None,
                timeout=self.timeout,
            ),
        )
        return _operation(op)

    async def restore_backup(self, project: str, instance: str, backup_run_id: int) -> SqlOperation:
        """Start overwriting `instance` in place with one of its own backup runs."""
        request = sqladmin.SqlInstancesRestoreBackupRequest(
            project=project,
            instance=instance,
            body=sqladmin.InstancesRestoreBackupRequest(
                restore_backup_context=sqladmin.RestoreBackupContext(
                    backup_run_id=backup_run_id, instance_id=instance, project=project
                )
            ),
        )
        op = await self._once(
            "instances.restoreBackup",
            partial(
                self._clients.sql_instances().restore_backup,
                request=request,
                retry=None,
                timeout=self.timeout,
            ),
        )
        return _operation(op)

    # -- calls ------------------------------------------------------------------------------

    async def _read(self, method: str, call: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._once(method, call)
            except SqlCallError as err:
                if err.code not in TRANSIENT or attempt == self.attempts:
                    raise
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, call: Callable[[], T]) -> T:
        """One call in a worker thread, counted; any failure becomes a `SqlCallError`."""
        try:
            result = await asyncio.to_thread(call)
        except exceptions.GoogleAPICallError as err:
            failure = _call_error(err)
        except auth_exceptions.GoogleAuthError as err:  # credentials could not be refreshed
            transport = isinstance(err, auth_exceptions.TransportError)
            failure = SqlCallError("UNAVAILABLE" if transport else "UNAUTHENTICATED", "", str(err))
        except OSError as err:  # requests' connection errors and timeouts are OSErrors
            timed_out = "timeout" in type(err).__name__.lower()
            failure = SqlCallError(
                "DEADLINE_EXCEEDED" if timed_out else "UNAVAILABLE", "", str(err) or repr(err)
            )
        else:
            self._on_call(method, "OK")
            return result
        self._on_call(method, failure.code)
        raise failure


def _call_error(err: exceptions.GoogleAPICallError) -> SqlCallError:
    body = _error_body(err)
    reason = _reason(err, body)
    status = body.get("status")
    grpc_code = getattr(err, "grpc_status_code", None)
    if isinstance(status, str) and status:
        code = status
    elif reason in _BY_REASON:
        code = _BY_REASON[reason]
    elif grpc_code is not None:
        code = str(grpc_code.name)
    else:
        code = _BY_HTTP.get(int(err.code or 0), f"HTTP_{err.code}")
    message = body.get("message")
    return SqlCallError(code, reason, message if isinstance(message, str) else err.message)


def _error_body(err: exceptions.GoogleAPICallError) -> dict[str, Any]:
    """The `error` object of the REST response, or {} when there is none."""
    response = getattr(err, "response", None)
    try:
        payload = response.json() if response is not None else {}
    except ValueError:
        return {}
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


def _reason(err: exceptions.GoogleAPICallError, body: dict[str, Any]) -> str:
    for item in list(err.errors or ()) + list(body.get("errors") or ()):
        if isinstance(item, dict) and item.get("reason"):
            return str(item["reason"])
    return str(err.reason or "")  # an ErrorInfo in `details`, on newer error bodies


def _name(enum_value: Any) -> str:
    return str(getattr(enum_value, "name", enum_value))


def _operation(op: sqladmin.Operation) -> SqlOperation:
    status = _name(op.status)
    messages = [e.message or e.code for e in op.error.errors] if "error" in op else []
    return SqlOperation(
        name=op.name,
        status=status,
        error="; ".join(messages) if status == "DONE" and messages else None,
        target=op.target_id,
        kind=_name(op.operation_type),
    )


def _instance(inst: sqladmin.DatabaseInstance) -> SqlInstance:
    addresses = list(inst.ip_addresses)
    private = [a for a in addresses if _name(a.type_) == "PRIVATE"]
    chosen = next((a.ip_address for a in private + addresses if a.ip_address), None)
    return SqlInstance(
        name=inst.name,
        state=_name(inst.state),
        ip_address=chosen,
        connection_name=inst.connection_name,
        region=inst.region,
    )


def _backup_run(run: sqladmin.BackupRun) -> BackupRun:
    return BackupRun(
        id=int(run.id),
        status=_name(run.status),
        start=run.start_time,
        end=run.end_time,
        window_start=run.window_start_time,
        kind=_name(run.type_),
    )
