"""The HTTP API answers pipelines, probes, Prometheus and approvers, over a real server.

Why: the gate a deploy pipeline polls and the freeze lift an approver sends must behave the
same through a real socket as in the code: so these tests serve `create_app` with uvicorn on
loopback, back it with a real SQLite store and a real Prometheus registry, and talk to it
with httpx. They pin every endpoint's shape, the 401/403 split, `read_auth`, the 503 that
says why the guard is not ready, and the one JSON error shape.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from guard import __version__
from guard.adapters.store import SqlStore, Store
from guard.core.model import (
    ActionKind,
    ActionStatus,
    DeployInfo,
    DeployKind,
    Evidence,
    IncidentState,
    SignalKind,
)
from guard.service import auth
from guard.service.api import create_app
from guard.service.restores import RestoreRequestError
from guard.service.state import GuardState, UnknownAppError

from ..support.http import serving

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALICE_TOKEN = "alice-s3cret-token"
BOB_TOKEN = "bob-0ther-token"
APPROVERS = {
    "alice": hashlib.sha256(ALICE_TOKEN.encode()).hexdigest(),
    "bob": hashlib.sha256(BOB_TOKEN.encode()).hexdigest(),
}
ALICE = {"Authorization": f"Bearer {ALICE_TOKEN}"}


class Restores:
    """The restore side of the state: one proposal listed, every other request refused
    (the real restore desk is exercised end to end in tests/restore)."""

    async def restores(self, app: str | None = None) -> list[dict[str, Any]]:
        return [{"id": "r-1", "app": "pegasus", "point_in_time": T0.isoformat()}]

    async def show(self, restore_id: str) -> dict[str, Any]:
        raise RestoreRequestError(404, f"no restore {restore_id}")

    async def propose(self, app_name: str, **kw: Any) -> Any:
        raise RestoreRequestError(403, "refused")

    async def vote(self, restore_id: str, approver: str, decision: Any, reason: str = "") -> Any:
        raise RestoreRequestError(409, f"restore {restore_id} takes no more votes")


class Guard:
    """A `GuardState` over a real store: what the API may see of a running guard."""

    def __init__(self, store: SqlStore, registry: CollectorRegistry) -> None:
        self._store = store
        self._registry = registry
        self.apps: Sequence[str] = ("pegasus", "atlas")
        self.checks: dict[str, str | None] = {"leader_lease": None}
        self.broken = False  # a store that fails: the API answers 500

    @property
    def store(self) -> SqlStore:
        if self.broken:
            raise RuntimeError("the database went away")
        return self._store

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    def readiness(self) -> Mapping[str, str | None]:
        ping = None if self._store.ping() else "the store does not answer"
        return {"store": ping, **self.checks}

    def status(self) -> Mapping[str, Any]:
        return {"role": "leader", "version": __version__, "dry_run": False}

    @property
    def restores(self) -> Restores:
        return Restores()

    async def lift_freeze(self, app: str, by: str, reason: str) -> Mapping[str, Any]:
        if app not in self.apps:
            raise UnknownAppError(app)
        now = datetime.now(UTC)
        lifted = await asyncio.to_thread(self._store.lift_freeze, app, by, at=now)
        detail = {"reason": reason, "lifted": lifted}
        await asyncio.to_thread(self._store.audit, by, "unfreeze", app, detail, at=now)
        pins = [{"service": "pegasus-api", "revision": "pegasus-api-00041"}] if lifted else []
        offer = "POST /v1/apps/pegasus/to-latest sends traffic back" if pins else None
        return {"app": app, "lifted": lifted, "by": by, "pins": pins, "offer": offer}

    async def to_latest(self, app: str, by: str) -> Mapping[str, Any]:
        if app not in self.apps:
            raise UnknownAppError(app)
        return {"app": app, "by": by, "would_move": {"pegasus-api": "LATEST"}}


def populate(store: SqlStore) -> dict[str, str]:
    """An open, frozen incident on pegasus with evidence and actions; a resolved one on atlas."""
    bad, _ = store.open_incident(
        "pegasus", "pegasus-api", "pegasus-api-00042", at=T0, rules=["schema-migration"],
        migration_file="0042_add_column.sql", file_source="text",
        deploy=DeployInfo(DeployKind.TRAFFIC, T0 - timedelta(minutes=2), ("pegasus-api-00041",)),
    )  # fmt: skip
    store.set_incident_state(bad.id, IncidentState.FROZEN, at=T0 + timedelta(seconds=5))
    store.add_evidence(bad.id, [
        Evidence(SignalKind.LOG, T0, 'column "plan" does not exist', "pegasus-api",
                 "pegasus-api-00042", {"sqlstate": "42703"}),
    ])  # fmt: skip
    done, _ = store.intend(bad.id, ActionKind.FREEZE, f"{bad.id}:freeze", {"target": "pegasus"},
                           at=T0 + timedelta(seconds=1))  # fmt: skip
    store.finish(
        done.id, ActionStatus.SUCCEEDED, {"detail": "frozen"}, at=T0 + timedelta(seconds=2)
    )
    store.intend(bad.id, ActionKind.REVERT, f"{bad.id}:revert", {"target": "pegasus-api-00041"},
                 at=T0 + timedelta(seconds=3))  # fmt: skip
    store.freeze("pegasus", bad.id, "schema migration failed", at=T0 + timedelta(seconds=2))
    old, _ = store.open_incident("atlas", "atlas-web", "atlas-web-00007", at=T0 - timedelta(days=1))
    store.set_incident_state(old.id, IncidentState.RESOLVED, at=T0)
    return {"pegasus": bad.id, "atlas": old.id}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = Store.open(f"sqlite:///{tmp_path}/guard.db")
    yield opened
    opened.close()


def make_guard(store: SqlStore) -> Guard:
    """A guard over `store` with a real registry holding one counted metric."""
    registry = CollectorRegistry()
    opened = Counter("guard_incidents_opened", "Incidents opened", ["app"], registry=registry)
    opened.labels(app="pegasus").inc(2)
    return Guard(store, registry)


@pytest.fixture
def guard(store: SqlStore) -> Guard:
    return make_guard(store)


@pytest.fixture
def ids(store: SqlStore) -> dict[str, str]:
    return populate(store)


@contextmanager
def client_for(state: GuardState, *, read_auth: bool = False) -> Iterator[httpx.Client]:
    with (
        serving(create_app(state, approvers=APPROVERS, read_auth=read_auth)) as url,
        httpx.Client(base_url=url, timeout=5) as client,
    ):
        yield client


@pytest.fixture
def api(guard: Guard, ids: dict[str, str]) -> Iterator[httpx.Client]:
    with client_for(guard) as client:
        yield client


# --- probes and metrics ---------------------------------------------------------------------


def test_healthz_and_readyz(api: httpx.Client, guard: Guard) -> None:
    assert api.get("/healthz").json() == {"status": "alive"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"store": None, "leader_lease": None}}
    guard.checks["cloud_run"] = "Cloud Run API unreachable: connection refused"
    down = api.get("/readyz")
    assert down.status_code == 503
    assert down.json() == {
        "ready": False,
        "checks": {
            "store": None,
            "leader_lease": None,
            "cloud_run": "Cloud Run API unreachable: connection refused",
        },
    }
    assert api.get("/healthz").status_code == 200  # alive, though not ready


def test_metrics_are_the_registry_exposition(api: httpx.Client) -> None:
    answer = api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_LATEST
    assert 'guard_incidents_opened_total{app="pegasus"} 2.0' in answer.text


# --- reads ----------------------------------------------------------------------------------


def test_status_and_restores(api: httpx.Client) -> None:
    assert api.get("/v1/status").json() == {
        "role": "leader", "version": __version__, "dry_run": False,
    }  # fmt: skip
    assert api.get("/v1/restores").json() == [
        {"id": "r-1", "app": "pegasus", "point_in_time": "2026-03-01T12:00:00+00:00"}
    ]
    missing = api.get("/v1/restores/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "no restore nope"}
    closed = api.post("/v1/restores/r-1/approve", headers=ALICE)
    assert closed.status_code == 409
    assert closed.json()["error"] == "conflict"


def test_incidents_open_by_default_all_on_request_and_by_app(
    api: httpx.Client, ids: dict[str, str]
) -> None:
    (only,) = api.get("/v1/incidents").json()
    assert only == {
        "id": ids["pegasus"], "app": "pegasus", "service": "pegasus-api",
        "bad_revision": "pegasus-api-00042", "state": "frozen",
        "opened_at": "2026-03-01T12:00:00Z", "rules": ["schema-migration"],
        "migration_file": "0042_add_column.sql", "reverted_to": None, "file_source": "text",
        "dry_run": False,
        "deploy": {
            "kind": "traffic", "started_at": "2026-03-01T11:58:00Z",
            "last_known_good": ["pegasus-api-00041"], "traffic_percent": 100,
        },
    }  # fmt: skip
    every = api.get("/v1/incidents", params={"state": "all"}).json()
    assert [i["id"] for i in every] == [ids["pegasus"], ids["atlas"]]  # newest first
    atlas = api.get("/v1/incidents", params={"state": "all", "app": "atlas"}).json()
    assert [(i["app"], i["state"], i["deploy"]) for i in atlas] == [("atlas", "resolved", None)]
    assert api.get("/v1/incidents", params={"app": "atlas"}).json() == []


def test_incident_detail_has_evidence_and_actions(api: httpx.Client, ids: dict[str, str]) -> None:
    doc = api.get(f"/v1/incidents/{ids['pegasus']}").json()
    assert doc["state"] == "frozen"
    assert doc["evidence"] == [
        {
            "kind": "log", "at": "2026-03-01T12:00:00Z",
            "summary": 'column "plan" does not exist', "service": "pegasus-api",
            "revision": "pegasus-api-00042", "data": {"sqlstate": "42703"},
        }
    ]  # fmt: skip
    freeze, revert = doc["actions"]
    assert freeze == {
        "id": freeze["id"], "kind": "freeze", "key": f"{ids['pegasus']}:freeze",
        "status": "succeeded", "intent": {"target": "pegasus"}, "outcome": {"detail": "frozen"},
        "started_at": "2026-03-01T12:00:01Z", "finished_at": "2026-03-01T12:00:02Z",
        "attempts": 1,
    }  # fmt: skip
    assert (revert["kind"], revert["status"], revert["finished_at"]) == ("revert", "intended", None)


def test_freezes_list_and_gate(api: httpx.Client, ids: dict[str, str]) -> None:
    frozen = {
        "app": "pegasus", "frozen": True, "incident_id": ids["pegasus"],
        "reason": "schema migration failed", "frozen_at": "2026-03-01T12:00:02Z",
        "lifted_at": None, "lifted_by": None,
    }  # fmt: skip
    assert api.get("/v1/freezes").json() == [frozen]
    assert api.get("/v1/freezes/pegasus").json() == frozen
    assert api.get("/v1/freezes/atlas").json() == {
        "app": "atlas", "frozen": False, "incident_id": None, "reason": None,
        "frozen_at": None, "lifted_at": None, "lifted_by": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/v1/incidents/nope", "no incident 'nope'"),
        ("/v1/freezes/hermes", "no app 'hermes' in the guard's configuration"),
        ("/v1/nothing-here", "Not Found"),
    ],
)
def test_unknown_things_are_404_json(api: httpx.Client, path: str, detail: str) -> None:
    answer = api.get(path)
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "detail": detail}


def test_invalid_parameters_are_422_in_the_same_shape(api: httpx.Client) -> None:
    answer = api.get("/v1/incidents", params={"state": "closed"})
    assert answer.status_code == 422
    doc = answer.json()
    assert doc["error"] == "invalid_request"
    assert doc["detail"].startswith("query.state:")


def test_a_failing_store_is_500_json_without_internals(api: httpx.Client, guard: Guard) -> None:
    guard.broken = True
    answer = api.get("/v1/freezes/pegasus")
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal_server_error"
    assert "database went away" not in answer.text


# --- writes and auth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer =x", "Basic YWxpY2U6cHc=", f"Token {ALICE_TOKEN}", "Bearer a b"],
)
def test_writes_without_a_well_formed_bearer_are_401(
    api: httpx.Client, store: SqlStore, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/v1/freezes/pegasus/lift", "/v1/apps/pegasus/to-latest"):
        answer = api.post(path, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["error"] == "unauthorized"
    frozen = store.freeze_of("pegasus")
    assert frozen is not None
    assert frozen.frozen


def test_writes_with_a_token_no_approver_has_are_403(api: httpx.Client, store: SqlStore) -> None:
    for path in ("/v1/freezes/pegasus/lift", "/v1/apps/pegasus/to-latest"):
        answer = api.post(path, headers={"Authorization": "Bearer not-a-real-token"})
        assert answer.status_code == 403
        assert answer.json() == {"error": "forbidden", "detail": "the token is not an approver's"}
    frozen = store.freeze_of("pegasus")
    assert frozen is not None
    assert frozen.frozen


def test_an_approver_lifts_the_freeze_and_the_audit_names_them(
    api: httpx.Client, store: SqlStore
) -> None:
    answer = api.post("/v1/freezes/pegasus/lift", headers=ALICE, json={"reason": "fixed in 0043"})
    assert answer.status_code == 200
    doc = answer.json()
    assert (doc["lifted"], doc["by"]) == (True, "alice")
    assert doc["pins"]
    assert doc["offer"]
    freeze = store.freeze_of("pegasus")
    assert freeze is not None
    assert (freeze.frozen, freeze.lifted_by) == (False, "alice")
    trail = [(a.actor, a.action, dict(a.detail)) for a in store.audit_log("pegasus")]
    assert ("alice", "unfreeze", {"reason": "fixed in 0043", "lifted": True}) in trail
    assert ("alice", "lift_freeze", {}) in trail
    assert api.get("/v1/freezes/pegasus").json()["lifted_by"] == "alice"
    # Lifting again (scheme in any case, no body) is answered, and says nothing was lifted.
    again = api.post("/v1/freezes/pegasus/lift", headers={"Authorization": f"bearer {BOB_TOKEN}"})
    assert again.status_code == 200
    assert (again.json()["lifted"], again.json()["by"]) == (False, "bob")


def test_to_latest_names_the_approver(api: httpx.Client) -> None:
    answer = api.post("/v1/apps/pegasus/to-latest", headers=ALICE)
    assert answer.status_code == 200
    assert answer.json() == {
        "app": "pegasus",
        "by": "alice",
        "would_move": {"pegasus-api": "LATEST"},
    }


@pytest.mark.parametrize("path", ["/v1/freezes/hermes/lift", "/v1/apps/hermes/to-latest"])
def test_writes_for_an_unknown_app_are_404(api: httpx.Client, path: str) -> None:
    answer = api.post(path, headers=ALICE)
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"


READS = ["/v1/status", "/v1/incidents", "/v1/freezes", "/v1/freezes/pegasus", "/v1/restores"]


def test_reads_are_open_without_read_auth(api: httpx.Client, ids: dict[str, str]) -> None:
    for path in [*READS, f"/v1/incidents/{ids['pegasus']}"]:
        assert api.get(path).status_code == 200, path


def test_read_auth_guards_v1_reads_but_not_probes(guard: Guard, ids: dict[str, str]) -> None:
    with client_for(guard, read_auth=True) as api:
        for path in [*READS, f"/v1/incidents/{ids['pegasus']}"]:
            bare = api.get(path)
            assert bare.status_code == 401, path
            assert bare.headers["www-authenticate"] == "Bearer"
            bad = api.get(path, headers={"Authorization": "Bearer guessed"})
            assert bad.status_code == 403, path
            assert api.get(path, headers=ALICE).status_code == 200, path
        for path in ("/healthz", "/readyz", "/metrics"):
            assert api.get(path).status_code == 200, path
        lifted = api.post("/v1/freezes/pegasus/lift", headers=ALICE)
        assert lifted.json()["by"] == "alice"


# --- the OpenAPI document -------------------------------------------------------------------


def test_openapi_describes_every_path_and_shape(api: httpx.Client) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["info"]["title"] == "Deploy Guard"
    assert doc["info"]["version"] == __version__
    assert set(doc["paths"]) == {
        "/healthz", "/readyz", "/metrics", "/v1/status", "/v1/incidents",
        "/v1/incidents/{incident_id}", "/v1/freezes", "/v1/freezes/{app_name}",
        "/v1/freezes/{app_name}/lift", "/v1/apps/{app_name}/to-latest", "/v1/restores",
        "/v1/restores/{restore_id}", "/v1/restores/{restore_id}/approve",
        "/v1/restores/{restore_id}/reject",
    }  # fmt: skip
    schemas = doc["components"]["schemas"]
    assert {"IncidentOut", "IncidentDetailOut", "FreezeOut", "ActionOut", "ErrorOut"} <= set(
        schemas
    )
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    lift = doc["paths"]["/v1/freezes/{app_name}/lift"]["post"]
    assert lift["security"] == [{"HTTPBearer": []}]
    assert {"401", "403", "404"} <= set(lift["responses"])
    gate = doc["paths"]["/v1/freezes/{app_name}"]["get"]
    assert gate["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FreezeOut"
    }
    assert "security" not in gate  # read_auth is off here


# --- auth on its own ------------------------------------------------------------------------


def test_approvers_name_the_caller_or_nobody() -> None:
    approvers = auth.Approvers(APPROVERS)
    assert approvers.who(f"Bearer {ALICE_TOKEN}") == "alice"
    assert approvers.who(f"BEARER  {BOB_TOKEN} ") == "bob"
    for header in (None, "", "Bearer", f"Basic {ALICE_TOKEN}", "Bearer wrong", "Bearer é"):
        assert approvers.who(header) is None
    assert auth.token_sha256(ALICE_TOKEN) == APPROVERS["alice"]


def test_every_approver_hash_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    approvers = auth.Approvers({**APPROVERS, "carol": "0" * 64})
    assert approvers.who(f"Bearer {ALICE_TOKEN}") == "alice"  # the first matches ...
    assert len(calls) == 3  # ... and the other two are compared all the same


def test_approvers_refuse_a_value_that_is_no_sha256() -> None:
    with pytest.raises(ValueError, match="approver 'dave'") as caught:
        auth.Approvers({"dave": "plain-token-pasted-by-mistake"})
    assert "plain-token" not in str(caught.value)
