"""Every Google API call is seen by the call observer, by API, method and final code: sync and
async clients on the real fake cloud over gRPC, unary calls and the TailLogEntries stream,
errors the fake injects, an observer that fails, and the production channel path."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
import pytest
from google.api_core import exceptions, retry_async
from google.api_core import retry as retries
from google.auth.credentials import AnonymousCredentials
from google.cloud.logging_v2.types import TailLogEntriesRequest
from grpc import aio

from guard.adapters.google_clients import GoogleClients
from guard.adapters.grpc_observe import split_method
from guard.adapters.logsource import LogSource, LogSourceConfig
from guard.core.model import ServiceRef
from guard.sim.clock import RealClock, VirtualClock
from guard.sim.faults import Fault
from guard.sim.server import FakeCloud
from guard.sim.world import World

P, R = "delta-student-486911-n5", "europe-west1"
GET = ("run", "Services.GetService")
Call = tuple[str, str, str]


class Seen:
    """An observer that keeps every call, in order (called from gRPC's threads too)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __call__(self, service: str, method: str, code: str) -> None:
        self.calls.append((service, method, code))

    def by_method(self) -> Counter[str]:
        """Call counts by bare method name, as the fake's recorder counts them."""
        return Counter(m.rsplit(".", 1)[1] for _, m, _ in self.calls)


@pytest.fixture
def world() -> World:
    world = World(clock=VirtualClock())
    world.run.create_service(P, R, "api")
    return world


@pytest.fixture
def cloud(world: World) -> Iterator[FakeCloud]:
    with FakeCloud(world) as cloud:
        yield cloud


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def clients(cloud: FakeCloud, seen: Seen) -> Iterator[GoogleClients]:
    built = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url, observer=seen)
    yield built
    built.close()


def name(service: str) -> str:
    return f"projects/{P}/locations/{R}/services/{service}"


async def wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- naming ------------------------------------------------------------------------------------


def test_a_method_path_names_the_api_and_the_method() -> None:
    assert split_method("/google.cloud.run.v2.Services/GetService") == GET
    assert split_method(b"/google.monitoring.v3.MetricService/ListTimeSeries") == (
        "monitoring",
        "MetricService.ListTimeSeries",
    )
    assert split_method("/google.logging.v2.LoggingServiceV2/TailLogEntries") == (
        "logging",
        "LoggingServiceV2.TailLogEntries",
    )
    secrets = "/google.cloud.secretmanager.v1.SecretManagerService/AccessSecretVersion"
    assert split_method(secrets)[0] == "secretmanager"
    assert split_method("/google.cloud.deploy.v1.CloudDeploy/GetRollout")[0] == "clouddeploy"
    assert split_method("/google.longrunning.Operations/GetOperation") == (
        "longrunning",
        "Operations.GetOperation",
    )
    # not in the table: the package without google/cloud/version
    assert split_method("/google.cloud.pubsub.v1beta2.Publisher/Publish") == (
        "pubsub",
        "Publisher.Publish",
    )
    assert split_method("/grpc.health.v1.Health/Check") == ("grpc.health", "Health.Check")
    assert split_method("weird") == ("unknown", "weird")


# -- sync clients ------------------------------------------------------------------------------


def test_sync_calls_are_seen_with_their_codes(
    world: World, clients: GoogleClients, seen: Seen
) -> None:
    run = clients.run_services()
    assert run.get_service(name=name("api")).name == name("api")
    with pytest.raises(exceptions.NotFound):
        run.get_service(name=name("nope"))
    world.faults.arm(Fault(api="run", method="GetService", code="UNAVAILABLE", times=1))
    with pytest.raises(exceptions.ServiceUnavailable):
        run.get_service(name=name("api"), retry=None)
    list(run.list_services(parent=f"projects/{P}/locations/{R}"))
    assert seen.calls == [
        (*GET, "OK"),
        (*GET, "NOT_FOUND"),
        (*GET, "UNAVAILABLE"),
        ("run", "Services.ListServices", "OK"),
    ]
    assert seen.by_method() == Counter({m: n for (_, m), n in world.recorder.counts().items()})


def test_every_retried_attempt_is_a_call(world: World, clients: GoogleClients, seen: Seen) -> None:
    world.faults.arm(Fault(api="run", method="GetService", code="UNAVAILABLE", times=2))
    quick = retries.Retry(
        initial=0.01,
        maximum=0.02,
        predicate=retries.if_exception_type(exceptions.ServiceUnavailable),
        timeout=5,
    )
    clients.run_services().get_service(name=name("api"), retry=quick)
    assert seen.calls == [(*GET, "UNAVAILABLE"), (*GET, "UNAVAILABLE"), (*GET, "OK")]


def test_other_apis_are_named_by_their_package(clients: GoogleClients, seen: Seen) -> None:
    with pytest.raises(exceptions.GoogleAPICallError):
        clients.secrets().access_secret_version(
            name=f"projects/{P}/secrets/none/versions/latest", retry=None
        )
    with pytest.raises(exceptions.GoogleAPICallError):
        clients.deploy().get_delivery_pipeline(
            name=f"projects/{P}/locations/{R}/deliveryPipelines/none", retry=None
        )
    assert [(s, m) for s, m, _ in seen.calls] == [
        ("secretmanager", "SecretManagerService.AccessSecretVersion"),
        ("clouddeploy", "CloudDeploy.GetDeliveryPipeline"),
    ]
    assert all(code != "OK" for _, _, code in seen.calls)


def test_an_observer_that_raises_never_breaks_a_call(
    cloud: FakeCloud, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(service: str, method: str, code: str) -> None:
        raise RuntimeError("observer bug")

    clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url, observer=broken)
    try:
        with caplog.at_level(logging.WARNING, logger="guard.adapters.grpc_observe"):
            run = clients.run_services()
            assert run.get_service(name=name("api")).name == name("api")
            with pytest.raises(exceptions.NotFound):  # the call's own error, not the observer's
                run.get_service(name=name("nope"))
    finally:
        clients.close()
    failures = [r for r in caplog.records if r.name == "guard.adapters.grpc_observe"]
    assert len(failures) == 2
    assert all(r.exc_info and "observer bug" in str(r.exc_info[1]) for r in failures)


def test_without_an_observer_nothing_is_intercepted(cloud: FakeCloud) -> None:
    clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
    try:
        channel = clients.run_services().transport.grpc_channel
        assert type(channel) is grpc._channel.Channel
    finally:
        clients.close()


# -- async clients -----------------------------------------------------------------------------


async def test_async_calls_are_seen_before_the_caller_resumes(
    world: World, clients: GoogleClients, seen: Seen
) -> None:
    try:
        run = clients.run_services_async()
        assert (await run.get_service(name=name("api"))).name == name("api")
        assert seen.calls == [(*GET, "OK")]
        with pytest.raises(exceptions.NotFound):
            await run.get_service(name=name("nope"))
        assert seen.calls[-1] == (*GET, "NOT_FOUND")
        world.faults.arm(Fault(api="run", method="GetService", code="UNAVAILABLE", times=1))
        quick = retry_async.AsyncRetry(
            initial=0.01,
            maximum=0.02,
            predicate=retries.if_exception_type(exceptions.ServiceUnavailable),
            timeout=5,
        )
        await run.get_service(name=name("api"), retry=quick)
        assert seen.calls[-2:] == [(*GET, "UNAVAILABLE"), (*GET, "OK")]
        world.faults.arm(Fault(api="run", method="GetService", code="PERMISSION_DENIED"))
        with pytest.raises(exceptions.PermissionDenied):
            await run.get_service(name=name("api"))
        assert seen.calls[-1] == (*GET, "PERMISSION_DENIED")
        assert len(seen.calls) == 5
    finally:
        await clients.aclose()


async def test_a_cancelled_async_call_is_seen_cancelled(
    world: World, clients: GoogleClients, seen: Seen
) -> None:
    try:
        world.faults.arm(Fault(api="run", method="GetService", code=None, latency=2.0, times=1))
        run = clients.run_services_async()
        task = asyncio.create_task(run.get_service(name=name("api"), retry=None))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen.calls == [(*GET, "CANCELLED")]
    finally:
        await clients.aclose()


# -- streams -----------------------------------------------------------------------------------


async def test_the_log_tail_is_seen_once_when_it_ends(seen: Seen) -> None:
    world = World(clock=RealClock())
    ref = ServiceRef(P, R, "pegasus-api")
    with FakeCloud(world) as real_time_cloud:
        clients = GoogleClients.for_emulator(
            real_time_cloud.grpc_target, real_time_cloud.rest_url, observer=seen
        )
        own: list[tuple[str, str]] = []
        source = LogSource(
            clients,
            [ref],
            config=LogSourceConfig(buffer_window=0.1, settle=0.05),
            on_call=lambda method, code: own.append((method, code)),
        )
        await source.start()
        try:
            await wait_for(lambda: world.logs.tail.open_sessions(P) == 1)
            await wait_for(lambda: source.status()[0].connected)
            await asyncio.sleep(0.1)
            assert ("logging", "LoggingServiceV2.TailLogEntries") not in {
                (s, m) for s, m, _ in seen.calls
            }  # still open: a stream is counted when it ends
        finally:
            await source.stop()
        tail = ("logging", "LoggingServiceV2.TailLogEntries", "CANCELLED")
        await wait_for(lambda: tail in seen.calls)
        await clients.aclose()
        await wait_for(lambda: world.logs.tail.open_sessions(P) == 0)
    # the observer agrees with the source's own accounting and with the server's
    assert sorted((m.split(".")[1], c) for _, m, c in seen.calls) == sorted(own)
    assert seen.by_method() == Counter({m: n for (_, m), n in world.recorder.counts().items()})
    assert seen.calls.count(tail) == 1


async def test_a_failing_stream_is_seen_with_its_code_and_still_raises(
    world: World, clients: GoogleClients, seen: Seen
) -> None:
    world.faults.arm(Fault(api="logging", method="TailLogEntries", code="UNAVAILABLE", times=1))

    async def requests() -> Any:
        yield TailLogEntriesRequest(resource_names=[f"projects/{P}"])

    try:
        stream = await clients.logging_async().tail_log_entries(requests=requests(), retry=None)
        with pytest.raises(exceptions.ServiceUnavailable):
            async for _ in stream:
                pass
        tail = ("logging", "LoggingServiceV2.TailLogEntries", "UNAVAILABLE")
        await wait_for(lambda: seen.calls == [tail])
    finally:
        await clients.aclose()


def test_a_sync_stream_is_seen_when_it_ends(
    world: World, clients: GoogleClients, seen: Seen
) -> None:
    world.faults.arm(Fault(api="logging", method="TailLogEntries", code="UNAVAILABLE", times=1))
    request = TailLogEntriesRequest(resource_names=[f"projects/{P}"])
    with pytest.raises(exceptions.ServiceUnavailable):
        for _ in clients.logging().tail_log_entries(requests=iter([request]), retry=None):
            pass
    deadline = time.monotonic() + 5
    while not seen.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen.calls == [("logging", "LoggingServiceV2.TailLogEntries", "UNAVAILABLE")]


# -- against Google: the library's own channel, intercepted ----------------------------------------


class Channels:
    """Stands in for `grpc.secure_channel` / `aio.secure_channel`: records what was asked."""

    def __init__(self, target: str | None = None) -> None:
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.target = target  # None: build nothing that connects anywhere

    def sync(self, target: str, credentials: Any, **kwargs: Any) -> grpc.Channel:
        self.asked.append((target, kwargs))
        return grpc.insecure_channel(self.target or "127.0.0.1:9", **kwargs)

    def aio(self, target: str, credentials: Any, **kwargs: Any) -> aio.Channel:
        self.asked.append((target, kwargs))
        return aio.insecure_channel(self.target or "127.0.0.1:9", **kwargs)


async def test_google_clients_are_built_with_an_observer_without_the_network(
    monkeypatch: pytest.MonkeyPatch, seen: Seen
) -> None:
    channels = Channels()
    monkeypatch.setattr(grpc, "secure_channel", channels.sync)
    monkeypatch.setattr(aio, "secure_channel", channels.aio)
    clients = GoogleClients(credentials=AnonymousCredentials(), observer=seen)
    try:
        clients.run_services()
        clients.metrics()
        clients.logging_async()
        clients.deploy_async()
    finally:
        await clients.aclose()
        clients.close()
    assert [t for t, _ in channels.asked] == [
        "run.googleapis.com:443",
        "monitoring.googleapis.com:443",
        "logging.googleapis.com:443",
        "clouddeploy.googleapis.com:443",
    ]
    for _, kwargs in channels.asked:  # the library's own channel options are kept
        assert ("grpc.max_receive_message_length", -1) in kwargs["options"]
    assert [len(k.get("interceptors", ())) for _, k in channels.asked] == [0, 0, 4, 4]
    assert seen.calls == []


async def test_google_clients_report_calls_through_their_own_channels(
    monkeypatch: pytest.MonkeyPatch, cloud: FakeCloud, seen: Seen
) -> None:
    # the library builds the channel for run.googleapis.com:443; only the socket goes to the fake
    channels = Channels(cloud.grpc_target)
    monkeypatch.setattr(grpc, "secure_channel", channels.sync)
    monkeypatch.setattr(aio, "secure_channel", channels.aio)
    clients = GoogleClients(credentials=AnonymousCredentials(), observer=seen)
    try:
        assert clients.run_services().get_service(name=name("api")).name == name("api")
        with pytest.raises(exceptions.NotFound):
            await clients.run_services_async().get_service(name=name("nope"))
    finally:
        await clients.aclose()
        clients.close()
    assert [t for t, _ in channels.asked] == ["run.googleapis.com:443"] * 2
    assert seen.calls == [(*GET, "OK"), (*GET, "NOT_FOUND")]


def test_without_an_observer_google_clients_are_built_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channels = Channels()
    monkeypatch.setattr(grpc, "secure_channel", channels.sync)
    clients = GoogleClients(credentials=AnonymousCredentials())
    try:
        channel = clients.run_services().transport.grpc_channel
    finally:
        clients.close()
    assert type(channel) is grpc._channel.Channel
    assert [t for t, _ in channels.asked] == ["run.googleapis.com:443"]
