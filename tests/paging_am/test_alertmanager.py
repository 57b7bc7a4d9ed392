"""The Alertmanager notifier against the real Alertmanager 0.25 (see conftest.py).

Each test pages its own incident id and reads it back through Alertmanager's own API
(`GET /api/v2/alerts`, filtered by the `incident` label), so the module shares one server.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from guard.adapters.notify import alertmanager as am
from guard.adapters.notify.alertmanager import ANNOTATION_BYTES, AlertmanagerNotifier, render
from guard.core.page import PageEvent, PageMessage, PageSeverity, ProposalLines, RuleLine
from guard.ports import Notifier

from .conftest import free_port

_ids = itertools.count(1)
OPENED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def page(**changes: Any) -> PageMessage:
    incident = f"inc-{next(_ids)}"
    base = PageMessage(
        dedup_key=f"deploy-guard/{incident}",
        version=1,
        event=PageEvent.TRIGGER,
        severity=PageSeverity.CRITICAL,
        title="[pegasus] pegasus-api-00042 failed: migration 002_add_index.sql",
        app="pegasus",
        service="pegasus-api",
        bad_revision="pegasus-api-00042",
        incident_id=incident,
        state="open",
        at=datetime.now(UTC),
        rules=(RuleLine("migration-failed", "1 migration error >= 1"),),
        migration_file="002_add_index.sql",
        migration_file_source="named in the log",
        evidence=('ERROR: relation "users_email_idx" already exists',),
        actions=("freeze: succeeded",),
        next_step="the guard reverts to pegasus-api-00041",
        links=(("incident", "https://guard.example.com/incidents/x"),),
        extra={"opened_at": OPENED},
    )
    return replace(base, **changes)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as c:
        yield c


@pytest.fixture
def notifier(alertmanager: str, client: httpx.AsyncClient) -> AlertmanagerNotifier:
    return AlertmanagerNotifier("oncall-am", client, base_url=alertmanager + "/")


async def alerts_of(client: httpx.AsyncClient, url: str, incident: str, **params: str) -> Any:
    r = await client.get(
        f"{url}/api/v2/alerts", params={"filter": f'incident="{incident}"', **params}
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_render_labels_are_the_identity_and_annotations_carry_the_story() -> None:
    now = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    msg = page(
        proposal=ProposalLines("2026-01-01T11:59:00Z", "pegasus-db-clone", ("gcloud sql x",), "ok"),
        dry_run=True,
    )
    (alert,) = render(msg, active_for=600, now=now)
    assert alert["labels"] == {
        "alertname": "DeployGuardIncident",
        "app": "pegasus",
        "service": "pegasus-api",
        "incident": msg.incident_id,
        "severity": "critical",
    }
    a = alert["annotations"]
    assert a["summary"] == msg.title
    assert a["description"] == msg.text()
    assert a["revision"] == "pegasus-api-00042"
    assert a["migration_file"] == "002_add_index.sql (named in the log)"
    assert a["gcloud"] == "gcloud sql x"
    assert a["approve"] == "ok"
    assert a["dry_run"] == "true"
    assert a["source"] == "deploy-guard"
    assert "reverted_to" not in a  # empty values are left out
    assert alert["startsAt"] == "2026-01-01T12:00:00.000Z"  # extra["opened_at"], not msg.at
    assert alert["endsAt"] == "2026-01-01T12:40:00.000Z"  # now + active_for
    assert alert["generatorURL"] == "https://guard.example.com/incidents/x"
    # Without opened_at and links: startsAt is the message's time, no generatorURL.
    (bare,) = render(replace(msg, extra={}, links=()), active_for=600, now=now)
    assert bare["startsAt"] == am._rfc3339(msg.at)
    assert "generatorURL" not in bare
    # The composer sends opened_at as an ISO string.
    (iso,) = render(replace(msg, extra={"opened_at": OPENED.isoformat()}), active_for=60, now=now)
    assert iso["startsAt"] == "2026-01-01T12:00:00.000Z"
    # Resolve: endsAt is the message's time, whatever `now` is.
    (done,) = render(replace(msg, event=PageEvent.RESOLVE), active_for=600, now=now)
    assert done["endsAt"] == am._rfc3339(msg.at)
    assert done["labels"]["severity"] == "critical"


def test_render_resolves_the_earlier_severities() -> None:
    now = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    msg = page(severity=PageSeverity.CRITICAL)

    def sev(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(a["labels"]["severity"], a["endsAt"]) for a in alerts]

    at, later = am._rfc3339(msg.at), "2026-01-01T12:40:00.000Z"
    # A trigger after an `error` version: critical active, error resolved.
    err = {PageSeverity.ERROR}
    assert sev(render(msg, active_for=600, now=now, earlier=err)) == [
        ("critical", later),
        ("error", at),
    ]
    assert sev(render(msg, active_for=600, now=now, earlier=None))[1:] == [
        ("error", at),
        ("warning", at),
        ("info", at),
    ]
    # A resolve (the composer says `info`) resolves what was active, or all when not known.
    done = replace(msg, event=PageEvent.RESOLVE, severity=PageSeverity.INFO)
    assert sev(render(done, active_for=600, now=now, earlier=err)) == [("error", at)]
    assert sev(render(done, active_for=600, now=now)) == [("info", at)]
    assert {s for s, _ in sev(render(done, active_for=600, now=now, earlier=None))} == {
        "critical",
        "error",
        "warning",
        "info",
    }


def test_resend_every_must_be_shorter_than_active_for(client: httpx.AsyncClient) -> None:
    n: Notifier = AlertmanagerNotifier("am", client, base_url="http://x", resend_every=30)
    assert (n.name, n.kind) == ("am", "alertmanager")
    assert AlertmanagerNotifier("am", client, base_url="http://x").resend_every == 60.0
    with pytest.raises(ValueError, match="resend_every"):
        AlertmanagerNotifier("am", client, base_url="http://x", active_for=60, resend_every=60)


async def test_trigger_shows_up_active_with_labels_and_annotations(
    notifier: AlertmanagerNotifier, client: httpx.AsyncClient, alertmanager: str
) -> None:
    msg = page()
    d = await notifier.send(msg)
    assert (d.ok, d.status) == (True, 200), d
    (alert,) = await alerts_of(client, alertmanager, msg.incident_id)
    assert alert["status"]["state"] == "active"
    assert alert["labels"] == render(msg, active_for=600, now=msg.at)[0]["labels"]
    assert alert["annotations"]["summary"] == msg.title
    assert alert["annotations"]["description"] == msg.text()
    assert alert["annotations"]["evidence"] == msg.evidence[0]
    assert alert["generatorURL"] == "https://guard.example.com/incidents/x"
    assert alert["startsAt"] == "2026-01-01T12:00:00.000Z"
    ends = datetime.fromisoformat(alert["endsAt"])
    assert timedelta(minutes=9) < ends - datetime.now(UTC) <= timedelta(minutes=10)


async def test_update_keeps_one_alert_with_the_new_annotations(
    notifier: AlertmanagerNotifier, client: httpx.AsyncClient, alertmanager: str
) -> None:
    v1 = page()
    assert (await notifier.send(v1)).ok
    v2 = replace(
        v1,
        version=2,
        state="reverted",
        reverted_to="pegasus-api-00041",
        actions=(*v1.actions, "revert to pegasus-api-00041: succeeded"),
        evidence=(),
        at=datetime.now(UTC),
    )
    assert (await notifier.send(v2)).ok
    (alert,) = await alerts_of(client, alertmanager, v1.incident_id)
    a = alert["annotations"]
    assert (a["version"], a["state"], a["reverted_to"]) == ("2", "reverted", "pegasus-api-00041")
    assert a["actions"].endswith("revert to pegasus-api-00041: succeeded")
    assert "evidence" not in a  # the whole alert is replaced, not merged annotation by annotation
    assert alert["startsAt"] == "2026-01-01T12:00:00.000Z"
    assert alert["status"]["state"] == "active"


async def test_resolve_removes_the_alert_from_the_api(
    notifier: AlertmanagerNotifier, client: httpx.AsyncClient, alertmanager: str
) -> None:
    msg = page()
    assert (await notifier.send(msg)).ok
    assert len(await alerts_of(client, alertmanager, msg.incident_id)) == 1
    done = replace(msg, version=2, event=PageEvent.RESOLVE, state="resolved", at=datetime.now(UTC))
    d = await notifier.send(done)
    assert (d.ok, d.status) == (True, 200), d
    # AM 0.25's v2 API never lists an alert whose endsAt has passed: not as "resolved", not
    # with active=false. Resolved means gone from every listing.
    assert await alerts_of(client, alertmanager, msg.incident_id) == []
    assert await alerts_of(client, alertmanager, msg.incident_id, active="true") == []
    assert await alerts_of(client, alertmanager, msg.incident_id, active="false") == []


async def test_a_severity_change_keeps_one_active_alert_and_the_resolve_clears_it(
    notifier: AlertmanagerNotifier, client: httpx.AsyncClient, alertmanager: str
) -> None:
    v1 = page(severity=PageSeverity.ERROR)
    assert (await notifier.send(v1)).ok
    v2 = replace(v1, version=2, severity=PageSeverity.CRITICAL, at=datetime.now(UTC))
    assert (await notifier.send(v2)).ok
    (alert,) = await alerts_of(client, alertmanager, v1.incident_id)
    assert (alert["labels"]["severity"], alert["status"]["state"]) == ("critical", "active")
    # As the composer sends it: severity info. It still resolves the critical alert.
    done = replace(
        v1, version=3, event=PageEvent.RESOLVE, severity=PageSeverity.INFO, at=datetime.now(UTC)
    )
    assert (await notifier.send(done)).ok
    assert await alerts_of(client, alertmanager, v1.incident_id) == []


async def test_a_restarted_guard_resolves_an_alert_it_did_not_send(
    notifier: AlertmanagerNotifier, client: httpx.AsyncClient, alertmanager: str
) -> None:
    msg = page(severity=PageSeverity.WARNING)
    assert (await notifier.send(msg)).ok
    fresh = AlertmanagerNotifier("oncall-am", client, base_url=alertmanager)
    done = replace(msg, event=PageEvent.RESOLVE, severity=PageSeverity.INFO, at=datetime.now(UTC))
    assert (await fresh.send(done)).ok
    assert await alerts_of(client, alertmanager, msg.incident_id) == []


async def test_an_invalid_alert_is_a_permanent_failure(
    notifier: AlertmanagerNotifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_labels(message: PageMessage, **_: Any) -> list[dict[str, Any]]:
        return [{"labels": {}, "annotations": {"summary": message.title}}]

    monkeypatch.setattr(am, "render", no_labels)
    d = await notifier.send(page())
    assert (d.ok, d.status, d.permanent, d.retry_after) == (False, 400, True, None)
    assert d.detail == "alertmanager 400: at least one label pair required"


async def test_connection_refused_is_transient(client: httpx.AsyncClient) -> None:
    n = AlertmanagerNotifier("am", client, base_url=f"http://127.0.0.1:{free_port()}")
    d = await n.send(page())
    assert (d.ok, d.status, d.permanent) == (False, None, False)
    assert "ConnectError" in d.detail


async def test_a_long_page_is_capped_per_annotation_and_accepted(
    notifier: AlertmanagerNotifier, client: httpx.AsyncClient, alertmanager: str
) -> None:
    lines = tuple(f"ERROR: line {i} ünïcödé " + "x" * 200 for i in range(2000))
    msg = page(evidence=lines, title="é" * 10_000)
    d = await notifier.send(msg)
    assert d.ok, d
    (alert,) = await alerts_of(client, alertmanager, msg.incident_id)
    sent = render(msg, active_for=600, now=msg.at)[0]["annotations"]
    assert alert["annotations"] == sent  # stored as sent
    for key in ("summary", "description", "evidence"):
        value = alert["annotations"][key]
        assert ANNOTATION_BYTES - 4 < len(value.encode()) <= ANNOTATION_BYTES
        assert value.endswith("…")
    assert alert["annotations"]["evidence"].startswith(lines[0])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(429, headers={"Retry-After": "7"}), (False, 429, False, 7.0)),
        (httpx.Response(429), (False, 429, False, None)),
        (httpx.Response(503, text="<html>down</html>"), (False, 503, False, None)),
        (httpx.Response(404, text="404 page not found"), (False, 404, True, None)),
        (httpx.Response(422, json={"code": 602, "message": "bad"}), (False, 422, True, None)),
        (httpx.ReadTimeout("slow"), (False, None, False, None)),
    ],
)
async def test_answers_alertmanager_does_not_give_on_demand(
    answer: httpx.Response | Exception, expected: tuple[Any, ...]
) -> None:
    """429, 5xx and timeouts, which a healthy local AM never returns (MockTransport)."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v2/alerts"
        assert json.loads(request.content)[0]["labels"]["alertname"] == "DeployGuardIncident"
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        d = await AlertmanagerNotifier("am", c, base_url="http://am:9093").send(page())
    assert (d.ok, d.status, d.permanent, d.retry_after) == expected
    if isinstance(answer, httpx.Response) and answer.status_code == 422:
        assert d.detail == "alertmanager 422: bad"
