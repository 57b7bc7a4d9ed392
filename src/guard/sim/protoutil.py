"""Small helpers every fake API shares: messages to JSON, timestamps, paging, write recording.

The official clients mix proto-plus messages (most Google APIs) with raw protobuf ones
(long-running operations, IAM); the fakes must handle both the same way, page like Google
(opaque `next_page_token`, empty when done), and record write calls in one shape, so these
live in one place instead of being re-invented per API.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format, message, timestamp_pb2

from guard.sim import grpcutil
from guard.sim.clock import SimClock
from guard.sim.faults import FakeCloudError
from guard.sim.record import CallRecorder, WriteCall

T = TypeVar("T")


@functools.cache
def service_rpcs(transport_cls: type, service: str) -> tuple[grpcutil.RpcMethod, ...]:
    """The RPCs of one gRPC service (e.g. `google.cloud.run.v2.Services`) that a client's
    transport calls, leaving out the mix-ins (operations, locations, IAM) it also names."""
    methods = grpcutil.discover(transport_cls).values()
    found = tuple(m for m in methods if m.service == service)
    if not found:
        raise RuntimeError(f"{transport_cls.__name__} calls no RPC of {service}")
    return found


class _Handlers(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._handlers = tuple(handlers)

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        for handler in self._handlers:
            found = handler.service(handler_call_details)
            if found is not None:
                return found
        return None


def combine_handlers(*handlers: grpc.GenericRpcHandler) -> grpc.GenericRpcHandler:
    """One handler serving every RPC any of `handlers` serves (an API with two services)."""
    return _Handlers(handlers)


def enum_member(enum_cls: Any, name: str) -> Any:
    """The member of a proto-plus enum named `name` (KeyError when there is none)."""
    return enum_cls.__members__[name]


def to_pb(msg: Any) -> message.Message:
    """The raw protobuf message behind `msg` (a proto-plus message or already raw)."""
    if isinstance(msg, message.Message):
        return msg
    pb: message.Message = type(msg).pb(msg)
    return pb


def to_json_dict(msg: Any) -> dict[str, Any]:
    """`msg` as Google's JSON mapping (camelCase names, enum names, RFC 3339 times)."""
    out: dict[str, Any] = json_format.MessageToDict(to_pb(msg))
    return out


def timestamp(at: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp for an aware datetime."""
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(at.astimezone(UTC))
    return ts


def rfc3339(at: datetime) -> str:
    """Google's RFC 3339 form, UTC with a `Z`, e.g. 2026-01-15T14:00:00.123Z."""
    text: str = timestamp(at).ToJsonString()
    return text


def parse_rfc3339(text: str) -> datetime:
    """An aware datetime from an RFC 3339 string (raises ValueError when malformed)."""
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(text)
    at: datetime = ts.ToDatetime(tzinfo=UTC)
    return at


def stable_hex(*parts: object, length: int = 8) -> str:
    """A short deterministic hex digest: reproducible ids, etags and URLs across runs."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:length]


def project_number(project_id: str) -> int:
    """A stable 12-digit project number for a project id (Google's are opaque numbers)."""
    return 100_000_000_000 + int(stable_hex("project-number", project_id, length=12), 16) % (
        900_000_000_000
    )


def paginate(
    items: Sequence[T], page_size: int, page_token: str, *, default: int, maximum: int
) -> tuple[list[T], str]:
    """One page of `items` and the token for the next (empty on the last page).

    Tokens are opaque to clients, as Google's are; a token the fake did not issue is
    INVALID_ARGUMENT, as it is on Google.
    """
    if page_size < 0:
        raise FakeCloudError("INVALID_ARGUMENT", "page_size must not be negative")
    size = min(page_size or default, maximum)
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode().removeprefix("o:"))
        except ValueError:
            raise FakeCloudError("INVALID_ARGUMENT", "The page token is invalid.") from None
    page = list(items[start : start + size])
    end = start + len(page)
    token = base64.urlsafe_b64encode(f"o:{end}".encode()).decode() if end < len(items) else ""
    return page, token


class WriteLog:
    """Records write calls of one API, accepted or rejected, at the clock's time."""

    def __init__(self, api: str, clock: SimClock, recorder: CallRecorder) -> None:
        self.api = api
        self.clock = clock
        self.recorder = recorder

    def record(self, method: str, request: dict[str, Any], error: str | None = None) -> None:
        self.recorder.write(
            WriteCall(
                api=self.api,
                method=method,
                request=request,
                at=self.clock.now(),
                elapsed=self.clock.elapsed(),
                error=error,
            )
        )

    def call(self, method: str, request: Any, fn: Callable[[], T]) -> T:
        """Run one write RPC, recording its request and whether the fake rejected it."""
        as_dict = to_json_dict(request)
        try:
            result = fn()
        except FakeCloudError as err:
            self.record(method, as_dict, err.code)
            raise
        self.record(method, as_dict)
        return result
