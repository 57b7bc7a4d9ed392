"""The revert against the fake Cloud Run over gRPC: it moves traffic exactly once, never to a
revision that is not Ready, verifies from traffic_statuses, and fails as results."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest

from guard.adapters.cloudrun_write import CloudRunWriter
from guard.adapters.google_clients import GoogleClients
from guard.core.model import ServiceRef
from guard.sim.faults import Fault
from guard.sim.scenario import ScenarioEngine
from guard.sim.server import FakeCloud

from ..support.stepping import engine_at, stepping

API = ServiceRef("delta-student-486911-n5", "europe-west1", "pegasus-api")
OLD, NEW = "pegasus-api-00010-old", "pegasus-api-00011-new"


@pytest.fixture
def engine() -> ScenarioEngine:
    """trigger2 after its deploy: the new (bad) revision serves 100%, the old one is Ready."""
    return engine_at("trigger2-schema-mismatch.yaml", 200.0)


@pytest.fixture
def cloud(engine: ScenarioEngine) -> Iterator[FakeCloud]:
    with FakeCloud(engine.world) as served:
        yield served


@pytest.fixture
async def clients(cloud: FakeCloud) -> AsyncIterator[GoogleClients]:
    built = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
    yield built
    await built.aclose()


Calls = list[tuple[str, str]]


@pytest.fixture
def calls() -> Calls:
    return []


@pytest.fixture
def writer(clients: GoogleClients, engine: ScenarioEngine, calls: Calls) -> CloudRunWriter:
    return CloudRunWriter(
        clients,
        on_call=lambda m, c: calls.append((m, c)),
        sleep=stepping(engine),
        backoff=0.01,
        op_timeout=30.0,
    )


def updates(engine: ScenarioEngine) -> int:
    return len(engine.world.recorder.writes(api="run", method="UpdateService"))


async def test_pin_moves_traffic_to_the_last_known_good_with_one_traffic_only_write(
    engine: ScenarioEngine, writer: CloudRunWriter
) -> None:
    assert await writer.current_split(API) == {NEW: 100}
    result = await writer.pin(API, OLD)
    assert result.ok, result
    assert (result.code, result.wrote, result.dry_run) == ("OK", True, False)
    assert (result.before, result.after) == ({NEW: 100}, {OLD: 100})
    assert result.operation
    [write] = engine.world.recorder.writes(api="run", method="UpdateService")
    assert write.error is None
    assert "traffic" in str(write.request)
    assert await writer.current_split(API) == {OLD: 100}
    engine.run_until(engine.t + 30)  # the scenario's own traffic follows the pin
    assert await writer.current_split(API) == {OLD: 100}


async def test_pin_again_is_a_no_op(engine: ScenarioEngine, writer: CloudRunWriter) -> None:
    assert (await writer.pin(API, OLD)).wrote
    again = await writer.pin(API, OLD)
    assert again.ok
    assert not again.wrote
    assert again.after == {OLD: 100}
    assert updates(engine) == 1


async def test_pin_to_a_missing_revision_is_refused_without_a_write(
    engine: ScenarioEngine, writer: CloudRunWriter
) -> None:
    result = await writer.pin(API, "pegasus-api-00009-gone")
    assert not result.ok
    assert not result.wrote
    assert result.code == "NOT_FOUND"
    assert updates(engine) == 0
    assert await writer.current_split(API) == {NEW: 100}


async def test_pin_to_a_failed_revision_is_refused_without_a_write(calls: Calls) -> None:
    engine = engine_at("failed-start.yaml", 200.0)
    with FakeCloud(engine.world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        try:
            writer = CloudRunWriter(clients, sleep=stepping(engine))
            result = await writer.pin(API, "pegasus-api-00031-new")
            split = await writer.current_split(API)
        finally:
            await clients.aclose()
    assert not result.ok
    assert not result.wrote
    assert result.code == "FAILED_PRECONDITION"
    assert "HEALTH_CHECK_CONTAINER_ERROR" in result.message
    assert engine.world.recorder.writes() == []
    assert split == {"pegasus-api-00030-old": 100}


async def test_a_dry_run_reads_but_makes_zero_writes(
    engine: ScenarioEngine, writer: CloudRunWriter, calls: Calls
) -> None:
    result = await writer.pin(API, OLD, dry_run=True)
    assert result.ok
    assert result.dry_run
    assert not result.wrote
    assert OLD in result.message
    assert engine.world.recorder.writes() == []
    assert {m for m, _ in calls} == {"GetService", "GetRevision"}


async def test_one_unavailable_is_retried_and_the_pin_lands_once(
    engine: ScenarioEngine, writer: CloudRunWriter, calls: Calls
) -> None:
    engine.world.faults.arm(Fault(api="run", method="UpdateService", code="UNAVAILABLE", times=1))
    result = await writer.pin(API, OLD)
    assert result.ok, result
    assert [c for m, c in calls if m == "UpdateService"] == ["UNAVAILABLE", "OK"]
    assert updates(engine) == 1
    assert await writer.current_split(API) == {OLD: 100}


async def test_permission_denied_is_not_retried(
    engine: ScenarioEngine, writer: CloudRunWriter, calls: Calls
) -> None:
    engine.world.faults.arm(Fault(api="run", method="UpdateService", code="PERMISSION_DENIED"))
    result = await writer.pin(API, OLD)
    assert not result.ok
    assert not result.wrote
    assert result.code == "PERMISSION_DENIED"
    assert [c for m, c in calls if m == "UpdateService"] == ["PERMISSION_DENIED"]
    assert updates(engine) == 0
    assert await writer.current_split(API) == {NEW: 100}


async def test_a_transient_read_error_is_retried_a_bounded_number_of_times(
    engine: ScenarioEngine, writer: CloudRunWriter, calls: Calls
) -> None:
    engine.world.faults.arm(Fault(api="run", method="GetService", code="UNAVAILABLE"))
    result = await writer.pin(API, OLD)
    assert (result.ok, result.code, result.wrote) == (False, "UNAVAILABLE", False)
    assert calls == [("GetService", "UNAVAILABLE")] * 3
    assert updates(engine) == 0


async def test_an_operation_that_never_completes_is_bounded(
    engine: ScenarioEngine, clients: GoogleClients
) -> None:
    # scenario time stands still, so the operation stays pending: the wait must end anyway
    writer = CloudRunWriter(clients, op_timeout=0.2, poll=0.02)
    result = await writer.pin(API, OLD)
    assert not result.ok
    assert result.wrote
    assert result.code == "DEADLINE_EXCEEDED"
    assert result.operation in result.message
    # asked again once time moves, it waits for its own pending change instead of rewriting
    again = await CloudRunWriter(clients, sleep=stepping(engine)).pin(API, OLD)
    assert (again.ok, again.wrote, again.after) == (True, False, {OLD: 100}), again
    assert updates(engine) == 1


async def test_to_latest_undoes_the_pin_and_is_idempotent(
    engine: ScenarioEngine, writer: CloudRunWriter
) -> None:
    already = await writer.to_latest(API)  # the deploy left traffic on LATEST
    assert already.ok
    assert not already.wrote
    assert (await writer.pin(API, OLD)).ok
    back = await writer.to_latest(API)
    assert (back.ok, back.wrote) == (True, True), back
    assert (back.before, back.after) == ({OLD: 100}, {NEW: 100})
    assert updates(engine) == 2
    again = await writer.to_latest(API)
    assert again.ok
    assert not again.wrote
    assert updates(engine) == 2


async def test_a_human_change_between_read_and_write_is_not_overwritten(
    engine: ScenarioEngine, writer: CloudRunWriter, calls: Calls
) -> None:
    # the write is delayed on the wire; meanwhile a person splits traffic by hand
    engine.world.faults.arm(Fault(api="run", method="UpdateService", code=None, latency=0.4))
    human = threading.Timer(
        0.1,
        lambda: engine.world.run.set_traffic(API.resource_name, {NEW: 50, OLD: 50}, immediate=True),
    )
    human.start()
    result = await writer.pin(API, OLD)
    human.join()
    assert (result.ok, result.code) == (False, "ABORTED")  # the etag read before the write
    assert [c for m, c in calls if m == "UpdateService"] == ["ABORTED"]  # not retried
    accepted = engine.world.recorder.writes(api="run", method="UpdateService", accepted_only=True)
    assert [w.request.get("actor") for w in accepted] == ["human"]
    assert await writer.current_split(API) == {NEW: 50, OLD: 50}
