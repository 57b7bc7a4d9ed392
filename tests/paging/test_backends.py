"""Every paging backend delivers every version of a page, within its limits, over real HTTP.

Why: a page that a backend rejects (one section over 3000 chars, a summary over 1024, a
detail that is not a string) is a page nobody reads, in the worst moment. So each notifier
talks to a loopback receiver (tests/paging/receivers.py) that validates the payload the way
the real service does, for the first page, an update and the resolve of one incident, with
a message far over every limit. The answers the outbox retries on are pinned too: 429 with
Retry-After (seconds and HTTP-date), 5xx, timeouts and refused connections are transient,
other 4xx permanent; and no credential ever shows up in a `Delivery.detail`.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from guard.adapters.notify import http, opsgenie, pagerduty, slack, webhook
from guard.adapters.notify.opsgenie import OpsgenieNotifier
from guard.adapters.notify.pagerduty import PagerDutyNotifier
from guard.adapters.notify.slack import SlackNotifier
from guard.adapters.notify.webhook import WebhookNotifier
from guard.core.page import (
    Delivery,
    PageEvent,
    PageMessage,
    PageSeverity,
    ProposalLines,
    RuleLine,
)
from guard.ports import Notifier

from ..support.http import serving
from .receivers import Opsgenie, PagerDuty, Receiver, Slack, Webhook

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 chars
GENIE_KEY = "c0ffee00-1234-4abc-8def-0123456789ab"
WEBHOOK_SECRET = "whsec-test-0123456789abcdef"


def page(**changes: Any) -> PageMessage:
    """A realistic escalated incident's first page, with a restore proposal."""
    base = PageMessage(
        dedup_key="deploy-guard/pegasus/pegasus-api/pegasus-api-00042",
        version=1,
        event=PageEvent.TRIGGER,
        severity=PageSeverity.CRITICAL,
        title="[pegasus] pegasus-api-00042 failed: migration 0042_add_column.sql",
        app="pegasus",
        service="pegasus-api",
        bad_revision="pegasus-api-00042",
        incident_id="a1b2c3d4e5f6",
        state="reverted",
        at=T0,
        reverted_to="pegasus-api-00041",
        rules=(
            RuleLine("schema-migration", "migration error in 3 log lines within 60 s"),
            RuleLine("error-rate", "5xx 41% (threshold 5%) over 2 min, 812 requests"),
        ),
        migration_file="0042_add_column.sql",
        migration_file_source="named in the log",
        evidence=(
            'ERROR: column "plan" of relation "accounts" does not exist (SQLSTATE 42703)',
            "alembic.util.exc.CommandError: <migration failed> & rolled back",
        ),
        actions=("freeze pegasus: succeeded", "revert to pegasus-api-00041: succeeded"),
        validation="3 of 3 checks passed (/healthz 200, /v1/plans 200, smoke exit 0)",
        next_step="approve the restore, or fix forward with 0043 and lift the freeze",
        proposal=ProposalLines(
            point_in_time="2026-03-01T11:57:30Z",
            clone_name="pegasus-db-restore-a1b2c3",
            gcloud=(
                "gcloud sql instances clone pegasus-db pegasus-db-restore-a1b2c3 "
                "--point-in-time=2026-03-01T11:57:30Z",
                "gcloud sql instances describe pegasus-db-restore-a1b2c3",
            ),
            approve="guard approve a1b2c3d4e5f6 --proposal p-1",
            option_b_file="0043_fix_add_column.sql",
            problems=("writes after 11:57:30 are lost",),
        ),
        links=(("Cloud Run", "https://console.cloud.google.com/run/detail/x"),),
    )
    return replace(base, **changes)


def huge(**changes: Any) -> PageMessage:
    """The same page far over every backend's limits: long title, texts, many lines."""
    message = page(**changes)
    assert message.proposal is not None
    long = "x" * 4000
    return replace(
        message,
        dedup_key="k" * 600,
        title="[pegasus] " + "very long title " * 400,
        rules=tuple(RuleLine(f"rule-{i}", f"value {i} " + long) for i in range(40)),
        evidence=tuple(f"log line {i}: <{long[:900]}>" for i in range(500)),
        actions=tuple(f"action {i}: succeeded " + long for i in range(60)),
        validation=long * 5,
        next_step=long * 5,
        proposal=replace(
            message.proposal,
            gcloud=tuple(f"gcloud sql step {i} " + "--flag=v " * 300 for i in range(80)),
            problems=tuple(f"problem {i} " + long for i in range(30)),
        ),
        links=tuple((f"link {i}", f"https://example.com/{i}") for i in range(60)),
    )


def versions(message: PageMessage) -> list[PageMessage]:
    """The first page, an update, and the resolve of one incident."""
    update = replace(message, version=2, state="validated", severity=PageSeverity.ERROR)
    done = replace(
        message, version=3, state="resolved", event=PageEvent.RESOLVE, severity=PageSeverity.INFO
    )
    return [message, update, done]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as opened:
        yield opened


@pytest.fixture
def pd() -> Iterator[tuple[PagerDuty, str]]:
    receiver = PagerDuty()
    with serving(receiver.app()) as url:
        yield receiver, url


@pytest.fixture
def sl() -> Iterator[tuple[Slack, str]]:
    receiver = Slack()
    with serving(receiver.app()) as url:
        yield receiver, url + receiver.path


@pytest.fixture
def og() -> Iterator[tuple[Opsgenie, str]]:
    receiver = Opsgenie(key=GENIE_KEY)
    with serving(receiver.app()) as url:
        yield receiver, url


@pytest.fixture
def wh() -> Iterator[tuple[Webhook, str]]:
    receiver = Webhook(secret=WEBHOOK_SECRET)
    with serving(receiver.app()) as url:
        yield receiver, url + "/hooks/guard?token=tok-9f8e7d"


def notifier(kind: str, client: httpx.AsyncClient, url: str) -> Notifier:
    if kind == "pagerduty":
        return PagerDutyNotifier("oncall-pd", client, ROUTING_KEY, base_url=url)
    if kind == "slack":
        return SlackNotifier("chat", client, url)
    if kind == "opsgenie":
        return OpsgenieNotifier("oncall-og", client, GENIE_KEY, base_url=url)
    return WebhookNotifier("hook", client, url, secret=WEBHOOK_SECRET)


@pytest.fixture(params=["pagerduty", "slack", "opsgenie", "webhook"])
def backend(
    request: pytest.FixtureRequest, client: httpx.AsyncClient
) -> tuple[Receiver, Notifier, str]:
    """Each backend's receiver, a notifier pointed at it, and the notifier's credentials."""
    fixture = {"pagerduty": "pd", "slack": "sl", "opsgenie": "og", "webhook": "wh"}
    receiver, url = request.getfixturevalue(fixture[request.param])
    credential = {
        "pagerduty": ROUTING_KEY, "slack": url, "opsgenie": GENIE_KEY, "webhook": WEBHOOK_SECRET
    }[request.param]  # fmt: skip
    return receiver, notifier(request.param, client, url), credential


# --- every version of a page validates at every backend -----------------------------------


@pytest.mark.parametrize("make", [page, huge], ids=["rich", "huge"])
async def test_every_version_is_accepted(
    backend: tuple[Receiver, Notifier, str], make: Any
) -> None:
    receiver, sender, _ = backend
    for message in versions(make()):
        delivery = await sender.send(message)
        assert delivery.ok, (sender.kind, delivery)
        assert delivery.status in {200, 202}
    assert [r.status for r in receiver.received] == [
        200 if sender.kind in {"slack", "webhook"} else 202
    ] * 3


def test_notifiers_say_name_and_kind(client: httpx.AsyncClient) -> None:
    for kind in ("pagerduty", "slack", "opsgenie", "webhook"):
        sent = notifier(kind, client, "http://127.0.0.1:9")
        assert sent.kind == kind
        assert sent.name in {"oncall-pd", "chat", "oncall-og", "hook"}


# --- PagerDuty -----------------------------------------------------------------------------


async def test_pagerduty_triggers_updates_and_resolves_one_alert(
    pd: tuple[PagerDuty, str], client: httpx.AsyncClient
) -> None:
    receiver, url = pd
    sender = PagerDutyNotifier("oncall-pd", client, ROUTING_KEY, base_url=url, source="guard-1")
    for message in versions(page()):
        assert (await sender.send(message)).ok
    first, update, done = (r.json() for r in receiver.received)
    key = page().dedup_key
    assert receiver.alerts[key]["status"] == "resolved"
    assert receiver.alerts[key]["events"] == 3
    assert first["event_action"] == update["event_action"] == "trigger"
    assert first["dedup_key"] == update["dedup_key"] == done["dedup_key"] == key
    assert done == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key}
    payload = first["payload"]
    assert payload["summary"] == f"{page().title} (reverted)"
    assert payload["severity"] == "critical"
    assert update["payload"]["severity"] == "error"
    assert payload["source"] == "guard-1"
    assert (payload["component"], payload["group"]) == ("pegasus-api", "pegasus")
    assert payload["class"] == "schema-migration, error-rate"
    assert datetime.fromisoformat(payload["timestamp"]) == T0
    details = payload["custom_details"]
    assert details["incident_id"] == "a1b2c3d4e5f6"
    assert details["rules"]["error-rate"].startswith("5xx 41%")
    assert details["restore_proposal"]["approve"] == "guard approve a1b2c3d4e5f6 --proposal p-1"
    assert first["links"] == [
        {"href": "https://console.cloud.google.com/run/detail/x", "text": "Cloud Run"}
    ]


def test_pagerduty_huge_page_stays_within_limits() -> None:
    event = pagerduty.render(huge(), ROUTING_KEY)
    assert PagerDuty.errors(event) == []
    assert len(event["payload"]["summary"]) == 1024
    assert event["payload"]["summary"].endswith("…")
    assert len(event["dedup_key"]) == 255
    assert event["dedup_key"] == pagerduty.render(huge(version=2), ROUTING_KEY)["dedup_key"]
    assert len(http.encode_json(event)) <= pagerduty.EVENT_BYTES
    details = event["payload"]["custom_details"]
    assert len(details["evidence"]) <= 51
    assert details["evidence"][-1] == "… 450 more not shown"


def test_pagerduty_drops_log_lines_when_an_event_is_too_big() -> None:
    message = huge(evidence=tuple("é" * 990 for _ in range(50)), dry_run=True)
    bigger = replace(message, actions=message.actions[:1])
    event = pagerduty.render(bigger, ROUTING_KEY)
    assert len(http.encode_json(event)) <= pagerduty.EVENT_BYTES
    assert event["payload"]["summary"].startswith("[dry run] ")


# --- Slack ---------------------------------------------------------------------------------


def _texts(message: dict[str, Any]) -> list[str]:
    texts = []
    for block in message["blocks"]:
        if block["type"] == "context":
            texts += [e["text"] for e in block["elements"]]
        else:
            texts.append(block["text"]["text"])
    return texts


async def test_slack_posts_a_message_per_version(
    sl: tuple[Slack, str], client: httpx.AsyncClient
) -> None:
    receiver, url = sl
    sender = SlackNotifier("chat", client, url)
    for message in versions(page()):
        delivery = await sender.send(message)
        assert delivery == Delivery(ok=True, status=200, detail="ok")
    first, update, done = (r.json() for r in receiver.received)
    assert first["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": page().title, "emoji": True},
    }
    text = "\n".join(_texts(first))
    for expected in (
        ":red_circle: CRITICAL",
        "new incident a1b2c3d4e5f6",
        "`pegasus-api-00042` → `pegasus-api-00041`",
        "• *schema-migration*: migration error in 3 log lines within 60 s",
        "`0042_add_column.sql` (named in the log)",
        "```\nERROR: column",
        "&lt;migration failed&gt; &amp; rolled back",  # mrkdwn-escaped
        "• revert to pegasus-api-00041: succeeded",
        "3 of 3 checks passed",
        "approve the restore",
        "clone `pegasus-db-restore-a1b2c3` at `2026-03-01T11:57:30Z`",
        "```\ngcloud sql instances clone pegasus-db",
        "```\nguard approve a1b2c3d4e5f6 --proposal p-1\n```",
        "<https://console.cloud.google.com/run/detail/x|Cloud Run>",
        "incident `a1b2c3d4e5f6` · version 1",
    ):
        assert expected in text, expected
    assert first["blocks"][-1]["type"] == "context"
    assert "update 2 of incident a1b2c3d4e5f6" in update["text"]
    assert ":large_orange_circle: ERROR" in _texts(update)[1]
    assert "resolved: incident a1b2c3d4e5f6" in done["text"]
    assert ":white_check_mark: RESOLVED" in _texts(done)[1]


def test_slack_huge_page_fits_every_block() -> None:
    rendered = slack.render(huge())
    assert Slack.error(rendered) is None
    assert len(rendered["blocks"]) <= 50
    assert len(rendered["blocks"][0]["text"]["text"]) == 150
    sections = [b["text"]["text"] for b in rendered["blocks"] if b["type"] == "section"]
    assert all(len(s) <= 3000 for s in sections)
    evidence = next(s for s in sections if s.startswith("*Evidence*"))
    assert evidence.endswith("more not shown\n```")  # lines dropped, the code block closed
    assert "log line 0: &lt;" in evidence
    commands = next(s for s in sections if s.startswith("*Restore commands*"))
    assert commands.endswith("more not shown\n```")


def test_slack_never_exceeds_fifty_blocks() -> None:
    many = [slack.section("*x*", ["y"]) for _ in range(80)]
    assert Slack.error({"text": "t", "blocks": many}) == "invalid_blocks"
    assert len(slack.section("*x*", ["y" * 5000] * 10)["text"]["text"]) <= 3000


# --- Opsgenie ------------------------------------------------------------------------------


async def test_opsgenie_creates_dedups_and_closes_by_alias(
    og: tuple[Opsgenie, str], client: httpx.AsyncClient
) -> None:
    receiver, url = og
    sender = OpsgenieNotifier("oncall-og", client, GENIE_KEY, base_url=url)
    first, update, done = versions(page(dedup_key="deploy-guard/pegasus/a b"))
    for message in (first, update):
        assert (await sender.send(message)).ok
    assert receiver.alerts["deploy-guard:pegasus:a b"] == {
        "status": "open", "count": 2, "message": first.title, "priority": "P2"
    }  # fmt: skip
    assert (await sender.send(done)).ok
    assert receiver.alerts["deploy-guard:pegasus:a b"]["status"] == "closed"
    created, _, closed = receiver.received
    assert created.headers["authorization"] == f"GenieKey {GENIE_KEY}"
    assert created.json()["alias"] == "deploy-guard:pegasus:a b"
    assert closed.path == "/v2/alerts/deploy-guard:pegasus:a b/close"
    assert closed.query == {"identifierType": "alias"}
    body = created.json()
    assert body["priority"] == "P1"
    assert body["details"]["incident_id"] == "a1b2c3d4e5f6"
    assert body["tags"] == ["deploy-guard", "pegasus", "critical", "schema-migration", "error-rate"]
    assert body["description"] == page().text()
    assert closed.json()["note"].startswith("resolved (resolved): ")


def test_opsgenie_priorities() -> None:
    got = {s: opsgenie.render(page(severity=s))["priority"] for s in PageSeverity}
    assert got == {
        PageSeverity.CRITICAL: "P1",
        PageSeverity.ERROR: "P2",
        PageSeverity.WARNING: "P3",
        PageSeverity.INFO: "P5",
    }


def test_opsgenie_huge_page_drops_log_lines_before_cutting() -> None:
    body = opsgenie.render(huge())
    assert Opsgenie.errors(body) == {}
    assert len(body["message"]) == 130
    assert len(body["alias"]) == 512
    assert len(body["description"]) <= 15000
    assert "rule rule-39: value 39" in body["description"]  # every line shortened, all shown
    logs = opsgenie.render(page(evidence=tuple(f"line {i} " + "x" * 900 for i in range(500))))
    description = logs["description"]
    assert 14000 < len(description) <= 15000
    assert "log: line 0 x" in description
    assert "more not shown" in description
    assert not description.endswith("…")  # log lines gave way: nothing cut mid-text
    assert description.endswith(
        "next: approve the restore, or fix forward with 0043 and lift the freeze"
    )
    assert len(opsgenie.render_close(huge(event=PageEvent.RESOLVE))["note"]) <= 25000


# --- the generic webhook -------------------------------------------------------------------


async def test_webhook_signs_the_exact_body(
    wh: tuple[Webhook, str], client: httpx.AsyncClient
) -> None:
    receiver, url = wh
    sender = WebhookNotifier("hook", client, url, secret=WEBHOOK_SECRET)
    for message in versions(page()):
        assert (await sender.send(message)).ok
    assert (await sender.send(page())).ok  # the outbox delivering v1 again
    assert receiver.duplicates == 1
    got = receiver.received[0]
    stamp = got.headers["x-guard-timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + got.body, hashlib.sha256)
    assert got.headers["x-guard-signature"] == f"sha256={mac.hexdigest()}"
    assert got.headers["idempotency-key"] == f"{page().dedup_key}:1"
    document = got.json()
    assert document == webhook.render(page())
    assert document["schema"] == "deploy-guard.page/v1"
    assert document["proposal"]["gcloud"] == list(page().proposal.gcloud)  # type: ignore[union-attr]
    assert [r.json()["event"] for r in receiver.received] == ["trigger"] * 2 + [
        "resolve",
        "trigger",
    ]
    expected = hmac.new(b"k", b"1.{}", hashlib.sha256).hexdigest()
    assert webhook.sign("k", 1, b"{}") == f"sha256={expected}"


async def test_webhook_without_secret_sends_no_signature(client: httpx.AsyncClient) -> None:
    receiver = Webhook(secret=None)
    with serving(receiver.app()) as url:
        sender = WebhookNotifier("hook", client, url + "/hooks/guard")
        assert (await sender.send(page())).ok
    assert "x-guard-signature" not in receiver.received[0].headers
    assert "x-guard-timestamp" not in receiver.received[0].headers


async def test_webhook_wrong_secret_or_stale_timestamp_is_permanent(
    wh: tuple[Webhook, str], client: httpx.AsyncClient
) -> None:
    _, url = wh
    wrong = WebhookNotifier("hook", client, url, secret="not-the-secret")
    stale = WebhookNotifier(
        "hook", client, url, secret=WEBHOOK_SECRET, clock=lambda: time.time() - 3600
    )
    for sender in (wrong, stale):
        delivery = await sender.send(page())
        assert (delivery.ok, delivery.status, delivery.permanent) == (False, 401, True)
        assert "not-the-secret" not in delivery.detail


# --- answers: rate limits, server errors, invalid payloads, the network -------------------


async def test_429_waits_for_retry_after_seconds(backend: tuple[Receiver, Notifier, str]) -> None:
    receiver, sender, _ = backend
    receiver.answer_next(1, 429, "rate limited", {"Retry-After": "7"})
    receiver.answer_next(1, 429, "rate limited")
    first, second, third = [await sender.send(page()) for _ in range(3)]
    assert first == Delivery(ok=False, status=429, retry_after=7.0, detail="rate limited")
    assert (second.ok, second.status, second.retry_after, second.permanent) == (
        False, 429, None, False
    )  # fmt: skip
    assert third.ok


async def test_429_with_an_http_date(backend: tuple[Receiver, Notifier, str]) -> None:
    receiver, sender, _ = backend
    when = datetime.now(UTC) + timedelta(seconds=120)
    receiver.answer_next(1, 429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    delivery = await sender.send(page())
    assert delivery.retry_after is not None
    assert 100 < delivery.retry_after <= 120


async def test_server_errors_are_transient(backend: tuple[Receiver, Notifier, str]) -> None:
    receiver, sender, _ = backend
    receiver.answer_next(1, 500, "internal error")
    receiver.answer_next(1, 503, "unavailable", {"Retry-After": "30"})
    first, second = [await sender.send(page()) for _ in range(2)]
    assert first == Delivery(ok=False, status=500, permanent=False, detail="internal error")
    assert (second.status, second.permanent, second.retry_after) == (503, False, 30.0)


async def test_other_4xx_are_permanent(backend: tuple[Receiver, Notifier, str]) -> None:
    receiver, sender, _ = backend
    receiver.answer_next(1, 400, "invalid_blocks " + "and more " * 100)
    delivery = await sender.send(page())
    assert (delivery.ok, delivery.status, delivery.permanent) == (False, 400, True)
    assert delivery.detail.startswith("invalid_blocks and more")
    assert len(delivery.detail) <= http.DETAIL_LIMIT


async def test_pagerduty_invalid_event_is_permanent(
    pd: tuple[PagerDuty, str], client: httpx.AsyncClient
) -> None:
    _, url = pd
    sender = PagerDutyNotifier("oncall-pd", client, "too-short", base_url=url)
    delivery = await sender.send(page())
    assert (delivery.ok, delivery.status, delivery.permanent) == (False, 400, True)
    assert "invalid event" in delivery.detail
    assert "too-short" not in delivery.detail


async def test_opsgenie_wrong_key_is_permanent(
    og: tuple[Opsgenie, str], client: httpx.AsyncClient
) -> None:
    _, url = og
    sender = OpsgenieNotifier("oncall-og", client, "wrong-key", base_url=url)
    delivery = await sender.send(page())
    assert (delivery.status, delivery.permanent) == (401, True)
    assert "Could not authenticate" in delivery.detail


@pytest.mark.parametrize("kind", ["pagerduty", "slack", "opsgenie", "webhook"])
async def test_connection_refused_is_transient(client: httpx.AsyncClient, kind: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, then closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    delivery = await notifier(kind, client, f"http://127.0.0.1:{port}/x").send(page())
    assert (delivery.ok, delivery.status, delivery.permanent) == (False, None, False)
    assert delivery.detail.startswith("ConnectError")
    assert ROUTING_KEY not in delivery.detail
    assert str(port) not in delivery.detail


async def test_timeouts_are_transient(pd: tuple[PagerDuty, str]) -> None:
    receiver, url = pd
    receiver.delay = 1.0
    async with httpx.AsyncClient(timeout=0.1) as impatient:
        delivery = await PagerDutyNotifier("pd", impatient, ROUTING_KEY, base_url=url).send(page())
    assert (delivery.ok, delivery.status, delivery.permanent) == (False, None, False)
    assert delivery.detail.startswith("ReadTimeout")


async def test_a_bad_url_is_permanent(client: httpx.AsyncClient) -> None:
    delivery = await SlackNotifier("chat", client, "hooks.example.com/services/T/B/x").send(page())
    assert (delivery.ok, delivery.status, delivery.permanent) == (False, None, True)
    assert "services/T/B/x" not in delivery.detail


async def test_credentials_never_reach_a_detail(backend: tuple[Receiver, Notifier, str]) -> None:
    """Even when the service echoes the credential back in its error text."""
    receiver, sender, credential = backend
    echoed = f"invalid credential {credential}, see {credential}"
    for status in (400, 401, 403, 404, 429, 500):
        receiver.answer_next(1, status, echoed)
    deliveries = [await sender.send(page()) for _ in range(6)]
    deliveries += [await sender.send(m) for m in versions(huge())]
    for delivery in deliveries:
        assert credential not in delivery.detail
        assert ROUTING_KEY not in delivery.detail
        assert GENIE_KEY not in delivery.detail
        assert WEBHOOK_SECRET not in delivery.detail
    assert "[redacted]" in deliveries[0].detail


# --- the shared helpers --------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert http.parse_retry_after("7", now) == 7.0
    assert http.parse_retry_after(" 1.5 ", now) == 1.5
    assert http.parse_retry_after("Sun, 01 Mar 2026 12:01:00 GMT", now) == 60.0
    assert http.parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0  # past: now
    for bad in (None, "", "soon", "-3", "inf", "nan"):
        assert http.parse_retry_after(bad, now) is None, bad


def test_fitted_text_drops_logs_then_commands_then_cuts() -> None:
    message = huge()
    whole = message.text()
    assert len(whole) > 100_000
    for limit in (15000, 3000, 400):
        text = http.fitted_text(message, limit)
        assert len(text) <= limit
        assert text.startswith(message.title[:100])
    assert http.fitted_text(message, len(whole)) == whole
    mid = http.fitted_text(page(evidence=tuple(f"line {i}" for i in range(100))), 1200)
    assert "log: line 0" in mid
    assert "more not shown" in mid
    assert "gcloud sql instances clone" in mid  # commands kept while log lines give way
    assert "approve: guard approve" in mid


def test_fit_key_is_stable_and_unique() -> None:
    assert http.fit_key("short", 255) == "short"
    a, b = http.fit_key("k" * 300 + "a", 255), http.fit_key("k" * 300 + "b", 255)
    assert len(a) == len(b) == 255
    assert a != b
    assert a == http.fit_key("k" * 300 + "a", 255)


def test_an_empty_title_still_renders_valid_payloads() -> None:
    message = page(title="  ", dry_run=True)
    assert PagerDuty.errors(pagerduty.render(message, ROUTING_KEY)) == []
    assert Slack.error(slack.render(message)) is None
    assert Opsgenie.errors(opsgenie.render(message)) == {}
    assert "[dry run] new incident" in slack.render(message)["text"]
