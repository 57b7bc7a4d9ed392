"""The real guard on one benchmark case, on the virtual clock, with its cycles out of phase.

Why not `guard.play.harness.Play.run_until` as it is: it polls Cloud Run at scenario
seconds divisible by 10 and reads Monitoring at seconds divisible by 60, and the fake's
Monitoring samples are aligned to the same minute, so every read lands the very second a
point becomes visible: a best case no running guard has (its scheduler starts whenever the
process did). `BenchPlay` is the same loop (engine one second, let the tail deliver, then
poll / metrics at their intervals, evaluate, respond, deliver pages every second) with each
cycle shifted by the case's phase. It also notes when each deploy was discovered and how
long each cycle took (wall time, for the scale section), and stops a run soon after the
revert's UpdateService operation is done.

`run_case` is the process-pool entry point: the peers' replay (`peers.run_peers`, on a
world of its own) and then the guard's, for one `Case`.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from guard.adapters.logsource_filter import to_record
from guard.core.classify import classify
from guard.core.classify_ledger import MigrationLedger
from guard.core.model import SignalKind
from guard.play.harness import Play
from guard.play.simulate import document
from guard.sim.scenario_model import Scenario
from peers import run_peers
from scenario_kit import Case

CYCLES = ("poll", "metrics", "evaluate", "respond")


class BenchPlay(Play):
    """`Play` whose poll and Monitoring cycles run at a chosen phase."""

    def __init__(
        self, scenario: Scenario, *, poll_phase: int = 0, metrics_phase: int = 0,
        config: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(scenario, config=config)
        self.poll_phase, self.metrics_phase = poll_phase, metrics_phase
        self.discovered: dict[str, float] = {}  # revision -> scenario second found
        self.timings: dict[str, list[float]] = {c: [] for c in CYCLES}

    async def play(self, until: float, stop: Callable[[], bool] | None = None) -> None:
        """Play to scenario second `until` (or until `stop()` says so, checked each second)."""
        rt, c = self.runtime, self.config
        poll_every = max(1, round(c.poll_interval_seconds))
        metrics_every = max(1, round(c.metrics_interval_seconds))
        self._note_deploys()
        while self.engine.t < until:
            await asyncio.to_thread(self.engine.run_until, self.engine.t + 1)
            await asyncio.sleep(0.002)  # the log tail delivers what this second produced
            second = round(self.engine.t)
            if (second - self.poll_phase) % poll_every == 0:
                await self._timed("poll", rt.poll)
                self._note_deploys()
            if (second - self.metrics_phase) % metrics_every == 0:
                await self._timed("metrics", rt.read_metrics)
            await self._timed("evaluate", rt.evaluate)
            await self._timed("respond", rt.respond)
            await rt.deliver_pages()
            if stop is not None and stop():
                return

    async def _timed(self, name: str, cycle: Callable[[], Any]) -> None:
        began = time.perf_counter()
        await cycle()
        self.timings[name].append(time.perf_counter() - began)

    def _note_deploys(self) -> None:
        for deploy in self.runtime.detector.deploys_seen:
            self.discovered.setdefault(deploy.revision, round(self.t, 3))

    def guard_updates(self) -> list[float]:
        """Scenario seconds of the guard's own UpdateService calls (not the scenario's)."""
        writes = self.engine.world.recorder.writes("run", "UpdateService")
        return [w.elapsed for w in writes if "actor" not in w.request]


def first_error_lines(play: Play, case: Case) -> dict[str, float]:
    """Scenario second of the new revision's first log line of each classified kind, read
    from the fake's own log store (not from what the guard saw)."""
    watched = {(case.service, case.region): None}
    ledger = MigrationLedger()
    first: dict[str, float] = {}
    for entry in play.engine.world.logs.entries():
        record = to_record(entry, watched)
        if record is None or record.revision != case.new_revision:
            continue
        if record.log_name == "run.googleapis.com/requests":
            if (record.http_status or 0) >= 500:
                first.setdefault("request_5xx", play.seconds(record.at))
            continue
        ledger.observe(record)
        kind = classify(record, ledger).kind
        if kind is not None:
            first.setdefault(str(kind), play.seconds(record.at))
    return first


async def play_guard(case: Case) -> dict[str, Any]:
    """The guard on `case`: incidents, its writes, stage times; stops 5 s after a revert."""
    scenario = case.scenario
    op = scenario.delays.run_operation
    end = case.deploy_at + case.horizon
    play = BenchPlay(
        scenario, poll_phase=case.poll_phase, metrics_phase=case.metrics_phase,
        config=case.config,
    )  # fmt: skip
    async with play:

        def reverted() -> bool:
            updates = play.guard_updates()
            return bool(updates) and play.t >= updates[0] + op + 5

        began = time.perf_counter()
        await play.play(end, stop=None if case.kind == "benign" else reverted)
        wall = time.perf_counter() - began
        doc = await asyncio.to_thread(document, play)
        evidence = {
            i["id"]: await asyncio.to_thread(play.store.evidence, i["id"]) for i in doc["incidents"]
        }
        lines = first_error_lines(play, case) if case.kind == "log" else {}
        return {
            "played_to": round(play.t, 3),
            "wall_seconds": round(wall, 3),
            "discovered_at": play.discovered.get(case.new_revision),
            "guard_updates": play.guard_updates(),
            "first_lines": lines,
            "incidents": [
                {
                    "bad_revision": i["bad_revision"],
                    "rules": i["rules"],
                    "detected_at": i["detected_at"],
                    "reverted_at": i["reverted_at"],
                    "first_log_evidence": min(
                        (play.seconds(e.at) for e in evidence[i["id"]] if e.kind is SignalKind.LOG),
                        default=None,
                    ),
                }
                for i in doc["incidents"]
            ],
            "cycle_seconds": {k: _summary(v) for k, v in play.timings.items()},
        }


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(values),
        "median": round(ordered[len(ordered) // 2], 6),
        "max": round(ordered[-1], 6),
    }


def run_case(case: Case) -> dict[str, Any]:
    """One case end to end: the peers on a world of their own, then the guard on another
    (same scenario and seed: identical until the guard's first write)."""
    logging.disable(logging.WARNING)  # the guard's verdict/incident logs: the result says it
    began = time.perf_counter()
    delays = case.scenario.delays
    peers = run_peers(case)
    guard = asyncio.run(play_guard(case))
    return {
        "family": case.family,
        "kind": case.kind,
        "index": case.index,
        "seed": case.seed,
        "shift": case.shift,
        "poll_phase": case.poll_phase,
        "metrics_phase": case.metrics_phase,
        "flagger_phase": case.flagger_phase,
        "config": case.config,
        "deploy_at": case.deploy_at,
        "onset": case.onset,
        "first_visible": case.first_visible(delays.sample_period, delays.ingestion),
        "first_full_visible": case.first_full_visible(delays.sample_period, delays.ingestion),
        "new_revision": case.new_revision,
        "variant": case.variant,
        "guard": guard,
        "peers": peers,
        "wall_seconds": round(time.perf_counter() - began, 3),
    }
