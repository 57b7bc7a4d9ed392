"""How long the fake Google Cloud takes to start and stop: median over 20 runs.

Tests start one per test, so this must stay well under a second.
Run: .venv/bin/python bench/fake_start.py
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import statistics
import time

from guard.sim.clock import VirtualClock
from guard.sim.server import FakeCloud
from guard.sim.world import World

RUNS = 20


def main() -> None:
    starts: list[float] = []
    stops: list[float] = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        cloud = FakeCloud(World(clock=VirtualClock())).start()
        t1 = time.perf_counter()
        cloud.stop()
        t2 = time.perf_counter()
        starts.append(t1 - t0)
        stops.append(t2 - t1)
    print(
        f"fake cloud start (World + gRPC + REST), median of {RUNS}: "
        f"{statistics.median(starts) * 1000:.1f} ms (max {max(starts) * 1000:.1f} ms); "
        f"stop: {statistics.median(stops) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
