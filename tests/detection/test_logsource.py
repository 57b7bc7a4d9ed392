"""The log source against the fake Cloud Logging over gRPC: what its filter selects, and that
it delivers every selected entry exactly once through drops, suppression, a full queue,
quota limits and exhausted tail sessions, on the virtual clock and on a real one."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest
import yaml
from google.cloud.logging_v2.types import LogEntry

from guard.adapters.google_clients import GoogleClients
from guard.adapters.logsource import LogSource, LogSourceConfig
from guard.adapters.logsource_filter import build_filter, json_text
from guard.core.model import Role, ServiceRef
from guard.core.signals import LogRecord
from guard.sim import errortexts
from guard.sim.clock import RealClock, VirtualClock
from guard.sim.cloudlogging import cloud_run_request_entry, cloud_run_stdout_entry
from guard.sim.faults import Fault
from guard.sim.logdoc import entry_doc
from guard.sim.logfilter import parse_log_filter
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.server import FakeCloud
from guard.sim.world import World

from ..support.guarded import VirtualTimer

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
P, R = "delta-student-486911-n5", "europe-west1"


def load(name: str) -> ScenarioEngine:
    text = (SCENARIOS / f"{name}.yaml").read_text()
    return ScenarioEngine(Scenario.model_validate(yaml.safe_load(text)))


class Run:
    """A scenario served by the fake cloud, a LogSource reading it, a consumer collecting."""

    def __init__(self, engine: ScenarioEngine, **options: Any) -> None:
        self.engine, self.options = engine, options
        self.got: list[LogRecord] = []
        self.calls: list[tuple[str, str, float]] = []
        self.lost: Counter[str] = Counter()
        self.refs = [
            ServiceRef(a.project, a.region, s.name, Role(s.role))
            for a in engine.scenario.apps
            for s in a.services
        ]

    async def __aenter__(self) -> Run:
        self.cloud = FakeCloud(self.engine.world).start()
        self.clients = GoogleClients.for_emulator(self.cloud.grpc_target, self.cloud.rest_url)
        assert isinstance(self.engine.clock, VirtualClock)
        self.source = LogSource(
            self.clients,
            self.refs,
            timer=VirtualTimer(self.engine.clock),
            on_call=lambda m, c: self.calls.append((m, c, self.engine.clock.elapsed())),
            on_lost=lambda p, reason, n: self.lost.update({reason: n}),
            seed=7,
            **self.options,
        )
        await self.source.start()
        self.consumer = asyncio.create_task(self._consume())
        return self

    async def _consume(self) -> None:
        async for record in self.source.records():
            self.got.append(record)
            if self.options.get("config") and self.options["config"].queue_size < 10:
                await asyncio.sleep(0.002)  # a slow consumer

    async def __aexit__(self, *exc: object) -> None:
        self.consumer.cancel()
        await asyncio.gather(self.consumer, return_exceptions=True)
        await self.source.stop()
        await self.clients.aclose()
        await wait_for(lambda: self.engine.world.logs.tail.open_sessions() == 0)  # clean stop
        self.cloud.stop()

    async def play(self, until: float, step: float = 1.0) -> None:
        """Advance scenario time to `until`, letting the source run between ticks."""
        while self.engine.t < until:
            await asyncio.to_thread(self.engine.run_until, min(self.engine.t + step, until))
            await asyncio.sleep(0.002)

    def wanted(self, until: float) -> set[tuple[str, str]]:
        """(log id, insertId) of the stored entries up to `until` the filter selects."""
        flt = parse_log_filter(self.source.filter_for(P))
        end = self.engine.clock.epoch + timedelta(seconds=until)
        return {
            (unquote(e.log_name.split("/logs/", 1)[1]), e.insert_id)
            for e in self.engine.world.logs.entries()
            if e.timestamp <= end and flt.matches(entry_doc(e))
        }

    def ids(self) -> list[tuple[str, str]]:
        return [(r.log_name, r.insert_id) for r in self.got]

    async def until_delivered(self, until: float, limit: float = 600.0) -> set[tuple[str, str]]:
        """Keep time moving until every selected entry up to `until` was delivered."""
        want = self.wanted(until)
        while not want <= set(self.ids()):
            assert self.engine.t < until + limit, f"{len(want - set(self.ids()))} never came"
            await self.play(self.engine.t + 1.0)
        return want

    def assert_exactly_once(self, want: set[tuple[str, str]]) -> None:
        ids = self.ids()
        assert len(ids) == len(set(ids)), "duplicates delivered"
        assert want <= set(ids)
        assert set(ids) <= self.wanted(self.engine.t + 60)  # nothing the filter leaves out


def texts(run: Run) -> str:
    return "\n".join(r.text for r in run.got)


# -- the filter and the translation -------------------------------------------------------------


def test_the_filter_for_100_services_is_far_below_the_limit() -> None:
    names = [f"pegasus-service-{i:03d}" for i in range(100)]
    flt = build_filter(names, [R])
    assert len(flt) < 6000
    parse_log_filter(flt)  # the fake's parser accepts it (Google's grammar)
    longest = build_filter([f"{'x' * 45}{i:03d}" for i in range(100)], [R])
    assert len(longest) < 20_000 - 1000


def test_plain_stderr_json_errors_and_migration_lines_are_selected_but_not_noise() -> None:
    flt = parse_log_filter(build_filter(["pegasus-api"], [R]))
    where = (P, R, "pegasus-api", "pegasus-api-00002-def")

    def selected(entry: LogEntry) -> bool:
        return flt.matches(entry_doc(entry))

    assert selected(cloud_run_stdout_entry(*where, text="Traceback (most recent call last):"))
    assert selected(cloud_run_stdout_entry(*where, text='  File "/app/migrate.py", line 3'))
    assert selected(
        cloud_run_stdout_entry(
            *where, text="INFO Applying migration backend/migrations/003_x.sql", stream="stdout"
        )
    )
    assert selected(cloud_run_request_entry(*where, 503, "https://x/courses", 0.1))
    assert not selected(cloud_run_request_entry(*where, 200, "https://x/courses", 0.1))
    assert not selected(cloud_run_stdout_entry(*where, text='INFO: "GET /courses" 200 OK'))
    other = (P, R, "someone-else", "someone-else-00001-abc")
    assert not selected(cloud_run_stdout_entry(*other, text="ERROR boom"))


def test_every_real_driver_error_and_migration_line_is_selected() -> None:
    """Each fixture as Cloud Run stores it (plain text DEFAULT), whole and one line per entry."""
    flt = parse_log_filter(build_filter(["pegasus-api"], [R]))
    where = (P, R, "pegasus-api", "pegasus-api-00002-def")
    data = json.loads((Path(errortexts.__file__).parent / "data/error_texts.json").read_text())
    missed, checked = [], 0
    for case in data["cases"]:
        fixture = errortexts.error_text(case["id"])
        if fixture.json_payload:
            entries = [cloud_run_stdout_entry(*where, json=fixture.json_payload)]
        else:
            lines = fixture.text.splitlines() if case["label"]["kind"] else []
            entries = [
                cloud_run_stdout_entry(*where, text=t, stream=case["stream"])
                for t in [fixture.text, *lines]
                if t.strip() not in ("", "]", ");")
            ]
        wanted = case["label"]["kind"] or "pplying" in case["text"] or "pplied" in case["text"]
        if wanted:
            checked += len(entries)
            missed += [e for e in entries if not flt.matches(entry_doc(e))]
    assert checked > 1000
    assert missed == []


def test_a_json_entry_reads_as_its_message_and_its_exception() -> None:
    text = json_text({"message": "Migration 003_x.sql failed", "exception": "Traceback ..."})
    assert text == "Migration 003_x.sql failed\nTraceback ..."


# -- delivery on the example scenarios -----------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "until", "evidence"),
    [
        (
            "runbook-worst-case",
            270,
            [
                "Applying migration backend/migrations/002_rename_course_title.sql",
                "psycopg.errors.UndefinedColumn",
            ],
        ),
        (
            "failed-start",
            180,
            [
                "psycopg.errors.DuplicateColumn",
                "Container called exit(1).",
                "Ready condition status changed to False for Revision pegasus-api-00031-new",
            ],
        ),
        (
            "worker-breaks",
            200,
            ["Migration backend/migrations/003_index_course_title.sql failed", "Traceback"],
        ),
        (
            "trigger1-migration-failure",
            200,
            [
                "Migration backend/migrations/002_enrollments_completed_at.sql failed",
                "lock timeout",
            ],
        ),
    ],
)
async def test_the_source_delivers_the_examples_evidence_exactly_once(
    scenario: str, until: float, evidence: list[str]
) -> None:
    async with Run(load(scenario)) as run:
        await run.play(until)
        want = await run.until_delivered(until)
        run.assert_exactly_once(want)
        assert all(e in texts(run) for e in evidence), evidence
        assert not any(r.http_status == 200 for r in run.got)
        if scenario == "runbook-worst-case":  # 5xx request logs, seconds ahead of Monitoring
            assert any(r.http_status and r.http_status >= 500 for r in run.got)
        [status] = run.source.status()
        assert (status.mode, status.connected, status.reconnects) == ("tail", True, 0)
        assert status.last_entry_at is not None


async def test_a_dropped_stream_reconnects_with_no_gap_and_no_duplicates() -> None:
    engine = load("runbook-worst-case")
    engine.world.faults.arm(
        Fault(api="logging", method="TailLogEntries", code=None, drop_after=2, times=3)
    )
    async with Run(engine) as run:
        await run.play(270)
        want = await run.until_delivered(270)
        run.assert_exactly_once(want)
        [status] = run.source.status()
        assert status.reconnects == 3
        assert status.connected
        tails = Counter(c for m, c, _ in run.calls if m == "TailLogEntries")
        assert tails["UNAVAILABLE"] == 3


async def test_suppressed_entries_are_counted_and_backfilled() -> None:
    engine = load("runbook-worst-case")
    engine.world.logs.tail.entries_per_minute = 30
    async with Run(engine) as run:
        await run.play(270)
        want = await run.until_delivered(270)
        run.assert_exactly_once(want)
        assert run.lost["RATE_LIMIT"] > 0
        [status] = run.source.status()
        assert status.suppressed["RATE_LIMIT"] == run.lost["RATE_LIMIT"]


async def test_a_full_queue_is_counted_and_backfilled() -> None:
    config = LogSourceConfig(queue_size=5)
    async with Run(load("failed-start"), config=config) as run:
        await run.play(180)
        want = await run.until_delivered(180)
        run.assert_exactly_once(want)
        assert run.lost["QUEUE_FULL"] > 0


async def test_exhausted_tail_sessions_fall_back_to_polling_within_the_quota() -> None:
    engine = load("runbook-worst-case")
    engine.world.logs.tail.sessions_per_project = 0
    config = LogSourceConfig(poll_interval=1.0, tail_retry_after=120.0)
    async with Run(engine, config=config) as run:
        await run.play(100)
        [status] = run.source.status()
        assert (status.mode, status.connected) == ("poll", False)
        engine.world.logs.tail.sessions_per_project = 10
        await run.play(270)
        want = await run.until_delivered(270)
        run.assert_exactly_once(want)
        assert run.source.status()[0].mode == "tail"  # tried again after tail_retry_after
        lists = sorted(t for m, c, t in run.calls if m == "ListLogEntries")
        assert all(c != "RESOURCE_EXHAUSTED" for m, c, _ in run.calls if m == "ListLogEntries")
        busiest = max(sum(1 for u in lists if t <= u < t + 60) for t in lists)
        assert 30 <= busiest <= 50  # polling every second, held to burst 10 + 40/min


async def test_a_quota_error_backs_off_and_keeps_the_gap() -> None:
    engine = load("failed-start")
    engine.world.logs.tail.sessions_per_project = 0
    engine.world.logs.list_quota_per_minute = 4  # someone else uses the project's quota
    config = LogSourceConfig(poll_interval=1.0, tail_retry_after=10_000.0, quota_backoff=5.0)
    async with Run(engine, config=config) as run:
        await run.play(180)
        want = await run.until_delivered(180)
        run.assert_exactly_once(want)
        codes = Counter(c for m, c, _ in run.calls if m == "ListLogEntries")
        assert codes["RESOURCE_EXHAUSTED"] > 0
        assert "Quota exceeded" in run.source.status()[0].last_error


async def test_the_source_runs_on_a_real_clock() -> None:
    world = World(clock=RealClock())
    ref = ServiceRef(P, R, "pegasus-api")
    where = (P, R, "pegasus-api", "pegasus-api-00001-abc")
    config = LogSourceConfig(buffer_window=0.1, settle=0.05)
    with FakeCloud(world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        source = LogSource(clients, [ref], config=config)
        await source.start()
        try:
            await wait_for(lambda: world.logs.tail.open_sessions(P) == 1)
            world.logs.append(
                cloud_run_stdout_entry(*where, text="ERROR relation x missing", stream="stderr")
            )
            world.logs.append(cloud_run_request_entry(*where, 500, "https://x/", 0.1))
            world.logs.append(cloud_run_request_entry(*where, 200, "https://x/", 0.1))
            got = [await asyncio.wait_for(source.queue.get(), 5) for _ in range(2)]
            assert {r.text for r in got} == {"ERROR relation x missing", ""}
            assert {r.http_status for r in got} == {None, 500}
            assert {r.log_name for r in got} == {
                "run.googleapis.com/stderr",
                "run.googleapis.com/requests",
            }
        finally:
            await source.stop()
            await clients.aclose()
        await wait_for(lambda: world.logs.tail.open_sessions(P) == 0)


async def wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("n", [1, 10, 100])
async def test_one_tail_per_project_whatever_the_number_of_services(n: int) -> None:
    world = World(clock=VirtualClock())
    refs = [ServiceRef(P, R, f"pegasus-service-{i:03d}") for i in range(n)]
    config = LogSourceConfig(settle=0.05)
    with FakeCloud(world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        source = LogSource(clients, refs, config=config)
        await source.start()
        try:
            await wait_for(lambda: world.logs.tail.open_sessions(P) == 1)
            await wait_for(lambda: source.status()[0].connected)
            await asyncio.sleep(0.1)
            counts = world.recorder.counts()
            assert counts[("logging", "TailLogEntries")] == 1
            assert counts.get(("logging", "ListLogEntries"), 0) <= 1  # the start-up overlap
        finally:
            await source.stop()
            await clients.aclose()
