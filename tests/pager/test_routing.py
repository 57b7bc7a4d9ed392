"""Routing: an app pages the backends its config names for the page's severity; later
versions also reach every backend already paged for the incident."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from guard.adapters.notify.webhook import WebhookNotifier
from guard.adapters.store import SqlStore
from guard.config.rulesfile import load_rules
from guard.core.model import IncidentState
from guard.core.redact import Redactor
from guard.defaults import RULES_DIR
from guard.ports import Notifier
from guard.service.metrics import Recorder
from guard.service.pager import Pager

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def _pager(
    store: SqlStore, client: httpx.AsyncClient, routes: dict[str, list[str] | None]
) -> Pager:
    rules, _ = load_rules(RULES_DIR)
    notifiers: dict[str, Notifier] = {
        n: WebhookNotifier(n, client, f"http://127.0.0.1:9/{n}") for n in ("oncall", "chat", "log")
    }
    return Pager(
        store, notifiers, routes={"pegasus": routes}, rules=rules,
        recorder=Recorder(), now=lambda: T0, redact=Redactor(),
    )  # fmt: skip


async def test_routes_by_severity_and_follow_up_reaches_everyone_paged(
    store: SqlStore, client: httpx.AsyncClient
) -> None:
    # migration-failure is a critical rule; warnings go to chat only; info to nobody.
    pager = _pager(store, client, {"critical": ["oncall", "log"], "warning": ["chat"], "info": []})
    incident, _ = store.open_incident(
        "pegasus", "pegasus-api", "api-00042", at=T0, rules=["migration-failure"]
    )
    assert pager.put(incident) == {"log": 1, "oncall": 1}
    store.transition(incident.id, [IncidentState.OPEN], IncidentState.RESOLVED, at=T0)
    resolved = store.incident(incident.id)
    assert resolved is not None
    assert pager.put(resolved) == {"log": 2, "oncall": 2}, "the resolve reaches the same people"


async def test_unset_severities_page_every_notifier(
    store: SqlStore, client: httpx.AsyncClient
) -> None:
    pager = _pager(store, client, {})
    incident, _ = store.open_incident(
        "pegasus", "pegasus-api", "api-00043", at=T0, rules=["migration-failure"]
    )
    assert pager.put(incident) == {"chat": 1, "log": 1, "oncall": 1}
    assert pager.put(incident) == {"chat": None, "log": None, "oncall": None}, "no news: no page"
