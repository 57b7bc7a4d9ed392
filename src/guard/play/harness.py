"""A scenario played on the fake cloud with the real guard runtime watching it.

Why one harness for `guard simulate` and `guard demo`: both must show what the product does,
so both run the same `Runtime` (detector, responder, restore desk, pager) that `guard run`
runs, configured from the scenario, talking to the fake over the wire through the official
clients, with its store in SQLite and its pages POSTed to a real loopback receiver. They
differ only in time: `simulate` steps a virtual clock one scenario second at a time and
calls the cycles itself (deterministic for a seed); the demo lets wall time pass and runs
the cycles on the same scheduler as `guard run`.

Approvals are a human act: the harness casts them only when asked (`approve_after`), as
named demo approvers, and every vote is in the audit trail under those names.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from guard.adapters.store import SqlStore, Store
from guard.config.models import GuardConfig
from guard.config.rulesfile import load_rules
from guard.core.restore import Decision, RestoreKind, RestoreState
from guard.defaults import RULES_DIR
from guard.play.clock import VirtualTimer
from guard.play.receiver import PageReceiver
from guard.service.metrics import Recorder
from guard.service.run import google_clients, scheduler
from guard.service.runtime import Runtime
from guard.sim.clock import RealClock, VirtualClock
from guard.sim.realtime import RealtimeDriver
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.server import FakeCloud

#: The named humans a simulation or the demo approves restores as (and says so).
DEMO_APPROVERS = ("demo-approver-1", "demo-approver-2")


def play_config(
    scenario: Scenario, cloud: FakeCloud, pages_url: str, store_url: str, **overrides: Any
) -> GuardConfig:
    """The guard's configuration for watching `scenario`: its apps, the fake as Google, a
    webhook to the receiver, two demo approvers; `overrides` set top-level fields."""
    apps: dict[str, Any] = {}
    for app in scenario.apps:
        doc: dict[str, Any] = {
            "project": app.project,
            "region": app.region,
            "services": [{"name": s.name, "role": str(s.role)} for s in app.services],
        }
        if app.pipeline:
            doc["pipeline"] = app.pipeline
        if app.database is not None:
            doc["database"] = {"instance": app.database.instance, "secret": app.database.secret}
            doc["restore"] = {"approvers": list(DEMO_APPROVERS), "required_approvals": 2}
        apps[app.name] = doc
    return GuardConfig.model_validate(
        {
            "apps": apps,
            "approvers": {
                name: {"token_sha256": hashlib.sha256(f"{name}-token".encode()).hexdigest()}
                for name in DEMO_APPROVERS
            },
            "notifiers": {"pages": {"type": "webhook", "url": pages_url}},
            "store": {"url": store_url},
            "google": {"emulator_grpc": cloud.grpc_target, "emulator_rest": cloud.rest_url},
            **overrides,
        }
    )


class Play:
    """The fake cloud playing `scenario`, and a guard runtime acting on it."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        realtime: bool = False,
        approve_after: float | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.scenario, self.realtime, self.approve_after = scenario, realtime, approve_after
        self._config = dict(config or {})
        self.engine = ScenarioEngine(scenario, clock=RealClock() if realtime else None)
        self.clock = self.engine.clock
        self._tmp = tempfile.TemporaryDirectory(prefix="guard-play-")
        self._jobs: AsyncIOScheduler | None = None
        self._driver: RealtimeDriver | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Play:
        self.cloud = FakeCloud(self.engine.world).start()
        self.receiver = PageReceiver(self.clock.elapsed).start()
        store_url = f"sqlite:///{Path(self._tmp.name) / 'guard.db'}"
        self.config = play_config(
            self.scenario, self.cloud, self.receiver.url, store_url, **self._config
        )
        rules, problems = load_rules(RULES_DIR)
        if problems:  # the embedded rules are tested; this would be a packaging fault
            raise RuntimeError(f"embedded rules do not load: {problems}")
        self.store: SqlStore = await asyncio.to_thread(Store.open, store_url)
        self.recorder = Recorder()
        self.clients = google_clients(self.config, self.recorder)
        self.http = httpx.AsyncClient()
        virtual = self.clock if isinstance(self.clock, VirtualClock) else None
        self.runtime = Runtime(
            self.config, rules, store=self.store, clients=self.clients,
            recorder=self.recorder, http=self.http, replica="play", now=self.clock.now,
            timer=VirtualTimer(virtual) if virtual else None,
            writer_sleep=self._advance if virtual else asyncio.sleep,
        )  # fmt: skip
        if self.realtime:
            self._driver = RealtimeDriver(self.engine).start()
            await self.runtime.start_acting()
            self._jobs = scheduler(self.config, self.runtime)
            self._jobs.start()
        else:
            await self.runtime.start_acting(loops=False)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._jobs is not None:
            self._jobs.shutdown(wait=False)
        await self.runtime.stop_acting(grace=5.0)
        if self._driver is not None:
            self._driver.stop()
        await self.http.aclose()
        await self.clients.aclose()
        self.clients.close()
        await asyncio.to_thread(self.store.close)
        self.receiver.stop()
        self.cloud.stop()
        self._tmp.cleanup()

    # -- time -----------------------------------------------------------------------------------

    @property
    def t(self) -> float:
        """Scenario seconds so far."""
        return self.clock.elapsed()

    def seconds(self, at: datetime) -> float:
        """Scenario seconds of an instant."""
        return round((at - self.clock.epoch).total_seconds(), 3)

    async def _advance(self, seconds: float) -> None:
        """The writer's sleep on the virtual clock: scenario time moves while it waits."""
        await asyncio.to_thread(
            self.engine.run_until, self.engine.t + max(seconds, self.scenario.tick)
        )
        await asyncio.sleep(0.002)

    async def run_until(self, until: float) -> None:
        """Virtual clock: play to scenario second `until`, the guard's cycles on schedule
        (poll, metrics and evaluate at their intervals; respond and deliver every second)."""
        rt, c = self.runtime, self.config
        while self.engine.t < until:
            await asyncio.to_thread(self.engine.run_until, self.engine.t + 1)
            await asyncio.sleep(0.002)  # the log tail delivers what this second produced
            second = round(self.engine.t)
            if second % max(1, round(c.poll_interval_seconds)) == 0:
                await rt.poll()
            every = max(1, round(c.metrics_interval_seconds))
            if (second - round(c.metrics_phase_seconds)) % every == 0:  # as `guard run` reads
                await rt.read_metrics()
            await rt.evaluate()
            await rt.respond()
            await rt.deliver_pages()
            await self.approve_due()

    async def approve_due(
        self, reason: str = "approved by `guard simulate`, as a demo approver"
    ) -> list[str]:
        """Approve, as the demo approvers, clone restores proposed `approve_after` ago
        (`reason` goes into the audit trail with each vote)."""
        if self.approve_after is None:
            return []
        approved = []
        proposed = await asyncio.to_thread(
            self.store.restores, None, states=[RestoreState.PROPOSED]
        )
        for r in proposed:
            if r.kind is not RestoreKind.CLONE or not r.plan.get("executable"):
                continue
            if self.seconds(self.clock.now()) - self.seconds(r.created_at) < self.approve_after:
                continue
            for name in DEMO_APPROVERS[: r.required_approvals]:
                await self.runtime.restores.vote(r.id, name, Decision.APPROVE, reason)
            approved.append(r.id)
        return approved
