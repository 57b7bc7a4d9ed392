"""The fake Cloud Run Admin v2 reads (services, revisions) through the official clients."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import run_v2

from guard.adapters.google_clients import GoogleClients
from guard.sim.cloudrun_model import CONTAINER_FAILED_MESSAGE, MIGRATIONS_ANNOTATION
from guard.sim.faults import Fault
from guard.sim.world import World
from tests.sim.conftest import SVC, P, R, pin

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
State = run_v2.Condition.State


def test_get_service_reports_what_cloud_run_reports(
    world: World, clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    good, bad = bad_deploy
    svc = clients.run_services().get_service(name=SVC)
    assert svc.name == SVC
    assert svc.latest_ready_revision == f"{SVC}/revisions/{good}"
    assert svc.latest_created_revision == f"{SVC}/revisions/{bad}"
    assert [(t.type_, t.percent) for t in svc.traffic] == [(LATEST, 100)]
    assert [(t.type_, t.percent) for t in svc.traffic_statuses] == [(LATEST, 100)]
    assert svc.observed_generation == svc.generation == 2
    assert not svc.reconciling
    assert svc.terminal_condition.state == State.CONDITION_FAILED
    assert svc.terminal_condition.message.startswith(
        f"Revision '{bad}' is not ready and cannot serve traffic. The user-provided container"
    )
    assert svc.etag
    assert svc.uri.startswith("https://pegasus-api-")
    assert world.run.serving_split(SVC) == {good: 100}


def test_missing_service_is_not_found_with_googles_message(clients: GoogleClients) -> None:
    with pytest.raises(exceptions.NotFound) as err:
        clients.run_services().get_service(name=f"projects/{P}/locations/{R}/services/nope")
    assert err.value.message == (
        f"Resource 'nope' of kind 'SERVICE' in region '{R}' in project '{P}' does not exist."
    )


def test_list_services_pages_and_takes_the_region_wildcard(
    world: World, clients: GoogleClients
) -> None:
    for name in ("a", "b", "c"):
        world.run.create_service(P, R, name)
    world.run.create_service(P, "us-central1", "d")
    world.run.create_service("other-project", R, "e")
    client = clients.run_services()
    pager = client.list_services(
        request=run_v2.ListServicesRequest(parent=f"projects/{P}/locations/{R}", page_size=2)
    )
    pages = list(pager.pages)
    assert [len(p.services) for p in pages] == [2, 1]
    assert [s.name.rsplit("/", 1)[1] for p in pages for s in p.services] == ["a", "b", "c"]
    everywhere = client.list_services(parent=f"projects/{P}/locations/-")
    assert sorted(s.name.rsplit("/", 1)[1] for s in everywhere) == ["a", "b", "c", "d"]


def test_revisions_carry_conditions_reason_and_migrations(
    clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    good, bad = bad_deploy
    client = clients.run_revisions()
    listed = list(client.list_revisions(parent=SVC))
    assert [r.name.rsplit("/", 1)[1] for r in listed] == [bad, good]  # newest first
    failed = client.get_revision(name=f"{SVC}/revisions/{bad}")
    ready = {c.type_: c for c in failed.conditions}["Ready"]
    assert ready.state == State.CONDITION_FAILED
    assert ready.revision_reason == run_v2.Condition.RevisionReason.HEALTH_CHECK_CONTAINER_ERROR
    assert ready.message == CONTAINER_FAILED_MESSAGE
    assert ready.message.startswith(
        "The user-provided container failed to start and listen on the port defined provided "
        "by the PORT=8080 environment variable"
    )
    assert failed.annotations[MIGRATIONS_ANNOTATION] == "001_init.sql,002_add_course_slug.sql"
    assert failed.service == "pegasus-api"
    ok = client.get_revision(name=f"{SVC}/revisions/{good}")
    assert {c.type_: c.state for c in ok.conditions}["Ready"] == State.CONDITION_SUCCEEDED
    with pytest.raises(exceptions.NotFound):
        client.get_revision(name=f"{SVC}/revisions/pegasus-api-00099-zzz")


def test_a_starting_revision_reconciles_then_takes_latest_traffic(
    world: World, clients: GoogleClients
) -> None:
    world.run.create_service(P, R, "pegasus-api")
    new = world.run.deploy_revision(SVC, "pegasus-api-00002-new", ready=None)
    svc = clients.run_services().get_service(name=SVC)
    assert svc.reconciling
    assert svc.terminal_condition.state == State.CONDITION_RECONCILING
    assert svc.latest_created_revision.endswith(new)
    assert not svc.latest_ready_revision.endswith(new)
    rev = clients.run_revisions().get_revision(name=f"{SVC}/revisions/{new}")
    assert rev.reconciling
    assert {c.type_: c.state for c in rev.conditions}["Ready"] == State.CONDITION_RECONCILING
    world.run.set_revision_ready(SVC, new, True)
    svc = clients.run_services().get_service(name=SVC)
    assert not svc.reconciling
    assert svc.terminal_condition.state == State.CONDITION_SUCCEEDED
    assert svc.latest_ready_revision.endswith(new)
    assert world.run.serving_split(SVC) == {new: 100}


def test_injected_faults_surface_as_the_clients_exceptions(
    world: World, clients: GoogleClients, bad_deploy: tuple[str, str]
) -> None:
    good, _ = bad_deploy
    client = clients.run_services()
    world.faults.arm(Fault("run", "GetService", code="UNAVAILABLE", times=1))
    with pytest.raises(exceptions.ServiceUnavailable):
        client.get_service(name=SVC, retry=None)
    assert client.get_service(name=SVC).name == SVC
    world.faults.arm(Fault("run", "ListRevisions", code="RESOURCE_EXHAUSTED", times=1))
    with pytest.raises(exceptions.ResourceExhausted):
        list(clients.run_revisions().list_revisions(parent=SVC))
    world.faults.arm(Fault("run", "UpdateService", code="PERMISSION_DENIED", times=1))
    with pytest.raises(exceptions.PermissionDenied):
        client.update_service(request=pin(good))
    assert world.recorder.writes("run") == []  # the fault failed it before the API saw it
    assert world.recorder.counts()[("run", "GetService")] == 2
    # The operations client retries a transient UNAVAILABLE on its own, as on Google.
    op = client.update_service(request=pin(good))
    world.faults.arm(Fault("operations", "GetOperation", code="UNAVAILABLE", times=1))
    assert not op.done()
    assert world.recorder.counts()[("operations", "GetOperation")] == 2


def test_scenario_set_up_traffic_is_immediate_and_unrecorded(
    world: World, bad_deploy: tuple[str, str]
) -> None:
    good, bad = bad_deploy
    world.run.set_revision_ready(SVC, bad, True)
    world.run.set_traffic(SVC, {good: 50, bad: 50}, actor="scenario", record=False, immediate=True)
    assert world.run.serving_split(SVC) == {good: 50, bad: 50}
    assert world.recorder.writes() == []
    with pytest.raises(ValueError, match="cannot route"):
        world.run.set_traffic(SVC, {"pegasus-api-00077-zzz": 100}, record=False, immediate=True)
