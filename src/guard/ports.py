"""The interfaces the guard's core and service need from the outside world.

Each outside system (Cloud Run, Monitoring, Logging, Cloud SQL, Secret Manager, Cloud
Deploy, pagers, the store, time) is a `Protocol` here, implemented once in
`guard.adapters` with the official client or library. The service wires adapters to these
ports; tests wire the same adapters to the local fake cloud and real local servers.
Each port grows with the issue that first needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from guard.core.model import (
    Action,
    ActionKind,
    ActionStatus,
    Evidence,
    Incident,
    IncidentState,
    Revision,
    ServiceRef,
)
from guard.core.page import Delivery, PageMessage


class Clock(Protocol):
    """Time, so the service can run on the fake cloud's virtual clock in simulations."""

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class CloudRun(Protocol):
    """Cloud Run Admin v2, as the guard uses it: read services, pin traffic."""

    async def revisions(self, service: ServiceRef) -> list[Revision]:
        """The service's revisions, newest first."""
        ...

    async def pin_traffic(self, service: ServiceRef, revision: str) -> None:
        """Send 100% of traffic to `revision` (traffic-only update) and wait until it is done."""
        ...


# --- The store (incidents, the intent log, freezes, audit) --------------------------------
# The records below are the store's answers where the domain model has no type of its own.
# They live here, not in guard.adapters.store, because ports sit below adapters and the
# Store protocol has to name them.


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One row of the intent log: written before an action runs, finished after it."""

    id: str
    incident_id: str
    kind: ActionKind
    key: str  # the idempotency key: one row per key, ever
    status: ActionStatus
    intent: Mapping[str, Any]
    outcome: Mapping[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
    attempts: int

    def as_action(self) -> Action:
        """The domain view of this record (for pages and the API)."""
        target = self.intent.get("target", "")
        detail = (self.outcome or {}).get("detail", "")
        return Action(
            incident_id=self.incident_id,
            kind=self.kind,
            status=self.status,
            at=self.finished_at or self.created_at,
            target=str(target),
            detail=str(detail),
        )


@dataclass(frozen=True, slots=True)
class PageRow:
    """The latest version of one incident's page for one backend (the page outbox)."""

    id: str
    incident_id: str
    backend: str
    dedup_key: str
    status: str  # pending | sent | failed
    payload: Mapping[str, Any]  # the PageMessage as JSON (with its version)
    version: int
    sent_version: int
    attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class FreezeRecord:
    """An app's freeze: the deploy pipeline's gate reads `frozen`."""

    app: str
    frozen: bool
    incident_id: str | None
    reason: str
    frozen_at: datetime | None
    lifted_at: datetime | None
    lifted_by: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One line of the audit trail: who did what to what, when."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: Mapping[str, Any]


class Store(Protocol):
    """Durable state shared by replicas; every method is one short transaction (sync).

    The asyncio service calls it through `asyncio.to_thread`. See docs/store.md for the
    exactly-once contract: `intend` before acting, `finish` after, `open_intents` at start.
    """

    def ping(self) -> bool: ...

    def close(self) -> None: ...

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
    ) -> tuple[Incident, bool]: ...

    def incident(self, incident_id: str) -> Incident | None: ...

    def incidents(
        self, app: str | None = None, *, open_only: bool = False, limit: int = 100
    ) -> list[Incident]: ...

    def set_incident_state(
        self,
        incident_id: str,
        state: IncidentState,
        *,
        at: datetime,
        reverted_to: str | None = None,
        escalated: bool | None = None,
        superseded_by: str | None = None,
    ) -> bool: ...

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
    ) -> bool: ...

    def add_evidence(self, incident_id: str, evidence: Iterable[Evidence]) -> int: ...

    def evidence(self, incident_id: str) -> list[Evidence]: ...

    def intend(
        self,
        incident_id: str,
        kind: ActionKind,
        key: str,
        intent: Mapping[str, Any],
        *,
        at: datetime,
    ) -> tuple[ActionRecord, bool]: ...

    def finish(
        self,
        action_id: str,
        status: ActionStatus,
        outcome: Mapping[str, Any],
        *,
        at: datetime,
    ) -> bool: ...

    def record_attempt(self, action_id: str) -> int: ...

    def action(self, action_id: str) -> ActionRecord | None: ...

    def open_intents(self) -> list[ActionRecord]: ...

    def actions(self, incident_id: str) -> list[ActionRecord]: ...

    def freeze(self, app: str, incident_id: str | None, reason: str, *, at: datetime) -> bool: ...

    def lift_freeze(self, app: str, by: str, *, at: datetime) -> bool: ...

    def freeze_of(self, app: str) -> FreezeRecord | None: ...

    def frozen_apps(self) -> list[FreezeRecord]: ...

    def audit(
        self, actor: str, action: str, subject: str, detail: Mapping[str, Any], *, at: datetime
    ) -> int: ...

    def audit_log(self, subject: str | None = None, *, limit: int = 100) -> list[AuditRecord]: ...


class Notifier(Protocol):
    """One configured paging backend: renders a `PageMessage` and delivers it once.

    `send` never raises for the backend's answers or network errors: it returns a
    `Delivery` saying whether to retry (and after how long) or give up on this version.
    """

    @property
    def name(self) -> str:
        """The backend's name in the configuration (e.g. "oncall")."""
        ...

    @property
    def kind(self) -> str:
        """pagerduty | slack | alertmanager | opsgenie | webhook"""
        ...

    async def send(self, message: PageMessage) -> Delivery: ...
