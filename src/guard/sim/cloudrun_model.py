"""Cloud Run Admin v2 records and how they render as the API's Service and Revision messages.

The fake keeps its own small records (what a scenario changes: revisions, readiness,
traffic) and renders them into `google.cloud.run_v2` messages on every read, filling the
output-only fields the way Google does: full revision names in `latest_ready_revision`,
`traffic_statuses` mirroring the spec only once reconciled, `terminal_condition` carrying a
failed revision's reason, `reconciling` while an operation runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from google.cloud import run_v2

from guard.sim.protoutil import project_number, stable_hex, timestamp

#: What Cloud Run says when a container does not start (revision Ready condition message).
CONTAINER_FAILED_MESSAGE = (
    "The user-provided container failed to start and listen on the port defined provided by "
    "the PORT=8080 environment variable within the allocated timeout. This can happen when "
    "the container port is misconfigured or if the timeout is too short. The health check "
    "timeout can be extended. Logs for this revision might contain more information."
)
#: Annotation on a simulated revision naming the migrations it applies at start.
MIGRATIONS_ANNOTATION = "sim.deploy-guard.dev/migrations"

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
_State = run_v2.Condition.State


@dataclass
class RevisionRecord:
    """One revision: `ready` None while it starts, then True (serving-capable) or False."""

    name: str  # short name, e.g. "pegasus-api-00002-xqz"
    service: str  # short service name
    uid: str
    created: datetime
    changed: datetime
    template: run_v2.RevisionTemplate
    ready: bool | None = True
    reason: str = ""
    message: str = ""
    migrations: tuple[str, ...] = ()


@dataclass
class ServiceRecord:
    """One service: the spec as last written plus the status Cloud Run reports."""

    project: str
    region: str
    name: str
    uid: str
    created: datetime
    updated: datetime
    spec: run_v2.Service  # the writable fields as last written (template, traffic, labels...)
    generation: int = 1
    observed_generation: int = 1
    traffic_statuses: list[run_v2.TrafficTargetStatus] = field(default_factory=list)
    latest_created: str = ""
    latest_ready: str = ""
    reconciling: bool = False
    terminal: run_v2.Condition = field(default_factory=run_v2.Condition)
    status_changed: datetime | None = None  # when `terminal` last changed state
    route_error: str = ""  # why the last route failed; empty when it succeeded
    pending_updates: set[int] = field(default_factory=set)  # generations of running updates
    revisions: dict[str, RevisionRecord] = field(default_factory=dict)
    etag: str = ""
    last_modifier: str = "deployer@example.com"
    version: int = 0  # bumped on every change; the etag derives from it

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def full_name(self) -> str:
        return f"{self.parent}/services/{self.name}"

    def revision_path(self, short: str) -> str:
        return f"{self.full_name}/revisions/{short}" if short else ""

    def new_etag(self) -> None:
        self.version += 1
        self.etag = f'"{stable_hex(self.uid, self.version, length=24)}"'

    @property
    def uri(self) -> str:
        return f"https://{self.name}-{stable_hex(self.project, length=10)}-ew.a.run.app"


def condition(
    kind: str,
    state: int,
    at: datetime,
    *,
    message: str = "",
    reason: str = "",
) -> run_v2.Condition:
    """A condition; `reason` may name a RevisionReason or a CommonReason, as Google's do."""
    cond = run_v2.Condition(
        type_=kind, state=state, message=message, last_transition_time=timestamp(at)
    )
    if state == _State.CONDITION_FAILED:
        cond.severity = run_v2.Condition.Severity.ERROR  # type: ignore[assignment]
    revision_reasons = run_v2.Condition.RevisionReason.__members__
    common_reasons = run_v2.Condition.CommonReason.__members__
    if reason in revision_reasons:
        cond.revision_reason = revision_reasons[reason]
    elif reason in common_reasons:
        cond.reason = common_reasons[reason]
    elif reason:
        raise ValueError(f"unknown Cloud Run condition reason {reason!r}")
    return cond


def revision_conditions(rev: RevisionRecord) -> list[run_v2.Condition]:
    if rev.ready is None:
        pending = _State.CONDITION_RECONCILING
        return [
            condition("Ready", pending, rev.changed, reason="PENDING"),
            condition("ContainerHealthy", pending, rev.changed),
            condition("ResourcesAvailable", pending, rev.changed),
        ]
    if rev.ready:
        ok = _State.CONDITION_SUCCEEDED
        return [
            condition("Ready", ok, rev.changed),
            condition("ContainerHealthy", ok, rev.changed),
            condition("ResourcesAvailable", ok, rev.changed),
        ]
    failed = _State.CONDITION_FAILED
    return [
        condition("Ready", failed, rev.changed, message=rev.message, reason=rev.reason),
        condition("ContainerHealthy", failed, rev.changed, message=rev.message, reason=rev.reason),
        condition("ResourcesAvailable", _State.CONDITION_SUCCEEDED, rev.changed),
    ]


def render_revision(svc: ServiceRecord, rev: RevisionRecord) -> run_v2.Revision:
    tpl = rev.template
    annotations = dict(tpl.annotations)
    if rev.migrations:
        annotations[MIGRATIONS_ANNOTATION] = ",".join(rev.migrations)
    log_filter = (
        f'resource.type="cloud_run_revision" resource.labels.service_name="{svc.name}" '
        f'resource.labels.revision_name="{rev.name}"'
    )
    return run_v2.Revision(
        name=svc.revision_path(rev.name),
        uid=rev.uid,
        generation=1,
        labels=dict(tpl.labels),
        annotations=annotations,
        create_time=timestamp(rev.created),
        update_time=timestamp(rev.changed),
        launch_stage="GA",
        service=svc.name,
        scaling=tpl.scaling,
        max_instance_request_concurrency=tpl.max_instance_request_concurrency or 80,
        timeout=tpl.timeout or {"seconds": 300},
        service_account=tpl.service_account
        or f"{project_number(svc.project)}-compute@developer.gserviceaccount.com",
        containers=list(tpl.containers),
        volumes=list(tpl.volumes),
        execution_environment=tpl.execution_environment,
        reconciling=rev.ready is None,
        conditions=revision_conditions(rev),
        observed_generation=1,
        log_uri=(
            f"https://console.cloud.google.com/logs/viewer?project={svc.project}"
            f"&advancedFilter={log_filter}"
        ),
        etag=f'"{stable_hex(rev.uid, rev.changed, length=24)}"',
    )


def render_service(svc: ServiceRecord) -> run_v2.Service:
    out = run_v2.Service(svc.spec)  # a copy of the writable fields
    out.name = svc.full_name
    out.uid = svc.uid
    out.generation = svc.generation
    out.observed_generation = svc.observed_generation
    out.create_time = timestamp(svc.created)
    out.update_time = timestamp(svc.updated)
    out.creator = "deployer@example.com"
    out.last_modifier = svc.last_modifier
    out.launch_stage = out.launch_stage or "GA"
    out.latest_created_revision = svc.revision_path(svc.latest_created)
    out.latest_ready_revision = svc.revision_path(svc.latest_ready)
    out.traffic_statuses = list(svc.traffic_statuses)
    out.reconciling = svc.reconciling
    out.terminal_condition = svc.terminal
    out.conditions = _service_conditions(svc)
    out.uri = svc.uri
    out.urls = [f"https://{svc.name}-{project_number(svc.project)}.{svc.region}.run.app", svc.uri]
    out.etag = svc.etag
    return out


def _service_conditions(svc: ServiceRecord) -> list[run_v2.Condition]:
    when = svc.status_changed or svc.updated
    latest = svc.revisions.get(svc.latest_created)
    config = _State.CONDITION_SUCCEEDED
    if latest is not None and latest.ready is None:
        config = _State.CONDITION_RECONCILING
    elif latest is not None and latest.ready is False:
        config = _State.CONDITION_FAILED
    routes = _State.CONDITION_RECONCILING if svc.reconciling else _State.CONDITION_SUCCEEDED
    if svc.terminal.state == _State.CONDITION_FAILED and config != _State.CONDITION_FAILED:
        routes = _State.CONDITION_FAILED
    return [
        condition("RoutesReady", routes, when),
        condition(
            "ConfigurationsReady",
            config,
            when,
            reason="REVISION_FAILED" if config == _State.CONDITION_FAILED else "",
            message=latest.message if latest is not None and latest.ready is False else "",
        ),
    ]


def effective_split(svc: ServiceRecord) -> dict[str, int]:
    """Percent of requests each revision receives now, from the reconciled traffic.

    LATEST resolves to the latest Ready revision at the moment of asking, as Cloud Run's
    router does; a service with no Ready revision serves nothing.
    """
    split: dict[str, int] = {}
    for status in svc.traffic_statuses:
        revision = svc.latest_ready if status.type_ == LATEST else status.revision
        if revision and status.percent:
            split[revision] = split.get(revision, 0) + status.percent
    return split
