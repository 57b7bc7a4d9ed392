"""A scenario on the fake cloud watched by the real detection path, for end-to-end tests.

The scenario engine plays on a virtual clock; the guard's own adapters (Cloud Run reader,
Monitoring reader, log source with its tail) read the fake over gRPC with the official
clients; the detector judges. Time moves one scenario second per step, with a moment of real
time between steps for the tail and its consumer to run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from guard.adapters.cloudrun import CloudRunReader
from guard.adapters.google_clients import GoogleClients
from guard.adapters.logsource import LogSource
from guard.adapters.monitoring import MonitoringReader
from guard.config.rulesfile import load_rules
from guard.core.model import Role, ServiceRef, Verdict
from guard.defaults import RULES_DIR
from guard.play.clock import VirtualTimer
from guard.service.detector import Detector, WatchedApp
from guard.sim.clock import VirtualClock
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.server import FakeCloud

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def load(name: str) -> ScenarioEngine:
    text = (SCENARIOS / f"{name}.yaml").read_text()
    return ScenarioEngine(Scenario.model_validate(yaml.safe_load(text)))


class Guarded:
    """A scenario served by the fake cloud and watched by a detector."""

    def __init__(self, engine: ScenarioEngine, *, poll_every: int = 10, metrics_every: int = 60):
        self.engine = engine
        self.poll_every, self.metrics_every = poll_every, metrics_every
        self.verdicts: list[tuple[float, str, Verdict]] = []  # (scenario s, app, verdict)
        rules, problems = load_rules(RULES_DIR)
        assert not problems
        self.apps = [
            WatchedApp(
                a.name,
                tuple(ServiceRef(a.project, a.region, s.name, Role(s.role)) for s in a.services),
                tuple(rules.values()),
            )
            for a in engine.scenario.apps
        ]

    async def __aenter__(self) -> Guarded:
        self.cloud = FakeCloud(self.engine.world).start()
        self.clients = GoogleClients.for_emulator(self.cloud.grpc_target, self.cloud.rest_url)
        assert isinstance(self.engine.clock, VirtualClock)
        clock = self.engine.clock
        self.detector = Detector(
            self.apps,
            reader=CloudRunReader(self.clients, now=clock.now),
            monitoring=MonitoringReader(self.clients),
            on_verdict=lambda app, v: self.verdicts.append((clock.elapsed(), app, v)),
        )
        services = [s for a in self.apps for s in a.services]
        self.source = LogSource(self.clients, services, timer=VirtualTimer(clock), seed=1)
        await self.source.start()
        await self.detector.poll()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.source.stop()
        await self.clients.aclose()
        self.clients.close()
        self.cloud.stop()

    async def play(self, until: float) -> None:
        """Advance scenario time to `until` one second at a time, the guard running along."""
        engine, clock = self.engine, self.engine.clock
        while engine.t < until:
            await asyncio.to_thread(engine.run_until, engine.t + 1)
            await asyncio.sleep(0.002)
            while not self.source.queue.empty():
                self.detector.on_log(self.source.queue.get_nowait())
            second = round(engine.t)
            if second % self.poll_every == 0:
                await self.detector.poll()
            if second % self.metrics_every == 0:
                await self.detector.check_error_rates(clock.now())
            self.detector.evaluate(clock.now())

    def fired(self) -> list[tuple[float, str, str, Any]]:
        """(scenario s, rule, revision, verdict) of every FAILED verdict, in order."""
        return [(t, v.rule, v.deploy.revision, v) for t, _, v in self.verdicts]
