"""The fake Cloud Run Admin v2: services, revisions and traffic, on the sim clock.

The guard decides from what Cloud Run reports (latest created vs latest ready revision,
revision conditions, traffic and traffic_statuses) and acts through one write, a
traffic-only UpdateService. This state answers those reads the way Google does and applies
writes the way Google does: the spec (traffic, generation) changes at once, the status
(traffic_statuses, observed_generation) only when the operation completes, and a route to a
missing or failed revision fails the operation, not the call. The scenario engine drives it
through the Python methods (`create_service`, `deploy_revision`, `set_revision_ready`,
`set_traffic`) and reads `serving_split` to attribute requests and logs to revisions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.cloud import run_v2

from guard.sim.clock import SimClock
from guard.sim.cloudrun_api import RunApi
from guard.sim.cloudrun_model import (
    CONTAINER_FAILED_MESSAGE,
    LATEST,
    REVISION,
    RevisionRecord,
    ServiceRecord,
    effective_split,
    render_revision,
    render_service,
)
from guard.sim.cloudrun_rpc import run_handler
from guard.sim.cloudrun_update import refresh_status
from guard.sim.faults import FakeCloudError, FaultInjector
from guard.sim.operations import OperationsRegistry
from guard.sim.protoutil import WriteLog, stable_hex, to_json_dict
from guard.sim.record import CallRecorder


class RunState:
    """Cloud Run services and revisions of every project and region of one fake cloud."""

    def __init__(
        self,
        clock: SimClock,
        operations: OperationsRegistry,
        *,
        update_delay: float = 5.0,
        recorder: CallRecorder | None = None,
    ) -> None:
        self.clock = clock
        self.operations = operations
        self.update_delay = update_delay
        self.lock = operations.lock
        self.records: dict[str, ServiceRecord] = {}
        self.api = RunApi(self)
        self._human_log = WriteLog("run", clock, recorder) if recorder is not None else None

    # -- scenario side ----------------------------------------------------------------------

    def create_service(
        self,
        project: str,
        region: str,
        name: str,
        *,
        image: str = "europe-docker.pkg.dev/app/images/app:v1",
        revision_id: str | None = None,
        migrations: Sequence[str] = (),
    ) -> str:
        """Create a service with one Ready revision serving 100% (LATEST); its full name."""
        now = self.clock.now()
        svc = ServiceRecord(
            project=project,
            region=region,
            name=name,
            uid=str(uuid.uuid4()),
            created=now,
            updated=now,
            spec=run_v2.Service(
                ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
                template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=image)]),
                traffic=[run_v2.TrafficTarget(type_=LATEST, percent=100)],
            ),
        )
        with self.lock:
            if svc.full_name in self.records:
                raise ValueError(f"service {svc.full_name} already exists")
            self.records[svc.full_name] = svc
            self.add_revision(
                svc, revision_id, svc.spec.template, ready=True, migrations=migrations
            )
            svc.traffic_statuses = [run_v2.TrafficTargetStatus(type_=LATEST, percent=100)]
            refresh_status(svc, now)
        return svc.full_name

    def deploy_revision(
        self,
        service: str,
        revision_id: str | None = None,
        *,
        ready: bool | None = True,
        failure_reason: str = "HEALTH_CHECK_CONTAINER_ERROR",
        failure_message: str = CONTAINER_FAILED_MESSAGE,
        migrations: Sequence[str] = (),
        image: str | None = None,
    ) -> str:
        """A deploy by CI: a new latest-created revision; `ready` None while it starts,
        False when it fails with `failure_reason`/`failure_message`. The traffic spec is left
        as is: LATEST moves to it once Ready, a pinned split does not. Its short name."""
        with self.lock:
            self.operations.settle()
            svc = self._find(service)
            template = run_v2.RevisionTemplate(svc.spec.template)
            if image is not None:
                template.containers = [run_v2.Container(image=image)]
            rev = self.add_revision(
                svc,
                revision_id,
                template,
                ready=ready,
                migrations=migrations,
                reason=failure_reason,
                message=failure_message,
            )
            now = self.clock.now()
            # A deploy that names its revision (--revision-suffix) leaves the name in the
            # template; an auto-named one does not, as with gcloud run deploy.
            template.revision = rev.name if revision_id else ""
            svc.spec.template = template
            svc.generation += 1
            svc.updated = now
            refresh_status(svc, now)
            return rev.name

    def set_revision_ready(
        self,
        service: str,
        revision: str,
        ready: bool,
        *,
        failure_reason: str = "HEALTH_CHECK_CONTAINER_ERROR",
        failure_message: str = CONTAINER_FAILED_MESSAGE,
    ) -> None:
        """A starting revision becomes Ready (or fails); a Ready one becomes latest ready."""
        with self.lock:
            self.operations.settle()
            svc = self._find(service)
            rev = self._revision(svc, revision)
            now = self.clock.now()
            rev.ready, rev.changed = ready, now
            rev.reason, rev.message = ("", "") if ready else (failure_reason, failure_message)
            order = list(svc.revisions)
            if ready and (
                not svc.latest_ready or order.index(rev.name) > order.index(svc.latest_ready)
            ):
                svc.latest_ready = rev.name
            refresh_status(svc, now)

    def set_traffic(
        self,
        service: str,
        split: Mapping[str, int] | None,
        *,
        actor: str = "human",
        record: bool = True,
        immediate: bool = False,
    ) -> str:
        """A traffic change by someone other than the guard (a person's `gcloud run services
        update-traffic`, a deployer's `--no-traffic`): `split` maps revision short names (or
        "LATEST") to percents; None sends 100% to LATEST. It is an UpdateService like any
        other (an operation, done after the update delay) unless `immediate` (scenario set-up:
        in effect at once; ValueError if it cannot route). Recorded with `actor` in the
        request unless `record` is False. Returns the operation's name."""
        targets = [run_v2.TrafficTarget(type_=LATEST, percent=100)]
        if split is not None:
            targets = [
                run_v2.TrafficTarget(type_=LATEST, percent=pct)
                if rev == "LATEST"
                else run_v2.TrafficTarget(type_=REVISION, revision=rev, percent=pct)
                for rev, pct in split.items()
            ]
        with self.lock:
            name = self._find(service).full_name
        request = run_v2.UpdateServiceRequest(
            service=run_v2.Service(name=name, traffic=targets), update_mask={"paths": ["traffic"]}
        )
        log = self._human_log if record else None
        as_dict: dict[str, Any] = {**to_json_dict(request), "actor": actor}
        try:
            op = self.api.update_service(
                request, modifier=f"{actor}@example.com", delay=0.0 if immediate else None
            )
        except FakeCloudError as err:
            if log is not None:
                log.record("UpdateService", as_dict, err.code)
            raise
        if log is not None:
            log.record("UpdateService", as_dict)
        if immediate:
            done = self.operations.get(op.name)
            if not done.done or done.HasField("error"):
                raise ValueError(f"cannot route {dict(split or {})}: {done.error.message}")
        return str(op.name)

    def serving_split(self, service: str) -> dict[str, int]:
        """Percent of requests each revision (short name) receives now."""
        with self.lock:
            self.operations.settle()
            return effective_split(self._find(service))

    def service(self, service: str) -> run_v2.Service:
        with self.lock:
            self.operations.settle()
            return render_service(self._find(service))

    def revision(self, service: str, revision: str) -> run_v2.Revision:
        with self.lock:
            self.operations.settle()
            svc = self._find(service)
            return render_revision(svc, self._revision(svc, revision))

    def revisions(self, service: str) -> list[str]:
        """Short names of the service's revisions, oldest first."""
        with self.lock:
            return list(self._find(service).revisions)

    def migrations(self, service: str, revision: str) -> tuple[str, ...]:
        with self.lock:
            return self._revision(self._find(service), revision).migrations

    def services(self) -> list[str]:
        with self.lock:
            return sorted(self.records)

    # -- API side (called by the gRPC servicers) ------------------------------------------

    def handler(self, recorder: CallRecorder, faults: FaultInjector) -> grpc.GenericRpcHandler:
        """The gRPC handler serving Cloud Run's Services and Revisions (api name "run")."""
        return run_handler(self.api, recorder, faults)

    # -- internals --------------------------------------------------------------------------

    def _find(self, service: str) -> ServiceRecord:
        """A service by full name, or by short name when only one service has it."""
        if "/" in service:
            found = self.records.get(service)
            if found is None:
                raise KeyError(f"no service {service}")
            return found
        matches = [s for s in self.records.values() if s.name == service]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} services named {service!r}; use the full name")
        return matches[0]

    @staticmethod
    def _revision(svc: ServiceRecord, revision: str) -> RevisionRecord:
        short = revision.rsplit("/", 1)[-1]
        if short not in svc.revisions:
            raise KeyError(f"no revision {short} in {svc.full_name}")
        return svc.revisions[short]

    def add_revision(
        self,
        svc: ServiceRecord,
        name: str | None,
        template: run_v2.RevisionTemplate,
        *,
        ready: bool | None,
        migrations: Sequence[str] = (),
        reason: str = "",
        message: str = "",
    ) -> RevisionRecord:
        """A new latest-created revision (named like Cloud Run's when `name` is None)."""
        now = self.clock.now()
        number = len(svc.revisions) + 1
        suffix = "".join(chr(97 + int(c, 16) % 26) for c in stable_hex(svc.full_name, number)[:3])
        name = name or f"{svc.name}-{number:05d}-{suffix}"
        if name in svc.revisions:
            raise ValueError(f"revision {name} already exists in {svc.full_name}")
        template = run_v2.RevisionTemplate(template)
        template.revision = ""
        rev = RevisionRecord(
            name=name,
            service=svc.name,
            uid=str(uuid.uuid4()),
            created=now,
            changed=now,
            template=template,
            ready=ready,
            reason=reason if ready is False else "",
            message=message if ready is False else "",
            migrations=tuple(migrations),
        )
        svc.revisions[name] = rev
        svc.latest_created = name
        if ready:
            svc.latest_ready = name
        return rev
