"""The guard's domain model: small immutable values shared by every layer.

These are the nouns of the runbook (app, service, revision, deploy, evidence, verdict,
incident, action) stripped of any Google or database type, so the judgement in `guard.core`
can be tested with plain values and the adapters translate at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Role(StrEnum):
    API = "api"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """A Cloud Run service the guard watches."""

    project: str
    region: str
    name: str
    role: Role = Role.API

    @property
    def resource_name(self) -> str:
        """Cloud Run Admin v2's name: projects/P/locations/R/services/S."""
        return f"projects/{self.project}/locations/{self.region}/services/{self.name}"

    def revision_resource(self, revision: str) -> str:
        return f"{self.resource_name}/revisions/{revision}"


@dataclass(frozen=True, slots=True)
class App:
    """What the guard protects: services deployed together and the database they share."""

    name: str
    services: tuple[ServiceRef, ...]
    dry_run: bool = False

    def service(self, name: str) -> ServiceRef:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(f"app {self.name!r} has no service {name!r}")


class Readiness(StrEnum):
    """A revision's Ready condition."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Revision:
    """One revision of a service as last read from Cloud Run."""

    service: ServiceRef
    name: str  # short name, e.g. pegasus-api-00042-abc
    created_at: datetime
    readiness: Readiness
    reason: str = ""  # e.g. HEALTH_CHECK_CONTAINER_ERROR when it failed to start
    message: str = ""


class DeployKind(StrEnum):
    TRAFFIC = "traffic"  # a new revision started receiving traffic (all or a canary share)
    FAILED_START = "failed_start"  # the latest-created revision never became Ready


@dataclass(frozen=True, slots=True)
class Deploy:
    """A release of one service: the new revision and the revisions that served before it."""

    service: ServiceRef
    revision: str
    kind: DeployKind
    started_at: datetime
    last_known_good: tuple[str, ...]  # revisions serving before the deploy, best first
    traffic_percent: int = 100  # the new revision's share when detected (canary < 100)


class SignalKind(StrEnum):
    LOG = "log"
    ERROR_RATE = "error_rate"
    READINESS = "readiness"
    VALIDATION = "validation"


@dataclass(frozen=True, slots=True)
class Evidence:
    """A fact the guard saw, kept with the incident and shown in pages.

    `data` holds the specifics (the log text, the SQLSTATE, the counts against thresholds)
    as JSON-able values.
    """

    kind: SignalKind
    at: datetime
    summary: str
    service: str = ""
    revision: str = ""
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


class Outcome(StrEnum):
    """A rule's judgement. Only FAILED ever acts; the others are kept distinct on purpose."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # the test cannot decide yet
    NO_DATA = "no_data"  # nothing visible yet (ingestion lag)
    TOO_LITTLE_TRAFFIC = "too_little_traffic"
    PROVIDER_ERROR = "provider_error"  # monitoring/logging unreachable: never a failure


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a rule judged as it did: a value against a threshold, in words and numbers."""

    text: str
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule's judgement of one deploy, with its reasons and evidence."""

    rule: str
    deploy: Deploy
    outcome: Outcome
    at: datetime
    reasons: tuple[Reason, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    dry_run: bool = False


class IncidentState(StrEnum):
    OPEN = "open"
    FROZEN = "frozen"
    REVERTED = "reverted"
    VALIDATING = "validating"
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    SUPERSEDED = "superseded"


class ActionKind(StrEnum):
    FREEZE = "freeze"
    REVERT = "revert"
    PAGE = "page"
    VALIDATE = "validate"
    ESCALATE = "escalate"
    RESTORE = "restore"


class ActionStatus(StrEnum):
    INTENDED = "intended"  # written before the action runs: a crash leaves this to reconcile
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # e.g. dry run, or a human already acted (operator lock)


@dataclass(frozen=True, slots=True)
class Action:
    """One step the guard takes for an incident, with its intent and outcome."""

    incident_id: str
    kind: ActionKind
    status: ActionStatus
    at: datetime
    target: str = ""  # e.g. the revision traffic was pinned to
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeployInfo:
    """What an incident remembers of its deploy, so a restarted guard can still revert it."""

    kind: DeployKind
    started_at: datetime
    last_known_good: tuple[str, ...]
    traffic_percent: int = 100

    @classmethod
    def of(cls, deploy: Deploy) -> DeployInfo:
        return cls(deploy.kind, deploy.started_at, deploy.last_known_good, deploy.traffic_percent)

    def deploy(self, service: ServiceRef, revision: str) -> Deploy:
        return Deploy(
            service, revision, self.kind, self.started_at, self.last_known_good,
            self.traffic_percent,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Incident:
    """A bad deploy of an app: one per app and bad revision."""

    id: str
    app: str
    service: str
    bad_revision: str
    state: IncidentState
    opened_at: datetime
    rules: tuple[str, ...] = ()
    migration_file: str | None = None
    reverted_to: str | None = None
    file_source: str | None = None  # "text" (named in a log) or "blame" (newest migration)
    dry_run: bool = False
    deploy: DeployInfo | None = None  # None only for incidents stored before schema v2
