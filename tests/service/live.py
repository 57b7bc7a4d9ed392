"""A real-time fake cloud in the test process and `guard run` as a real child process.

Why: the service's promises (it serves while it acts, it survives SIGKILL and SIGTERM, two
replicas never act twice) are about a process, so these tests run the real `guard run`
command against the fake Google Cloud over gRPC, and count the fake's write calls.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from guard.sim.clock import RealClock
from guard.sim.realtime import RealtimeDriver
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.server import FakeCloud

DATA = Path(__file__).parent / "data"
TOKEN = "alice-live-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveCloud:
    """A scenario playing in real time on the fake cloud (start it, then start guards)."""

    def __init__(self, name: str, *, arm: Callable[[Any], None] | None = None) -> None:
        spec = Scenario.model_validate(yaml.safe_load((DATA / f"{name}.yaml").read_text()))
        self.engine = ScenarioEngine(spec, clock=RealClock())
        if arm is not None:
            arm(self.engine.world)
        self.cloud = FakeCloud(self.engine.world).start()
        self.driver = RealtimeDriver(self.engine).start()

    def stop(self) -> None:
        self.driver.stop()
        self.cloud.stop()

    def guard_writes(self, method: str | None = None) -> list[Any]:
        return [
            w for w in self.engine.world.recorder.writes(method=method) if "actor" not in w.request
        ]


def write_config(path: Path, cloud: LiveCloud, *, store_url: str, port: int, **extra: Any) -> Path:
    import hashlib

    app = cloud.engine.scenario.apps[0]
    doc: dict[str, Any] = {
        "apps": {
            app.name: {
                "project": app.project,
                "region": app.region,
                "services": [{"name": s.name, "role": str(s.role)} for s in app.services],
                **({"pipeline": app.pipeline} if app.pipeline else {}),
            }
        },
        "approvers": {"alice": {"token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}},
        "poll_interval_seconds": 1,
        "metrics_interval_seconds": 5,
        "evaluate_interval_seconds": 0.5,
        "respond_interval_seconds": 1,
        "settle_seconds": 2,
        "shutdown_grace_seconds": 5,
        "store": {"url": store_url},
        "api": {"host": "127.0.0.1", "port": port},
        "leader": {"retry_seconds": 0.5, "check_seconds": 0.5, "failover_seconds": 6},
        "google": {"emulator_grpc": cloud.cloud.grpc_target, "emulator_rest": cloud.cloud.rest_url},
    }
    for key, value in extra.items():
        doc[key] = value
    path.write_text(yaml.safe_dump(doc))
    return path


class GuardProcess:
    """`guard run CONFIG` as a child process, its JSON logs captured to a file."""

    def __init__(
        self, config: Path, port: int, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.port, self.log_path = port, log
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "GRPC_VERBOSITY": "ERROR", **(env or {})}
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guard.cli", "run", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5, **kw)

    def wait_up(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"guard exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"guard API not up in {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code


def wait_for(what: Callable[[], Any], timeout: float, message: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s: {message}")
