"""Deploy discovery: the tracker's rules on plain reads, then on every example scenario read
through the Cloud Run adapter from the fake cloud over the wire."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest
import yaml
from google.cloud import run_v2

from guard.adapters.cloudrun import CloudRunReader
from guard.adapters.google_clients import GoogleClients
from guard.core.discovery import DeployTracker
from guard.core.model import Deploy, DeployKind, Readiness, Revision, Role, ServiceRef
from guard.core.signals import ServiceState
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.server import FakeCloud

SVC = ServiceRef("p", "r", "api")
T0 = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
R, P, F = Readiness.READY, Readiness.PENDING, Readiness.FAILED


def read(
    t: float,
    latest: str,
    traffic: dict[str, int],
    revisions: dict[str, tuple[float, Readiness]],
) -> ServiceState:
    """A read at T0+t: `revisions` maps name -> (created at T0+s, readiness)."""
    revs = {n: Revision(SVC, n, T0 + timedelta(seconds=c), r) for n, (c, r) in revisions.items()}
    ready = [n for n, rev in revs.items() if rev.readiness == R]
    return ServiceState(
        service=SVC,
        read_at=T0 + timedelta(seconds=t),
        generation=1,
        observed_generation=1,
        reconciling=False,
        latest_created=latest,
        latest_ready=max(ready, key=lambda n: revs[n].created_at) if ready else "",
        traffic=traffic,
        revisions=revs,
    )


OLD = {"v1": (-86400.0, R)}


def test_the_first_read_is_a_baseline() -> None:
    tracker = DeployTracker()
    assert tracker.observe(read(0, "v1", {"v1": 100}, OLD)) == []
    assert tracker.observe(read(10, "v1", {"v1": 100}, OLD)) == []
    assert tracker.active(SVC) is None
    assert tracker.new_revisions(SVC) == frozenset()


def test_a_deploy_seen_mid_reconcile_then_ready_later() -> None:
    tracker = DeployTracker()
    tracker.observe(read(0, "v1", {"v1": 100}, OLD))
    assert tracker.observe(read(10, "v2", {"v1": 100}, {**OLD, "v2": (5, P)})) == []
    assert tracker.new_revisions(SVC) == {"v2"}
    [deploy] = tracker.observe(read(20, "v2", {"v2": 100}, {**OLD, "v2": (5, R)}))
    assert deploy == Deploy(SVC, "v2", DeployKind.TRAFFIC, T0 + timedelta(seconds=5), ("v1",), 100)
    assert tracker.revert_targets(SVC) == ("v1",)
    assert tracker.traffic_changed_by_others(SVC) is None


def test_a_canary_is_one_deploy_at_its_first_share() -> None:
    tracker = DeployTracker()
    tracker.observe(read(0, "v1", {"v1": 100}, OLD))
    revs = {**OLD, "v2": (5, R)}
    [deploy] = tracker.observe(read(10, "v2", {"v1": 90, "v2": 10}, revs))
    assert (deploy.kind, deploy.traffic_percent, deploy.last_known_good) == (
        DeployKind.TRAFFIC,
        10,
        ("v1",),
    )
    assert tracker.observe(read(20, "v2", {"v1": 50, "v2": 50}, revs)) == []
    assert tracker.observe(read(30, "v2", {"v2": 100}, revs)) == []
    assert tracker.traffic_changed_by_others(SVC) is None


def test_a_revision_that_fails_to_start_is_a_deploy_with_the_serving_revision_as_good() -> None:
    tracker = DeployTracker()
    tracker.observe(read(0, "v1", {"v1": 100}, OLD))
    tracker.observe(read(10, "v2", {"v1": 100}, {**OLD, "v2": (5, P)}))
    [deploy] = tracker.observe(read(50, "v2", {"v1": 100}, {**OLD, "v2": (5, F)}))
    assert (deploy.kind, deploy.revision, deploy.last_known_good) == (
        DeployKind.FAILED_START,
        "v2",
        ("v1",),
    )
    assert deploy.traffic_percent == 0
    assert tracker.observe(read(60, "v2", {"v1": 100}, {**OLD, "v2": (5, F)})) == []


@pytest.mark.parametrize(
    ("revision", "traffic", "expected"),
    [
        (("v2", 0.0, P), {"v1": 100}, None),  # still starting: tracked, no deploy yet
        (("v2", 0.0, F), {"v1": 100}, DeployKind.FAILED_START),
        (("v2", 0.0, R), {"v1": 80, "v2": 20}, DeployKind.TRAFFIC),  # a canary in flight
        (("v2", 0.0, R), {"v2": 100}, None),  # serving alone: what served before is unknown
        (("v2", -3600.0, F), {"v1": 100}, None),  # failed long ago: not the guard's business
    ],
)
def test_the_first_read_tracks_recent_revisions(
    revision: tuple[str, float, Readiness], traffic: dict[str, int], expected: DeployKind | None
) -> None:
    name, created, readiness = revision
    tracker = DeployTracker(recent=timedelta(minutes=10))
    found = tracker.observe(read(60, name, traffic, {**OLD, name: (created, readiness)}))
    assert [d.kind for d in found] == ([] if expected is None else [expected])
    if found:
        assert found[0].last_known_good == ("v1",)
    if readiness == P:
        assert tracker.new_revisions(SVC) == {"v2"}


def test_two_deploys_in_a_row_keep_the_last_known_good_until_one_is_confirmed() -> None:
    tracker = DeployTracker()
    tracker.observe(read(0, "v1", {"v1": 100}, OLD))
    revs = {**OLD, "v2": (5, R)}
    [first] = tracker.observe(read(10, "v2", {"v2": 100}, revs))
    revs["v3"] = (15, R)
    [second] = tracker.observe(read(20, "v3", {"v3": 100}, revs))
    assert second.last_known_good == ("v1",)  # v2 was never judged good
    assert tracker.active(SVC) == second  # the newer supersedes
    tracker.confirm(SVC, "v3")
    revs["v4"] = (25, R)
    [third] = tracker.observe(read(30, "v4", {"v4": 100}, revs))
    assert third.last_known_good == ("v3",)
    assert first.revision == "v2"


def test_a_newer_revision_supersedes_one_still_starting() -> None:
    tracker = DeployTracker()
    tracker.observe(read(0, "v1", {"v1": 100}, OLD))
    tracker.observe(read(10, "v2", {"v1": 100}, {**OLD, "v2": (5, P)}))
    revs = {**OLD, "v3": (12, P)}  # v2 is no longer referenced (superseded or deleted)
    assert tracker.observe(read(20, "v3", {"v1": 100}, revs)) == []
    assert tracker.new_revisions(SVC) == {"v3"}
    [deploy] = tracker.observe(read(40, "v3", {"v1": 100}, {**OLD, "v3": (12, F)}))
    assert (deploy.revision, deploy.kind, deploy.last_known_good) == (
        "v3",
        DeployKind.FAILED_START,
        ("v1",),
    )


def test_the_guards_own_traffic_change_is_not_a_change_by_others() -> None:
    tracker = DeployTracker()
    tracker.observe(read(0, "v1", {"v1": 100}, OLD))
    revs = {**OLD, "v2": (5, R)}
    tracker.observe(read(10, "v2", {"v2": 100}, revs))
    tracker.expect_traffic(SVC, {"v1": 100})
    tracker.observe(read(20, "v2", {"v2": 100}, revs))  # the operation is still running
    tracker.observe(read(30, "v2", {"v1": 100}, revs))
    assert tracker.traffic_changed_by_others(SVC) is None
    tracker.observe(read(40, "v2", {"v1": 50, "v2": 50}, revs))  # now a person acts
    change = tracker.traffic_changed_by_others(SVC)
    assert change is not None
    assert (change.before, change.after) == ({"v1": 100}, {"v1": 50, "v2": 50})


def test_a_human_change_while_the_guard_waits_is_still_a_change_by_others() -> None:
    tracker = DeployTracker()
    tracker.observe(read(0, "v0", {"v0": 100}, {"v0": (-90000.0, R), **OLD}))
    revs = {"v0": (-90000.0, R), **OLD, "v2": (5, R)}
    tracker.observe(read(10, "v2", {"v2": 100}, revs))
    tracker.expect_traffic(SVC, {"v1": 100})
    tracker.observe(read(20, "v2", {"v0": 100}, revs))  # v1 was never seen: not a deploy
    change = tracker.traffic_changed_by_others(SVC)
    assert change is not None
    assert change.after == {"v0": 100}
    assert tracker.active(SVC) is not None
    assert tracker.active(SVC).revision == "v2"  # type: ignore[union-attr]


def test_an_empty_traffic_read_keeps_the_previous_split() -> None:
    tracker = DeployTracker()
    tracker.observe(read(0, "v1", {"v1": 100}, OLD))
    revs = {**OLD, "v2": (5, R)}
    tracker.observe(read(10, "v2", {"v2": 100}, revs))
    assert tracker.observe(read(20, "v2", {}, revs)) == []
    assert tracker.traffic_changed_by_others(SVC) is None


def test_a_deploy_settles_after_the_horizon() -> None:
    tracker = DeployTracker(settle_after=timedelta(minutes=5))
    tracker.observe(read(0, "v1", {"v1": 100}, OLD))
    revs = {**OLD, "v2": (5, R)}
    tracker.observe(read(10, "v2", {"v2": 100}, revs))
    assert tracker.new_revisions(SVC) == {"v2"}
    tracker.observe(read(400, "v2", {"v2": 100}, revs))
    assert tracker.new_revisions(SVC) == frozenset()
    revs["v3"] = (500, R)
    [deploy] = tracker.observe(read(510, "v3", {"v3": 100}, revs))
    assert deploy.last_known_good == ("v2",)


# -- the example scenarios over the wire ------------------------------------------------------


def refs_of(engine: ScenarioEngine) -> list[ServiceRef]:
    return [
        ServiceRef(app.project, app.region, s.name, Role(s.role))
        for app in engine.scenario.apps
        for s in app.services
    ]


async def play(
    engine: ScenarioEngine, until: float, step: float = 10.0, act: Any = None
) -> tuple[list[tuple[float, Deploy]], DeployTracker]:
    """Read every service each `step` scenario seconds and feed the tracker."""
    tracker, found = DeployTracker(), []
    with FakeCloud(engine.world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        try:
            reader = CloudRunReader(clients, now=engine.clock.now)
            t = 0.0
            while t <= until:
                engine.run_until(t)
                for state in await reader.read(refs_of(engine)):
                    assert isinstance(state, ServiceState), state
                    found += [(t, d) for d in tracker.observe(state)]
                if act is not None:
                    act(t, tracker, clients)
                t += step
        finally:
            clients.close()
            await clients.aclose()
    return found, tracker


def load(name: str) -> ScenarioEngine:
    text = (SCENARIOS / f"{name}.yaml").read_text()
    return ScenarioEngine(Scenario.model_validate(yaml.safe_load(text)))


EXPECTED = [
    # scenario, service, revision, kind, share, last-known-good, until
    ("canary", "pegasus-api", "pegasus-api-00051-new", DeployKind.TRAFFIC, 10, "00050-old", 160),
    ("failed-start", "pegasus-api", "pegasus-api-00031-new", DeployKind.FAILED_START, 0,
     "00030-old", 190),
    ("worker-breaks", "pegasus-worker", "pegasus-worker-00021-new", DeployKind.TRAFFIC, 100,
     "00020-old", 220),
    ("runbook-worst-case", "pegasus-api", "pegasus-api-00042-zed", DeployKind.TRAFFIC, 100,
     "00041-vum", 270),
    ("trigger1-migration-failure", "pegasus-api", "pegasus-api-00008-new", DeployKind.TRAFFIC,
     100, "00007-old", 210),
    ("trigger2-schema-mismatch", "pegasus-api", "pegasus-api-00011-new", DeployKind.TRAFFIC,
     100, "00010-old", 200),
    ("trigger3-error-rate", "pegasus-api", "pegasus-api-00021-new", DeployKind.TRAFFIC, 100,
     "00020-old", 200),
    ("benign", "pegasus-api", "pegasus-api-00061-new", DeployKind.TRAFFIC, 100, "00060-old", 200),
    ("low-traffic-noisy", "pegasus-api", "pegasus-api-00071-new", DeployKind.TRAFFIC, 100,
     "00070-old", 200),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "service", "revision", "kind", "share", "good", "until"), EXPECTED
)
async def test_discovery_finds_the_deploy_of_each_example(  # noqa: PLR0917
    scenario: str,
    service: str,
    revision: str,
    kind: DeployKind,
    share: int,
    good: str,
    until: float,
) -> None:
    engine = load(scenario)
    found, tracker = await play(engine, until)
    assert len(found) == 1, found
    t, deploy = found[0]
    assert (deploy.service.name, deploy.revision, deploy.kind) == (service, revision, kind)
    assert deploy.traffic_percent == share
    assert deploy.last_known_good == (f"{service}-{good}",)
    event = next(e for e in engine.scenario.events if e.deploy is not None)
    assert deploy.started_at == engine.clock.epoch + timedelta(seconds=event.at + 1)  # its tick
    assert deploy.service.role == (Role.WORKER if "worker" in service else Role.API)
    assert t - event.at <= event.deploy.revision.startup + 10  # type: ignore[union-attr]
    assert tracker.traffic_changed_by_others(deploy.service) is None


async def test_a_human_revert_is_seen_as_a_traffic_change_by_others() -> None:
    engine = load("human-revert")
    found, tracker = await play(engine, 260)
    [(_, deploy)] = found
    change = tracker.traffic_changed_by_others(deploy.service)
    assert change is not None
    assert change.deploy_revision == "pegasus-api-00091-new"
    assert change.before == {"pegasus-api-00091-new": 100}
    assert change.after == {"pegasus-api-00090-old": 100}
    assert change.at <= engine.clock.epoch + timedelta(seconds=230 + 10)  # 3m50s + operation


async def test_the_guards_own_revert_over_the_wire_is_not_a_change_by_others() -> None:
    engine = load("runbook-worst-case")

    def revert(t: float, tracker: DeployTracker, clients: GoogleClients) -> None:
        deploy = next((tracker.active(s) for s in refs_of(engine) if tracker.active(s)), None)
        if deploy is None or engine.world.recorder.writes("run", "UpdateService"):
            return
        target = tracker.revert_targets(deploy.service)[0]
        tracker.expect_traffic(deploy.service, {target: 100})
        kind = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
        clients.run_services().update_service(
            request=run_v2.UpdateServiceRequest(
                service=run_v2.Service(
                    name=deploy.service.resource_name,
                    traffic=[run_v2.TrafficTarget(type_=kind, revision=target, percent=100)],
                ),
                update_mask={"paths": ["traffic"]},
            )
        )

    found, tracker = await play(engine, 330, act=revert)
    [(_, deploy)] = found
    assert engine.world.run.serving_split(deploy.service.resource_name) == {
        "pegasus-api-00041-vum": 100
    }
    assert tracker.traffic_changed_by_others(deploy.service) is None
