"""A gated database restore, as data: its kinds, states, approvals and ordered steps.

Why: destroying or forking production data must never be the guard's own idea. A restore is
a proposal that does nothing until enough distinct, named approvers say yes; then it runs
as an ordered list of steps, each written as an intent before it runs and an outcome after
(the same exactly-once discipline as the incident's actions), so a guard killed between two
steps resumes at the first unfinished one and never starts a clone twice. Everything here is
pure (no I/O): the store keeps these records, `guard.service.restores` executes the steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from guard.core.model import ActionStatus


class RestoreKind(StrEnum):
    """Option A as a point-in-time clone (the runbook's preferred path), or the in-place
    restore of the last backup run before the deploy (destructive: it overwrites the
    instance and loses its point-in-time logs)."""

    CLONE = "clone"
    BACKUP = "backup"


class RestoreState(StrEnum):
    PROPOSED = "proposed"  # waiting for approvals; nothing has been written
    APPROVED = "approved"  # enough approvals; the guard will start it
    RUNNING = "running"  # steps are executing
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a step failed: the guard stops and pages; humans take over
    REJECTED = "rejected"  # an approver said no
    EXPIRED = "expired"  # not approved in time: a stale plan is unsafe
    SUPERSEDED = "superseded"  # another restore of the same app started first


#: States a restore never leaves.
FINAL = frozenset(
    {
        RestoreState.SUCCEEDED,
        RestoreState.FAILED,
        RestoreState.REJECTED,
        RestoreState.EXPIRED,
        RestoreState.SUPERSEDED,
    }
)


class RestoreStepKind(StrEnum):
    CLONE = "clone"  # instances.clone to the point in time (a new instance)
    RESTORE_BACKUP = "restore_backup"  # instances.restoreBackup, in place
    WAIT = "wait"  # poll the Cloud SQL operation to DONE
    ADDRESS = "address"  # read the new instance's address
    SECRET = "secret"  # noqa: S105 - a step's name, not a credential. Add a Secret Manager version with the new connection string
    ROLL = "roll"  # one per service: a new revision that reads the new secret version
    VALIDATE = "validate"  # the runbook's post-rollback validation


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Restore:
    """One restore proposal and where it stands. `plan` is the JSON plan shown to humans
    (`guard restore plan`), frozen when the proposal opens: what is approved is what runs."""

    id: str
    app: str
    kind: RestoreKind
    state: RestoreState
    origin: str  # unique: "incident:<id>:<kind>" (escalation) or "human:<id>"
    incident_id: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    required_approvals: int
    plan: Mapping[str, Any]
    updated_at: datetime
    outcome: Mapping[str, Any] | None = None  # why it ended (failed step, rejection, ...)

    @property
    def destructive(self) -> bool:
        return self.kind is RestoreKind.BACKUP


@dataclass(frozen=True, slots=True)
class Vote:
    """One approver's decision on one restore (one vote per approver per restore)."""

    restore_id: str
    approver: str
    decision: Decision
    at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One executed (or intended) step of a restore, as the store keeps it."""

    id: str
    restore_id: str
    step: RestoreStepKind
    key: str  # unique: "<restore id>:<step>[:<service>]"
    status: ActionStatus
    intent: Mapping[str, Any]
    outcome: Mapping[str, Any] | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """A step the plan calls for: its kind and, for a roll, the service."""

    step: RestoreStepKind
    service: str = ""

    def key(self, restore_id: str) -> str:
        return f"{restore_id}:{self.step.value}" + (f":{self.service}" if self.service else "")


def steps_for(kind: RestoreKind, services: Sequence[str]) -> tuple[PlannedStep, ...]:
    """The ordered steps of a restore of `kind` that rolls `services`."""
    rolls = tuple(PlannedStep(RestoreStepKind.ROLL, s) for s in services)
    validate = (PlannedStep(RestoreStepKind.VALIDATE),)
    head: tuple[PlannedStep, ...]
    if kind is RestoreKind.CLONE:
        head = (
            PlannedStep(RestoreStepKind.CLONE),
            PlannedStep(RestoreStepKind.WAIT),
            PlannedStep(RestoreStepKind.ADDRESS),
            PlannedStep(RestoreStepKind.SECRET),
        )
    else:  # in place: same instance, same address, same secret; roll to reconnect cleanly
        head = (PlannedStep(RestoreStepKind.RESTORE_BACKUP), PlannedStep(RestoreStepKind.WAIT))
    return head + rolls + validate


def next_step(
    restore_id: str, planned: Sequence[PlannedStep], done: Iterable[StepRecord]
) -> tuple[PlannedStep | None, StepRecord | None]:
    """The first planned step not yet succeeded, and its record if one was intended.

    Returns (None, record) when a step failed (the restore stops there) and (None, None)
    when every step succeeded.
    """
    by_key = {r.key: r for r in done}
    for step in planned:
        record = by_key.get(step.key(restore_id))
        if record is None or record.status is ActionStatus.INTENDED:
            return step, record
        if record.status is ActionStatus.FAILED:
            return None, record
    return None, None


@dataclass(frozen=True, slots=True)
class Tally:
    """Where a restore's approvals stand."""

    approvers: tuple[str, ...]  # distinct approvers who approved, in order
    rejected_by: str | None
    required: int

    @property
    def enough(self) -> bool:
        return self.rejected_by is None and len(self.approvers) >= self.required


def tally(votes: Iterable[Vote], required: int) -> Tally:
    """Count distinct approvers; any rejection decides."""
    approvers: list[str] = []
    rejected_by: str | None = None
    for vote in sorted(votes, key=lambda v: v.at):
        if vote.decision is Decision.REJECT and rejected_by is None:
            rejected_by = vote.approver
        elif vote.decision is Decision.APPROVE and vote.approver not in approvers:
            approvers.append(vote.approver)
    return Tally(tuple(approvers), rejected_by, required)


#: Cloud Run revision names: at most 63 characters.
_MAX_REVISION = 63


def restore_revision_name(service: str, restore_id: str) -> str:
    """The revision a restore's roll creates: `<service>-restore-<id8>`.

    Cloud Run wants the service's name as the prefix and at most 63 characters; a service
    name near its 49-character limit gets the short form `<service>-rs-<id8>`. Deterministic,
    so a roll resumed after a crash finds the revision it already created.
    """
    name = f"{service}-restore-{restore_id[:8]}"
    return name if len(name) <= _MAX_REVISION else f"{service}-rs-{restore_id[:8]}"
