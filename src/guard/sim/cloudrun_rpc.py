"""gRPC servicers of the fake Cloud Run Admin v2 (`Services` and `Revisions`).

Thin on purpose: they turn requests into `RunState` calls and record write calls, so the
state stays testable from Python and the wire shape stays exactly the client library's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from google.cloud import run_v2
from google.cloud.run_v2.services.revisions.transports.grpc import RevisionsGrpcTransport
from google.cloud.run_v2.services.services.transports.grpc import ServicesGrpcTransport
from google.longrunning import operations_pb2

from guard.sim import grpcutil
from guard.sim.faults import FaultInjector
from guard.sim.protoutil import WriteLog, combine_handlers, service_rpcs
from guard.sim.record import CallRecorder

if TYPE_CHECKING:  # the state imports this module to build its handler
    from guard.sim.cloudrun_api import RunApi


class ServicesServicer:
    """google.cloud.run.v2.Services: GetService, ListServices, UpdateService."""

    def __init__(self, state: RunApi, writes: WriteLog) -> None:
        self.state = state
        self.writes = writes

    def GetService(
        self, request: run_v2.GetServiceRequest, context: grpc.ServicerContext
    ) -> run_v2.Service:
        return self.state.get_service(request.name)

    def ListServices(
        self, request: run_v2.ListServicesRequest, context: grpc.ServicerContext
    ) -> run_v2.ListServicesResponse:
        page, token = self.state.list_services(
            request.parent, request.page_size, request.page_token
        )
        return run_v2.ListServicesResponse(services=page, next_page_token=token)

    def UpdateService(
        self, request: run_v2.UpdateServiceRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        return self.writes.call(
            "UpdateService", request, lambda: self.state.update_service(request)
        )


class RevisionsServicer:
    """google.cloud.run.v2.Revisions: GetRevision, ListRevisions."""

    def __init__(self, state: RunApi) -> None:
        self.state = state

    def GetRevision(
        self, request: run_v2.GetRevisionRequest, context: grpc.ServicerContext
    ) -> run_v2.Revision:
        return self.state.get_revision(request.name)

    def ListRevisions(
        self, request: run_v2.ListRevisionsRequest, context: grpc.ServicerContext
    ) -> run_v2.ListRevisionsResponse:
        page, token = self.state.list_revisions(
            request.parent, request.page_size, request.page_token
        )
        return run_v2.ListRevisionsResponse(revisions=page, next_page_token=token)


def run_handler(
    state: RunApi, recorder: CallRecorder, faults: FaultInjector
) -> grpc.GenericRpcHandler:
    """The gRPC handler of the fake Cloud Run, both services (api name "run")."""
    writes = WriteLog("run", state.state.clock, recorder)
    services = grpcutil.build_handler(
        "run",
        service_rpcs(ServicesGrpcTransport, "google.cloud.run.v2.Services"),
        ServicesServicer(state, writes),
        clock=state.state.clock,
        recorder=recorder,
        faults=faults,
    )
    revisions = grpcutil.build_handler(
        "run",
        service_rpcs(RevisionsGrpcTransport, "google.cloud.run.v2.Revisions"),
        RevisionsServicer(state),
        clock=state.state.clock,
        recorder=recorder,
        faults=faults,
    )
    return combine_handlers(services, revisions)
