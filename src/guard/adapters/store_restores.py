"""The restore book: gated database restores, their votes and their steps, kept durably.

Why: a restore destroys or forks production data, so every fact about one must survive a
SIGKILL and hold under racing replicas. A restore is one row per `origin` (opening it twice,
from a retry or a second replica, finds the first); each approver votes once (the first
vote stands, so two approvals are always two people); its state moves by compare-and-set
(exactly one of two racing callers starts it, rejects it or expires it); and its steps follow
the intent log's discipline (an intent under a unique key before acting, an outcome once
after). Every change that matters writes its audit line in the same transaction. Split from
`guard.adapters.store` to keep modules short; `SqlStore` mixes it in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from guard.adapters import store_schema as t
from guard.adapters.store_actions import _audit, new_id
from guard.adapters.store_pages import PageOutbox
from guard.core.model import ActionStatus
from guard.core.restore import (
    Decision,
    Restore,
    RestoreKind,
    RestoreState,
    RestoreStepKind,
    StepRecord,
    Vote,
)


def _aware(**times: datetime) -> None:
    """Refuse a naive time up front, with its name (the column would refuse it anyway)."""
    for name, value in times.items():
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {name}={value!r}: the store only takes aware times")


class RestoreBook(PageOutbox):
    """Restores (`restore_*`): opened by the responder or a human, voted on by approvers,
    moved and executed by `guard.service.restores`."""

    # --- restores -------------------------------------------------------------------------

    def restore_open(
        self,
        *,
        app: str,
        kind: RestoreKind,
        origin: str,
        incident_id: str | None,
        created_by: str,
        plan: Mapping[str, Any],
        required_approvals: int,
        at: datetime,
        expires_at: datetime,
        restore_id: str | None = None,
    ) -> tuple[Restore, bool]:
        """Propose a restore for `origin`; an existing origin returns its restore instead.

        Returns (restore, created). The plan is frozen here: what is approved is what runs.
        `restore_id` lets the caller name it first (the plan names revisions after it).
        """
        _aware(at=at, expires_at=expires_at)
        if required_approvals < 1:
            raise ValueError(f"a restore needs at least one approval, not {required_approvals}")
        c = t.restores.c
        stmt = (
            self._insert(t.restores)
            .values(
                id=restore_id or new_id(), app=app, kind=kind.value,
                state=RestoreState.PROPOSED.value,
                origin=origin, incident_id=incident_id, created_by=created_by, created_at=at,
                expires_at=expires_at, updated_at=at, required_approvals=required_approvals,
                plan=t.jsonable(plan), outcome=None,
            )
            .on_conflict_do_nothing(index_elements=["origin"])
            .returning(c.id)
        )  # fmt: skip
        with self._engine.begin() as conn:
            created_id = conn.execute(stmt).scalar_one_or_none()
            if created_id is not None:
                detail = {
                    "app": app, "kind": kind, "origin": origin, "incident_id": incident_id
                }  # fmt: skip
                _audit(conn, created_by, "restore_proposed", created_id, detail, at=at)
            row = conn.execute(sa.select(t.restores).where(c.origin == origin)).one()
        return _restore(row), created_id is not None

    def restore(self, restore_id: str) -> Restore | None:
        with self._engine.begin() as conn:
            q = sa.select(t.restores).where(t.restores.c.id == restore_id)
            row = conn.execute(q).one_or_none()
        return None if row is None else _restore(row)

    def restores(
        self,
        app: str | None = None,
        *,
        states: Iterable[RestoreState] | None = None,
        incident_id: str | None = None,
        limit: int = 100,
    ) -> list[Restore]:
        """Newest first; filtered by app, by state and by incident when given."""
        c = t.restores.c
        q = sa.select(t.restores).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
        if app is not None:
            q = q.where(c.app == app)
        if states is not None:
            q = q.where(c.state.in_([s.value for s in states]))
        if incident_id is not None:
            q = q.where(c.incident_id == incident_id)
        with self._engine.begin() as conn:
            return [_restore(r) for r in conn.execute(q)]

    def restore_transition(
        self,
        restore_id: str,
        from_states: Iterable[RestoreState],
        to: RestoreState,
        *,
        at: datetime,
        actor: str,
        detail: Mapping[str, Any] | None = None,
        outcome: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move the restore to `to` only from one of `from_states`; True when it moved.

        A compare-and-set: of callers racing on the same move, exactly one gets True, and
        only that one writes the audit line (`restore_<to>`).
        """
        _aware(at=at)
        c = t.restores.c
        values: dict[str, Any] = {"state": to.value, "updated_at": at}
        if outcome is not None:
            values["outcome"] = t.jsonable(outcome)
        stmt = (
            sa.update(t.restores)
            .where(c.id == restore_id, c.state.in_([s.value for s in from_states]))
            .values(**values)
        )
        with self._engine.begin() as conn:
            moved = conn.execute(stmt).rowcount == 1
            if moved:
                _audit(conn, actor, f"restore_{to.value}", restore_id, detail or {}, at=at)
        return moved

    # --- votes ----------------------------------------------------------------------------

    def restore_vote(
        self, restore_id: str, approver: str, decision: Decision, *, reason: str, at: datetime
    ) -> bool:
        """Record `approver`'s vote; False when they had already voted (the first stands).

        Raises KeyError for an unknown restore. Either way one audit line is written:
        `restore_approve` / `restore_reject`, or `restore_vote_repeated` when not counted.
        """
        _aware(at=at)
        v = t.restore_votes.c
        stmt = (
            self._insert(t.restore_votes)
            .values(
                restore_id=restore_id, approver=approver, decision=decision.value, at=at,
                reason=reason,
            )
            .on_conflict_do_nothing(index_elements=["restore_id", "approver"])
            .returning(v.id)
        )  # fmt: skip
        with self._engine.begin() as conn:
            known = sa.select(t.restores.c.id).where(t.restores.c.id == restore_id)
            if conn.execute(known).first() is None:
                raise KeyError(restore_id)
            counted = conn.execute(stmt).first() is not None
            action = f"restore_{decision.value}" if counted else "restore_vote_repeated"
            detail = {"decision": decision, "reason": reason}
            _audit(conn, approver, action, restore_id, detail, at=at)
        return counted

    def restore_votes(self, restore_id: str) -> list[Vote]:
        """The restore's votes in the order they were cast."""
        v = t.restore_votes.c
        q = sa.select(t.restore_votes).where(v.restore_id == restore_id).order_by(v.id)
        with self._engine.begin() as conn:
            return [
                Vote(r.restore_id, r.approver, Decision(r.decision), r.at, r.reason)
                for r in conn.execute(q)
            ]

    # --- steps: the restore's intent log --------------------------------------------------

    def restore_step_intend(
        self,
        restore_id: str,
        step: RestoreStepKind,
        key: str,
        intent: Mapping[str, Any],
        *,
        at: datetime,
    ) -> tuple[StepRecord, bool]:
        """Record the intent to run a step under `key`; an existing key returns its record.

        Only the caller that gets `created=True` may run the step.
        """
        _aware(at=at)
        row, created = self._intend_row(
            t.restore_steps, key, intent, at=at, restore_id=restore_id, step=step.value
        )
        return _step(row), created

    def restore_step_finish(
        self,
        step_id: str,
        status: ActionStatus,
        outcome: Mapping[str, Any],
        *,
        at: datetime,
    ) -> None:
        """Record a step's outcome, once: a step already finished keeps its first outcome."""
        _aware(at=at)
        self._finish_row(t.restore_steps, step_id, status, outcome, at)

    def restore_step_attempt(self, step_id: str) -> int:
        """Count one more attempt at a still-intended step (a resume); 0 if finished."""
        return self._attempt_row(t.restore_steps, step_id)

    def restore_steps(self, restore_id: str) -> list[StepRecord]:
        """The restore's steps by intent time (ties in any order: `in_plan_order` sorts)."""
        s = t.restore_steps.c
        q = sa.select(t.restore_steps).where(s.restore_id == restore_id)
        with self._engine.begin() as conn:
            return [_step(r) for r in conn.execute(q.order_by(s.created_at, s.id))]


def _restore(r: Row[Any]) -> Restore:
    return Restore(
        id=r.id,
        app=r.app,
        kind=RestoreKind(r.kind),
        state=RestoreState(r.state),
        origin=r.origin,
        incident_id=r.incident_id,
        created_by=r.created_by,
        created_at=r.created_at,
        expires_at=r.expires_at,
        required_approvals=int(r.required_approvals),
        plan=dict(r.plan),
        updated_at=r.updated_at,
        outcome=None if r.outcome is None else dict(r.outcome),
    )


def _step(r: Row[Any]) -> StepRecord:
    return StepRecord(
        id=r.id,
        restore_id=r.restore_id,
        step=RestoreStepKind(r.step),
        key=r.key,
        status=ActionStatus(r.status),
        intent=dict(r.intent),
        outcome=None if r.outcome is None else dict(r.outcome),
        created_at=r.created_at,
        finished_at=r.finished_at,
    )
