"""The fake Cloud Deploy: delivery pipelines that the guard suspends to freeze a rollout.

The guard's freeze is UpdateDeliveryPipeline with `suspended=true` and update mask
`suspended`, a long-running operation; the pipeline reads as suspended only once that
operation completes, as on Google. The scenario engine asks `is_suspended` before it lets a
simulated release or rollout through (suspended pipelines block both).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from google.cloud import deploy_v1
from google.cloud.deploy_v1.services.cloud_deploy.transports.grpc import (
    CloudDeployGrpcTransport,
)
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2

from guard.sim import grpcutil
from guard.sim.clock import SimClock
from guard.sim.faults import FakeCloudError, FaultInjector
from guard.sim.operations import OperationsRegistry, Outcome
from guard.sim.protoutil import WriteLog, paginate, service_rpcs, stable_hex, timestamp
from guard.sim.record import CallRecorder

_PIPELINE = re.compile(r"^projects/([^/]+)/locations/([^/]+)/deliveryPipelines/([^/]+)$")
_PARENT = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
#: Fields UpdateDeliveryPipeline may change (the rest are output only or the name).
_UPDATABLE = frozenset({"description", "annotations", "labels", "serial_pipeline", "suspended"})


@dataclass
class _Pipeline:
    spec: deploy_v1.DeliveryPipeline  # name and writable fields
    uid: str
    created: datetime
    updated: datetime
    version: int = 0

    @property
    def etag(self) -> str:
        return stable_hex(self.uid, self.version, length=16)


class DeployState:
    """Cloud Deploy delivery pipelines of one fake cloud."""

    def __init__(
        self, clock: SimClock, operations: OperationsRegistry, *, update_delay: float = 2.0
    ) -> None:
        self.clock = clock
        self.operations = operations
        self.update_delay = update_delay
        self._lock = operations.lock
        self._pipelines: dict[str, _Pipeline] = {}

    # -- scenario side ----------------------------------------------------------------------

    def create_pipeline(
        self, project: str, region: str, name: str, *, targets: tuple[str, ...] = ("prod",)
    ) -> str:
        """A pipeline promoting through `targets` in order; its full name."""
        full = f"projects/{project}/locations/{region}/deliveryPipelines/{name}"
        now = self.clock.now()
        stages = [deploy_v1.Stage(target_id=t) for t in targets]
        spec = deploy_v1.DeliveryPipeline(
            name=full, serial_pipeline=deploy_v1.SerialPipeline(stages=stages)
        )
        with self._lock:
            if full in self._pipelines:
                raise ValueError(f"pipeline {full} already exists")
            self._pipelines[full] = _Pipeline(spec, str(uuid.uuid4()), now, now)
        return full

    def is_suspended(self, name: str) -> bool:
        with self._lock:
            self.operations.settle()
            return bool(self._get(name).spec.suspended)

    def set_suspended(self, name: str, suspended: bool) -> None:
        """A person (un)suspends the pipeline in the console: takes effect at once."""
        with self._lock:
            self.operations.settle()
            pipeline = self._get(name)
            pipeline.spec.suspended = suspended
            pipeline.updated = self.clock.now()
            pipeline.version += 1

    def pipeline(self, name: str) -> deploy_v1.DeliveryPipeline:
        with self._lock:
            self.operations.settle()
            return self._render(self._get(name))

    # -- API side ---------------------------------------------------------------------------

    def handler(self, recorder: CallRecorder, faults: FaultInjector) -> grpc.GenericRpcHandler:
        """The gRPC handler of google.cloud.deploy.v1.CloudDeploy (api name "deploy")."""
        return grpcutil.build_handler(
            "deploy",
            service_rpcs(CloudDeployGrpcTransport, "google.cloud.deploy.v1.CloudDeploy"),
            _DeployServicer(self, WriteLog("deploy", self.clock, recorder)),
            clock=self.clock,
            recorder=recorder,
            faults=faults,
        )

    def get(self, name: str) -> deploy_v1.DeliveryPipeline:
        with self._lock:
            self.operations.settle()
            return self._render(self._get(name))

    def list(self, parent: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
        match = _PARENT.match(parent)
        if match is None:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid parent: {parent!r}")
        prefix = f"{parent}/deliveryPipelines/"
        with self._lock:
            self.operations.settle()
            found = [
                self._render(p)
                for key, p in sorted(self._pipelines.items())
                if key.startswith(prefix)
            ]
        return paginate(found, page_size, page_token, default=50, maximum=1000)

    def update(self, request: deploy_v1.UpdateDeliveryPipelineRequest) -> operations_pb2.Operation:
        paths = list(request.update_mask.paths)
        if not paths:
            raise FakeCloudError("INVALID_ARGUMENT", "update_mask is required.")
        for path in paths:
            if path.split(".", 1)[0] not in _UPDATABLE:
                raise FakeCloudError("INVALID_ARGUMENT", f"Invalid update_mask path: {path!r}")
        incoming = request.delivery_pipeline
        with self._lock:
            self.operations.settle()
            pipeline = self._get(incoming.name)
            if incoming.etag and incoming.etag != pipeline.etag:
                raise FakeCloudError(
                    "ABORTED", f"etag {incoming.etag} does not match the current etag."
                )
            new = deploy_v1.DeliveryPipeline.pb(deploy_v1.DeliveryPipeline(pipeline.spec))
            field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                deploy_v1.DeliveryPipeline.pb(incoming),
                new,
                replace_message_field=True,
                replace_repeated_field=True,
            )
            metadata = deploy_v1.OperationMetadata(
                create_time=timestamp(self.clock.now()),
                target=pipeline.spec.name,
                verb="update",
                api_version="v1",
            )
            if request.validate_only:
                return self.operations.start(
                    _parent(pipeline.spec.name),
                    metadata=metadata,
                    delay=0.0,
                    complete=lambda: Outcome(self._render(pipeline)),
                )
            spec = deploy_v1.DeliveryPipeline.wrap(new)

            def complete() -> Outcome:
                now = self.clock.now()
                pipeline.spec, pipeline.updated = spec, now
                pipeline.version += 1
                done = deploy_v1.OperationMetadata(metadata)
                done.end_time = timestamp(now)
                return Outcome(self._render(pipeline), metadata=done)

            op_id = f"operation-{int(self.clock.now().timestamp() * 1000)}-{uuid.uuid4().hex[:24]}"
            return self.operations.start(
                _parent(pipeline.spec.name),
                metadata=metadata,
                delay=self.update_delay,
                complete=complete,
                op_id=op_id,
            )

    def _get(self, name: str) -> _Pipeline:
        if _PIPELINE.match(name) is None:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid delivery pipeline name: {name!r}")
        found = self._pipelines.get(name)
        if found is None:
            raise FakeCloudError("NOT_FOUND", f"Resource '{name}' was not found")
        return found

    def _render(self, pipeline: _Pipeline) -> deploy_v1.DeliveryPipeline:
        out = deploy_v1.DeliveryPipeline(pipeline.spec)
        out.uid = pipeline.uid
        out.create_time = timestamp(pipeline.created)
        out.update_time = timestamp(pipeline.updated)
        out.etag = pipeline.etag
        ready = deploy_v1.PipelineReadyCondition(
            status=True, update_time=timestamp(pipeline.updated)
        )
        out.condition = deploy_v1.PipelineCondition(pipeline_ready_condition=ready)
        return out


def _parent(name: str) -> str:
    return name.split("/deliveryPipelines/", 1)[0]


class _DeployServicer:
    def __init__(self, state: DeployState, writes: WriteLog) -> None:
        self.state = state
        self.writes = writes

    def GetDeliveryPipeline(
        self, request: deploy_v1.GetDeliveryPipelineRequest, context: grpc.ServicerContext
    ) -> deploy_v1.DeliveryPipeline:
        return self.state.get(request.name)

    def ListDeliveryPipelines(
        self, request: deploy_v1.ListDeliveryPipelinesRequest, context: grpc.ServicerContext
    ) -> deploy_v1.ListDeliveryPipelinesResponse:
        if request.filter or request.order_by:
            raise FakeCloudError("UNIMPLEMENTED", "The fake cloud does not filter or order.")
        page, token = self.state.list(request.parent, request.page_size, request.page_token)
        return deploy_v1.ListDeliveryPipelinesResponse(
            delivery_pipelines=page, next_page_token=token
        )

    def UpdateDeliveryPipeline(
        self, request: deploy_v1.UpdateDeliveryPipelineRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        return self.writes.call(
            "UpdateDeliveryPipeline", request, lambda: self.state.update(request)
        )
