"""Count every Google API call the guard makes, by API, method and final gRPC status code.

The guard's cost and health on Google's side are its API calls: quota is per API and method,
and a rise in UNAVAILABLE or PERMISSION_DENIED is the first sign that something is wrong
between the guard and Google. Every adapter talks to Google through the official clients on
gRPC channels built in `google_clients`, so one client interceptor on those channels sees
every call, whatever adapter made it, without each adapter counting for itself.

An observer is `observer(service, method, code)`, called once per call when it ends:
`service` is the short API name ("run", "logging", ...) from the proto package of the
method's path, `method` is "Service.Method" (`/google.cloud.run.v2.Services/GetService` gives
"run", "Services.GetService"), `code` the gRPC status code's name ("OK", "UNAVAILABLE", ...).
A stream (TailLogEntries) is reported once, when it ends, with its final code; a stream the
caller cancels ends CANCELLED. Every attempt of a retried call is a call. The observer runs in
the caller's thread or event loop, or, for sync streams, in a gRPC thread: it must be quick
and thread-safe. An observer that raises is logged and ignored: counting must never break a
call.

Sync channels are wrapped with `grpc.intercept_channel`; `grpc.aio` channels take
interceptors only when they are created (`aio.insecure_channel(..., interceptors=...)`), one
object per kind of call since `grpc.aio` files each interceptor under its first matching kind.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import grpc
from grpc import aio

_log = logging.getLogger(__name__)

#: (service, method, code): e.g. ("run", "Services.GetService", "OK").
CallObserver = Callable[[str, str, str], None]

#: Proto package -> the short API name the guard reports calls under.
API_NAMES: dict[str, str] = {
    "google.cloud.run.v2": "run",
    "google.monitoring.v3": "monitoring",
    "google.logging.v2": "logging",
    "google.cloud.secretmanager.v1": "secretmanager",
    "google.cloud.deploy.v1": "clouddeploy",
    "google.cloud.sql.v1beta4": "sqladmin",
    "google.cloud.sql.v1": "sqladmin",
    "google.longrunning": "longrunning",
    "google.cloud.location": "locations",
    "google.iam.v1": "iam",
}

_VERSION = re.compile(r"v\d+(?:p\d+)?(?:(?:alpha|beta)\d*)?")


@lru_cache(maxsize=512)
def split_method(path: str | bytes) -> tuple[str, str]:
    """`/google.cloud.run.v2.Services/GetService` -> ("run", "Services.GetService").

    A package missing from `API_NAMES` is named by its parts without "google", "cloud" and
    version segments (`google.cloud.foo.v1` -> "foo"); a path of another shape is returned
    as it is, under "unknown".
    """
    text = path.decode("utf-8", "replace") if isinstance(path, bytes) else path
    full_service, slash, method = text.lstrip("/").partition("/")
    if not slash or not full_service or not method:
        return "unknown", text
    package, _, service = full_service.rpartition(".")
    short = API_NAMES.get(package) or _fallback_name(package)
    return short, f"{service}.{method}"


def _fallback_name(package: str) -> str:
    parts = [p for p in package.split(".") if p and not _VERSION.fullmatch(p)]
    while parts and parts[0] in ("google", "cloud"):
        parts.pop(0)
    return ".".join(parts) or package or "unknown"


class _Reporter:
    """Calls the observer safely: a failing observer is logged, never raised."""

    def __init__(self, observer: CallObserver) -> None:
        self._observer = observer

    def __call__(self, path: str | bytes, code: grpc.StatusCode | None) -> None:
        try:
            service, method = split_method(path)
            name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            self._observer(service, method, name)
        except Exception:
            _log.warning("the API call observer failed on %r", path, exc_info=True)


# -- sync channels ---------------------------------------------------------------------------


def _sync_code(call: Any) -> grpc.StatusCode | None:
    try:
        code: grpc.StatusCode | None = call.code()
    except Exception:
        return None
    return code


class ObservingInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Reports every call on a sync channel when it ends (see `intercept_channel`).

    What the continuation returns (a finished outcome for unary calls, the live call for
    streams, or the `RpcError` of a call that failed) is a `grpc.Future`; its done callback
    fires once, at the end, and at once when the call already ended. The caller gets the very
    object the continuation returned, so results, errors and streaming are untouched.
    """

    def __init__(self, observer: CallObserver) -> None:
        self._report = _Reporter(observer)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._watch(details.method, continuation(details, request))

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._watch(details.method, continuation(details, request))

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._watch(details.method, continuation(details, requests))

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._watch(details.method, continuation(details, requests))

    def _watch(self, path: str, call: Any) -> Any:
        def done(finished: Any) -> None:
            self._report(path, _sync_code(finished))

        try:
            call.add_done_callback(done)
        except Exception:  # not a future: report what it says now
            _log.debug("call outcome without add_done_callback: %r", call, exc_info=True)
            self._report(path, _sync_code(call))
        return call


def intercept_channel(channel: grpc.Channel, observer: CallObserver) -> grpc.Channel:
    """`channel` with every call reported to `observer`; closing it closes `channel`."""
    intercepted: grpc.Channel = grpc.intercept_channel(channel, ObservingInterceptor(observer))
    return intercepted


# -- grpc.aio channels -----------------------------------------------------------------------


def _finished_code(call: Any) -> grpc.StatusCode | None:
    """The code of a finished `grpc.aio` call, read without suspending.

    `grpc.aio` offers the code only as a coroutine; on a finished call it completes without
    ever suspending, so it is driven here by hand. Should it suspend after all (the call not
    finished), it is closed and the code is unknown.
    """
    coro = call.code()
    try:
        coro.send(None)
    except StopIteration as stop:
        code: grpc.StatusCode | None = stop.value
        return code
    except BaseException:
        _log.debug("could not read the final code of %r", call, exc_info=True)
        return None
    coro.close()
    return None


class _AioBase:
    def __init__(self, report: _Reporter) -> None:
        self._report = report

    async def _unary_response(self, path: bytes | str, call: Any) -> Any:
        """Wait for a single-response call to end, report it, hand the caller the call.

        Waiting here records the call before its caller resumes. A failed call is not
        raised here: the caller gets the same call object and sees its error on awaiting it.
        """
        try:
            await call
        except asyncio.CancelledError:
            call.cancel()
            self._report(path, grpc.StatusCode.CANCELLED)
            raise
        except Exception:  # noqa: S110 - the caller gets this error from the call itself
            pass
        self._report(path, _finished_code(call))
        return call

    def _stream(self, path: bytes | str, call: Any) -> Any:
        """Report a streaming call when it ends (by its done callback: never in its way)."""

        def done(finished: Any) -> None:
            self._report(path, _finished_code(finished))

        try:
            call.add_done_callback(done)
        except Exception:
            _log.warning("cannot observe the streaming call %r", path, exc_info=True)
        return call


class _AioUnaryUnary(_AioBase, aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await self._unary_response(details.method, await continuation(details, request))


class _AioStreamUnary(_AioBase, aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await self._unary_response(details.method, await continuation(details, requests))


class _AioUnaryStream(_AioBase, aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._stream(details.method, await continuation(details, request))


class _AioStreamStream(_AioBase, aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._stream(details.method, await continuation(details, requests))


def aio_interceptors(observer: CallObserver) -> list[Any]:
    """The interceptors to pass as `interceptors=` when creating a `grpc.aio` channel."""
    report = _Reporter(observer)
    return [
        _AioUnaryUnary(report),
        _AioUnaryStream(report),
        _AioStreamUnary(report),
        _AioStreamStream(report),
    ]
