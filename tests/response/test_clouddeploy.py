"""The freeze against the fake Cloud Deploy over gRPC: suspend and resume write once, only the
`suspended` field, are verified by reading back, and are no-ops when already done."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest

from guard.adapters.clouddeploy import CloudDeploy
from guard.adapters.google_clients import GoogleClients
from guard.sim.faults import Fault
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.server import FakeCloud

P, R = "delta-student-486911-n5", "europe-west1"
PIPELINE = f"projects/{P}/locations/{R}/deliveryPipelines/pegasus-pipeline"
SCENARIO = {
    "name": "pipeline",
    "duration": 600,
    "apps": [
        {
            "name": "pegasus",
            "project": P,
            "region": R,
            "pipeline": "pegasus-pipeline",
            "services": [
                {
                    "name": "pegasus-api",
                    "rps": 1,
                    "revisions": [{"name": "pegasus-api-00001-abc", "created": -3600}],
                }
            ],
        }
    ],
}

Calls = list[tuple[str, str]]


@pytest.fixture
def engine() -> ScenarioEngine:
    engine = ScenarioEngine(Scenario.model_validate(SCENARIO))
    engine.run_until(10)
    return engine


@pytest.fixture
async def clients(engine: ScenarioEngine) -> AsyncIterator[GoogleClients]:
    with FakeCloud(engine.world) as cloud:
        built = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        yield built
        await built.aclose()


@pytest.fixture
def calls() -> Calls:
    return []


@pytest.fixture
def deploy(clients: GoogleClients, engine: ScenarioEngine, calls: Calls) -> CloudDeploy:
    async def sleep(seconds: float) -> None:  # scenario time moves while the guard waits
        engine.run_until(engine.t + max(seconds, 1.0))
        await asyncio.sleep(0)

    return CloudDeploy(
        clients, on_call=lambda m, c: calls.append((m, c)), sleep=sleep, backoff=0.01
    )


def updates(engine: ScenarioEngine) -> int:
    return len(engine.world.recorder.writes(api="deploy", method="UpdateDeliveryPipeline"))


async def test_suspend_then_resume_each_write_once_and_are_idempotent(
    engine: ScenarioEngine, deploy: CloudDeploy
) -> None:
    assert not await deploy.is_suspended(PIPELINE)
    frozen = await deploy.suspend(PIPELINE)
    assert (frozen.ok, frozen.code, frozen.suspended, frozen.wrote) == (True, "OK", True, True)
    assert frozen.operation
    assert engine.world.deploy.is_suspended(PIPELINE)
    [write] = engine.world.recorder.writes(api="deploy")
    assert write.request["updateMask"] in ("suspended", {"paths": ["suspended"]}), write.request
    again = await deploy.suspend(PIPELINE)
    assert again.ok
    assert not again.wrote
    assert updates(engine) == 1
    lifted = await deploy.resume(PIPELINE)
    assert (lifted.ok, lifted.suspended, lifted.wrote) == (True, False, True)
    assert not engine.world.deploy.is_suspended(PIPELINE)
    assert not (await deploy.resume(PIPELINE)).wrote
    assert updates(engine) == 2


async def test_a_human_suspension_is_left_alone(
    engine: ScenarioEngine, deploy: CloudDeploy
) -> None:
    engine.world.deploy.set_suspended(PIPELINE, True)
    result = await deploy.suspend(PIPELINE)
    assert result.ok
    assert not result.wrote
    assert result.suspended
    assert updates(engine) == 0


async def test_a_dry_run_makes_zero_writes(
    engine: ScenarioEngine, deploy: CloudDeploy, calls: Calls
) -> None:
    result = await deploy.suspend(PIPELINE, dry_run=True)
    assert result.ok
    assert result.dry_run
    assert not result.wrote
    assert engine.world.recorder.writes() == []
    assert {m for m, _ in calls} == {"GetDeliveryPipeline"}
    assert not await deploy.is_suspended(PIPELINE)


async def test_one_unavailable_is_retried(
    engine: ScenarioEngine, deploy: CloudDeploy, calls: Calls
) -> None:
    engine.world.faults.arm(
        Fault(api="deploy", method="UpdateDeliveryPipeline", code="UNAVAILABLE", times=1)
    )
    result = await deploy.suspend(PIPELINE)
    assert result.ok, result
    assert [c for m, c in calls if m == "UpdateDeliveryPipeline"] == ["UNAVAILABLE", "OK"]
    assert updates(engine) == 1


async def test_permission_denied_and_a_missing_pipeline_are_results(
    engine: ScenarioEngine, deploy: CloudDeploy, calls: Calls
) -> None:
    engine.world.faults.arm(
        Fault(api="deploy", method="UpdateDeliveryPipeline", code="PERMISSION_DENIED", times=1)
    )
    denied = await deploy.suspend(PIPELINE)
    assert (denied.ok, denied.code, denied.wrote) == (False, "PERMISSION_DENIED", False)
    assert [c for m, c in calls if m == "UpdateDeliveryPipeline"] == ["PERMISSION_DENIED"]
    missing = await deploy.suspend(PIPELINE.replace("pegasus-pipeline", "nope"))
    assert (missing.ok, missing.code, missing.suspended) == (False, "NOT_FOUND", None)
    assert updates(engine) == 0
