"""The guard's durable memory: incidents, the intent log, freezes and the audit trail.

Why: the guard must act exactly once even if it is SIGKILLed mid-action and even when several
replicas share PostgreSQL. Every decision that must not repeat is a row guarded by a unique
key (one incident per deploy, one action per idempotency key, one freeze per app) and written
with INSERT ... ON CONFLICT DO NOTHING, so racing writers converge on a single row. Each
method is one short transaction on a sync Engine; the asyncio service calls it through
`asyncio.to_thread`. See docs/store.md for the contract.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import URL, Row

from guard.adapters import store_migrations as mig
from guard.adapters import store_schema as t
from guard.adapters.store_actions import new_id
from guard.adapters.store_migrations import StoreError, StoreLockedError, StoreVersionError
from guard.adapters.store_restores import RestoreBook
from guard.core.model import (
    DeployInfo,
    DeployKind,
    Evidence,
    Incident,
    IncidentState,
    SignalKind,
)
from guard.ports import ActionRecord, AuditRecord, FreezeRecord

__all__ = [
    "ActionRecord",
    "AuditRecord",
    "FreezeRecord",
    "SqlStore",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreVersionError",
]

CLOSED_STATES = frozenset({IncidentState.RESOLVED, IncidentState.SUPERSEDED})


class SqlStore(RestoreBook):
    """The `guard.ports.Store` on SQLite (one replica) or PostgreSQL (several)."""

    @classmethod
    def open(cls, url: str | URL) -> Self:
        """Connect, take the SQLite lock file, create or upgrade the schema."""
        u = mig.normalize_url(url)
        lock = None
        if u.get_backend_name() == "sqlite":
            lock = mig.FileLock(mig.sqlite_path(u).with_name(mig.sqlite_path(u).name + ".lock"))
            lock.acquire()
        engine = mig.create_engine(u)
        try:
            mig.upgrade(engine)
        except BaseException:
            engine.dispose()
            if lock is not None:
                lock.release()
            raise
        return cls(engine, lock)

    def close(self) -> None:
        self._engine.dispose()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- incidents ------------------------------------------------------------------------

    def open_incident(
        self,
        app: str,
        service: str,
        bad_revision: str,
        *,
        at: datetime,
        rules: Sequence[str] = (),
        migration_file: str | None = None,
        file_source: str | None = None,
        dry_run: bool = False,
        deploy: DeployInfo | None = None,
    ) -> tuple[Incident, bool]:
        """The one incident for this deploy, and whether this call created it."""
        c = t.incidents.c
        stmt = (
            self._insert(t.incidents)
            .values(
                id=new_id(), app=app, service=service, bad_revision=bad_revision,
                state=IncidentState.OPEN.value, opened_at=at, updated_at=at,
                rules=list(rules), migration_file=migration_file, file_source=file_source,
                escalated=False, dry_run=dry_run,
                deploy=None if deploy is None else t.jsonable(deploy_doc(deploy)),
            )
            .on_conflict_do_nothing(index_elements=["app", "service", "bad_revision"])
        )  # fmt: skip
        with self._engine.begin() as conn:
            created = conn.execute(stmt.returning(c.id)).first() is not None
            row = conn.execute(
                sa.select(t.incidents).where(
                    c.app == app, c.service == service, c.bad_revision == bad_revision
                )
            ).one()
        return _incident(row), created

    def incident(self, incident_id: str) -> Incident | None:
        with self._engine.begin() as conn:
            row = conn.execute(
                sa.select(t.incidents).where(t.incidents.c.id == incident_id)
            ).one_or_none()
        return None if row is None else _incident(row)

    def incidents(
        self, app: str | None = None, *, open_only: bool = False, limit: int = 100
    ) -> list[Incident]:
        """Newest first."""
        c = t.incidents.c
        q = sa.select(t.incidents).order_by(c.opened_at.desc(), c.id).limit(limit)
        if app is not None:
            q = q.where(c.app == app)
        if open_only:
            q = q.where(c.state.not_in([s.value for s in CLOSED_STATES]))
        with self._engine.begin() as conn:
            return [_incident(r) for r in conn.execute(q)]

    def incident_counts(self) -> dict[tuple[str, str], int]:
        """How many incidents each (app, state) has, for the incidents-by-state gauge."""
        c = t.incidents.c
        q = sa.select(c.app, c.state, sa.func.count()).group_by(c.app, c.state)
        with self._engine.begin() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(q)}

    def set_incident_state(
        self,
        incident_id: str,
        state: IncidentState,
        *,
        at: datetime,
        reverted_to: str | None = None,
        escalated: bool | None = None,
        superseded_by: str | None = None,
    ) -> bool:
        """Set the state whatever it was; False if there is no such incident."""
        return self._update_incident(
            incident_id,
            None,
            state,
            at=at,
            reverted_to=reverted_to,
            escalated=escalated,
            superseded_by=superseded_by,
        )

    def transition(
        self,
        incident_id: str,
        from_states: Iterable[IncidentState],
        to_state: IncidentState,
        *,
        at: datetime,
        reverted_to: str | None = None,
        escalated: bool | None = None,
        superseded_by: str | None = None,
    ) -> bool:
        """Compare-and-set: move to `to_state` only from one of `from_states`; True if moved."""
        return self._update_incident(
            incident_id,
            list(from_states),
            to_state,
            at=at,
            reverted_to=reverted_to,
            escalated=escalated,
            superseded_by=superseded_by,
        )

    def _update_incident(
        self,
        incident_id: str,
        from_states: list[IncidentState] | None,
        state: IncidentState,
        *,
        at: datetime,
        reverted_to: str | None,
        escalated: bool | None,
        superseded_by: str | None,
    ) -> bool:
        c = t.incidents.c
        values: dict[str, Any] = {"state": state.value, "updated_at": at}
        for name, value in (
            ("reverted_to", reverted_to),
            ("escalated", escalated),
            ("superseded_by", superseded_by),
        ):
            if value is not None:
                values[name] = value
        stmt = sa.update(t.incidents).where(c.id == incident_id).values(**values)
        if from_states is not None:
            stmt = stmt.where(c.state.in_([s.value for s in from_states]))
        with self._engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    # --- evidence -------------------------------------------------------------------------

    def add_evidence(self, incident_id: str, evidence: Iterable[Evidence]) -> int:
        """Keep each fact once per incident (by kind, time and summary); return how many new."""
        rows = [
            {
                "incident_id": incident_id, "kind": e.kind.value, "at": e.at,
                "summary": e.summary, "service": e.service, "revision": e.revision,
                "data": t.jsonable(e.data), "digest": _digest(e),
            }
            for e in evidence
        ]  # fmt: skip
        if not rows:
            return 0
        added = 0
        with self._engine.begin() as conn:
            for row in rows:
                stmt = (
                    self._insert(t.evidence)
                    .values(**row)
                    .on_conflict_do_nothing(index_elements=["incident_id", "digest"])
                )
                added += conn.execute(stmt.returning(t.evidence.c.id)).first() is not None
        return added

    def evidence(self, incident_id: str) -> list[Evidence]:
        c = t.evidence.c
        q = sa.select(t.evidence).where(c.incident_id == incident_id).order_by(c.at, c.id)
        with self._engine.begin() as conn:
            return [
                Evidence(
                    kind=SignalKind(r.kind), at=r.at, summary=r.summary, service=r.service,
                    revision=r.revision, data=dict(r.data),
                )
                for r in conn.execute(q)
            ]  # fmt: skip


def _digest(e: Evidence) -> str:
    text = "\x1f".join((e.kind.value, t.jsonable(e.at), e.summary))
    return hashlib.sha256(text.encode()).hexdigest()


def _incident(r: Row[Any]) -> Incident:
    return Incident(
        id=r.id,
        app=r.app,
        service=r.service,
        bad_revision=r.bad_revision,
        state=IncidentState(r.state),
        opened_at=r.opened_at,
        rules=tuple(r.rules),
        migration_file=r.migration_file,
        reverted_to=r.reverted_to,
        file_source=r.file_source,
        dry_run=bool(r.dry_run),
        deploy=_deploy(r.deploy),
    )


def deploy_doc(info: DeployInfo) -> dict[str, Any]:
    return {
        "kind": info.kind, "started_at": info.started_at,
        "last_known_good": info.last_known_good, "traffic_percent": info.traffic_percent,
    }  # fmt: skip


def _deploy(doc: Any) -> DeployInfo | None:
    if not doc:
        return None
    return DeployInfo(
        kind=DeployKind(doc["kind"]),
        started_at=datetime.fromisoformat(doc["started_at"]),
        last_known_good=tuple(doc["last_known_good"]),
        traffic_percent=int(doc.get("traffic_percent", 100)),
    )


Store = SqlStore  # `Store.open(url)`: the name the service and CLI use
