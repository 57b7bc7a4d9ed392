"""The roll against the fake Cloud Run over gRPC, on the runbook's worst case after the
guard's revert: it re-creates the serving (base) revision's code under a new name with one
UpdateService, never the bad deploy's template; it keeps LATEST where the service follows it;
it refuses a moved split or a base that cannot serve, writes nothing in a dry run, and is done
when resumed. End to end, a clone + a new secret version + a roll puts the app's code on the
restored schema."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest
from google.cloud import run_v2

from guard.adapters.cloudrun_roll import COPIED_FIELDS, CloudRunRoller, Serving
from guard.adapters.cloudrun_write import CloudRunWriter
from guard.adapters.cloudsql_admin import CloudSqlAdmin
from guard.adapters.google_clients import GoogleClients
from guard.adapters.secrets import Secrets
from guard.core.model import ServiceRef
from guard.sim.faults import Fault
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.traffic import image_of

from .conftest import Calls, stepping, worst_case_at

P, R = "delta-student-486911-n5", "europe-west1"
API = ServiceRef(P, R, "pegasus-api")
WORKER = ServiceRef(P, R, "pegasus-worker")
GOOD, BAD, ROLLED = "pegasus-api-00041-vum", "pegasus-api-00042-zed", "pegasus-api-00043-rst"
WORKER_BASE, WORKER_ROLLED = "pegasus-worker-00017-kip", "pegasus-worker-00018-rst"
LABEL = ("deploy-guard-restore", "inc-7")
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


@pytest.fixture
def engine() -> ScenarioEngine:
    """A minute after the bad deploy (4m): 00042 serves and the database is on schema 2."""
    return worst_case_at(300.0)


@pytest.fixture
async def reverted(engine: ScenarioEngine, clients: GoogleClients) -> None:
    """The guard's revert: pegasus-api pinned to the last good revision."""
    writer = CloudRunWriter(clients, sleep=stepping(engine), backoff=0.01)
    pinned = await writer.pin(API, GOOD)
    assert pinned.ok, pinned


@pytest.fixture
def roller(
    clients: GoogleClients, engine: ScenarioEngine, calls: Calls, reverted: None
) -> CloudRunRoller:
    return CloudRunRoller(
        clients,
        on_call=lambda m, c: calls.append((m, c)),
        sleep=stepping(engine),
        backoff=0.01,
        op_timeout=60.0,
    )


def roll_writes(engine: ScenarioEngine, service: ServiceRef = API) -> list[dict[str, object]]:
    """The UpdateService requests that created revisions (not the revert's)."""
    return [
        w.request
        for w in engine.world.recorder.writes(api="run", method="UpdateService")
        if w.request["service"]["name"] == service.resource_name
        and "template" in str(w.request.get("updateMask", ""))
    ]


def test_the_copied_fields_are_the_code_and_configuration() -> None:
    assert {"containers", "volumes", "scaling", "vpc_access", "timeout"} <= set(COPIED_FIELDS)
    assert {"service_account", "execution_environment", "encryption_key"} <= set(COPIED_FIELDS)
    assert {"max_instance_request_concurrency", "session_affinity"} <= set(COPIED_FIELDS)
    assert not {"labels", "annotations", "revision", "name", "etag"} & set(COPIED_FIELDS)


async def test_roll_recreates_the_serving_code_under_a_new_name_with_one_write(
    engine: ScenarioEngine, roller: CloudRunRoller, calls: Calls
) -> None:
    assert await roller.serving(API) == Serving(GOOD, {GOOD: 100}, False)
    result = await roller.roll(
        API, base_revision=GOOD, new_revision=ROLLED, label=LABEL, expect_split={GOOD: 100}
    )
    assert result.ok, result
    assert (result.code, result.wrote, result.dry_run) == ("OK", True, False)
    assert (result.before, result.after) == ({GOOD: 100}, {ROLLED: 100})
    assert result.operation
    assert (result.service, result.base_revision, result.new_revision) == (
        API.resource_name,
        GOOD,
        ROLLED,
    )
    (request,) = roll_writes(engine)
    assert request["updateMask"] == "template,traffic"
    rolled = engine.world.run.revision(API.resource_name, ROLLED)
    assert [c.image for c in rolled.containers] == [image_of_name(GOOD)]  # not 00042's image
    assert rolled.labels[LABEL[0]] == LABEL[1]
    good = engine.world.run.revision(API.resource_name, GOOD)
    assert (rolled.timeout, rolled.service_account) == (good.timeout, good.service_account)
    assert engine.world.run.serving_split(API.resource_name) == {ROLLED: 100}
    assert await roller.serving(API) == Serving(ROLLED, {ROLLED: 100}, False)
    # the only failed read is the check that the new revision does not exist yet
    assert [(m, c) for m, c in calls if c != "OK"] == [("GetRevision", "NOT_FOUND")]
    assert [m for m, _ in calls if m == "UpdateService"] == ["UpdateService"]


def image_of_name(revision: str) -> str:
    (spec,) = [
        r for a in scenario().apps for s in a.services for r in s.revisions if r.name == revision
    ]
    return image_of(spec)


def scenario() -> Scenario:
    return worst_case_at(0).scenario


async def test_a_second_roll_with_the_same_arguments_writes_nothing(
    engine: ScenarioEngine, roller: CloudRunRoller
) -> None:
    args: dict[str, Any] = {"base_revision": GOOD, "new_revision": ROLLED, "label": LABEL}
    assert (await roller.roll(API, **args, expect_split={GOOD: 100})).wrote
    again = await roller.roll(API, **args, expect_split={GOOD: 100})
    assert (again.ok, again.wrote, again.after) == (True, False, {ROLLED: 100}), again
    assert "nothing to write" in again.message
    assert len(roll_writes(engine)) == 1


async def test_a_latest_service_keeps_latest_and_the_new_revision_serves(
    engine: ScenarioEngine, roller: CloudRunRoller
) -> None:
    assert await roller.serving(WORKER) == Serving(WORKER_BASE, {WORKER_BASE: 100}, True)
    result = await roller.roll(
        WORKER,
        base_revision=WORKER_BASE,
        new_revision=WORKER_ROLLED,
        label=LABEL,
        expect_split={WORKER_BASE: 100},
    )
    assert result.ok, result
    assert (result.before, result.after) == ({WORKER_BASE: 100}, {WORKER_ROLLED: 100})
    (request,) = roll_writes(engine, WORKER)
    assert request["updateMask"] == "template"
    svc = engine.world.run.service(WORKER.resource_name)
    assert [(t.type_, t.percent) for t in svc.traffic] == [(LATEST, 100)]
    assert await roller.serving(WORKER) == Serving(WORKER_ROLLED, {WORKER_ROLLED: 100}, True)
    again = await roller.roll(
        WORKER,
        base_revision=WORKER_BASE,
        new_revision=WORKER_ROLLED,
        label=LABEL,
        expect_split={WORKER_BASE: 100},
    )
    assert (again.ok, again.wrote) == (True, False)


async def test_a_split_moved_since_the_plan_is_refused_without_a_write(
    engine: ScenarioEngine, roller: CloudRunRoller
) -> None:
    result = await roller.roll(
        API, base_revision=GOOD, new_revision=ROLLED, label=LABEL, expect_split={BAD: 100}
    )
    assert (result.ok, result.code, result.wrote) == (False, "FAILED_PRECONDITION", False)
    assert "a human moved it" in result.message
    assert str({BAD: 100}) in result.message
    assert str({GOOD: 100}) in result.message
    assert roll_writes(engine) == []
    assert engine.world.run.serving_split(API.resource_name) == {GOOD: 100}


async def test_a_missing_or_not_ready_base_is_refused_without_a_write(
    engine: ScenarioEngine, roller: CloudRunRoller
) -> None:
    missing = await roller.roll(
        API, base_revision="pegasus-api-00009-old", new_revision=ROLLED, label=LABEL,
        expect_split=None,
    )  # fmt: skip
    assert (missing.ok, missing.code, missing.wrote) == (False, "NOT_FOUND", False)
    engine.world.run.set_revision_ready(API.resource_name, BAD, False)
    failed = await roller.roll(
        API, base_revision=BAD, new_revision=ROLLED, label=LABEL, expect_split=None
    )
    assert (failed.ok, failed.code, failed.wrote) == (False, "FAILED_PRECONDITION", False)
    assert "HEALTH_CHECK_CONTAINER_ERROR" in failed.message
    assert roll_writes(engine) == []


async def test_a_dry_run_reads_but_writes_nothing(
    engine: ScenarioEngine, roller: CloudRunRoller, calls: Calls
) -> None:
    writes = len(engine.world.recorder.writes())
    result = await roller.roll(
        API,
        base_revision=GOOD,
        new_revision=ROLLED,
        label=LABEL,
        expect_split={GOOD: 100},
        dry_run=True,
    )
    assert (result.ok, result.dry_run, result.wrote) == (True, True, False)
    assert result.message.startswith("would roll pegasus-api to " + ROLLED)
    assert len(engine.world.recorder.writes()) == writes
    assert {m for m, _ in calls} == {"GetService", "GetRevision"}


async def test_a_new_revision_that_fails_to_start_fails_the_roll(
    engine: ScenarioEngine, clients: GoogleClients, reverted: None
) -> None:
    stepped = stepping(engine)
    failed_once: list[bool] = []

    async def sleep(seconds: float) -> None:  # the new revision's container crashes at start
        if not failed_once and ROLLED in engine.world.run.revisions(API.resource_name):
            engine.world.run.set_revision_ready(API.resource_name, ROLLED, False)
            failed_once.append(True)
        await stepped(seconds)

    roller = CloudRunRoller(clients, sleep=sleep, backoff=0.01, op_timeout=60.0)
    result = await roller.roll(
        API, base_revision=GOOD, new_revision=ROLLED, label=LABEL, expect_split={GOOD: 100}
    )
    assert (result.ok, result.code, result.wrote) == (False, "FAILED_PRECONDITION", True)
    assert "is not ready and cannot serve traffic" in result.message
    assert result.after == {GOOD: 100}
    assert engine.world.run.serving_split(API.resource_name) == {GOOD: 100}


async def test_one_unavailable_write_is_retried_and_lands_once(
    engine: ScenarioEngine, roller: CloudRunRoller, calls: Calls
) -> None:
    engine.world.faults.arm(Fault(api="run", method="UpdateService", code="UNAVAILABLE", times=1))
    result = await roller.roll(
        API, base_revision=GOOD, new_revision=ROLLED, label=LABEL, expect_split={GOOD: 100}
    )
    assert result.ok, result
    assert [c for m, c in calls if m == "UpdateService"] == ["UNAVAILABLE", "OK"]
    assert len(roll_writes(engine)) == 1


async def test_a_roll_left_in_flight_is_resumed_without_a_second_write(
    engine: ScenarioEngine, clients: GoogleClients, reverted: None
) -> None:
    # scenario time stands still, so the operation stays pending: the wait must end anyway
    stuck = CloudRunRoller(clients, op_timeout=0.2, poll=0.02)
    args: dict[str, Any] = {"base_revision": GOOD, "new_revision": ROLLED, "label": LABEL}
    first = await stuck.roll(API, **args, expect_split={GOOD: 100})
    assert (first.ok, first.code, first.wrote) == (False, "DEADLINE_EXCEEDED", True)
    # asked again once time moves (the split it planned against is gone: the roll is its own)
    resumed = CloudRunRoller(clients, sleep=stepping(engine), op_timeout=30.0)
    again = await resumed.roll(API, **args, expect_split={GOOD: 100})
    assert (again.ok, again.wrote, again.after) == (True, False, {ROLLED: 100}), again
    assert len(roll_writes(engine)) == 1


def five_xx_ratio(engine: ScenarioEngine, revision: str, since: float) -> tuple[float, int]:
    """(5xx / all, all) of `revision`'s requests from scenario second `since` on, as far as
    Monitoring can show them now."""
    total = errors = 0
    start = engine.clock.epoch.timestamp() + since
    for series in engine.world.metrics.visible():
        if dict(series.sid.resource_labels).get("revision_name") != revision:
            continue
        count = sum(s.value for s in series.samples if s.start >= start)
        total += count
        if dict(series.sid.metric_labels).get("response_code_class") == "5xx":
            errors += count
    return (errors / total if total else 0.0), total


async def test_clone_secret_and_roll_put_the_code_on_the_restored_schema(
    engine: ScenarioEngine, clients: GoogleClients, roller: CloudRunRoller
) -> None:
    sleep = stepping(engine)
    admin, secrets = CloudSqlAdmin(clients), Secrets(clients)
    point = engine.clock.epoch + timedelta(minutes=3)  # before the deploy's migration
    op = await admin.clone(P, "pegasus-db-eu", "pegasus-db-eu-pitr", point)
    assert (await admin.wait(P, op.name, limit=600, poll=10, sleep=sleep)).error is None
    clone = await admin.instance(P, "pegasus-db-eu-pitr")
    assert clone is not None
    assert clone.ip_address
    current = await secrets.latest(P, "pegasus-db-url")
    old_host = engine.world.sql.instance(P, "pegasus-db-eu").ip_address
    await secrets.add(
        P, "pegasus-db-url", current.data.replace(old_host.encode(), clone.ip_address.encode())
    )
    rolled_at = engine.t
    result = await roller.roll(
        API, base_revision=GOOD, new_revision=ROLLED, label=LABEL, expect_split={GOOD: 100}
    )
    assert result.ok, result
    await sleep(300)  # five minutes of traffic, visible after Monitoring's ingestion delay
    ratio, seen = five_xx_ratio(engine, GOOD, since=300)
    assert seen > 500
    assert ratio > 0.3  # between revert and roll: the old code on the migrated schema
    ratio, seen = five_xx_ratio(engine, ROLLED, since=rolled_at)
    assert seen > 1000
    assert ratio < 0.02  # the same code, new instances, on the clone's schema 1
    assert engine.schema_at((P, "pegasus-db-eu-pitr"), engine.clock.now()) == 1
    assert engine.schema_at((P, "pegasus-db-eu"), engine.clock.now()) == 2


def test_a_pinned_secret_version_is_moved_to_the_restores_new_version() -> None:
    from google.cloud import run_v2

    from guard.adapters.cloudrun_roll import rolled_template

    def env(secret: str, version: str) -> run_v2.EnvVar:
        ref = run_v2.SecretKeySelector(secret=secret, version=version)
        return run_v2.EnvVar(name="DB", value_source=run_v2.EnvVarSource(secret_key_ref=ref))

    base = run_v2.Revision(
        containers=[
            run_v2.Container(
                image="img:old",
                env=[env("pegasus-db-url", "3"), env("projects/p/secrets/pegasus-db-url", "2"),
                     env("pegasus-db-url", "latest"), env("other-secret", "3")],
            )
        ]
    )  # fmt: skip
    rolled = rolled_template(
        run_v2.RevisionTemplate(), base, "svc-restore-1", ("l", "v"), ("pegasus-db-url", "4")
    )
    versions = [e.value_source.secret_key_ref.version for e in rolled.containers[0].env]
    assert versions == ["4", "4", "latest", "3"], "only this secret's pinned references move"
    assert rolled.containers[0].image == "img:old"
