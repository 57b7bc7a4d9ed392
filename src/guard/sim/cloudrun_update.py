"""How the fake Cloud Run validates an UpdateService and reconciles a service's status.

Split from `cloudrun` because this is where fidelity matters most for the guard's revert:
which update-mask paths are accepted, what a traffic split must satisfy at call time
(synchronous INVALID_ARGUMENT / ABORTED), and what fails only later, in the operation, as on
Google (a route to a missing revision: code 13, "does not exist or is deleted"; to a failed
one: code 9, "is not ready and cannot serve traffic").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from guard.sim.cloudrun_model import LATEST, REVISION, ServiceRecord, condition
from guard.sim.faults import FakeCloudError
from guard.sim.operations import NotYet

_State = run_v2.Condition.State
_OUTPUT_ONLY = frozenset(
    {
        "uid",
        "generation",
        "create_time",
        "update_time",
        "delete_time",
        "expire_time",
        "creator",
        "last_modifier",
        "observed_generation",
        "terminal_condition",
        "conditions",
        "latest_ready_revision",
        "latest_created_revision",
        "traffic_statuses",
        "uri",
        "urls",
        "satisfies_pzs",
        "reconciling",
        "etag",
    }
)
_FIELDS = frozenset(f.name for f in run_v2.Service.pb().DESCRIPTOR.fields)
WRITABLE = _FIELDS - _OUTPUT_ONLY - {"name"}


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    """A validated update: the new spec, and whether it creates a revision (and its name)."""

    spec: run_v2.Service
    creates_revision: bool = False
    revision_name: str | None = None


def plan_update(svc: ServiceRecord, request: run_v2.UpdateServiceRequest) -> UpdatePlan:
    """Validate `request` against `svc` (raising what Google raises at call time)."""
    incoming = run_v2.Service.pb(request.service)
    if incoming.etag and incoming.etag != svc.etag:
        raise FakeCloudError(
            "ABORTED",
            f"The etag {incoming.etag} does not match the current etag {svc.etag} of "
            f"service {svc.full_name}: the service changed since it was read.",
        )
    paths = list(request.update_mask.paths)
    spec = run_v2.Service.pb(run_v2.Service(svc.spec))
    if paths:
        for path in paths:
            if path.split(".", 1)[0] not in WRITABLE:
                raise FakeCloudError("INVALID_ARGUMENT", f"Invalid update_mask path: {path!r}")
        try:
            field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                incoming, spec, replace_message_field=True, replace_repeated_field=True
            )
        except ValueError as err:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid update_mask: {err}") from None
    else:
        spec.CopyFrom(incoming)
        for name in _OUTPUT_ONLY | {"name"}:
            spec.ClearField(name)
    new = run_v2.Service.wrap(spec)
    validate_traffic(list(new.traffic))
    return _plan_template(svc, new)


def _plan_template(svc: ServiceRecord, new: run_v2.Service) -> UpdatePlan:
    def config(template: run_v2.RevisionTemplate) -> bytes:
        copy = run_v2.RevisionTemplate(template)
        copy.revision = ""
        data: bytes = run_v2.RevisionTemplate.serialize(copy)
        return data

    requested = new.template.revision
    if requested and requested in svc.revisions:
        if config(svc.revisions[requested].template) != config(new.template):
            raise FakeCloudError(
                "ALREADY_EXISTS",
                f"Revision named '{requested}' with different configuration already exists.",
            )
        return UpdatePlan(new)
    if config(new.template) != config(svc.spec.template) or requested:
        if requested and not requested.startswith(f"{svc.name}-"):
            raise FakeCloudError(
                "INVALID_ARGUMENT",
                f"template.revision must be prefixed by the service name '{svc.name}-'.",
            )
        return UpdatePlan(new, creates_revision=True, revision_name=requested or None)
    return UpdatePlan(new)


def validate_traffic(targets: list[run_v2.TrafficTarget]) -> None:
    """The checks Cloud Run makes on a traffic spec when the call arrives."""
    total = 0
    tags: set[str] = set()
    for target in targets:
        if target.type_ == REVISION and not target.revision:
            raise FakeCloudError(
                "INVALID_ARGUMENT", "A traffic target of type REVISION must name a revision."
            )
        if target.type_ == LATEST and target.revision:
            raise FakeCloudError(
                "INVALID_ARGUMENT", "A traffic target of type LATEST must not name a revision."
            )
        if target.type_ not in (LATEST, REVISION):
            raise FakeCloudError("INVALID_ARGUMENT", "Traffic target type must be specified.")
        if not 0 <= target.percent <= 100:
            raise FakeCloudError(
                "INVALID_ARGUMENT", f"Traffic percent must be in [0, 100], got {target.percent}."
            )
        if target.tag:
            if target.tag in tags:
                raise FakeCloudError("INVALID_ARGUMENT", f"Duplicate traffic tag {target.tag!r}.")
            tags.add(target.tag)
        total += target.percent
    if targets and total != 100:
        raise FakeCloudError("INVALID_ARGUMENT", f"Traffic targets sum to {total}, want 100.")


def route(svc: ServiceRecord, targets: list[run_v2.TrafficTarget]) -> list[Any]:
    """The traffic statuses once `targets` are routed, or the operation's error.

    Raises `NotYet` while a target revision is still starting: Google's operation waits.
    """
    targets = targets or [run_v2.TrafficTarget(type_=LATEST, percent=100)]
    statuses: list[Any] = []
    for target in targets:
        name = svc.latest_ready if target.type_ == LATEST else target.revision
        if target.type_ == LATEST and not name:
            name = svc.latest_created
        rev = svc.revisions.get(name)
        if rev is None:
            raise FakeCloudError(
                "INTERNAL",
                f"Revision '{name}' does not exist or is deleted. Update all traffic to route "
                "to currently available revisions.",
            )
        if rev.ready is None:
            raise NotYet(1.0)
        if rev.ready is False:
            raise FakeCloudError(
                "FAILED_PRECONDITION",
                f"Revision '{name}' is not ready and cannot serve traffic. {rev.message}",
            )
        status = run_v2.TrafficTargetStatus(
            type_=target.type_, revision=target.revision, percent=target.percent, tag=target.tag
        )
        if target.tag:
            status.uri = svc.uri.replace("https://", f"https://{target.tag}---", 1)
        statuses.append(status)
    return statuses


def refresh_status(svc: ServiceRecord, now: datetime) -> None:
    """Recompute `observed_generation`, `reconciling`, `terminal_condition` and the etag.

    A generation counts as observed once no UpdateService operation up to it is running;
    changes that need no operation (a deploy, a revision becoming ready) are observed at once.
    """
    pending = svc.pending_updates
    svc.observed_generation = min(pending) - 1 if pending else svc.generation
    latest = svc.revisions.get(svc.latest_created)
    svc.reconciling = bool(pending) or (latest is not None and latest.ready is None)
    message, reason = "", ""
    if svc.route_error:
        state, message = _State.CONDITION_FAILED, svc.route_error
    elif latest is not None and latest.ready is False:
        state, reason = _State.CONDITION_FAILED, "REVISION_FAILED"
        message = (
            f"Revision '{latest.name}' is not ready and cannot serve traffic. {latest.message}"
        )
    elif svc.reconciling:
        state = _State.CONDITION_RECONCILING
    else:
        state = _State.CONDITION_SUCCEEDED
    if svc.status_changed is None or svc.terminal.state != state:
        svc.status_changed = now
    svc.terminal = condition("Ready", state, svc.status_changed, message=message, reason=reason)
    svc.new_etag()
