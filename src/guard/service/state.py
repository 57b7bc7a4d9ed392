"""What the HTTP API may see and ask of a running guard, as one narrow interface.

Why: the API must not reach into the scheduler, detector or responder. It reads the store,
the metrics registry and the readiness checks, and asks for the two human acts the guard
performs on a person's behalf (lifting a freeze; returning traffic to the latest revision;
proposing, approving or rejecting a database restore).
`guard.service.runtime.Runtime` implements it; so can a test with a real store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from guard.adapters.store import SqlStore
from guard.core.restore import Decision, Restore, RestoreKind


class UnknownAppError(LookupError):
    """The app is not in the guard's configuration."""


class RestoreService(Protocol):
    """Restores as the API sees them (`guard.service.restores.RestoreDesk`). A request that
    cannot be honoured raises `RestoreRequestError` with the HTTP status that says why."""

    async def restores(self, app: str | None = None) -> list[dict[str, Any]]:
        """Every restore, newest first, in brief."""
        ...

    async def show(self, restore_id: str) -> dict[str, Any]:
        """One restore: its plan (data and text), votes and steps."""
        ...

    async def propose(
        self,
        app_name: str,
        *,
        at: datetime,
        kind: RestoreKind,
        by: str,
        incident_id: str | None = None,
    ) -> Restore:
        """A human proposes restoring the app's database to instant `at`."""
        ...

    async def vote(
        self, restore_id: str, approver: str, decision: Decision, reason: str = ""
    ) -> dict[str, Any]:
        """One approver approves or rejects; the answer says where the restore stands."""
        ...


class GuardState(Protocol):
    """The running guard as the API sees it."""

    @property
    def store(self) -> SqlStore: ...

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def apps(self) -> Sequence[str]:
        """The configured app names."""
        ...

    def readiness(self) -> Mapping[str, str | None]:
        """Each readiness check by name: None when it passes, else why it does not."""
        ...

    def status(self) -> Mapping[str, Any]:
        """A small JSON-able summary: leader or standby, version, dry run."""
        ...

    @property
    def restores(self) -> RestoreService:
        """Database restores: proposals, their plans, approvals and execution."""
        ...

    async def lift_freeze(self, app: str, by: str, reason: str) -> Mapping[str, Any]:
        """A human lifts the app's freeze (audited). The result says whether a freeze was
        lifted and offers to undo the guard's traffic pins ("pins" and "offer").
        Raises UnknownAppError."""
        ...

    async def to_latest(self, app: str, by: str) -> Mapping[str, Any]:
        """A human asks the guard to send traffic back to the latest revision of each
        service the guard pinned (audited; a pin a human changed since is left alone).
        Raises UnknownAppError."""
        ...
