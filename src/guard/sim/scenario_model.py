"""The scenario file format: what happens to which Cloud Run app, and when.

A scenario is the fake cloud's script: apps and their services, revisions and how each one
behaves (5xx ratio, log lines) depending on the database schema it meets, the traffic they
get, deploy events, human actions and faults, all on a timeline in scenario seconds. It is
validated strictly (unknown keys are errors) because a typo in a test scenario would
otherwise quietly test nothing. docs/scenarios.md documents it; scenarios/ has examples.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from guard.sim.clock import DEFAULT_EPOCH
from guard.sim.timeparse import seconds

Time = Annotated[float, BeforeValidator(seconds)]
Rate = Annotated[float, Field(ge=0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LogSpec(_Spec):
    """A log line a revision writes: literal text, a JSON payload, or a real-driver fixture.

    `fixture` names a case id in guard/sim/data/error_texts.json (real error texts from
    real drivers). `layout` chooses how a multi-line text arrives in Cloud Logging: as one
    entry with newlines, or one entry per line (both happen on Cloud Run).
    """

    text: str | None = None
    json_payload: dict[str, Any] | None = Field(default=None, alias="json")
    fixture: str | None = None
    severity: str = "ERROR"
    stream: Literal["stdout", "stderr"] = "stderr"
    layout: Literal["entry", "lines"] = "entry"
    rate: Rate | None = Field(
        default=None, description="Lines per second while the revision serves traffic."
    )
    per_error: bool = Field(default=False, description="One line per 5xx request served.")
    offset: Time = Field(default=0.0, description="For startup logs: seconds after creation.")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        sources = [s for s in (self.text, self.json_payload, self.fixture) if s is not None]
        if len(sources) != 1:
            raise ValueError("a log line needs exactly one of text, json or fixture")
        if self.rate is not None and self.per_error:
            raise ValueError("choose rate or per_error, not both")
        return self


class Behaviour(_Spec):
    """How a revision serves while the database schema is one of `schema` (any if unset)."""

    schema_versions: list[int] | None = Field(default=None, alias="schema")
    error_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    error_status: int = Field(default=500, ge=500, le=599)
    logs: list[LogSpec] = Field(default_factory=list)


class Failure(_Spec):
    """Why a revision fails to become Ready, as Cloud Run reports it."""

    reason: str = "HEALTH_CHECK_CONTAINER_ERROR"
    message: str = (
        "The user-provided container failed to start and listen on the port defined provided "
        "by the PORT=8080 environment variable within the allocated timeout. This can happen "
        "when the container port is misconfigured or if the timeout is too short."
    )
    exit_code: int = 1


class RevisionSpec(_Spec):
    """One revision: when it is created, how it starts, which migrations it runs, how it serves."""

    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    created: Time = Field(default=0.0, description="Scenario seconds; negative = before t=0.")
    startup: Time = Field(default=10.0, ge=0, description="Seconds until Ready (or failed).")
    ready: bool = True
    failure: Failure = Field(default_factory=Failure)
    migrations: list[str] = Field(default_factory=list)
    schema_after: int | None = Field(
        default=None,
        alias="schema",
        description="The database schema version once its migrations ran (unset: unchanged).",
    )
    startup_logs: list[LogSpec] = Field(default_factory=list)
    behaviour: list[Behaviour] = Field(default_factory=lambda: [Behaviour()])

    def behaviour_for(self, schema: int) -> Behaviour:
        """The first behaviour whose schema list admits `schema` (the last one otherwise)."""
        for b in self.behaviour:
            if b.schema_versions is None or schema in b.schema_versions:
                return b
        return Behaviour()


class RateStep(_Spec):
    at: Time
    rps: Rate


class ServiceSpec(_Spec):
    """One Cloud Run service: its load, its initial revisions and traffic."""

    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
    role: Literal["api", "worker"] = "api"
    rps: Rate | list[RateStep] = 10.0
    revisions: list[RevisionSpec] = Field(min_length=1)
    traffic: Literal["latest"] | dict[str, int] = "latest"
    request_logs: Literal["all", "errors", "none"] = Field(
        default="all", description="Which requests write a request log (Cloud Run: all)."
    )

    def rps_at(self, t: float) -> float:
        if not isinstance(self.rps, list):
            return self.rps
        current = 0.0
        for step in sorted(self.rps, key=lambda s: s.at):
            if step.at <= t:
                current = step.rps
        return current


class BackupSpec(_Spec):
    id: int
    at: Time


class DatabaseSpec(_Spec):
    """The app's Cloud SQL instance, its secret, schema version and recovery window."""

    instance: str
    secret: str
    connection_string: str = Field(
        default="postgresql://app:app-password@{host}:5432/app",
        description="The secret's value; {host} becomes the instance's private IP address.",
    )
    schema_version: int = Field(default=1, alias="schema")
    recovery_window: Time = Field(default=7 * 86400.0, gt=0)
    backups: list[BackupSpec] = Field(default_factory=list)
    database_version: str = "POSTGRES_15"


class AppSpec(_Spec):
    name: str
    project: str
    region: str
    services: list[ServiceSpec] = Field(min_length=1)
    database: DatabaseSpec | None = None
    pipeline: str | None = None


class DeployEvent(_Spec):
    service: str
    revision: RevisionSpec
    traffic: Literal["latest", "none"] | int = Field(
        default="latest", description="latest: 100% once Ready; a number: a canary percent."
    )


class TrafficEvent(_Spec):
    """A human changes traffic by hand (the guard must not undo it)."""

    service: str
    split: Literal["latest"] | dict[str, int]


class RateEvent(_Spec):
    service: str
    rps: Rate


class FaultSpec(_Spec):
    api: str
    method: str = "*"
    code: str | None = "UNAVAILABLE"
    message: str = "injected fault"
    times: int | None = None
    skip: int = 0
    latency: float = 0.0
    drop_after: int | None = None
    end: Time | None = None


class Event(_Spec):
    """Something that happens at `at`: exactly one of the kinds below."""

    at: Time
    deploy: DeployEvent | None = None
    traffic: TrafficEvent | None = None
    rate: RateEvent | None = None
    fault: FaultSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = [k for k in (self.deploy, self.traffic, self.rate, self.fault) if k is not None]
        if len(kinds) != 1:
            raise ValueError("an event needs exactly one of deploy, traffic, rate or fault")
        return self


class Delays(_Spec):
    """Google's delays, modelled: change them to model a slower or faster day."""

    ingestion: Time = Field(default=120.0, ge=0, description="Monitoring point visibility.")
    sample_period: Time = Field(default=60.0, gt=0)
    run_operation: Time = Field(default=3.0, ge=0, description="UpdateService to done.")
    deploy_operation: Time = Field(default=2.0, ge=0)
    sql_operation: Time = Field(default=120.0, ge=0, description="Clone/restore to DONE.")
    log_ingestion: Time = Field(default=0.5, ge=0, description="Log write to receive.")


class Scenario(_Spec):
    name: str
    description: str = ""
    seed: int = 0
    epoch: datetime = DEFAULT_EPOCH
    duration: Time = Field(default=1800.0, gt=0)
    tick: Time = Field(default=1.0, gt=0, description="Simulation step in scenario seconds.")
    delays: Delays = Field(default_factory=Delays)
    allow_short_alignment: bool = Field(
        default=False, description="Let Monitoring accept alignment periods under 60 s (demo)."
    )
    apps: list[AppSpec] = Field(min_length=1)
    events: list[Event] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_resolve(self) -> Self:
        services = {s.name: s for a in self.apps for s in a.services}
        for event in self.events:
            name = (event.deploy or event.traffic or event.rate or _NoService()).service
            if name and name not in services:
                raise ValueError(f"event at {event.at}s names unknown service {name!r}")
        return self


class _NoService:
    service = ""
