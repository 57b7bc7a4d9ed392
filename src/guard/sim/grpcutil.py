"""Serve a Google API over real gRPC from a plain Python object, using the client's own stubs.

Instead of hand-copying method paths and message classes, `discover` reads them from the
installed client library's gRPC transport (each transport names its stubs), so the fake
follows library upgrades. `build_handler` turns an implementation object with methods named
like the RPCs (`GetService(request, context)`) into a `grpc.GenericRpcHandler`, counting
every call and applying injected faults on the way.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message, message_factory

from guard.sim.clock import SimClock
from guard.sim.faults import CANONICAL_CODES, FakeCloudError, FaultInjector, Injection
from guard.sim.record import CallRecorder

_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


@dataclass(frozen=True, slots=True)
class RpcMethod:
    """One RPC as the client library sees it."""

    name: str  # e.g. "UpdateService"
    path: str  # e.g. "/google.cloud.run.v2.Services/UpdateService"
    kind: str  # one of _KINDS
    request_type: type
    response_type: type

    @property
    def service(self) -> str:
        return self.path.split("/")[1]

    def deserialize_request(self, data: bytes) -> Any:
        return _deserializer(self.request_type)(data)

    def serialize_response(self, message: Any) -> bytes:
        return _serializer(self.response_type)(message)


def _is_proto_plus(cls: type) -> bool:
    return hasattr(cls, "pb") and hasattr(cls, "deserialize")


def _deserializer(cls: type) -> Callable[[bytes], Any]:
    name = "deserialize" if _is_proto_plus(cls) else "FromString"
    fn: Callable[[bytes], Any] = getattr(cls, name)
    return fn


def _serializer(cls: type) -> Callable[[Any], bytes]:
    if _is_proto_plus(cls):
        fn: Callable[[Any], bytes] = getattr(cls, "serialize")  # noqa: B009 - typed lookup
        return fn

    def serialize(msg: Any) -> bytes:
        data: bytes = msg.SerializeToString()
        return data

    return serialize


class _StubRecorder:
    """Stands in for a grpc.Channel while a transport builds its stubs, and notes each one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any, Any]] = []

    def __getattr__(self, kind: str) -> Callable[..., object]:
        if kind not in _KINDS:
            raise AttributeError(kind)

        def make_stub(
            path: str,
            request_serializer: Any = None,
            response_deserializer: Any = None,
            **_: Any,
        ) -> object:
            self.seen.append((kind, path, request_serializer, response_deserializer))
            return object()

        return make_stub


def _owner(fn: Any, path: str, *, request: bool) -> type | None:
    """The message class a (de)serializer belongs to.

    Proto-plus serializers are classmethods bound to their class. Raw protobuf ones may be
    the base `Message.SerializeToString`, which names no class: then the method's own
    descriptor in the default pool says which message it takes or returns.
    """
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and owner is not message.Message:
        return owner
    _, service, method = path.split("/")
    try:
        desc = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(method)
    except KeyError:
        return None  # e.g. IAM mix-ins on a proto-plus service: not served by the fake
    found: type = message_factory.GetMessageClass(desc.input_type if request else desc.output_type)
    return found


def discover(transport_cls: type) -> dict[str, RpcMethod]:
    """The RPCs a client library's gRPC transport class can call, by RPC name."""
    recorder = _StubRecorder()
    transport: Any = object.__new__(transport_cls)
    transport._stubs = {}
    transport._grpc_channel = recorder
    transport._logged_channel = recorder
    for name, member in inspect.getmembers(transport_cls):
        if isinstance(member, property) and not name.startswith("_"):
            try:
                getattr(transport, name)
            except Exception:  # noqa: S112 - properties that are not stubs may need more state
                continue
    methods: dict[str, RpcMethod] = {}
    for kind, path, req_ser, resp_deser in recorder.seen:
        if req_ser is None or resp_deser is None:
            continue
        request_type = _owner(req_ser, path, request=True)
        response_type = _owner(resp_deser, path, request=False)
        if request_type is None or response_type is None:
            continue
        rpc = RpcMethod(
            name=path.rsplit("/", 1)[1],
            path=path,
            kind=kind,
            request_type=request_type,
            response_type=response_type,
        )
        methods[rpc.name] = rpc
    if not methods:
        raise RuntimeError(f"found no RPC stubs on {transport_cls.__name__}")
    return methods


def grpc_code(code: str) -> grpc.StatusCode:
    """The grpc.StatusCode for a canonical code name."""
    number = CANONICAL_CODES[code][0]
    for status in grpc.StatusCode:
        if status.value[0] == number:
            return status
    raise ValueError(code)  # pragma: no cover - CANONICAL_CODES mirrors grpc.StatusCode


def build_handler(
    api: str,
    methods: Iterable[RpcMethod],
    impl: object,
    *,
    clock: SimClock,
    recorder: CallRecorder,
    faults: FaultInjector,
) -> grpc.GenericRpcHandler:
    """A generic handler serving every RPC in `methods` that `impl` implements.

    `impl.<RpcName>(request, context)` returns the response (or, for server streams, an
    iterator of responses) and may raise `FakeCloudError`, which becomes the gRPC status.
    Unimplemented RPCs are left out, so a client calling one gets UNIMPLEMENTED.
    """
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    service_name = ""
    for rpc in methods:
        fn = getattr(impl, rpc.name, None)
        if fn is None:
            continue
        service_name = rpc.service
        wrapped = _wrap(api, rpc, fn, clock=clock, recorder=recorder, faults=faults)
        factory = getattr(grpc, f"{rpc.kind}_rpc_method_handler")
        handlers[rpc.name] = factory(
            wrapped,
            request_deserializer=rpc.deserialize_request,
            response_serializer=rpc.serialize_response,
        )
    if not handlers:
        raise ValueError(f"{type(impl).__name__} implements none of the RPCs offered")
    return grpc.method_handlers_generic_handler(service_name, handlers)


def _wrap(
    api: str,
    rpc: RpcMethod,
    fn: Callable[..., Any],
    *,
    clock: SimClock,
    recorder: CallRecorder,
    faults: FaultInjector,
) -> Callable[[Any, grpc.ServicerContext], Any]:
    streams_out = rpc.kind in ("unary_stream", "stream_stream")

    def admit(context: grpc.ServicerContext) -> Injection:
        """Count the call, then apply its injected latency and error (if any)."""
        recorder.count(api, rpc.name)
        injection = faults.decide(api, rpc.name, clock.elapsed())
        if injection.latency:
            time.sleep(injection.latency)
        if injection.error is not None:
            context.abort(grpc_code(injection.error.code), injection.error.message)
        return injection

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        admit(context)
        try:
            return fn(request, context)
        except FakeCloudError as err:
            context.abort(grpc_code(err.code), err.message)

    def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        injection = admit(context)
        try:
            for sent, response in enumerate(fn(request, context)):
                if injection.drop_after is not None and sent >= injection.drop_after:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "stream dropped (injected)")
                yield response
        except FakeCloudError as err:
            context.abort(grpc_code(err.code), err.message)

    return streaming if streams_out else unary
