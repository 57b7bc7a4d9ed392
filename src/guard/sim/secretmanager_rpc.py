"""gRPC servicer of the fake Secret Manager (google.cloud.secretmanager.v1).

Thin: requests become `SecretsState` calls; write RPCs are recorded with their requests
(payloads included: they are fake connection strings, and tests assert on them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from google.cloud import secretmanager_v1 as sm
from google.cloud.secretmanager_v1.services.secret_manager_service.transports.grpc import (
    SecretManagerServiceGrpcTransport,
)

from guard.sim import grpcutil
from guard.sim.faults import FakeCloudError, FaultInjector
from guard.sim.protoutil import WriteLog, service_rpcs
from guard.sim.record import CallRecorder

if TYPE_CHECKING:  # the state imports this module to build its handler
    from guard.sim.secretmanager import SecretsState

_SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"


class SecretsServicer:
    """The Secret Manager RPCs the guard and its scenarios use."""

    def __init__(self, state: SecretsState, writes: WriteLog) -> None:
        self.state = state
        self.writes = writes

    def CreateSecret(
        self, request: sm.CreateSecretRequest, context: grpc.ServicerContext
    ) -> sm.Secret:
        return self.writes.call(
            "CreateSecret",
            request,
            lambda: self.state.create(request.parent, request.secret_id, request.secret),
        )

    def GetSecret(self, request: sm.GetSecretRequest, context: grpc.ServicerContext) -> sm.Secret:
        return self.state.get(request.name)

    def AddSecretVersion(
        self, request: sm.AddSecretVersionRequest, context: grpc.ServicerContext
    ) -> sm.SecretVersion:
        return self.writes.call(
            "AddSecretVersion", request, lambda: self.state.add(request.parent, request.payload)
        )

    def AccessSecretVersion(
        self, request: sm.AccessSecretVersionRequest, context: grpc.ServicerContext
    ) -> sm.AccessSecretVersionResponse:
        name, payload = self.state.access(request.name)
        return sm.AccessSecretVersionResponse(name=name, payload=payload)

    def GetSecretVersion(
        self, request: sm.GetSecretVersionRequest, context: grpc.ServicerContext
    ) -> sm.SecretVersion:
        return self.state.get_version(request.name)

    def ListSecretVersions(
        self, request: sm.ListSecretVersionsRequest, context: grpc.ServicerContext
    ) -> sm.ListSecretVersionsResponse:
        if request.filter:
            raise FakeCloudError("UNIMPLEMENTED", "The fake Secret Manager does not filter.")
        page, token, total = self.state.list_versions(
            request.parent, request.page_size, request.page_token
        )
        return sm.ListSecretVersionsResponse(versions=page, next_page_token=token, total_size=total)

    def DisableSecretVersion(
        self, request: sm.DisableSecretVersionRequest, context: grpc.ServicerContext
    ) -> sm.SecretVersion:
        return self.writes.call(
            "DisableSecretVersion",
            request,
            lambda: self.state.set_state(request.name, sm.SecretVersion.State.DISABLED),
        )

    def EnableSecretVersion(
        self, request: sm.EnableSecretVersionRequest, context: grpc.ServicerContext
    ) -> sm.SecretVersion:
        return self.writes.call(
            "EnableSecretVersion",
            request,
            lambda: self.state.set_state(request.name, sm.SecretVersion.State.ENABLED),
        )


def secrets_handler(
    state: SecretsState, recorder: CallRecorder, faults: FaultInjector
) -> grpc.GenericRpcHandler:
    return grpcutil.build_handler(
        "secretmanager",
        service_rpcs(SecretManagerServiceGrpcTransport, _SERVICE),
        SecretsServicer(state, WriteLog("secretmanager", state.clock, recorder)),
        clock=state.clock,
        recorder=recorder,
        faults=faults,
    )
