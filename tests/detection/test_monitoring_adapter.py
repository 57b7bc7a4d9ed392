"""The Monitoring adapter over the wire, against the local fake cloud.

Each test plays a scenario on the virtual clock, serves it with the fake cloud and reads it
through `MonitoringReader` (the official async client): the counts must equal the fake's
own samples, a cycle must cost one call per project whatever the number of services, a
fresh revision must read as "no data" (ingestion delay), and injected faults must come back
as a provider-error result, never as an exception or as zero traffic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import yaml

from guard.adapters.google_clients import GoogleClients
from guard.adapters.monitoring import MonitoringReader, RequestCountsResult
from guard.core.errorrate import judge_error_rate
from guard.core.model import Outcome
from guard.core.rules import ErrorRateProvider
from guard.sim.faults import Fault
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.server import FakeCloud

P = "delta-student-486911-n5"


def services_yaml(n: int, rps: float = 10.0) -> str:
    out = []
    for i in range(n):
        out.append(
            f"""
      - name: svc-{i:03d}
        rps: {rps}
        request_logs: none
        revisions:
          - name: svc-{i:03d}-00001-abc
            behaviour: [{{error_ratio: 0.02}}]"""
        )
    return "".join(out)


def scenario_text(n: int = 1, *, events: str = "[]", faults: str = "[]", tick: int = 1) -> str:
    return f"""
name: t
seed: 11
tick: {tick}s
duration: 30m
apps:
  - name: app
    project: {P}
    region: europe-west1
    services:{services_yaml(n)}
events: {events}
faults: {faults}
"""


CANARY = """
  - at: 5m
    deploy:
      service: svc-000
      traffic: 50
      revision:
        name: svc-000-00002-new
        startup: 10s
        behaviour: [{error_ratio: 0.2, error_status: 503}]
"""


class Played:
    def __init__(self, text: str) -> None:
        self.engine = ScenarioEngine(Scenario.model_validate(yaml.safe_load(text)))
        self.cloud = FakeCloud(self.engine.world)
        self.calls: list[tuple[str, str]] = []

    def at(self, seconds: float) -> datetime:
        return self.engine.clock.epoch + timedelta(seconds=seconds)

    def now(self) -> datetime:
        return self.engine.clock.now()

    def truth(self) -> Counter[tuple[str, str]]:
        """(revision, "total"/"errors") summed over every sample Monitoring can show now."""
        out: Counter[tuple[str, str]] = Counter()
        for raw in self.engine.world.metrics.visible():
            labels = dict(raw.sid.resource_labels)
            cls = dict(raw.sid.metric_labels)["response_code_class"]
            value = sum(s.value for s in raw.samples)
            out[(labels["revision_name"], "total")] += value
            if cls == "5xx":
                out[(labels["revision_name"], "errors")] += value
        return out


@pytest.fixture
def play() -> Iterator[Any]:
    started: list[Played] = []

    def start(text: str) -> Played:
        played = Played(text)
        played.cloud.start()
        started.append(played)
        return played

    yield start
    for played in started:
        played.cloud.stop()


@pytest.fixture
async def reader_for() -> AsyncIterator[Any]:
    built: list[GoogleClients] = []

    def make(played: Played, **kw: Any) -> MonitoringReader:
        clients = GoogleClients.for_emulator(played.cloud.grpc_target, played.cloud.rest_url)
        built.append(clients)
        return MonitoringReader(clients, on_call=lambda m, c: played.calls.append((m, c)), **kw)

    yield make
    for clients in built:
        await clients.aclose()


def summed(result: RequestCountsResult) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for c in result.counts:
        out[(c.revision, "total")] += c.total
        out[(c.revision, "errors")] += c.errors
    return out


async def test_counts_match_the_fakes_samples_per_revision(play: Any, reader_for: Any) -> None:
    played = play(scenario_text(events=CANARY))
    played.engine.run_until(15 * 60)
    reader = reader_for(played)
    result = await reader.request_counts(P, start=played.at(-60), end=played.now())
    assert result.ok
    assert result.pages == 1
    assert result.calls == 1
    assert summed(result) == played.truth()
    new = result.revision("svc-000", "svc-000-00002-new")
    assert all((c.end - c.start) == timedelta(seconds=60) for c in new)
    rate = sum(c.errors for c in new) / sum(c.total for c in new)
    assert rate == pytest.approx(0.2, abs=0.04)
    assert result.newest == played.at(13 * 60)  # 15 m minus the 120 s ingestion delay
    assert played.calls == [("ListTimeSeries", "OK")]


async def test_pages_of_one_call_are_read_and_counted(play: Any, reader_for: Any) -> None:
    played = play(scenario_text(n=3))
    played.engine.run_until(6 * 60)
    result = await reader_for(played, page_size=2).request_counts(
        P, start=played.at(0), end=played.now()
    )
    assert result.ok
    assert result.pages >= 3
    assert result.calls == result.pages
    assert summed(result) == played.truth()


@pytest.mark.parametrize("services", [1, 10, 100])
async def test_one_call_per_project_per_cycle_whatever_the_number_of_services(
    play: Any, reader_for: Any, services: int
) -> None:
    played = play(scenario_text(n=services, tick=20))
    reader = reader_for(played)
    for cycle in range(3):
        played.engine.run_until(3 * 60 + cycle * 60)
        result = await reader.request_counts(P, start=played.at(0), end=played.now())
        assert result.ok
        assert {c.service for c in result.counts} == {f"svc-{i:03d}" for i in range(services)}
    assert played.calls == [("ListTimeSeries", "OK")] * 3
    assert played.engine.world.recorder.counts()[("monitoring", "ListTimeSeries")] == 3


async def test_a_fresh_revision_reads_as_no_data_then_as_counts(play: Any, reader_for: Any) -> None:
    played = play(scenario_text(events=CANARY))
    reader = reader_for(played)
    rule = ErrorRateProvider(type="errorRate")
    deployed = played.at(5 * 60 + 10)  # Ready and serving 50 % at 5m10s
    verdicts = []
    for t in (6 * 60, 7 * 60, 8 * 60, 9 * 60):
        played.engine.run_until(t)
        result = await reader.request_counts(P, start=played.at(0), end=played.now())
        new = result.revision("svc-000", "svc-000-00002-new")
        old = result.revision("svc-000", "svc-000-00001-abc")
        assert old  # the old revision's history is there all along
        j = judge_error_rate(
            new, old, provider=rule, floor=0.02, now=played.now(), deploy_started=deployed
        )
        verdicts.append((t, j.outcome, len(new)))
    assert verdicts[0][1:] == (Outcome.NO_DATA, 0)
    assert verdicts[1][1:] == (Outcome.NO_DATA, 0)
    assert verdicts[2][2] == 1  # the 5m..6m sample is visible at 8m
    assert verdicts[3][1] in (Outcome.INCONCLUSIVE, Outcome.FAILED)


@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "INTERNAL"])
async def test_a_fault_is_a_provider_error_result(play: Any, reader_for: Any, code: str) -> None:
    played = play(scenario_text())
    played.engine.run_until(5 * 60)
    played.engine.world.faults.arm(Fault(api="monitoring", code=code, times=1))
    result = await reader_for(played).request_counts(P, start=played.at(0), end=played.now())
    assert not result.ok
    assert result.error == code
    assert result.counts == ()
    assert played.calls == [("ListTimeSeries", code)]  # not retried: retrying will not help


async def test_one_unavailable_is_retried_once_and_counted(play: Any, reader_for: Any) -> None:
    played = play(scenario_text(faults="[{api: monitoring, code: UNAVAILABLE, times: 1}]"))
    played.engine.run_until(5 * 60)
    reader = reader_for(played, backoff=0.01)
    result = await reader.request_counts(P, start=played.at(0), end=played.now())
    assert result.ok
    assert result.calls == 2
    assert played.calls == [("ListTimeSeries", "UNAVAILABLE"), ("ListTimeSeries", "OK")]


async def test_a_lasting_outage_is_an_error_not_zero_traffic(play: Any, reader_for: Any) -> None:
    played = play(scenario_text(faults="[{api: monitoring, code: UNAVAILABLE}]"))
    played.engine.run_until(5 * 60)
    reader = reader_for(played, backoff=0.01)
    result = await reader.request_counts(P, start=played.at(0), end=played.now())
    assert result.error == "UNAVAILABLE"
    assert result.calls == 2
    assert "injected fault" in result.message


async def test_a_slow_read_hits_the_short_deadline(play: Any, reader_for: Any) -> None:
    played = play(scenario_text())
    played.engine.run_until(5 * 60)
    played.engine.world.faults.arm(Fault(api="monitoring", code=None, latency=0.5, times=2))
    reader = reader_for(played, attempt_timeout=0.1, budget=0.3, backoff=0.01)
    result = await reader.request_counts(P, start=played.at(0), end=played.now())
    assert result.error == "DEADLINE_EXCEEDED"


async def test_short_alignment_is_refused_unless_configured(play: Any, reader_for: Any) -> None:
    played = play(scenario_text())
    with pytest.raises(ValueError, match="under the minimum"):
        await reader_for(played).request_counts(
            P, start=played.at(0), end=played.at(60), alignment=10
        )
