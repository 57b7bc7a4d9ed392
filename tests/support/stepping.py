"""A scenario played to a moment on the virtual clock, and a sleep that moves it on.

Why shared: adapter tests that wait on Google's long-running operations (a revert, a roll,
a Cloud SQL clone) pass this sleep to the adapter, so the fake's operations complete as the
adapter waits, without real time passing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def engine_at(name: str, t: float) -> ScenarioEngine:
    """`scenarios/<name>` played to scenario second `t`."""
    spec = Scenario.model_validate(yaml.safe_load((SCENARIOS / name).read_text()))
    engine = ScenarioEngine(spec)
    engine.run_until(t)
    return engine


def stepping(engine: ScenarioEngine) -> Callable[[float], Awaitable[None]]:
    """A sleep that moves scenario time, so the fake's operations complete as one waits."""

    async def sleep(seconds: float) -> None:
        engine.run_until(engine.t + max(seconds, engine.scenario.tick))
        await asyncio.sleep(0)

    return sleep
