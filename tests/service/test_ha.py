"""High availability and shutdown, with real `guard run` processes on the real PostgreSQL.

Two guards share one store: one leads, the other stands by (ready, not acting). The leader
is SIGKILLed in the middle of the revert (its write landed, its outcome unrecorded); the
standby takes over, reconciles, and finishes the incident, and every write to Google Cloud
still happened exactly once. SIGTERM during a slow revert lets the step finish and leaves no
open intent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.adapters.store import SqlStore, Store
from guard.core.model import ActionKind, ActionStatus, IncidentState
from guard.sim.faults import Fault

from .live import GuardProcess, LiveCloud, free_port, wait_for, write_config

pytestmark = pytest.mark.postgres


@pytest.fixture
def cloud() -> Iterator[LiveCloud]:
    c = LiveCloud("live-crash")
    try:
        yield c
    finally:
        c.stop()


def _leader(guard: GuardProcess) -> bool:
    try:
        return bool(guard.get("/v1/status").json().get("leader"))
    except Exception:  # a dead guard answers nothing
        return False


def _check_once(cloud: LiveCloud, store: SqlStore) -> None:
    assert len(cloud.guard_writes("UpdateService")) == 1, "traffic pinned exactly once"
    assert len(cloud.guard_writes("UpdateDeliveryPipeline")) == 1, "suspended exactly once"
    [incident] = store.incidents()
    assert incident.state is IncidentState.RESOLVED
    assert incident.reverted_to == "pegasus-api-00007-old"
    actions = store.actions(incident.id)
    assert sorted(a.kind for a in actions) == sorted(
        [ActionKind.FREEZE, ActionKind.REVERT, ActionKind.PAGE, ActionKind.VALIDATE]
    )
    assert all(a.status is ActionStatus.SUCCEEDED for a in actions)
    assert store.open_intents() == []


def test_standby_takes_over_a_killed_leader_and_nothing_happens_twice(
    cloud: LiveCloud, pg_url: str, tmp_path: Path
) -> None:
    port_a, port_b = free_port(), free_port()
    config_a = write_config(tmp_path / "a.yaml", cloud, store_url=pg_url, port=port_a)
    config_b = write_config(tmp_path / "b.yaml", cloud, store_url=pg_url, port=port_b)
    a = GuardProcess(
        config_a, port_a, tmp_path / "a.log", env={"GUARD_CRASH_AT": "revert:executed"}
    )
    b: GuardProcess | None = None
    try:
        a.wait_up()
        wait_for(lambda: _leader(a), 20, "guard A leads")
        b = GuardProcess(config_b, port_b, tmp_path / "b.log")
        b.wait_up()
        assert not _leader(b), "two leaders"
        assert b.get("/readyz").status_code == 200, "a standby is ready to take over"

        assert a.proc.wait(60) == -9, f"A did not die mid-revert:\n{a.logs()}"
        died = time.monotonic()
        standby = b
        wait_for(lambda: _leader(standby), 15, "B takes over within the failover budget")
        takeover = time.monotonic() - died
        assert takeover < 6, f"takeover took {takeover:.1f}s"

        def resolved() -> bool:
            incidents = standby.get("/v1/incidents", params={"state": "all"}).json()
            return bool(incidents) and incidents[0]["state"] == "resolved"

        wait_for(resolved, 60, "B finishes the incident")
        time.sleep(1.5)
        assert b.terminate() == 0
    finally:
        a.kill()
        if b is not None:
            b.kill()
    with Store.open(pg_url) as store:
        _check_once(cloud, store)


@pytest.mark.parametrize("grace", [15, 1])
def test_sigterm_during_a_slow_revert_finishes_or_parks_the_step(
    grace: int, cloud: LiveCloud, pg_url: str, tmp_path: Path
) -> None:
    """Within the grace period the revert finishes and nothing is left open; past it the
    step is parked (its intent open) and the next start reconciles it: either way one
    UpdateService in all, and the incident completes."""
    cloud.engine.world.faults.arm(
        Fault(api="run", method="UpdateService", code=None, latency=2.0, times=1)
    )
    port = free_port()
    config = write_config(
        tmp_path / "g.yaml", cloud, store_url=pg_url, port=port, shutdown_grace_seconds=grace
    )
    guard = GuardProcess(config, port, tmp_path / "g.log")
    with Store.open(pg_url) as store:
        try:
            guard.wait_up()

            def reverting() -> bool:
                return any(a.kind is ActionKind.REVERT for a in store.open_intents())

            wait_for(reverting, 60, "the revert is in flight", every=0.02)
            sent = time.monotonic()
            assert guard.terminate() == 0
            stopped_in = time.monotonic() - sent
        finally:
            guard.kill()
        [incident] = store.incidents()
        revert = [a for a in store.actions(incident.id) if a.kind is ActionKind.REVERT]
        if grace == 15:
            assert store.open_intents() == [], "SIGTERM left a half-done action"
            assert [a.status for a in revert] == [ActionStatus.SUCCEEDED]
        else:
            assert stopped_in < grace + 3, f"exit took {stopped_in:.1f}s past a {grace}s grace"
            assert [a.status for a in revert] == [ActionStatus.INTENDED], "parked, not lost"
        # The slow write lands server-side either way; restart only once it has.
        wait_for(lambda: cloud.guard_writes("UpdateService"), 10, "the pin landed")

        again = GuardProcess(config, port, tmp_path / "again.log")
        try:
            again.wait_up()
            wait_for(lambda: store.incidents()[0].state is IncidentState.RESOLVED, 60, "resolved")
            time.sleep(1.5)
            assert again.terminate() == 0
        finally:
            again.kill()
        _check_once(cloud, store)
