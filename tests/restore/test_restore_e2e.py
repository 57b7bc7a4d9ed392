"""The gated restore end to end on the fake cloud, through the real adapters, the real store
(SQLite and the real PostgreSQL), the official clients and the real HTTP API: the runbook's
worst case escalates, nothing touches the database until two distinct approvers approve
over HTTP, then clone → operation done → secret version → services rolled → validation,
every write once and in order; a guard that dies anywhere in between resumes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner, Result
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from guard.adapters.cloudrun_roll import CloudRunRoller
from guard.adapters.cloudsql_admin import CloudSqlAdmin
from guard.adapters.secrets import Secrets
from guard.adapters.store import SqlStore, Store
from guard.cli import main
from guard.core.model import ActionKind, ActionStatus, IncidentState, ServiceRef
from guard.core.restore import FINAL, Decision, RestoreState
from guard.service import crashpoints
from guard.service.api import create_app
from guard.service.restores import RestoreApp, RestoreDesk, in_plan_order
from guard.service.run import ApiServer

from ..response.test_respond_scenarios import Responded

TOKENS = {"alice": "alice-token-1", "bob": "bob-token-2", "carol": "carol-token-3"}
HASHES = {name: hashlib.sha256(t.encode()).hexdigest() for name, t in TOKENS.items()}
ESCALATED_BY = 8 * 60  # scenario seconds: the runbook's worst case has escalated by then


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


class Restoring(Responded):
    """The responded worst case plus a restore desk over the same fake cloud and store."""

    def __init__(
        self, store: SqlStore, *, required: int = 2, ttl: float = 3600, dry_run: bool = False
    ) -> None:
        super().__init__("runbook-worst-case", store, dry_run=dry_run)
        self.required, self.ttl = required, ttl

    async def __aenter__(self) -> Restoring:
        await super().__aenter__()
        self.desk = self.new_desk()
        self.responder.restores = self.desk
        return self

    def new_desk(self) -> RestoreDesk:
        """A fresh desk, as a restarted guard builds one: nothing carried over but the store."""
        scenario, clock = self.engine.scenario, self.engine.clock
        [app] = scenario.apps
        assert app.database is not None

        async def sleep(seconds: float) -> None:
            await self.step()

        async def no_checks(app: str) -> None:
            return None

        return RestoreDesk(
            {
                app.name: RestoreApp(
                    name=app.name, project=app.project, instance=app.database.instance,
                    secret=app.database.secret,
                    services=dict(self.responder.apps[app.name].services),
                    approvers=frozenset({"alice", "bob"}), required=self.required,
                    ttl=timedelta(seconds=self.ttl), margin=timedelta(minutes=5),
                    validation=("no schema errors from the new revisions",),
                    dry_run=self.dry_run,
                )
            },
            store=self.store,
            admin=CloudSqlAdmin(self.clients),
            secrets=Secrets(self.clients),
            roller=CloudRunRoller(self.clients, sleep=sleep, poll=1.0),
            detector=self.detector,
            validate=no_checks,
            recovery_window=self.responder.recovery_window,
            now=clock.now,
            dry_run=self.dry_run,
            settle=timedelta(seconds=60),
        )  # fmt: skip

    async def restore_until(self, until: float, desk: RestoreDesk | None = None) -> None:
        """Advance scenario time, the responder and the restore desk ticking each second."""
        while self.engine.t < until:
            await self.play(self.engine.t + 1)
            await self.responder.tick()
            await (desk or self.desk).tick()

    async def restore_until_final(self, restore_id: str, limit: float = 30 * 60) -> None:
        """Tick until the restore ends (or `limit` scenario seconds from now)."""
        end = self.engine.t + limit
        while self.engine.t < end:
            found = self.store.restore(restore_id)
            if found is not None and found.state in FINAL:
                return
            await self.restore_until(self.engine.t + 1)

    def db_writes(self) -> list[tuple[str, str]]:
        """(api, method) of the guard's accepted writes since the revert, in order."""
        writes = self.engine.world.recorder.writes(accepted_only=True)
        guard = [w for w in writes if "actor" not in w.request]
        return [(w.api, w.method) for w in guard][1:]  # [0] is the revert's traffic pin


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    """SQLite, for the restore tests that are not about the backend (the two-approvals
    test runs on PostgreSQL; tests/response/test_store_restores.py covers both)."""
    with Store.open(f"sqlite:///{tmp_path}/guard.db") as opened:
        yield opened


class ApiState:
    """The narrow `GuardState` the API sees; here only restores matter."""

    def __init__(self, store: SqlStore, desk: RestoreDesk) -> None:
        self._store, self.restores = store, desk
        self.apps: Sequence[str] = ("pegasus",)

    @property
    def store(self) -> SqlStore:
        return self._store

    @property
    def registry(self) -> CollectorRegistry:
        return CollectorRegistry()

    def readiness(self) -> Mapping[str, str | None]:
        return {}

    def status(self) -> Mapping[str, Any]:
        return {}

    async def lift_freeze(self, app: str, by: str, reason: str) -> Mapping[str, Any]:
        raise NotImplementedError

    async def to_latest(self, app: str, by: str) -> Mapping[str, Any]:
        raise NotImplementedError


@asynccontextmanager
async def api(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """The API on a real uvicorn server on loopback, in this event loop (the desk's async
    clients live here, as they do in `guard run`)."""
    server = ApiServer(  # the guard's own server: no signal capture, as in `guard run`
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn stopped before it started"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def cli(*args: str) -> Result:
    """`guard ARGS...` in a thread, so the API in this event loop can answer it."""
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


def escalated_restore_ids(store: SqlStore) -> tuple[str, str | None]:
    [incident] = store.incidents()
    assert incident.state is IncidentState.ESCALATED
    escalate = next(a for a in store.actions(incident.id) if a.kind is ActionKind.ESCALATE)
    proposal = (escalate.outcome or {})["proposal"]
    return proposal["restore_id"], proposal.get("backup_restore_id")


@pytest.mark.postgres
async def test_two_approvals_over_http_then_clone_secret_roll_validate_once_each(
    pg_url: str,
) -> None:
    # On PostgreSQL, as several replicas run it; the other restore tests use SQLite.
    with Store.open(pg_url) as store:
        await _two_approvals_then_restore(store)


async def _two_approvals_then_restore(store: SqlStore) -> None:
    async with Restoring(store) as r:
        await r.restore_until(ESCALATED_BY)
        clone_id, backup_id = escalated_restore_ids(store)
        assert backup_id is not None, "the scenario has a backup before the deploy"
        # Proposed, not approved: minutes pass and nothing touches the database.
        await r.restore_until(ESCALATED_BY + 120)
        assert r.db_writes() == []
        async with api(create_app(ApiState(store, r.desk), approvers=HASHES)) as http:
            plan = (await http.get(f"/v1/restores/{clone_id}")).json()
            assert plan["state"] == "proposed"
            assert plan["executable"], plan["plan"]["problems"]
            assert "pegasus-password" not in str(plan), "the password is masked in the plan"
            assert any("gcloud sql instances clone pegasus-db-eu" in x for x in plan["plan_text"])
            approve = f"/v1/restores/{clone_id}/approve"
            # No token: 401 with a challenge. Not an approver's token: 403. An approver,
            # but not one of this app's restore approvers: 403.
            none = await http.post(approve)
            assert none.status_code == 401
            assert none.headers["www-authenticate"] == "Bearer"
            stranger = await http.post(approve, headers={"Authorization": "Bearer nope"})
            assert stranger.status_code == 403
            carol = await http.post(approve, headers=bearer("carol"))
            assert carol.status_code == 403
            assert "not an approver of pegasus" in carol.text
            first = (await http.post(approve, headers=bearer("alice"))).json()
            assert (first["state"], first["approvals"], first["counted"]) == (
                "proposed", ["alice"], True
            )  # fmt: skip
            again = (await http.post(approve, headers=bearer("alice"))).json()
            assert (again["state"], again["approvals"], again["counted"]) == (
                "proposed", ["alice"], False
            ), "a second approval from the same person does not count"  # fmt: skip
            await r.restore_until(r.engine.t + 30)
            assert r.db_writes() == [], "one approval of two: still nothing written"
            # bob reads the plan and approves from a terminal: the real CLI over HTTP.
            url = str(http.base_url).rstrip("/")
            plan_cli = await cli("restore", "plan", clone_id, "--url", url)
            assert plan_cli.exit_code == 0
            assert "gcloud sql instances clone pegasus-db-eu" in plan_cli.output
            assert "pegasus:****@<clone address>" in plan_cli.output
            anonymous = await cli("restore", "approve", clone_id, "--url", url)
            assert anonymous.exit_code == 2
            assert "HTTP 401" in anonymous.output
            second = await cli(
                "restore", "approve", clone_id, "--url", url, "--token", TOKENS["bob"]
            )
            assert second.exit_code == 0, second.output
            assert "approved; approvals 2 of 2 (alice, bob)" in second.output
            late = await http.post(f"/v1/restores/{backup_id}/reject", headers=bearer("bob"))
            assert late.status_code == 200
        await r.restore_until_final(clone_id)
        done = store.restore(clone_id)
        assert done is not None
        assert done.state is RestoreState.SUCCEEDED, (done.outcome, store.restore_steps(clone_id))
        assert r.db_writes() == [
            ("sqladmin", "instances.clone"),
            ("secretmanager", "AddSecretVersion"),
            ("run", "UpdateService"),  # pegasus-api: rebuilt from 00041, pinned
            ("run", "UpdateService"),  # pegasus-worker: rebuilt, stays on LATEST
        ]
        steps = in_plan_order(done, store.restore_steps(clone_id))
        assert [s.key.split(":", 1)[1] for s in steps] == [
            "clone", "wait", "address", "secret", "roll:pegasus-api", "roll:pegasus-worker",
            "validate",
        ]  # fmt: skip
        assert all(s.status is ActionStatus.SUCCEEDED for s in steps)
        world = r.engine.world
        new_api = f"pegasus-api-restore-{clone_id[:8]}"
        assert world.run.serving_split("pegasus-api") == {new_api: 100}
        clone = done.plan["clone_name"]
        secret = world.secrets.value("delta-student-486911-n5", "pegasus-db-url").decode()
        assert world.sql.instance("delta-student-486911-n5", clone).ip_address in secret
        [incident] = store.incidents()
        assert incident.state is IncidentState.RESOLVED, "the restore ended the incident"
        restore_action = next(a for a in store.actions(incident.id) if a.kind is ActionKind.RESTORE)
        assert restore_action.status is ActionStatus.SUCCEEDED
        trail = [(a.actor, a.action) for a in reversed(store.audit_log(clone_id))]
        assert trail == [
            ("guard", "restore_proposed"),
            ("alice", "restore_approve"),
            ("alice", "restore_vote_repeated"),
            ("bob", "restore_approve"),
            ("bob", "restore_approved"),
            ("guard", "restore_running"),
            ("guard", "restore_succeeded"),
        ]
        rejected = store.restore(backup_id)
        assert rejected is not None
        assert rejected.state is RestoreState.REJECTED
        assert "instances.restoreBackup" not in {m for _, m in r.db_writes()}


async def test_a_rejected_or_expired_restore_never_runs_and_takes_no_more_votes(
    store: SqlStore,
) -> None:
    async with Restoring(store, ttl=300) as r:
        await r.restore_until(ESCALATED_BY)
        clone_id, backup_id = escalated_restore_ids(store)
        assert backup_id is not None
        async with api(create_app(ApiState(store, r.desk), approvers=HASHES)) as http:
            no = await http.post(
                f"/v1/restores/{clone_id}/reject", headers=bearer("bob"),
                json={"reason": "we ship 003_fix instead"},
            )  # fmt: skip
            assert no.json()["state"] == "rejected"
            yes = await http.post(f"/v1/restores/{clone_id}/approve", headers=bearer("alice"))
            assert yes.status_code == 409
            assert "rejected" in yes.json()["detail"]
            # The backup proposal was never voted on: it expires after its TTL.
            await r.restore_until(r.engine.t + 301)
            gone = await http.post(f"/v1/restores/{backup_id}/approve", headers=bearer("alice"))
            assert gone.status_code == 409
            assert "expired" in gone.json()["detail"]
            missing = await http.post("/v1/restores/nope/approve", headers=bearer("alice"))
            assert missing.status_code == 404
        assert r.db_writes() == []
        vote = next(v for v in store.restore_votes(clone_id))
        assert (vote.approver, vote.reason) == ("bob", "we ship 003_fix instead")


class Crash(BaseException):
    """A guard dying at a named point (BaseException: no `except Exception` catches it)."""


async def test_a_guard_killed_at_every_point_of_the_restore_resumes_and_writes_once(
    monkeypatch: pytest.MonkeyPatch, store: SqlStore
) -> None:
    seen: list[str] = []

    def die_once(point: str) -> None:
        if point.startswith("restore-") and point not in seen:
            seen.append(point)
            raise Crash(point)

    monkeypatch.setattr(crashpoints, "reached", die_once)
    async with Restoring(store, required=1) as r:
        await r.restore_until(ESCALATED_BY)
        clone_id, _ = escalated_restore_ids(store)
        await r.desk.vote(clone_id, "alice", Decision.APPROVE)
        desk = r.desk
        for _ in range(600):
            restore = store.restore(clone_id)
            assert restore is not None
            if restore.state is RestoreState.SUCCEEDED:
                break
            try:
                await r.restore_until(r.engine.t + 1, desk)
            except Crash:
                desk = r.new_desk()  # a restarted guard: only the store remembers
        final = store.restore(clone_id)
        assert final is not None
        assert final.state is RestoreState.SUCCEEDED
        assert len(seen) == 3 * 7, seen  # intended, executed, finished of all 7 steps
        assert r.db_writes() == [
            ("sqladmin", "instances.clone"),
            ("secretmanager", "AddSecretVersion"),
            ("run", "UpdateService"),
            ("run", "UpdateService"),
        ]


async def test_the_destructive_in_place_backup_restore_runs_gated_the_same_way(
    store: SqlStore,
) -> None:
    async with Restoring(store, required=1) as r:
        await r.restore_until(ESCALATED_BY)
        clone_id, backup_id = escalated_restore_ids(store)
        assert backup_id is not None
        proposed = await r.desk.show(backup_id)
        assert proposed["destructive"] is True
        assert proposed["plan_text"][0].startswith("DESTRUCTIVE: restore backup run")
        await r.desk.vote(backup_id, "alice", Decision.APPROVE)
        await r.restore_until_final(backup_id)
        done = store.restore(backup_id)
        assert done is not None
        assert done.state is RestoreState.SUCCEEDED, done.outcome
        assert r.db_writes() == [
            ("sqladmin", "instances.restoreBackup"),
            ("run", "UpdateService"),
            ("run", "UpdateService"),
        ], "in place: same instance, same secret; the services are rolled to reconnect"
        clone = store.restore(clone_id)
        assert clone is not None
        assert clone.state is RestoreState.SUPERSEDED, "one restore per app"


async def test_a_dry_run_restore_walks_every_step_and_writes_nothing(store: SqlStore) -> None:
    async with Restoring(store, required=1) as r:
        await r.restore_until(ESCALATED_BY)
        clone_id, _ = escalated_restore_ids(store)
        r.desk.dry_run = True
        await r.desk.vote(clone_id, "alice", Decision.APPROVE)
        await r.restore_until_final(clone_id)
        done = store.restore(clone_id)
        assert done is not None
        assert done.state is RestoreState.SUCCEEDED
        assert (done.outcome or {}).get("dry_run") is True
        assert r.db_writes() == []
        steps = in_plan_order(done, store.restore_steps(clone_id))
        assert [s.status for s in steps[:-1]] == [ActionStatus.SKIPPED] * 6
        assert (steps[0].outcome or {})["would"].startswith("clone pegasus-db-eu to ")
        [incident] = store.incidents()
        assert incident.state is IncidentState.ESCALATED, "a dry run ends nothing"


async def test_a_human_moving_traffic_after_the_plan_stops_the_roll(store: SqlStore) -> None:
    async with Restoring(store, required=1) as r:
        await r.restore_until(ESCALATED_BY)
        clone_id, _ = escalated_restore_ids(store)
        world = r.engine.world
        # A human splits pegasus-api's traffic after the plan was made.
        api_ref = ServiceRef("delta-student-486911-n5", "europe-west1", "pegasus-api")
        world.run.set_traffic(
            api_ref.resource_name, {"pegasus-api-00041-vum": 50, "pegasus-api-00042-zed": 50},
            actor="human", immediate=True,
        )  # fmt: skip
        await r.desk.vote(clone_id, "alice", Decision.APPROVE)
        await r.restore_until_final(clone_id)
        done = store.restore(clone_id)
        assert done is not None
        assert done.state is RestoreState.FAILED
        assert "changed since the plan" in str(done.outcome)
        assert r.db_writes() == [], "checked before the first write: nothing was touched"
        split = world.run.serving_split("pegasus-api")
        assert split == {"pegasus-api-00041-vum": 50, "pegasus-api-00042-zed": 50}
