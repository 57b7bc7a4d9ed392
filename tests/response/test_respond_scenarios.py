"""The response end to end on the fake cloud: verdict → incident → freeze, revert, page,
validate, resolve or escalate, through the real adapters, the real store (SQLite and the real
PostgreSQL) and the official clients; exactly once, and nothing at all in dry run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from guard.adapters.clouddeploy import CloudDeploy
from guard.adapters.cloudrun_write import CloudRunWriter
from guard.adapters.cloudsql_admin import CloudSqlAdmin
from guard.adapters.store import SqlStore
from guard.core.model import ActionKind, ActionStatus, IncidentState
from guard.core.proposal import rfc3339
from guard.service.responder import AppResponse, Responder

from ..support.guarded import Guarded, load
from ..support.postgres import fresh_postgres


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """These whole-scenario tests run on PostgreSQL only: the same path runs end to end on
    SQLite in tests/play (`guard simulate`), and the store tests cover both backends."""
    yield from fresh_postgres(request.getfixturevalue("pg_admin"))


class Responded(Guarded):
    """A guarded scenario whose verdicts go to a responder backed by a real store."""

    def __init__(self, name: str, store: SqlStore, *, dry_run: bool = False) -> None:
        super().__init__(load(name))
        self.store, self.dry_run = store, dry_run

    async def __aenter__(self) -> Responded:
        await super().__aenter__()
        scenario, clock = self.engine.scenario, self.engine.clock

        async def sleep(seconds: float) -> None:  # operations complete as scenario time moves
            await self.step()

        writer = CloudRunWriter(self.clients, sleep=sleep, poll=1.0)
        sql = CloudSqlAdmin(self.clients)
        apps = {}
        for a in scenario.apps:
            db = a.database
            apps[a.name] = AppResponse(
                a.name,
                {s.name: s for s in next(w for w in self.apps if w.name == a.name).services},
                pipeline=(
                    f"projects/{a.project}/locations/{a.region}/deliveryPipelines/{a.pipeline}"
                    if a.pipeline
                    else None
                ),
                db_project=a.project if db else None,
                db_instance=db.instance if db else None,
                db_secret=db.secret if db else None,
            )

        async def window(app: str) -> Any:
            a = apps[app]
            assert a.db_project is not None
            assert a.db_instance is not None
            return await sql.recovery_window(a.db_project, a.db_instance)

        async def no_checks(app: str) -> None:
            return None

        self.responder = Responder(
            apps,
            {r.name: r for r in self.apps[0].rules},
            store=self.store,
            detector=self.detector,
            writer=writer,
            pipelines=CloudDeploy(self.clients, sleep=sleep, poll=1.0),
            validate=no_checks,
            recovery_window=window,
            now=clock.now,
            dry_run=self.dry_run,
            settle=timedelta(seconds=60),
        )
        self.detector.on_verdict = self._both
        return self

    def _both(self, app: str, verdict: Any) -> None:
        self.verdicts.append((self.engine.clock.elapsed(), app, verdict))
        self.responder.on_verdict(app, verdict)

    async def step(self) -> None:
        await self.play(self.engine.t + 1)

    async def respond_until(self, until: float) -> None:
        while self.engine.t < until:
            await self.play(self.engine.t + 1)
            await self.responder.tick()

    def guard_writes(self, method: str | None = None) -> list[Any]:
        """Write calls the guard made (scripted humans carry an `actor`)."""
        return [
            w for w in self.engine.world.recorder.writes(method=method) if "actor" not in w.request
        ]


async def test_revert_helps_and_the_incident_resolves(store: SqlStore) -> None:
    async with Responded("trigger2-schema-mismatch", store) as r:
        await r.respond_until(6 * 60)
        [incident] = store.incidents()
        assert incident.state is IncidentState.RESOLVED
        assert incident.reverted_to == "pegasus-api-00010-old"
        [pin] = r.guard_writes("UpdateService")  # one traffic-only write, nothing else
        assert pin.request["updateMask"] == "traffic"
        assert pin.request["service"]["traffic"] == [
            {
                "type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
                "revision": "pegasus-api-00010-old",
                "percent": 100,
            }
        ]
        assert "template" not in pin.request["service"]
        split = r.engine.world.run.serving_split("pegasus-api")
        assert split == {"pegasus-api-00010-old": 100}
        assert store.freeze_of("pegasus") is not None
        kinds = {(a.kind, a.status) for a in store.actions(incident.id)}
        assert kinds == {
            (ActionKind.FREEZE, ActionStatus.SUCCEEDED),
            (ActionKind.REVERT, ActionStatus.SUCCEEDED),
            (ActionKind.PAGE, ActionStatus.SUCCEEDED),
            (ActionKind.VALIDATE, ActionStatus.SUCCEEDED),
        }
        assert store.open_intents() == []
        assert store.evidence(incident.id), "the verdict's evidence is on the incident"


async def test_schema_changed_under_the_old_code_escalates_with_a_proposal(
    store: SqlStore,
) -> None:
    async with Responded("runbook-worst-case", store) as r:
        await r.respond_until(8 * 60)
        [incident] = store.incidents()
        assert incident.state is IncidentState.ESCALATED
        assert incident.migration_file == "backend/migrations/002_rename_course_title.sql"
        validate = next(a for a in store.actions(incident.id) if a.kind is ActionKind.VALIDATE)
        assert validate.outcome is not None
        assert validate.outcome["schema_errors"] is True
        escalate = next(a for a in store.actions(incident.id) if a.kind is ActionKind.ESCALATE)
        assert escalate.outcome is not None
        proposal = escalate.outcome["proposal"]
        # Restore to 5 minutes before the bad revision was created, inside the window.
        created = r.engine.world.run.revision("pegasus-api", "pegasus-api-00042-zed").create_time
        assert proposal["point_in_time"] == rfc3339(created - timedelta(minutes=5))
        assert proposal["in_window"] is True
        assert proposal["clone_name"].startswith("pegasus-db-eu-rollback-")
        assert proposal["option_b_file"] == "backend/migrations/003_fix_rename_course_title.sql"
        assert len(r.guard_writes("UpdateService")) == 1  # one revert; nothing touches the DB
        assert r.guard_writes("instances.clone") == []


async def test_a_failed_start_is_frozen_and_paged_without_a_revert(store: SqlStore) -> None:
    async with Responded("failed-start", store) as r:
        await r.respond_until(5 * 60)
        [incident] = store.incidents()
        kinds = {a.kind for a in store.actions(incident.id)}
        assert ActionKind.REVERT not in kinds
        assert {ActionKind.FREEZE, ActionKind.PAGE} <= kinds
        page = next(a for a in store.actions(incident.id) if a.kind is ActionKind.PAGE)
        assert page.outcome is not None
        assert "serves no traffic" in page.outcome["page"]
        assert r.guard_writes() == []


async def test_dry_run_decides_everything_and_writes_nothing(store: SqlStore) -> None:
    async with Responded("trigger2-schema-mismatch", store, dry_run=True) as r:
        await r.respond_until(6 * 60)
        [incident] = store.incidents()
        assert incident.dry_run
        assert r.guard_writes() == []  # zero write calls to Google Cloud
        assert store.freeze_of("pegasus") is None  # a dry-run guard blocks no deploy
        revert = next(a for a in store.actions(incident.id) if a.kind is ActionKind.REVERT)
        assert revert.status is ActionStatus.SKIPPED
        assert revert.outcome is not None
        assert revert.outcome["would"] == "pin 100% to pegasus-api-00010-old"


async def test_two_responders_on_one_store_act_once(store: SqlStore) -> None:
    """Ticks from a second responder (a restart, or a race) never repeat an action."""
    async with Responded("trigger2-schema-mismatch", store) as r:
        await r.respond_until(3 * 60 + 25)
        twin = Responder(
            r.responder.apps, r.responder.rules, store=store, detector=r.detector,
            writer=r.responder.writer, pipelines=r.responder.pipelines,
            validate=r.responder.validate, recovery_window=r.responder.recovery_window,
            now=r.engine.clock.now, settle=timedelta(seconds=60),
        )  # fmt: skip
        while r.engine.t < 6 * 60:
            await r.play(r.engine.t + 1)
            await r.responder.tick()
            await twin.tick()
        assert len(r.guard_writes("UpdateService")) == 1
        [incident] = store.incidents()
        assert incident.state is IncidentState.RESOLVED
        assert len(store.actions(incident.id)) == 4


async def test_operator_lock_a_human_split_is_never_undone(store: SqlStore) -> None:
    async with Responded("human-split", store) as r:
        await r.respond_until(8 * 60)
        [incident] = store.incidents()
        assert r.guard_writes("UpdateService") == []  # the guard never touched traffic
        assert r.engine.world.run.serving_split("pegasus-api") == {
            "pegasus-api-00100-old": 50,
            "pegasus-api-00101-new": 50,
        }
        page = next(a for a in store.actions(incident.id) if a.kind is ActionKind.PAGE)
        assert page.outcome is not None
        assert "a human changed traffic after the deploy" in page.outcome["page"]
        assert store.freeze_of("pegasus") is not None  # frozen: no new release meanwhile
