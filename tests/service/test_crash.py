"""Exactly once, for real: `guard run` is SIGKILLed at every step of the response and
restarted; every write to Google Cloud happens exactly once and the incident completes.

The kill points are the intent log's (`guard.service.crashpoints`): after a step's intent is
written, after the step ran but before its outcome is recorded (the nastiest: the write
landed and the guard does not know), and after the outcome, before the incident moves on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from guard.adapters.store import Store
from guard.core.model import ActionKind, ActionStatus, IncidentState

from .live import GuardProcess, LiveCloud, free_port, wait_for, write_config

POINTS = [
    f"{step}:{phase}"
    for step in ("freeze", "revert", "page", "validate")
    for phase in ("intended", "executed", "finished")
]


def _crash_then_recover(point: str, store_url: str, tmp: Path) -> None:
    """Kill a guard at `point`, restart it, and check every action happened exactly once."""
    cloud = LiveCloud("live-crash")
    try:
        port = free_port()
        config = write_config(tmp / "guard.yaml", cloud, store_url=store_url, port=port)
        first = GuardProcess(config, port, tmp / "first.log", env={"GUARD_CRASH_AT": point})
        try:
            code = first.proc.wait(90)
        finally:
            first.kill()
        assert code == -9, f"the guard did not reach {point}:\n{first.logs()}"

        second = GuardProcess(config, port, tmp / "second.log")
        try:
            second.wait_up(60)

            def resolved() -> bool:
                incidents = second.get("/v1/incidents", params={"state": "all"}).json()
                return bool(incidents) and incidents[0]["state"] == "resolved"

            wait_for(resolved, 90, f"incident resolved after a kill at {point}")
            time.sleep(1.5)  # a few more cycles: nothing more may be written
            assert second.terminate() == 0
        finally:
            second.kill()

        assert len(cloud.guard_writes("UpdateService")) == 1, "traffic pinned exactly once"
        [suspend] = cloud.guard_writes("UpdateDeliveryPipeline")
        assert suspend.request["updateMask"] == "suspended"
        split = cloud.engine.world.run.serving_split("pegasus-api")
        assert split == {"pegasus-api-00007-old": 100}
    finally:
        cloud.stop()
    with Store.open(store_url) as store:
        [incident] = store.incidents()
        assert incident.state is IncidentState.RESOLVED
        assert incident.reverted_to == "pegasus-api-00007-old"
        actions = store.actions(incident.id)
        assert sorted(a.kind for a in actions) == sorted(
            [ActionKind.FREEZE, ActionKind.REVERT, ActionKind.PAGE, ActionKind.VALIDATE]
        )
        assert all(a.status is ActionStatus.SUCCEEDED for a in actions), actions
        assert store.open_intents() == []
        freeze = store.freeze_of("pegasus")
        assert freeze is not None
        assert freeze.frozen


#: The revert's three points (the step that moves production traffic) and the freeze's
#: nastiest one (its pipeline write landed, its outcome is not recorded). Every point in
#: `POINTS` passes (run them with GUARD_CRASH_POINTS=all); the default run keeps these to
#: keep the suite short, as each point is a real guard killed and restarted (~18 s), and
#: the page and validate steps re-run through the same idempotent path as the freeze.
SUITE = (
    POINTS
    if os.environ.get("GUARD_CRASH_POINTS") == "all"
    else ["freeze:executed", "revert:intended", "revert:executed", "revert:finished"]
)


@pytest.mark.parametrize("point", SUITE)
def test_sigkill_then_restart_acts_exactly_once(point: str, tmp_path: Path) -> None:
    _crash_then_recover(point, f"sqlite:///{tmp_path}/guard.db", tmp_path)


@pytest.mark.postgres
def test_sigkill_mid_revert_on_postgres_acts_exactly_once(pg_url: str, tmp_path: Path) -> None:
    _crash_then_recover("revert:executed", pg_url, tmp_path)
