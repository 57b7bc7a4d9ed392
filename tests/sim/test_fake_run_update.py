"""The fake Cloud Run Admin v2 UpdateService and its operation, through the official clients.

The guard's revert is exactly this call, so its timing and failure modes are tested hard."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import run_v2
from google.longrunning import operations_pb2

from guard.adapters.google_clients import GoogleClients
from guard.sim.clock import VirtualClock
from guard.sim.world import World
from tests.sim.conftest import FAST_POLLING, REVISION, SVC, ClockPusher, P, R, pin

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
State = run_v2.Condition.State


def test_traffic_only_revert_changes_status_only_when_the_operation_completes(
    world: World, clock: VirtualClock, clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    good, bad = bad_deploy
    world.run.set_revision_ready(SVC, bad, True)  # it started after all, and serves 100%
    assert world.run.serving_split(SVC) == {bad: 100}
    client = clients.run_services()
    before = client.get_service(name=SVC)
    op = client.update_service(request=pin(good))
    assert not op.done()
    during = client.get_service(name=SVC)
    assert during.generation == before.generation + 1
    assert during.reconciling
    assert [(t.type_, t.revision, t.percent) for t in during.traffic] == [(REVISION, good, 100)]
    assert during.traffic_statuses == before.traffic_statuses
    assert world.run.serving_split(SVC) == {bad: 100}
    clock.advance(world.timings.run_update)
    done = op.result(polling=FAST_POLLING)
    assert [(t.type_, t.revision, t.percent) for t in done.traffic_statuses] == [
        (REVISION, good, 100)
    ]
    after = client.get_service(name=SVC)
    assert after.observed_generation == after.generation
    assert not after.reconciling
    assert after.etag not in (before.etag, during.etag)
    assert world.run.serving_split(SVC) == {good: 100}
    writes = world.recorder.writes("run")
    assert len(writes) == 1
    assert writes[0].method == "UpdateService"
    assert writes[0].error is None
    assert writes[0].request == {
        "service": {
            "name": SVC,
            "traffic": [
                {
                    "type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
                    "revision": good,
                    "percent": 100,
                }
            ],
        },
        "updateMask": "traffic",
    }


def test_operation_completes_while_a_client_polls_and_time_passes(
    world: World, clients: GoogleClients, bad_deploy: tuple[str, str], pusher: ClockPusher
) -> None:
    good, _ = bad_deploy
    op = clients.run_services().update_service(request=pin(good))
    with pusher:
        result = op.result(polling=FAST_POLLING)
    assert result.traffic_statuses[0].revision == good
    assert op.metadata.name == SVC  # Cloud Run's operation metadata is the Service
    listed = clients.run_services().list_operations(
        request=operations_pb2.ListOperationsRequest(name=f"projects/{P}/locations/{R}")
    )
    assert [o.name for o in listed.operations] == [op.operation.name]
    assert listed.operations[0].done
    assert op.operation.name.startswith(f"projects/{P}/locations/{R}/operations/")


def test_bad_splits_are_rejected_at_call_time_and_change_nothing(
    world: World, clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    good, bad = bad_deploy
    client = clients.run_services()
    generation = client.get_service(name=SVC).generation
    split = run_v2.UpdateServiceRequest(
        service=run_v2.Service(
            name=SVC,
            traffic=[
                run_v2.TrafficTarget(type_=REVISION, revision=good, percent=50),
                run_v2.TrafficTarget(type_=REVISION, revision=bad, percent=40),
            ],
        ),
        update_mask={"paths": ["traffic"]},
    )
    with pytest.raises(exceptions.InvalidArgument, match="sum to 90, want 100"):
        client.update_service(request=split)
    no_name = pin("")
    with pytest.raises(exceptions.InvalidArgument, match="must name a revision"):
        client.update_service(request=no_name)
    bad_mask = pin(good)
    bad_mask.update_mask.paths[:] = ["traffic_statuses"]
    with pytest.raises(exceptions.InvalidArgument, match="update_mask"):
        client.update_service(request=bad_mask)
    with pytest.raises(exceptions.Aborted, match="etag"):
        client.update_service(request=pin(good, etag='"stale"'))
    assert client.get_service(name=SVC).generation == generation
    assert [w.error for w in world.recorder.writes("run", "UpdateService")] == [
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "ABORTED",
    ]
    assert world.recorder.writes("run", accepted_only=True) == []


def test_current_etag_is_accepted(
    world: World, clock: VirtualClock, clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    good, _ = bad_deploy
    client = clients.run_services()
    op = client.update_service(request=pin(good, etag=client.get_service(name=SVC).etag))
    clock.advance(10)
    assert op.result(polling=FAST_POLLING).traffic_statuses[0].revision == good


def test_route_to_a_failed_revision_fails_in_the_operation(
    world: World, clock: VirtualClock, clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    good, bad = bad_deploy
    client = clients.run_services()
    op = client.update_service(request=pin(bad))
    clock.advance(10)
    with pytest.raises(exceptions.FailedPrecondition) as err:
        op.result(polling=FAST_POLLING)
    assert err.value.message.startswith(f"Revision '{bad}' is not ready and cannot serve traffic.")
    svc = client.get_service(name=SVC)
    assert svc.observed_generation == svc.generation
    assert svc.terminal_condition.state == State.CONDITION_FAILED
    assert [(t.type_, t.percent) for t in svc.traffic_statuses] == [(LATEST, 100)]
    assert world.run.serving_split(SVC) == {good: 100}


def test_route_to_a_missing_revision_fails_with_code_13(
    world: World, clock: VirtualClock, clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    op = clients.run_services().update_service(request=pin("pegasus-api-00042-abc"))
    clock.advance(10)
    with pytest.raises(exceptions.InternalServerError, match="does not exist or is deleted"):
        op.result(polling=FAST_POLLING)


def test_route_to_a_starting_revision_waits_for_it(
    world: World, clock: VirtualClock, clients: GoogleClients
) -> None:
    world.run.create_service(P, R, "pegasus-api")
    new = world.run.deploy_revision(SVC, ready=None)
    op = clients.run_services().update_service(request=pin(new))
    clock.advance(60)
    assert not op.done()
    world.run.set_revision_ready(SVC, new, True)
    clock.advance(1.5)
    assert op.result(polling=FAST_POLLING).traffic_statuses[0].revision == new


def test_full_update_creates_a_revision_only_when_the_template_changes(
    world: World, clock: VirtualClock, clients: GoogleClients
) -> None:
    world.run.create_service(P, R, "pegasus-api")
    client = clients.run_services()
    current = client.get_service(name=SVC)
    op = client.update_service(service=current)  # written back unchanged, no mask
    clock.advance(10)
    op.result(polling=FAST_POLLING)
    assert len(world.run.revisions(SVC)) == 1
    changed = client.get_service(name=SVC)
    changed.template.revision = ""
    changed.template.containers[0].image = "europe-docker.pkg.dev/app/images/app:v2"
    op = client.update_service(service=changed)
    assert not client.get_service(name=SVC).latest_ready_revision.endswith(
        world.run.revisions(SVC)[-1]
    )
    clock.advance(10)
    done = op.result(polling=FAST_POLLING)
    new = world.run.revisions(SVC)[-1]
    assert len(world.run.revisions(SVC)) == 2
    assert done.latest_ready_revision == done.latest_created_revision == f"{SVC}/revisions/{new}"
    assert world.run.serving_split(SVC) == {new: 100}


def test_writing_back_a_revision_name_with_other_config_conflicts(
    world: World, clients: GoogleClients
) -> None:
    world.run.create_service(P, R, "pegasus-api", revision_id="pegasus-api-00001-abc")
    client = clients.run_services()
    svc = client.get_service(name=SVC)
    svc.template.revision = "pegasus-api-00001-abc"
    svc.template.containers[0].image = "europe-docker.pkg.dev/app/images/app:v9"
    with pytest.raises(exceptions.AlreadyExists, match="with different configuration"):
        client.update_service(service=svc)


def test_a_human_traffic_change_is_recorded_as_such(
    world: World, clock: VirtualClock, clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    good, bad = bad_deploy
    world.run.set_revision_ready(SVC, bad, True)
    world.run.set_traffic(SVC, {good: 90, bad: 10})
    assert world.run.serving_split(SVC) == {bad: 100}  # not until the operation completes
    clock.advance(world.timings.run_update)
    assert world.run.serving_split(SVC) == {good: 90, bad: 10}
    (write,) = world.recorder.writes("run")
    assert write.request["actor"] == "human"
    assert clients.run_services().get_service(name=SVC).last_modifier == "human@example.com"


def test_a_newer_update_supersedes_an_older_running_one(
    world: World, clock: VirtualClock, clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    good, bad = bad_deploy
    world.run.set_revision_ready(SVC, bad, True)
    client = clients.run_services()
    first = client.update_service(request=pin(good))
    clock.advance(2)
    second = client.update_service(request=pin(bad))
    clock.advance(3)  # the first is due; the second still runs
    assert first.done()
    assert not second.done()
    svc = client.get_service(name=SVC)
    assert svc.reconciling
    assert svc.observed_generation == svc.generation - 1
    assert world.run.serving_split(SVC) == {bad: 100}  # the first did not route a stale spec
    clock.advance(2)
    assert second.result(polling=FAST_POLLING).traffic_statuses[0].revision == bad
    svc = client.get_service(name=SVC)
    assert svc.observed_generation == svc.generation
    assert not svc.reconciling
