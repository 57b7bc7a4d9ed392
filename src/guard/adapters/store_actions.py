"""The store's exactly-once half: the intent log, app freezes and the audit trail.

Why: an action is recorded as *intended* before it runs and *finished* after, each in its own
short transaction keyed by an idempotency key, so a guard killed between the two finds the
intent at start (`open_intents`) and reconciles it instead of acting again; and racing
replicas converge on one row because the key is UNIQUE. Freezes and their audit lines are
written in the same transaction so the trail never misses a change. Split from
`guard.adapters.store` only to keep modules short; `SqlStore` is the class to use.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row

from guard.adapters import store_migrations as mig
from guard.adapters import store_schema as t
from guard.core.model import ActionKind, ActionStatus
from guard.ports import ActionRecord, AuditRecord, FreezeRecord

_KIND_ORDER = {kind: n for n, kind in enumerate(ActionKind)}  # freeze, revert, page, ...
FINISHED = frozenset({ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.SKIPPED})


def new_id() -> str:
    """A short random id (48 bits of uuid4 as hex)."""
    return uuid.uuid4().hex[:12]


class IntentLog:
    """Engine plumbing plus the intent log, freezes and audit (the base of `SqlStore`)."""

    def __init__(self, engine: Engine, lock: mig.FileLock | None = None) -> None:
        self._engine = engine
        self._lock = lock

    @property
    def engine(self) -> Engine:
        return self._engine

    def schema_version(self) -> int:
        return mig.schema_version(self._engine)

    def ping(self) -> bool:
        """True when the database answers (for readiness)."""
        try:
            with self._engine.connect() as conn:
                return conn.execute(sa.select(sa.literal(1))).scalar_one() == 1
        except sa.exc.SQLAlchemyError:
            return False

    def _insert(self, table: sa.Table) -> Any:
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # --- the intent log -------------------------------------------------------------------

    def intend(
        self,
        incident_id: str,
        kind: ActionKind,
        key: str,
        intent: Mapping[str, Any],
        *,
        at: datetime,
    ) -> tuple[ActionRecord, bool]:
        """Record the intent to act under `key`; an existing key returns its record instead.

        Only the caller that gets `created=True` may perform the action.
        """
        row, created = self._intend_row(
            t.actions, key, intent, at=at, incident_id=incident_id, kind=kind.value
        )
        return _action(row), created

    # The intent-log mechanics, shared by incident actions and restore steps (same columns:
    # id, key UNIQUE, status, intent, outcome, created_at, finished_at, attempts).

    def _intend_row(
        self, table: sa.Table, key: str, intent: Mapping[str, Any], *, at: datetime,
        **owner: Any,
    ) -> tuple[Row[Any], bool]:  # fmt: skip
        stmt = (
            self._insert(table)
            .values(
                id=new_id(), key=key, status=ActionStatus.INTENDED.value,
                intent=t.jsonable(intent), outcome=None, created_at=at, finished_at=None,
                attempts=1, **owner,
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )  # fmt: skip
        with self._engine.begin() as conn:
            created = conn.execute(stmt.returning(table.c.id)).first() is not None
            row = conn.execute(sa.select(table).where(table.c.key == key)).one()
        return row, created

    def _finish_row(
        self, table: sa.Table, row_id: str, status: ActionStatus, outcome: Mapping[str, Any],
        at: datetime,
    ) -> bool:  # fmt: skip
        if status not in FINISHED:
            raise ValueError(f"finish needs a final status, not {status.value!r}")
        c = table.c
        stmt = (
            sa.update(table)
            .where(c.id == row_id, c.status == ActionStatus.INTENDED.value)
            .values(status=status.value, outcome=t.jsonable(outcome), finished_at=at)
        )
        with self._engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def _attempt_row(self, table: sa.Table, row_id: str) -> int:
        c = table.c
        stmt = (
            sa.update(table)
            .where(c.id == row_id, c.status == ActionStatus.INTENDED.value)
            .values(attempts=c.attempts + 1)
            .returning(c.attempts)
        )
        with self._engine.begin() as conn:
            found = conn.execute(stmt).scalar_one_or_none()
        return int(found or 0)

    def finish(
        self,
        action_id: str,
        status: ActionStatus,
        outcome: Mapping[str, Any],
        *,
        at: datetime,
    ) -> bool:
        """Record the outcome of an intended action; False if it was already finished."""
        return self._finish_row(t.actions, action_id, status, outcome, at)

    def record_attempt(self, action_id: str) -> int:
        """Count one more attempt at a still-intended action (reconcile); 0 if finished."""
        return self._attempt_row(t.actions, action_id)

    def action(self, action_id: str) -> ActionRecord | None:
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(t.actions).where(t.actions.c.id == action_id))
            found = row.one_or_none()
        return None if found is None else _action(found)

    def open_intents(self) -> list[ActionRecord]:
        """Actions intended but never finished, oldest first: reconcile these at start."""
        c = t.actions.c
        q = sa.select(t.actions).where(c.status == ActionStatus.INTENDED.value)
        with self._engine.begin() as conn:
            found = [_action(r) for r in conn.execute(q.order_by(c.created_at, c.id))]
        # Steps intended in the same instant keep the runbook's order, not their random ids.
        return sorted(found, key=lambda a: (a.created_at, _KIND_ORDER[a.kind]))

    def actions(self, incident_id: str) -> list[ActionRecord]:
        c = t.actions.c
        q = sa.select(t.actions).where(c.incident_id == incident_id)
        with self._engine.begin() as conn:
            found = [_action(r) for r in conn.execute(q.order_by(c.created_at, c.id))]
        # Steps intended in the same instant keep the runbook's order, not their random ids.
        return sorted(found, key=lambda a: (a.created_at, _KIND_ORDER[a.kind]))

    # --- freezes --------------------------------------------------------------------------

    def freeze(self, app: str, incident_id: str | None, reason: str, *, at: datetime) -> bool:
        """Freeze the app; True if this call froze it (False: it already was)."""
        c = t.freezes.c
        values = {"frozen": True, "incident_id": incident_id, "reason": reason, "frozen_at": at}
        with self._engine.begin() as conn:
            stmt = self._insert(t.freezes).values(app=app, **values)
            stmt = stmt.on_conflict_do_nothing(index_elements=["app"]).returning(c.app)
            changed = conn.execute(stmt).first() is not None
            if not changed:
                upd = sa.update(t.freezes).where(c.app == app, c.frozen.is_(False))
                values |= {"lifted_at": None, "lifted_by": None}
                changed = conn.execute(upd.values(**values)).rowcount == 1
            if changed:
                _audit(
                    conn, "guard", "freeze", app, {"incident": incident_id, "reason": reason}, at=at
                )
        return changed

    def lift_freeze(self, app: str, by: str, *, at: datetime) -> bool:
        """Lift the app's freeze; True if it was frozen."""
        c = t.freezes.c
        stmt = (
            sa.update(t.freezes)
            .where(c.app == app, c.frozen.is_(True))
            .values(frozen=False, lifted_at=at, lifted_by=by)
        )
        with self._engine.begin() as conn:
            changed = conn.execute(stmt).rowcount == 1
            if changed:
                _audit(conn, by, "lift_freeze", app, {}, at=at)
        return changed

    def freeze_of(self, app: str) -> FreezeRecord | None:
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(t.freezes).where(t.freezes.c.app == app)).one_or_none()
        return None if row is None else _freeze(row)

    def frozen_apps(self) -> list[FreezeRecord]:
        q = sa.select(t.freezes).where(t.freezes.c.frozen.is_(True)).order_by(t.freezes.c.app)
        with self._engine.begin() as conn:
            return [_freeze(r) for r in conn.execute(q)]

    # --- audit ----------------------------------------------------------------------------

    def audit(
        self, actor: str, action: str, subject: str, detail: Mapping[str, Any], *, at: datetime
    ) -> int:
        """Append one audit line; return its id."""
        with self._engine.begin() as conn:
            return _audit(conn, actor, action, subject, detail, at=at)

    def audit_log(self, subject: str | None = None, *, limit: int = 100) -> list[AuditRecord]:
        """Newest first."""
        c = t.audit.c
        q = sa.select(t.audit).order_by(c.id.desc()).limit(limit)
        if subject is not None:
            q = q.where(c.subject == subject)
        with self._engine.begin() as conn:
            return [
                AuditRecord(r.id, r.at, r.actor, r.action, r.subject, dict(r.detail))
                for r in conn.execute(q)
            ]


def _audit(
    conn: Connection,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, Any],
    *,
    at: datetime,
) -> int:
    stmt = sa.insert(t.audit).values(
        at=at, actor=actor, action=action, subject=subject, detail=t.jsonable(detail)
    )
    return int(conn.execute(stmt.returning(t.audit.c.id)).scalar_one())


def _action(r: Row[Any]) -> ActionRecord:
    return ActionRecord(
        id=r.id,
        incident_id=r.incident_id,
        kind=ActionKind(r.kind),
        key=r.key,
        status=ActionStatus(r.status),
        intent=dict(r.intent),
        outcome=None if r.outcome is None else dict(r.outcome),
        created_at=r.created_at,
        finished_at=r.finished_at,
        attempts=r.attempts,
    )


def _freeze(r: Row[Any]) -> FreezeRecord:
    return FreezeRecord(
        app=r.app,
        frozen=bool(r.frozen),
        incident_id=r.incident_id,
        reason=r.reason,
        frozen_at=r.frozen_at,
        lifted_at=r.lifted_at,
        lifted_by=r.lifted_by,
    )
