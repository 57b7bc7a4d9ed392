"""Cloud Run Admin v2 for the guard: read every watched service's state in few calls.

Deploy discovery polls every watched service every cycle (~10 s), so reads are built for API
cost: one ListServices per (project, region) per cycle (v2 documents that its location
"cannot be the '-' wildcard", so per region even though the fake accepts it), and revisions
are read only when never seen or still starting. A revision's create time never changes and
its Ready condition is final once it succeeded or failed, so those are cached; a pending one
is re-read until it settles (or until the service names it latest ready or serving, which
means Ready, at no cost). Many unknown revisions at once (the first cycle) are read with one
region-wide ListRevisions (`services/-`), a few with GetRevision each. In steady state a
cycle costs one call per region, whatever the number of services.

Failures never escape `read`: a failed call yields a `ReadError` for the services it
concerned, so one broken project does not blind the guard to the others. Retries are
explicit and short: at most `attempts` tries of `timeout` seconds on transient codes
(UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL), by default 2 x 2 s; a read makes at most two
rounds (services, then revisions), so it ends within ~9 s, inside a 10 s poll, even when the
API hangs; other errors (quota, permission) wait for the next cycle.
The write side (the revert) comes after the read side, at the end of this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from google.api_core import exceptions
from google.cloud import run_v2

from guard.adapters.google_clients import GoogleClients
from guard.core.model import Readiness, Revision, ServiceRef
from guard.core.signals import ServiceState

T = TypeVar("T")
#: Called once per API call attempt with (method, canonical code), e.g. ("ListServices", "OK").
CallCounter = Callable[[str, str], None]
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
_State = run_v2.Condition.State
_TRANSIENT = (
    exceptions.ServiceUnavailable,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
)


@dataclass(frozen=True, slots=True)
class ReadError:
    """A service the reader could not read this cycle, and why (never a failure signal)."""

    service: ServiceRef
    method: str
    code: str  # canonical code, e.g. "UNAVAILABLE", "NOT_FOUND", "PERMISSION_DENIED"
    message: str


def code_of(err: exceptions.GoogleAPICallError) -> str:
    """The canonical code name of a Google API error ("UNAVAILABLE", ...)."""
    grpc_code = getattr(err, "grpc_status_code", None)
    return str(grpc_code.name) if grpc_code is not None else f"HTTP_{err.code}"


def readiness_of(rev: run_v2.Revision) -> tuple[Readiness, str, str]:
    """A revision's Ready condition as (readiness, reason, message)."""
    for cond in rev.conditions:
        if cond.type_ != "Ready":
            continue
        which = run_v2.Condition.pb(cond).WhichOneof("reasons")
        reason = getattr(cond, which).name if which else ""
        reason = "" if reason.endswith("UNDEFINED") else reason
        if cond.state == _State.CONDITION_SUCCEEDED:
            return Readiness.READY, "", ""
        if cond.state == _State.CONDITION_FAILED:
            return Readiness.FAILED, reason, cond.message
        return Readiness.PENDING, reason, cond.message
    return Readiness.PENDING, "", ""


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


class CloudRunReader:
    """Reads `ServiceState`s of many services with as few Cloud Run calls as possible."""

    def __init__(
        self,
        clients: GoogleClients,
        *,
        now: Callable[[], datetime] | None = None,
        on_call: CallCounter | None = None,
        timeout: float = 2.0,
        attempts: int = 2,
        retry_delay: float = 0.25,
        list_revisions_over: int = 3,
        page_size: int = 500,
    ) -> None:
        self._clients = clients
        self._now = now or (lambda: datetime.now(UTC))
        self._on_call = on_call or (lambda method, code: None)
        self.timeout, self.attempts, self.retry_delay = timeout, attempts, retry_delay
        self.list_revisions_over, self.page_size = list_revisions_over, page_size
        self._revisions: dict[str, Revision] = {}  # by full revision name

    async def read(self, services: Sequence[ServiceRef]) -> list[ServiceState | ReadError]:
        """One read of every service, in the order given."""
        regions: dict[tuple[str, str], list[ServiceRef]] = {}
        for ref in services:
            regions.setdefault((ref.project, ref.region), []).append(ref)
        done = await asyncio.gather(
            *(self._read_region(p, r, refs) for (p, r), refs in regions.items())
        )
        found = {ref: result for part in done for ref, result in part.items()}
        return [found[ref] for ref in services]

    # -- per region -------------------------------------------------------------------------

    async def _read_region(
        self, project: str, region: str, refs: list[ServiceRef]
    ) -> dict[ServiceRef, ServiceState | ReadError]:
        parent = f"projects/{project}/locations/{region}"
        try:
            listed = await self._list_services(parent)
        except exceptions.GoogleAPICallError as err:
            return {ref: ReadError(ref, "ListServices", code_of(err), err.message) for ref in refs}
        read_at = self._now()
        out: dict[ServiceRef, ServiceState | ReadError] = {}
        wanted: dict[ServiceRef, tuple[run_v2.Service, list[str]]] = {}
        for ref in refs:
            svc = listed.get(ref.name)
            if svc is not None:
                wanted[ref] = (svc, self._needed(ref, svc))
            else:
                out[ref] = ReadError(ref, "ListServices", "NOT_FOUND", f"no {ref.resource_name}")
        keys = [ref.revision_resource(n) for ref, (_, names) in wanted.items() for n in names]
        missing = [key for key in keys if key not in self._revisions]
        services = {r.resource_name: r for r in wanted}
        failed = await self._fetch(parent, missing, services) if missing else {}
        for ref, (svc, names) in wanted.items():
            error = next((failed[k] for k in failed if k.startswith(ref.resource_name + "/")), None)
            out[ref] = error or self._state(ref, svc, names, read_at)
        return out

    def _needed(self, ref: ServiceRef, svc: run_v2.Service) -> list[str]:
        """Revisions a state must hold: latest created, latest ready, everything serving.
        A cached pending revision the service reports as ready or serving becomes Ready."""
        serving = self._traffic(svc)
        names = [_short(svc.latest_created_revision), _short(svc.latest_ready_revision)]
        names = list(dict.fromkeys(n for n in [*names, *serving] if n))
        for name in names:
            key = ref.revision_resource(name)
            cached = self._revisions.get(key)
            if cached is None or cached.readiness != Readiness.PENDING:
                continue
            if name == _short(svc.latest_ready_revision) or serving.get(name):
                self._revisions[key] = dataclasses.replace(cached, readiness=Readiness.READY)
            else:
                del self._revisions[key]  # still starting: read it again
        return names

    @staticmethod
    def _traffic(svc: run_v2.Service) -> dict[str, int]:
        """The effective split from `traffic_statuses`, LATEST resolved to latest ready."""
        split: dict[str, int] = {}
        for status in svc.traffic_statuses:
            name = svc.latest_ready_revision if status.type_ == LATEST else status.revision
            if _short(name) and status.percent:
                split[_short(name)] = split.get(_short(name), 0) + status.percent
        return split

    def _state(
        self, ref: ServiceRef, svc: run_v2.Service, names: list[str], read_at: datetime
    ) -> ServiceState:
        revisions = {
            n: self._revisions[ref.revision_resource(n)]
            for n in names
            if ref.revision_resource(n) in self._revisions
        }
        for key in [k for k in self._revisions if k.startswith(ref.resource_name + "/")]:
            if _short(key) not in revisions:
                del self._revisions[key]  # keep the cache to what the services reference now
        return ServiceState(
            service=ref,
            read_at=read_at,
            generation=svc.generation,
            observed_generation=svc.observed_generation,
            reconciling=svc.reconciling,
            latest_created=_short(svc.latest_created_revision),
            latest_ready=_short(svc.latest_ready_revision),
            traffic=self._traffic(svc),
            revisions=revisions,
            etag=svc.etag,
        )

    # -- calls ------------------------------------------------------------------------------

    async def _list_services(self, parent: str) -> dict[str, run_v2.Service]:
        client = self._clients.run_services_async()
        found: dict[str, run_v2.Service] = {}
        token = ""
        while True:
            request = run_v2.ListServicesRequest(
                parent=parent, page_size=self.page_size, page_token=token
            )
            page: Any = await self._call(
                "ListServices",
                partial(client.list_services, request=request, retry=None, timeout=self.timeout),
            )
            found.update({_short(s.name): s for s in page.services})  # the id or the number
            token = page.next_page_token
            if not token:
                return found

    async def _fetch(
        self, parent: str, keys: list[str], services: dict[str, ServiceRef]
    ) -> dict[str, ReadError]:
        """Read revisions `keys` into the cache; the errors by revision name."""
        errors: dict[str, ReadError] = {}
        owner = {key: services[key.rsplit("/revisions/", 1)[0]] for key in keys}
        if len(keys) > self.list_revisions_over:
            try:
                await self._list_revisions(f"{parent}/services/-", set(keys), services)
            except exceptions.GoogleAPICallError as err:
                errors = {
                    k: ReadError(owner[k], "ListRevisions", code_of(err), err.message) for k in keys
                }
            return errors
        client = self._clients.run_revisions_async()

        async def get(key: str) -> None:
            ref = owner[key]
            try:
                rev = await self._call(
                    "GetRevision",
                    partial(client.get_revision, name=key, retry=None, timeout=self.timeout),
                )
            except exceptions.NotFound:
                return  # deleted since the service was read: the state simply lacks it
            except exceptions.GoogleAPICallError as err:
                errors[key] = ReadError(ref, "GetRevision", code_of(err), err.message)
                return
            self._revisions[key] = self._revision(ref, rev)

        await asyncio.gather(*(get(k) for k in keys))
        return errors

    async def _list_revisions(
        self, parent: str, keys: set[str], services: dict[str, ServiceRef]
    ) -> None:
        client = self._clients.run_revisions_async()
        token = ""
        by_short = {(_short(k.rsplit("/revisions/", 1)[0]), _short(k)): k for k in keys}
        while by_short:
            request = run_v2.ListRevisionsRequest(
                parent=parent, page_size=self.page_size, page_token=token
            )
            page: Any = await self._call(
                "ListRevisions",
                partial(client.list_revisions, request=request, retry=None, timeout=self.timeout),
            )
            for rev in page.revisions:  # names may carry the project number: match short ones
                key = by_short.pop((rev.service, _short(rev.name)), None)
                if key is not None:
                    ref = services[key.rsplit("/revisions/", 1)[0]]
                    self._revisions[key] = self._revision(ref, rev)
            token = page.next_page_token
            if not token:
                return

    async def _call(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        """One API call with the explicit short retry; every attempt is counted."""
        for attempt in range(1, self.attempts):
            try:
                return await self._counted(method, call)
            except _TRANSIENT:
                jitter = 1 + random.random() * attempt  # noqa: S311 - jitter, not security
                await asyncio.sleep(self.retry_delay * jitter)
        return await self._counted(method, call)

    async def _counted(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await call()
        except exceptions.GoogleAPICallError as err:
            self._on_call(method, code_of(err))
            raise
        self._on_call(method, "OK")
        return result

    @staticmethod
    def _revision(ref: ServiceRef, rev: run_v2.Revision) -> Revision:
        created = run_v2.Revision.pb(rev).create_time.ToDatetime(tzinfo=UTC)
        return Revision(ref, _short(rev.name), created, *readiness_of(rev))

    # -- write side: the revert (a traffic-only UpdateService, then its operation) goes here,
    # -- or in a sibling `cloudrun_revert.py` if this module outgrows 300 lines.
