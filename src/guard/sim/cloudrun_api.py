"""The Cloud Run Admin v2 API side of the fake: what the gRPC servicers call.

Split from `cloudrun` (the scenario's side of the same state) so each stays readable: here
are the reads as Google renders them (NOT_FOUND messages, paging, newest revisions first)
and UpdateService, whose change lands only when its operation completes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from google.cloud import run_v2
from google.longrunning import operations_pb2

from guard.sim.cloudrun_model import ServiceRecord, render_revision, render_service
from guard.sim.cloudrun_update import UpdatePlan, plan_update, refresh_status, route
from guard.sim.faults import FakeCloudError
from guard.sim.operations import Outcome
from guard.sim.protoutil import paginate

if TYPE_CHECKING:  # the state builds its API object
    from guard.sim.cloudrun import RunState

_SERVICE = re.compile(r"^projects/([^/]+)/locations/([^/]+)/services/([^/]+)$")
_REVISION = re.compile(r"^projects/([^/]+)/locations/([^/]+)/services/([^/]+)/revisions/([^/]+)$")
_PARENT = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")


def _missing(kind: str, name: str, region: str, project: str) -> FakeCloudError:
    return FakeCloudError(
        "NOT_FOUND",
        f"Resource '{name}' of kind '{kind}' in region '{region}' in project '{project}' "
        "does not exist.",
    )


class RunApi:
    """Cloud Run's Services and Revisions RPCs over one `RunState`."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def get_service(self, name: str) -> run_v2.Service:
        with self.state.lock:
            self.state.operations.settle()
            return render_service(self._lookup(name))

    def list_services(self, parent: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
        match = _PARENT.match(parent)
        if match is None:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid parent: {parent!r}")
        project, region = match.groups()
        with self.state.lock:
            self.state.operations.settle()
            found = [
                render_service(s)
                for key, s in sorted(self.state.records.items())
                if s.project == project and region in ("-", s.region)
            ]
        return paginate(found, page_size, page_token, default=100, maximum=1000)

    def get_revision(self, name: str) -> run_v2.Revision:
        match = _REVISION.match(name)
        if match is None:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid revision name: {name!r}")
        project, region, service, revision = match.groups()
        with self.state.lock:
            self.state.operations.settle()
            svc = self.state.records.get(
                f"projects/{project}/locations/{region}/services/{service}"
            )
            if svc is None or revision not in svc.revisions:
                raise _missing("REVISION", revision, region, project)
            return render_revision(svc, svc.revisions[revision])

    def list_revisions(self, parent: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
        match = _SERVICE.match(parent)
        if match is None:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid parent: {parent!r}")
        project, region, service = match.groups()
        with self.state.lock:
            self.state.operations.settle()
            services = [
                s
                for s in self.state.records.values()
                if s.project == project and s.region == region and service in ("-", s.name)
            ]
            if service != "-" and not services:
                raise _missing("SERVICE", service, region, project)
            found = [
                render_revision(s, rev)
                for s in services
                for rev in reversed(s.revisions.values())  # newest first
            ]
        return paginate(found, page_size, page_token, default=100, maximum=1000)

    def update_service(
        self,
        request: run_v2.UpdateServiceRequest,
        *,
        modifier: str = "guard@example.com",
        delay: float | None = None,
    ) -> operations_pb2.Operation:
        """Validate and start an update; `delay` overrides the state's operation delay."""
        with self.state.lock:
            self.state.operations.settle()
            svc = self._lookup(request.service.name)
            plan = plan_update(svc, request)
            if request.validate_only:
                return self.state.operations.start(
                    svc.parent,
                    metadata=render_service(svc),
                    delay=0.0,
                    complete=lambda: Outcome(render_service(svc)),
                )
            now = self.state.clock.now()
            svc.spec = plan.spec
            svc.generation += 1
            svc.updated = now
            svc.last_modifier = modifier
            new_revision = ""
            if plan.creates_revision:
                rev = self.state.add_revision(
                    svc, plan.revision_name, plan.spec.template, ready=None
                )
                new_revision = rev.name
            svc.pending_updates.add(svc.generation)
            refresh_status(svc, now)
            generation = svc.generation
            return self.state.operations.start(
                svc.parent,
                metadata=render_service(svc),
                delay=self.state.update_delay if delay is None else delay,
                complete=lambda: self._complete_update(svc, generation, plan, new_revision),
            )

    def _complete_update(
        self, svc: ServiceRecord, generation: int, plan: UpdatePlan, new_revision: str
    ) -> Outcome:
        """An UpdateService operation ends: the newest running update routes the spec as it
        stands (a newer update supersedes an older one, as Cloud Run reconciles to the latest
        spec); a failed route keeps the old traffic serving and fails the operation."""
        now = self.state.clock.now()
        if new_revision:
            rev = svc.revisions[new_revision]
            if rev.ready is None:
                rev.ready, rev.changed = True, now
                svc.latest_ready = rev.name
        failure: FakeCloudError | None = None
        if generation >= max(svc.pending_updates):
            try:
                svc.traffic_statuses = route(svc, list(svc.spec.traffic))
                svc.route_error = ""
            except FakeCloudError as err:
                failure, svc.route_error = err, err.message
        svc.pending_updates.discard(generation)
        svc.updated = now
        refresh_status(svc, now)
        if failure is not None:
            raise failure
        service = render_service(svc)
        return Outcome(service, metadata=service)

    def _lookup(self, name: str) -> ServiceRecord:
        match = _SERVICE.match(name)
        if match is None:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid service name: {name!r}")
        svc = self.state.records.get(name)
        if svc is None:
            project, region, service = match.groups()
            raise _missing("SERVICE", service, region, project)
        return svc
