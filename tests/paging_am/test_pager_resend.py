"""The pager keeps an active incident's alert alive in the real Alertmanager by re-sending
it every `resend_every` (the same version), and the resolve ends it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from guard.adapters.notify.alertmanager import AlertmanagerNotifier
from guard.adapters.store import SqlStore, Store
from guard.config.rulesfile import load_rules
from guard.core.model import IncidentState
from guard.core.redact import Redactor
from guard.defaults import RULES_DIR
from guard.service.metrics import Recorder
from guard.service.pager import Pager

RESEND = 1.0  # seconds (Alertmanager wants 30 s-3 min; short here so the test is quick)


@pytest.fixture
def sqlite_store(tmp_path: object) -> Iterator[SqlStore]:
    with Store.open(f"sqlite:///{tmp_path}/guard.db") as store:
        yield store


async def test_active_alert_is_resent_then_resolved(
    alertmanager: str, sqlite_store: SqlStore
) -> None:
    store = sqlite_store
    rules, _ = load_rules(RULES_DIR)
    async with httpx.AsyncClient(timeout=5) as client:
        am = AlertmanagerNotifier(
            "am", client, base_url=alertmanager, active_for=120, resend_every=30
        )
        recorder = Recorder()
        pager = Pager(
            store, {"am": am}, routes={}, rules=rules, recorder=recorder,
            now=lambda: datetime.now(UTC), redact=Redactor(), resend_every={"am": RESEND},
        )  # fmt: skip
        incident, _ = store.open_incident(
            "pegasus",
            "pegasus-api",
            f"api-{id(store)}",
            at=datetime.now(UTC),
            rules=["migration-failure"],
        )
        assert pager.put(incident) == {"am": 1}
        assert await pager.deliver() == 1

        async def active() -> list[dict[str, object]]:
            got = (await client.get(f"{alertmanager}/api/v2/alerts")).json()
            return [a for a in got if a["labels"].get("incident") == incident.id]

        [first] = await active()
        await asyncio.sleep(RESEND + 0.1)
        await pager.deliver()  # queues the re-send of the same version
        assert await pager.deliver() == 1
        [again] = await active()
        assert again["endsAt"] > first["endsAt"], "the re-send pushed endsAt forward"
        [row] = store.pages(incident.id)
        assert row.version == 1, "a re-send is not an update"
        sent = recorder.registry.get_sample_value(
            "guard_pages_total", {"backend": "am", "outcome": "sent"}
        )
        assert sent == 2

        store.transition(
            incident.id, [IncidentState.OPEN], IncidentState.RESOLVED, at=datetime.now(UTC)
        )
        resolved = store.incident(incident.id)
        assert resolved is not None
        assert pager.put(resolved) == {"am": 2}
        assert await pager.deliver() == 1
        assert await active() == []
