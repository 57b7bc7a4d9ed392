"""The shape of a Deploy Guard configuration, validated strictly.

An SRE's typo must never turn into silently ignored protection, so every model forbids
unknown keys, and every field says its unit and why its default is what it is. The unit of
protection is an **app**: the Cloud Run services deployed together and the database they
share. Secrets (store URLs with passwords) are `SecretStr`, so they never print.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# Cloud Run service names: lowercase letters, digits and hyphens, starting with a letter,
# at most 49 characters (Cloud Run's own limit).
ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")]
# Project ids: 6-30 characters, lowercase letters, digits, hyphens, starting with a letter.
ProjectId = Annotated[str, StringConstraints(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]+-[a-z]+[0-9]+$")]
# Cloud SQL instance ids: lowercase letters, digits, hyphens; start with a letter; <= 98.
InstanceId = Annotated[str, StringConstraints(pattern=r"^[a-z][-a-z0-9]{0,96}[a-z0-9]$")]
SecretId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,255}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")]
Seconds = Annotated[float, Field(gt=0)]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceRole(StrEnum):
    """What a service does for the app: it changes which checks and messages apply."""

    API = "api"
    WORKER = "worker"


class ServiceConfig(Strict):
    """One Cloud Run service of the app."""

    name: ServiceName
    role: ServiceRole = ServiceRole.API
    region: Region | None = Field(
        default=None, description="Overrides the app's region for this service."
    )


class DatabaseConfig(Strict):
    """The Cloud SQL instance the app's migrations change, and where its URL lives."""

    instance: InstanceId = Field(description="Cloud SQL instance id, e.g. pegasus-db-eu.")
    secret: SecretId = Field(
        description="Secret Manager secret holding the app's database connection string."
    )
    project: ProjectId | None = Field(default=None, description="Defaults to the app's project.")


class SmokeConfig(Strict):
    """A smoke command run after a revert or restore, e.g. the worker-queue smoke test."""

    command: list[str] = Field(min_length=1, description="argv; no shell is involved.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment; '{base_url}' is replaced with validation.base_url.",
    )
    timeout_seconds: Seconds = Field(
        default=120.0, description="The runbook's smoke test drains a queue: minutes, not ms."
    )


class ValidationConfig(Strict):
    """The runbook's post-rollback validation: readiness, core read paths, the smoke test."""

    base_url: AnyHttpUrl
    paths: list[str] = Field(default_factory=lambda: ["/health/ready"], min_length=1)
    timeout_seconds: Seconds = Field(default=10.0, description="Per HTTP request.")
    retries: int = Field(
        default=3, ge=0, le=20, description="A freshly reverted revision may need a moment."
    )
    smoke: SmokeConfig | None = None

    @field_validator("paths")
    @classmethod
    def _paths_are_absolute(cls, paths: list[str]) -> list[str]:
        bad = [p for p in paths if not p.startswith("/")]
        if bad:
            raise ValueError(f"paths must start with '/': {', '.join(bad)}")
        return paths


class RestoreConfig(Strict):
    """Who may approve a database restore, and how the point in time is chosen."""

    approvers: list[Name] = Field(
        default_factory=list, description="Names from the top-level `approvers`."
    )
    required_approvals: int = Field(
        default=2, ge=1, le=10, description="Distinct approvers needed; two by default."
    )
    margin_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Restore to the deploy's start minus this much, before any migration ran.",
    )
    proposal_ttl_seconds: Seconds = Field(
        default=6 * 3600.0, description="An unapproved proposal expires; a stale plan is unsafe."
    )

    @model_validator(mode="after")
    def _enough_approvers(self) -> Self:
        if self.approvers and self.required_approvals > len(self.approvers):
            raise ValueError(
                f"required_approvals is {self.required_approvals} but only "
                f"{len(self.approvers)} approver(s) are listed"
            )
        return self


class PagingRoute(Strict):
    """Which notifiers (names from the top-level `notifiers`) an app pages, per severity.

    Unset severities page every configured notifier: a page never goes nowhere by accident.
    An empty list means "none" for that severity, on purpose.
    """

    critical: list[Name] | None = None
    error: list[Name] | None = None
    warning: list[Name] | None = None
    info: list[Name] | None = None


class AppConfig(Strict):
    """One app: the services deployed together and the database they share."""

    project: ProjectId
    region: Region
    services: list[ServiceConfig] = Field(min_length=1)
    database: DatabaseConfig | None = None
    pipeline: Name | None = Field(
        default=None,
        description="Cloud Deploy delivery pipeline id to suspend on an incident, if any.",
    )
    validation: ValidationConfig | None = None
    rules: list[Name] = Field(
        default_factory=lambda: ["migration-failure", "schema-mismatch", "error-rate"],
        min_length=1,
        description="Names of the rules (metadata.name) that judge this app's deploys.",
    )
    dry_run: bool = Field(default=False, description="Decide and page, but write nothing.")
    restore: RestoreConfig = Field(default_factory=RestoreConfig)
    paging: PagingRoute = Field(default_factory=PagingRoute)

    @field_validator("services")
    @classmethod
    def _unique_services(cls, services: list[ServiceConfig]) -> list[ServiceConfig]:
        names = [s.name for s in services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"service listed twice: {', '.join(dupes)}")
        return services


class ApproverConfig(Strict):
    """A named human who may approve restores and lift freezes."""

    token_sha256: str = Field(
        description="Hex SHA-256 of the approver's bearer token; the token itself is never stored."
    )

    @field_validator("token_sha256")
    @classmethod
    def _is_sha256(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be 64 lowercase hex characters (sha256 of the token)")
        return value


class PagerDutyConfig(Strict):
    """PagerDuty Events API v2: one incident = one dedup key; resolved when it resolves."""

    type: Literal["pagerduty"]
    routing_key: SecretStr = Field(description="The service integration's routing key.")
    url: AnyHttpUrl = Field(default=AnyHttpUrl("https://events.pagerduty.com"))


class SlackConfig(Strict):
    """A Slack incoming webhook (Block Kit); each update is a new message in the thread."""

    type: Literal["slack"]
    webhook_url: SecretStr = Field(description="https://hooks.slack.com/services/...")


class AlertmanagerConfig(Strict):
    """Prometheus Alertmanager API v2; active alerts are re-sent, resolved with endsAt."""

    type: Literal["alertmanager"]
    url: AnyHttpUrl = Field(description="Base URL, e.g. http://alertmanager:9093")
    resend_seconds: Seconds = Field(default=60.0, description="Re-send active alerts this often.")
    active_for_seconds: Seconds = Field(
        default=600.0,
        description="endsAt of an active alert: now + this (a dead guard's "
        "alert expires instead of staying forever).",
    )


class OpsgenieConfig(Strict):
    """Opsgenie Alert API v2 (Atlassian ends Opsgenie in April 2027)."""

    type: Literal["opsgenie"]
    api_key: SecretStr
    url: AnyHttpUrl = Field(default=AnyHttpUrl("https://api.opsgenie.com"))


class WebhookConfig(Strict):
    """A generic JSON webhook, optionally HMAC-signed (docs/paging-backends.md)."""

    type: Literal["webhook"]
    url: SecretStr = Field(description="May carry a token, so it is kept secret.")
    secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 signing key.")


NotifierConfig = Annotated[
    PagerDutyConfig | SlackConfig | AlertmanagerConfig | OpsgenieConfig | WebhookConfig,
    Field(discriminator="type"),
]


class StoreConfig(Strict):
    """Where the guard keeps incidents, intents, freezes and approvals."""

    url: SecretStr = Field(
        default=SecretStr("sqlite:///guard.db"),
        description="SQLAlchemy URL: sqlite:///path (one replica) or postgresql+psycopg://...",
    )


class ApiConfig(Strict):
    """The guard's own HTTP API (health, metrics, incidents, approvals)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    read_auth: bool = Field(
        default=False, description="Require a token for read endpoints too (writes always do)."
    )
    public_url: AnyHttpUrl | None = Field(
        default=None, description="How humans reach this API (links in pages)."
    )


class LeaderConfig(Strict):
    """Leader election among replicas sharing a PostgreSQL store (SQLite: one replica)."""

    namespace: str = Field(
        default="", max_length=100, description="Separates guard deployments sharing a database."
    )
    retry_seconds: Seconds = Field(
        default=5.0, description="How often a standby tries to take over."
    )
    check_seconds: Seconds = Field(
        default=2.0, description="How often the leader checks it still holds the lock."
    )
    failover_seconds: Seconds = Field(
        default=15.0,
        description="Budget for PostgreSQL to drop a vanished leader's session (keepalives).",
    )


class GoogleConfig(Strict):
    """How to reach Google Cloud; the emulator endpoints point at the local fake cloud."""

    emulator_grpc: str | None = Field(
        default=None, description="host:port of a plaintext gRPC fake (tests, demo)."
    )
    emulator_rest: AnyHttpUrl | None = Field(
        default=None, description="Base URL of the REST fake (Cloud SQL Admin)."
    )


class GuardConfig(BaseSettings):
    """The whole configuration: the YAML file, with `GUARD_` environment overrides on top.

    Nested fields are reached with `__`, e.g. `GUARD_STORE__URL` or
    `GUARD_APPS__PEGASUS__DRY_RUN=true`. The file's values come in as init arguments; the
    environment outranks them (see `settings_customise_sources`).
    """

    model_config = SettingsConfigDict(
        env_prefix="GUARD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    apps: dict[Name, AppConfig] = Field(min_length=1)
    approvers: dict[Name, ApproverConfig] = Field(default_factory=dict)
    notifiers: dict[Name, NotifierConfig] = Field(
        default_factory=dict, description="Paging backends by name; apps route to them."
    )
    dry_run: bool = Field(default=False, description="Global dry run: no writes at all.")
    poll_interval_seconds: Seconds = Field(
        default=10.0, description="How often Cloud Run services are read for new deploys."
    )
    metrics_interval_seconds: Seconds = Field(
        default=60.0,
        description="How often Cloud Monitoring is read; its points are 60 s apart anyway.",
    )
    metrics_phase_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Read Cloud Monitoring this many seconds past each multiple of the "
        "interval (UTC): its per-minute points turn visible on the minute, so a read just "
        "after sees each as soon as it exists instead of up to an interval later.",
    )
    evaluate_interval_seconds: Seconds = Field(
        default=1.0, description="How often the rules judge what arrived; logs arrive live."
    )
    respond_interval_seconds: Seconds = Field(
        default=5.0, description="How often open incidents are moved on (verdicts act at once)."
    )
    settle_seconds: float = Field(
        default=60.0,
        ge=0,
        description="After a revert, how long the old code meets traffic before validation.",
    )
    shutdown_grace_seconds: Seconds = Field(
        default=20.0, description="On SIGTERM: time to finish an action in flight, then exit."
    )
    log_level: str = Field(
        default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="JSON log level."
    )
    rules_dir: Path | None = Field(
        default=None, description="Directory of rules/*.yaml; the built-in rules when unset."
    )
    store: StoreConfig = Field(default_factory=StoreConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    leader: LeaderConfig = Field(default_factory=LeaderConfig)
    google: GoogleConfig = Field(default_factory=GoogleConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so it overrides the file; no .env or secrets-dir magic: what
        # configures the guard is the file and the environment, nothing else.
        return (env_settings, init_settings)
