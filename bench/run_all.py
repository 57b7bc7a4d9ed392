"""`make bench`: every number of docs/benchmarks.md, measured in one command (< 10 min).

Why one command: benchmark numbers typed into a README by hand rot; these are produced by
the run that writes docs/benchmarks.md (the tables) and docs/benchmarks.json (every run's
raw result), stamped with the machine, the date, the commit and the wall time.

Order, and why: first the virtual-clock work (the guard and the peers on seeded replays of
the runbook's scenarios; the API-cost fleets), spread over a small process pool because each
run mostly waits on its own fake cloud's threads; then, with the pool gone so nothing else
competes for the two cores, `guard run` as a real process for the footprint (200 services)
and the scale run (1,000 services over 50 projects).

Run: .venv/bin/python bench/run_all.py   (or `make bench`)
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import json
import multiprocessing
import platform
import subprocess
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import render
import scenario_kit as kit
from api_cost import filter_limit, run_cost
from footprint import import_rss, live_guard
from guard_runs import run_case
from report import reference, summarize

ROOT = Path(__file__).resolve().parent.parent
OUT_MD, OUT_JSON = ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.json"
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))  # runs mostly wait: 4 keep 2 cores busy
BAD_HORIZON, BENIGN_HORIZON = 900.0, 600.0  # seconds after the deploy a decider may act
#: Log-driven replays deploy at 1:00-1:59 (their files say 2:00 or 3:00): nothing on the
#: log path needs the minutes before, and the replays get shorter.
LEAD = 60
COST_SIZES = [(1000, 1), (1000, 50), (100, 1), (100, 50), (10, 1), (10, 10), (1, 1)]
FOOTPRINT: dict[str, Any] = {
    "services": 200,
    "projects": 10,
    "deploy_at": 10.0,
    "warmup": 45.0,
    "window": 60.0,
}
SCALE: dict[str, Any] = {
    "services": 1000,
    "projects": 50,
    "deploy_at": 10.0,
    "warmup": 45.0,
    "window": 60.0,
}


def plan() -> list[kit.Case]:
    """Every replay, longest first (so the pool's tail is short)."""
    c = kit.cases
    return [
        *c("benign", "benign", 4, horizon=BENIGN_HORIZON),
        *c("low-traffic-noisy", "benign", 4, horizon=BENIGN_HORIZON),
        *c("benign-busy-1.5pct", "benign", 3, doc=kit.benign_busy_background(),
           horizon=BENIGN_HORIZON),
        *c("benign-quiet-canary", "benign", 3, doc=kit.benign_quiet_canary(),
           horizon=BENIGN_HORIZON),
        *c("trigger3-error-rate", "5xx", 20, horizon=BAD_HORIZON),
        *c("trigger3-error-rate", "5xx", 10, horizon=BAD_HORIZON, random_metrics_phase=True,
           variant="Monitoring read at a random phase"),
        *c("canary-5xx-only", "5xx", 8, horizon=BAD_HORIZON),
        *c("trigger1-migration-failure", "log", 40, horizon=BAD_HORIZON, deploy_from=LEAD),
        *c("trigger1-migration-failure", "log", 10, horizon=BAD_HORIZON, deploy_from=LEAD,
           config={"poll_interval_seconds": 1}, variant="poll every 1 s"),
        *c("canary", "log", 8, horizon=BAD_HORIZON, deploy_from=LEAD),
        *c("trigger2-schema-mismatch", "log", 8, horizon=BAD_HORIZON, deploy_from=LEAD),
    ]  # fmt: skip


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    mem = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )  # fmt: skip

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(git("status", "--porcelain")),
    }


def _line(r: dict[str, Any]) -> str:
    label = r["family"] + (f" @ {r['variant']}" if r["variant"] else "")
    ref = reference(r)

    def since(at: float | None) -> str:
        return "—" if at is None else f"{at - ref:.0f} s"

    guard = next(
        (i["reverted_at"] for i in r["guard"]["incidents"] if i["reverted_at"] is not None), None
    )
    peers = ", ".join(f"{k} {since(v['reverted_at'])}" for k, v in r["peers"].items())
    return f"{label} #{r['index']}: guard {since(guard)}; {peers} ({r['wall_seconds']:.1f} s)"


def virtual(cases: list[kit.Case]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pool's work: (case results, API-cost results), with a progress line per job."""
    results: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    total = len(cases) + len(COST_SIZES)
    spawn = multiprocessing.get_context("spawn")  # no fork of a process that started gRPC
    with ProcessPoolExecutor(WORKERS, mp_context=spawn) as pool:
        jobs: dict[Future[dict[str, Any]], str] = {
            pool.submit(run_cost, size): "cost" for size in COST_SIZES[:2]
        }
        jobs |= {pool.submit(run_case, case): "case" for case in cases}
        jobs |= {pool.submit(run_cost, size): "cost" for size in COST_SIZES[2:]}
        for done, fut in enumerate(as_completed(jobs), 1):
            r = fut.result()
            if jobs[fut] == "cost":
                costs.append(r)
                line = (f"API cost, {r['services']} services / {r['projects']} projects "
                        f"({r['wall_seconds']:.1f} s)")  # fmt: skip
            else:
                results.append(r)
                line = _line(r)
            print(f"[{done:3d}/{total}] {line}", flush=True)
    results.sort(key=lambda r: (r["family"], r["variant"], r["index"]))
    costs.sort(key=lambda r: (r["services"], r["projects"]))
    return results, costs


def live() -> tuple[dict[str, Any], dict[str, Any]]:
    """The footprint and the scale run side by side (each `guard run` uses a few % of a
    core, so neither disturbs the other; together they take half the time)."""
    with ThreadPoolExecutor(2) as threads:
        small = threads.submit(live_guard, **FOOTPRINT)
        large = threads.submit(live_guard, **SCALE)
        return small.result(), large.result()


def main() -> None:
    began = time.perf_counter()
    started = datetime.now(UTC)
    cases = plan()
    print(f"Deploy Guard benchmarks: {len(cases)} replays and {len(COST_SIZES)} fleets on the "
          f"virtual clock ({WORKERS} processes), then `guard run` live twice.",
          flush=True)  # fmt: skip
    results, costs = virtual(cases)
    print(f"virtual clock done at {time.perf_counter() - began:.0f} s; `guard run` watching "
          f"{FOOTPRINT['services']} and {SCALE['services']} services for "
          f"{FOOTPRINT['window']:.0f} s ...", flush=True)  # fmt: skip
    footprint, scale = live()
    lag = max((v["max"] for v in scale["cycle_lag_s"].values()), default=float("nan"))
    print(f"  {FOOTPRINT['services']} services: RSS {footprint['rss_mb_median']} MB, CPU "
          f"{footprint['cpu_percent_of_one_core']} %; {SCALE['services']} services: cycle lag "
          f"max {lag} s, RSS {scale['rss_mb_median']} MB", flush=True)  # fmt: skip
    imports = import_rss()
    wall = time.perf_counter() - began
    data: dict[str, Any] = {
        "meta": {
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "command": "make bench",
            "wall_seconds": round(wall, 1),
            "workers": WORKERS,
            "machine": machine(),
            "horizons_s": {"bad": BAD_HORIZON, "benign": BENIGN_HORIZON},
        },
        "summary": summarize(results),
        "cost": costs,
        "filter_limit": filter_limit(),
        "footprint": footprint,
        "scale": scale,
        "imports_rss": imports,
        "cases": results,
    }
    OUT_JSON.write_text(json.dumps(data, indent=1) + "\n")  # key order is meaningful
    OUT_MD.write_text(render.markdown(data))
    print(f"wrote {OUT_MD} and {OUT_JSON} in {wall:.0f} s")


if __name__ == "__main__":
    main()
