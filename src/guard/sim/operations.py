"""The google.longrunning Operations service shared by every fake API that returns an LRO.

Cloud Run's UpdateService and Cloud Deploy's UpdateDeliveryPipeline return an Operation that
the client polls with `/google.longrunning.Operations/GetOperation` on the same channel, so
one registry (and one gRPC handler) must serve both. As on Google, a change is applied only
when its operation completes: each operation carries a completion callback that runs once the
sim clock passes its due time. Completion is lazy (the clock has no callbacks): every read of
fake state calls `settle()` first, so time advanced by a scenario is always observed.

The registry's re-entrant `lock` is also the lock of the states whose changes complete here
(Cloud Run, Cloud Deploy): one lock avoids lock-order deadlocks between a state's RPC and a
completion callback that writes to it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud.run_v2.services.services.transports.grpc import ServicesGrpcTransport
from google.longrunning import operations_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from guard.sim import grpcutil
from guard.sim.clock import SimClock
from guard.sim.faults import FakeCloudError, FaultInjector
from guard.sim.protoutil import paginate, service_rpcs, to_pb
from guard.sim.record import CallRecorder


class NotYet(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a completion callback whose change cannot finish yet (e.g. it waits for a
    revision that is still starting): the operation stays running and is retried later."""

    def __init__(self, retry_after: float = 1.0) -> None:
        super().__init__(f"not yet; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a completed operation returns: its `response`, and optionally new `metadata`."""

    response: Any
    metadata: Any | None = None


@dataclass
class _Op:
    name: str
    metadata: any_pb2.Any
    due: float
    complete: Callable[[], Outcome]
    done: bool = False
    response: any_pb2.Any | None = None
    error: FakeCloudError | None = None
    seq: int = 0


def _pack(msg: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(to_pb(msg))
    return packed


@dataclass
class OperationsRegistry:
    """Every long-running operation of the fake cloud, completing on the sim clock."""

    clock: SimClock
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ops: dict[str, _Op] = field(default_factory=dict)
    _settling: bool = False

    def start(
        self,
        parent: str,
        *,
        metadata: Any,
        delay: float,
        complete: Callable[[], Outcome],
        op_id: str | None = None,
    ) -> operations_pb2.Operation:
        """Start an operation under `parent` (e.g. `projects/P/locations/L`), done after
        `delay` sim seconds, when `complete` runs and returns the outcome (or raises
        `FakeCloudError` for a failed operation, or `NotYet` to wait longer)."""
        if delay < 0:
            raise ValueError("an operation cannot complete in the past")
        name = f"{parent}/operations/{op_id or uuid.uuid4()}"
        with self.lock:
            op = _Op(
                name=name,
                metadata=_pack(metadata),
                due=self.clock.elapsed() + delay,
                complete=complete,
                seq=len(self._ops),
            )
            self._ops[name] = op
            return self._render(op)

    def settle(self) -> None:
        """Complete every operation whose due time has passed, earliest due first."""
        with self.lock:
            if self._settling:  # a completion callback reading state: already settling
                return
            self._settling = True
            try:
                while True:
                    now = self.clock.elapsed()
                    due = [op for op in self._ops.values() if not op.done and op.due <= now]
                    if not due:
                        return
                    self._finish(min(due, key=lambda op: (op.due, op.seq)))
            finally:
                self._settling = False

    def _finish(self, op: _Op) -> None:
        try:
            outcome = op.complete()
        except NotYet as wait:
            op.due = self.clock.elapsed() + max(wait.retry_after, 1e-3)
            return
        except FakeCloudError as err:
            op.error = err
        else:
            op.response = _pack(outcome.response)
            if outcome.metadata is not None:
                op.metadata = _pack(outcome.metadata)
        op.done = True

    def get(self, name: str) -> operations_pb2.Operation:
        """The operation `name` as a client sees it now."""
        self.settle()
        with self.lock:
            op = self._ops.get(name)
            if op is None:
                raise FakeCloudError("NOT_FOUND", f"Operation '{name}' not found.")
            return self._render(op)

    def pending(self) -> list[str]:
        """Names of the operations not done yet (after settling)."""
        self.settle()
        with self.lock:
            return [op.name for op in self._ops.values() if not op.done]

    def _render(self, op: _Op) -> operations_pb2.Operation:
        out = operations_pb2.Operation(name=op.name, done=op.done)
        out.metadata.CopyFrom(op.metadata)
        if op.error is not None:
            code = grpcutil.grpc_code(op.error.code).value[0]
            out.error.CopyFrom(status_pb2.Status(code=code, message=op.error.message))
        elif op.response is not None:
            out.response.CopyFrom(op.response)
        return out

    # -- gRPC ---------------------------------------------------------------------------

    def GetOperation(
        self, request: operations_pb2.GetOperationRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        return self.get(request.name)

    def ListOperations(
        self, request: operations_pb2.ListOperationsRequest, context: grpc.ServicerContext
    ) -> operations_pb2.ListOperationsResponse:
        if request.filter:
            raise FakeCloudError("INVALID_ARGUMENT", "The fake cloud does not filter operations.")
        self.settle()
        prefix = request.name.rstrip("/") + "/operations/"
        with self.lock:
            ops = [self._render(op) for op in self._ops.values() if op.name.startswith(prefix)]
        page, token = paginate(
            ops, request.page_size, request.page_token, default=100, maximum=1000
        )
        return operations_pb2.ListOperationsResponse(operations=page, next_page_token=token)

    def handler(self, recorder: CallRecorder, faults: FaultInjector) -> grpc.GenericRpcHandler:
        """The gRPC handler of `google.longrunning.Operations` (api name "operations")."""
        return grpcutil.build_handler(
            "operations",
            service_rpcs(_run_transport(), "google.longrunning.Operations"),
            self,
            clock=self.clock,
            recorder=recorder,
            faults=faults,
        )


def _run_transport() -> type:
    # Any client whose LROs poll google.longrunning names the same RPCs; Run's is one.
    return ServicesGrpcTransport
