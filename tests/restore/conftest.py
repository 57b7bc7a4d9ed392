"""What the restore adapters' tests share: the runbook's worst case served by the fake cloud
to the official clients, and a record of API calls (`stepping` is re-exported)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest

from guard.adapters.google_clients import GoogleClients
from guard.sim.scenario import ScenarioEngine
from guard.sim.server import FakeCloud

from ..support.stepping import engine_at, stepping

Calls = list[tuple[str, str]]


def worst_case_at(seconds: float) -> ScenarioEngine:
    """The runbook's worst case played to scenario second `seconds`."""
    return engine_at("runbook-worst-case.yaml", seconds)


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


__all__ = ["Calls", "stepping", "worst_case_at"]
