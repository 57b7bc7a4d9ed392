"""Paging end to end: the runbook scenarios on the fake cloud page real HTTP receivers on
loopback (each validating payloads as its real service would) through the real pager and the
real store: one alert per backend per incident plus updates, retries after 429 and 500, and
no secret in any payload."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from guard.adapters.notify.opsgenie import OpsgenieNotifier
from guard.adapters.notify.pagerduty import PagerDutyNotifier
from guard.adapters.notify.slack import SlackNotifier
from guard.adapters.notify.webhook import WebhookNotifier
from guard.adapters.store import SqlStore, Store
from guard.core.model import Evidence, IncidentState, SignalKind
from guard.core.redact import Redactor
from guard.ports import Notifier
from guard.service.metrics import Recorder
from guard.service.pager import Pager

from ..paging.receivers import Opsgenie, PagerDuty, Receiver, Slack, Webhook
from ..response.test_respond_scenarios import Responded
from ..support.http import serving
from ..support.postgres import fresh_postgres

ROUTING_KEY = "R" * 32
GENIE_KEY = "genie-key-0123456789"
SECRET = "whsec-test-0123456789abcdef"
SEEDED = [
    "postgresql://pegasus:pg-pass-7f3a9c@10.1.2.3:5432/pegasus",
    "password=pg-pass-7f3a9c",
    "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.sig",
    ROUTING_KEY,
]


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """These whole-scenario tests run on PostgreSQL only: the same path runs end to end on
    SQLite in tests/play (`guard simulate`), and the store tests cover both backends."""
    yield from fresh_postgres(request.getfixturevalue("pg_admin"))


class Receivers:
    def __init__(self) -> None:
        self.pd, self.slack = PagerDuty(), Slack()
        self.genie, self.hook = Opsgenie(key=GENIE_KEY), Webhook(secret=SECRET)
        self.all: dict[str, Receiver] = {
            "pd": self.pd, "slack": self.slack, "genie": self.genie, "hook": self.hook,
        }  # fmt: skip
        self.urls: dict[str, str] = {}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    """SQLite only here: these scenarios take seconds each, and the outbox's behaviour on
    PostgreSQL is covered by tests/pager/test_outbox.py."""
    with Store.open(f"sqlite:///{tmp_path}/guard.db") as opened:
        yield opened


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    r = Receivers()
    with ExitStack() as stack:
        for name, receiver in r.all.items():
            r.urls[name] = stack.enter_context(serving(receiver.app()))
        yield r


class Paged(Responded):
    """A responded scenario whose pages go to the loopback receivers."""

    def __init__(self, name: str, store: SqlStore, receivers: Receivers) -> None:
        super().__init__(name, store)
        self.receivers = receivers

    async def __aenter__(self) -> Paged:
        await super().__aenter__()
        self.http = httpx.AsyncClient(timeout=5)
        u = self.receivers.urls
        notifiers: dict[str, Notifier] = {
            "pd": PagerDutyNotifier("pd", self.http, ROUTING_KEY, base_url=u["pd"]),
            "slack": SlackNotifier("slack", self.http, u["slack"] + self.receivers.slack.path),
            "genie": OpsgenieNotifier("genie", self.http, GENIE_KEY, base_url=u["genie"]),
            "hook": WebhookNotifier("hook", self.http, u["hook"] + "/hooks/guard", secret=SECRET),
        }
        self.pager = Pager(
            self.store, notifiers, routes={}, rules=self.responder.rules, recorder=Recorder(),
            now=self.engine.clock.now, redact=Redactor([ROUTING_KEY, GENIE_KEY, SECRET]),
            seed=1,
        )  # fmt: skip
        self.responder.pager = self.pager
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        await super().__aexit__(*exc)

    async def respond_until(self, until: float) -> None:
        while self.engine.t < until:
            await self.play(self.engine.t + 1)
            await self.responder.tick()
            await self.pager.deliver()


def _bodies(receivers: Receivers) -> list[bytes]:
    return [r.body for receiver in receivers.all.values() for r in receiver.received]


@pytest.mark.parametrize(
    ("scenario", "end"),
    [("trigger2-schema-mismatch", "resolved"), ("runbook-worst-case", "escalated")],
)
async def test_one_alert_per_backend_per_incident_plus_updates(
    scenario: str, end: str, store: SqlStore, receivers: Receivers
) -> None:
    async with Paged(scenario, store, receivers) as p:
        await p.respond_until(8 * 60)
        [incident] = store.incidents()
        assert incident.state.value == end
        rows = {row.backend: row for row in store.pages(incident.id)}
        assert set(rows) == {"pd", "slack", "genie", "hook"}
        assert all(
            row.status == "sent" and row.sent_version == row.version for row in rows.values()
        )
        versions = rows["pd"].version
        assert versions >= 2, "the first page and at least one update"

    pd = [r.json() for r in receivers.pd.accepted]
    assert len({e["dedup_key"] for e in pd}) == 1, "one PagerDuty alert for the incident"
    assert len(pd) == versions
    assert pd[0]["event_action"] == "trigger"
    assert pd[-1]["event_action"] == ("resolve" if end == "resolved" else "trigger")
    assert len(receivers.pd.alerts) == 1
    first = pd[0]["payload"]
    assert "002" in first["summary"] or "pegasus-api" in first["summary"]

    genie = receivers.genie.accepted
    aliases = {r.json().get("alias") for r in genie if r.path == "/v2/alerts"}
    assert len(aliases) == 1, "one Opsgenie alert (alias) for the incident"
    if end == "resolved":
        assert any(r.path.endswith("/close") for r in genie)

    hooks = [r.json() for r in receivers.hook.accepted]
    assert [h["version"] for h in hooks] == list(range(1, versions + 1))
    assert receivers.hook.duplicates == 0
    assert len(receivers.slack.accepted) == versions  # Slack: one message per version
    if end == "escalated":
        last = hooks[-1]
        assert last["proposal"]["clone_name"].startswith("pegasus-db-eu-rollback-")
        # This harness runs no restore desk, so no restore was opened: the page says how to
        # propose one (with a desk it names `guard restore approve ID`: tests/restore).
        assert last["proposal"]["approve"].startswith("guard restore propose pegasus --at ")


async def test_429_and_500_are_retried_and_delivered_once(
    store: SqlStore, receivers: Receivers
) -> None:
    receivers.pd.answer_next(1, 429, "rate limited", headers={"Retry-After": "7"})
    receivers.pd.answer_next(2, 500, "oops")
    receivers.slack.answer_next(1, 429, "rate_limited", headers={"Retry-After": "3"})
    receivers.hook.answer_next(1, 400, "bad request")  # permanent: recorded, not retried
    async with Paged("trigger2-schema-mismatch", store, receivers) as p:
        await p.respond_until(8 * 60)
        [incident] = store.incidents()
        rows = {row.backend: row for row in store.pages(incident.id)}
    statuses = [r.status for r in receivers.pd.received]
    assert statuses[:4] == [429, 500, 500, 202]
    first_two = receivers.pd.received[:2]
    assert first_two[0].body == first_two[1].body, "the same version is retried"
    versions = [r.json()["dedup_key"] for r in receivers.pd.accepted]
    assert len(versions) == rows["pd"].version, "each version accepted exactly once"
    assert [r.status for r in receivers.slack.received][:2] == [429, 200]
    assert receivers.hook.received[0].status == 400
    assert rows["pd"].status == "sent"


async def test_no_secret_leaves_the_guard(store: SqlStore, receivers: Receivers) -> None:
    async with Paged("trigger2-schema-mismatch", store, receivers) as p:
        while not store.incidents():
            await p.respond_until(p.engine.t + 1)
        [incident] = store.incidents()
        seeded: list[Any] = [
            Evidence(
                SignalKind.LOG,
                p.engine.clock.now(),
                f"log: {s}",
                incident.service,
                incident.bad_revision,
                {"text": f"connecting with {s} failed"},
            )
            for s in SEEDED
        ]
        store.add_evidence(incident.id, seeded)
        reasons = {"rule": "schema-mismatch", "reasons": [f"saw {SEEDED[2]}"]}
        store.audit("guard", "also failed", incident.id, reasons, at=p.engine.clock.now())
        await p.respond_until(8 * 60)
        assert store.incidents()[0].state is IncidentState.RESOLVED
    bodies = _bodies(receivers)
    assert len(bodies) >= 8
    for body in bodies:
        for secret in ("pg-pass-7f3a9c", "c2VjcmV0LXRva2Vu"):
            assert secret.encode() not in body, secret
    # The routing key seeded into the evidence is redacted everywhere it was quoted; it
    # travels only as PagerDuty's own `routing_key` field.
    for received in receivers.pd.received:
        event = received.json()
        event.pop("routing_key")
        assert ROUTING_KEY not in str(event)
    for receiver in (receivers.slack, receivers.genie, receivers.hook):
        assert all(ROUTING_KEY.encode() not in r.body for r in receiver.received)
    assert any(b"[REDACTED]" in b for b in bodies), "the seeded lines were quoted, redacted"
