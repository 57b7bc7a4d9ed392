"""What the guard costs in Google API calls, per minute and per API, as the fleet grows.

Why: a guard that watches 1,000 services must not spend 1,000x the calls of one, or a
project's quotas (docs/gcp-facts.md) become the limit. The guard runs on the virtual clock
against a fleet of N services over P projects (`scenario_kit.fleet`), every service
deploying a healthy revision at t = 70-99 s, and the fake's recorder counts every call it
serves, by API and method (`CallRecorder.counts`). Three windows:

- start-up: t = 0-10 s (first reads, log backfill, opening the tails): one-off calls;
- idle: t = 10-60 s, no deploy under watch (per minute: x 60/50);
- watching: t = 120-240 s, every service's deploy under watch (per minute: / 2).

It also times the guard's cycles (wall time of one poll, one Monitoring read and one
evaluation) at each size: the scale section reports them for 1,000 services.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from guard.adapters.logsource_filter import MAX_FILTER, build_filter
from guard_runs import BenchPlay
from scenario_kit import REGION, fleet

DEPLOY_AT = 70.0
WINDOWS = {"startup": (0.0, 10.0), "idle": (10.0, 60.0), "watching": (120.0, 240.0)}


def _per_minute(before: dict[Any, int], after: dict[Any, int], seconds: float) -> dict[str, float]:
    delta = Counter(after)
    delta.subtract(before)
    return {
        f"{api}.{method}": round(n * 60.0 / seconds, 2)
        for (api, method), n in sorted(delta.items())
        if n
    }


async def _cost(services: int, projects: int, rps: float) -> dict[str, Any]:
    scenario = fleet(
        services, projects, rps=rps, deploy_at=DEPLOY_AT, duration=WINDOWS["watching"][1] + 10
    )
    snapshots: dict[float, dict[Any, int]] = {}
    began = time.perf_counter()
    play = BenchPlay(scenario, poll_phase=0, metrics_phase=30)
    async with play:
        recorder = play.engine.world.recorder
        snapshots[0.0] = {}  # nothing was called before the runtime started
        for mark in sorted({t for w in WINDOWS.values() for t in w if t > 0}):
            await play.play(mark)
            snapshots[mark] = recorder.counts()
        watched = sum(1 for _ in play.runtime.detector.watches)
        timings = play.timings
    out: dict[str, Any] = {
        "services": services,
        "projects": projects,
        "rps_per_service": rps,
        "deploys_watched": watched,
        "wall_seconds": round(time.perf_counter() - began, 2),
    }
    for name, (a, b) in WINDOWS.items():
        if name == "startup":
            delta = Counter(snapshots[b])
            delta.subtract(snapshots[a])
            out[name] = {f"{api}.{m}": n for (api, m), n in sorted(delta.items()) if n}
        else:
            out[f"{name}_per_minute"] = _per_minute(snapshots[a], snapshots[b], b - a)
    out["cycle_seconds"] = {
        k: {
            "median": round(sorted(v)[len(v) // 2], 5),
            "max": round(max(v), 5),
            "n": len(v),
        }
        for k, v in timings.items()
        if v
    }
    return out


def run_cost(size: tuple[int, int]) -> dict[str, Any]:
    """Process-pool entry point: one fleet size (services, projects)."""
    logging.disable(logging.WARNING)
    services, projects = size
    return asyncio.run(_cost(services, projects, rps=0.2))


def filter_limit() -> dict[str, Any]:
    """How many services of one project fit in the log tail's filter (Logging allows 20,000
    characters), for short bench names and for realistic ones."""
    out: dict[str, Any] = {"limit_chars": MAX_FILTER}
    for label, pattern in (("short", "s00-{:04d}"), ("realistic", "pegasus-api-{:04d}")):
        fits = 0
        for n in (100, 200, 400, 600, 800, 1000):
            try:
                build_filter([pattern.format(i) for i in range(n)], [REGION])
                fits = n
            except ValueError:
                break
        out[label] = {"example": pattern.format(7), "fits_up_to_tested": fits}
        try:
            size = len(build_filter([pattern.format(i) for i in range(1000)], [REGION]))
            out[label]["chars_at_1000"] = size
        except ValueError as err:
            out[label]["error_at_1000"] = str(err)
    return out
