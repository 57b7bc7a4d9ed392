"""The Secret Manager adapter against the fake over gRPC: the app's connection string is read
with its resolved version, a new version is added with its CRC32C, and failures keep their
canonical codes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import pytest

from guard.adapters.google_clients import GoogleClients
from guard.adapters.secrets import SecretCallError, Secrets, crc32c
from guard.sim.faults import Fault
from guard.sim.protoutil import project_number
from guard.sim.scenario import ScenarioEngine
from guard.sim.server import FakeCloud

from .conftest import Calls, worst_case_at

P, SECRET, DB = "delta-student-486911-n5", "pegasus-db-url", "pegasus-db-eu"


@pytest.fixture
def engine() -> ScenarioEngine:
    return worst_case_at(0)


@pytest.fixture
async def clients(cloud: FakeCloud) -> AsyncIterator[GoogleClients]:
    built = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
    yield built
    await built.aclose()


@pytest.fixture
def secrets(clients: GoogleClients, calls: Calls) -> Secrets:
    return Secrets(clients, on_call=lambda m, c: calls.append((m, c)), backoff=0.01)


def version_name(n: int) -> str:
    return f"projects/{project_number(P)}/secrets/{SECRET}/versions/{n}"


def test_crc32c_is_castagnoli() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(b"a") == 0xC1D04330


async def test_latest_is_the_scenario_connection_string_and_its_version(
    engine: ScenarioEngine, secrets: Secrets, calls: Calls
) -> None:
    value = await secrets.latest(P, SECRET)
    ip = engine.world.sql.instance(P, DB).ip_address
    assert value.data == f"postgresql://pegasus:pegasus-password@{ip}:5432/pegasus".encode()
    assert value.version == version_name(1)
    assert calls == [("AccessSecretVersion", "OK")]


async def test_add_then_latest_returns_the_new_value_as_version_2(
    engine: ScenarioEngine, secrets: Secrets, calls: Calls
) -> None:
    new = b"postgresql://pegasus:pegasus-password@10.9.9.9:5432/pegasus"
    assert await secrets.add(P, SECRET, new) == version_name(2)
    value = await secrets.latest(P, SECRET)
    assert (value.version, value.data) == (version_name(2), new)
    (write,) = engine.world.recorder.writes("secretmanager", "AddSecretVersion")
    assert write.error is None
    assert int(write.request["payload"]["dataCrc32c"]) == crc32c(new)
    assert engine.world.secrets.value(P, SECRET) == new
    assert calls == [("AddSecretVersion", "OK"), ("AccessSecretVersion", "OK")]


async def test_a_missing_secret_is_not_found(secrets: Secrets, calls: Calls) -> None:
    with pytest.raises(SecretCallError) as added:
        await secrets.add(P, "no-such-secret", b"x")
    assert added.value.code == "NOT_FOUND"
    assert "no-such-secret" in added.value.message
    with pytest.raises(SecretCallError) as read:
        await secrets.latest(P, "no-such-secret")
    assert read.value.code == "NOT_FOUND"
    assert calls == [("AddSecretVersion", "NOT_FOUND"), ("AccessSecretVersion", "NOT_FOUND")]


async def test_a_disabled_latest_fails_rather_than_falling_back(
    engine: ScenarioEngine, secrets: Secrets
) -> None:
    await secrets.add(P, SECRET, b"postgresql://x@10.1.1.1/db")
    engine.world.secrets.set_version_enabled(P, SECRET, 2, False)
    with pytest.raises(SecretCallError) as err:
        await secrets.latest(P, SECRET)
    assert err.value.code == "FAILED_PRECONDITION"


async def test_a_transient_read_is_retried_but_an_add_is_not(
    engine: ScenarioEngine, secrets: Secrets, calls: Calls
) -> None:
    faults = engine.world.faults
    faults.arm(Fault(api="secretmanager", method="AccessSecretVersion", times=1))
    assert (await secrets.latest(P, SECRET)).version == version_name(1)
    assert calls == [("AccessSecretVersion", "UNAVAILABLE"), ("AccessSecretVersion", "OK")]
    calls.clear()
    faults.arm(Fault(api="secretmanager", method="AddSecretVersion", times=1))
    with pytest.raises(SecretCallError) as err:
        await secrets.add(P, SECRET, b"postgresql://x@10.1.1.1/db")
    assert err.value.code == "UNAVAILABLE"
    assert calls == [("AddSecretVersion", "UNAVAILABLE")]
    assert engine.world.recorder.writes("secretmanager") == []
