"""Fixtures for the fake Google Cloud: a `World` on a virtual clock served on local ports,
and the official clients pointed at it through the product's own `GoogleClients`."""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # before grpc is imported

import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from google.api_core.future import polling
from google.cloud import run_v2

from guard.adapters.google_clients import GoogleClients
from guard.sim.clock import VirtualClock
from guard.sim.server import FakeCloud
from guard.sim.world import World

P, R = "delta-student-486911-n5", "europe-west1"
SVC = f"projects/{P}/locations/{R}/services/pegasus-api"
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION

#: Poll a long-running operation every 10 ms (the library's default starts at 1 s).
FAST_POLLING = polling.DEFAULT_POLLING.with_delay(
    initial=0.01, maximum=0.02, multiplier=1.0
).with_timeout(5.0)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def world(clock: VirtualClock) -> World:
    return World(clock=clock)


@pytest.fixture
def fake_cloud(world: World) -> Iterator[FakeCloud]:
    with FakeCloud(world) as cloud:
        yield cloud


@pytest.fixture
def clients(fake_cloud: FakeCloud) -> Iterator[GoogleClients]:
    built = GoogleClients.for_emulator(fake_cloud.grpc_target, fake_cloud.rest_url)
    yield built
    built.close()


@pytest.fixture
async def async_clients(fake_cloud: FakeCloud) -> AsyncIterator[GoogleClients]:
    built = GoogleClients.for_emulator(fake_cloud.grpc_target, fake_cloud.rest_url)
    yield built
    await built.aclose()


class ClockPusher:
    """Advances a virtual clock from a background thread while a client blocks on an
    operation, the way scenario time passes while the guard waits."""

    def __init__(self, clock: VirtualClock, step: float = 1.0, interval: float = 0.005) -> None:
        self._clock, self._step, self._interval = clock, step, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._clock.advance(self._step)

    def __enter__(self) -> ClockPusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def pusher(clock: VirtualClock) -> ClockPusher:
    return ClockPusher(clock)


def pin(revision: str, etag: str = "") -> run_v2.UpdateServiceRequest:
    """The guard's revert: a traffic-only UpdateService sending 100% to `revision`."""
    return run_v2.UpdateServiceRequest(
        service=run_v2.Service(
            name=SVC,
            etag=etag,
            traffic=[run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=100)],
        ),
        update_mask={"paths": ["traffic"]},
    )


@pytest.fixture
def bad_deploy(world: World) -> tuple[str, str]:
    """pegasus-api: a good revision serving, then a deploy whose container fails to start;
    returns (good, bad) revision short names."""
    world.run.create_service(P, R, "pegasus-api", migrations=["001_init.sql"])
    good = world.run.revisions(SVC)[0]
    bad = world.run.deploy_revision(
        SVC, ready=False, migrations=["001_init.sql", "002_add_course_slug.sql"]
    )
    return good, bad
