"""`guard run` as a real process against a real-time fake cloud: its memory, CPU and lag.

Why a process: RSS and CPU are properties of the whole `guard run` (interpreter, gRPC
channels, SQLite, uvicorn, APScheduler, the tails' buffers), and the scheduler's lag exists
only on the wall clock. So the fake cloud plays a fleet in real time in THIS process (the
same approach as tests/service/live.py) and `python -m guard.cli run CONFIG` runs as a child
with the production intervals (poll 10 s, Monitoring 60 s, evaluate 1 s). Every service
deploys a healthy revision shortly after the guard starts, so the measured window is the
busy steady state: every deploy under watch, the tails open, Monitoring read each minute.

Measured without new dependencies (psutil is not in the lock): RSS from /proc/PID/status
(VmRSS sampled each second; VmHWM, the peak, at the end), CPU from /proc/PID/stat
(utime + stime over the window, as % of one core), and from the guard's own /metrics:
`guard_cycle_lag_seconds` (how late each job started, per job and app; scraped every 2 s,
the maximum over apps and scrapes) and `guard_google_api_calls_total` over the window.
The fake cloud shares the 2-core machine with the guard, so the lag is a pessimistic one.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import yaml

from guard.sim.clock import RealClock
from guard.sim.realtime import RealtimeDriver
from guard.sim.scenario import ScenarioEngine
from guard.sim.server import FakeCloud
from scenario_kit import fleet

_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)


def _metrics(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(url + "/metrics", timeout=5).text
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(_LABEL.findall(m.group(2))), float(m.group(3))))
    return out


def _calls(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    calls: dict[str, float] = defaultdict(float)
    for name, labels, value in samples:
        if name == "guard_google_api_calls_total":
            calls[f"{labels['service']}.{labels['method']}"] += value
    return calls


def _config(path: Path, engine: ScenarioEngine, cloud: FakeCloud, port: int, store: str) -> None:
    apps = {
        app.name: {
            "project": app.project,
            "region": app.region,
            "services": [{"name": s.name, "role": s.role} for s in app.services],
        }
        for app in engine.scenario.apps
    }
    doc = {
        "apps": apps,
        "store": {"url": store},
        "api": {"host": "127.0.0.1", "port": port},
        "log_level": "WARNING",
        "google": {"emulator_grpc": cloud.grpc_target, "emulator_rest": cloud.rest_url},
    }
    path.write_text(yaml.safe_dump(doc))


def live_guard(
    services: int, projects: int, *, deploy_at: float, warmup: float, window: float,
    rps: float = 0.2,
) -> dict[str, Any]:  # fmt: skip
    """Start the fleet and `guard run`; measure from `warmup` seconds for `window` seconds."""
    scenario = fleet(
        services, projects, rps=rps, deploy_at=deploy_at, duration=warmup + window + 60
    )
    engine = ScenarioEngine(scenario, clock=RealClock())
    cloud = FakeCloud(engine.world).start()
    driver = RealtimeDriver(engine).start()
    tmp = tempfile.TemporaryDirectory(prefix="guard-bench-")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = Path(tmp.name) / "guard.yaml"
    _config(config, engine, cloud, port, f"sqlite:///{Path(tmp.name) / 'guard.db'}")
    log = (Path(tmp.name) / "guard.log").open("wb")
    env = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard.cli", "run", str(config)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    result: dict[str, Any] = {"services": services, "projects": projects, "window_s": window}
    try:
        result["api_up_after_s"] = _wait_up(proc, url)
        time.sleep(max(0.0, warmup - engine.clock.elapsed()))
        result.update(_measure(proc, url, window))
        result["fake_calls"] = dict(
            sorted((f"{a}.{m}", n) for (a, m), n in engine.world.recorder.counts().items())
        )
    finally:
        result["exit_code"] = _stop(proc)
        log.close()
        result["log_tail"] = (Path(tmp.name) / "guard.log").read_text(errors="replace")[-600:]
        driver.stop()
        cloud.stop()
        tmp.cleanup()
    return result


def _wait_up(proc: subprocess.Popen[bytes], url: str) -> float:
    """Seconds until the child's API answers /healthz."""
    up = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"guard run exited {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return round(time.monotonic() - up, 2)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def _measure(proc: subprocess.Popen[bytes], url: str, window: float) -> dict[str, Any]:
    """RSS each second, lag every 2 s, CPU and the guard's call counters over `window`."""
    rss: list[int] = []
    lags: dict[str, list[float]] = defaultdict(list)
    first = _metrics(url)
    t0, c0 = time.monotonic(), _cpu_ticks(proc.pid)
    next_scrape = t0
    while (now := time.monotonic()) - t0 < window:
        rss.append(_status(proc.pid)["VmRSS"])
        if now >= next_scrape:
            for name, labels, value in _metrics(url):
                if name == "guard_cycle_lag_seconds":
                    lags[labels["job"]].append(value)
            next_scrape = now + 2.0
        time.sleep(1.0)
    elapsed, c1 = time.monotonic() - t0, _cpu_ticks(proc.pid)
    last = _metrics(url)
    before, after = _calls(first), _calls(last)
    return {
        "rss_mb_median": round(statistics.median(rss) / 1024, 1),
        "rss_mb_max_sampled": round(max(rss) / 1024, 1),
        "rss_mb_peak": round(_status(proc.pid)["VmHWM"] / 1024, 1),
        "cpu_percent_of_one_core": round(100.0 * (c1 - c0) / CLK_TCK / elapsed, 1),
        "deploys_seen": sum(
            v for n, lab, v in last if n == "guard_deploys_seen_total" and lab.get("role") == "api"
        ),
        "cycle_lag_s": {
            job: {
                "max": round(max(v), 3),
                "median": round(statistics.median(v), 3),
                "scrapes": len(v),
            }
            for job, v in sorted(lags.items())
        },
        "guard_calls_per_minute": {
            k: round((after[k] - before.get(k, 0.0)) * 60 / elapsed, 2)
            for k in sorted(after)
            if after[k] - before.get(k, 0.0) > 0
        },
    }


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM our own child (as an operator would), SIGKILL it if it hangs; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


#: Imported one after another in a fresh interpreter, each step's RSS growth measured: where
#: the guard's baseline memory goes before it watches anything.
IMPORTS = (
    "grpc",
    "google.api_core",
    "google.cloud.run_v2",
    "google.cloud.monitoring_v3",
    "google.cloud.logging_v2",
    "google.cloud.secretmanager_v1",
    "google.cloud.deploy_v1",
    "google.cloud.sqladmin_v1beta4",
    "sqlalchemy",
    "pydantic",
    "fastapi",
    "uvicorn",
    "httpx",
    "prometheus_client",
    "guard.service.run",
)

_IMPORT_PROBE = """
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
out = [["python", rss()]]
for name in sys.argv[1:]:
    importlib.import_module(name)
    out.append([name, rss()])
print(json.dumps(out))
"""


def import_rss() -> list[dict[str, Any]]:
    """RSS (MB) after a bare interpreter and after each of `IMPORTS`, in a fresh child."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, *IMPORTS],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    steps = yaml.safe_load(done.stdout)
    out, before = [], 0
    for name, kb in steps:
        out.append({"module": name, "added_mb": round((kb - before) / 1024, 1),
                    "total_mb": round(kb / 1024, 1)})  # fmt: skip
        before = kb
    return out
