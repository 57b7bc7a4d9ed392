"""The fake cloud as a whole: start time, every API on one port, async clients, the factory."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from guard.adapters.google_clients import GoogleClients
from guard.sim.clock import VirtualClock
from guard.sim.server import FakeCloud
from guard.sim.world import World

P, R = "delta-student-486911-n5", "europe-west1"
SVC = f"projects/{P}/locations/{R}/services/pegasus-api"
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def test_start_is_well_under_a_second(capsys: pytest.CaptureFixture[str]) -> None:
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        with FakeCloud(World(clock=VirtualClock())):
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    with capsys.disabled():
        print(f"\nfake cloud start: median {median * 1000:.1f} ms over {len(times)} starts")
    assert median < 0.25


def test_every_api_answers_on_the_one_grpc_port(world: World, clients: GoogleClients) -> None:
    world.run.create_service(P, R, "pegasus-api")
    world.secrets.create_secret(P, "pegasus-db-url")
    world.deploy.create_pipeline(P, R, "pegasus")
    assert clients.run_services().get_service(name=SVC).name == SVC
    assert list(clients.run_revisions().list_revisions(parent=SVC))
    assert clients.secrets().get_secret(name=f"projects/{P}/secrets/pegasus-db-url").name
    pipeline = f"projects/{P}/locations/{R}/deliveryPipelines/pegasus"
    assert clients.deploy().get_delivery_pipeline(name=pipeline).name == pipeline
    series = clients.metrics().list_time_series(
        request={
            "name": f"projects/{P}",
            "filter": 'metric.type = "run.googleapis.com/request_count"',
            "interval": {"start_time": world.clock.now(), "end_time": world.clock.now()},
        }
    )
    assert list(series) == []
    entries = clients.logging().list_log_entries(
        request={
            "resource_names": [f"projects/{P}"],
            "filter": 'resource.type="cloud_run_revision"',
        }
    )
    assert list(entries) == []
    with pytest.raises(exceptions.MethodNotImplemented):  # not served: UNIMPLEMENTED, as it should
        clients.run_services().delete_service(name=SVC)


def test_stopped_cloud_refuses_connections(world: World) -> None:
    cloud = FakeCloud(world).start()
    target = cloud.grpc_target
    cloud.stop()
    with pytest.raises(RuntimeError):
        _ = cloud.grpc_target
    clients = GoogleClients.for_emulator(target, "http://127.0.0.1:9")
    try:
        with pytest.raises(exceptions.ServiceUnavailable):
            clients.run_services().get_service(name=SVC, retry=None, timeout=2)
    finally:
        clients.close()


async def test_async_clients_read_update_and_poll(
    world: World, clock: VirtualClock, async_clients: GoogleClients
) -> None:
    world.run.create_service(P, R, "pegasus-api")
    good = world.run.revisions(SVC)[0]
    bad = world.run.deploy_revision(SVC, ready=True)
    world.secrets.create_secret(P, "pegasus-db-url")
    world.secrets.add_version(P, "pegasus-db-url", b"postgresql://app@10.0.0.3/pegasus")
    services = async_clients.run_services_async()
    svc = await services.get_service(name=SVC)
    assert svc.latest_ready_revision.endswith(bad)
    op = await services.update_service(
        request=run_v2.UpdateServiceRequest(
            service=run_v2.Service(
                name=SVC,
                traffic=[run_v2.TrafficTarget(type_=REVISION, revision=good, percent=100)],
            ),
            update_mask={"paths": ["traffic"]},
        )
    )
    assert not await op.done()
    clock.advance(world.timings.run_update)
    done = await asyncio.wait_for(op.result(), timeout=5)
    assert done.traffic_statuses[0].revision == good
    assert world.run.serving_split(SVC) == {good: 100}
    secret = await async_clients.secrets_async().access_secret_version(
        name=f"projects/{P}/secrets/pegasus-db-url/versions/latest"
    )
    assert secret.payload.data == b"postgresql://app@10.0.0.3/pegasus"
    assert len(world.recorder.writes("run", "UpdateService")) == 1


def test_google_clients_refuses_an_emulator_with_credentials() -> None:
    from guard.adapters.google_clients import Emulator

    with pytest.raises(ValueError, match="no credentials"):
        GoogleClients(
            Emulator("127.0.0.1:1", "http://127.0.0.1:2"), credentials=AnonymousCredentials()
        )


def test_async_clients_need_a_running_loop(clients: GoogleClients) -> None:
    with pytest.raises(RuntimeError):
        clients.run_services_async()


def test_sync_clients_are_reused_and_closed(clients: GoogleClients) -> None:
    assert clients.run_services() is clients.run_services()
    assert clients.sql_instances() is clients.sql_instances()
    clients.close()
    assert clients.run_services() is not None  # rebuilt on a fresh channel after close
