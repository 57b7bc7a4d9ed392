"""`guard run` as a real process against the fake cloud: it serves its API and metrics while
a scenario plays, reverts the bad deploy, and stops cleanly on SIGTERM."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from guard.cli import main

from ..paging.receivers import Webhook
from ..support.http import serving
from .live import TOKEN, GuardProcess, LiveCloud, free_port, wait_for, write_config


@pytest.fixture
def cloud() -> Iterator[LiveCloud]:
    c = LiveCloud("live-migration-failure")
    try:
        yield c
    finally:
        c.stop()


def _incident(guard: GuardProcess, state: str) -> dict[str, object] | None:
    incidents = guard.get("/v1/incidents", params={"state": "all"}).json()
    found = [i for i in incidents if i["state"] == state]
    return found[0] if found else None


def test_guard_run_reverts_while_serving_api_and_metrics(cloud: LiveCloud, tmp_path: Path) -> None:
    port = free_port()
    hook = Webhook(secret="whsec-live-0123456789")
    with serving(hook.app()) as hook_url:
        notifiers = {
            "hook": {"type": "webhook", "url": f"{hook_url}/hooks/guard", "secret": hook.secret}
        }
        config = write_config(
            tmp_path / "guard.yaml", cloud, store_url=f"sqlite:///{tmp_path}/guard.db", port=port,
            notifiers=notifiers,
        )  # fmt: skip
        _run_and_check(cloud, config, port, tmp_path, hook)


def _run_and_check(
    cloud: LiveCloud, config: Path, port: int, tmp_path: Path, hook: Webhook
) -> None:
    guard = GuardProcess(config, port, tmp_path / "guard.log")
    try:
        guard.wait_up()
        wait_for(lambda: guard.get("/readyz").status_code == 200, 20, "guard ready")
        resolved = wait_for(lambda: _incident(guard, "resolved"), 60, "incident resolved")
        assert resolved["bad_revision"] == "pegasus-api-00008-new"
        assert resolved["reverted_to"] == "pegasus-api-00007-old"
        assert resolved["migration_file"] == "backend/migrations/002_enrollments_completed_at.sql"
        assert cloud.engine.world.run.serving_split("pegasus-api") == {"pegasus-api-00007-old": 100}
        [pin] = cloud.guard_writes("UpdateService")
        assert pin.request["updateMask"] == "traffic"
        pages = wait_for(lambda: [r.json() for r in hook.accepted], 10, "the page arrived")
        assert pages[0]["event"] == "trigger"
        assert pages[0]["migration_file"] == "backend/migrations/002_enrollments_completed_at.sql"
        wait_for(lambda: hook.accepted[-1].json()["event"] == "resolve", 10, "resolve paged")
        frozen = guard.get("/v1/freezes/pegasus").json()
        assert frozen["frozen"] is True

        metrics = guard.get("/metrics").text
        assert 'guard_reverts_total{app="pegasus",outcome="succeeded"} 1.0' in metrics
        assert "guard_leader 1.0" in metrics
        assert 'guard_deploys_seen_total{app="pegasus",role="api"} 1.0' in metrics
        assert "guard_google_api_calls_total{" in metrics
        promtool = shutil.which("promtool")
        assert promtool, "promtool missing: run `make install` (installs Debian's prometheus)"
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=metrics,
            capture_output=True,
            text=True,
            check=False,
        )
        problems = (checked.stdout + checked.stderr).strip()
        assert checked.returncode == 0, problems
        assert not problems

        # The deploy pipeline's gate, then a human lifts the freeze and takes the offer.
        runner = CliRunner()

        def cli(*args: str) -> Result:
            return runner.invoke(main, [*args, "--url", guard.url], env={"GUARD_TOKEN": TOKEN})

        assert cli("gate", "pegasus").exit_code == 1
        assert cli("gate", "nonexistent").exit_code == 2
        lifted = cli("unfreeze", "pegasus", "--reason", "fixed forward in 009")
        assert lifted.exit_code == 0, lifted.output
        assert "to-latest" in lifted.output  # the offer to undo the guard's pin
        assert cli("gate", "pegasus").exit_code == 0
        audit = guard.get("/v1/incidents/" + str(resolved["id"])).json()
        assert audit["id"] == resolved["id"]
        answer = httpx.post(
            guard.url + "/v1/apps/pegasus/to-latest",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        [service] = answer.json()["services"]
        assert service["result"] == "moved to latest"
        latest = cloud.guard_writes("UpdateService")[-1]
        assert latest.request["service"]["traffic"][0]["type"] == (
            "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
        )

        assert guard.terminate() == 0
        lines = guard.logs().splitlines()
        import json

        events = [json.loads(line) for line in lines if line.startswith("{")]
        assert events, guard.logs()
        assert all("severity" in e and "message" in e for e in events)
        assert any(e.get("incident") == resolved["id"] for e in events)
    finally:
        guard.kill()
