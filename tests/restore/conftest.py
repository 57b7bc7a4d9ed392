"""What the restore adapters' tests share: the runbook's worst case served by the fake cloud
to the official clients, a sleep that moves scenario time, and a record of API calls."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest
import yaml

from guard.adapters.google_clients import GoogleClients
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.server import FakeCloud

ROOT = Path(__file__).resolve().parents[2]
Calls = list[tuple[str, str]]


def worst_case_at(seconds: float) -> ScenarioEngine:
    """The runbook's worst case played to scenario second `seconds`."""
    text = (ROOT / "scenarios" / "runbook-worst-case.yaml").read_text()
    built = ScenarioEngine(Scenario.model_validate(yaml.safe_load(text)))
    built.run_until(seconds)
    return built


def stepping(engine: ScenarioEngine) -> Callable[[float], Awaitable[None]]:
    """A sleep that moves scenario time, so the fake's operations complete as we wait."""

    async def sleep(seconds: float) -> None:
        engine.run_until(engine.t + max(seconds, engine.scenario.tick))
        await asyncio.sleep(0)

    return sleep


@pytest.fixture
def cloud(engine: ScenarioEngine) -> Iterator[FakeCloud]:
    with FakeCloud(engine.world) as served:
        yield served


@pytest.fixture
async def clients(cloud: FakeCloud) -> AsyncIterator[GoogleClients]:
    built = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
    yield built
    await built.aclose()
    built.close()


@pytest.fixture
def calls() -> Calls:
    """(method, code) of each call an adapter reports."""
    return []
