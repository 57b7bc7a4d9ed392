"""The Cloud Run read adapter against the fake Cloud Run over gRPC: what it reads, what it
costs per cycle, and how it fails."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import AsyncIterator

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest

from guard.adapters.cloudrun import CloudRunReader, ReadError
from guard.adapters.google_clients import GoogleClients
from guard.core.model import Readiness, ServiceRef
from guard.core.signals import ServiceState
from guard.sim.clock import VirtualClock
from guard.sim.faults import Fault
from guard.sim.server import FakeCloud
from guard.sim.world import World

P, R = "delta-student-486911-n5", "europe-west1"


@pytest.fixture
def world() -> World:
    return World(clock=VirtualClock())


@pytest.fixture
async def clients(world: World) -> AsyncIterator[GoogleClients]:
    with FakeCloud(world) as cloud:
        built = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        yield built
        await built.aclose()


def services(world: World, n: int, project: str = P) -> list[ServiceRef]:
    refs = [ServiceRef(project, R, f"svc-{i:03d}") for i in range(n)]
    for ref in refs:
        world.run.create_service(ref.project, ref.region, ref.name)
    return refs


def delta(world: World, before: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    now = Counter(world.recorder.counts())
    now.subtract(before)
    return {k: v for k, v in now.items() if v}


def states(results: list[ServiceState | ReadError]) -> list[ServiceState]:
    assert all(isinstance(r, ServiceState) for r in results), results
    return [r for r in results if isinstance(r, ServiceState)]


@pytest.mark.parametrize("n", [1, 10, 100])
async def test_api_calls_per_cycle_do_not_grow_with_the_number_of_services(
    world: World, clients: GoogleClients, n: int
) -> None:
    refs = services(world, n)
    reader = CloudRunReader(clients, now=world.clock.now)
    before = world.recorder.counts()
    first = states(await reader.read(refs))
    cold = delta(world, before)
    # the first cycle reads every revision once: by GetRevision when few, else one listing
    revisions = ("run", "GetRevision") if n == 1 else ("run", "ListRevisions")
    assert cold == {("run", "ListServices"): 1, revisions: 1}
    assert [s.service for s in first] == refs
    for _ in range(3):
        before = world.recorder.counts()
        states(await reader.read(refs))
        assert delta(world, before) == {("run", "ListServices"): 1}
    # a deploy costs one GetRevision per cycle while the new revision is starting
    new = world.run.deploy_revision(refs[0].resource_name, ready=None)
    for _ in range(2):
        before = world.recorder.counts()
        [state, *_] = states(await reader.read(refs))
        assert delta(world, before) == {("run", "ListServices"): 1, ("run", "GetRevision"): 1}
        assert state.revisions[new].readiness == Readiness.PENDING
    world.run.set_revision_ready(refs[0].resource_name, new, True)
    before = world.recorder.counts()
    [state, *_] = states(await reader.read(refs))
    assert delta(world, before) == {("run", "ListServices"): 1}  # latest ready says Ready
    assert state.revisions[new].readiness == Readiness.READY
    assert state.traffic == {new: 100}  # LATEST resolved to the latest ready revision


async def test_a_state_carries_traffic_readiness_and_the_failure_reason(
    world: World, clients: GoogleClients
) -> None:
    [ref] = services(world, 1)
    old = world.run.revisions(ref.resource_name)[0]
    bad = world.run.deploy_revision(ref.resource_name, ready=False)
    reader = CloudRunReader(clients, now=world.clock.now)
    [state] = states(await reader.read([ref]))
    assert (state.latest_created, state.latest_ready) == (bad, old)
    assert state.traffic == {old: 100}
    failed = state.revisions[bad]
    assert failed.readiness == Readiness.FAILED
    assert failed.reason == "HEALTH_CHECK_CONTAINER_ERROR"
    assert "failed to start and listen on the port" in failed.message
    assert state.revisions[old].readiness == Readiness.READY
    assert failed.created_at == world.clock.now()
    assert state.read_at == world.clock.now()
    assert state.etag


async def test_a_split_with_latest_is_resolved_per_revision(
    world: World, clients: GoogleClients
) -> None:
    [ref] = services(world, 1)
    old = world.run.revisions(ref.resource_name)[0]
    new = world.run.deploy_revision(ref.resource_name, ready=True)
    world.run.set_traffic(ref.resource_name, {"LATEST": 25, old: 75}, immediate=True)
    [state] = states(await CloudRunReader(clients, now=world.clock.now).read([ref]))
    assert state.traffic == {new: 25, old: 75}
    assert set(state.revisions) == {old, new}


async def test_an_api_error_is_an_error_item_per_service_never_an_exception(
    world: World, clients: GoogleClients
) -> None:
    mine = services(world, 2)
    other = services(world, 2, project="other-project")
    missing = ServiceRef(P, R, "not-deployed")
    world.faults.arm(Fault(api="run", method="ListServices", code="PERMISSION_DENIED", times=1))
    calls: list[tuple[str, str]] = []
    reader = CloudRunReader(clients, now=world.clock.now, on_call=lambda m, c: calls.append((m, c)))
    results = await reader.read([*mine, missing, *other])
    errors = [r for r in results if isinstance(r, ReadError)]
    denied = [e for e in errors if e.code == "PERMISSION_DENIED"]
    assert {e.service.project for e in denied} in ({P}, {"other-project"})
    assert len(denied) in (2, 3)  # one project's services (P also has the missing one)
    assert ("ListServices", "PERMISSION_DENIED") in calls  # counted, not retried
    assert Counter(m for m, c in calls if c != "OK")["ListServices"] == 1
    results = await reader.read([*mine, missing, *other])
    [not_found] = [r for r in results if isinstance(r, ReadError)]
    assert (not_found.service, not_found.code) == (missing, "NOT_FOUND")


async def test_a_transient_error_is_retried_once_and_counted(
    world: World, clients: GoogleClients
) -> None:
    refs = services(world, 1)
    world.faults.arm(Fault(api="run", method="ListServices", code="UNAVAILABLE", times=1))
    calls: list[tuple[str, str]] = []
    reader = CloudRunReader(
        clients, now=world.clock.now, on_call=lambda m, c: calls.append((m, c)), retry_delay=0.01
    )
    states(await reader.read(refs))
    assert calls[:2] == [("ListServices", "UNAVAILABLE"), ("ListServices", "OK")]


async def test_a_slow_api_times_out_within_the_poll_budget(
    world: World, clients: GoogleClients
) -> None:
    refs = services(world, 1)
    world.faults.arm(Fault(api="run", method="ListServices", code=None, latency=0.6, times=2))
    reader = CloudRunReader(clients, now=world.clock.now, timeout=0.2, retry_delay=0.01)
    started = time.monotonic()
    [result] = await reader.read(refs)
    assert isinstance(result, ReadError)
    assert result.code == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 1.0
