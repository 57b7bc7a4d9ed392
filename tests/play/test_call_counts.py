"""Each Google call the running guard makes is counted once in guard_google_api_calls_total.

Why: the API-cost dashboard and the quota alerts read this counter; a call counted both by
the channel's interceptor and by the adapter that made it doubled the apparent cost of the
log backfill (found by bench/api_cost.py).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from guard.play.harness import Play
from guard.sim.scenario_model import Scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


async def test_every_grpc_call_is_counted_once_under_its_rpc_name() -> None:
    spec = Scenario.model_validate(yaml.safe_load((SCENARIOS / "benign.yaml").read_text()))
    async with Play(spec) as play:
        await play.run_until(70)
        recorded = play.engine.world.recorder.counts()
        samples = [
            s
            for family in play.recorder.registry.collect()
            if family.name == "guard_google_api_calls"
            for s in family.samples
            if s.name.endswith("_total")
        ]
    counted = {(s.labels["service"], s.labels["method"]): s.value for s in samples}
    logging = {method: n for (service, method), n in counted.items() if service == "logging"}
    assert logging, "the backfill's ListLogEntries and the tail were counted"
    assert all(m.startswith("LoggingServiceV2.") for m in logging), logging
    lists = logging.get("LoggingServiceV2.ListLogEntries", 0)
    assert lists == sum(n for (api, method), n in recorded.items() if method == "ListLogEntries")
