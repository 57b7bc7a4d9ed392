"""The scenario engine: what a scenario says is what the real clients read back.

Each test plays a small scenario on the virtual clock, serves the resulting world with the
fake cloud, and reads it through the official clients, comparing against the scenario's own
numbers (rates, ratios, times) and across APIs (Monitoring's counts against the request
logs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import yaml
from google.cloud import logging_v2, monitoring_v3, run_v2
from google.protobuf import duration_pb2, timestamp_pb2
from pydantic import ValidationError

from guard.adapters.google_clients import GoogleClients
from guard.sim.scenario import ScenarioEngine
from guard.sim.scenario_model import Scenario
from guard.sim.server import FakeCloud

from .conftest import FAST_POLLING, ClockPusher

P, R = "delta-student-486911-n5", "europe-west1"
API = f"projects/{P}/locations/{R}/services/pegasus-api"


def scenario(text: str) -> Scenario:
    return Scenario.model_validate(yaml.safe_load(text))


BASE = """
name: t
seed: 3
duration: 20m
apps:
  - name: pegasus
    project: delta-student-486911-n5
    region: europe-west1
    database: {instance: pegasus-db-eu, secret: pegasus-db-url}
    services:
      - name: pegasus-api
        rps: 10
        revisions:
          - name: pegasus-api-00001-abc
            behaviour:
              - {schema: [1], error_ratio: 0.0}
              - schema: [2]
                error_ratio: 0.5
                logs: [{text: "column courses.title does not exist", per_error: true}]
events:
  - at: 5m
    deploy:
      service: pegasus-api
      revision:
        name: pegasus-api-00002-def
        startup: 20s
        migrations: [backend/migrations/002_rename_course_title.sql]
        schema: 2
        startup_logs:
          - text: "INFO Applying migration backend/migrations/002_rename_course_title.sql"
            offset: 2s
        behaviour:
          - error_ratio: 0.3
            logs: [{text: "ERROR relation \\"lectures_v2\\" does not exist", per_error: true}]
"""


@pytest.fixture
def played() -> Iterator[tuple[ScenarioEngine, GoogleClients]]:
    engine = ScenarioEngine(scenario(BASE))
    with FakeCloud(engine.world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        yield engine, clients
        clients.close()


def series_by_revision(
    clients: GoogleClients, engine: ScenarioEngine, start: float, end: float
) -> dict[tuple[str, str], int]:
    """request_count summed per (revision, response_code_class) over (start, end]."""
    epoch = engine.clock.epoch
    interval = monitoring_v3.TimeInterval(
        start_time=timestamp_pb2.Timestamp(
            seconds=int((epoch + timedelta(seconds=start)).timestamp())
        ),
        end_time=timestamp_pb2.Timestamp(seconds=int((epoch + timedelta(seconds=end)).timestamp())),
    )
    aggregation = monitoring_v3.Aggregation(
        alignment_period=duration_pb2.Duration(seconds=60),
        per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_SUM,
        cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
        group_by_fields=["resource.labels.revision_name", "metric.labels.response_code_class"],
    )
    out: Counter[tuple[str, str]] = Counter()
    request = monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{P}",
        filter='metric.type = "run.googleapis.com/request_count" '
        'AND resource.type = "cloud_run_revision"',
        interval=interval,
        aggregation=aggregation,
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
    )
    for ts in clients.metrics().list_time_series(request=request):
        key = (ts.resource.labels["revision_name"], ts.metric.labels["response_code_class"])
        out[key] += sum(p.value.int64_value for p in ts.points)
    return dict(out)


def log_entries(clients: GoogleClients, flt: str) -> list[Any]:
    request = logging_v2.types.ListLogEntriesRequest(
        resource_names=[f"projects/{P}"], filter=flt, order_by="timestamp asc", page_size=1000
    )
    return list(clients.logging().list_log_entries(request=request))


def test_traffic_series_and_logs_match_the_scenario(
    played: tuple[ScenarioEngine, GoogleClients],
) -> None:
    engine, clients = played
    engine.run_until(15 * 60)
    counts = series_by_revision(clients, engine, 0, 12 * 60)  # visible: 120 s ingestion delay
    old_ok = counts.get(("pegasus-api-00001-abc", "2xx"), 0)
    assert old_ok == pytest.approx(10 * 300, rel=0.1)  # 10 rps until the deploy at 5 m
    new_ok = counts[("pegasus-api-00002-def", "2xx")]
    new_bad = counts[("pegasus-api-00002-def", "5xx")]
    assert new_bad / (new_ok + new_bad) == pytest.approx(0.3, abs=0.05)
    # The migration runs 1 s into startup (t=301); until the new revision is Ready (t=320)
    # the old code still serves, on schema 2, and fails half its requests.
    old_bad = counts[("pegasus-api-00001-abc", "5xx")]
    assert old_bad == pytest.approx(10 * 19 * 0.5, abs=35)

    requests = log_entries(
        clients, 'logName="projects/delta-student-486911-n5/logs/run.googleapis.com%2Frequests"'
    )
    failed = Counter(
        e.resource.labels["revision_name"] for e in requests if e.http_request.status >= 500
    )
    visible = series_by_revision(clients, engine, 0, 15 * 60)
    # Monitoring shows only what has been ingested; the logs have every request.
    assert sum(visible.values()) <= len(requests)
    assert failed["pegasus-api-00002-def"] >= visible[("pegasus-api-00002-def", "5xx")]
    errors = log_entries(clients, 'textPayload:"lectures_v2" AND severity>=DEFAULT')
    assert len(errors) == failed["pegasus-api-00002-def"]  # one error line per failed request
    mismatch = log_entries(clients, 'textPayload:"courses.title"')
    assert len(mismatch) == failed["pegasus-api-00001-abc"] > 0
    assert all(e.resource.labels["revision_name"] == "pegasus-api-00002-def" for e in errors)


def test_the_deploy_is_seen_through_cloud_run(played: tuple[ScenarioEngine, GoogleClients]) -> None:
    engine, clients = played
    engine.run_until(5 * 60 + 5)
    svc = clients.run_services().get_service(name=API)
    assert svc.latest_created_revision.endswith("pegasus-api-00002-def")
    assert svc.latest_ready_revision.endswith("pegasus-api-00001-abc")  # still starting
    engine.run_until(5 * 60 + 25)
    svc = clients.run_services().get_service(name=API)
    assert svc.latest_ready_revision.endswith("pegasus-api-00002-def")
    [status] = svc.traffic_statuses
    assert status.percent == 100
    startup = log_entries(clients, 'textPayload:"Applying migration"')
    assert [e.timestamp for e in startup] == [engine.clock.epoch + timedelta(seconds=302)]


def test_a_revert_moves_traffic_but_the_old_code_fails_on_the_new_schema(
    played: tuple[ScenarioEngine, GoogleClients],
) -> None:
    engine, clients = played
    engine.run_until(6 * 60)
    revert = run_v2.UpdateServiceRequest(
        service=run_v2.Service(
            name=API,
            traffic=[
                run_v2.TrafficTarget(
                    type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
                    revision="pegasus-api-00001-abc",
                    percent=100,
                )
            ],
        ),
        update_mask={"paths": ["traffic"]},
    )
    operation = clients.run_services().update_service(request=revert)
    with ClockPusher(engine.clock, step=1.0):  # type: ignore[arg-type]
        operation.result(polling=FAST_POLLING)
    now = engine.clock.elapsed()
    engine.run_until(now + 5 * 60)
    counts = series_by_revision(clients, engine, now + 60, now + 180)
    old_ok = counts.get(("pegasus-api-00001-abc", "2xx"), 0)
    old_bad = counts.get(("pegasus-api-00001-abc", "5xx"), 0)
    assert ("pegasus-api-00002-def", "5xx") not in counts  # the new revision is out
    assert old_bad / (old_ok + old_bad) == pytest.approx(0.5, abs=0.1)  # schema 2 breaks it
    mismatch = log_entries(clients, 'textPayload:"courses.title"')
    assert mismatch
    assert {e.resource.labels["revision_name"] for e in mismatch} == {"pegasus-api-00001-abc"}


def test_same_seed_same_world_and_another_seed_differs() -> None:
    def fingerprint(seed: int) -> list[tuple[str, str, int]]:
        engine = ScenarioEngine(scenario(BASE).model_copy(update={"seed": seed}))
        engine.run_until(8 * 60)
        return [
            (str(e.timestamp), e.resource.labels["revision_name"], e.http_request.status)
            for e in engine.world.logs.entries()
            if e.http_request.status
        ]

    assert fingerprint(3) == fingerprint(3)
    assert fingerprint(3) != fingerprint(4)


FAILED_START = """
name: failed-start
apps:
  - name: pegasus
    project: delta-student-486911-n5
    region: europe-west1
    services:
      - name: pegasus-worker
        role: worker
        rps: 2
        revisions: [{name: pegasus-worker-00001-aaa}]
events:
  - at: 60
    deploy:
      service: pegasus-worker
      revision:
        name: pegasus-worker-00002-bbb
        ready: false
        startup: 30s
        startup_logs:
          - text: |-
              Traceback (most recent call last):
                File "/app/migrate.py", line 40, in <module>
              psycopg.errors.UndefinedColumn: column "title" does not exist
            layout: lines
            offset: 5s
"""


def test_a_revision_that_fails_to_start(tmp_path: Any) -> None:
    engine = ScenarioEngine(scenario(FAILED_START))
    with FakeCloud(engine.world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        engine.run_until(120)
        worker = f"projects/{P}/locations/{R}/services/pegasus-worker"
        rev = clients.run_revisions().get_revision(
            name=f"{worker}/revisions/pegasus-worker-00002-bbb"
        )
        ready = next(c for c in rev.conditions if c.type_ == "Ready")
        assert ready.state == run_v2.Condition.State.CONDITION_FAILED
        assert ready.reason == "HEALTH_CHECK_CONTAINER_ERROR" or "failed to start" in ready.message
        svc = clients.run_services().get_service(name=worker)
        assert svc.latest_ready_revision.endswith("pegasus-worker-00001-aaa")
        lines = log_entries(clients, 'resource.labels.revision_name="pegasus-worker-00002-bbb"')
        texts = [e.text_payload for e in lines]
        assert texts[:3] == [
            "Traceback (most recent call last):",
            '  File "/app/migrate.py", line 40, in <module>',
            'psycopg.errors.UndefinedColumn: column "title" does not exist',
        ]
        assert "Container called exit(1)." in texts
        audit = log_entries(
            clients,
            'logName="projects/delta-student-486911-n5/logs/cloudaudit.googleapis.com%2Fsystem_event"',
        )
        assert len(audit) == 1
        clients.close()


CANARY = """
name: canary
apps:
  - name: shop
    project: shop-project-123
    region: us-central1
    services:
      - name: shop-api
        rps: 50
        revisions: [{name: shop-api-00001-aaa}]
events:
  - at: 30
    deploy:
      service: shop-api
      traffic: 10
      revision: {name: shop-api-00002-bbb, startup: 10s}
  - at: 5m
    traffic: {service: shop-api, split: {shop-api-00001-aaa: 100}}
"""


def test_a_canary_gets_its_share_and_a_human_change_is_recorded() -> None:
    engine = ScenarioEngine(scenario(CANARY))
    engine.run_until(60)
    split = engine.world.run.serving_split(
        "projects/shop-project-123/locations/us-central1/services/shop-api"
    )
    assert split == {"shop-api-00001-aaa": 90, "shop-api-00002-bbb": 10}
    engine.run_until(4 * 60)
    served = Counter(
        e.resource.labels["revision_name"]
        for e in engine.world.logs.entries()
        if e.http_request.status and e.timestamp >= engine.clock.epoch + timedelta(seconds=41)
    )
    share = served["shop-api-00002-bbb"] / sum(served.values())
    assert share == pytest.approx(0.10, abs=0.02)
    assert engine.world.recorder.writes() == []  # the deployer's own splits are not writes
    engine.run_until(6 * 60)
    [human] = engine.world.recorder.writes(api="run", method="UpdateService")
    assert human.request["actor"] == "human"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"apps": [{"name": "a", "project": "p", "region": "r", "servces": []}]}, "servces"),
        (
            {"events": [{"at": "5 minutes", "rate": {"service": "pegasus-api", "rps": 1}}]},
            "not a time",
        ),
        ({"events": [{"at": 1, "rate": {"service": "nope", "rps": 1}}]}, "unknown service 'nope'"),
    ],
)
def test_bad_scenarios_are_refused_clearly(patch: dict[str, Any], message: str) -> None:
    doc = yaml.safe_load(BASE)
    doc.update(patch)
    with pytest.raises(ValidationError, match=message):
        Scenario.model_validate(doc)


def test_restore_clone_secret_and_roll_end_the_errors(
    played: tuple[ScenarioEngine, GoogleClients],
) -> None:
    """Option A on the fake: a clone from before the deploy has the old schema, and a revision
    of the old code started after the secret points at it serves without errors."""
    from google.cloud import secretmanager_v1
    from google.cloud import sqladmin_v1beta4 as sql

    engine, clients = played
    engine.run_until(6 * 60)
    before_deploy = engine.clock.epoch + timedelta(seconds=4 * 60)
    clone = clients.sql_instances().clone(
        request=sql.SqlInstancesCloneRequest(
            project=P,
            instance="pegasus-db-eu",
            body=sql.InstancesCloneRequest(
                clone_context=sql.CloneContext(
                    destination_instance_name="pegasus-db-eu-rollback",
                    point_in_time=before_deploy,
                )
            ),
        )
    )
    while (
        clients.sql_operations()
        .get(request=sql.SqlOperationsGetRequest(project=P, operation=clone.name))
        .status
        != sql.Operation.SqlOperationStatus.DONE
    ):
        engine.run_until(engine.t + 30)
    restored = clients.sql_instances().get(
        request=sql.SqlInstancesGetRequest(project=P, instance="pegasus-db-eu-rollback")
    )
    assert engine.schema_at((P, "pegasus-db-eu-rollback"), engine.clock.now()) == 1
    assert engine.schema_at((P, "pegasus-db-eu"), engine.clock.now()) == 2
    clients.secrets().add_secret_version(
        parent=f"projects/{P}/secrets/pegasus-db-url",
        payload=secretmanager_v1.SecretPayload(
            data=f"postgresql://app:app-password@{restored.ip_addresses[0].ip_address}:5432/app".encode()
        ),
    )
    # Roll: a new revision from the old (last-known-good) revision's template, all traffic.
    old = clients.run_revisions().get_revision(name=f"{API}/revisions/pegasus-api-00001-abc")
    template = run_v2.RevisionTemplate(containers=old.containers, labels={"deploy-guard/roll": "1"})
    latest = run_v2.TrafficTarget(
        type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100
    )
    roll = clients.run_services().update_service(
        request=run_v2.UpdateServiceRequest(
            service=run_v2.Service(name=API, template=template, traffic=[latest]),
            update_mask={"paths": ["template", "traffic"]},
        )
    )
    with ClockPusher(engine.clock, step=1.0):  # type: ignore[arg-type]
        roll.result(polling=FAST_POLLING)
    now = engine.clock.elapsed()
    engine.run_until(now + 5 * 60)
    svc = clients.run_services().get_service(name=API)
    rolled = svc.latest_ready_revision.rsplit("/", 1)[1]
    assert rolled not in ("pegasus-api-00001-abc", "pegasus-api-00002-def")
    counts = series_by_revision(clients, engine, now + 60, now + 180)
    assert counts.get((rolled, "2xx"), 0) > 500
    assert (rolled, "5xx") not in counts  # old code, old schema: healthy again


async def test_real_time_play_reaches_a_live_tail() -> None:
    """On a real clock the driver generates as wall time passes and the tail delivers it."""
    from guard.sim.clock import RealClock
    from guard.sim.realtime import RealtimeDriver

    text = BASE.replace("rps: 10", "rps: 40").replace("duration: 20m", "duration: 30s")
    spec = scenario(text).model_copy(update={"tick": 0.1})
    engine = ScenarioEngine(spec, clock=RealClock(spec.epoch))
    with FakeCloud(engine.world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        logging_client = clients.logging_async()
        request = logging_v2.types.TailLogEntriesRequest(
            resource_names=[f"projects/{P}"],
            filter="httpRequest.status>=200",
            buffer_window=duration_pb2.Duration(nanos=200_000_000),
        )

        async def requests() -> Any:
            yield request

        driver = RealtimeDriver(engine).start()
        got: list[Any] = []
        stream = await logging_client.tail_log_entries(requests=requests())
        async for response in stream:
            got.extend(response.entries)
            if len(got) >= 40:
                break
        driver.stop()
        await clients.aclose()
    stamps = [e.timestamp for e in got]
    assert stamps == sorted(stamps)  # in order, after the buffer window
    assert engine.t >= 0.9  # time really passed, a tick at a time


def test_real_time_play_shows_in_monitoring_after_the_ingestion_delay() -> None:
    """On a real clock, with a fast demo-style sampling (1 s samples, 0.5 s ingestion)."""
    import time

    from guard.sim.clock import RealClock
    from guard.sim.realtime import RealtimeDriver

    doc = yaml.safe_load(BASE.replace("rps: 10", "rps: 40"))
    doc.update(
        tick=0.1,
        duration="1m",
        allow_short_alignment=True,
        delays={"sample_period": "1s", "ingestion": "0.5s"},
    )
    spec = Scenario.model_validate(doc)
    engine = ScenarioEngine(spec, clock=RealClock(spec.epoch))
    with FakeCloud(engine.world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        driver = RealtimeDriver(engine).start()
        time.sleep(3.0)
        driver.stop()
        elapsed = engine.clock.elapsed()
        epoch = engine.clock.epoch
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{P}",
            filter='metric.type = "run.googleapis.com/request_count"',
            interval=monitoring_v3.TimeInterval(
                start_time=epoch, end_time=epoch + timedelta(seconds=elapsed)
            ),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=duration_pb2.Duration(seconds=1),
                per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_SUM,
                cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
            ),
        )
        [series] = list(clients.metrics().list_time_series(request=request))
        clients.close()
    visible = sum(p.value.int64_value for p in series.points)
    newest = max(p.interval.end_time for p in series.points)
    # Points of the last ~1.5 s are not visible yet; what is visible is ~40 requests/s.
    assert (epoch + timedelta(seconds=elapsed)) - newest >= timedelta(seconds=0.5)
    seconds_visible = (newest - epoch).total_seconds()
    assert visible == pytest.approx(40 * seconds_visible, rel=0.35)


def test_scenario_faults_strike_at_their_time_as_the_clients_own_exceptions() -> None:
    from google.api_core import exceptions

    doc = yaml.safe_load(BASE)
    doc["events"] += [
        {"at": "1m", "fault": {"api": "monitoring", "method": "ListTimeSeries", "times": 1}},
        {
            "at": "2m",
            "fault": {"api": "monitoring", "code": "PERMISSION_DENIED", "times": 1},
        },
    ]
    engine = ScenarioEngine(Scenario.model_validate(doc))
    with FakeCloud(engine.world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        engine.run_until(30)
        series_by_revision(clients, engine, 0, 30)
        engine.run_until(90)
        # One UNAVAILABLE: the library's default retry for ListTimeSeries absorbs it ...
        series_by_revision(clients, engine, 0, 90)
        counts = engine.world.recorder.counts()
        assert counts[("monitoring", "ListTimeSeries")] == 3  # ... by calling again
        engine.run_until(150)
        with pytest.raises(exceptions.PermissionDenied):  # ... but not a permanent error
            series_by_revision(clients, engine, 0, 150)
        clients.close()
