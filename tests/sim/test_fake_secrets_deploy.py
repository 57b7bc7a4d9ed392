"""The fake Secret Manager and Cloud Deploy through their official clients over gRPC."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import deploy_v1
from google.cloud import secretmanager_v1 as sm

from guard.adapters.google_clients import GoogleClients
from guard.sim.clock import VirtualClock
from guard.sim.faults import Fault
from guard.sim.protoutil import project_number
from guard.sim.secretmanager import crc32c
from guard.sim.world import World
from tests.sim.conftest import FAST_POLLING, ClockPusher

P, R = "delta-student-486911-n5", "europe-west1"
SECRET = f"projects/{P}/secrets/pegasus-db-url"
NUMBERED = f"projects/{project_number(P)}/secrets/pegasus-db-url"
PIPELINE = f"projects/{P}/locations/{R}/deliveryPipelines/pegasus"
OLD_URL = b"postgresql://app@10.0.0.3/pegasus"
NEW_URL = b"postgresql://app@10.0.0.9/pegasus"
Disabled = sm.SecretVersion.State.DISABLED


def test_crc32c_matches_the_published_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C test vector (RFC 3720)


def test_create_add_access_list_secret_versions(world: World, clients: GoogleClients) -> None:
    client = clients.secrets()
    secret = client.create_secret(
        parent=f"projects/{P}",
        secret_id="pegasus-db-url",
        secret=sm.Secret(replication=sm.Replication(automatic=sm.Replication.Automatic())),
    )
    assert secret.name == NUMBERED  # Secret Manager answers with the project number
    v1 = client.add_secret_version(parent=SECRET, payload=sm.SecretPayload(data=OLD_URL))
    v2 = client.add_secret_version(
        parent=SECRET, payload=sm.SecretPayload(data=NEW_URL, data_crc32c=crc32c(NEW_URL))
    )
    assert (v1.name, v2.name) == (f"{NUMBERED}/versions/1", f"{NUMBERED}/versions/2")
    assert v2.client_specified_payload_checksum
    assert not v1.client_specified_payload_checksum
    latest = client.access_secret_version(name=f"{SECRET}/versions/latest")
    assert latest.name == f"{NUMBERED}/versions/2"
    assert latest.payload.data == NEW_URL
    assert latest.payload.data_crc32c == crc32c(NEW_URL)
    assert client.access_secret_version(name=f"{NUMBERED}/versions/1").payload.data == OLD_URL
    listed = client.list_secret_versions(parent=SECRET)
    assert [v.name.rsplit("/", 1)[1] for v in listed] == ["2", "1"]  # newest first
    assert client.get_secret(name=SECRET).name == NUMBERED
    assert world.secrets.value(P, "pegasus-db-url") == NEW_URL
    assert [w.method for w in world.recorder.writes("secretmanager")] == [
        "CreateSecret",
        "AddSecretVersion",
        "AddSecretVersion",
    ]
    payload = world.recorder.writes("secretmanager", "AddSecretVersion")[1].request["payload"]
    assert payload["dataCrc32c"] == str(crc32c(NEW_URL))


def test_secret_manager_rejections(world: World, clients: GoogleClients) -> None:
    world.secrets.create_secret(P, "pegasus-db-url")
    client = clients.secrets()
    with pytest.raises(exceptions.InvalidArgument, match="65536"):
        client.add_secret_version(parent=SECRET, payload=sm.SecretPayload(data=b"x" * 65537))
    client.add_secret_version(parent=SECRET, payload=sm.SecretPayload(data=b"x" * 65536))
    with pytest.raises(exceptions.InvalidArgument, match="data_crc32c"):
        client.add_secret_version(
            parent=SECRET, payload=sm.SecretPayload(data=NEW_URL, data_crc32c=1)
        )
    with pytest.raises(exceptions.AlreadyExists):
        client.create_secret(
            parent=f"projects/{P}",
            secret_id="pegasus-db-url",
            secret=sm.Secret(replication=sm.Replication(automatic=sm.Replication.Automatic())),
        )
    with pytest.raises(exceptions.NotFound, match="not found"):
        client.access_secret_version(name=f"projects/{P}/secrets/nope/versions/latest")
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"{SECRET}/versions/7")
    client.disable_secret_version(name=f"{SECRET}/versions/1")
    # `latest` is the newest version whatever its state: a disabled one fails, no fallback.
    with pytest.raises(exceptions.FailedPrecondition, match="DISABLED"):
        client.access_secret_version(name=f"{SECRET}/versions/latest")
    assert client.get_secret_version(name=f"{SECRET}/versions/1").state == Disabled
    enabled = client.enable_secret_version(name=f"{SECRET}/versions/1")
    assert enabled.state == sm.SecretVersion.State.ENABLED
    assert client.access_secret_version(name=f"{SECRET}/versions/1").payload.data == b"x" * 65536
    errors = [w.error for w in world.recorder.writes("secretmanager")]
    assert errors == ["INVALID_ARGUMENT", None, "INVALID_ARGUMENT", "ALREADY_EXISTS", None, None]


def test_secret_faults(world: World, clients: GoogleClients) -> None:
    world.secrets.create_secret(P, "pegasus-db-url")
    world.secrets.add_version(P, "pegasus-db-url", OLD_URL)
    world.faults.arm(Fault("secretmanager", "AccessSecretVersion", code="PERMISSION_DENIED"))
    with pytest.raises(exceptions.PermissionDenied):
        clients.secrets().access_secret_version(name=f"{SECRET}/versions/latest")


def test_suspending_a_pipeline_is_an_operation(
    world: World, clock: VirtualClock, clients: GoogleClients
) -> None:
    world.deploy.create_pipeline(P, R, "pegasus")
    client = clients.deploy()
    before = client.get_delivery_pipeline(name=PIPELINE)
    assert not before.suspended
    assert [s.target_id for s in before.serial_pipeline.stages] == ["prod"]
    op = client.update_delivery_pipeline(
        delivery_pipeline=deploy_v1.DeliveryPipeline(name=PIPELINE, suspended=True),
        update_mask={"paths": ["suspended"]},
    )
    assert not op.done()
    assert not world.deploy.is_suspended(PIPELINE)  # only when the operation completes
    clock.advance(world.timings.deploy_update)
    done = op.result(polling=FAST_POLLING)
    assert done.suspended
    assert done.etag != before.etag
    assert op.metadata.verb == "update"
    assert op.metadata.target == PIPELINE
    assert op.metadata.end_time
    assert world.deploy.is_suspended(PIPELINE)
    assert [
        p.name for p in client.list_delivery_pipelines(parent=f"projects/{P}/locations/{R}")
    ] == [PIPELINE]
    (write,) = world.recorder.writes("deploy")
    assert write.method == "UpdateDeliveryPipeline"
    assert write.request["updateMask"] == "suspended"
    assert write.request["deliveryPipeline"] == {"name": PIPELINE, "suspended": True}


def test_pipeline_update_polled_while_time_passes(
    world: World, clients: GoogleClients, pusher: ClockPusher
) -> None:
    world.deploy.create_pipeline(P, R, "pegasus")
    op = clients.deploy().update_delivery_pipeline(
        delivery_pipeline=deploy_v1.DeliveryPipeline(name=PIPELINE, suspended=True),
        update_mask={"paths": ["suspended"]},
    )
    with pusher:
        assert op.result(polling=FAST_POLLING).suspended


def test_pipeline_rejections(world: World, clients: GoogleClients) -> None:
    world.deploy.create_pipeline(P, R, "pegasus")
    client = clients.deploy()
    with pytest.raises(exceptions.InvalidArgument, match="update_mask"):
        client.update_delivery_pipeline(
            delivery_pipeline=deploy_v1.DeliveryPipeline(name=PIPELINE, suspended=True),
            update_mask={"paths": []},
        )
    with pytest.raises(exceptions.InvalidArgument, match="update_mask"):
        client.update_delivery_pipeline(
            delivery_pipeline=deploy_v1.DeliveryPipeline(name=PIPELINE, uid="x"),
            update_mask={"paths": ["uid"]},
        )
    with pytest.raises(exceptions.NotFound):
        client.get_delivery_pipeline(name=f"projects/{P}/locations/{R}/deliveryPipelines/x")
    with pytest.raises(exceptions.Aborted):
        client.update_delivery_pipeline(
            delivery_pipeline=deploy_v1.DeliveryPipeline(
                name=PIPELINE, suspended=True, etag="stale"
            ),
            update_mask={"paths": ["suspended"]},
        )
    world.faults.arm(Fault("deploy", "UpdateDeliveryPipeline", code="UNAVAILABLE", times=1))
    with pytest.raises(exceptions.ServiceUnavailable):
        client.update_delivery_pipeline(
            delivery_pipeline=deploy_v1.DeliveryPipeline(name=PIPELINE, suspended=True),
            update_mask={"paths": ["suspended"]},
        )
    assert [w.error for w in world.recorder.writes("deploy")] == [
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "ABORTED",
    ]
