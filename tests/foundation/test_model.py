"""The domain model's values are immutable and name Cloud Run resources as Google does."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from guard.core.model import App, Deploy, DeployKind, Role, ServiceRef


def test_service_names_follow_cloud_run_admin_v2() -> None:
    svc = ServiceRef("delta-student-486911-n5", "europe-west1", "pegasus-api")
    assert svc.resource_name == (
        "projects/delta-student-486911-n5/locations/europe-west1/services/pegasus-api"
    )
    assert svc.revision_resource("pegasus-api-00002-xyz").endswith(
        "/services/pegasus-api/revisions/pegasus-api-00002-xyz"
    )


def test_values_are_frozen() -> None:
    svc = ServiceRef("p-123456", "europe-west1", "api")
    deploy = Deploy(svc, "api-2", DeployKind.TRAFFIC, datetime.now(UTC), ("api-1",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        deploy.revision = "api-3"  # type: ignore[misc]


def test_app_finds_its_services() -> None:
    api = ServiceRef("p-123456", "europe-west1", "api")
    worker = ServiceRef("p-123456", "europe-west1", "worker", Role.WORKER)
    app = App("shop", (api, worker))
    assert app.service("worker") is worker
    with pytest.raises(KeyError, match="no service 'nope'"):
        app.service("nope")
