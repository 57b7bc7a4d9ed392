"""Cloud Run Admin v2, write side: move a service's traffic, and prove that it moved.

This is where the guard touches production, so every write is preceded by reads and followed
by a verification. A revert is a traffic-only UpdateService (`update_mask = traffic`, one
REVISION target at 100%): writing the whole service back can fail with 409 "Revision named
... with different configuration already exists". Cloud Run *accepts* traffic to a missing or
not-Ready revision and fails only inside the long-running operation, so the target's Ready
condition is read first and a not-Ready or missing target is refused before any write. The
service's `terminal_condition` stays CONDITION_FAILED after a revert while the failed
revision is the latest created, so success is judged from `traffic_statuses` re-read after
the operation, never from the condition or the operation alone.

A pin that already holds (a previous attempt succeeded before a crash) is reported as done
without writing; the etag read just before is sent with the write, so a human's traffic
change between our read and our write is ABORTED rather than silently overwritten (whether
Cloud Run enforces the etag is unconfirmed: the caller's operator lock is the real guard).
Transient errors (UNAVAILABLE, DEADLINE_EXCEEDED) are retried a bounded number of times with
back-off; a retried write re-reads the service first, in case the failed call had landed.
Every failure is a result with Google's canonical code, never an exception.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import grpc
from google.api_core import exceptions
from google.cloud import run_v2
from google.longrunning import operations_pb2

from guard.adapters.cloudrun import LATEST, CallCounter, code_of, readiness_of
from guard.adapters.google_clients import GoogleClients
from guard.core.model import Readiness, ServiceRef

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class Caller:
    """Runs one API call: counted per attempt, transient codes retried with back-off."""

    def __init__(
        self,
        on_call: CallCounter | None,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.on_call = on_call or (lambda method, code: None)
        self.attempts, self.backoff, self.sleep = max(1, attempts), backoff, sleep

    async def once(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await call()
        except exceptions.GoogleAPICallError as err:
            self.on_call(method, code_of(err))
            raise
        self.on_call(method, "OK")
        return result

    async def retried(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return await self.once(method, call)
            except exceptions.GoogleAPICallError as err:
                if code_of(err) not in TRANSIENT or attempt == self.attempts:
                    raise
                await self.pause(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def pause(self, attempt: int) -> None:
        jitter = 1 + random.random() / 2  # noqa: S311 - jitter, not security
        await self.sleep(self.backoff * 2 ** (attempt - 1) * jitter)


async def wait_operation(
    caller: Caller, get: Callable[..., Awaitable[Any]], name: str, *, limit: float, poll: float
) -> tuple[str, str]:
    """Poll GetOperation until done: ("OK", "") or the operation's (code, message);
    ("DEADLINE_EXCEEDED", ...) when not done within `limit` (polled time or wall time)."""
    loop = asyncio.get_running_loop()
    started, waited = loop.time(), 0.0
    request = operations_pb2.GetOperationRequest(name=name)
    while True:
        op = await caller.retried(
            "GetOperation", partial(get, request=request, retry=None, timeout=min(limit, 10.0))
        )
        if op.done:
            if op.HasField("error") and op.error.code:
                return _CODE_NAMES.get(op.error.code, f"CODE_{op.error.code}"), op.error.message
            return "OK", ""
        if waited >= limit or loop.time() - started >= limit:
            return "DEADLINE_EXCEEDED", f"operation {name} not done after {limit:g}s"
        await caller.sleep(poll)
        waited += poll


@dataclass(frozen=True, slots=True)
class PinResult:
    """What a traffic move did (or, in a dry run, would do), with the split around it."""

    ok: bool
    code: str  # "OK" or a canonical code, e.g. "FAILED_PRECONDITION" for a not-Ready target
    message: str
    service: str
    target: str  # a revision's short name, or "LATEST"
    operation: str = ""
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    wrote: bool = False
    dry_run: bool = False


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def split_of(svc: run_v2.Service) -> dict[str, int]:
    """The serving split from `traffic_statuses`, LATEST resolved to the latest ready."""
    split: dict[str, int] = {}
    for status in svc.traffic_statuses:
        name = _short(svc.latest_ready_revision if status.type_ == LATEST else status.revision)
        if name and status.percent:
            split[name] = split.get(name, 0) + status.percent
    return split


def only_to(targets: Any, revision: str | None) -> bool:
    """Whether `targets` send exactly 100% to `revision` (None: LATEST) and nothing else."""
    live = [t for t in targets if t.percent]
    if len(live) != 1 or live[0].percent != 100:
        return False
    if revision is None:
        return bool(live[0].type_ == LATEST)
    return live[0].type_ == REVISION and _short(live[0].revision) == revision


def spec_holds(svc: run_v2.Service, revision: str | None) -> bool:
    return (revision is None and not svc.traffic) or only_to(svc.traffic, revision)


def refusal(rev: run_v2.Revision | None, what: str, then: str) -> tuple[str, str] | None:
    """Why `rev` (described as `what`) must not be used, or None when it exists and is
    Ready: ("NOT_FOUND", ...) or ("FAILED_PRECONDITION", ...)."""
    if rev is None:
        return "NOT_FOUND", f"{what} does not exist: {then}"
    readiness, reason, detail = readiness_of(rev)
    if readiness != Readiness.READY:
        why = " ".join(x for x in (reason, detail) if x)
        return "FAILED_PRECONDITION", f"{what} is {readiness}: {why}".strip(": ")
    return None


class OperationWriter:
    """What every writer shares: the clients, call accounting and retries, and how long a
    long-running operation may take and how often it is polled (seconds)."""

    def __init__(
        self,
        clients: GoogleClients,
        *,
        on_call: CallCounter | None = None,
        op_timeout: float = 60.0,
        poll: float = 1.0,
        call_timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.5,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._clients = clients
        self.op_timeout, self.poll, self.call_timeout = op_timeout, poll, call_timeout
        self._caller = Caller(on_call, attempts=attempts, backoff=backoff, sleep=sleep)

    async def _write_once(
        self,
        method: str,
        send: Callable[[], Awaitable[Any]],
        landed: Callable[[], Awaitable[bool]],
    ) -> str:
        """Send one long-running write, retrying only transient errors.

        Before a retry, `landed()` re-reads the resource (refreshing what `send` builds its
        request from, e.g. the etag) and says whether the failed call took effect after all:
        then nothing is sent again. Returns the operation's name, or "" in that case.
        """
        for attempt in range(1, self._caller.attempts + 1):
            if attempt > 1 and await landed():
                return ""
            try:
                op = await self._caller.once(method, send)
            except exceptions.GoogleAPICallError as err:
                if code_of(err) not in TRANSIENT or attempt == self._caller.attempts:
                    raise
                await self._caller.pause(attempt)
                continue
            return str(op.operation.name)
        raise AssertionError("unreachable")  # pragma: no cover


class CloudRunWriter(OperationWriter):
    """Pins a service's traffic to one Ready revision (the revert) or back to LATEST."""

    async def pin(self, service: ServiceRef, revision: str, *, dry_run: bool = False) -> PinResult:
        """Send 100% of `service`'s traffic to `revision`, which must exist and be Ready."""
        return await self._move(service, revision, dry_run)

    async def to_latest(self, service: ServiceRef, *, dry_run: bool = False) -> PinResult:
        """Send traffic back to LATEST 100% (the guard undoing its own pin)."""
        return await self._move(service, None, dry_run)

    async def current_split(self, service: ServiceRef) -> dict[str, int]:
        return split_of(await self._get_service(service))

    # -- the move ---------------------------------------------------------------------------

    async def _move(self, service: ServiceRef, revision: str | None, dry_run: bool) -> PinResult:
        target = revision or "LATEST"
        result = partial(PinResult, service=service.resource_name, target=target)
        before: dict[str, int] = {}
        operation, wrote = "", False
        try:
            svc = await self._get_service(service)
            before = split_of(svc)
            if revision is not None:
                refusal = await self._refusal(service, revision)
                if refusal is not None:
                    code, message = refusal
                    return result(False, code, message, before=before, after=before)
            if spec_holds(svc, revision) and only_to(svc.traffic_statuses, revision):
                message = f"traffic already 100% on {target}: nothing to write"
                return result(True, "OK", message, before=before, after=before)
            if dry_run:
                message = f"dry run: would send 100% to {target} (now {before})"
                return result(True, "OK", message, before=before, dry_run=True)
            if not (spec_holds(svc, revision) and svc.reconciling):  # else: ours, in flight
                operation, wrote = await self._write(service, svc, revision), True
            code, message, after, serving = await self._land(
                service, operation, lambda s: only_to(s.traffic_statuses, revision)
            )
        except exceptions.GoogleAPICallError as err:
            message = err.message or str(err)
            return result(
                False, code_of(err), message, operation=operation, before=before, wrote=wrote
            )
        if code == "OK" and not serving:
            code, message = "UNVERIFIED", f"traffic_statuses show {after}, not 100% on target"
        ok = code == "OK"
        message = message or f"traffic 100% on {target} (was {before})"
        return result(
            ok, code, message, operation=operation, before=before, after=after, wrote=wrote
        )

    async def _refusal(self, service: ServiceRef, revision: str) -> tuple[str, str] | None:
        """Why traffic must not go to `revision`, or None when it exists and is Ready."""
        rev = await self._get_revision(service, revision)
        return refusal(rev, f"revision {revision}", "refusing to route to it")

    async def _get_revision(self, service: ServiceRef, revision: str) -> run_v2.Revision | None:
        """The revision, or None when it does not exist."""
        client = self._clients.run_revisions_async()
        get = partial(
            client.get_revision,
            name=service.revision_resource(revision),
            retry=None,
            timeout=self.call_timeout,
        )
        try:
            rev: run_v2.Revision = await self._caller.retried("GetRevision", get)
        except exceptions.NotFound:
            return None
        return rev

    async def _write(self, service: ServiceRef, svc: run_v2.Service, revision: str | None) -> str:
        """The UpdateService; its operation's name, or "" when a retried call had landed."""
        client = self._clients.run_services_async()
        kind = LATEST if revision is None else REVISION
        current = [svc]

        async def landed() -> bool:
            current[0] = await self._get_service(service)  # fresh etag; did the call land?
            return spec_holds(current[0], revision)

        def send() -> Awaitable[Any]:
            target = run_v2.TrafficTarget(type_=kind, revision=revision or "", percent=100)
            request = run_v2.UpdateServiceRequest(
                service=run_v2.Service(
                    name=current[0].name, etag=current[0].etag, traffic=[target]
                ),
                update_mask={"paths": ["traffic"]},
            )
            return client.update_service(request=request, retry=None, timeout=self.call_timeout)

        return await self._write_once("UpdateService", send, landed)

    async def _land(
        self, service: ServiceRef, operation: str, serves: Callable[[run_v2.Service], bool]
    ) -> tuple[str, str, dict[str, int], bool]:
        """Wait for `operation` (if any), then re-read the service until `serves` says the
        write took effect: (code, message, split after, served). While it still reconciles
        after a successful operation, read again (bounded)."""
        code, message = "OK", ""
        if operation:
            code, message = await wait_operation(
                self._caller,
                self._clients.run_services_async().get_operation,
                operation,
                limit=self.op_timeout,
                poll=self.poll,
            )
        for _ in range(max(1, int(self.op_timeout / max(self.poll, 1e-3)))):
            svc = await self._get_service(service)
            served = serves(svc)
            if served or code != "OK" or not svc.reconciling:
                return code, message, split_of(svc), served
            await self._caller.sleep(self.poll)
        return code, message, split_of(svc), False

    async def _get_service(self, service: ServiceRef) -> run_v2.Service:
        client = self._clients.run_services_async()
        get = partial(
            client.get_service, name=service.resource_name, retry=None, timeout=self.call_timeout
        )
        svc: run_v2.Service = await self._caller.retried("GetService", get)
        return svc
