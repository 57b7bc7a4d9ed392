"""The guard's HTTP API: probes, metrics, incidents, freezes and the two human acts.

Why: a deploy pipeline must ask "is this app frozen?" before it ships, on-call humans must
see what the guard saw and did, Prometheus must scrape it, Cloud Run must probe it, and an
approver must be able to lift a freeze or return traffic to the latest revision without a
shell on the guard. Everything goes through the narrow `GuardState` interface, never the
scheduler, detector or responder.

Auth: POST endpoints always need `Authorization: Bearer <token>` of a configured approver;
the approver's name is what the audit trail records. With `api.read_auth` the /v1 read
endpoints need one too. /healthz, /readyz and /metrics are always open: Cloud Run's probes
and Prometheus scrapes carry no token, and they reveal no incident data. A missing or
malformed header is 401 with `WWW-Authenticate: Bearer`; a well-formed token that is no
approver's is 403.

Errors: every error (unknown routes, invalid parameters and internal failures included) is
the JSON object `{"error": "<code>", "detail": "<what went wrong>"}`; `error` is the HTTP
status phrase in snake case (`not_found`, `unauthorized`, `forbidden`,
`internal_server_error`, ...) or `invalid_request` for 422. The OpenAPI document names this
shape `ErrorOut`.

Store calls are synchronous short transactions, so the endpoints that touch the store are
plain `def` functions, which FastAPI runs in its thread pool, off the event loop.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal, Self, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from guard import __version__
from guard.core.model import (
    ActionKind,
    ActionStatus,
    DeployInfo,
    DeployKind,
    Evidence,
    Incident,
    IncidentState,
    SignalKind,
)
from guard.core.restore import Decision, RestoreKind
from guard.ports import ActionRecord, FreezeRecord
from guard.service.auth import Approvers, bearer_token
from guard.service.restores import RestoreRequestError
from guard.service.state import GuardState, UnknownAppError

T = TypeVar("T")

log = logging.getLogger(__name__)

# --- the shapes (they make /openapi.json describe the API) --------------------------------


class ErrorOut(BaseModel):
    error: str = Field(description="A short code: the HTTP status phrase in snake case.")
    detail: str = Field(description="What went wrong, for a human.")


class AliveOut(BaseModel):
    status: Literal["alive"]


class ReadyOut(BaseModel):
    ready: bool
    checks: dict[str, str | None] = Field(description="Each check: null if it passes, else why.")


class EvidenceOut(BaseModel):
    kind: SignalKind
    at: datetime
    summary: str
    service: str
    revision: str
    data: dict[str, Any]


class ActionOut(BaseModel):
    id: str
    kind: ActionKind
    key: str = Field(description="The idempotency key: one action per key, ever.")
    status: ActionStatus
    intent: dict[str, Any]
    outcome: dict[str, Any] | None
    started_at: datetime = Field(description="When the intent was recorded, before acting.")
    finished_at: datetime | None
    attempts: int


class DeployOut(BaseModel):
    kind: DeployKind
    started_at: datetime
    last_known_good: list[str] = Field(description="Revisions serving before it, best first.")
    traffic_percent: int

    @classmethod
    def of(cls, d: DeployInfo | None) -> Self | None:
        if d is None:
            return None
        return cls(kind=d.kind, started_at=d.started_at, last_known_good=list(d.last_known_good),
                   traffic_percent=d.traffic_percent)  # fmt: skip


class IncidentOut(BaseModel):
    id: str
    app: str
    service: str
    bad_revision: str
    state: IncidentState
    opened_at: datetime
    rules: list[str]
    migration_file: str | None
    reverted_to: str | None
    file_source: str | None = Field(description='"text" (named in a log) or "blame".')
    dry_run: bool
    deploy: DeployOut | None = Field(description="The deploy; null for pre-v2 incidents.")

    @classmethod
    def of(cls, i: Incident, **more: Any) -> Self:
        return cls(
            id=i.id, app=i.app, service=i.service, bad_revision=i.bad_revision, state=i.state,
            opened_at=i.opened_at, rules=list(i.rules), migration_file=i.migration_file,
            reverted_to=i.reverted_to, file_source=i.file_source, dry_run=i.dry_run,
            deploy=DeployOut.of(i.deploy), **more,
        )  # fmt: skip


class IncidentDetailOut(IncidentOut):
    evidence: list[EvidenceOut]
    actions: list[ActionOut]


class FreezeOut(BaseModel):
    app: str
    frozen: bool
    incident_id: str | None = None
    reason: str | None = None
    frozen_at: datetime | None = None
    lifted_at: datetime | None = None
    lifted_by: str | None = None

    @classmethod
    def of(cls, app: str, f: FreezeRecord | None) -> Self:
        if f is None:  # never frozen
            return cls(app=app, frozen=False)
        return cls(
            app=app, frozen=f.frozen, incident_id=f.incident_id, reason=f.reason,
            frozen_at=f.frozen_at, lifted_at=f.lifted_at, lifted_by=f.lifted_by,
        )  # fmt: skip


class LiftIn(BaseModel):
    reason: str = Field(default="", max_length=2000, description="Kept in the audit trail.")


class VoteIn(BaseModel):
    reason: str = Field(default="", max_length=2000, description="Kept in the audit trail.")


class ProposeIn(BaseModel):
    app: str = Field(description="The app whose database to restore.")
    at: AwareDatetime = Field(description="The point in time (RFC 3339 with a zone).")
    kind: RestoreKind = Field(
        default=RestoreKind.CLONE,
        description="clone: a new instance at `at` (Option A); backup: the last backup run "
        "before `at`, restored in place (destructive).",
    )
    incident: str | None = Field(default=None, description="The incident it answers, if any.")


def _detail(i: Incident, ev: Sequence[Evidence], acts: Sequence[ActionRecord]) -> IncidentDetailOut:
    evidence = [
        EvidenceOut(kind=e.kind, at=e.at, summary=e.summary, service=e.service,
                    revision=e.revision, data=dict(e.data))
        for e in ev
    ]  # fmt: skip
    actions = [
        ActionOut(id=a.id, kind=a.kind, key=a.key, status=a.status, intent=dict(a.intent),
                  outcome=None if a.outcome is None else dict(a.outcome),
                  started_at=a.created_at, finished_at=a.finished_at, attempts=a.attempts)
        for a in acts
    ]  # fmt: skip
    return IncidentDetailOut.of(i, evidence=evidence, actions=actions)


# --- errors -------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorOut} for c in (401, 403, 404, 409, 422)
}


def _error_json(status: int, detail: str, code: str | None = None, **kw: Any) -> JSONResponse:
    if code is None:
        try:
            code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
        except ValueError:  # a status code with no standard phrase
            code = "error"
    return JSONResponse(ErrorOut(error=code, detail=detail).model_dump(), status, **kw)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return _error_json(exc.status_code, str(exc.detail), headers=exc.headers)


async def _invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in exc.errors()
    )
    return _error_json(422, detail, "invalid_request")


async def _internal(_: Request, exc: Exception) -> Response:
    # Starlette logs the exception after this answer; the caller gets no internals.
    return _error_json(500, f"the guard could not answer ({type(exc).__name__}); see its log")


def _unknown_app(app: str) -> HTTPException:
    return HTTPException(404, f"no app {app!r} in the guard's configuration")


# --- the app ------------------------------------------------------------------------------

Approver = Callable[..., Awaitable[str]]


def create_app(
    state: GuardState, *, approvers: Mapping[str, str], read_auth: bool = False
) -> FastAPI:
    """The API over `state`; `approvers` maps each approver's name to their token's sha256."""
    approver = _approver_dependency(Approvers(approvers))
    app = FastAPI(
        title="Deploy Guard",
        version=__version__,
        description=__doc__ or "",
    )
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _internal)
    app.include_router(_probes(state))
    app.include_router(_reads(state, [Depends(approver)] if read_auth else []))
    app.include_router(_writes(state, approver))
    return app


def _approver_dependency(known: Approvers) -> Approver:
    bearer = HTTPBearer(auto_error=False, description="An approver's bearer token.")

    async def approver(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
    ) -> str:
        """The calling approver's name (hashing and comparing is cheap: no thread needed)."""
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise HTTPException(
                401,
                "an approver's token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        name = known.identify(token)
        if name is None:
            log.warning("refused a token that is no approver's (%s)", request.url.path)
            raise HTTPException(403, "the token is not an approver's")
        return name

    return approver


def _probes(state: GuardState) -> APIRouter:
    """Always open: Cloud Run's probes and Prometheus's scrapes carry no token."""
    probes = APIRouter(tags=["probes"])

    @probes.get("/healthz")
    async def healthz() -> AliveOut:
        """The process is alive (the liveness probe); touches nothing else."""
        return AliveOut(status="alive")

    @probes.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
    def readyz() -> JSONResponse:
        """Ready when every check passes; else 503 with each failing check's reason."""
        checks = dict(state.readiness())
        ready = all(reason is None for reason in checks.values())
        body = ReadyOut(ready=ready, checks=checks).model_dump(mode="json")
        return JSONResponse(body, status_code=200 if ready else 503)

    @probes.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    def metrics() -> Response:
        """The Prometheus exposition of the guard's metrics."""
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    return probes


def _reads(state: GuardState, dependencies: Sequence[Any]) -> APIRouter:
    """What the guard saw and did; behind a token only with `api.read_auth`."""
    errors: dict[int | str, dict[str, Any]] = dict(_ERRORS)
    if not dependencies:  # no token needed, so never 401 or 403
        del errors[401], errors[403]
    reads = APIRouter(prefix="/v1", tags=["read"], responses=errors, dependencies=dependencies)

    @reads.get("/status")
    def status() -> dict[str, Any]:
        """Leader or standby, version, dry run."""
        return dict(state.status())

    @reads.get("/incidents")
    def incidents(
        which: Annotated[Literal["open", "all"], Query(alias="state")] = "open",
        app_name: Annotated[str | None, Query(alias="app")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[IncidentOut]:
        """Incidents, newest first: the open ones (not resolved or superseded) or all."""
        found = state.store.incidents(app_name, open_only=which == "open", limit=limit)
        return [IncidentOut.of(i) for i in found]

    @reads.get("/incidents/{incident_id}")
    def incident(incident_id: str) -> IncidentDetailOut:
        """One incident with the evidence the guard kept and every action it took."""
        store = state.store
        found = store.incident(incident_id)
        if found is None:
            raise HTTPException(404, f"no incident {incident_id!r}")
        return _detail(found, store.evidence(incident_id), store.actions(incident_id))

    @reads.get("/freezes")
    def freezes() -> list[FreezeOut]:
        """The apps frozen now."""
        return [FreezeOut.of(f.app, f) for f in state.store.frozen_apps()]

    @reads.get("/freezes/{app_name}")
    def freeze(app_name: str) -> FreezeOut:
        """Whether the app is frozen: what a deploy pipeline polls before it ships."""
        if app_name not in state.apps:
            raise _unknown_app(app_name)
        return FreezeOut.of(app_name, state.store.freeze_of(app_name))

    @reads.get("/restores")
    async def restores(app_name: Annotated[str | None, Query(alias="app")] = None) -> list[
        dict[str, Any]
    ]:  # fmt: skip
        """Database restores, newest first: proposed, approved, running and ended. Nothing
        is written to a database until a restore has its approvals."""
        return await state.restores.restores(app_name)

    @reads.get("/restores/{restore_id}")
    async def restore(restore_id: str) -> dict[str, Any]:
        """One restore: the plan (data, and `plan_text` as `guard restore plan` prints it),
        the votes with who and when, and every step with its intent and outcome."""
        return await _restore_call(state.restores.show(restore_id))

    return reads


def _writes(state: GuardState, approver: Approver) -> APIRouter:
    """The two human acts; always an approver's, audited under the approver's name."""
    writes = APIRouter(prefix="/v1", tags=["act"], responses=_ERRORS)

    @writes.post("/freezes/{app_name}/lift")
    async def lift(
        app_name: str, by: Annotated[str, Depends(approver)], body: LiftIn | None = None
    ) -> dict[str, Any]:
        """Lift the app's freeze.

        The answer says whether a freeze was lifted and offers to undo the guard's traffic
        pins ("pins", "offer"); POST /v1/apps/{app}/to-latest takes that offer.
        """
        reason = "" if body is None else body.reason
        try:
            result = await state.lift_freeze(app_name, by=by, reason=reason)
        except UnknownAppError as exc:
            raise _unknown_app(app_name) from exc
        log.info("%s lifted the freeze of %s", by, app_name)
        return dict(result)

    @writes.post("/apps/{app_name}/to-latest")
    async def to_latest(app_name: str, by: Annotated[str, Depends(approver)]) -> dict[str, Any]:
        """Send traffic back to the latest revision of each service the guard pinned."""
        try:
            result = await state.to_latest(app_name, by=by)
        except UnknownAppError as exc:
            raise _unknown_app(app_name) from exc
        log.info("%s sent %s back to its latest revisions", by, app_name)
        return dict(result)

    @writes.post("/restores", status_code=201)
    async def propose(body: ProposeIn, by: Annotated[str, Depends(approver)]) -> dict[str, Any]:
        """Propose restoring an app's database to a point in time (`kind` clone: a new
        instance; backup: the last backup run before `at`, in place, destructive). Nothing
        runs until enough distinct approvers approve."""
        opened = await _restore_call(
            state.restores.propose(
                body.app, at=body.at, kind=body.kind, by=by, incident_id=body.incident
            )
        )
        log.info("%s proposed restore %s of %s", by, opened.id, body.app)
        return await state.restores.show(opened.id)

    @writes.post("/restores/{restore_id}/approve")
    async def approve(
        restore_id: str, by: Annotated[str, Depends(approver)], body: VoteIn | None = None
    ) -> dict[str, Any]:
        """Approve a proposed restore. Each approver counts once; when the required number
        of distinct approvers have approved, the guard starts it."""
        reason = "" if body is None else body.reason
        result = await _restore_call(state.restores.vote(restore_id, by, Decision.APPROVE, reason))
        log.info("%s approved restore %s (%s)", by, restore_id, result.get("state"))
        return result

    @writes.post("/restores/{restore_id}/reject")
    async def reject(
        restore_id: str, by: Annotated[str, Depends(approver)], body: VoteIn | None = None
    ) -> dict[str, Any]:
        """Reject a proposed restore: it will never run."""
        reason = "" if body is None else body.reason
        result = await _restore_call(state.restores.vote(restore_id, by, Decision.REJECT, reason))
        log.info("%s rejected restore %s", by, restore_id)
        return result

    return writes


async def _restore_call(call: Awaitable[T]) -> T:
    """Await a restore request; its refusal becomes the HTTP error it names."""
    try:
        return await call
    except RestoreRequestError as exc:
        raise HTTPException(exc.status, exc.message) from exc
