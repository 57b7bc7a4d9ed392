"""PagerDuty (Events API v2): an incident's page as one alert, deduplicated by its key.

Why this shape: PagerDuty groups every trigger with the same `dedup_key` into one alert, so
the first page and each update are all `trigger` events with the incident's key (an update
re-triggers the same alert, adding its new state to the alert's log), and the end of the
incident is one `resolve` event with the same key, which needs nothing else.

The summary (what the phone shows) is the title within 1024 chars; the whole story goes in
`custom_details` as structured fields, kept well under PagerDuty's 512 KB per event by
capping line counts and lengths, and dropping the log lines (then everything but the plain
text) if an event would still be too big. The routing key is in the body: it is scrubbed
from every `Delivery.detail` and never logged. See docs/paging-backends.md.
"""

from __future__ import annotations

from typing import Any

import httpx

from guard.adapters.notify.http import HttpNotifier, encode_json, fit_key, fitted_text, post_json
from guard.core.page import Delivery, PageEvent, PageMessage, truncate

DEFAULT_BASE_URL = "https://events.pagerduty.com"
SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255
#: Our own budget for one event's JSON, under PagerDuty's 512 KB.
EVENT_BYTES = 400_000
_LINES = 50  # evidence / actions / gcloud lines kept in custom_details
_LINE = 1000  # chars per line there
_FIELD = 2000  # chars per other text field there


def _lines(lines: tuple[str, ...]) -> list[str]:
    kept = [truncate(line, _LINE) for line in lines[:_LINES]]
    if len(lines) > _LINES:
        kept.append(f"… {len(lines) - _LINES} more not shown")
    return kept


def _details(message: PageMessage) -> dict[str, Any]:
    """The whole page as structured fields, each bounded."""
    details: dict[str, Any] = {
        "incident_id": message.incident_id,
        "version": message.version,
        "state": message.state,
        "app": message.app,
        "service": message.service,
        "bad_revision": message.bad_revision,
        "reverted_to": message.reverted_to,
        "rules": {r.rule: truncate(r.text, _FIELD) for r in message.rules[:_LINES]},
        "migration_file": message.migration_file,
        "migration_file_source": message.migration_file_source,
        "evidence": _lines(message.evidence),
        "actions": _lines(message.actions),
        "validation": truncate(message.validation or "", _FIELD) or None,
        "next_step": truncate(message.next_step, _FIELD),
        "dry_run": message.dry_run,
    }
    if (p := message.proposal) is not None:
        details["restore_proposal"] = {
            "point_in_time": p.point_in_time,
            "clone_name": p.clone_name,
            "gcloud": _lines(p.gcloud),
            "approve": truncate(p.approve, _FIELD),
            "option_b_file": p.option_b_file,
            "problems": _lines(p.problems),
        }
    return details


def summary(message: PageMessage) -> str:
    """What the phone shows: the title (marked when the guard only rehearsed), ≤ 1024."""
    prefix = "[dry run] " if message.dry_run else ""
    return truncate(f"{prefix}{message.title} ({message.state})", SUMMARY_LIMIT)


def render(message: PageMessage, routing_key: str, source: str = "deploy-guard") -> dict[str, Any]:
    """The Events API v2 event for `message` (a resolve carries only the three keys)."""
    dedup_key = fit_key(message.dedup_key, DEDUP_KEY_LIMIT)
    if message.event is PageEvent.RESOLVE:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": summary(message),
            "source": source,
            "severity": message.severity.value,
            "timestamp": message.at.isoformat(),
            "component": message.service,
            "group": message.app,
            "class": ", ".join(r.rule for r in message.rules) or "deploy",
            "custom_details": _details(message),
        },
        "links": [{"href": href, "text": text} for text, href in message.links],
    }
    if len(encode_json(event)) > EVENT_BYTES:
        details = event["payload"]["custom_details"]
        details["evidence"] = [f"… {len(message.evidence)} log lines not shown"]
        if len(encode_json(event)) > EVENT_BYTES:
            event["payload"]["custom_details"] = {
                "incident_id": message.incident_id,
                "version": message.version,
                "text": fitted_text(message, EVENT_BYTES // 8),  # ≤ 4 bytes per char
            }
    return event


class PagerDutyNotifier(HttpNotifier):
    """A PagerDuty service's Events API v2 integration (one routing key)."""

    KIND = "pagerduty"

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        routing_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        source: str = "deploy-guard",
    ) -> None:
        super().__init__(name, client, source)
        self._routing_key = routing_key
        self._url = f"{base_url.rstrip('/')}/v2/enqueue"

    async def send(self, message: PageMessage) -> Delivery:
        body = encode_json(render(message, self._routing_key, self._source))
        return await post_json(
            self._client, self._url, body, secrets=(self._routing_key,), label=self._name
        )
